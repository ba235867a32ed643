"""The history and the daily digest: every plan outcome and completion is kept; one digest per
firing says whether every plan is protected.

The history tests run the functions over the wire (the stand-in, moto's tables and topic); the
digest's arithmetic is tested over histories built entry by entry, then end to end through the
digest function.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import digest as digest_function
import pytest
from conftest import Deployment, read_event
from test_completion_tracking import PLAN_A, PLAN_B, SERVER_A, emf
from test_scale_out import named_secret

from csbs_trigger.aws.history import HistoryTable
from csbs_trigger.digest import MAX_DIGEST_BYTES, Period, build_digest
from csbs_trigger.history import KEPT_SECONDS, Entry
from csbs_trigger.notify import iso_time
from csbs_trigger.values import replace
from support.lambda_context import FakeLambdaContext
from support.standin import PROJECT_ID

VAULT = "3b5816b5-f29c-4172-9d9a-76c719a659ce"  # weekly_full (events/vaults.json)
DAY = 24 * 3600
RPO = 26 * 3600
NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
LAST_24_H = Period(NOW - DAY, NOW)

NO_EXPIRIES = {"deleted": 0, "failed": 0, "kept_as_last_good": 0, "due": 0}


def history(deployment: Deployment) -> list[Entry]:
    table = HistoryTable(deployment.aws.client("dynamodb"), "csbs-trigger-history")
    return table.entries(time.time() - DAY, time.time() + DAY)


def run_digest(deployment: Deployment, event: Any = None) -> dict[str, Any]:
    context = FakeLambdaContext(function_name="csbs-trigger-digest")
    return digest_function.handler({} if event is None else event, context)  # type: ignore[no-any-return]


# -- the history -------------------------------------------------------------------------------


def test_every_outcome_and_every_completion_is_recorded_with_its_plan(
    deployment: Deployment,
) -> None:
    """Started, failed to start (busy, a plan that cannot run), completed and failed: each once,
    with the time, backend, project, plan, name, trigger and category."""
    deployment.standin.plans[PLAN_B].busy_code = "CSBS.1001"
    deployment.standin.failing_servers.add(SERVER_A)
    deployment.invoke({"plans": [{"plan_id": PLAN_A}, {"plan_id": PLAN_B},
                                 {"plan_id": "not a plan id"}]})  # fmt: skip
    deployment.invoke(read_event("vaults.json"))
    for _ in range(6):
        deployment.track()

    entries = history(deployment)

    by_event = sorted((e.event, e.backend, str(e.target_id), e.outcome, str(e.category))
                      for e in entries)  # fmt: skip
    assert by_event == sorted([
        ("started", "csbs", PLAN_A, "succeeded", "None"),
        ("started", "csbs", PLAN_B, "failed", "busy"),
        ("started", "csbs", "None", "failed", "invalid_event"),
        ("started", "cbr", VAULT, "succeeded", "None"),
        ("started", "cbr", "ea7b8717-2543-478a-a92d-3ca7ee448f67", "succeeded", "None"),
        ("completed", "csbs", PLAN_A, "failed", "item_error"),
        ("completed", "cbr", VAULT, "succeeded", "None"),
        ("completed", "cbr", "ea7b8717-2543-478a-a92d-3ca7ee448f67", "succeeded", "None"),
    ])  # fmt: skip
    started_a = next(e for e in entries if e.event == "started" and e.target_id == PLAN_A)
    assert (started_a.project_id, started_a.name, started_a.trigger) == (
        PROJECT_ID,
        "nightly-app-servers",
        "direct",
    )
    assert started_a.checkpoint_id is not None
    busy = next(e for e in entries if e.target_id == PLAN_B)
    assert busy.message
    assert "CSBS.1001" in busy.message
    vault = [e for e in entries if e.target_id == VAULT]
    assert {e.name for e in vault} == {deployment.standin.vaults[VAULT].name}
    completed = next(e for e in vault if e.event == "completed")
    assert completed.servers
    assert completed.finished_at
    assert completed.duration_s is not None


def test_a_replayed_trigger_and_a_republished_completion_are_recorded_once(
    deployment: Deployment,
) -> None:
    event = read_event("schedule.json")
    deployment.invoke(event)
    deployment.invoke(event)  # Scheduler delivers the firing again
    for _ in range(6):
        deployment.track()

    assert sorted(e.event for e in history(deployment)) == ["completed", "started"]


def test_a_notification_is_kept_under_what_it_is_told_once_per(deployment: Deployment) -> None:
    """A started notification's entry is named by its notice key (what it is published once
    per), never by its SNS message: told again after its publish record was lost, it replaces
    its entry instead of adding one."""
    deployment.invoke(read_event("schedule.json"))

    [delivered] = deployment.notifications()
    [entry] = history(deployment)
    notice_key = f"{delivered.message['idempotency_key']}#0"  # the batch's item 0
    assert entry.id == hashlib.sha256(notice_key.encode()).hexdigest()[:32]


@pytest.mark.parametrize("trouble", ["refused", "unexpected"])
def test_a_history_table_that_fails_loses_the_entry_never_the_notification(
    deployment: Deployment,
    logs: Any,
    monkeypatch: pytest.MonkeyPatch,
    trouble: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Whatever the history's write meets, the notification is published once and the
    invocation succeeds (an exception would fail the publish step: its retry would tell it
    twice)."""
    if trouble == "refused":

        def refuse(params: dict[str, Any], **_: Any) -> Any:  # the request, as it is sent
            if b'"TableName": "csbs-trigger-history"' not in params["body"]:
                return None
            return SimpleNamespace(status_code=400), {"Error": {"Code": "InternalServerError"}}

        events = deployment.runtime.dynamodb.meta.events
        events.register("before-call.dynamodb.PutItem", refuse)
    else:

        def unwritable(self: HistoryTable, entry: Entry) -> None:
            raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")

        monkeypatch.setattr(HistoryTable, "record", unwritable)

    event = read_event("schedule.json")
    result = deployment.invoke(event)
    deployment.invoke(event)  # delivered again: its publish step was done, it is not redone

    [started] = deployment.notifications()
    assert started.message["outcome"] == "succeeded"
    assert result["outcome"] == "succeeded"
    [line] = [json.loads(x) for x in logs.getvalue().splitlines()
              if '"outcome not recorded in the history: the digest will miss it"' in x]  # fmt: skip
    assert (line["event"], line["outcome"]) == ("started", "succeeded")
    if trouble == "unexpected":  # its type only: an unforeseen exception's text may hold anything
        assert line["reason"] == "UnicodeEncodeError"
    else:  # the table's refusal, as the project words it
        assert "InternalServerError" in line["reason"]
    assert ("HistoryNotRecorded", {}) in emf(capsys.readouterr().out)
    assert history(deployment) == []


# -- the digest over a history -----------------------------------------------------------------


def entry(at: float, event: str, outcome: str, *, plan: str = "p-1", backend: str = "csbs",
          checkpoint: str | None = None, category: str | None = None, name: str | None = None,
          scope: str = "", finished: float | None = None) -> Entry:  # fmt: skip
    return Entry(
        id=f"{event}:{at}:{plan}", at=at, event=event, outcome=outcome, backend=backend,
        target_id=plan, scope=scope, project_id=PROJECT_ID, name=name, checkpoint_id=checkpoint,
        category=category, message=f"{category} happened" if category else None,
        finished_at=finished,
    )  # fmt: skip


def backup(at: float, outcome: str = "succeeded", *, plan: str = "p-1", takes: float = 600,
           **more: Any) -> list[Entry]:  # fmt: skip
    """A run of a plan that started a backup, and the backup's completion (None: running)."""
    checkpoint = f"cp-{plan}-{at}"
    runs = [entry(at, "started", "succeeded", plan=plan, checkpoint=checkpoint, **more)]
    if outcome != "running":
        category = {"failed": "item_error", "timed_out": "timed_out"}.get(outcome)
        runs.append(entry(at + takes, "completed", outcome, plan=plan, checkpoint=checkpoint,
                          category=category, finished=at + takes, **more))  # fmt: skip
    return runs


def digest_of(entries: list[Entry], period: Period = LAST_24_H, rpo: float = RPO) -> dict[str, Any]:
    notification = build_digest(
        entries, period, rpo_seconds=rpo, running_since=period.end - 9 * 3600, invocation_id="i-1"
    )
    message = json.loads(notification.message)
    message["_subject"], message["_attributes"] = notification.subject, notification.attributes
    return message


def test_totals_count_the_periods_runs_by_what_became_of_them() -> None:
    entries = [
        *backup(NOW - 3 * DAY, plan="old"),  # before the period: seen, not counted
        *backup(NOW - 20 * 3600, plan="ok"),
        *backup(NOW - 19 * 3600, "failed", plan="bad"),
        *backup(NOW - 18 * 3600, "timed_out", plan="slow"),
        *backup(NOW - 3600, "running", plan="busy-now"),
        entry(NOW - 17 * 3600, "started", "failed", plan="locked", category="auth_failed"),
    ]

    digest = digest_of(entries)

    assert digest["totals"] == {"started": 4, "succeeded": 1, "failed": 1, "timed_out": 1,
                                "failed_to_start": 1, "running": 1,
                                "expired": NO_EXPIRIES}  # fmt: skip
    assert digest["period"] == {"from": "2027-01-14T08:00:00+00:00",
                                "to": "2027-01-15T08:00:00+00:00"}  # fmt: skip
    assert digest["event"] == "digest"
    assert digest["schema_version"] == 1
    assert digest["_attributes"] == {"event": "digest", "outcome": "attention"}
    lines = {line["plan_id"]: line for line in digest["plans"]}
    assert {key: line["last_outcome"] for key, line in lines.items()} == {
        "old": "succeeded", "ok": "succeeded", "bad": "failed", "slow": "timed_out",
        "busy-now": "running", "locked": "failed"}  # fmt: skip
    assert lines["old"]["runs"] == 0
    assert lines["ok"]["runs"] == 1
    assert lines["locked"]["failures"] == [{"time": "2027-01-14T15:00:00+00:00",
                                            "category": "auth_failed",
                                            "message": "auth_failed happened"}]  # fmt: skip
    assert lines["slow"]["failures"][0]["category"] == "timed_out"


def test_a_plan_that_failed_then_succeeded_is_protected_with_its_failures_listed() -> None:
    entries = [
        entry(NOW - 10 * 3600, "started", "failed", category="busy"),
        *backup(NOW - 9 * 3600, "failed"),
        *backup(NOW - 8 * 3600),  # the rerun
    ]

    digest = digest_of(entries)

    [line] = digest["plans"]
    assert line["runs"] == 3
    assert line["last_outcome"] == "succeeded"
    assert line["last_success_at"] == "2027-01-15T00:10:00+00:00"
    assert [f["category"] for f in line["failures"]] == ["item_error", "busy"]  # latest first
    assert digest["rpo_breaches"] == []
    assert digest["plans_protected"] == 1
    assert digest["_subject"] == "CSBS/CBR digest: 1 of 1 plans protected, 1 needs attention"
    assert digest["outcome"] == "attention"  # something failed in the period


def test_a_plan_that_never_succeeded_breaches_and_a_quiet_healthy_one_does_not() -> None:
    entries = [
        *backup(NOW - 20 * 3600, "failed", plan="never", name="db-servers"),
        *backup(NOW - 2 * DAY, "running", plan="never"),  # started, and no completion since
        *backup(NOW - 5 * 3600, plan="fine"),
    ]

    digest = digest_of(entries)

    [breach] = digest["rpo_breaches"]
    assert breach == {"backend": "csbs", "plan_id": "never", "project_id": PROJECT_ID,
                      "name": "db-servers", "last_success_at": None, "age_s": None,
                      "reason": "no successful backup in the last 35 days"}  # fmt: skip
    assert digest["plans"][0]["plan_id"] == "never"  # what needs attention comes first
    assert digest["_subject"] == "CSBS/CBR digest: 1 of 2 plans protected, 1 needs attention"


@pytest.mark.parametrize(("age", "breached"), [(RPO - 1, False), (RPO, False), (RPO + 1, True)])
def test_a_breach_is_a_last_success_older_than_the_rpo(age: float, breached: bool) -> None:
    entries = backup(NOW - age - 600)  # it finished ``age`` seconds before the digest

    digest = digest_of(entries, Period(NOW - 2 * DAY, NOW))

    assert (len(digest["rpo_breaches"]) == 1) is breached
    assert digest["plans_breaching_rpo"] == int(breached)
    if breached:
        assert digest["rpo_breaches"][0]["age_s"] == RPO + 1
        assert digest["rpo_breaches"][0]["reason"] == "the last successful backup is 26.0 h old"


def test_an_rpo_of_one_second_breaches_every_plan_not_finishing_now() -> None:
    digest = digest_of(backup(NOW - 3600), rpo=1)
    assert digest["plans_breaching_rpo"] == 1
    assert digest["outcome"] == "attention"


def test_csbs_plans_and_cbr_vaults_are_told_apart_and_so_are_projects() -> None:
    entries = [
        *backup(NOW - 3600, plan="same-id"),
        *backup(NOW - 3600, plan="same-id", backend="cbr"),
        *backup(NOW - 3600, plan="same-id", scope="0123456789abcdef0123456789abcdef"),
    ]

    digest = digest_of(entries)

    assert sorted((line["backend"], "plan_id" in line, "vault_id" in line)
                  for line in digest["plans"]) == [("cbr", False, True), ("csbs", True, False),
                                                   ("csbs", True, False)]  # fmt: skip
    assert digest["totals"]["succeeded"] == 3
    assert digest["outcome"] == "ok"
    assert digest["_subject"] == "CSBS/CBR digest: 3 of 3 plans protected, 0 need attention"


def test_an_empty_period_is_still_a_digest() -> None:
    quiet = digest_of(backup(NOW - 3 * DAY))
    nothing = digest_of([])

    assert quiet["totals"] == {**dict.fromkeys(quiet["totals"], 0), "expired": NO_EXPIRIES}
    assert quiet["_subject"] == ("CSBS/CBR digest: no backups ran; 0 of 1 plans protected, "
                                 "1 needs attention")  # fmt: skip
    assert nothing["_subject"] == "CSBS/CBR digest: no backups ran; no plans seen in 35 days"
    assert nothing["plans"] == []
    assert nothing["outcome"] == "ok"


def test_thousands_of_plans_are_cut_to_fit_sns_with_the_counts_of_what_was_left_out() -> None:
    entries = []
    for number in range(6000):
        plan = f"{number:08d}-3df1-42f7-9513-6f9b1bea4744"
        if number % 2:
            entries += backup(NOW - 3600, plan=plan, name=f"plan-{number}")
        else:
            entries.append(entry(NOW - 3600, "started", "failed", plan=plan, category="busy",
                                 name=f"plan-{number}"))  # fmt: skip

    notification = build_digest(entries, LAST_24_H, rpo_seconds=RPO, running_since=0,
                                invocation_id="i-1")  # fmt: skip

    size = len(notification.message.encode())
    digest = json.loads(notification.message)
    assert MAX_DIGEST_BYTES - 2048 < size <= MAX_DIGEST_BYTES < 256 * 1024
    assert digest["plans_seen"] == 6000
    assert digest["plans_breaching_rpo"] == 3000
    assert len(digest["plans"]) + digest["plans_omitted"] == 6000
    assert len(digest["rpo_breaches"]) + digest["rpo_breaches_omitted"] == 3000
    assert digest["plans_omitted"] > 0
    assert digest["totals"]["failed_to_start"] == 3000
    assert digest["totals"]["succeeded"] == 3000


def test_a_plans_failures_are_capped_with_the_count_of_the_rest() -> None:
    entries = [entry(NOW - hour * 3600, "started", "failed", category="busy")
               for hour in range(1, 9)]  # fmt: skip
    [line] = digest_of(entries)["plans"]
    assert len(line["failures"]) == 5
    assert line["failures_omitted"] == 3


# -- the digest function -----------------------------------------------------------------------


def test_the_digest_function_reports_what_the_functions_recorded_once_per_firing(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment.standin.plans[PLAN_B].busy_code = "CSBS.1001"
    deployment.invoke({"plans": [{"plan_id": PLAN_A}, {"plan_id": PLAN_B}]})
    for _ in range(6):
        deployment.track()
    deployment.notifications()
    firing = {"scheduled_time": iso_time(time.time() + 60)}
    deployment.set_env("DIGEST_RPO_SECONDS", "3024000")  # 35 days: nothing is too old

    first = run_digest(deployment, firing)
    replay = run_digest(deployment, firing)  # Scheduler or Lambda delivers it again

    [published] = deployment.notifications()
    assert published.attributes == {"event": "digest", "outcome": "attention"}
    digest = published.message
    assert digest["totals"] == {"started": 1, "succeeded": 1, "failed": 0, "timed_out": 0,
                                "failed_to_start": 1, "running": 0,
                                "expired": NO_EXPIRIES}  # fmt: skip
    assert {line["plan_id"]: line["last_outcome"] for line in digest["plans"]} == {
        PLAN_A: "succeeded", PLAN_B: "failed"}  # fmt: skip
    assert digest["rpo_breaches"][0]["plan_id"] == PLAN_B  # it never succeeded
    assert published.subject == "CSBS/CBR digest: 1 of 2 plans protected, 1 needs attention"
    assert first["message_id"] == replay["message_id"]
    metrics = emf(capsys.readouterr().out)
    assert metrics.count(("PlansBreachingRpo", {})) == 2  # one per run
    assert ("BackupsNotStarted", {"error_category": "busy"}) in metrics
    assert digest["rpo_seconds"] == 3024000


def test_a_digest_covers_the_time_since_the_last_one_when_that_is_longer(
    deployment: Deployment,
) -> None:
    run_digest(deployment, {"scheduled_time": "2030-01-01T07:00:00Z"})
    run_digest(deployment, {"scheduled_time": "2030-01-04T07:00:00Z"})  # two firings missed
    run_digest(deployment, {"scheduled_time": "2030-01-05T07:00:00Z"})

    periods = [d.message["period"] for d in deployment.notifications()]
    assert periods == [
        {"from": "2029-12-31T07:00:00+00:00", "to": "2030-01-01T07:00:00+00:00"},
        {"from": "2030-01-01T07:00:00+00:00", "to": "2030-01-04T07:00:00+00:00"},
        {"from": "2030-01-04T07:00:00+00:00", "to": "2030-01-05T07:00:00+00:00"},
    ]


@pytest.mark.parametrize(("event", "said"), [
    ([], "a digest event must be a JSON object"),
    ({"scheduled_time": "yesterday"}, "scheduled_time must be an ISO 8601 time"),
    ({"scheduled_time": 1700000000}, "scheduled_time must be an ISO 8601 time"),
])  # fmt: skip
def test_a_digest_event_that_names_no_time_is_an_invalid_event(
    deployment: Deployment, event: Any, said: str
) -> None:
    from csbs_trigger import InvalidEventError

    with pytest.raises(InvalidEventError) as raised:
        run_digest(deployment, event)
    assert raised.value.message == said
    assert deployment.notifications() == []


def test_history_older_than_35_days_is_not_read(deployment: Deployment) -> None:
    table = HistoryTable(deployment.aws.client("dynamodb"), "csbs-trigger-history")
    fired = 1_900_000_000.0
    for age in (KEPT_SECONDS + 60, KEPT_SECONDS - 60):
        for one in backup(fired - age, plan=f"plan-{age}", takes=30):
            table.record(one)

    run_digest(deployment, {"scheduled_time": "2030-03-17T17:46:40Z"})

    [published] = deployment.notifications()
    assert [line["plan_id"] for line in published.message["plans"]] == [
        f"plan-{KEPT_SECONDS - 60}"]  # fmt: skip


@pytest.mark.parametrize(("value", "valid"), [("0", False), ("0.5", False), ("-1", False),
                                              ("nan", False), ("1", True), ("93600", True),
                                              ("3153600000", True)])  # fmt: skip
def test_the_rpo_is_any_number_of_seconds_from_one(value: str, valid: bool) -> None:
    from csbs_trigger import ConfigError, Settings

    env = {"NOTIFICATION_TOPIC_ARN": "arn:aws:sns:eu-de:1:t", "DIGEST_RPO_SECONDS": value}
    if valid:
        assert Settings.from_env(env).digest_rpo_seconds == float(value)
    else:
        with pytest.raises(ConfigError, match="DIGEST_RPO_SECONDS"):
            Settings.from_env(env)


def test_a_backup_that_timed_out_is_recorded_so(deployment: Deployment) -> None:
    deployment.set_env("TRACKING_DEADLINE_SECONDS", "60")
    deployment.standin.polls_to_finish = 99
    deployment.invoke({"plan_id": PLAN_B})
    deployment.now = time.time() + 61  # the tracker runs after the deadline

    deployment.track()

    [completed] = [e for e in history(deployment) if e.event == "completed"]
    assert (completed.outcome, completed.category) == ("timed_out", "timed_out")
    assert completed.message is not None
    assert "tracking deadline" in completed.message


def test_each_tracker_run_tells_how_long_the_oldest_backup_has_been_followed(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment.standin.polls_to_finish = 99
    deployment.now = NOW
    deployment.invoke({"plan_id": PLAN_A})
    deployment.now = NOW + 300
    deployment.invoke({"plan_id": PLAN_B})
    deployment.now = NOW + 900
    capsys.readouterr()

    deployment.track()

    lines = capsys.readouterr().out.splitlines()
    values = [json.loads(line)["OldestTrackedBackupSeconds"] for line in lines
              if "OldestTrackedBackupSeconds" in line]  # fmt: skip
    assert values == [[900.0]]


# -- what each field holds, to the letter ------------------------------------------------------


def test_a_plans_line_and_breach_hold_exactly_the_documented_fields() -> None:
    """A backup that finished at 02:10 and was reported at 02:20 last succeeded at 02:10."""
    started = NOW - 30 * 3600
    entries = [
        entry(started, "started", "succeeded", checkpoint="cp-1", name="nightly"),
        entry(started + 1200, "completed", "succeeded", checkpoint="cp-1", finished=started + 600),
        entry(NOW - 3600, "started", "failed", category="busy"),
    ]

    digest = digest_of(entries)

    assert digest["plans"] == [{
        "backend": "csbs", "plan_id": "p-1", "project_id": PROJECT_ID, "name": "nightly",
        "runs": 1, "last_outcome": "failed", "last_success_at": "2027-01-14T02:10:00+00:00",
        "failures": [{"time": "2027-01-15T07:00:00+00:00", "category": "busy",
                      "message": "busy happened"}],
    }]  # fmt: skip
    assert digest["rpo_breaches"] == [{
        "backend": "csbs", "plan_id": "p-1", "project_id": PROJECT_ID, "name": "nightly",
        "last_success_at": "2027-01-14T02:10:00+00:00", "age_s": 107400,
        "reason": "the last successful backup is 29.8 h old",
    }]  # fmt: skip


def test_a_plan_that_never_succeeded_has_no_last_success() -> None:
    [line] = digest_of(backup(NOW - 3600, "failed"))["plans"]
    assert line["last_success_at"] is None


@pytest.mark.parametrize(("failures", "omitted"), [(5, None), (6, 1)])
def test_failures_beyond_five_are_counted(failures: int, omitted: int | None) -> None:
    entries = [entry(NOW - hour * 600, "started", "failed", category="busy")
               for hour in range(1, failures + 1)]  # fmt: skip
    [line] = digest_of(entries)["plans"]
    assert line.get("failures_omitted") == omitted


def test_the_period_holds_its_start_and_not_its_end() -> None:
    entries = [
        entry(LAST_24_H.start, "started", "failed", plan="at-start", category="busy"),
        entry(LAST_24_H.end, "started", "failed", plan="at-end", category="busy"),
    ]

    digest = digest_of(entries)

    assert digest["totals"]["failed_to_start"] == 1
    assert {line["plan_id"]: line["runs"] for line in digest["plans"]} == {
        "at-start": 1, "at-end": 0}  # fmt: skip


def test_a_digest_sooner_than_a_day_after_the_last_still_covers_a_day(
    deployment: Deployment,
) -> None:
    run_digest(deployment, {"scheduled_time": "2030-01-01T07:00:00Z"})
    run_digest(deployment, {"scheduled_time": "2030-01-01T08:00:00Z"})  # a second schedule

    periods = [d.message["period"]["from"] for d in deployment.notifications()]
    assert periods == ["2029-12-31T07:00:00+00:00", "2029-12-31T08:00:00+00:00"]


def test_a_direct_digest_reports_up_to_now_each_time_it_is_asked(
    deployment: Deployment, logs: Any
) -> None:
    deployment.now = NOW

    first = run_digest(deployment, {})
    again = run_digest(deployment, {})  # not a firing: no key, told again

    told = deployment.notifications()
    assert len(told) == 2
    records = deployment.aws.client("dynamodb").scan(TableName="csbs-trigger-idempotency")
    assert records["Items"] == []  # nothing keyed: no firing to be told once
    assert first == {"outcome": "ok", "plans": 0, "protected": 0, "attention": 0,
                     "period": {"from": "2027-01-14T08:00:00+00:00",
                                "to": "2027-01-15T08:00:00+00:00"},
                     "message_id": told[0].message_id}  # fmt: skip
    assert again["message_id"] == told[1].message_id != first["message_id"]
    assert told[0].message["invocation_id"] != told[1].message["invocation_id"]  # each its own
    line, _ = [json.loads(li) for li in logs.getvalue().splitlines()
               if json.loads(li)["message"] == "digest published"]  # fmt: skip
    assert line["message_id"] == first["message_id"]
    assert line["plans"] == 0


def test_a_digest_without_its_history_table_names_the_setting(deployment: Deployment) -> None:
    from csbs_trigger import ConfigError

    deployment.set_env("HISTORY_TABLE", None)
    with pytest.raises(ConfigError, match=r"^environment variable HISTORY_TABLE is not set$"):
        run_digest(deployment, {})


def test_running_backups_are_those_started_within_the_tracking_deadline(
    deployment: Deployment,
) -> None:
    """The tracker ends every backup within its deadline (8 h) and an hour of grace: one
    started earlier that has no completion is lost to the history, not running."""
    table = HistoryTable(deployment.aws.client("dynamodb"), "csbs-trigger-history")
    fired = 1_900_000_000.0
    for age in (9 * 3600 - 60, 9 * 3600 + 60):
        for one in backup(fired - age, "running", plan=f"plan-{age}"):
            table.record(one)

    run_digest(deployment, {"scheduled_time": "2030-03-17T17:46:40Z"})

    [published] = deployment.notifications()
    assert published.message["totals"]["running"] == 1


def test_the_digest_holds_exactly_its_documented_fields() -> None:
    digest = digest_of(backup(NOW - 3600))
    assert set(digest) - {"_subject", "_attributes"} == {
        "schema_version", "event", "outcome", "period", "rpo_seconds", "totals", "plans_seen",
        "plans_protected", "plans_needing_attention", "plans_breaching_rpo",
        "failed_unread_plans", "plans", "plans_omitted", "rpo_breaches", "rpo_breaches_omitted",
        "invocation_id", "published_at",
    }  # fmt: skip
    assert (digest["plans_omitted"], digest["rpo_breaches_omitted"]) == (0, 0)
    assert digest["published_at"].endswith("+00:00")


@pytest.mark.parametrize(("rpo", "written"), [(93600, '"rpo_seconds": 93600,'),
                                              (1.5, '"rpo_seconds": 1.5,')])  # fmt: skip
def test_the_rpo_is_written_as_it_was_set(rpo: float, written: str) -> None:
    notification = build_digest([], LAST_24_H, rpo_seconds=float(rpo), running_since=0,
                                invocation_id=None)  # fmt: skip
    assert written in notification.message


def test_plans_are_listed_needing_attention_first_then_by_name() -> None:
    entries = [
        *backup(NOW - 3600, plan="target-a", name="beta"),
        *backup(NOW - 3600, plan="target-b", name="Alpha"),
        *backup(NOW - 3600, plan="target-c"),  # no name known: by its id, first
        entry(NOW - 600, "started", "failed", plan="target-d", name="zulu", category="busy"),
    ]
    order = [line["plan_id"] for line in digest_of(entries)["plans"]]
    assert order == ["target-d", "target-c", "target-b", "target-a"]


def test_failures_without_a_plan_are_counted_apart() -> None:
    entries = [
        entry(NOW - 3600, "started", "failed", plan="p-1", category="invalid_event"),
        entry(NOW - 3500, "started", "failed", plan="p-3", category="busy"),
        replace(entry(NOW - 3000, "started", "failed", category="invalid_event"), target_id=None),
        *backup(NOW - 2000, plan="p-2"),
    ]
    digest = digest_of(entries)
    assert digest["failed_unread_plans"] == 1
    assert digest["totals"]["failed_to_start"] == 3
    assert [line["plan_id"] for line in digest["plans"]] == ["p-1", "p-3", "p-2"]  # all read


def test_failures_mended_by_a_rerun_still_need_attention() -> None:
    entries = [
        *backup(NOW - 5 * 3600, "failed", plan="a"),
        *backup(NOW - 4 * 3600, plan="a"),
        *backup(NOW - 5 * 3600, "timed_out", plan="b"),
        *backup(NOW - 4 * 3600, plan="b"),
    ]
    digest = digest_of(entries)
    assert digest["rpo_breaches"] == []
    assert digest["outcome"] == "attention"


def test_protected_plans_are_those_not_breaching() -> None:
    digest = digest_of([*backup(NOW - 3600, plan="fine"), *backup(NOW - 3600, "failed")])
    assert (digest["plans_seen"], digest["plans_protected"]) == (2, 1)


def test_a_backup_that_ends_the_moment_it_starts_is_one_run() -> None:
    [line] = digest_of(backup(NOW - 3600, takes=0))["plans"]
    assert (line["runs"], line["last_outcome"]) == (1, "succeeded")


def test_the_latest_run_is_the_latest_started_whenever_the_others_ended() -> None:
    entries = [
        entry(NOW - 3000, "started", "succeeded", checkpoint="cp-1"),
        entry(NOW - 2000, "started", "succeeded", checkpoint="cp-2"),  # still running
        entry(NOW - 1000, "completed", "failed", checkpoint="cp-1", category="item_error"),
    ]
    [line] = digest_of(entries)["plans"]
    assert (line["runs"], line["last_outcome"]) == (2, "running")


def test_a_backup_started_exactly_at_the_running_bound_is_running() -> None:
    bound = LAST_24_H.end - 9 * 3600  # digest_of's running_since
    digest = digest_of([*backup(bound, "running"), *backup(bound - 1, "running", plan="p-2")])
    assert digest["totals"]["running"] == 1


def test_a_plan_is_its_backend_project_or_credentials_and_id(deployment: Deployment) -> None:
    """The same plan id in another project, or with other credentials, is another plan."""
    other, third = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
    deployment.standin.projects.update({other: "eu-de_other", third: "eu-de_third"})
    named_secret(deployment, "team-a", deployment.standin.cloud_secret(project_id=third))
    deployment.invoke({"plans": [{"plan_id": PLAN_B, "project_id": other},
                                 {"plan_id": PLAN_B, "credentials": "team-a"},
                                 {"plan_id": PLAN_B}]})  # fmt: skip

    entries = history(deployment)

    assert sorted((e.scope, str(e.project_id)) for e in entries) == sorted([
        (other, other), ("credentials:team-a", third), ("", PROJECT_ID)])  # fmt: skip
    digest = digest_of(entries, Period(time.time() - DAY, time.time() + 60))
    assert sorted(line["project_id"] for line in digest["plans"]) == sorted(
        [other, third, PROJECT_ID])  # fmt: skip


def test_only_started_and_completed_notifications_with_a_time_are_kept() -> None:
    from csbs_trigger.history import entry_of
    from csbs_trigger.notify import Notification

    def notification(**content: Any) -> Notification:
        message = {"outcome": "ok", "published_at": "2026-12-03T07:00:00+00:00", **content}
        return Notification("subject", json.dumps(message), {})

    assert entry_of(notification(event="digest"), "d") is None
    assert entry_of(notification(event="started", published_at=None), "s") is None
    assert entry_of(notification(event="started", outcome="succeeded"), "s") is not None


def test_an_entry_names_the_ticket_else_the_trigger_and_keeps_texts_short() -> None:
    from csbs_trigger.history import MAX_MESSAGE_LENGTH, entry_of
    from csbs_trigger.notify import Notification

    def entry_for(trigger: dict[str, Any], error: dict[str, Any] | None = None) -> Entry:
        message = {"event": "started", "outcome": "failed" if error else "succeeded",
                   "published_at": "2026-12-03T07:00:00+00:00", "trigger": trigger,
                   "request": {"plan_id": "p-1"}, "error": error}  # fmt: skip
        made = entry_of(Notification("subject", json.dumps(message), {}), "key")
        assert made is not None
        return made

    ticket = entry_for({"source": "webhook", "id": "delivery-1", "reference": "CHG-42"})
    schedule = entry_for({"source": "schedule", "id": "arn:nightly#2026-12-03T02:00:00Z"})
    long = entry_for({"source": "direct", "id": "r" * 400},
                     {"category": "bad_response", "code": None, "message": "m" * 1000})  # fmt: skip

    assert (ticket.trigger, ticket.reference) == ("webhook", "CHG-42")
    assert schedule.reference == "arn:nightly#2026-12-03T02:00:00Z"
    assert schedule.target_id == "p-1"
    assert len(long.reference or "") == len(long.message or "") == MAX_MESSAGE_LENGTH == 300
    assert (long.message or "").endswith("…")


def test_a_backup_told_twice_is_one_run_and_one_start() -> None:
    """One batch naming a request twice starts one backup and tells each item."""
    told_twice = [
        entry(NOW - 3600, "started", "succeeded", checkpoint="cp-1"),
        replace(entry(NOW - 3600, "started", "succeeded", checkpoint="cp-1"), id="2"),
    ]
    digest = digest_of(told_twice)
    [line] = digest["plans"]
    assert (line["runs"], line["last_outcome"]) == (1, "running")
    assert digest["totals"]["started"] == 1


def test_a_completion_whose_start_was_not_kept_still_counts() -> None:
    [completed] = [e for e in backup(NOW - 3600) if e.event == "completed"]
    [line] = digest_of([completed])["plans"]
    assert (line["runs"], line["last_outcome"]) == (0, "succeeded")
    assert line["last_success_at"] == "2027-01-15T07:10:00+00:00"


def test_a_digest_survives_any_text_the_history_holds(deployment: Deployment) -> None:
    """A stored entry's JSON may escape a lone surrogate (or a control character) in a plan
    name: the digest still tells, every later one too (issue 25.5)."""
    now = time.time()
    for index, named in enumerate(("Sicherung\ud800", "plan\x1b[31m red")):
        [started, _] = backup(now - 3600, plan=f"p-{index}", name=named)
        raw = json.dumps(started.to_dict())  # escapes the surrogate as \ud800
        moment = datetime.fromtimestamp(started.at, UTC).isoformat(timespec="milliseconds")
        deployment.aws.client("dynamodb").put_item(TableName="csbs-trigger-history", Item={
            "pk": {"S": f"day#{moment[:10]}"}, "sk": {"S": f"{moment}#{started.id}"},
            "entry": {"S": raw}, "expires_at": {"N": str(int(now) + 3600)}})  # fmt: skip

    run_digest(deployment, {})
    run_digest(deployment, {})

    told = deployment.notifications()
    assert len(told) == 2
    names = {line["name"] for line in told[0].message["plans"]}
    assert "Sicherung\ufffd" in names
    assert "plan[31m red" in names


def test_a_history_table_that_refuses_queries_fails_the_digest_run_for_its_alarm(
    deployment: Deployment,
) -> None:
    from csbs_trigger import TriggerError

    deployment.cold_start()
    deployment.refuse(deployment.runtime.dynamodb, "Query", "AccessDeniedException")

    with pytest.raises(TriggerError, match=r"history table.*AccessDeniedException"):
        run_digest(deployment, {})
    assert deployment.notifications() == []

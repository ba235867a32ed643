"""Completion tracking over the wire: a started backup is registered, the tracker polls the
stand-in's checkpoint items until they end, and exactly one completion is published.

The stand-in's items are empty at the first poll, then ``protecting`` with rising progress, then
``available`` (or ``error`` for ``failing_servers``) after ``polls_to_finish`` polls.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from conftest import Deployment, read_event

import csbs_trigger.tracker
from csbs_trigger.aws.sns import PublishError
from csbs_trigger.aws.tracking import TrackingTable
from csbs_trigger.errors import ConfigError, TriggerError
from csbs_trigger.tracker import TrackerStopped
from support.lambda_context import FakeLambdaContext
from support.standin import PROJECT_ID, Fault

OTHER_PROJECT = "0123456789abcdef0123456789abcdef"

PLAN_A = "62171999-3df1-42f7-9513-6f9b1bea4744"  # nightly-app-servers: two servers
PLAN_B = "6a6cda7e-7b89-4b14-8e5c-3b6821a97d2c"  # backup: one server
SERVER_A = "7a32a8b5-7977-4e24-b5da-e0eb457db75b"
SERVER_B = "b2b433bf-7dd6-4a74-aa8f-85673dfbda48"
SERVER_0 = "1c960fe4-e679-421a-97cd-4f7463d2344b"  # plan B's one server
COMPLETION_KEYS = {
    "schema_version", "event", "outcome", "backend", "trigger", "invocation_id", "request",
    "plan_name",
    "checkpoint",
    "items", "summary", "error", "started_at", "finished_at", "duration_s", "polls",
    "expires_at", "published_at",
}  # fmt: skip
ITEM_KEYS = {"id", "resource_id", "resource_name", "status", "progress", "size_mb",
             "finished_at", "fail_code", "fail_reason"}  # fmt: skip


def start(deployment: Deployment, plan_id: str = PLAN_A) -> str:
    """A backup started by a direct invocation; its started notification is drained."""
    result = deployment.invoke({"plan_id": plan_id})
    deployment.notifications()
    return str(result["plans"][0]["checkpoint_id"])


def track_until_quiet(deployment: Deployment, runs: int = 6) -> list[dict[str, Any]]:
    return [deployment.track() for _ in range(runs)]


def completions(deployment: Deployment) -> list[Any]:
    delivered = deployment.notifications()
    assert all(d.attributes["event"] == "completed" for d in delivered)
    return delivered


def tracked_item(deployment: Deployment, checkpoint_id: str) -> dict[str, Any]:
    item = deployment.aws.client("dynamodb").get_item(
        TableName="csbs-trigger-tracking", Key={"checkpoint_id": {"S": checkpoint_id}}
    )
    return item["Item"]  # type: ignore[no-any-return]


def emf(output: str) -> list[tuple[str, dict[str, str]]]:
    """(metric, dimensions) of every EMF line the function printed."""
    found = []
    for line in output.splitlines():
        if line.startswith('{"_aws"'):
            blob = json.loads(line)
            [directive] = blob["_aws"]["CloudWatchMetrics"]
            [names] = directive["Dimensions"]
            for metric in directive["Metrics"]:
                found.append((metric["Name"], {name: blob[name] for name in names}))
    return found


# -- the started side ------------------------------------------------------------------------


def test_a_started_backup_is_registered_with_its_deadline(deployment: Deployment) -> None:
    deployment.now = 1_800_000_000.0
    deployment.set_env("TRACKING_DEADLINE_SECONDS", "3600")

    result = deployment.invoke(read_event("schedule.json"))

    [started] = deployment.notifications()
    assert started.message["tracking"] == {"deadline": "2027-01-15T09:00:00+00:00"}
    item = tracked_item(deployment, result["plans"][0]["checkpoint_id"])
    assert item["state"]["S"] == item["queue"]["S"] == "pending"
    assert float(item["deadline_at"]["N"]) == 1_800_000_000.0 + 3600
    assert item["plan_name"]["S"] == "nightly-app-servers"
    assert int(item["expected_items"]["N"]) == 2
    assert float(item["registered_at"]["N"]) == 1_800_000_000.0
    assert item["backend"]["S"] == "csbs"
    assert item["target_id"]["S"] == started.message["request"]["plan_id"]
    assert item["project_id"]["S"] == started.message["checkpoint"]["project_id"]
    assert "details" not in item  # nothing skipped: nothing more to follow it by
    assert json.loads(item["started"]["S"]) == {  # what started it, for whoever reads the table
        key: started.message[key]
        for key in ("trigger", "request", "invocation_id", "idempotency_key", "expires_at")
    }


def test_an_answer_naming_neither_plan_nor_project_is_registered_all_the_same(
    deployment: Deployment,
) -> None:
    """The answer's protection_plan and project_id are optional: the project is the one the
    request went to, and without servers asked for or named, none are counted on."""
    deployment.standin.fail_next("csbs", Fault(200, {"checkpoint": {"id": "c-1"}}))

    deployment.invoke({"plan_id": PLAN_B})

    [started] = deployment.notifications()
    assert started.message["tracking"]["deadline"] is not None
    item = tracked_item(deployment, "c-1")
    assert item["project_id"]["S"] == PROJECT_ID
    assert "expected_items" not in item
    assert "plan_name" not in item


def test_a_replayed_trigger_registers_once_and_completes_once(deployment: Deployment) -> None:
    event = read_event("schedule.json")
    first, replay = deployment.invoke(event), deployment.invoke(event)
    deployment.notifications()
    assert first["plans"][0]["checkpoint_id"] == replay["plans"][0]["checkpoint_id"]

    track_until_quiet(deployment)

    [completed] = completions(deployment)
    assert completed.message["outcome"] == "succeeded"
    calls = deployment.standin.calls("csbs")
    assert [call.method for call in calls].count("POST") == 1
    first_pages = [call for call in calls if call.method == "GET" and "marker" not in call.query]
    assert len(first_pages) == completed.message["polls"] == 4


def test_without_a_table_nothing_is_registered(deployment: Deployment) -> None:
    deployment.set_env("TRACKING_TABLE", None)

    deployment.invoke({"plan_id": PLAN_A})

    [started] = deployment.notifications()
    assert started.message["tracking"] is None


def test_a_tracker_without_its_table_fails_its_run_saying_which_setting_is_missing(
    deployment: Deployment,
) -> None:
    deployment.set_env("TRACKING_TABLE", None)

    with pytest.raises(ConfigError) as missing:
        deployment.track()

    assert missing.value.message == "environment variable TRACKING_TABLE is not set"


def test_a_table_that_refuses_the_registration_loses_only_the_completion(
    deployment: Deployment,
) -> None:
    deployment.refuse(deployment.runtime.dynamodb, "PutItem", "ResourceNotFoundException", times=5)

    result = deployment.invoke({"plan_id": PLAN_B})

    [started] = deployment.notifications()
    assert result["outcome"] == started.message["outcome"] == "succeeded"
    assert started.message["tracking"]["deadline"] is None
    assert "ResourceNotFoundException" in started.message["tracking"]["error"]


# -- one checkpoint's life -------------------------------------------------------------------


def test_a_backup_is_reported_once_when_every_server_is_available(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint_id = start(deployment)

    runs = track_until_quiet(deployment)

    # Poll 1: no items yet; 2 and 3: protecting; 4: available. Then nothing is due.
    assert [run.get("running", 0) for run in runs] == [1, 1, 1, 0, 0, 0]
    assert [run.get("succeeded", 0) for run in runs] == [0, 0, 0, 1, 0, 0]
    [completed] = completions(deployment)
    message = completed.message
    assert set(message) == COMPLETION_KEYS
    assert (message["event"], message["outcome"], message["error"]) == (
        "completed",
        "succeeded",
        None,
    )
    assert message["checkpoint"] == {"id": checkpoint_id}
    assert message["request"]["plan_id"] == PLAN_A
    assert message["trigger"]["source"] == "direct"
    assert message["summary"] == {"servers": 2, "available": 2, "failed": 0, "running": 0}
    assert message["polls"] == 4
    assert {item["resource_id"] for item in message["items"]} == {SERVER_A, SERVER_B}
    assert all(set(item) == ITEM_KEYS for item in message["items"])
    assert all(item["progress"] == 100.0 and item["size_mb"] == 1024.0 for item in message["items"])
    assert completed.attributes == {
        "event": "completed", "outcome": "succeeded", "backend": "csbs", "plan_id": PLAN_A,
    }  # fmt: skip
    assert completed.subject is not None
    assert completed.subject.startswith(
        "CSBS backup completed for plan nightly-app-servers (2 servers, "
    )
    assert tracked_item(deployment, checkpoint_id)["state"]["S"] == "done"
    assert "queue" not in tracked_item(deployment, checkpoint_id)
    metrics = emf(capsys.readouterr().out)
    for name in ("BackupsStarted", "BackupsCompleted", "BackupDurationSeconds"):
        assert (name, {}) in metrics
        assert (name, {"backend": "csbs"}) in metrics  # each service on its own too


def test_a_server_in_error_fails_the_backup_and_says_which(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment.standin.failing_servers = {SERVER_B}
    start(deployment)

    track_until_quiet(deployment)

    [completed] = completions(deployment)
    message = completed.message
    assert message["outcome"] == "failed"
    assert message["error"]["category"] == "item_error"
    assert message["error"]["code"] == "2001"
    assert (
        "1 of 2 servers failed (app-server-2: The server is stopped)" in message["error"]["message"]
    )
    failed = {item["resource_id"]: item for item in message["items"]}[SERVER_B]
    assert (failed["status"], failed["fail_reason"]) == ("error", "The server is stopped")
    assert completed.attributes["error_category"] == "item_error"
    assert completed.subject == "CSBS backup failed for plan nightly-app-servers (1 of 2 servers)"
    metrics = emf(capsys.readouterr().out)
    assert ("BackupsFailed", {"error_category": "item_error"}) in metrics
    assert ("BackupsFailed", {}) in metrics  # what the alarm watches
    assert ("BackupsFailed", {"backend": "csbs"}) in metrics


def test_past_the_deadline_it_is_timed_out_with_the_last_state(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment.now = time.time()
    deployment.set_env("TRACKING_DEADLINE_SECONDS", "5")
    deployment.standin.polls_to_finish = 10
    start(deployment)
    deployment.track()  # no items yet
    deployment.track()  # protecting
    assert deployment.notifications() == []

    deployment.now += 6
    result = deployment.track()

    [completed] = completions(deployment)
    message = completed.message
    assert (result["timed_out"], message["outcome"]) == (1, "timed_out")
    assert message["error"]["category"] == "timeout"
    assert message["summary"] == {"servers": 2, "available": 0, "failed": 0, "running": 2}
    assert {item["status"] for item in message["items"]} == {"protecting"}
    assert completed.attributes["error_category"] == "timeout"
    assert "timed out" in (completed.subject or "")
    metrics = emf(capsys.readouterr().out)
    assert ("BackupsTimedOut", {}) in metrics
    assert ("BackupsTimedOut", {"backend": "csbs"}) in metrics
    assert deployment.track() == {"due": 0}


def test_an_empty_item_list_past_the_deadline_is_timed_out(deployment: Deployment) -> None:
    deployment.now = time.time()
    deployment.set_env("TRACKING_DEADLINE_SECONDS", "1")
    start(deployment)

    deployment.now += 2
    deployment.track()  # the first poll: no items yet

    [completed] = completions(deployment)
    assert completed.message["outcome"] == "timed_out"
    assert completed.message["items"] == []
    assert "0 of 2 servers finished" in completed.message["error"]["message"]
    assert completed.message["summary"] == {"servers": 2, "available": 0, "failed": 0, "running": 2}


def test_a_deleted_checkpoint_ends_as_not_found(deployment: Deployment) -> None:
    checkpoint_id = start(deployment)
    deployment.track()
    deployment.standin.checkpoints[checkpoint_id].deleted = True

    once = deployment.track()  # one 404 may be the gateway's passing fault
    assert (once["running"], deployment.notifications()) == (1, [])
    assert tracked_item(deployment, checkpoint_id)["misses"]["N"] == "1"
    result = deployment.track()

    [completed] = completions(deployment)
    assert (result["failed"], completed.message["outcome"]) == (1, "failed")
    assert completed.message["error"]["category"] == "not_found"
    assert completed.message["error"]["code"] == "CSBS.3001"
    assert completed.attributes["error_category"] == "not_found"
    assert completed.subject == "CSBS backup failed (not_found) for plan nightly-app-servers"


def test_throttling_waits_for_the_next_poll(deployment: Deployment) -> None:
    deployment.standin.polls_to_finish = 0
    start(deployment)
    deployment.track()  # no items yet
    throttled = Fault(429, {"error_code": "APIGW.0308", "error_msg": "throttled"})
    deployment.standin.fail_next("csbs", throttled, throttled, throttled)

    waited = deployment.track()

    assert waited.get("running") == 1
    assert deployment.notifications() == []
    assert deployment.track()["succeeded"] == 1
    assert len(completions(deployment)) == 1


def test_a_revoked_token_is_renewed_and_tracking_goes_on(deployment: Deployment) -> None:
    deployment.standin.polls_to_finish = 0
    start(deployment)
    deployment.track()
    deployment.standin.revoke_tokens()

    assert deployment.track()["succeeded"] == 1
    assert len(deployment.standin.calls("iam")) == 2


def test_refused_credentials_stop_the_run_without_ending_any_backup(
    deployment: Deployment,
) -> None:
    start(deployment)
    start(deployment, PLAN_B)
    password, deployment.standin.password = deployment.standin.password, "rotated-elsewhere"
    deployment.standin.revoke_tokens()

    with pytest.raises(TrackerStopped, match="auth_failed"):
        deployment.track()

    assert deployment.notifications() == []
    assert len(deployment.standin.calls("iam")) == 2  # the first token, one refused login
    deployment.standin.password = password  # IAM takes the secret's password again
    deployment.cold_start()
    with pytest.raises(TrackerStopped, match="not tried again until the secret changes"):
        deployment.track()  # the same secret: not sent again within the hour
    assert len(deployment.standin.calls("iam")) == 2
    deployment.now = time.time() + 3601  # the hour's one try
    track_until_quiet(deployment)
    assert len(completions(deployment)) == 2


def test_a_failed_publish_is_published_by_the_next_run_without_polling_again(
    deployment: Deployment,
) -> None:
    deployment.standin.polls_to_finish = 0
    checkpoint_id = start(deployment)
    deployment.track()
    deployment.refuse(deployment.runtime.sns, "Publish", "InternalError")

    with pytest.raises(PublishError) as stopped:
        deployment.track()
    assert str(stopped.value) == (
        "1 of the run's completion notifications not published: "
        "SNS refused the notification (InternalError)"
    )
    assert tracked_item(deployment, checkpoint_id)["state"]["S"] == "completing"
    polls = len(deployment.standin.calls("csbs"))

    deployment.now = time.time() + 3600  # the failed run's claim has expired
    assert deployment.track()["succeeded"] == 1

    assert len(completions(deployment)) == 1
    assert len(deployment.standin.calls("csbs")) == polls
    assert tracked_item(deployment, checkpoint_id)["state"]["S"] == "done"


# -- overlapping runs ------------------------------------------------------------------------


def test_a_run_skips_a_checkpoint_another_run_is_polling(deployment: Deployment) -> None:
    deployment.standin.polls_to_finish = 0
    start(deployment)
    deployment.track()  # no items yet: the next poll finds them available
    results: list[dict[str, Any]] = []

    deployment.overlapping(lambda: results.append(deployment.track()), Fault(passthrough=True))

    first, second = results[1], results[0]  # the second run ends first: it skipped
    assert second == {"due": 1, "skipped": 1}
    assert first["succeeded"] == 1
    assert len(completions(deployment)) == 1


def test_a_run_whose_claim_expired_mid_poll_does_not_report(deployment: Deployment) -> None:
    deployment.standin.polls_to_finish = 0
    start(deployment)
    deployment.track()
    results: list[dict[str, Any]] = []

    def run() -> None:
        if results or deployment.now is not None:  # the second run: long after the first began
            deployment.now = time.time() + 3600
        else:
            deployment.now = time.time()
        results.append(deployment.track())

    deployment.overlapping(run, Fault(passthrough=True))

    takeover, stale = results
    assert takeover["succeeded"] == 1
    assert stale.get("skipped") == 1
    assert "succeeded" not in stale
    assert len(completions(deployment)) == 1


# -- many checkpoints ------------------------------------------------------------------------


class RunningDown(FakeLambdaContext):
    """An invocation whose time runs out after ``polls`` CSBS requests."""

    def __init__(self, deployment: Deployment, polls: int) -> None:
        super().__init__(function_name="csbs-trigger-tracker")
        self._deployment, self._at_start = deployment, len(deployment.standin.calls("csbs"))
        self._polls = polls

    def get_remaining_time_in_millis(self) -> int:
        made = len(self._deployment.standin.calls("csbs")) - self._at_start
        return 60_000 if made < self._polls else 5_000


def test_pending_checkpoints_are_paged_and_left_to_the_next_run(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csbs_trigger.tracker, "PAGE_SIZE", 2)
    deployment.set_env("MAX_CONCURRENCY", "1")
    started = [start(deployment, PLAN_B) for _ in range(5)]

    short = deployment.track(RunningDown(deployment, polls=3))
    whole = deployment.track()

    assert short["running"] == 3
    assert short["more_due"] is True
    assert whole["due"] == 5
    assert whole["running"] == 5
    assert "more_due" not in whole
    polled = [call.query["checkpoint_id"][0] for call in deployment.standin.calls("csbs")
              if call.method == "GET"]  # fmt: skip
    assert polled[:3] == started[:3]
    assert polled[3:5] == started[3:]  # the next run begins with those polled longest ago


def test_a_checkpoint_of_more_items_than_a_page_is_read_whole(deployment: Deployment) -> None:
    plan_id = str(uuid.uuid4())
    servers = {str(uuid.uuid4()): f"server-{n:03}" for n in range(101)}
    deployment.standin.add_plan(plan_id, "large", servers)
    deployment.standin.polls_to_finish = 0
    start(deployment, plan_id)

    deployment.track()
    deployment.track()

    [completed] = completions(deployment)
    assert completed.message["summary"]["servers"] == 101
    assert {item["resource_id"] for item in completed.message["items"]} == set(servers)


def test_refused_webhooks_are_counted_by_status(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    forged = {"rawPath": "/webhooks/generic", "requestContext": {"http": {"method": "POST"}},
              "headers": {"content-type": "application/json"}, "body": "{}"}  # fmt: skip
    unknown = {**forged, "rawPath": "/webhooks/nobody"}

    statuses = [deployment.invoke_webhook(event)["statusCode"] for event in (forged, unknown)]

    assert statuses == [401, 404]
    metrics = emf(capsys.readouterr().out)
    assert ("TriggerRejected", {"status": "401"}) in metrics
    assert ("TriggerRejected", {"status": "404"}) in metrics
    assert metrics.count(("TriggerRejected", {})) == 2


# -- what the mutation runs found untested (issue 16) --------------------------------------------


def test_a_backup_is_polled_again_only_once_its_last_poll_is_the_interval_old(
    deployment: Deployment,
) -> None:
    deployment.now = 1_800_000_000.0
    deployment.set_env("TRACKING_POLL_INTERVAL_SECONDS", "300")
    checkpoint_id = start(deployment)
    deployment.now += 300  # registered this long ago: due
    assert deployment.track() == {"due": 1, "running": 1}

    deployment.now += 299
    assert deployment.track() == {"due": 0}
    deployment.now += 1
    assert deployment.track() == {"due": 1, "running": 1}
    assert float(tracked_item(deployment, checkpoint_id)["polled_at"]["N"]) == deployment.now


@pytest.mark.parametrize("operation", ["Query", "UpdateItem"])
def test_a_table_that_fails_during_a_run_fails_the_run(
    deployment: Deployment, operation: str
) -> None:
    """For the tracker's dead-letter queue and alarm: nothing is reported, nothing is lost."""
    checkpoint_id = start(deployment)
    deployment.refuse(deployment.runtime.dynamodb, operation, "InternalServerError", times=10)

    with pytest.raises(TrackerStopped, match=r"^unavailable: the tracking table could not be used"):
        deployment.track()

    assert deployment.notifications() == []
    assert tracked_item(deployment, checkpoint_id)["state"]["S"] == "pending"


def test_times_durations_progress_and_expiry_are_what_the_polls_saw(
    deployment: Deployment,
) -> None:
    deployment.now = 1_800_000_000.0
    deployment.standin.polls_to_finish = 2
    checkpoint_id = start(deployment, PLAN_B)
    deployment.now += 60
    deployment.track()  # no items
    deployment.now += 60
    deployment.track()  # protecting, half-way
    progress = json.loads(tracked_item(deployment, checkpoint_id)["progress"]["S"])
    assert progress == {"servers": 1, "available": 0, "failed": 0, "running": 1}
    finished = "2027-01-15T08:04:10"  # CSBS writes UTC without an offset
    item = {
        "id": "i-1",
        "checkpoint_id": checkpoint_id,
        "resource_id": SERVER_0,
        "status": "available",
        "extend_info": {"finished_at": finished, "progress": "100"},
    }
    deployment.standin.fail_next("csbs", Fault(200, {"checkpoint_items": [item]}))
    deployment.now += 600

    deployment.track()

    [completed] = completions(deployment)
    message = completed.message
    assert message["started_at"] == "2027-01-15T08:00:00+00:00"
    assert message["finished_at"] == "2027-01-15T08:04:10+00:00"
    assert message["duration_s"] == 250
    assert message["polls"] == 3
    done = tracked_item(deployment, checkpoint_id)
    assert float(done["finished_at"]["N"]) == deployment.now
    assert int(done["expires_at"]["N"]) == int(deployment.now) + 30 * 24 * 3600
    assert done["message_id"]["S"] == completed.message_id


def test_a_record_without_expected_items_is_polled_until_its_items_end(
    deployment: Deployment,
) -> None:
    """Registered before the answer named servers (or by an older release): every listed item
    ending is the end."""
    deployment.standin.polls_to_finish = 0
    checkpoint_id = start(deployment)
    deployment.aws.client("dynamodb").update_item(
        TableName="csbs-trigger-tracking", Key={"checkpoint_id": {"S": checkpoint_id}},
        UpdateExpression="REMOVE expected_items",
    )  # fmt: skip

    assert deployment.track() == {"due": 1, "running": 1}  # an empty list is no end
    assert deployment.track() == {"due": 1, "succeeded": 1}

    [completed] = completions(deployment)
    assert completed.message["summary"] == {"servers": 2, "available": 2, "failed": 0,
                                            "running": 0}  # fmt: skip


def test_why_a_poll_failed_is_kept_until_a_poll_answers(deployment: Deployment) -> None:
    checkpoint_id = start(deployment)
    maintenance = Fault(503, {"error_code": "APIGW.0201", "error_msg": "maintenance"})
    deployment.standin.fail_next("csbs", maintenance, maintenance, maintenance)

    assert deployment.track() == {"due": 1, "running": 1}

    failed = tracked_item(deployment, checkpoint_id)
    assert json.loads(failed["last_error"]["S"]) == {
        "category": "unavailable", "message": "CSBS answered HTTP 503: maintenance",
    }  # fmt: skip
    assert (failed["misses"]["N"], "progress" in failed) == ("0", False)
    deployment.track()
    answered = tracked_item(deployment, checkpoint_id)
    assert "last_error" not in answered
    assert json.loads(answered["progress"]["S"])["servers"] == 2


@pytest.mark.parametrize("keys", ["password", "access keys"])
def test_a_backup_is_polled_in_the_project_it_was_started_in(
    deployment: Deployment, keys: str
) -> None:
    standin = deployment.standin
    standin.projects[OTHER_PROJECT] = "eu-de_other"
    secret = standin.cloud_secret if keys == "password" else standin.access_key_secret
    deployment.set_secret(secret())
    deployment.cold_start()
    standin.polls_to_finish = 0
    checkpoint_id = start(deployment, PLAN_B)
    deployment.track()  # the first poll: no items yet
    deployment.set_secret(secret(project_id=OTHER_PROJECT))  # the secret now names another
    deployment.cold_start()
    polls_before = len(standin.calls("csbs"))

    assert deployment.track()["succeeded"] == 1

    [completed] = deployment.notifications()
    assert completed.message["checkpoint"]["id"] == checkpoint_id
    polls = standin.calls("csbs")[polls_before:]
    assert [call.path for call in polls] == [f"/v1/{PROJECT_ID}/checkpoint_items"]
    if keys == "password":
        [*_, login] = standin.calls("iam")
        assert login.json()["auth"]["scope"]["project"] == {"id": PROJECT_ID}
    else:
        assert polls[0].headers["X-Project-Id"] == PROJECT_ID


def test_a_timed_out_backup_whose_last_poll_failed_reports_what_the_poll_before_saw(
    deployment: Deployment,
) -> None:
    deployment.now = 1_800_000_000.0
    deployment.set_env("TRACKING_DEADLINE_SECONDS", "60")
    checkpoint_id = start(deployment)
    half = [{"id": "i-1", "checkpoint_id": checkpoint_id, "resource_id": SERVER_A,
             "status": "available"},
            {"id": "i-2", "checkpoint_id": checkpoint_id, "resource_id": SERVER_B,
             "status": "protecting"}]  # fmt: skip
    deployment.standin.fail_next("csbs", Fault(200, {"checkpoint_items": half}))
    deployment.track()
    maintenance = Fault(503, {"error_code": "APIGW.0201", "error_msg": "maintenance"})
    deployment.standin.fail_next("csbs", maintenance, maintenance, maintenance)
    deployment.now += 61

    deployment.track()

    [completed] = completions(deployment)
    assert completed.message["outcome"] == "timed_out"
    assert completed.message["summary"] == {"servers": 2, "available": 1, "failed": 0,
                                            "running": 1}  # fmt: skip
    assert completed.message["items"] == []


def test_a_checkpoint_is_registered_once_and_expires_a_month_after_its_deadline(
    deployment: Deployment,
) -> None:
    deployment.now = 1_800_000_000.0
    checkpoint_id = start(deployment)
    deployment.track()
    table = deployment.runtime.tracking
    assert table is not None
    [tracked] = table.due(deployment.now, limit=10)[0]

    assert table.register(tracked.registration) is False  # followed already: kept as it is

    item = tracked_item(deployment, checkpoint_id)
    assert (item["polls"]["N"], item["state"]["S"]) == ("1", "pending")
    deadline_at = float(item["deadline_at"]["N"])
    assert int(item["expires_at"]["N"]) == int(deadline_at) + 30 * 24 * 3600


class _Failing:
    """A DynamoDB client whose every call raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self._error = error

    def __getattr__(self, operation: str) -> Any:
        def fail(**_: Any) -> None:
            raise self._error

        return fail


@pytest.mark.parametrize(
    ("error", "message"),
    [(ClientError({}, "Query"), "the tracking table could not be used (Unknown)"),
     (ClientError({"Error": {}}, "Query"), "the tracking table could not be used (Unknown)"),
     (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"),
      "the tracking table could not be reached (EndpointConnectionError)")],
    ids=["no error at all", "an error without a code", "no connection"],
)  # fmt: skip
def test_a_table_that_fails_says_what_failed(error: Exception, message: str) -> None:
    table = TrackingTable(_Failing(error), "csbs-trigger-tracking")  # type: ignore[arg-type]

    with pytest.raises(TriggerError) as raised:
        table.due(0.0, limit=1)

    assert raised.value.message == message
    assert raised.value.category.value == "unavailable"


def test_a_completion_names_the_tracker_invocation_that_reported_it(
    deployment: Deployment,
) -> None:
    deployment.standin.polls_to_finish = 0
    start(deployment)
    deployment.track()
    context = FakeLambdaContext(function_name="csbs-trigger-tracker", aws_request_id="run-42")

    deployment.track(context)

    [completed] = completions(deployment)
    assert completed.message["invocation_id"] == "run-42"


class StoppedClockContext(FakeLambdaContext):
    """A context whose remaining time stands still: a run that has exactly this much time."""

    def get_remaining_time_in_millis(self) -> int:
        return int(self.timeout_seconds * 1000)


@pytest.mark.parametrize(("remaining", "polled"), [(12.999, False), (13.0, True)])
def test_a_run_polls_only_while_a_poll_and_the_publish_still_fit(
    deployment: Deployment, remaining: float, polled: bool
) -> None:
    """A checkpoint takes up to 10 s to poll and report, and 3 s stay for the publish."""
    start(deployment)
    before = len(deployment.standin.calls("csbs"))

    result = deployment.track(
        StoppedClockContext("csbs-trigger-tracker", timeout_seconds=remaining)
    )

    assert (len(deployment.standin.calls("csbs")) > before) is polled
    assert result["due"] == (1 if polled else 0)


def test_one_run_pages_through_every_due_backup(deployment: Deployment) -> None:
    """More backups than one page of the due index (50): each polled once, none left over."""
    plans = [{"plan_id": PLAN_A, "resources": [server]} for server in (SERVER_A, SERVER_B)]
    for _ in range(26):
        deployment.invoke({"plans": plans})  # 52 backups, two a firing
    deployment.notifications()
    polls_before = len(deployment.standin.calls("csbs"))

    result = deployment.track()

    assert result["due"] == 52
    assert "more_due" not in result
    assert len(deployment.standin.calls("csbs")) - polls_before == 52

"""Promises an independent mutation audit found untested (issue 25.11): each test here fails on
the mutant named in its docstring."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import plan_worker
import pytest
from conftest import Deployment
from hypothesis import given
from hypothesis import strategies as st
from test_cbr import SERVER_1, VAULT
from test_completion_tracking import completions, emf
from test_digest import LAST_24_H, NOW, backup, digest_of, entry
from test_scale_out import FIRING, many_plans

import csbs_trigger.tracker
from csbs_trigger.aws.history import HistoryTable
from csbs_trigger.aws.sqs import MAX_VISIBILITY_SECONDS, Queue
from csbs_trigger.aws.tracking import TrackingTable
from csbs_trigger.history import entry_of
from csbs_trigger.notify import Notification
from csbs_trigger.settings import Settings
from csbs_trigger.text import shown, sns_subject
from support.lambda_context import FakeLambdaContext
from support.standin import Fault

PLAN_A = "62171999-3df1-42f7-9513-6f9b1bea4744"
PLAN_B = "6a6cda7e-7b89-4b14-8e5c-3b6821a97d2c"
TABLE = "csbs-trigger-tracking"

# -- tracking ------------------------------------------------------------------------------------


def test_a_checkpoint_seen_on_an_earlier_page_is_not_polled_again_in_the_same_run(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the clock standing still during the run, a polled checkpoint is due again at once
    and moves behind the others, onto a later page of the due index: the run passes it over
    (mutant: the ``seen`` filter dropped)."""
    monkeypatch.setattr(csbs_trigger.tracker, "PAGE_SIZE", 2)
    deployment.now = time.time()
    for _ in range(5):
        deployment.invoke({"plan_id": PLAN_B})
    deployment.now += 1

    assert deployment.track()["due"] == 5

    assert [created.polls for created in deployment.standin.checkpoints.values()] == [1] * 5


def claimable(deployment: Deployment) -> tuple[TrackingTable, Any]:
    deployment.invoke({"plan_id": PLAN_B})
    table = TrackingTable(deployment.aws.client("dynamodb"), TABLE)
    [tracked], _ = table.due(time.time() + 60, limit=10)
    return table, tracked


def test_a_claim_made_on_stale_state_is_refused(deployment: Deployment) -> None:
    """Mutant: the claim's condition ignores ``polled_at``: a run that read the index before
    another polled the checkpoint takes it once more."""
    table, stale = claimable(deployment)
    now = time.time()
    assert table.claim(stale, "run-1", now=now, lease_until=now + 60)
    assert table.release(stale, "run-1", None, failure=None, misses=0)

    assert not table.claim(stale, "run-2", now=now + 1, lease_until=now + 61)


def test_only_the_holder_of_the_claim_completes_and_only_a_completing_one_finishes(
    deployment: Deployment,
) -> None:
    """Mutants: ``complete`` without its claim check; ``finish`` without its state check."""
    table, tracked = claimable(deployment)
    now = time.time()
    assert table.claim(tracked, "run-1", now=now, lease_until=now + 60)

    assert not table.finish(tracked, "run-1", now=now, message_id="m-0")  # not completing
    assert not table.complete(tracked, "run-2", {"subject": "x"})  # not its claim
    assert table.complete(tracked, "run-1", {"subject": "x"})
    assert table.finish(tracked, "run-1", now=now, message_id="m-1")


def test_a_timed_out_backup_has_no_duration_metric(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mutant: ``BackupDurationSeconds`` emitted for a backup that never finished."""
    deployment.standin.polls_to_finish = 10**6
    deployment.now = time.time()
    deployment.invoke({"plan_id": PLAN_B})
    deployment.now += 9 * 3600  # past the default 8 h deadline
    capsys.readouterr()

    assert deployment.track()["timed_out"] == 1

    metrics = [name for name, _ in emf(capsys.readouterr().out)]
    assert "BackupsTimedOut" in metrics
    assert "BackupDurationSeconds" not in metrics


def test_the_documented_defaults() -> None:
    """Mutants: the poll interval's default (300 s) or the RPO's (26 h) changed unnoticed."""
    settings = Settings.from_env({"NOTIFICATION_TOPIC_ARN": "arn:aws:sns:eu-central-1:1:t"})

    assert settings.tracking_poll_interval_seconds == 300
    assert settings.digest_rpo_seconds == 26 * 3600


# -- CBR -----------------------------------------------------------------------------------------


def test_a_failed_cbr_backup_has_its_reason_and_its_finish_time(deployment: Deployment) -> None:
    """CBR stamps a task with the minute it began, so the task list is asked from well before
    the request (mutant: from the request's own second, missing the reason); a backup row in
    ``error`` is finished (mutant: only ``available`` rows have a finish time). The function's
    clock runs 30 s ahead of CBR's, as clocks do."""
    deployment.standin.polls_to_finish = 1
    deployment.standin.failing_servers.add(SERVER_1)
    deployment.now = time.time() + 30
    deployment.invoke({"vault_id": VAULT})
    deployment.notifications()
    for _ in range(3):
        deployment.track()

    [completed] = completions(deployment)
    [failed] = [item for item in completed.message["items"] if item["status"] == "error"]
    assert failed["fail_reason"] == "The server has stopped."
    assert failed["fail_code"] == "BackupService.7102"
    assert failed["finished_at"] is not None


# -- history and digest --------------------------------------------------------------------------


def test_a_replayed_notification_is_one_history_entry() -> None:
    """Mutant: the entry id also names the publish time, so a replay published later would be
    a second entry."""
    content = {"schema_version": 1, "event": "started", "outcome": "succeeded",
               "backend": "csbs", "request": {"plan_id": PLAN_A}, "checkpoint": {"id": "c-1"},
               "error": None, "trigger": {"source": "schedule", "id": "s-1"},
               "published_at": "2026-12-01T02:00:00+00:00"}  # fmt: skip
    later = {**content, "published_at": "2026-12-01T02:07:00+00:00"}
    first = entry_of(Notification("s", json.dumps(content), {}), "schedule:s-1#0")
    replay = entry_of(Notification("s", json.dumps(later), {}), "schedule:s-1#0")

    assert first is not None
    assert replay is not None
    assert first.id == replay.id


def test_the_history_is_read_to_the_last_day_of_the_window(deployment: Deployment) -> None:
    """Mutant: the day loop stops before the day the window ends on."""
    table = HistoryTable(deployment.aws.client("dynamodb"), "csbs-trigger-history")
    day_one = datetime(2026, 12, 1, 22, tzinfo=UTC).timestamp()
    for at in (day_one, day_one + 4 * 3600):  # 22:00 on the 1st, 02:00 on the 2nd
        table.record(entry(at, "started", "succeeded", plan=f"p-{at}"))

    found = table.entries(day_one - 60, day_one + 5 * 3600)

    assert [item.at for item in found] == [day_one, day_one + 4 * 3600]


def test_a_digest_lists_only_its_periods_failures() -> None:
    """Mutant: failures before the period listed again in every later digest."""
    entries = [*backup(LAST_24_H.start - 3600, "failed"), *backup(NOW - 3600, "failed")]

    [line] = digest_of(entries)["plans"]

    assert len(line["failures"]) == 1
    assert line["failures"][0]["time"] == datetime.fromtimestamp(NOW - 3600 + 600, UTC).isoformat(
        timespec="seconds"
    )


# -- plan queue and worker -----------------------------------------------------------------------


def test_a_queued_plan_whose_publish_failed_comes_back(deployment: Deployment) -> None:
    """Mutant: a plan whose notification SNS refused is acknowledged, and never told."""
    deployment.invoke({"plans": many_plans(deployment, 21), **FIRING})
    deployment.cold_start()
    deployment.refuse(deployment.runtime.sns, "Publish", "InternalError", times=1000)

    answers = deployment.work()

    assert sum(len(answer["batchItemFailures"]) for answer in answers) == 21
    assert deployment.queued() == 21


def test_an_unreadable_message_whose_notice_sns_refused_comes_back(deployment: Deployment) -> None:
    """Told once, but told: until SNS takes its notification, a poison message stays."""
    deployment.refuse(deployment.runtime.sns, "Publish", "InternalError", times=1000)
    record = {"messageId": "m-1", "receiptHandle": "r-1", "body": "not a plan",
              "attributes": {"ApproximateReceiveCount": "1"}, "eventSource": "aws:sqs"}  # fmt: skip
    context = FakeLambdaContext(function_name="csbs-trigger-plan-worker")

    answer = plan_worker.handler({"Records": [record]}, context)

    assert answer == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}


def test_a_plan_another_worker_runs_comes_back(deployment: Deployment) -> None:
    """Mutant: a plan another worker holds right now is acknowledged (lost if that worker
    dies)."""
    deployment.invoke({"plans": many_plans(deployment, 21), **FIRING})
    sqs = deployment.aws.client("sqs")
    [message] = sqs.receive_message(QueueUrl=deployment.plan_queue_url, MaxNumberOfMessages=1,
                                    MessageSystemAttributeNames=["All"])["Messages"]  # fmt: skip
    record = {"messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"],
              "body": message["Body"], "attributes": message["Attributes"],
              "eventSource": "aws:sqs"}  # fmt: skip
    answers: list[dict[str, Any]] = []

    def deliver() -> None:
        context = FakeLambdaContext(function_name="csbs-trigger-plan-worker")
        answers.append(plan_worker.handler({"Records": [record]}, context))

    deployment.overlapping(deliver, Fault(200, passthrough=True))

    assert sorted(len(answer["batchItemFailures"]) for answer in answers) == [0, 1]


class FakeSqs:
    """SendMessageBatch and ChangeMessageVisibility as SQS answers them, with failures a test
    sets: moto never fails part of a batch."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.sent: list[list[str]] = []
        self.visibility: list[int] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> Any:
        from botocore.exceptions import ClientError

        self.sent.append([entry["MessageBody"] for entry in Entries])
        answer = self.answers.pop(0) if self.answers else []
        if answer == "throttled":
            raise ClientError({"Error": {"Code": "ThrottlingException"}}, "SendMessageBatch")
        failed = [{"Id": entry["Id"], "Code": "InternalError", "SenderFault": False}
                  for entry in Entries if entry["MessageBody"] in answer]  # fmt: skip
        return {"Successful": [], "Failed": failed}

    def change_message_visibility(
        self,
        QueueUrl: str,
        ReceiptHandle: str,
        VisibilityTimeout: int,
    ) -> None:
        self.visibility.append(VisibilityTimeout)


def test_a_partly_failed_batch_resends_only_the_entries_that_failed() -> None:
    sqs = FakeSqs([["b"]])
    assert Queue(sqs, "url").send(["a", "b", "c"]) == 0  # type: ignore[arg-type]
    assert sqs.sent == [["a", "b", "c"], ["b"]]


def test_a_transient_sqs_failure_is_tried_again_each_round() -> None:
    sqs = FakeSqs(["throttled", "throttled"])
    assert Queue(sqs, "url").send(["a"]) == 0  # type: ignore[arg-type]
    assert sqs.sent == [["a"]] * 3
    assert Queue(FakeSqs(["throttled"] * 3), "url").send(["a"]) == 1  # type: ignore[arg-type]


def test_a_hold_beyond_sqs_twelve_hours_is_clamped() -> None:
    sqs = FakeSqs([])
    queue = Queue(sqs, "url")  # type: ignore[arg-type]
    queue.hold_back("r", 2 * 86_400)
    queue.hold_back("r", -5)
    assert sqs.visibility == [MAX_VISIBILITY_SECONDS, 0]
    assert MAX_VISIBILITY_SECONDS == 12 * 3600


# -- subjects ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "subject"), [
    ("plan\x7fname", "plan?name"),
    ("plan  \t\n name", "plan name"),
    ("~ok", "~ok"),
    ("Täglich~", "Taeglich~"),  # a tilde beside text that is not ASCII
    ("n" * 99, "n" * 99),  # as long as SNS takes: whole
    ("n" * 100, "n" * 96 + "..."),
])  # fmt: skip
def test_a_subject_has_no_del_and_folds_its_whitespace(text: str, subject: str) -> None:
    assert sns_subject(text) == subject


_PRINTABLE_ASCII = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=120)


@given(st.one_of(st.text(max_size=120), _PRINTABLE_ASCII))
def test_any_text_becomes_a_subject_sns_takes(text: str) -> None:
    subject = sns_subject(text)
    assert all(" " <= char <= "~" for char in subject)
    assert len(subject) <= 99
    assert "  " not in subject
    assert subject == subject.strip()
    if text.isascii() and text.isprintable() and len(text) <= 99:  # only spaces folded
        assert subject == " ".join(text.split())


@given(st.one_of(st.text(max_size=40), _PRINTABLE_ASCII))
def test_shown_text_keeps_what_a_person_can_read_and_drops_the_rest(text: str) -> None:
    unshown = {*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0)}
    [kept] = shown([text])
    kept.encode()  # always encodes
    assert kept == "".join(
        "\ufffd" if 0xD800 <= ord(char) <= 0xDFFF else char
        for char in text
        if ord(char) not in unshown
    )


# -- CBR, as its mutation run found -------------------------------------------------------------


def test_a_restore_point_shown_in_part_says_how_many_resources_were_left_out() -> None:
    from csbs_trigger.cloud.cbr import RestorePoint
    from csbs_trigger.models import ProtectedResource

    servers = tuple(ProtectedResource(f"s-{n}", "OS::Nova::Server", f"app-{n}", {})
                    for n in range(3))  # fmt: skip
    point = RestorePoint("p-1", "protecting", None, None, "v-1", "vault", servers, (), None)

    whole, cut = point.to_dict()["vault"], point.to_dict(keep=1)["vault"]

    assert [r["id"] for r in whole["resources"]] == ["s-0", "s-1", "s-2"]
    assert "resources_omitted" not in whole
    assert (whole["id"], whole["name"]) == ("v-1", "vault")
    assert [r["id"] for r in cut["resources"]] == ["s-0"]
    assert cut["resources_omitted"] == 2


def test_a_skipped_resource_keeps_its_name_and_a_finished_backup_its_time(
    deployment: Deployment,
) -> None:
    deployment.standin.vaults[VAULT].busy = {SERVER_1}
    deployment.standin.polls_to_finish = 1
    deployment.invoke({"vault_id": VAULT})
    deployment.notifications()
    for _ in range(3):
        deployment.track()

    [completed] = completions(deployment)
    items = {item["status"]: item for item in completed.message["items"]}
    assert items["skipped"]["resource_name"] == "ecs-1f0f-0002"
    assert items["available"]["finished_at"] is not None


def test_a_servers_disk_backups_never_stand_for_a_server_not_yet_listed(
    deployment: Deployment,
) -> None:
    """Two rows a page, each server followed by its three disks (each a volume of its own):
    paging stops at the page with the last server, never earlier because of the disks, nor
    later (three GETs)."""
    deployment.standin.polls_to_finish = 1
    deployment.standin.disks_per_server = 3
    deployment.standin.cbr_page_limit = 2
    deployment.invoke({"vault_id": VAULT})
    deployment.notifications()
    deployment.track()  # nothing listed yet
    since = len(deployment.standin.calls("cbr"))

    assert deployment.track()["succeeded"] == 1

    lists = [call for call in deployment.standin.calls("cbr")[since:]
             if call.path.endswith("/backups")]  # fmt: skip
    assert len(lists) == 3


def test_a_vault_in_another_project_is_polled_there(deployment: Deployment) -> None:
    other = "0123456789abcdef0123456789abcdef"
    deployment.standin.projects[other] = "eu-de_other"
    deployment.standin.polls_to_finish = 1
    deployment.invoke({"vault_id": VAULT, "project_id": other})
    deployment.notifications()
    for _ in range(3):
        deployment.track()

    [completed] = completions(deployment)
    assert completed.message["outcome"] == "succeeded"
    assert {call.path.split("/")[2] for call in deployment.standin.calls("cbr")} == {other}

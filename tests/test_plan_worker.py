"""The plan queue's message format and the worker's small rules, one by one (issue 25.11: the
mutation run of ``triggers/queued`` found them untested)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import Deployment
from test_scale_out import FIRING, many_plans

import csbs_trigger.triggers.queued as queued
from csbs_trigger.aws import sqs
from csbs_trigger.cloud.backend import BackupRequest
from csbs_trigger.cloud.csbs import BACKEND as CSBS
from csbs_trigger.errors import ConfigError, InvalidEventError
from csbs_trigger.models import Trigger
from csbs_trigger.plans import RejectedPlan, Resolution
from csbs_trigger.runner import Unit
from csbs_trigger.triggers.queued import QueuedPlan
from support.lambda_context import FakeLambdaContext

NEEDS = "a queued plan needs its trigger, keys and plan"
PLAN_A = "62171999-3df1-42f7-9513-6f9b1bea4744"
TRIGGER = Trigger(source="schedule", id="arn:aws:scheduler:eu-central-1:1:schedule/Täglich#t")


def body(**overrides: Any) -> str:
    message = {"v": 1, "trigger": {"source": "schedule", "id": "s-1"},
               "plan": {"plan_id": PLAN_A}, "key": "k-1", "notice_key": "k-1#0"}  # fmt: skip
    return json.dumps({**message, **overrides})


def test_a_message_is_compact_json_keeping_its_text_as_it_is() -> None:
    request = BackupRequest(CSBS, PLAN_A, ("server-1",))
    text = QueuedPlan(TRIGGER, Unit(request, "k", "k#0")).to_body()

    assert text == (
        '{"v":1,"trigger":{"source":"schedule","id":"' + str(TRIGGER.id) + '"},'
        '"plan":{"plan_id":"' + PLAN_A + '","resources":["server-1"]},'
        '"key":"k","notice_key":"k#0"}'
    )
    read = QueuedPlan.from_body(text)
    assert (read.trigger, read.unit.key, read.unit.notice_key) == (
        Trigger(source=TRIGGER.source, id=TRIGGER.id), "k", "k#0")  # fmt: skip


@pytest.mark.parametrize(("message", "says"), [
    ({"v": 1}, "a queued plan must be a version 1 message"),
    ("not json", "a queued plan must be a version 1 message"),
    (body(key=""), NEEDS),
    (body(key="k" * 1025), NEEDS),
    (body(notice_key="k\x00"), NEEDS),
    (body(trigger={"source": "schedule", "id": ""}), NEEDS),
    (body(plan={"plan_id": 7}), "queued plan.plan_id must be"),
], ids=["not a string", "not json", "empty key", "key too long", "control character",
        "trigger without id", "bad plan"])  # fmt: skip
def test_a_message_that_is_no_queued_plan_is_refused_saying_why(message: Any, says: str) -> None:
    with pytest.raises(InvalidEventError) as refused:
        QueuedPlan.from_body(message)

    assert refused.value.message.startswith(says)


def test_keys_are_one_to_1024_printable_characters() -> None:
    assert [queued._is_key(v) for v in ("k", "k" * 1024, "", "k" * 1025, 5, "a\x7fb")] == [
        True, True, False, False, False, False]  # fmt: skip


def test_a_message_counts_its_deliveries_from_sqs_attributes() -> None:
    assert [sqs.deliveries(record) for record in (
        {"attributes": {"ApproximateReceiveCount": "3"}}, {"attributes": {}},
        {"attributes": "3"}, {"attributes": {"ApproximateReceiveCount": "x"}}, {},
    )] == [3, 1, 1, 1, 1]  # fmt: skip


def test_a_throttled_plan_waits_between_half_and_all_of_a_doubling_ceiling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for jitter, expected in ((0.0, [15.0, 30.0, 60.0, 450.0]), (1.0, [30.0, 60.0, 120.0, 900.0])):
        monkeypatch.setattr(sqs.random, "random", lambda jitter=jitter: jitter)
        assert [sqs.backoff(n) for n in (1, 2, 3, 10)] == expected


def test_a_plan_that_cannot_be_queued_names_its_plan() -> None:
    error = ConfigError("no queue")
    request = BackupRequest(CSBS, PLAN_A)
    rejected = queued._rejected(request, error)
    assert isinstance(rejected, RejectedPlan)
    assert (rejected.error, rejected.backend, rejected.target_id) == (error, CSBS, PLAN_A)
    bad = RejectedPlan(InvalidEventError("bad"))
    assert queued._rejected(bad, error) is bad


def test_the_worker_takes_sqs_events_only(deployment: Deployment) -> None:
    from plan_worker import handler

    with pytest.raises(InvalidEventError, match=r"^the plan worker takes SQS events \(Records\)$"):
        handler([], FakeLambdaContext())


def test_what_the_worker_logs(deployment: Deployment, logs: Any) -> None:
    """An unreadable message and a plan that breaks are logged with their message id and
    reason (never the exception's text); a firing queued logs its counts."""
    from plan_worker import handler

    result = deployment.invoke({"plans": many_plans(deployment, 21), **FIRING})
    context = FakeLambdaContext(function_name="csbs-trigger-plan-worker")
    handler({"Records": [{"messageId": "m-1", "body": "nope", "attributes": {}}]}, context)

    lines = [json.loads(line) for line in logs.getvalue().splitlines() if line.startswith("{")]
    by_message = {line["message"]: line for line in lines if "message" in line}
    assert result["counts"] == {"plans": 21, "queued": 21, "rejected": 0}
    assert result["trigger"] == {"source": "schedule", "id": result["trigger"]["id"]}
    assert set(result) == {"outcome", "trigger", "counts", "plans"}
    queued_line = by_message["firing queued"]
    assert (queued_line["plans"], queued_line["queued"], queued_line["rejected"]) == (21, 21, 0)
    unreadable = by_message["queued plan unreadable"]
    assert (unreadable["message_id"], unreadable["reason"]) == (
        "m-1", "a queued plan must be a version 1 message")  # fmt: skip


# -- what a message carries, read back (the mutation run of triggers/queued) ---------------------

ASKED = {"resources": ["server-1"]}


@pytest.mark.parametrize("item", [
    BackupRequest(CSBS, PLAN_A, ("server-1",), resolved_from=ASKED),
    BackupRequest(CSBS, PLAN_A, ("server-1",)),
    Resolution(CSBS, resources=("server-1",)),
], ids=["a backup a resolution found", "a backup", "a resolution"])  # fmt: skip
def test_a_message_reads_back_as_the_plan_and_trigger_it_was_written_from(item: Any) -> None:
    trigger = Trigger(source="webhook", id="d-1", sender="jira", reference="OPS-7")
    plan = QueuedPlan(trigger, Unit(item, "k", "k#0"))

    assert QueuedPlan.from_body(plan.to_body()) == plan
    anonymous = QueuedPlan(Trigger(source="schedule", id="s-1"), Unit(item, "k", "k#0"))
    assert '"sender"' not in anonymous.to_body()
    assert QueuedPlan.from_body(anonymous.to_body()) == anonymous


@pytest.mark.parametrize("message", [
    body(trigger={"source": "webhook", "id": "d-1", "sender": ""}),
    body(trigger={"source": "webhook", "id": "d-1", "reference": 7}),
    body(resolved_from="server-1"),
    body(plan={"resources": ["server-1"]}, resolved_from=ASKED),
], ids=["empty sender", "reference no text", "resolved_from no object",
        "resolved_from on a resolution"])  # fmt: skip
def test_a_message_whose_trigger_or_origin_is_malformed_is_refused(message: str) -> None:
    with pytest.raises(InvalidEventError, match=r"^a queued plan"):
        QueuedPlan.from_body(message)


def test_a_plan_that_cannot_be_queued_keeps_what_was_asked() -> None:
    error = ConfigError("no queue")
    found = queued._rejected(BackupRequest(CSBS, PLAN_A, resolved_from=ASKED), error)
    resolution = queued._rejected(Resolution(CSBS, resources=("server-1",)), error)

    assert found == RejectedPlan(error, CSBS, PLAN_A, ASKED)
    assert resolution == RejectedPlan(error, CSBS, None, ASKED)


def test_a_record_without_a_text_message_id_has_none() -> None:
    assert [queued._message_id(r) for r in ({"messageId": "m-1"}, {"messageId": 5}, {})] == [
        "m-1", None, None]  # fmt: skip

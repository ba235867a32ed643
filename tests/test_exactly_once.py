"""Scheduled triggers run once per firing, even when delivered twice or retried."""

from __future__ import annotations

import hashlib
import json

import pytest
from conftest import Deployment, read_event

from csbs_trigger.aws.idempotency import AlreadyInProgressError
from csbs_trigger.aws.sns import PublishError
from support.standin import Fault


def test_scheduled_firing_delivered_twice_runs_once(deployment: Deployment) -> None:
    deployment.invoke(read_event("schedule.json"))
    result = deployment.invoke(read_event("schedule.json"))

    assert result["plans"][0]["replayed"] is True
    assert len(deployment.standin.calls("csbs")) == 1
    [delivered] = deployment.notifications()
    assert delivered.message["idempotency_key"].startswith("schedule:arn:aws:scheduler:")


def test_an_eventbridge_event_delivered_twice_runs_once(deployment: Deployment) -> None:
    """EventBridge delivers at least once; its event id names the delivery."""
    first = deployment.invoke(read_event("eventbridge.json"))
    again = deployment.invoke(read_event("eventbridge.json"))

    assert [plan.get("replayed") for plan in first["plans"] + again["plans"]] == [None, True]
    assert len(deployment.standin.calls("csbs")) == 1
    [delivered] = deployment.notifications()
    assert delivered.message["idempotency_key"].startswith("eventbridge:")


def test_a_firings_key_is_the_same_in_every_release(deployment: Deployment) -> None:
    """The key outlives a deploy (records are kept 24 h): a key spelled differently by the next
    release would run a redelivered firing again. It is the firing, the plan, and a digest of the
    request (plan, sorted servers, auto_trigger: JSON, SHA-256, 32 hex digits)."""
    event = read_event("schedule.json")
    request = [event["plan_id"], sorted(event["resources"]), event["auto_trigger"]]
    digest = hashlib.sha256(json.dumps(request).encode()).hexdigest()[:32]

    deployment.invoke({**event, "resources": event["resources"][::-1]})

    [delivered] = deployment.notifications()
    firing = f"{event['schedule_arn']}#{event['scheduled_time']}"
    assert delivered.message["idempotency_key"] == f"schedule:{firing}:{event['plan_id']}:{digest}"


def test_failed_publish_is_retried_without_a_second_backup(deployment: Deployment) -> None:
    topic = deployment.topic_arn
    deployment.set_env("NOTIFICATION_TOPIC_ARN", topic + "-missing")
    with pytest.raises(
        PublishError,
        match=r"^1 of 1 notifications not published: SNS refused the notification \(NotFound\)$",
    ):
        deployment.invoke(read_event("schedule.json"))
    deployment.set_env("NOTIFICATION_TOPIC_ARN", topic)

    deployment.invoke(read_event("schedule.json"))  # Lambda's retry of the same event

    assert len(deployment.standin.calls("csbs")) == 1
    assert len(deployment.notifications()) == 1


def test_one_unpublished_notification_of_a_batch_fails_the_invocation_saying_why(
    deployment: Deployment,
) -> None:
    deployment.invoke(read_event("direct.json"))  # builds the container's clients
    deployment.notifications()
    deployment.refuse(deployment.runtime.sns, "Publish", "AuthorizationError")

    with pytest.raises(
        PublishError,
        match=r"^1 of 2 notifications not published: SNS refused the notification "
        r"\(AuthorizationError\)$",
    ):
        deployment.invoke(read_event("batch.json"))

    assert len(deployment.notifications()) == 1


# -- answers -------------------------------------------------------------------------------------


def test_scheduled_firing_delivered_twice_at_once_fails_one_invocation_for_a_retry(
    deployment: Deployment,
) -> None:
    checkpoint = {
        "checkpoint": {"id": "14626f11-b54a-44ea-8e69-7463e527506a", "status": "protecting"}
    }
    outcomes: list[str] = []

    def fire() -> None:
        try:
            deployment.invoke(read_event("schedule.json"))
            outcomes.append("ran")
        except AlreadyInProgressError as busy:  # Lambda retries this invocation later
            outcomes.append(f"in progress: {busy}")  # the words Lambda logs for it

    deployment.overlapping(fire, Fault(200, checkpoint))
    retry = deployment.invoke(read_event("schedule.json"))

    assert sorted(outcomes) == ["in progress: the same trigger is being run right now", "ran"]
    assert retry["plans"][0]["replayed"] is True
    assert len(deployment.standin.calls("csbs")) == 1
    assert len(deployment.notifications()) == 1

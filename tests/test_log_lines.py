"""The log lines operators query and alarm on: each names what happened, with the fields to find
it (Logs Insights filters on them, so a renamed field is a broken query)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from conftest import Deployment, read_event
from test_completion_tracking import SERVER_A, SERVER_B
from test_operational_trouble import PLAN_A, PLAN_B

from csbs_trigger import PublishError
from support.lambda_context import FakeLambdaContext
from support.standin import Fault

SCHEDULE = read_event("schedule.json")
PLAN = SCHEDULE["plan_id"]


def lines(logs: io.StringIO, message: str) -> list[dict[str, Any]]:
    """The JSON lines the function logged with ``message``."""
    parsed = [json.loads(line) for line in logs.getvalue().splitlines() if line.startswith("{")]
    return [line for line in parsed if line["message"] == message]


def fields(line: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: line.get(name, "<missing>") for name in ("level", *names)}


def test_a_started_backup_logs_one_line_with_its_trigger_and_checkpoint(
    deployment: Deployment, logs: io.StringIO
) -> None:
    result = deployment.invoke(SCHEDULE)

    [line] = lines(logs, "backup policy executed")
    names = ("plan_id", "outcome", "checkpoint_id", "trigger_source", "trigger_id", "attempts")
    assert fields(line, *names) == {
        "level": "INFO",
        "plan_id": PLAN,
        "outcome": "succeeded",
        "checkpoint_id": result["plans"][0]["checkpoint_id"],
        "trigger_source": "schedule",
        "trigger_id": f"{SCHEDULE['schedule_arn']}#{SCHEDULE['scheduled_time']}",
        "attempts": 1,
    }
    assert isinstance(line["duration_ms"], int)
    assert "error_category" not in line


def test_a_failed_backup_logs_its_error_fields(deployment: Deployment, logs: io.StringIO) -> None:
    refusal = {"error_code": "CSBS.1002", "error_msg": "The plan does not exist"}
    deployment.standin.fail_next("csbs", Fault(404, refusal))

    deployment.invoke(SCHEDULE)

    [line] = lines(logs, "backup trigger failed")
    names = ("plan_id", "outcome", "error_category", "retryable", "maybe_created", "http_status",
             "error_code", "error_message", "trigger_source", "attempts")  # fmt: skip
    assert fields(line, *names) == {
        "level": "WARNING",
        "plan_id": PLAN,
        "outcome": "failed",
        "error_category": "not_found",
        "retryable": False,
        "maybe_created": False,
        "http_status": 404,
        "error_code": "CSBS.1002",
        "error_message": "CSBS answered HTTP 404: The plan does not exist",
        "trigger_source": "schedule",
        "attempts": 1,
    }
    assert lines(logs, "backup policy executed") == []


def test_a_replayed_trigger_logs_the_key_it_replayed(
    deployment: Deployment, logs: io.StringIO
) -> None:
    deployment.invoke(SCHEDULE)
    [started] = deployment.notifications()

    deployment.invoke(SCHEDULE)

    [line] = lines(logs, "trigger replayed: no second backup")
    assert fields(line, "idempotency_key") == {
        "level": "INFO",
        "idempotency_key": started.message["idempotency_key"],
    }


def test_a_keyed_trigger_without_a_table_says_it_is_not_deduplicated(
    deployment: Deployment, logs: io.StringIO
) -> None:
    deployment.set_env("IDEMPOTENCY_TABLE", None)

    deployment.invoke(SCHEDULE)

    [line] = lines(logs, "IDEMPOTENCY_TABLE is not set: this trigger is not deduplicated")
    assert line["level"] == "WARNING"
    assert lines(logs, "trigger replayed: no second backup") == []
    [notification] = deployment.notifications()
    assert notification.message["idempotency_key"] is None  # no record stands behind a key


def test_a_result_the_table_cannot_keep_is_logged_with_its_key(
    deployment: Deployment, logs: io.StringIO
) -> None:
    deployment.invoke(read_event("direct.json"))  # builds the container's clients
    assert deployment.runtime.dynamodb is not None
    deployment.refuse(deployment.runtime.dynamodb, "UpdateItem", "ProvisionedThroughputExceeded")

    deployment.invoke(SCHEDULE)

    [line] = lines(logs, "result not recorded: reported without a record")
    started = deployment.notifications()[-1]
    assert fields(line, "idempotency_key") == {
        "level": "ERROR",
        "idempotency_key": started.message["idempotency_key"],
    }
    assert (
        line["reason"]
        == "the idempotency table could not be used (IdempotencyPersistenceLayerError)"
    )


def test_a_refused_registration_is_logged_with_its_checkpoint(
    deployment: Deployment, logs: io.StringIO
) -> None:
    deployment.refuse(deployment.runtime.dynamodb, "PutItem", "ResourceNotFoundException", times=5)

    result = deployment.invoke({"plan_id": PLAN})  # a direct invoke: only the registration writes

    [line] = lines(logs, "backup not registered for tracking: no completion will be reported")
    assert fields(line, "checkpoint_id") == {
        "level": "ERROR",
        "checkpoint_id": result["plans"][0]["checkpoint_id"],
    }
    assert "ResourceNotFoundException" in line["reason"]


def test_a_refused_notification_logs_the_essentials_then_the_loss(
    deployment: Deployment, logs: io.StringIO
) -> None:
    deployment.invoke(read_event("direct.json"))
    deployment.notifications()
    deployment.refuse(deployment.runtime.sns, "Publish", "InvalidParameter")

    deployment.invoke(SCHEDULE)
    deployment.refuse(deployment.runtime.sns, "Publish", "InvalidParameter", times=2)
    with pytest.raises(PublishError):  # Lambda retries it
        deployment.invoke({**SCHEDULE, "scheduled_time": "2026-11-28T02:00:00Z"})

    first, second = lines(logs, "notification refused: publishing its essentials")
    for line in (first, second):
        assert fields(line, "plan_id") == {"level": "WARNING", "plan_id": PLAN}
        assert line["reason"].startswith("SNS refused the notification")
    [lost] = lines(logs, "notification not published")
    assert fields(lost, "plan_id") == {"level": "ERROR", "plan_id": PLAN}
    assert lost["reason"].startswith("SNS refused the notification")


def test_a_refused_cbr_notification_is_logged_with_its_vault(
    deployment: Deployment, logs: io.StringIO
) -> None:
    vault = "3b5816b5-f29c-4172-9d9a-76c719a659ce"  # the stand-in's vault-be94
    deployment.refuse(deployment.runtime.sns, "Publish", "InvalidParameter", times=2)
    with pytest.raises(PublishError):
        deployment.invoke({"vault_id": vault})

    refused = lines(logs, "notification refused: publishing its essentials")
    lost = lines(logs, "notification not published")
    assert [fields(line, "plan_id")["plan_id"] for line in [*refused, *lost]] == [vault, vault]


def test_a_notification_sns_fails_to_take_is_logged_with_the_reason(
    deployment: Deployment, logs: io.StringIO
) -> None:
    deployment.invoke(read_event("direct.json"))
    deployment.refuse(deployment.runtime.sns, "Publish", "AuthorizationError")

    with pytest.raises(PublishError):
        deployment.invoke(SCHEDULE)

    [lost] = lines(logs, "notification not published")
    assert fields(lost, "plan_id", "reason") == {
        "level": "ERROR",
        "plan_id": PLAN,
        "reason": "SNS refused the notification (AuthorizationError)",
    }
    assert lines(logs, "notification refused: publishing its essentials") == []


# -- the completion tracker ----------------------------------------------------------------------


def _started(deployment: Deployment) -> str:
    deployment.standin.polls_to_finish = 0
    checkpoint_id = str(deployment.invoke(SCHEDULE)["plans"][0]["checkpoint_id"])
    deployment.notifications()
    return checkpoint_id


def test_a_tracker_run_logs_its_counts_and_each_completion(
    deployment: Deployment, logs: io.StringIO
) -> None:
    checkpoint_id = _started(deployment)
    deployment.track()  # no items yet

    deployment.track()

    finished = lines(logs, "tracker run finished")
    assert [fields(line, "due", "running", "succeeded") for line in finished] == [
        {"level": "INFO", "due": 1, "running": 1, "succeeded": "<missing>"},
        {"level": "INFO", "due": 1, "running": "<missing>", "succeeded": 1},
    ]
    [reported] = lines(logs, "backup completion reported")
    assert fields(reported, "checkpoint_id", "event", "outcome", "plan_id") == {
        "level": "INFO", "checkpoint_id": checkpoint_id, "event": "completed",
        "outcome": "succeeded", "plan_id": PLAN,
    }  # fmt: skip


def test_a_failed_poll_and_a_stopped_run_log_why(deployment: Deployment, logs: io.StringIO) -> None:
    checkpoint_id = _started(deployment)
    denied = {"error_code": "APIGW.0302", "error_msg": "no rights"}
    deployment.standin.fail_next("csbs", Fault(403, denied))

    with pytest.raises(Exception, match="forbidden"):
        deployment.track()

    [failed] = lines(logs, "checkpoint poll failed")
    assert fields(failed, "checkpoint_id", "category", "reason") == {
        "level": "WARNING", "checkpoint_id": checkpoint_id, "category": "forbidden",
        "reason": "CSBS answered HTTP 403: no rights",
    }  # fmt: skip
    [stopped] = lines(logs, "tracker run stopped")
    assert fields(stopped, "category", "reason") == {
        "level": "ERROR", "category": "forbidden", "reason": "CSBS answered HTTP 403: no rights",
    }  # fmt: skip
    [finished] = lines(logs, "tracker run finished")
    assert fields(finished, "due", "stopped") == {"level": "INFO", "due": 1, "stopped": 1}


def test_a_stopped_run_reads_every_page_of_due_backups_to_count_them(
    deployment: Deployment, logs: io.StringIO
) -> None:
    """Backups a stopped run leaves stay due: it still pages past them (50 a page), never
    reading the first page again and again until its time is up."""
    deployment.set_env("MAX_CONCURRENCY", "1")
    plans = [{"plan_id": PLAN_A, "resources": [server]} for server in (SERVER_A, SERVER_B)]
    for _ in range(26):
        deployment.invoke({"plans": plans})  # 52 backups
    deployment.notifications()
    denied = {"error_code": "APIGW.0302", "error_msg": "no rights"}
    deployment.standin.fail_next("csbs", Fault(403, denied))

    with pytest.raises(Exception, match=r"^forbidden: "):
        deployment.track(FakeLambdaContext("csbs-trigger-tracker", timeout_seconds=30))

    [finished] = lines(logs, "tracker run finished")
    assert fields(finished, "due", "stopped", "deferred", "more_due") == {
        "level": "INFO", "due": 52, "stopped": 1, "deferred": 51, "more_due": "<missing>",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("trouble", "category"),
    [("poll refused", "forbidden"), ("table failed", "unavailable")],
)
def test_a_stopped_run_counts_the_backups_it_left_for_the_next_run(
    deployment: Deployment, logs: io.StringIO, trouble: str, category: str
) -> None:
    """One backup stopped the run; the other, never polled, is counted ``deferred``."""
    deployment.set_env("MAX_CONCURRENCY", "1")
    for plan in (PLAN_A, PLAN_B):
        deployment.invoke({"plan_id": plan})
    deployment.notifications()
    if trouble == "poll refused":
        denied = {"error_code": "APIGW.0302", "error_msg": "no rights"}
        deployment.standin.fail_next("csbs", Fault(403, denied))
    else:
        dynamodb = deployment.runtime.dynamodb
        deployment.refuse(dynamodb, "UpdateItem", "InternalServerError", times=10)

    with pytest.raises(Exception, match=rf"^{category}: "):
        deployment.track()

    [finished] = lines(logs, "tracker run finished")
    assert fields(finished, "due", "stopped", "deferred") == {
        "level": "INFO", "due": 2, "stopped": 1, "deferred": 1,
    }  # fmt: skip

"""The scheduled/direct path end to end: event → Secrets Manager → IAM → CSBS → SNS."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import boto3
import pytest
from conftest import Deployment, read_event

import csbs_trigger.runner
from csbs_trigger import ConfigError, PublishError
from support.lambda_context import FakeLambdaContext
from support.standin import (
    ACCESS_KEY,
    PASSWORD,
    PROJECT_ID,
    PROJECT_NAME,
    PROVIDER_ID,
    SECRET_KEY,
    Fault,
)

PLAN_A = "62171999-3df1-42f7-9513-6f9b1bea4744"
PLAN_B = "6a6cda7e-7b89-4b14-8e5c-3b6821a97d2c"
APP_SERVER = "7a32a8b5-7977-4e24-b5da-e0eb457db75b"  # of plan A
CHECKPOINTS_PATH = f"/v1/{PROJECT_ID}/providers/{PROVIDER_ID}/checkpoints"


# -- the request, exactly as the API page describes it ------------------------------------------


def test_scheduled_plan_posts_the_documented_request(deployment: Deployment) -> None:
    deployment.invoke(read_event("schedule.json"))

    [call] = deployment.standin.calls("csbs")
    assert call.method == "POST"
    assert call.path == CHECKPOINTS_PATH
    assert call.headers["Content-Type"] == "application/json"
    assert call.headers["X-Auth-Token"] == deployment.standin.issued_tokens()[0]
    assert call.json() == {
        "checkpoint": {
            "plan_id": PLAN_A,
            "parameters": {
                "auto_trigger": False,
                "resources": [
                    "7a32a8b5-7977-4e24-b5da-e0eb457db75b",
                    "b2b433bf-7dd6-4a74-aa8f-85673dfbda48",
                ],
            },
        }
    }


def test_optional_parameters_the_event_left_out_are_not_sent(deployment: Deployment) -> None:
    deployment.invoke(read_event("direct.json"))

    [call] = deployment.standin.calls("csbs")
    assert call.json() == {"checkpoint": {"plan_id": PLAN_A, "parameters": {}}}


def test_token_request_is_keystone_password_auth_scoped_to_the_project(
    deployment: Deployment,
) -> None:
    deployment.invoke(read_event("direct.json"))

    [call] = deployment.standin.calls("iam")
    assert call.path == "/v3/auth/tokens"
    assert "nocatalog" in call.query  # the secret names the endpoint: no catalog needed
    auth = call.json()["auth"]
    assert auth["identity"]["methods"] == ["password"]
    assert auth["scope"] == {"project": {"id": PROJECT_ID}}


# -- each input form -----------------------------------------------------------------------------


def test_schedule_payload_succeeds_with_one_notification(deployment: Deployment) -> None:
    result = deployment.invoke(read_event("schedule.json"))

    [delivered] = deployment.notifications()
    message = delivered.message
    assert result["outcome"] == "succeeded"
    assert message["outcome"] == "succeeded"
    assert message["trigger"] == {
        "source": "schedule",
        "id": "arn:aws:scheduler:eu-central-1:123456789012:schedule/default/csbs-nightly-backup"
        "#2026-11-27T02:00:00Z",
        "sender": None,
        "reference": None,
    }
    assert message["checkpoint"]["id"] == result["plans"][0]["checkpoint_id"]
    assert message["checkpoint"]["status"] == "protecting"
    assert message["checkpoint"]["extra_info"] == {"created_by": "manual"}
    assert [item["name"] for item in message["checkpoint"]["protection_plan"]["resources"]] == [
        "app-server-1",
        "app-server-2",
    ]


def test_eventbridge_event_runs_the_plan_in_its_detail(deployment: Deployment) -> None:
    event = read_event("eventbridge.json")

    deployment.invoke(event)

    [delivered] = deployment.notifications()
    assert delivered.message["trigger"]["source"] == "eventbridge"
    assert delivered.message["trigger"]["id"] == event["id"]
    assert delivered.message["request"] == {
        "plan_id": PLAN_B,
        "resources": ["1c960fe4-e679-421a-97cd-4f7463d2344b"],
        "auto_trigger": None,
    }
    assert delivered.message["outcome"] == "succeeded"


def test_direct_invocation_is_traced_by_its_request_id(deployment: Deployment) -> None:
    context = FakeLambdaContext()

    deployment.invoke(read_event("direct.json"), context)

    [delivered] = deployment.notifications()
    assert delivered.message["trigger"]["source"] == "direct"
    assert delivered.message["trigger"]["id"] == context.aws_request_id
    assert delivered.message["idempotency_key"] is None  # a direct invoke is not deduplicated


def test_batch_runs_every_plan_with_its_own_notification(deployment: Deployment) -> None:
    result = deployment.invoke(read_event("batch.json"))

    delivered = deployment.notifications()
    assert sorted(d.message["request"]["plan_id"] for d in delivered) == sorted([PLAN_A, PLAN_B])
    assert {d.message["outcome"] for d in delivered} == {"succeeded"}
    assert len(deployment.standin.calls("csbs")) == 2
    assert len(deployment.standin.calls("iam")) == 1  # concurrent plans share one token request
    assert result["outcome"] == "succeeded"


def test_one_failing_plan_never_hides_another(deployment: Deployment) -> None:
    deployment.standin.plans[PLAN_A].busy_code = "CSBS.1001"

    result = deployment.invoke(read_event("batch.json"))

    by_plan = {d.message["request"]["plan_id"]: d.message for d in deployment.notifications()}
    assert by_plan[PLAN_A]["error"]["category"] == "busy"
    assert by_plan[PLAN_B]["outcome"] == "succeeded"
    assert result["outcome"] == "partial"


def test_a_backup_not_started_is_counted_by_backend_and_category(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_completion_tracking import emf

    deployment.standin.plans[PLAN_A].busy_code = "CSBS.1001"
    deployment.invoke(read_event("batch.json"))
    deployment.invoke({"plan_id": PLAN_A, "vault_id": "v"})  # which backend: not known
    deployment.invoke({"plan_id": PLAN_A, "resources": "all"})  # a CSBS plan, refused

    counted = [dims for name, dims in emf(capsys.readouterr().out) if name == "BackupsNotStarted"]
    assert counted == [  # each failure: in all, by backend where known, by category
        {},
        {"backend": "csbs"},
        {"error_category": "busy"},
        {},
        {"error_category": "invalid_event"},
        {},
        {"backend": "csbs"},
        {"error_category": "invalid_event"},
    ]


def test_invalid_event_is_notified_and_nothing_else_is_sent(deployment: Deployment) -> None:
    result = deployment.invoke(read_event("invalid.json"))

    [delivered] = deployment.notifications()
    assert delivered.message["error"]["category"] == "invalid_event"
    assert "plan_id or vault_id is missing" in delivered.message["error"]["message"]
    assert delivered.attributes == {
        "event": "started",
        "outcome": "failed",
        "error_category": "invalid_event",
    }
    assert deployment.standin.requests == []
    ran = {key: delivered.message[key] for key in ("attempts", "checkpoint", "duration_ms")}
    assert ran == {"attempts": 0, "checkpoint": None, "duration_ms": 0}  # nothing was sent
    assert result["outcome"] == "failed"


def test_invalid_plan_in_a_batch_rejects_only_that_plan(deployment: Deployment) -> None:
    event = {"plans": [{"plan_id": PLAN_A}, {"plan_id": PLAN_B, "resources": "not-a-list"}]}

    deployment.invoke(event)

    by_plan = {d.message["request"]["plan_id"]: d.message for d in deployment.notifications()}
    assert by_plan[PLAN_A]["outcome"] == "succeeded"
    assert by_plan[PLAN_B]["error"]["category"] == "invalid_event"
    assert "plans[1].resources" in by_plan[PLAN_B]["error"]["message"]
    assert len(deployment.standin.calls("csbs")) == 1


# -- tokens --------------------------------------------------------------------------------------


def test_warm_invocations_reuse_one_token(deployment: Deployment) -> None:
    for _ in range(5):
        deployment.invoke(read_event("direct.json"))

    assert len(deployment.standin.calls("iam")) == 1
    assert len(deployment.standin.calls("csbs")) == 5
    assert len({call.headers["X-Auth-Token"] for call in deployment.standin.calls("csbs")}) == 1


def test_short_lived_token_still_serves_several_calls(deployment: Deployment) -> None:
    deployment.standin.token_lifetime = timedelta(minutes=5)  # shorter than the renewal margin

    deployment.invoke(read_event("direct.json"))
    deployment.invoke(read_event("direct.json"))

    assert len(deployment.standin.calls("iam")) == 1
    assert [d.message["outcome"] for d in deployment.notifications()] == ["succeeded"] * 2


def test_revoked_token_is_replaced_once_and_the_call_retried(deployment: Deployment) -> None:
    deployment.invoke(read_event("direct.json"))
    deployment.notifications()
    deployment.standin.revoke_tokens()

    deployment.invoke(read_event("direct.json"))

    [delivered] = deployment.notifications()
    assert delivered.message["outcome"] == "succeeded"
    assert delivered.message["attempts"] == 2
    assert len(deployment.standin.calls("iam")) == 2


def test_second_401_is_auth_failed(deployment: Deployment) -> None:
    unauthorized = Fault(401, {"error_code": "APIGW.0301", "error_msg": "Incorrect IAM auth"})
    deployment.standin.fail_next("csbs", unauthorized, unauthorized)

    deployment.invoke(read_event("direct.json"))

    [delivered] = deployment.notifications()
    assert delivered.message["error"]["category"] == "auth_failed"
    assert delivered.message["attempts"] == 2
    assert len(deployment.standin.calls("csbs")) == 2


# -- credentials and endpoints -------------------------------------------------------------------


def test_endpoint_comes_from_the_catalog_when_the_secret_has_none(deployment: Deployment) -> None:
    deployment.set_secret(deployment.standin.cloud_secret(csbs_endpoint=None))

    deployment.invoke(read_event("direct.json"))

    [delivered] = deployment.notifications()
    assert delivered.message["outcome"] == "succeeded"
    assert "nocatalog" not in deployment.standin.calls("iam")[0].query


def test_project_name_stands_in_for_project_id(deployment: Deployment) -> None:
    secret = deployment.standin.cloud_secret(project_id=None, project_name=PROJECT_NAME)
    deployment.set_secret(secret)

    deployment.invoke(read_event("direct.json"))

    [delivered] = deployment.notifications()
    assert delivered.message["outcome"] == "succeeded"
    assert deployment.standin.calls("csbs")[0].path == CHECKPOINTS_PATH


def test_secret_is_cached_across_warm_invocations(deployment: Deployment) -> None:
    deployment.invoke(read_event("direct.json"))
    deployment.set_secret(deployment.standin.cloud_secret(csbs_endpoint="http://127.0.0.1:9"))

    deployment.invoke(read_event("direct.json"))

    assert [d.message["outcome"] for d in deployment.notifications()] == ["succeeded"] * 2


def test_secret_is_read_again_once_its_cache_age_is_over(deployment: Deployment) -> None:
    deployment.set_env("SECRET_MAX_AGE_SECONDS", "0")
    deployment.invoke(read_event("direct.json"))
    deployment.set_secret(deployment.standin.cloud_secret(csbs_endpoint="http://127.0.0.1:9"))

    deployment.invoke(read_event("direct.json"))

    outcomes = [d.message for d in deployment.notifications()]
    assert outcomes[0]["outcome"] == "succeeded"
    assert outcomes[1]["error"]["category"] == "network"


@pytest.mark.parametrize(
    ("secret", "named"),
    [
        ({"auth_url": "https://iam.example.com/v3", "username": "u"},
         "lacks keys: password, user_domain_name, project_id (or project_name)"),
        ({"ak": "AK", "csbs_endpoint": "https://csbs.example.com"},
         "lacks keys: sk, project_id"),
        ({"ak": "AK", "sk": "SK", "project_id": PROJECT_ID, "region": "mars-1"},
         "known cloud region"),
        ({"ak": "AK", "sk": "SK", "password": "p"}, "both username/password and ak/sk"),
        ({"project_id": "p"}, "neither username/password nor ak/sk"),
        ("not json at all", "not valid JSON"),
        ({"auth_url": "ftp://iam", "username": "u", "password": "p", "user_domain_name": "d",
          "project_id": PROJECT_ID}, "auth_url must be an https URL"),
    ],
)  # fmt: skip
def test_malformed_secret_is_a_config_error_naming_the_keys(
    deployment: Deployment, secret: dict[str, str] | str, named: str
) -> None:
    deployment.set_secret(secret)

    deployment.invoke(read_event("direct.json"))

    [delivered] = deployment.notifications()
    assert delivered.message["error"]["category"] == "config_error"
    assert named in delivered.message["error"]["message"]
    assert deployment.standin.requests == []


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"ak": ACCESS_KEY + "\n"}, "key ak holds a control character"),
        ({"sk": SECRET_KEY + "\r\n"}, "key sk holds a control character"),
        ({"project_id": PROJECT_ID + "\n"}, "key project_id holds a control character"),
        ({"project_id": "../../v3/auth/tokens?x="}, "project_id must be 32 hexadecimal digits"),
        ({"project_id": "\ud800" * 32}, "project_id must be 32 hexadecimal digits"),
        ({"csbs_endpoint": "http://127.0.0.1:99999"}, "key csbs_endpoint has an invalid port"),
        ({"csbs_endpoint": "https://csbs.example.com:x"}, "key csbs_endpoint has an invalid port"),
        ({"ak": "AK/../x"}, "key ak must be letters and digits only"),
    ],
)  # fmt: skip
def test_malformed_secret_values_are_a_config_error_before_any_call(
    deployment: Deployment, logs: io.StringIO, change: dict[str, str], named: str
) -> None:
    # Before: a ValueError from requests whose text held the signature, or a request to
    # POST /v3/auth/tokens built from a project id.
    deployment.set_secret(deployment.standin.access_key_secret(**change))

    result = deployment.invoke(read_event("direct.json"))

    [delivered] = deployment.notifications()
    assert result["outcome"] == "failed"
    assert delivered.message["error"]["category"] == "config_error"
    assert named in delivered.message["error"]["message"]
    assert deployment.standin.requests == []
    for value in (SECRET_KEY, ACCESS_KEY + "\n", "Signature="):
        assert value not in delivered.raw_message
        assert value not in logs.getvalue()


def test_missing_secret_is_a_config_error(deployment: Deployment) -> None:
    deployment.set_env("CSBS_SECRET_ID", "csbs-trigger/does-not-exist")

    deployment.invoke(read_event("direct.json"))

    [delivered] = deployment.notifications()
    assert delivered.message["error"]["category"] == "config_error"
    assert delivered.message["error"]["code"] == "ResourceNotFoundException"


def test_unset_secret_id_is_a_config_error(deployment: Deployment) -> None:
    deployment.set_env("CSBS_SECRET_ID", None)

    deployment.invoke(read_event("direct.json"))

    [delivered] = deployment.notifications()
    assert "CSBS_SECRET_ID" in delivered.message["error"]["message"]


def test_without_a_topic_the_invocation_fails(deployment: Deployment) -> None:
    deployment.set_env("NOTIFICATION_TOPIC_ARN", None)

    with pytest.raises(ConfigError, match="NOTIFICATION_TOPIC_ARN"):
        deployment.invoke(read_event("direct.json"))


def test_failed_publish_fails_the_invocation(deployment: Deployment, logs: io.StringIO) -> None:
    deployment.set_env(
        "NOTIFICATION_TOPIC_ARN", "arn:aws:sns:eu-central-1:123456789012:no-such-topic"
    )

    with pytest.raises(PublishError):
        deployment.invoke(read_event("direct.json"))

    assert "notification not published" in logs.getvalue()


def test_too_little_time_left_is_a_timeout_without_a_call(deployment: Deployment) -> None:
    deployment.invoke(read_event("direct.json"), FakeLambdaContext(timeout_seconds=2))

    [delivered] = deployment.notifications()
    assert delivered.message["error"]["category"] == "timeout"
    assert deployment.standin.calls("csbs") == []


# -- the notification ----------------------------------------------------------------------------


def test_notification_schema_and_attributes(deployment: Deployment) -> None:
    deployment.standin.plans[PLAN_A].busy_code = "CSBS.6030"
    deployment.invoke(read_event("batch.json"))

    by_plan = {d.message["request"]["plan_id"]: d for d in deployment.notifications()}
    failed, succeeded = by_plan[PLAN_A], by_plan[PLAN_B]
    expected_keys = {
        "schema_version", "event", "outcome", "backend", "trigger", "invocation_id",
        "idempotency_key", "request",
        "checkpoint", "plan_name", "error", "attempts", "duration_ms", "tracking",
        "expires_at", "published_at",
    }  # fmt: skip
    assert set(failed.message) == set(succeeded.message) == expected_keys
    assert (succeeded.message["plan_name"], failed.message["plan_name"]) == ("backup", None)
    assert succeeded.message["schema_version"] == 1
    assert succeeded.message["error"] is None
    assert set(succeeded.message["checkpoint"]) == {
        "id", "status", "created_at", "project_id", "resource_graph", "protection_plan",
        "extra_info",
    }  # fmt: skip
    assert succeeded.message["event"] == failed.message["event"] == "started"
    assert succeeded.message["backend"] == failed.message["backend"] == "csbs"
    assert succeeded.attributes == {
        "event": "started", "outcome": "succeeded", "backend": "csbs", "plan_id": PLAN_B,
    }  # fmt: skip
    assert failed.message["checkpoint"] is None
    assert failed.message["error"] == {
        "category": "busy",
        "retryable": True,
        "http_status": 500,
        "code": "CSBS.6030",
        "message": "CSBS answered HTTP 500: The backup policy is executing a backup",
        "request_id": deployment.standin.error_request_ids[-1],  # read from the answer
        "retry_after_seconds": 300.0,
        "maybe_created": False,
    }
    assert failed.attributes == {
        "event": "started",
        "outcome": "failed",
        "backend": "csbs",
        "plan_id": PLAN_A,
        "error_category": "busy",
    }
    for delivered in (failed, succeeded):
        assert delivered.subject is not None
        assert len(delivered.subject) <= 100
        assert isinstance(delivered.message["duration_ms"], int)
    assert failed.subject == f"CSBS backup failed (busy) for plan {PLAN_A}"
    assert succeeded.subject == f"CSBS backup started for plan {PLAN_B}"


def test_no_secret_reaches_logs_or_notifications(deployment: Deployment, logs: io.StringIO) -> None:
    # An upstream that echoes the password back in its error text, as some gateways do.
    echo = Fault(400, {"error_code": "CSBS.6001", "error_msg": f"bad credential {PASSWORD}"})
    deployment.standin.fail_next("csbs", echo)
    deployment.invoke(read_event("direct.json"))
    deployment.invoke(read_event("batch.json"))
    deployment.invoke(read_event("invalid.json"))
    deployment.set_secret(deployment.standin.cloud_secret(password=PASSWORD + "-rotated"))
    deployment.set_env("SECRET_MAX_AGE_SECONDS", "0")
    deployment.invoke(read_event("direct.json"))

    published = [d.raw_message + (d.subject or "") for d in deployment.notifications()]
    secrets = [PASSWORD, *deployment.standin.issued_tokens()]
    assert len(published) == 5
    assert "[redacted]" in published[0]
    log_text = logs.getvalue()
    assert "backup trigger failed" in log_text
    for secret in secrets:
        assert all(secret not in text for text in published)
        assert secret not in log_text


def test_handler_returns_a_short_summary(deployment: Deployment) -> None:
    result = deployment.invoke(read_event("batch.json"))

    assert json.loads(json.dumps(result)) == result
    assert result["trigger"]["source"] == "schedule"
    assert [set(plan) for plan in result["plans"]] == [{"plan_id", "outcome", "checkpoint_id"}] * 2
    ids = [str(uuid.UUID(plan["checkpoint_id"])) for plan in result["plans"]]
    assert ids == [plan["checkpoint_id"] for plan in result["plans"]]
    assert len(set(ids)) == 2


@pytest.mark.parametrize("outcome", ["succeeded", "failed"])
def test_the_duration_reported_is_the_time_the_backup_call_took(
    deployment: Deployment, outcome: str
) -> None:
    refusal = Fault(400, {"error_code": "BACKUP.1024", "error_msg": "refused"}, delay_seconds=0.2)
    if outcome == "failed":
        deployment.standin.fail_next("csbs", refusal)
    deployment.standin.answer_delay_seconds = 0.2  # CSBS takes its time to answer
    began = time.monotonic()

    deployment.invoke(read_event("direct.json"))

    took_ms = (time.monotonic() - began) * 1000
    [delivered] = deployment.notifications()
    assert delivered.message["outcome"] == outcome
    assert 200 <= delivered.message["duration_ms"] <= took_ms


def test_a_batchs_plans_are_in_flight_together(deployment: Deployment) -> None:
    """At MAX_CONCURRENCY 2, CSBS holds the first plan's request until the second's arrives:
    run one after the other, the second would never come."""
    deployment.set_env("MAX_CONCURRENCY", "2")
    arrivals, release = [threading.Event(), threading.Event()], threading.Event()
    deployment.standin.fail_next(
        "csbs", *[Fault(arrived=arrived, release=release, passthrough=True) for arrived in arrivals]
    )
    results: list[dict[str, Any]] = []
    event = {"plans": [{"plan_id": PLAN_A}, {"plan_id": PLAN_B}]}
    batch = threading.Thread(target=lambda: results.append(deployment.invoke(event)))

    batch.start()
    try:
        together = all(arrived.wait(10) for arrived in arrivals)
    finally:
        release.set()
        batch.join()

    assert together, "the second plan was sent only after the first was answered"
    assert [plan["outcome"] for plan in results[0]["plans"]] == ["succeeded", "succeeded"]


def test_a_batch_never_has_more_plans_in_flight_than_max_concurrency(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bound is the pool's size: every pool a batch runs in has MAX_CONCURRENCY workers at
    most, and no more worker threads ever run its plans."""
    pools: list[int | None] = []
    workers: set[str] = set()

    class Recorded(ThreadPoolExecutor):
        def __init__(self, max_workers: int | None = None) -> None:
            pools.append(max_workers)
            super().__init__(max_workers=max_workers, thread_name_prefix="bounded")

    monkeypatch.setattr(csbs_trigger.runner, "ThreadPoolExecutor", Recorded)
    deployment.set_env("MAX_CONCURRENCY", "2")
    original = csbs_trigger.runner.execute_once

    def noting_the_thread(*args: Any) -> Any:
        workers.add(threading.current_thread().name)
        return original(*args)

    monkeypatch.setattr(csbs_trigger.runner, "execute_once", noting_the_thread)

    plans = [{"plan_id": PLAN_A}, {"plan_id": PLAN_B},
             {"plan_id": PLAN_A, "resources": [APP_SERVER]}]  # fmt: skip

    result = deployment.invoke({"plans": plans})

    assert [plan["outcome"] for plan in result["plans"]] == ["succeeded"] * 3
    assert pools == [2, 2]  # the executions' pool, then the notifications'
    assert len(workers) <= 2


def test_an_all_invalid_batch_is_told_plan_by_plan(deployment: Deployment) -> None:
    """No plan to run means no worker: each one is still told why it was refused."""
    result = deployment.invoke({"plans": [{"plan_id": "no id!"}, {"resources": 1}]})

    assert [plan["outcome"] for plan in result["plans"]] == ["failed", "failed"]
    delivered = deployment.notifications()
    assert {d.message["error"]["category"] for d in delivered} == {"invalid_event"}
    assert len(delivered) == 2
    assert len({d.message["error"]["message"] for d in delivered}) == 2  # each its own reason
    assert deployment.standin.requests == []


def test_a_full_batch_at_full_concurrency_discards_no_connection(
    deployment: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    # Before: pools of 10 under 16 workers discarded connections ("Connection pool is full").
    deployment.set_env("MAX_CONCURRENCY", "16")
    plans = [str(uuid.uuid4()) for _ in range(20)]
    for plan_id in plans:
        deployment.standin.add_plan(plan_id, "many", {str(uuid.uuid4()): "server"})
    deployment.standin.answer_delay_seconds = 0.05  # answers overlap, as real ones would

    with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
        for _ in range(3):
            result = deployment.invoke({"plans": [{"plan_id": plan_id} for plan_id in plans]})
            assert result["outcome"] == "succeeded"

    assert [r.message for r in caplog.records if "pool is full" in r.message] == []


def test_a_container_builds_only_the_aws_clients_it_calls_each_once(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each boto3 client costs a cold start about 4 ms of CPU: a firing of 20 plans or fewer
    # never calls SQS, and the 16 plans of a batch that first reach a client side by side
    # build it once (a boto3 session must not build two at once).
    built: list[str] = []
    real = boto3.session.Session.client

    def client(session: boto3.session.Session, service: str, **options: Any) -> Any:
        built.append(service)
        return real(session, service, **options)  # type: ignore[call-overload]

    monkeypatch.setattr(boto3.session.Session, "client", client)
    deployment.set_env("MAX_CONCURRENCY", "16")
    assert built == []  # a container that has run nothing has built nothing
    plans = [str(uuid.uuid4()) for _ in range(16)]
    for plan_id in plans:
        deployment.standin.add_plan(plan_id, "many", {str(uuid.uuid4()): "server"})

    result = deployment.invoke({"plans": [{"plan_id": plan_id} for plan_id in plans]})

    assert result["outcome"] == "succeeded"
    assert sorted(built) == ["dynamodb", "secretsmanager", "sns"]

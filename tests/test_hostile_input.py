"""The three promises under hostile and odd input (issue 7): one notification per plan, once per
trigger, only the senders' secrets start backups. Each test names the input that broke one."""

from __future__ import annotations

import base64
import io
import json
import uuid
from typing import Any
from urllib.parse import quote

import pytest
from conftest import Deployment, read_event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_webhooks import (
    PLAN_A,
    SECRETS,
    bearer_event,
    body_of,
    generic_event,
    jira_event,
)

from csbs_trigger import PublishError
from csbs_trigger.notify import MAX_MESSAGE_BYTES
from csbs_trigger.triggers.events import MAX_INLINE_PLANS, BackupRequest, parse_event
from support.standin import PASSWORD, Fault

SERVER_A = "7a32a8b5-7977-4e24-b5da-e0eb457db75b"
SERVER_B = "b2b433bf-7dd6-4a74-aa8f-85673dfbda48"
SCHEDULE = {
    "schedule_arn": "arn:aws:scheduler:eu-central-1:123456789012:schedule/default/nightly",
    "scheduled_time": "2026-11-28T02:00:00Z",
}


def checkpoint_answer(resources: int, name_length: int = 8) -> dict[str, Any]:
    return {
        "checkpoint": {
            "id": str(uuid.uuid4()),
            "status": "protecting",
            "protection_plan": {
                "id": PLAN_A,
                "name": "huge",
                "resources": [
                    {
                        "id": str(uuid.uuid4()),
                        "type": "OS::Nova::Server",
                        "name": f"server-{index}-" + "x" * name_length,
                        "extra_info": "{}",
                    }
                    for index in range(resources)
                ],
            },
        }
    }


# -- promise 1: one notification per plan, whatever the input ------------------------------------


def test_lone_surrogate_in_a_signed_reference_is_carried_safely(deployment: Deployment) -> None:
    body = b'{"plan_id": "%s", "reference": "OPS-\\ud800"}' % PLAN_A.encode()

    answer = deployment.invoke_webhook(generic_event(body))

    assert answer["statusCode"] == 201, answer["body"]
    [delivered] = deployment.notifications()
    assert delivered.message["trigger"]["reference"] == "OPS-\ufffd"


def test_lone_surrogate_in_a_servicenow_event_id_is_carried_safely(deployment: Deployment) -> None:
    body = read_event("webhook-servicenow.json")["body"]
    body = body.replace('"9f1c3a6e1b2d4c8a8e7f6d5c4b3a2910"', '"evt-\\udfff"')

    answer = deployment.invoke_webhook(bearer_event(body.encode()))

    assert answer["statusCode"] == 201, answer["body"]
    [delivered] = deployment.notifications()
    assert delivered.message["trigger"]["id"] == "evt-\ufffd"


def test_lone_surrogate_in_an_eventbridge_id_is_refused_before_csbs(
    deployment: Deployment,
) -> None:
    event = {**read_event("eventbridge.json"), "id": "\ud800"}

    result = deployment.invoke(event)

    assert result["outcome"] == "failed"
    assert deployment.standin.requests == []
    [delivered] = deployment.notifications()
    assert delivered.message["error"]["category"] == "invalid_event"
    assert "event.id" in delivered.message["error"]["message"]


def test_a_header_that_is_not_valid_text_is_400_before_anything(deployment: Deployment) -> None:
    event = generic_event({"plan_id": PLAN_A})
    event["headers"]["webhook-id"] = "msg-\ud800"  # before: a 500 for an unsigned caller

    answer = deployment.invoke_webhook(event)

    assert answer["statusCode"] == 400
    assert deployment.standin.requests == []


def test_whatever_a_csbs_answer_holds_its_notification_publishes(deployment: Deployment) -> None:
    answer = checkpoint_answer(2)
    body = json.dumps(answer).replace("server-0-", "server-\\ud800-").encode()
    deployment.standin.fail_next("csbs", Fault(200, body))

    result = deployment.invoke(read_event("direct.json"))

    assert result["outcome"] == "succeeded"
    [delivered] = deployment.notifications()
    names = [r["name"] for r in delivered.message["checkpoint"]["protection_plan"]["resources"]]
    assert names[0].startswith("server-\ufffd-")


def test_a_huge_answer_is_published_shortened_and_a_retry_starts_no_second_backup(
    deployment: Deployment,
) -> None:
    huge = checkpoint_answer(3000, name_length=100)
    assert len(json.dumps(huge)) > 450 * 1024
    deployment.standin.fail_next("csbs", Fault(200, huge))

    first = deployment.invoke(read_event("schedule.json"))
    retry = deployment.invoke(read_event("schedule.json"))  # Lambda's retry, or a redelivery

    assert first["outcome"] == "succeeded"
    assert retry["plans"][0]["replayed"] is True
    assert len(deployment.standin.calls("csbs")) == 1
    [delivered] = deployment.notifications()
    assert len(delivered.raw_message.encode()) <= MAX_MESSAGE_BYTES
    checkpoint = delivered.message["checkpoint"]
    assert checkpoint["id"] == huge["checkpoint"]["id"]
    assert checkpoint["status"] == "protecting"
    plan = checkpoint["protection_plan"]
    assert plan["resources_omitted"] > 0
    assert len(plan["resources"]) + plan["resources_omitted"] == 3000
    assert plan["resources"][0]["id"] == huge["checkpoint"]["protection_plan"]["resources"][0]["id"]


def test_a_huge_free_form_answer_is_cut_to_its_essentials(deployment: Deployment) -> None:
    answer = checkpoint_answer(1)
    answer["checkpoint"]["extra_info"] = {"note": "y" * (300 * 1024)}
    deployment.standin.fail_next("csbs", Fault(200, answer))

    deployment.invoke(read_event("direct.json"))

    [delivered] = deployment.notifications()
    assert "essentials" in delivered.message["truncated"]
    assert delivered.message["checkpoint"] == {
        "id": answer["checkpoint"]["id"],
        "status": "protecting",
    }
    assert delivered.message["outcome"] == "succeeded"
    assert delivered.message["schema_version"] == 1


def test_result_that_cannot_be_recorded_is_still_reported_and_never_run_twice(
    deployment: Deployment,
) -> None:
    deployment.invoke(read_event("direct.json"))  # builds the container's clients
    deployment.notifications()
    runtime = deployment.runtime
    assert runtime.dynamodb is not None
    # Powertools writes the result with UpdateItem once CSBS has answered.
    refused = deployment.refuse(runtime.dynamodb, "UpdateItem", "ProvisionedThroughputExceeded")

    result = deployment.invoke(read_event("schedule.json"))  # returns: no Lambda retry

    assert refused == ["UpdateItem"]
    assert result["outcome"] == "succeeded"
    assert len(deployment.standin.calls("csbs")) == 2
    [delivered] = deployment.notifications()
    assert delivered.message["outcome"] == "succeeded"
    # Nor is its publish recorded: a publish record standing for no execute record would answer
    # a later run of this firing (its in-progress record expired) with this notification, and
    # leave that run's backup unreported.
    table = deployment.aws.client("dynamodb")
    items = table.scan(TableName="csbs-trigger-idempotency")["Items"]
    assert [item["status"]["S"] for item in items] == ["INPROGRESS"]


def test_a_notification_sns_refuses_for_good_is_published_as_its_essentials(
    deployment: Deployment,
) -> None:
    deployment.invoke(read_event("direct.json"))
    deployment.notifications()
    refused = deployment.refuse(deployment.runtime.sns, "Publish", "InvalidParameter")

    result = deployment.invoke(read_event("schedule.json"))

    assert refused == ["Publish"]
    assert result["outcome"] == "succeeded"
    [delivered] = deployment.notifications()
    assert delivered.message["truncated"] == (
        "SNS refused the notification (InvalidParameter): only its essentials are kept"
    )
    records = deployment.aws.client("dynamodb").scan(TableName="csbs-trigger-idempotency")
    results = [json.loads(item["data"]["S"]) for item in records["Items"] if "data" in item]
    assert {"message_id": delivered.message_id, "essentials": True} in results
    assert delivered.message["checkpoint"]["id"] == result["plans"][0]["checkpoint_id"]
    assert delivered.attributes["outcome"] == "succeeded"


# -- promise 2: once per trigger ------------------------------------------------------------------


def test_one_request_twice_in_a_direct_batch_runs_once_whatever_the_server_order(
    deployment: Deployment,
) -> None:
    """A hand-made batch names no firing (nothing is recorded), yet one request is one backup:
    the servers are a set."""
    event = {"plans": [{"plan_id": PLAN_A, "resources": [SERVER_A, SERVER_B]},
                       {"plan_id": PLAN_A, "resources": [SERVER_B, SERVER_A]}]}  # fmt: skip

    result = deployment.invoke(event)

    assert len(deployment.standin.calls("csbs")) == 1
    assert [plan["outcome"] for plan in result["plans"]] == ["succeeded", "succeeded"]
    first, second = deployment.notifications()
    assert first.message["checkpoint"]["id"] == second.message["checkpoint"]["id"]
    assert first.message["idempotency_key"] is second.message["idempotency_key"] is None


def test_the_same_plan_twice_in_a_batch_runs_each_request(deployment: Deployment) -> None:
    event = {"plans": [{"plan_id": PLAN_A, "resources": [SERVER_A]},
                       {"plan_id": PLAN_A, "resources": [SERVER_B]}], **SCHEDULE}  # fmt: skip

    result = deployment.invoke(event)
    deployment.invoke(event)  # delivered again: nothing more

    sent = sorted(call.json()["checkpoint"]["parameters"]["resources"][0]
                  for call in deployment.standin.calls("csbs"))  # fmt: skip
    assert sent == sorted([SERVER_A, SERVER_B])
    assert [plan["outcome"] for plan in result["plans"]] == ["succeeded", "succeeded"]
    delivered = deployment.notifications()
    assert sorted(d.message["request"]["resources"][0] for d in delivered) == sent
    assert len({d.message["checkpoint"]["id"] for d in delivered}) == 2


def test_an_invalid_item_never_hides_a_valid_one_of_the_same_plan(deployment: Deployment) -> None:
    event = {"plans": [{"plan_id": PLAN_A, "resources": "not a list"}, {"plan_id": PLAN_A}],
             **SCHEDULE}  # fmt: skip

    result = deployment.invoke(event)

    assert [plan["outcome"] for plan in result["plans"]] == ["failed", "succeeded"]
    assert len(deployment.standin.calls("csbs")) == 1
    assert len(deployment.notifications()) == 2


def test_the_same_request_twice_in_a_batch_is_one_backup_and_two_notifications(
    deployment: Deployment,
) -> None:
    item = {"plan_id": PLAN_A, "resources": [SERVER_A, SERVER_B]}
    event = {"plans": [item, {**item, "resources": [SERVER_B, SERVER_A]}], **SCHEDULE}

    result = deployment.invoke(event)

    assert len(deployment.standin.calls("csbs")) == 1
    ids = {plan["checkpoint_id"] for plan in result["plans"]}
    assert len(ids) == 1
    assert len(deployment.notifications()) == 2


def test_a_replayed_jira_body_under_a_fresh_delivery_id_starts_nothing(
    deployment: Deployment,
) -> None:
    body = read_event("webhook-jira.json")["body"].encode()
    first_event = jira_event(body, delivery="jira-original")
    # What an eavesdropper captured, sent again under an id of its own (the id is not signed).
    headers = {**first_event["headers"], "x-atlassian-webhook-identifier": "jira-fresh-id"}
    replay = {**first_event, "headers": headers}

    first = deployment.invoke_webhook(first_event)
    second = deployment.invoke_webhook(replay)

    assert (first["statusCode"], second["statusCode"]) == (201, 201)
    assert second["headers"]["Idempotent-Replayed"] == "true"
    assert len(deployment.standin.calls("csbs")) == 1
    assert len(deployment.notifications()) == 1


@pytest.mark.parametrize(("age_seconds", "status"), [(-2101, 401), (2101, 401), (-2100, 201),
                                                   (2100, 201)])  # fmt: skip
def test_a_jira_body_is_taken_only_within_the_tolerance(
    deployment: Deployment, age_seconds: int, status: int
) -> None:
    """35 minutes: Jira resends a failed delivery for up to 30 (issue 16)."""
    deployment.now = 1_800_000_000.0
    body = read_event("webhook-jira.json")["body"]
    signed_at = (1_800_000_000 - age_seconds) * 1000
    stamped = json.dumps({**json.loads(body), "timestamp": signed_at})

    answer = deployment.invoke_webhook(jira_event(stamped.encode(), fresh=False))

    assert answer["statusCode"] == status
    assert (deployment.standin.requests == []) is (status == 401)


def test_a_jira_body_without_a_timestamp_is_401(deployment: Deployment) -> None:
    body = json.loads(read_event("webhook-jira.json")["body"])
    del body["timestamp"]

    answer = deployment.invoke_webhook(jira_event(json.dumps(body).encode(), fresh=False))

    assert answer["statusCode"] == 401


def test_one_delivery_id_with_two_bodies_is_422_and_starts_nothing(
    deployment: Deployment,
) -> None:
    first = deployment.invoke_webhook(generic_event({"plan_id": PLAN_A}, delivery="msg-9"))
    second = deployment.invoke_webhook(
        generic_event({"plan_id": PLAN_A, "resources": [SERVER_A]}, delivery="msg-9")
    )

    assert first["statusCode"] == 201
    assert second["statusCode"] == 422
    conflict = "this delivery id was used before for a different payload"
    assert body_of(second)["message"] == conflict
    assert len(deployment.standin.calls("csbs")) == 1
    succeeded, refused = deployment.notifications()
    assert (succeeded.message["outcome"], refused.message["outcome"]) == ("succeeded", "failed")
    assert refused.message["error"]["message"] == conflict


def test_a_delivery_id_reused_while_its_notification_is_unpublished_is_still_422(
    deployment: Deployment,
) -> None:
    """Between the backup and its notification only the execute record stands for the body: a
    second body must not be answered with the first body's backup."""
    topic = deployment.topic_arn
    deployment.set_env("NOTIFICATION_TOPIC_ARN", topic + "-missing")
    first = deployment.invoke_webhook(generic_event({"plan_id": PLAN_A}, delivery="msg-10"))
    deployment.set_env("NOTIFICATION_TOPIC_ARN", topic)

    second = deployment.invoke_webhook(
        generic_event({"plan_id": PLAN_A, "resources": [SERVER_A]}, delivery="msg-10")
    )

    assert (first["statusCode"], second["statusCode"]) == (503, 422)
    assert len(deployment.standin.calls("csbs")) == 1
    [refused] = deployment.notifications()
    assert refused.message["outcome"] == "failed"
    assert refused.message["error"]["category"] == "invalid_event"


# -- promise 3: only the senders' secrets start backups -------------------------------------------


@pytest.mark.parametrize(
    ("source", "weak"),
    [("generic", "whsec_"), ("generic", "whsec_AA=="), ("generic", "whsec_not base64!"),
     ("jira", " "), ("jira", "short-secret"), ("servicenow", "")],
)  # fmt: skip
def test_a_weak_webhook_secret_is_a_config_error_never_a_door(
    deployment: Deployment, logs: io.StringIO, source: str, weak: str
) -> None:
    deployment.aws.update_secret("csbs-trigger/webhooks", {**SECRETS, source: [weak]})
    deployment.cold_start()
    key = base64.b64decode(weak.removeprefix("whsec_") or "") if weak == "whsec_AA==" else b""
    body = json.dumps({"plan_id": PLAN_A}).encode()
    signed = {
        "generic": lambda: generic_event(body, secret="whsec_" + base64.b64encode(key).decode()),
        "jira": lambda: jira_event(body, secret=weak),
        "servicenow": lambda: bearer_event(body, token=weak),
    }[source]()

    answer = deployment.invoke_webhook(signed)

    assert answer["statusCode"] == 500
    assert body_of(answer)["error"] == "config_error"
    assert deployment.standin.requests == []
    assert f"the webhook secret of source {source}" in logs.getvalue()
    if weak.strip():
        assert weak not in logs.getvalue()


def test_a_rest_api_get_is_405_even_when_signed(deployment: Deployment) -> None:
    event = generic_event({"plan_id": PLAN_A})
    rest = {
        "resource": "/webhooks/{source}", "path": "/webhooks/generic", "httpMethod": "GET",
        "headers": event["headers"], "pathParameters": {"source": "generic"},
        "requestContext": {"httpMethod": "GET", "path": "/prod/webhooks/generic"},
        "body": event["body"], "isBase64Encoded": False,
    }  # fmt: skip

    answer = deployment.invoke_webhook(rest)

    assert answer["statusCode"] == 405
    assert deployment.standin.requests == []


def test_a_rest_api_post_runs(deployment: Deployment) -> None:
    event = generic_event({"plan_id": PLAN_A})
    rest = {"path": "/webhooks/generic", "httpMethod": "POST", "headers": event["headers"],
            "requestContext": {"httpMethod": "POST"}, "body": event["body"]}  # fmt: skip

    assert deployment.invoke_webhook(rest)["statusCode"] == 201


# -- bad configuration ---------------------------------------------------------------------------


def test_a_refused_password_is_tried_once(deployment: Deployment) -> None:
    deployment.set_secret(deployment.standin.cloud_secret(password="wrong-password"))

    deployment.invoke(read_event("direct.json"))

    assert len(deployment.standin.calls("iam")) == 1  # lockout policies count each one
    [delivered] = deployment.notifications()
    assert delivered.message["error"]["category"] == "auth_failed"


def test_a_password_rotated_after_a_refusal_is_tried(deployment: Deployment) -> None:
    deployment.standin.password = PASSWORD + "-rotated"
    deployment.invoke(read_event("direct.json"))  # cached secret: refused, re-read: the same
    deployment.set_secret(deployment.standin.cloud_secret(password=PASSWORD + "-rotated"))

    result = deployment.invoke(read_event("direct.json"))

    assert result["outcome"] == "succeeded"
    # The refused login, then the rotated one: the old password is not sent again (a refusal is
    # remembered for a minute, and the secret read afresh brings the new one).
    sent = [call.json()["auth"]["identity"]["password"]["user"]["password"]
            for call in deployment.standin.calls("iam")]  # fmt: skip
    assert sent == [PASSWORD, PASSWORD + "-rotated"]


def test_openstack_request_id_is_read_into_the_error(deployment: Deployment) -> None:
    deployment.standin.fail_next(
        "csbs",
        Fault(
            400,
            {"badRequest": {"code": 400, "message": "nope"}},
            {"X-Openstack-Request-Id": "req-8d1c2b3a"},
        ),
    )

    deployment.invoke(read_event("direct.json"))

    [delivered] = deployment.notifications()
    assert delivered.message["error"]["request_id"] == "req-8d1c2b3a"


SPECIAL_PASSWORD = "s3cr3t/Passw0rd+for&standin=2026"


@pytest.mark.parametrize(
    "echo",
    [quote(SPECIAL_PASSWORD, safe=""), quote(SPECIAL_PASSWORD), SPECIAL_PASSWORD,
     "x" * 265 + SPECIAL_PASSWORD],
    ids=["url-encoded", "url-encoded path", "as is", "cut at the length limit"],
)  # fmt: skip
def test_echoed_passwords_are_redacted_in_every_form(
    deployment: Deployment, logs: io.StringIO, echo: str
) -> None:
    deployment.standin.password = SPECIAL_PASSWORD
    deployment.set_secret(deployment.standin.cloud_secret(password=SPECIAL_PASSWORD))
    deployment.standin.fail_next("csbs", Fault(400, {"error_code": "CSBS.6001", "error_msg": echo}))

    deployment.invoke(read_event("direct.json"))

    [delivered] = deployment.notifications()
    assert "[redacted]" in delivered.message["error"]["message"]
    for text in (delivered.raw_message, logs.getvalue()):
        assert quote(SPECIAL_PASSWORD, safe="")[:8] not in text
        assert SPECIAL_PASSWORD[:8] not in text


def test_a_password_with_spaces_echoed_collapsed_is_redacted(deployment: Deployment) -> None:
    password = "pass  word   with spaces-2026"
    deployment.standin.password = password
    deployment.set_secret(deployment.standin.cloud_secret(password=password))
    echo = f"login failed for {password}"
    deployment.standin.fail_next("csbs", Fault(400, {"error_code": "CSBS.6001", "error_msg": echo}))

    deployment.invoke(read_event("direct.json"))

    [delivered] = deployment.notifications()
    assert "pass word with spaces-2026" not in delivered.raw_message
    assert "[redacted]" in delivered.message["error"]["message"]


# -- real payloads -------------------------------------------------------------------------------


@pytest.mark.parametrize("blank", ['""', '"  "', "null", "[]"])
def test_a_blank_servicenow_server_field_means_every_server(
    deployment: Deployment, blank: str
) -> None:
    body = json.loads(read_event("webhook-servicenow.json")["body"])
    body["change_request"]["u_csbs_server_ids"] = json.loads(blank)

    answer = deployment.invoke_webhook(bearer_event(json.dumps(body).encode()))

    assert answer["statusCode"] == 201, answer["body"]
    [call] = deployment.standin.calls("csbs")
    assert "resources" not in call.json()["checkpoint"]["parameters"]


@pytest.mark.parametrize("spelling", ["1", "true", "True", "YES", "y", "t", "on", "ON", ""])
def test_idempotency_cannot_be_switched_off_by_any_spelling(
    deployment: Deployment, spelling: str
) -> None:
    deployment.set_env("POWERTOOLS_IDEMPOTENCY_DISABLED", spelling)

    answers = [deployment.invoke_webhook(generic_event({"plan_id": PLAN_A})) for _ in range(2)]

    assert [answer["statusCode"] for answer in answers] == [500, 500]
    assert deployment.standin.requests == []


def test_idempotency_stays_on_when_the_variable_reads_false(deployment: Deployment) -> None:
    deployment.set_env("POWERTOOLS_IDEMPOTENCY_DISABLED", "off")

    answers = [deployment.invoke_webhook(generic_event({"plan_id": PLAN_A})) for _ in range(2)]

    assert [answer["statusCode"] for answer in answers] == [201, 201]
    assert len(deployment.standin.calls("csbs")) == 1


# -- the batch property ---------------------------------------------------------------------------

PLAN_B = "6a6cda7e-7b89-4b14-8e5c-3b6821a97d2c"
SERVER_0 = "1c960fe4-e679-421a-97cd-4f7463d2344b"
_VALID_ITEMS = st.one_of(
    st.builds(
        lambda servers, auto: {
            "plan_id": PLAN_A,
            **({"resources": servers} if servers else {}),
            **({"auto_trigger": auto} if auto is not None else {}),
        },
        st.lists(st.sampled_from([SERVER_A, SERVER_B]), unique=True, max_size=2),
        st.sampled_from([None, True, False]),
    ),
    st.just({"plan_id": PLAN_B}),
    st.just({"plan_id": PLAN_B, "resources": [SERVER_0]}),
)
_INVALID_ITEMS = st.sampled_from(
    [{"plan_id": PLAN_A, "resources": "not a list"}, {"plan_id": "bad id!"},
     {"plan_id": PLAN_A, "resources": []}, {"plan": PLAN_A}, "not an object"]
)  # fmt: skip


def _request(item: Any) -> tuple[Any, ...]:
    return (item["plan_id"], sorted(item.get("resources") or []) or None, item.get("auto_trigger"))


@settings(
    max_examples=12,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    items=st.lists(st.one_of(_VALID_ITEMS, _INVALID_ITEMS), min_size=1, max_size=MAX_INLINE_PLANS),
    first_invocation_fails=st.booleans(),
)
def test_any_batch_runs_each_distinct_request_once_and_tells_every_item(
    deployment: Deployment, items: list[Any], first_invocation_fails: bool
) -> None:
    deployment.standin.requests.clear()
    deployment.notifications()
    # A firing of its own per example: a schedule of its own.
    event = {**SCHEDULE, "plans": items}
    event["schedule_arn"] = f"{SCHEDULE['schedule_arn']}-{uuid.uuid4().hex[:8]}"
    if first_invocation_fails:
        deployment.invoke(read_event("direct.json"))  # the container's clients exist
        deployment.standin.requests.clear()
        deployment.notifications()
        # SNS fails for a moment: the invocation fails and Lambda retries it.
        deployment.refuse(deployment.runtime.sns, "Publish", "InternalError")
        with pytest.raises(PublishError):
            deployment.invoke(event)
    deployment.invoke(event)

    valid = [item for item in items if isinstance(item, dict) and _is_valid(item)]
    calls = [call.json()["checkpoint"] for call in deployment.standin.calls("csbs")]
    sent = [_request({"plan_id": c["plan_id"], **c["parameters"]}) for c in calls]
    assert sorted(map(repr, sent)) == sorted({repr(_request(item)) for item in valid})
    delivered = deployment.notifications()
    assert len(delivered) == len(items)
    for notification in delivered:
        if notification.message["outcome"] == "succeeded":
            assert _request(notification.message["request"]) in sent
    outcomes = sorted(d.message["outcome"] for d in delivered)
    assert outcomes.count("succeeded") == len(valid)


def _is_valid(item: dict[str, Any]) -> bool:
    return isinstance(parse_event({"plans": [item]}).items[0], BackupRequest)

"""Webhook triggers: verified, mapped, exactly once; in-process and over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from conftest import ROOT, Deployment, read_event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from support.http_api import http_api_event
from support.standin import Fault
from support.webhook_samples import SAMPLE_TIME, SAMPLES, build
from support.webhook_server import WebhookServer

PLAN_A = "62171999-3df1-42f7-9513-6f9b1bea4744"
PLAN_B = "6a6cda7e-7b89-4b14-8e5c-3b6821a97d2c"
SECRETS = json.loads((ROOT / "events" / "secrets" / "webhooks.json").read_text())
GENERIC_SECRET = SECRETS["generic"][0]
JIRA_SECRET = SECRETS["jira"][0]
SERVICENOW_TOKEN = SECRETS["servicenow"][0]


# Requests are signed by implementations independent of the code under test: the Standard
# Webhooks reference library, and plain hmac for hub signatures.
def sign_standard_webhook(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    key = base64.b64decode(secret.removeprefix("whsec_") + "==")  # padded as the library does
    if text is None or not key:  # the library signs text, with a key: bytes by hand
        signed = f"{message_id}.{timestamp}.".encode() + body
        return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return str(Webhook(secret).sign(message_id, moment, text))


def sign_hub(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def generic_event(
    body: dict[str, Any] | bytes,
    *,
    delivery: str = "msg_1",
    secret: str = GENERIC_SECRET,
    timestamp: int | None = None,
    route: bool = True,
    extra_headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    stamp = signing_time() if timestamp is None else timestamp
    headers = {
        "Content-Type": "application/json",
        "webhook-id": delivery,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign_standard_webhook(secret, delivery, stamp, raw),
        **(extra_headers or {}),
    }
    return http_api_event("POST", "/webhooks/generic", headers, raw, route=route)


def jira_event(
    body: bytes, *, delivery: str = "jira-1", secret: str = JIRA_SECRET, fresh: bool = True
) -> dict[str, Any]:
    """A Jira delivery; ``fresh`` stamps the body with the current time, as Jira Cloud does."""
    if fresh:
        body = json.dumps({**json.loads(body), "timestamp": signing_time() * 1000}).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Atlassian-Webhook-Identifier": delivery,
        "X-Hub-Signature-256": sign_hub(secret, body),
    }
    return http_api_event("POST", "/webhooks/jira", headers, body)


def bearer_event(body: bytes, token: str = SERVICENOW_TOKEN) -> dict[str, Any]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    return http_api_event("POST", "/webhooks/servicenow", headers, body)


def body_of(answer: dict[str, Any]) -> dict[str, Any]:
    return json.loads(answer["body"])  # type: ignore[no-any-return]


PLAN_PAYLOAD = {"plan_id": PLAN_A, "resources": ["7a32a8b5-7977-4e24-b5da-e0eb457db75b"]}


# -- the shipped samples map to the right plan and servers ---------------------------------------


def test_jira_sample_maps_custom_fields_to_plan_and_servers(deployment: Deployment) -> None:
    deployment.now = SAMPLE_TIME  # the sample's signed body says when it was sent
    answer = deployment.invoke_webhook(read_event("webhook-jira.json"))

    assert answer["statusCode"] == 201, answer["body"]
    assert body_of(answer)["plan_id"] == PLAN_A
    assert body_of(answer)["reference"] == "CHG-42"
    [call] = deployment.standin.calls("csbs")
    assert call.json()["checkpoint"] == {
        "plan_id": PLAN_A,
        "parameters": {
            "resources": [
                "7a32a8b5-7977-4e24-b5da-e0eb457db75b",
                "b2b433bf-7dd6-4a74-aa8f-85673dfbda48",
            ]
        },
    }
    [delivered] = deployment.notifications()
    assert delivered.message["trigger"] == {
        "source": "webhook",
        "id": "a3c2e1d0-jira-delivery-0001",
        "sender": "jira",
        "reference": "CHG-42",
    }
    assert delivered.message["checkpoint"]["id"] == body_of(answer)["checkpoint_id"]
    # Jira signs only the body: the body names the delivery, not the unsigned id header.
    digest = hashlib.sha256(read_event("webhook-jira.json")["body"].encode()).hexdigest()
    assert delivered.message["idempotency_key"] == f"webhook:jira:body-{digest}"


def test_servicenow_sample_maps_the_change_request(deployment: Deployment) -> None:
    answer = deployment.invoke_webhook(read_event("webhook-servicenow.json"))

    assert answer["statusCode"] == 201, answer["body"]
    [delivered] = deployment.notifications()
    assert body_of(answer) == {
        "checkpoint_id": delivered.message["checkpoint"]["id"],  # the one CSBS created
        "status": "protecting",
        "plan_id": PLAN_B,
        "reference": "CHG0040007",
    }
    [call] = deployment.standin.calls("csbs")
    assert call.json()["checkpoint"]["parameters"] == {
        "resources": ["1c960fe4-e679-421a-97cd-4f7463d2344b"]
    }


def test_generic_payload_through_a_function_url(deployment: Deployment) -> None:
    answer = deployment.invoke_webhook(generic_event(PLAN_PAYLOAD, route=False))

    assert answer["statusCode"] == 201, answer["body"]


def test_base64_encoded_body_is_verified_and_read(deployment: Deployment) -> None:
    event = generic_event(PLAN_PAYLOAD)
    event["body"] = base64.b64encode(event["body"].encode()).decode()
    event["isBase64Encoded"] = True

    assert deployment.invoke_webhook(event)["statusCode"] == 201


# -- who may call --------------------------------------------------------------------------------


def tampered(event: dict[str, Any]) -> dict[str, Any]:
    event["body"] = event["body"].replace(PLAN_A, PLAN_B)
    return event


def without(event: dict[str, Any], header: str) -> dict[str, Any]:
    event["headers"].pop(header)
    return event


BODY = json.dumps(PLAN_PAYLOAD).encode()
# The moment senders sign at and the function checks against, where a test pins both.
PINNED_TIME = 1_800_000_000
_pinned: list[int] = []


def signing_time() -> int:
    return _pinned[-1] if _pinned else int(time.time())


@pytest.fixture
def pinned_clock(deployment: Deployment) -> Iterator[int]:
    """Senders and the function agree on one fixed moment: timestamp bounds are exact."""
    deployment.now = float(PINNED_TIME)
    _pinned.append(PINNED_TIME)
    yield PINNED_TIME
    _pinned.clear()


# One second outside the 5-minute tolerance, on either side (the clock is pinned).
REJECTED = {
    "standard-webhooks: tampered body": lambda: tampered(generic_event(PLAN_PAYLOAD)),
    "standard-webhooks: wrong secret": lambda: generic_event(
        PLAN_PAYLOAD, secret="whsec_" + base64.b64encode(b"another secret").decode()
    ),
    "standard-webhooks: stale timestamp": lambda: generic_event(
        PLAN_PAYLOAD, timestamp=PINNED_TIME - 301
    ),
    "standard-webhooks: future timestamp": lambda: generic_event(
        PLAN_PAYLOAD, timestamp=PINNED_TIME + 301
    ),
    "standard-webhooks: missing signature": lambda: without(
        generic_event(PLAN_PAYLOAD), "webhook-signature"
    ),
    "standard-webhooks: missing timestamp": lambda: without(
        generic_event(PLAN_PAYLOAD), "webhook-timestamp"
    ),
    "hub-signature: tampered body": lambda: tampered(
        jira_event(read_event("webhook-jira.json")["body"].encode())
    ),
    "hub-signature: wrong secret": lambda: jira_event(BODY, secret="not-the-secret"),
    "hub-signature: missing header": lambda: without(jira_event(BODY), "x-hub-signature-256"),
    "bearer: wrong token": lambda: bearer_event(BODY, token="guess"),
    "bearer: missing header": lambda: without(bearer_event(BODY), "authorization"),
}


Send = Callable[[dict[str, Any]], dict[str, Any]]


@pytest.fixture(params=["in-process", "over HTTP"])
def send(request: pytest.FixtureRequest, deployment: Deployment) -> Iterator[Send]:
    """Deliver an event to the handler directly, or as a real request to the local endpoint."""
    if request.param == "in-process":
        yield deployment.invoke_webhook
        return
    import webhook

    with WebhookServer(webhook.handler) as server:

        def over_http(event: dict[str, Any]) -> dict[str, Any]:
            body = event["body"] or ""
            data = base64.b64decode(body) if event["isBase64Encoded"] else body.encode()
            answer = requests.post(
                server.url + event["rawPath"], data=data, headers=event["headers"], timeout=30
            )
            return {
                "statusCode": answer.status_code,
                "headers": answer.headers,
                "body": answer.text,
            }

        yield over_http


@pytest.mark.parametrize("offset", [-300, 300])
@pytest.mark.usefixtures("pinned_clock")
def test_a_timestamp_at_the_edge_of_the_tolerance_is_accepted(
    deployment: Deployment, offset: int
) -> None:
    answer = deployment.invoke_webhook(generic_event(PLAN_PAYLOAD, timestamp=PINNED_TIME + offset))

    assert answer["statusCode"] == 201, answer["body"]


@pytest.mark.parametrize("name", ["webhook-jira.json", "webhook-servicenow.json", "generic"])
def test_each_scheme_accepts_a_correctly_signed_request(
    deployment: Deployment, send: Send, name: str
) -> None:
    deployment.now = SAMPLE_TIME if name == "webhook-jira.json" else None
    event = generic_event(PLAN_PAYLOAD) if name == "generic" else read_event(name)

    answer = send(event)

    assert answer["statusCode"] == 201, answer["body"]


@pytest.mark.parametrize("case", REJECTED.keys())
@pytest.mark.usefixtures("pinned_clock")
def test_unsigned_or_mis_signed_requests_never_reach_csbs(
    deployment: Deployment, send: Send, logs: io.StringIO, case: str
) -> None:
    answer = send(REJECTED[case]())

    assert answer["statusCode"] == 401
    assert body_of(answer) == {"error": "unauthorized"}  # no hint of which check failed
    assert deployment.standin.requests == []
    assert deployment.notifications() == []
    assert "webhook rejected" in logs.getvalue()


def test_rotated_secrets_both_verify(deployment: Deployment) -> None:
    new = "whsec_" + base64.b64encode(b"the new generic secret").decode()
    secrets = {**SECRETS, "generic": [new, GENERIC_SECRET]}
    deployment.aws.update_secret("csbs-trigger/webhooks", secrets)
    deployment.cold_start()

    old_answer = deployment.invoke_webhook(generic_event(PLAN_PAYLOAD, delivery="old"))
    new_answer = deployment.invoke_webhook(generic_event(PLAN_PAYLOAD, delivery="new", secret=new))

    assert (old_answer["statusCode"], new_answer["statusCode"]) == (201, 201)


def test_rotated_hub_and_bearer_secrets_both_verify(deployment: Deployment) -> None:
    secrets = {
        **SECRETS,
        "jira": ["jira-new-secret-2027", JIRA_SECRET],
        "servicenow": ["sn-new-bearer-token-2027", SERVICENOW_TOKEN],
    }
    deployment.aws.update_secret("csbs-trigger/webhooks", secrets)
    deployment.cold_start()
    sample = read_event("webhook-jira.json")["body"].encode()

    answers = [
        deployment.invoke_webhook(jira_event(sample, delivery="j1", secret="jira-new-secret-2027")),
        deployment.invoke_webhook(jira_event(sample, delivery="j2")),
        deployment.invoke_webhook(
            bearer_event(
                read_event("webhook-servicenow.json")["body"].encode(), "sn-new-bearer-token-2027"
            )
        ),
    ]

    assert [answer["statusCode"] for answer in answers] == [201, 201, 201]


# -- exactly once --------------------------------------------------------------------------------


def test_repeated_delivery_replays_the_first_answer(deployment: Deployment) -> None:
    deployment.now = SAMPLE_TIME
    event = read_event("webhook-jira.json")

    first = deployment.invoke_webhook(event)
    second = deployment.invoke_webhook(read_event("webhook-jira.json"))

    assert first["statusCode"] == second["statusCode"] == 201
    assert first["body"] == second["body"]
    assert second["headers"]["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first["headers"]
    assert len(deployment.standin.calls("csbs")) == 1
    assert len(deployment.notifications()) == 1


def test_racing_deliveries_run_once(deployment: Deployment) -> None:
    checkpoint = {
        "checkpoint": {"id": "14626f11-b54a-44ea-8e69-7463e527506a", "status": "protecting"}
    }
    answers: list[dict[str, Any]] = []

    def deliver() -> None:
        answers.append(deployment.invoke_webhook(generic_event(PLAN_PAYLOAD, delivery="race")))

    deployment.overlapping(deliver, Fault(200, checkpoint))

    assert [answer["statusCode"] for answer in answers] == [409, 201]
    assert len(deployment.standin.calls("csbs")) == 1
    assert len(deployment.notifications()) == 1
    again = deployment.invoke_webhook(generic_event(PLAN_PAYLOAD, delivery="race"))
    assert again["statusCode"] == 201
    assert again["headers"]["Idempotent-Replayed"] == "true"


def test_retryable_failure_is_not_kept_so_the_retry_runs(deployment: Deployment) -> None:
    deployment.set_env("CSBS_MAX_ATTEMPTS", "1")
    deployment.standin.fail_next("csbs", Fault(503, {"error_code": "APIGW.0201", "error_msg": "x"}))

    first = deployment.invoke_webhook(generic_event(PLAN_PAYLOAD, delivery="retry-me"))
    second = deployment.invoke_webhook(generic_event(PLAN_PAYLOAD, delivery="retry-me"))

    assert first["statusCode"] == 503
    assert first["headers"]["Retry-After"] == "30"
    assert second["statusCode"] == 201
    assert "Idempotent-Replayed" not in second["headers"]
    assert [d.message["outcome"] for d in deployment.notifications()] == ["failed", "succeeded"]


def test_an_unpublished_notification_asks_the_sender_to_retry_and_the_retry_only_publishes(
    deployment: Deployment,
) -> None:
    topic = deployment.topic_arn
    deployment.set_env("NOTIFICATION_TOPIC_ARN", topic + "-missing")

    first = deployment.invoke_webhook(generic_event(PLAN_PAYLOAD, delivery="unheard"))
    deployment.set_env("NOTIFICATION_TOPIC_ARN", topic)
    second = deployment.invoke_webhook(generic_event(PLAN_PAYLOAD, delivery="unheard"))

    assert (first["statusCode"], first["headers"]["Retry-After"]) == (503, "10")
    assert json.loads(first["body"]) == {"error": "notification not published, retry"}
    assert "Idempotent-Replayed" not in first["headers"]
    assert (second["statusCode"], second["headers"]["Idempotent-Replayed"]) == (201, "true")
    assert len(deployment.standin.calls("csbs")) == 1
    [delivered] = deployment.notifications()
    assert delivered.message["checkpoint"]["id"] == json.loads(second["body"])["checkpoint_id"]


def test_a_replayed_delivery_whose_notification_still_fails_says_it_is_a_replay(
    deployment: Deployment,
) -> None:
    """The sender's retry of an unpublished delivery starts nothing: when SNS fails it again,
    the 503 still says that the backup it stands for had started before."""
    topic = deployment.topic_arn
    deployment.set_env("NOTIFICATION_TOPIC_ARN", topic + "-missing")

    first = deployment.invoke_webhook(generic_event(PLAN_PAYLOAD, delivery="unheard"))
    second = deployment.invoke_webhook(generic_event(PLAN_PAYLOAD, delivery="unheard"))

    assert "Idempotent-Replayed" not in first["headers"]
    assert second["statusCode"] == 503
    assert (second["headers"]["Idempotent-Replayed"], second["headers"]["Retry-After"]) == (
        "true",
        "10",
    )
    assert len(deployment.standin.calls("csbs")) == 1


def test_possible_checkpoint_is_kept_and_never_run_twice(deployment: Deployment) -> None:
    deployment.set_env("CSBS_READ_TIMEOUT_SECONDS", "1")
    deployment.standin.fail_next("csbs", Fault(200, delay_seconds=30))

    first = deployment.invoke_webhook(generic_event(PLAN_PAYLOAD, delivery="slow"))
    second = deployment.invoke_webhook(generic_event(PLAN_PAYLOAD, delivery="slow"))

    assert first["statusCode"] == second["statusCode"] == 504
    assert body_of(first)["maybe_created"] is True
    assert second["headers"]["Idempotent-Replayed"] == "true"
    assert len(deployment.standin.calls("csbs")) == 1


def test_unknown_source_is_404(deployment: Deployment) -> None:
    event = http_api_event("POST", "/webhooks/nobody", {"Content-Type": "application/json"}, b"{}")

    assert deployment.invoke_webhook(event)["statusCode"] == 404


def test_only_post_is_served(deployment: Deployment) -> None:
    event = generic_event(PLAN_PAYLOAD, route=False)
    event["requestContext"]["http"]["method"] = "GET"

    assert deployment.invoke_webhook(event)["statusCode"] == 405


def test_too_large_body_is_413_before_any_check(deployment: Deployment) -> None:
    big = json.dumps({**PLAN_PAYLOAD, "pad": "x" * 300_000}).encode()

    assert deployment.invoke_webhook(generic_event(big))["statusCode"] == 413


def test_signed_body_that_is_not_json_is_415(deployment: Deployment) -> None:
    answers = [
        deployment.invoke_webhook(generic_event(b"plan_id=1")),
        deployment.invoke_webhook(
            generic_event(PLAN_PAYLOAD, extra_headers={"Content-Type": "text/plain"})
        ),
    ]

    assert [answer["statusCode"] for answer in answers] == [415, 415]


def test_unmappable_payload_is_422_naming_the_field(deployment: Deployment) -> None:
    changelog = {"items": [{"field": "status", "toString": "Awaiting implementation"}]}
    body = json.dumps({"issue": {"key": "CHG-7", "fields": {}}, "changelog": changelog}).encode()

    answer = deployment.invoke_webhook(jira_event(body))

    assert answer["statusCode"] == 422
    assert "issue.fields.customfield_10050" in body_of(answer)["message"]
    [delivered] = deployment.notifications()
    assert delivered.message["error"]["category"] == "invalid_event"
    assert delivered.message["trigger"]["reference"] == "CHG-7"
    assert deployment.standin.requests == []


def test_payload_without_delivery_id_is_refused(deployment: Deployment) -> None:
    body = read_event("webhook-servicenow.json")["body"].replace('"event_id"', '"other_id"')

    answer = deployment.invoke_webhook(bearer_event(body.encode()))

    assert answer["statusCode"] == 422
    assert "no id at 'event_id'" in body_of(answer)["message"]
    assert deployment.standin.requests == []


@pytest.mark.parametrize(
    ("fault", "status", "category"),
    [
        (Fault(404, {"error_code": "CSBS.3000", "error_msg": "no plan"}), 502, "not_found"),
        (Fault(500, {"error_code": "CSBS.1001", "error_msg": "running"}), 503, "busy"),
        (Fault(403, {"error_code": "CSBS.9009", "error_msg": "unverified"}), 502, "forbidden"),
    ],
)
def test_upstream_errors_answer_with_their_category(
    deployment: Deployment, fault: Fault, status: int, category: str
) -> None:
    deployment.standin.fail_next("csbs", fault)

    answer = deployment.invoke_webhook(generic_event(PLAN_PAYLOAD))

    assert answer["statusCode"] == status
    assert body_of(answer)["error"] == category
    if status == 503:
        assert answer["headers"]["Retry-After"] == "300"


def test_broken_mapping_is_a_config_error(deployment: Deployment) -> None:
    deployment.set_env(
        "WEBHOOK_SOURCES",
        json.dumps({"jira": {"scheme": "bearer", "plan_id": "a[", "delivery_id": "x"}}),
    )

    answer = deployment.invoke_webhook(read_event("webhook-jira.json"))

    assert answer["statusCode"] == 500
    assert body_of(answer)["error"] == "config_error"
    assert deployment.standin.requests == []


def test_override_adds_a_source(deployment: Deployment) -> None:
    source = {"scheme": "bearer", "plan_id": "plan", "delivery_id": {"header": "X-Request-Id"}}
    deployment.set_env("WEBHOOK_SOURCES", json.dumps({"opsgenie": source}))
    deployment.aws.update_secret(
        "csbs-trigger/webhooks", {**SECRETS, "opsgenie": "og-token-0123456789"}
    )
    headers = {
        "Content-Type": "application/json",
        "Authorization": "Bearer og-token-0123456789",
        "X-Request-Id": "r1",
    }
    event = http_api_event(
        "POST", "/webhooks/opsgenie", headers, json.dumps({"plan": PLAN_B}).encode()
    )

    assert deployment.invoke_webhook(event)["statusCode"] == 201


# -- over real HTTP ------------------------------------------------------------------------------


def test_local_endpoint_over_http(deployment: Deployment) -> None:
    import webhook

    event = generic_event(PLAN_PAYLOAD, delivery="over-http")
    headers = event["headers"]
    with WebhookServer(webhook.handler) as server:
        url = f"{server.url}/webhooks/generic"
        accepted = requests.post(url, data=event["body"], headers=headers, timeout=10)
        replayed = requests.post(url, data=event["body"], headers=headers, timeout=10)
        refused = requests.post(url, data=event["body"] + " ", headers=headers, timeout=10)

    assert accepted.status_code == 201, accepted.text
    assert replayed.status_code == 201
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json() == accepted.json()
    assert refused.status_code == 401
    assert len(deployment.standin.calls("csbs")) == 1


# -- property: arbitrary requests ----------------------------------------------------------------

_HEADER_NAMES = st.sampled_from(
    [
        "content-type", "webhook-id", "webhook-timestamp", "webhook-signature", "authorization",
        "x-hub-signature-256", "x-hub-signature", "x-atlassian-webhook-identifier", "x-other",
    ]
)  # fmt: skip
_HEADER_VALUES = st.one_of(
    st.text(max_size=80),
    st.just("application/json"),
    st.just(str(int(time.time()))),
    st.builds(lambda s: f"v1,{s}", st.text(max_size=44)),
    st.builds(lambda s: f"sha256={s}", st.text(alphabet="0123456789abcdef", max_size=64)),
    st.builds(lambda s: f"Bearer {s}", st.text(max_size=40)),
)


@settings(
    max_examples=150,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    source=st.sampled_from(["generic", "jira", "servicenow", "nobody", "", "../x"]),
    method=st.sampled_from(["POST", "POST", "GET", "PUT"]),
    headers=st.dictionaries(_HEADER_NAMES, _HEADER_VALUES, max_size=6),
    body=st.one_of(
        st.binary(max_size=300),
        st.just(json.dumps(PLAN_PAYLOAD).encode()),
        st.just(read_event("webhook-jira.json")["body"].encode()),
    ),
    encoded=st.booleans(),
    route=st.booleans(),
)
def test_arbitrary_requests_never_fail_and_never_reach_csbs_unsigned(
    deployment: Deployment,
    source: str,
    method: str,
    headers: dict[str, str],
    body: bytes,
    encoded: bool,
    route: bool,
) -> None:
    event = http_api_event(method, f"/webhooks/{source}", headers, body, route=route)
    if encoded and not event["isBase64Encoded"]:
        event["body"] = base64.b64encode(body).decode()
        event["isBase64Encoded"] = True
    calls_before = len(deployment.standin.calls("csbs"))

    answer = deployment.invoke_webhook(event)

    assert answer["statusCode"] in (400, 401, 404, 405, 413, 415)
    assert len(deployment.standin.calls("csbs")) == calls_before
    json.loads(answer["body"])


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["plan_id", "resources", "auto_trigger", "x"]), children, max_size=4
        )
    ),
    max_leaves=12,
)


@settings(
    max_examples=60,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(payload=_JSON, raw=st.binary(max_size=100), use_raw=st.booleans())
def test_signed_arbitrary_bodies_get_a_classified_answer(
    deployment: Deployment, payload: Any, raw: bytes, use_raw: bool
) -> None:
    body = raw if use_raw else json.dumps(payload).encode()

    answer = deployment.invoke_webhook(generic_event(body, delivery=str(uuid.uuid4())))

    assert answer["statusCode"] in (201, 400, 415, 422, 502)
    assert answer["statusCode"] != 500


@pytest.mark.parametrize("name", SAMPLES)
def test_committed_samples_are_the_signed_payloads(name: str) -> None:
    assert read_event(name) == build(name)  # else: python -m support.webhook_samples


def test_without_an_idempotency_table_webhooks_refuse_to_run(deployment: Deployment) -> None:
    deployment.set_env("IDEMPOTENCY_TABLE", None)

    answer = deployment.invoke_webhook(generic_event(PLAN_PAYLOAD))

    assert answer["statusCode"] == 500
    assert body_of(answer)["error"] == "config_error"
    assert deployment.standin.requests == []
    [delivered] = deployment.notifications()
    assert "IDEMPOTENCY_TABLE" in delivered.message["error"]["message"]


def test_disabling_powertools_idempotency_never_passes_silently(deployment: Deployment) -> None:
    deployment.monkeypatch.setenv("POWERTOOLS_IDEMPOTENCY_DISABLED", "true")

    answer = deployment.invoke_webhook(generic_event(PLAN_PAYLOAD))

    assert answer["statusCode"] == 500
    assert body_of(answer)["error"] == "config_error"
    assert deployment.standin.requests == []


def test_unavailable_idempotency_table_is_503(deployment: Deployment) -> None:
    deployment.set_env("IDEMPOTENCY_TABLE", "no-such-table")

    answer = deployment.invoke_webhook(generic_event(PLAN_PAYLOAD))

    assert answer["statusCode"] == 503
    assert answer["headers"]["Retry-After"] == "30"
    assert deployment.standin.requests == []


def test_signed_but_absurdly_nested_json_is_415_not_a_crash(deployment: Deployment) -> None:
    body = b"[" * 100_000 + b"]" * 100_000

    assert deployment.invoke_webhook(generic_event(body))["statusCode"] == 415

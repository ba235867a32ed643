"""Behaviour nothing pinned before (mutation testing found each gap): IAM's answers, Retry-After as
a date, redirects, the retry budget after a credential refresh, the exactly-once window, and the
details of webhook verification."""

from __future__ import annotations

import hashlib
import io
import json
import time
from email.utils import formatdate

import pytest
from conftest import Deployment, read_event
from test_webhooks import PLAN_A, generic_event

from support.lambda_context import FakeLambdaContext
from support.standin import CsbsStandIn, Fault

BACKOFF = [0.25, 0.5]  # full jitter pinned at half of 0.5 s, then of 1 s


# A token request that reached IAM is never repeated within an invocation, whatever IAM
# answered: a refusal it answers late or disguised may count towards the account's lockout.
@pytest.mark.parametrize(
    ("status", "category", "logins", "sleeps"),
    [(429, "throttled", 1, []), (400, "auth_failed", 1, []), (403, "auth_failed", 1, []),
     (500, "server_error", 1, []), (503, "unavailable", 1, [])],
)  # fmt: skip
def test_iam_answers_have_their_categories_and_retries(
    deployment: Deployment, status: int, category: str, logins: int, sleeps: list[float]
) -> None:
    body = {"error": {"code": status, "title": "x", "message": "IAM says no"}}
    deployment.standin.fail_next("iam", *[Fault(status, body)] * 3)

    deployment.invoke(read_event("direct.json"))

    [delivered] = deployment.notifications()
    assert delivered.message["error"]["category"] == category
    assert len(deployment.standin.calls("iam")) == logins
    assert deployment.standin.calls("csbs") == []
    assert deployment.sleeps == sleeps


def test_retry_after_as_an_http_date_is_honoured(deployment: Deployment) -> None:
    later = formatdate(time.time() + 8, usegmt=True)
    deployment.standin.fail_next("csbs", Fault(503, b"busy gateway", {"Retry-After": later}))

    deployment.invoke(read_event("direct.json"), FakeLambdaContext(timeout_seconds=60))

    [delivered] = deployment.notifications()
    assert delivered.message["outcome"] == "succeeded"
    [pause] = deployment.sleeps
    assert 5 <= pause <= 8


@pytest.mark.parametrize("status", [301, 302, 307])
@pytest.mark.parametrize("route", ["csbs", "iam"])
def test_a_redirect_is_never_followed(deployment: Deployment, status: int, route: str) -> None:
    with CsbsStandIn() as elsewhere:
        location = f"{elsewhere.url}/v1/stolen"
        deployment.standin.fail_next(route, Fault(status, b"", {"Location": location}))

        deployment.invoke(read_event("direct.json"))

        assert elsewhere.requests == []  # neither the POST nor the token went there
    [delivered] = deployment.notifications()
    assert delivered.message["outcome"] == "failed"
    assert delivered.message["error"]["http_status"] == status


def test_a_refresh_is_not_a_retry(deployment: Deployment) -> None:
    # The token is refused once (revoked), then CSBS is unavailable: after the refresh the
    # whole retry budget (3 tries) is still there.
    unavailable = Fault(503, {"error_code": "APIGW.0201", "error_msg": "unavailable"})
    refused = Fault(401, {"error_code": "APIGW.0301", "error_msg": "bad token"})
    deployment.standin.fail_next("csbs", refused, unavailable, unavailable, unavailable)

    deployment.invoke(read_event("direct.json"))

    [delivered] = deployment.notifications()
    assert delivered.message["error"]["category"] == "unavailable"
    assert len(deployment.standin.calls("csbs")) == 4
    assert len(deployment.standin.calls("iam")) == 2
    assert deployment.sleeps == BACKOFF


def test_a_firing_is_remembered_for_a_day_and_an_in_progress_one_until_the_invocation_ends(
    deployment: Deployment,
) -> None:
    started = time.time()
    deployment.invoke(read_event("schedule.json"), FakeLambdaContext(timeout_seconds=45))

    table = deployment.aws.client("dynamodb")
    items = table.scan(TableName="csbs-trigger-idempotency")["Items"]
    # One record per step, named <prefix>#<MD5 of the JSON of "<key>#<step>"> (Powertools'
    # hashing of our key): a step renamed in a later release would run it again after a deploy.
    [delivered] = deployment.notifications()
    key = delivered.message["idempotency_key"]
    steps = [f"{key}#execute", f"{key}#0#publish"]  # the publish of the batch's item 0
    hashes = [hashlib.md5(json.dumps(step).encode(), usedforsecurity=False) for step in steps]
    named = {f"csbs-trigger#{digest.hexdigest()}" for digest in hashes}
    assert {item["id"]["S"] for item in items} == named
    results = [json.loads(item["data"]["S"]) for item in items]
    assert {"message_id": delivered.message_id} in results  # which SNS message it was
    for item in items:
        # Our own prefix, not Powertools' default (the module and function name): records keep
        # their keys when the code moves, so a redelivery across a deploy is still recognized.
        assert item["id"]["S"].startswith("csbs-trigger#")
        assert abs(int(item["expiration"]["N"]) - (started + 24 * 3600)) < 60
        in_progress_until = int(item["in_progress_expiration"]["N"]) / 1000
        assert started + 30 < in_progress_until <= started + 46


@pytest.mark.parametrize("timestamp", ["12ab", "-5", "", " 1", "1e9", "९९९"])
def test_a_malformed_webhook_timestamp_is_401_not_a_crash(
    deployment: Deployment, timestamp: str
) -> None:
    event = generic_event({"plan_id": PLAN_A})
    event["headers"]["webhook-timestamp"] = timestamp

    answer = deployment.invoke_webhook(event)

    assert answer["statusCode"] == 401
    assert deployment.standin.requests == []


@pytest.mark.parametrize("scheme", ["Basic", "Token", "", "Bearer"])
def test_the_bearer_scheme_is_enforced(deployment: Deployment, scheme: str) -> None:
    token = read_event("webhook-servicenow.json")["headers"]["authorization"].split(" ", 1)[1]
    event = read_event("webhook-servicenow.json")
    event["headers"]["authorization"] = f"{scheme} {token}".strip() if scheme != "Bearer" else ""

    answer = deployment.invoke_webhook(event)

    assert answer["statusCode"] == 401
    assert deployment.standin.requests == []


def test_an_idempotency_table_out_of_reach_is_503_unavailable_and_runs_nothing(
    deployment: Deployment, logs: io.StringIO
) -> None:
    deployment.refuse(deployment.runtime.dynamodb, "PutItem", "ResourceNotFoundException")

    answer = deployment.invoke_webhook(generic_event({"plan_id": PLAN_A}))

    assert answer["statusCode"] == 503
    assert json.loads(answer["body"]) == {"error": "unavailable"}
    assert answer["headers"]["Retry-After"] == "30"
    assert deployment.standin.requests == []
    assert "the idempotency table could not be used (IdempotencyPersistenceLayerError)" in (
        logs.getvalue()
    )


@pytest.mark.parametrize("token_cached", [False, True], ids=["IAM next", "CSBS next"])
def test_with_too_little_time_left_nothing_is_called_and_it_says_so(
    deployment: Deployment, token_cached: bool
) -> None:
    """3.2 s left: after the 3 s kept for the publish, too little for a call that could answer."""
    if token_cached:
        deployment.invoke(read_event("direct.json"))
        deployment.notifications()
    calls_before = [len(deployment.standin.calls(route)) for route in ("iam", "csbs")]

    deployment.invoke(read_event("direct.json"), FakeLambdaContext(timeout_seconds=3.2))

    [delivered] = deployment.notifications()
    what = "CSBS" if token_cached else "IAM"
    assert delivered.message["error"] | {"request_id": None} == {
        "category": "timeout",
        "message": f"{what} was not called: too little of the invocation's time is left",
        "code": None,
        "http_status": None,
        "request_id": None,
        "retryable": True,
        "maybe_created": False,
        "retry_after_seconds": None,
    }
    assert delivered.message["attempts"] == 0
    assert [len(deployment.standin.calls(route)) for route in ("iam", "csbs")] == calls_before

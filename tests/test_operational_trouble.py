"""Promises under operational trouble (issue 16): an ordinary day in operations (rights that
blip, odd answers, German plan names, senders' retries, a changed password) never breaks a
promise. Each test names the trouble that broke one before."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from conftest import Deployment
from test_webhooks import SECRETS, generic_event

from support.standin import SECURITY_TOKEN, Fault

PLAN_A = "62171999-3df1-42f7-9513-6f9b1bea4744"  # nightly-app-servers: two servers
PLAN_B = "6a6cda7e-7b89-4b14-8e5c-3b6821a97d2c"  # backup: one server
ARN = "arn:aws:scheduler:eu-central-1:123456789012:schedule/default/nightly"


def strict_json(text: str) -> Any:
    """JSON as a strict subscriber reads it: NaN and Infinity are not JSON."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


# -- 7. smaller breaks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "firing",
    [
        {"schedule_arn": ARN + "\ud800", "scheduled_time": "2026-11-28T02:00:00Z"},
        {"schedule_arn": ARN, "scheduled_time": "2026-11-28T02:00:00Z" + "x" * 120_000},
        {"schedule_arn": "a" * 120_000, "scheduled_time": "\udfff"},
    ],
    ids=["surrogate in the ARN", "120,000 characters of time", "both unusable"],
)
def test_an_unusable_firing_is_an_invalid_event_not_a_crash(
    deployment: Deployment, firing: dict[str, str]
) -> None:
    result = deployment.invoke({"plan_id": PLAN_A, **firing})

    [delivered] = deployment.notifications()
    assert result["outcome"] == "failed"
    assert delivered.message["error"]["category"] == "invalid_event"
    assert deployment.standin.calls("csbs") == []
    assert len(delivered.raw_message) < 4096  # the bad values are not carried


def test_a_security_token_outside_latin_1_is_a_config_error_on_both_paths(
    deployment: Deployment,
) -> None:
    deployment.set_secret(deployment.standin.access_key_secret(temporary=True))
    deployment.invoke({"plan_id": PLAN_B})  # a backup to follow
    deployment.notifications()
    token = SECURITY_TOKEN + "\u20ac"  # the euro sign: no header can carry it
    deployment.set_secret(deployment.standin.access_key_secret(security_token=token))
    deployment.cold_start()

    deployment.invoke({"plan_id": PLAN_B})
    with pytest.raises(Exception, match="config_error: the cloud secret key security_token"):
        deployment.track()

    [delivered] = deployment.notifications()
    assert delivered.message["error"]["category"] == "config_error"
    assert "security_token" in delivered.message["error"]["message"]
    assert len(deployment.standin.calls("csbs")) == 1  # only the first backup


@pytest.mark.parametrize("retry_after", ["inf", "Infinity", "nan", "1e400", "-inf"])
def test_a_retry_after_that_is_no_number_of_seconds_is_ignored(
    deployment: Deployment, retry_after: str
) -> None:
    throttled = Fault(429, {"error_code": "APIGW.0308", "error_msg": "slow down"},
                      {"Retry-After": retry_after})  # fmt: skip
    deployment.standin.fail_next("csbs", throttled, throttled, throttled)

    deployment.invoke({"plan_id": PLAN_B})

    [delivered] = deployment.notifications()
    error = strict_json(delivered.raw_message)["error"]
    assert (error["category"], error["retry_after_seconds"]) == ("throttled", None)
    assert deployment.sleeps == [0.25, 0.5]  # the backoff, not an endless wait


def test_a_webhook_answer_names_a_whole_retry_after_whatever_csbs_said(
    deployment: Deployment,
) -> None:
    throttled = Fault(429, {"error_code": "APIGW.0308"}, {"Retry-After": "Infinity"})
    deployment.standin.fail_next("csbs", throttled, throttled, throttled)

    answer = deployment.invoke_webhook(generic_event({"plan_id": PLAN_A}))

    assert answer["statusCode"] == 503
    assert answer["headers"]["Retry-After"] == "30"


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_no_number_a_server_sends_makes_a_message_invalid_json(
    deployment: Deployment, constant: bytes
) -> None:
    body = b'{"checkpoint": {"id": "c-nan", "status": "protecting", "extra_info": {"ratio": %s}}}'
    deployment.standin.fail_next("csbs", Fault(200, body % constant))

    deployment.invoke({"plan_id": PLAN_B})

    [delivered] = deployment.notifications()
    message = strict_json(delivered.raw_message)
    assert message["outcome"] == "succeeded"
    assert message["checkpoint"]["extra_info"] == {"ratio": None}


def test_an_answer_of_more_than_1_mib_to_the_post_may_have_created_a_backup(
    deployment: Deployment,
) -> None:
    padding = "x" * (1 << 20)
    deployment.standin.fail_next("csbs", Fault(200, {"checkpoint": {"id": "c-1"}, "pad": padding}))

    deployment.invoke({"plan_id": PLAN_B})

    [delivered] = deployment.notifications()
    error = delivered.message["error"]
    assert (error["category"], error["maybe_created"]) == ("bad_response", True)
    assert len(deployment.standin.calls("csbs")) == 1  # never repeated


def test_a_whsec_secret_without_its_padding_is_accepted(deployment: Deployment) -> None:
    import standardwebhooks

    key = b"sixteen-or-more-bytes-of-key!"
    unpadded = "whsec_" + base64.b64encode(key).decode().rstrip("=")
    assert unpadded[-1] != "="
    standardwebhooks.Webhook(unpadded)  # the official library takes it
    deployment.aws.update_secret("csbs-trigger/webhooks", {**SECRETS, "generic": [unpadded]})
    deployment.cold_start()

    answer = deployment.invoke_webhook(generic_event({"plan_id": PLAN_A}, secret=unpadded))

    assert answer["statusCode"] == 201


# -- 3. a subject SNS refuses never blocks a notification ----------------------------------------


def sns_checks_subjects(deployment: Deployment) -> list[str]:
    """Make moto's SNS refuse what real SNS refuses: a subject that is not ASCII, holds a line
    break or a control character, or is 100 characters or longer (moto checks only the last)."""
    refused: list[str] = []

    def check(params: dict[str, Any], **_: Any) -> Any:
        subject = params.get("Subject")
        if subject is None:
            return None
        if subject.isascii() and subject.isprintable() and len(subject) < 100:
            return None
        refused.append(subject)
        error = {"Error": {"Code": "InvalidParameter", "Message": "Invalid parameter: Subject"}}
        return type("Answer", (), {"status_code": 400})(), error

    deployment.runtime.sns.meta.events.register("before-call.sns.Publish", check)
    return refused


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("Sicherung-Täglich", "Sicherung-Taeglich"),
        ("Größe Ünterschied ß", "Groesse Uenterschied ss"),
        ("café crème", "cafe creme"),
        ("日本\nline\x07bell", "?? line?bell"),
    ],
)
def test_a_plan_name_sns_would_refuse_is_transliterated_in_the_subject(
    deployment: Deployment, name: str, shown: str
) -> None:
    deployment.standin.add_plan("plan-umlaut", name, {"srv-1": "server-1"})
    deployment.standin.polls_to_finish = 0
    deployment.invoke({"plan_id": "plan-umlaut"})
    deployment.notifications()
    refused = sns_checks_subjects(deployment)

    deployment.track()
    deployment.track()

    [completed] = deployment.notifications()
    assert refused == []
    assert completed.subject is not None
    assert completed.subject.startswith(f"CSBS backup completed for plan {shown} (1 server, ")
    assert completed.message["plan_name"] == name  # the message keeps the whole name


def test_a_long_plan_name_is_cut_to_a_subject_under_100_characters(
    deployment: Deployment,
) -> None:
    deployment.standin.add_plan("plan-long", "Ä" * 300, {"srv-1": "server-1"})
    deployment.standin.polls_to_finish = 0
    deployment.invoke({"plan_id": "plan-long"})
    deployment.notifications()
    refused = sns_checks_subjects(deployment)

    deployment.track()
    deployment.track()

    [completed] = deployment.notifications()
    assert refused == []
    whole = "CSBS backup completed for plan " + "Ae" * 300
    assert completed.subject == whole[:96] + "..."
    assert len(completed.subject) == 99

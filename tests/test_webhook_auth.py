"""webhook_auth on its own: every refusal's reason (what the log tells an operator), the bounds
of each check, and the secrets a rotation holds. The handler-level tests cover the wire."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from csbs_trigger.triggers.webhook_auth import (
    secret_weakness,
    signed_timestamp_refusal,
    standard_webhooks_signature,
    verify,
)

NOW = 1_800_000_000
KEY_B64 = base64.b64encode(b"k" * 24).decode()
SECRET = "whsec_" + KEY_B64
BODY = b'{"plan_id": "p"}'
SW, HUB, BEARER = "standard-webhooks", "hub-signature", "bearer"


def signed(message_id: str = "msg_1", timestamp: str = str(NOW), secret: str = SECRET) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{message_id}.{timestamp}.".encode() + BODY, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def standard(timestamp: str = str(NOW), signature: str | None = None) -> dict[str, str]:
    return {"webhook-id": "msg_1", "webhook-timestamp": timestamp,
            "webhook-signature": signature or signed(timestamp=timestamp)}  # fmt: skip


def refusal(scheme: str, headers: dict[str, str], secrets: list[str]) -> str | None:
    return verify(scheme, headers, BODY, secrets, now=NOW, tolerance_seconds=300)


@pytest.mark.parametrize(
    ("scheme", "headers", "reason"),
    [
        (SW, {}, "a webhook-id, webhook-timestamp or webhook-signature header is missing"),
        (SW, standard("12ab"), "the webhook-timestamp is not a Unix time"),
        (SW, standard("1" * 13), "the webhook-timestamp is not a Unix time"),
        (SW, standard("1" * 12), "the webhook-timestamp is outside the tolerance"),
        (SW, standard(str(NOW + 301)), "the webhook-timestamp is outside the tolerance"),
        (SW, standard(signature="v1,AAAA"), "no webhook-signature matches"),
        (HUB, {}, "no X-Hub-Signature-256 header"),
        (HUB, {"x-hub-signature-256": "sha256=00"}, "the X-Hub-Signature-256 does not match"),
        (BEARER, {}, "no bearer token"),
        (BEARER, {"authorization": "Basic dXNlcg=="}, "no bearer token"),
        (BEARER, {"authorization": "Bearer wrong-token-00"}, "the bearer token does not match"),
        (BEARER, {"authorization": "Bearer \ud800"}, "the bearer token does not match"),
    ],
)  # fmt: skip
def test_each_refusal_says_why(scheme: str, headers: dict[str, str], reason: str) -> None:
    assert refusal(scheme, headers, [SECRET]) == reason


def test_without_secrets_nothing_is_accepted() -> None:
    assert refusal("bearer", {"authorization": "Bearer x"}, []) == (
        "no secret is configured for this source"
    )


def test_a_rotation_tries_every_secret_past_an_unusable_one() -> None:
    assert refusal("standard-webhooks", standard(), ["whsec_not base64!", SECRET]) is None
    assert refusal("standard-webhooks", standard(signature=f"v2,x {signed()}"), [SECRET]) is None


def test_a_bearer_token_is_everything_after_the_scheme() -> None:
    token = "token with a space in it"
    assert refusal("bearer", {"authorization": f"Bearer {token}"}, [token]) is None


@pytest.mark.parametrize(
    ("secret", "weakness"),
    [
        ("   ", "a secret is blank"),
        ("whsec_" + "a" * 30 + "!", "a secret is not whsec_ followed by base64"),
        ("whsec_" + KEY_B64[:8] + "!" + KEY_B64[8:], "a secret is not whsec_ followed by base64"),
        # 16 bytes, written out: a test built from the constant would follow it anywhere.
        ("whsec_" + base64.b64encode(b"k" * 15).decode(), "a secret is shorter than 16 bytes"),
        ("whsec_" + base64.b64encode(b"k" * 16).decode(), None),
    ],
)  # fmt: skip
def test_weak_secrets_are_named(secret: str, weakness: str | None) -> None:
    assert secret_weakness("standard-webhooks", secret) == weakness


@pytest.mark.parametrize("scheme", ["hub-signature", "bearer"])
def test_a_plain_secret_needs_16_bytes(scheme: str) -> None:
    assert secret_weakness(scheme, "k" * 15) == "a secret is shorter than 16 bytes"
    assert secret_weakness(scheme, "k" * 16) is None
    assert secret_weakness(scheme, "€" * 6) is None  # 18 bytes in UTF-8


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (NOW, None),  # seconds
        (NOW * 1000, None),  # milliseconds
        (str(NOW * 1000), None),  # milliseconds as text
        ("1" * 16, "the signed body's timestamp is outside the tolerance"),
        ("1" * 17, "the signed body has no Unix timestamp"),
        ("12ab", "the signed body has no Unix timestamp"),
        (True, "the signed body has no Unix timestamp"),
        (NOW + 301, "the signed body's timestamp is outside the tolerance"),
        (NOW + 300, None),  # the tolerance itself is still inside
    ],
)
def test_a_signed_body_timestamp_in_seconds_or_milliseconds(value: object, reason: str) -> None:
    assert signed_timestamp_refusal(value, now=NOW, tolerance_seconds=300) == reason


def test_the_millisecond_threshold_is_inclusive() -> None:
    threshold = 10**11
    assert signed_timestamp_refusal(threshold, now=threshold / 1000, tolerance_seconds=1) is None


def test_the_documented_signature_helper_agrees_with_the_standard_library() -> None:
    header = standard_webhooks_signature(SECRET, "msg_1", NOW, BODY)

    assert header == signed() == Webhook(SECRET).sign("msg_1", datetime.fromtimestamp(NOW, UTC),
                                                      BODY.decode())  # fmt: skip
    with pytest.raises(
        ValueError, match=r"^a Standard Webhooks secret is whsec_ followed by base64$"
    ):
        standard_webhooks_signature("whsec_not base64!", "msg_1", NOW, BODY)

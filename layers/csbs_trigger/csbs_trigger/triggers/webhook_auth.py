"""Who may call: the three signature schemes webhook senders use.

* ``standard-webhooks``: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature:
  v1,<base64>`` = HMAC-SHA256 over ``id.timestamp.body`` keyed by the ``whsec_<base64>`` secret;
* ``hub-signature``: ``X-Hub-Signature-256`` (or ``X-Hub-Signature``) ``sha256=<hex>`` = HMAC-SHA256
  of the raw body (Jira Cloud, GitHub-style senders);
* ``bearer``: ``Authorization: Bearer <token>`` (ServiceNow outbound REST messages), or the token
  in a header of the source's choosing (Jira automation rules set a custom header).

Every comparison is constant-time and tries each active secret, so a secret can be rotated by
adding the new one before removing the old. ``verify`` answers with the reason for a refusal
(for the log, never for the caller) or None.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence

SCHEMES = ("standard-webhooks", "hub-signature", "bearer")
# Schemes whose proof covers the delivery id: a Standard Webhooks signature signs it, a bearer
# token authenticates the whole request. A hub signature covers only the body.
_DELIVERY_ID_PROVEN = frozenset({"standard-webhooks", "bearer"})
# Shorter keys can be guessed; RFC 2104 asks for at least the hash's output (32 bytes), the
# Standard Webhooks spec for 24 to 64: 16 refuses only what is plainly too weak.
MIN_SECRET_BYTES = 16
# A Unix time this large is in milliseconds (in seconds it would be the year 5138).
_MILLISECONDS_FROM = 10**11

Headers = Mapping[str, str]  # lower-case names, as API Gateway v2 passes them


def verify(
    scheme: str,
    headers: Headers,
    body: bytes,
    secrets: Sequence[str],
    *,
    now: float,
    tolerance_seconds: float,
    bearer_header: str = "authorization",
) -> str | None:
    """None when the request is signed with one of ``secrets``; else why it is not."""
    if not secrets:
        return "no secret is configured for this source"
    verifiers: dict[str, Callable[[], str | None]] = {
        "standard-webhooks": lambda: _standard_webhooks(
            headers, body, secrets, now, tolerance_seconds
        ),
        "hub-signature": lambda: _hub_signature(headers, body, secrets),
        "bearer": lambda: _bearer(headers, secrets, bearer_header),
    }
    return verifiers[scheme]()


def _standard_webhooks(
    headers: Headers, body: bytes, secrets: Sequence[str], now: float, tolerance: float
) -> str | None:
    message_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not (message_id and timestamp and signatures):
        return "a webhook-id, webhook-timestamp or webhook-signature header is missing"
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return "the webhook-timestamp is not a Unix time"
    if abs(now - int(timestamp)) > tolerance:
        return "the webhook-timestamp is outside the tolerance"
    signed = f"{message_id}.{timestamp}.".encode() + body
    offered = [
        value for version, _, value in (item.partition(",") for item in signatures.split())
        if version == "v1"
    ]  # fmt: skip
    for secret in secrets:
        key = _standard_webhooks_key(secret)
        if key is None:
            continue
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        if any(_equal(expected, candidate) for candidate in offered):
            return None
    return "no webhook-signature matches"


def signs_delivery_id(scheme: str) -> bool:
    """Whether a verified request of ``scheme`` proves its delivery id as well as its body."""
    return scheme in _DELIVERY_ID_PROVEN


def secret_weakness(scheme: str, secret: str) -> str | None:
    """Why ``secret`` must not be used for ``scheme`` (too short, blank, undecodable), or None."""
    if not secret.strip():
        return "a secret is blank"
    key = _standard_webhooks_key(secret) if scheme == "standard-webhooks" else secret.encode()
    if key is None:
        return "a secret is not whsec_ followed by base64"
    if len(key) < MIN_SECRET_BYTES:
        return f"a secret is shorter than {MIN_SECRET_BYTES} bytes"
    return None


def signed_timestamp_refusal(value: object, *, now: float, tolerance_seconds: float) -> str | None:
    """Why a timestamp read from a signed body (Unix seconds or milliseconds) is refused."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 16:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return "the signed body has no Unix timestamp"
    seconds = value / 1000 if value >= _MILLISECONDS_FROM else value
    if abs(now - seconds) > tolerance_seconds:
        return "the signed body's timestamp is outside the tolerance"
    return None


def standard_webhooks_signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header a sender with ``secret`` sends (for tests and docs)."""
    key = _standard_webhooks_key(secret)
    if key is None:
        raise ValueError("a Standard Webhooks secret is whsec_ followed by base64")
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def hub_signature(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` header a sender with ``secret`` sends."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _standard_webhooks_key(secret: str) -> bytes | None:
    """The key of a ``whsec_`` secret; its base64 may leave out the padding, as the Standard
    Webhooks libraries allow."""
    encoded = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _hub_signature(headers: Headers, body: bytes, secrets: Sequence[str]) -> str | None:
    offered = headers.get("x-hub-signature-256") or headers.get("x-hub-signature")
    if not offered:
        return "no X-Hub-Signature-256 header"
    offered = offered.strip().lower()
    if any(_equal(hub_signature(secret, body), offered) for secret in secrets):
        return None
    return "the X-Hub-Signature-256 does not match"


def _bearer(headers: Headers, secrets: Sequence[str], header: str) -> str | None:
    value = headers.get(header, "")
    if header == "authorization":
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return "no bearer token"
    else:  # a header of its own holds the token alone
        token = value
        if not token.strip():
            return f"no token in the {header} header"
    token = token.strip()
    matches = [_equal(secret, token) for secret in secrets]  # every one: no early exit
    return None if any(matches) else "the bearer token does not match"


def _equal(expected: str, offered: str) -> bool:
    """Constant-time, and safe for any characters a caller puts in a header."""
    return hmac.compare_digest(expected.encode(), offered.encode("utf-8", "surrogatepass"))

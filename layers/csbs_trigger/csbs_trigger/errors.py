"""The one error vocabulary of csbs-trigger.

Every failure a trigger can meet ends as a ``TriggerError`` carrying exactly one ``Category``::

    TriggerError                 base: category, retryable, http_status, code, message
    ├── InvalidEventError        the event could not be understood (invalid_event)
    ├── ConfigError              the deployment or the secret is wrong (config_error)
    ├── UpstreamError            IAM or CSBS said no, or could not be reached (every other category)
    └── AlreadyInProgressError   (idempotency.py) the same trigger is running right now (busy)

Where each category leads: a notification's ``error`` (notify.py), a webhook answer's status
(webhooks._STATUS_BY_CATEGORY), a retry or not (csbs.RetryPolicy).

``classify_error_answer`` is the only place that turns an HTTP status and an upstream error code
into a category; adapters translate transport failures with ``UpstreamError.timeout`` and
``UpstreamError.network``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any

from csbs_trigger import safe_json

MAX_MESSAGE_LENGTH = 300
TRUNCATION_MARK = "…"  # ends every text cut short (the redactor looks for it)
MAX_CODE_LENGTH = 64
MAX_REQUEST_ID_LENGTH = 128
# A running backup takes minutes (about 6 for a small incremental): the hint for "busy".
BUSY_RETRY_AFTER_SECONDS = 300.0
# A Retry-After longer than this is no advice an invocation or a sender can follow.
MAX_RETRY_AFTER_SECONDS = 86_400.0


class Category(StrEnum):
    """What went wrong, in words an operator can act on."""

    INVALID_EVENT = "invalid_event"
    CONFIG_ERROR = "config_error"
    AUTH_FAILED = "auth_failed"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    INVALID_REQUEST = "invalid_request"
    BUSY = "busy"
    THROTTLED = "throttled"
    SERVER_ERROR = "server_error"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"
    NETWORK = "network"
    BAD_RESPONSE = "bad_response"
    ITEM_ERROR = "item_error"  # a backup ran, and some of its servers ended in error
    NOT_PROTECTED = "not_protected"  # a server (or a CBR policy) that no plan or vault covers

    @property
    def retryable(self) -> bool:
        """Whether the same trigger may succeed later without anybody changing anything."""
        return self in _RETRYABLE


_RETRYABLE = frozenset(
    {
        Category.BUSY,
        Category.THROTTLED,
        Category.SERVER_ERROR,
        Category.UNAVAILABLE,
        Category.TIMEOUT,
        Category.NETWORK,
    }
)

# Upstream codes decide before the HTTP status: CSBS answers several "busy" and one permanent
# condition with a 500 (the error code tables of the public CSBS API reference).
_CATEGORY_BY_CODE: dict[str, Category] = {
    "CSBS.1001": Category.BUSY,
    "CSBS.6030": Category.BUSY,
    "CSBS.2003": Category.BUSY,
    "CSBS.2004": Category.BUSY,
    "CSBS.6032": Category.INVALID_REQUEST,
    "CSBS.3000": Category.NOT_FOUND,
    "CSBS.9001": Category.INVALID_REQUEST,
    "CSBS.9006": Category.INVALID_REQUEST,
    "CSBS.9009": Category.FORBIDDEN,
    "CSBS.9998": Category.SERVER_ERROR,
    "CSBS.9999": Category.SERVER_ERROR,
    "APIG.0301": Category.AUTH_FAILED,
    "APIGW.0301": Category.AUTH_FAILED,
    "APIG.0308": Category.THROTTLED,
    "APIGW.0308": Category.THROTTLED,
    "BackupService.4008": Category.FORBIDDEN,
    # CBR (the codes of OTC's CBR error code page; the same code comes with other HTTP statuses
    # in other regions and versions, so the code decides)
    **dict.fromkeys(
        ("BackupService.0002", "BackupService.6125", "BackupService.6203", "BackupService.6134",
         "BackupService.6130", "BackupService.7200"),
        Category.BUSY,
    ),
    **dict.fromkeys(
        ("BackupService.6105", "BackupService.6302", "BackupService.7000", "BackupService.7100",
         "BackupService.6000", "BackupService.6217"),
        Category.NOT_FOUND,
    ),
    **dict.fromkeys(
        ("BackupService.0001", "BackupService.6113", "BackupService.6114", "BackupService.6142",
         "BackupService.6124", "BackupService.6135", "BackupService.6215", "BackupService.6116",
         "BackupService.6137", "BackupService.6002", "BackupService.8300", "BackupService.9900",
         # 7001-7113, as documented (7100 is not_found): a disk or server that cannot be backed
         # up as it is, even the 500 "disk backup being lazyloaded" (7009)
         *(f"BackupService.{code}" for code in (7001, 7002, 7003, 7004, 7006, 7007, 7008, 7009)),
         *(f"BackupService.{code}" for code in range(7101, 7112)), "BackupService.7113"),
        Category.INVALID_REQUEST,
    ),
    "BackupService.8600": Category.FORBIDDEN,
    "BackupService.9910": Category.SERVER_ERROR,
}  # fmt: skip
# What an operator must do where an answer's own text does not say it.
_ADVICE_BY_CODE = {
    "BackupService.4008": "this project must use CBR: name its vault with vault_id, not plan_id",
}

_CATEGORY_BY_STATUS: dict[int, Category] = {
    400: Category.INVALID_REQUEST,
    401: Category.AUTH_FAILED,
    403: Category.FORBIDDEN,
    404: Category.NOT_FOUND,
    408: Category.TIMEOUT,
    429: Category.THROTTLED,
    500: Category.SERVER_ERROR,
    502: Category.UNAVAILABLE,
    503: Category.UNAVAILABLE,
    504: Category.UNAVAILABLE,
}


def truncate(text: str, limit: int = MAX_MESSAGE_LENGTH) -> str:
    """Cut upstream text to a length that fits a log line and a notification."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + TRUNCATION_MARK


class TriggerError(Exception):
    """A classified failure: what the notification's ``error`` object is made of."""

    category: Category = Category.SERVER_ERROR

    def __init__(
        self,
        message: str,
        *,
        category: Category | None = None,
        http_status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.message = truncate(message)
        if category is not None:
            self.category = category
        self.http_status = http_status
        self.code = code
        self.request_id = request_id
        self.attempts = 0  # CSBS calls made before this error; set by the client
        self.retry_after_seconds: float | None = None  # when to try again, where known
        # The POST may have reached CSBS before the failure: a checkpoint may exist.
        self.maybe_created = False
        # False: the same call within this invocation would only be told this again (a login
        # that failed is not sent twice in one invocation).
        self.retry_now = True
        super().__init__(self.message)

    @property
    def retryable(self) -> bool:
        return self.category.retryable

    def to_dict(self) -> dict[str, Any]:
        return {
            "category": self.category.value,
            "retryable": self.retryable,
            "http_status": self.http_status,
            "code": self.code,
            "message": self.message,
            "request_id": self.request_id,
            "retry_after_seconds": self.retry_after_seconds,
            "maybe_created": self.maybe_created,
        }


class InvalidEventError(TriggerError):
    """The event is not a trigger this function understands; nothing was sent anywhere."""

    category = Category.INVALID_EVENT


class ConfigError(TriggerError):
    """The function's environment or its cloud secret is incomplete or malformed."""

    category = Category.CONFIG_ERROR


class UpstreamError(TriggerError):
    """IAM or CSBS refused the request, answered nonsense, or could not be reached."""

    request_sent = False  # for timeout and network errors: the request may have arrived

    @classmethod
    def timeout(cls, what: str, *, request_sent: bool) -> UpstreamError:
        error = cls(f"{what} did not answer in time", category=Category.TIMEOUT)
        error.request_sent = request_sent
        return error

    @classmethod
    def network(cls, what: str, exc: BaseException, *, request_sent: bool) -> UpstreamError:
        # Only the exception's type: its text can hold a whole URL with query parameters.
        error = cls(
            f"{what} could not be reached ({type(exc).__name__})", category=Category.NETWORK
        )
        error.request_sent = request_sent
        return error

    @classmethod
    def bad_response(cls, message: str, *, http_status: int | None = None) -> UpstreamError:
        return cls(message, category=Category.BAD_RESPONSE, http_status=http_status)


def classify(http_status: int, code: str | None, *, token_request: bool = False) -> Category:
    """Map an upstream error answer to its category: the code first, then the HTTP status.

    IAM refusing a token request (any 4xx but throttling) means the credentials are refused.
    """
    if token_request and 400 <= http_status < 500 and http_status != 429:
        return Category.AUTH_FAILED
    if code in _CATEGORY_BY_CODE:
        return _CATEGORY_BY_CODE[code]
    if http_status in _CATEGORY_BY_STATUS:
        return _CATEGORY_BY_STATUS[http_status]
    return Category.SERVER_ERROR if http_status >= 500 else Category.INVALID_REQUEST


def classify_error_answer(
    what: str,
    http_status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    token_request: bool,
) -> UpstreamError:
    """Turn a non-2xx answer from IAM or CSBS into a classified error."""
    code, message, request_id = parse_error_body(body)
    code = truncate(code, MAX_CODE_LENGTH) if code else None
    error = UpstreamError(
        f"{what} answered HTTP {http_status}: {message or 'no error message'}"
        + (f" ({_ADVICE_BY_CODE[code]})" if code in _ADVICE_BY_CODE else ""),
        category=classify(http_status, code, token_request=token_request),
        http_status=http_status,
        code=code,
        request_id=_request_id(request_id, headers),
    )
    error.retry_after_seconds = parse_retry_after(headers.get("Retry-After"))
    if error.category is Category.BUSY and error.retry_after_seconds is None:
        error.retry_after_seconds = BUSY_RETRY_AFTER_SECONDS
    return error


# OpenStack services (Keystone among them) name a request in their own header.
_REQUEST_ID_HEADERS = ("X-Request-Id", "X-Openstack-Request-Id")


def _request_id(from_body: str | None, headers: Mapping[str, str]) -> str | None:
    """The id the upstream gave this request (body first, then its headers), for support cases."""
    candidates = (from_body, *(headers.get(name) for name in _REQUEST_ID_HEADERS))
    request_id = next((value for value in candidates if value), None)
    return truncate(request_id, MAX_REQUEST_ID_LENGTH) if request_id else None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date), if it says any:
    a finite number up to a day (``inf`` or ``nan`` says nothing usable)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_SECONDS)


_CODE_KEYS = ("error_code", "errorCode", "code")
_MESSAGE_KEYS = ("error_msg", "errorMsg", "message", "msg")


def parse_error_body(body: bytes) -> tuple[str | None, str, str | None]:
    """Read (code, message, request_id) from any of the error shapes CSBS and its gateway use.

    Documented: ``{"error_code", "error_msg"}``; also seen: ``errorCode``/``errorMsg``,
    ``code``/``message``, the same nested one level deep (Karbor's ``{"badRequest": {...}}``,
    ``{"error": {...}}``), and bodies that are not JSON at all.
    """
    text = body.decode("utf-8", errors="replace")
    try:
        document = safe_json.loads(text)
    except ValueError:
        return None, truncate(text), None
    if not isinstance(document, dict):
        return None, truncate(text), None
    candidates = [document] + [value for value in document.values() if isinstance(value, dict)]
    for candidate in candidates:
        code = _first_text(candidate, _CODE_KEYS)
        message = _first_text(candidate, _MESSAGE_KEYS)
        if code is not None or message is not None:
            request_id = _first_text(candidate, ("request_id",)) or _first_text(
                document, ("request_id",)
            )
            return code, truncate(message or ""), request_id
    return None, truncate(text), None


def _first_text(mapping: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = mapping.get(key)
        # Karbor puts the HTTP status in "code" as a number: that is no upstream code.
        if isinstance(value, str) and value:
            return value
    return None

"""Notifications: one SNS message per plan per trigger, succeeded or failed; built here,
published by ``aws.sns``.

Message schema (version 1) is documented in README.md; subscribers filter on the ``event``,
``outcome``, ``backend``, ``plan_id`` (CSBS) or ``vault_id`` (CBR) and ``error_category``
message attributes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from functools import cached_property
from typing import Any
from urllib.parse import quote, quote_plus

from csbs_trigger.cloud.backend import Backend, BackupRequest, Started
from csbs_trigger.cloud.backends import BACKENDS
from csbs_trigger.errors import TRUNCATION_MARK, TriggerError
from csbs_trigger.models import Trigger
from csbs_trigger.text import shown, sns_subject
from csbs_trigger.values import frozen

SCHEMA_VERSION = 1
# What a notification reports: a trigger's run (the backup started, or why not); subscribers
# filter on the ``event`` attribute.
EVENT_STARTED = "started"
# SNS takes 256 KiB, and the idempotency record (DynamoDB: 400 KB an item) holds the message
# escaped once more, which at worst triples it (an emoji becomes a 12-byte surrogate pair).
MAX_MESSAGE_BYTES = 96 * 1024
# Shorter values would redact ordinary words; no real password or token is this short.
_MIN_REDACTED_LENGTH = 4
# A server's text cut at a length limit may end in the first characters of a secret.
_MIN_REDACTED_PREFIX = 8
REDACTED = "[redacted]"


@frozen
class Outcome:
    """What became of one plan of one trigger: a started backup or a classified error. The
    backend and its plan or vault id are known wherever the plan could be read."""

    trigger: Trigger
    invocation_id: str | None
    backend: Backend | None
    target_id: str | None
    request: BackupRequest | None
    duration_ms: int
    checkpoint: Started | None = None
    error: TriggerError | None = None
    attempts: int = 0  # CSBS requests sent
    idempotency_key: str | None = None  # None: this run is not deduplicated
    # When the completion will be reported at the latest (or why it will not): None when
    # backups are not followed, or none started.
    tracking: dict[str, Any] | None = None
    expires_at: float | None = None  # when its backup expires (None: kept forever)
    # What a plan that did not resolve asked for (a resolved request carries its own).
    resolved_from: Mapping[str, Any] | None = None

    @property
    def outcome(self) -> str:
        return "succeeded" if self.error is None else "failed"


@frozen
class Notification:
    """One SNS message; its subject is always one SNS accepts (``sns_subject``), however it was
    built, so a plan name SNS would refuse never blocks the notification."""

    subject: str
    message: str
    attributes: dict[str, str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "subject", sns_subject(self.subject))

    @cached_property
    def content(self) -> dict[str, Any]:
        """The message as data (parsed once): what answers and summaries are read from."""
        return json.loads(self.message)  # type: ignore[no-any-return]

    def summary(self) -> dict[str, Any]:
        """The short form the handler returns and logs."""
        content = self.content
        key = backend_of(content).target_key
        summary: dict[str, Any] = {
            key: (content["request"] or {}).get(key),
            "outcome": content["outcome"],
        }
        if content["checkpoint"]:
            summary["checkpoint_id"] = content["checkpoint"]["id"]
        if content["error"]:
            summary["error_category"] = content["error"]["category"]
        return summary

    def to_record(self) -> dict[str, Any]:
        """What the idempotency table keeps of a run: enough to answer and publish again."""
        attributes = dict(self.attributes)
        return {"subject": self.subject, "message": self.message, "attributes": attributes}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Notification:
        return cls(
            subject=record["subject"], message=record["message"], attributes=record["attributes"]
        )

    def essentials(self, note: str) -> Notification:
        """The same notification cut to what always fits: sent when the whole one cannot be."""
        message = json.dumps(essentials_of(self.content, note), ensure_ascii=False)
        return Notification(self.subject, message, self.attributes)


class Redactor:
    """Removes known secret values (passwords, tokens) from any text about to leave the function.

    Upstream servers echo what they were sent in the forms they saw it: as is, JSON-escaped,
    URL-encoded, with its whitespace collapsed (as ``truncate`` also does), or cut short.
    """

    def __init__(self, secret_values: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for value in secret_values:
            if len(value) >= _MIN_REDACTED_LENGTH:
                forms.update(f for f in _echoed_forms(value) if len(f) >= _MIN_REDACTED_LENGTH)
        # Longest first, so a secret that contains another is removed whole.
        self._forms = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for form in self._forms:
            text = text.replace(form, REDACTED)
        if TRUNCATION_MARK not in text:
            return text
        *cut, rest = text.split(TRUNCATION_MARK)
        return TRUNCATION_MARK.join([*(self._cut_prefix(part) for part in cut), rest])

    def _cut_prefix(self, text: str) -> str:
        """``text`` (which a truncation ended) without the secret prefix it may end in."""
        for form in self._forms:
            for length in range(min(len(form) - 1, len(text)), _MIN_REDACTED_PREFIX - 1, -1):
                if text.endswith(form[:length]):
                    return text[:-length] + REDACTED
        return text


def _echoed_forms(value: str) -> set[str]:
    collapsed = " ".join(value.split())
    forms = {value, collapsed, quote(value, safe=""), quote(value), quote_plus(value)}
    forms |= {json.dumps(form, ensure_ascii=False)[1:-1] for form in forms}
    return forms | {shown(form) for form in forms}  # as a message shows it


def iso_time(unix_time: float | None = None) -> str:
    """A moment as notifications write it: UTC, to the second."""
    moment = datetime.now(UTC) if unix_time is None else datetime.fromtimestamp(unix_time, UTC)
    return moment.isoformat(timespec="seconds")


def duration_text(seconds: int) -> str:
    """A duration as an operator says it: 59 s, 41 min, 8.5 h."""
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def backend_of(content: dict[str, Any]) -> Backend:
    """The backend a message is about (messages of older releases, and of plans that could not
    be read, are CSBS's)."""
    return BACKENDS.get(content.get("backend") or "", BACKENDS["csbs"])


def target_attributes(backend: Backend | None, target_id: str | None) -> dict[str, str]:
    """The message attributes that name the backend and its plan or vault."""
    if backend is None:
        return {}
    named = {backend.target_key: target_id} if target_id else {}
    return {"backend": backend.name, **named}


def sender_attributes(trigger: Any) -> dict[str, str]:
    """``trigger_sender``: the webhook source that asked (what the ticket update queue's
    subscription filters on), where a sender asked."""
    sender = trigger.get("sender") if isinstance(trigger, dict) else None
    return {"trigger_sender": sender} if isinstance(sender, str) and sender else {}


def build_notification(outcome: Outcome, redact: Redactor) -> Notification:
    request: dict[str, Any] | None = None
    backend = outcome.backend
    if outcome.request is not None:
        request = outcome.request.to_dict()
    elif backend is not None:  # a rejected plan: what of it could be read
        request = backend.request_fields(outcome.target_id)
    if outcome.resolved_from is not None:  # a resolution that found nothing to start
        request = (request or {}) | {"resolved_from": dict(outcome.resolved_from)}
    message = {
        "schema_version": SCHEMA_VERSION,
        "event": EVENT_STARTED,
        "outcome": outcome.outcome,
        "backend": backend.name if backend else None,
        "trigger": outcome.trigger.to_dict(),
        "invocation_id": outcome.invocation_id,
        "idempotency_key": outcome.idempotency_key,
        "request": request,
        "checkpoint": outcome.checkpoint.to_dict() if outcome.checkpoint else None,
        "plan_name": outcome.checkpoint.target_name if outcome.checkpoint else None,
        "error": outcome.error.to_dict() if outcome.error else None,
        "attempts": outcome.attempts,
        "duration_ms": outcome.duration_ms,
        "tracking": outcome.tracking,
        "expires_at": iso_time(outcome.expires_at) if outcome.expires_at is not None else None,
        "published_at": iso_time(),
    }
    attributes = {"event": EVENT_STARTED, "outcome": outcome.outcome,
                  **target_attributes(backend, outcome.target_id),
                  **sender_attributes(message["trigger"])}  # fmt: skip
    if outcome.error is not None:
        attributes["error_category"] = outcome.error.category.value
    return Notification(
        subject=_subject(outcome),
        message=_bounded(message, outcome.checkpoint, redact),
        attributes=attributes,
    )


def _bounded(message: dict[str, Any], started: Started | None, redact: Redactor) -> str:
    """A started notification within bounds: a backup of thousands of servers keeps the
    servers that fit, and ``resources_omitted`` says how many were left out."""
    if started is None:
        return fit(message, redact)

    def keeping(count: int) -> dict[str, Any]:
        return {**message, "checkpoint": started.to_dict(keep=count)}

    return fit(message, redact, entries=started.resource_count, keeping=keeping)


def fit(
    message: dict[str, Any],
    redact: Redactor,
    *,
    entries: int = 0,
    keeping: Callable[[int], dict[str, Any]] | None = None,
    limit: int = MAX_MESSAGE_BYTES,
) -> str:
    """The message as redacted JSON of at most ``limit`` bytes (``MAX_MESSAGE_BYTES``).

    A message too large keeps as many of its ``entries`` as fit (``keeping(n)``: the message
    with the first n); what still does not fit is cut to its essentials.
    """

    def render(candidate: dict[str, Any]) -> str | None:
        text = redact(json.dumps(shown(candidate), ensure_ascii=False, allow_nan=False))
        return text if len(text.encode()) <= limit else None

    text = render(message)
    if text is None and entries and keeping is not None:
        low, high = 0, entries  # the most entries that fit lie in [low, high]
        while low < high:
            middle = (low + high + 1) // 2
            if render(keeping(middle)) is None:
                high = middle - 1
            else:
                low = middle
        text = render(keeping(low))
    if text is not None:
        return text
    note = f"the message exceeded {limit // 1024} KiB: only its essentials are kept"
    essentials = shown(essentials_of(message, note))
    return redact(json.dumps(essentials, ensure_ascii=False, allow_nan=False))


def essentials_of(content: dict[str, Any], note: str) -> dict[str, Any]:
    """Schema version 1 cut to the event, the outcome, the trigger, the plan, the checkpoint id
    and status, the error's category and the times: bounded whatever the full message held.
    ``truncated`` says why."""
    request, checkpoint, error = content["request"], content["checkpoint"], content["error"]
    return {
        **_pick(content, "schema_version", "event", "outcome", "backend", "trigger"),
        **_pick(content, "invocation_id"),
        **_pick(content, "idempotency_key"),
        "request": request
        and _pick(request, "plan_id", "vault_id", "resources", "auto_trigger", "incremental"),
        "checkpoint": checkpoint and _pick(checkpoint, "id", "status"),
        "error": error and _pick(error, "category", "retryable", "http_status", "code"),
        **_pick(content, "tracking", "summary", "started_at", "finished_at", "duration_s"),
        **_pick(content, "polls", "attempts", "duration_ms", "published_at"),
        "truncated": note,
    }


def _pick(mapping: dict[str, Any], *keys: str) -> dict[str, Any]:
    """The ``keys`` that ``mapping`` holds (started and completed messages differ)."""
    return {key: mapping[key] for key in keys if key in mapping}


def _subject(outcome: Outcome) -> str:
    backend, error = outcome.backend, outcome.error
    if backend is None:  # the plan could not be read
        return f"Backup trigger failed ({error.category.value if error else 'unknown'})"
    named = f" for {backend.target_word} {outcome.target_id}" if outcome.target_id else ""
    if error is None:
        return f"{backend.label} backup started{named}"
    return f"{backend.label} backup failed ({error.category.value}){named}"

"""The history: one entry per published plan outcome (a backup started, or why not) and per
completion, kept 35 days, that the daily digest reads.

An entry is read from the notification it records, so a notification replayed from its record
is recorded as the same entry. Writing one is the last step after its publish and never fails
that step: a history the table lost leaves the digest short, never a notification unsent.
"""

from __future__ import annotations

import hashlib
from typing import Any

from csbs_trigger.errors import truncate
from csbs_trigger.notify import Notification, backend_of
from csbs_trigger.text import plausible_time
from csbs_trigger.values import field_names, frozen

KEPT_SECONDS = 35 * 24 * 3600
STARTED, COMPLETED, EXPIRED = "started", "completed", "expired"
SUCCEEDED, FAILED, TIMED_OUT = "succeeded", "failed", "timed_out"
# A failure's message as the digest lists it: long enough to act on, short enough for hundreds.
MAX_MESSAGE_LENGTH = 300


@frozen
class Entry:
    """One plan outcome (``event`` started: ``succeeded`` or ``failed`` to start), one
    completion (``completed``: ``succeeded``, ``failed``, ``timed_out``) or one expiry
    (``expired``: ``deleted``, ``failed``; ``kept`` as a last good backup, ``due`` in report
    mode)."""

    id: str  # names the notification it records (the same notification: the same id)
    at: float  # when it was published (Unix time)
    event: str
    outcome: str
    backend: str
    target_id: str | None  # the plan or vault (None: a plan that could not be read)
    scope: str  # what the plan ran as: its project_id, else its credentials ("" the stack's)
    project_id: str | None = None  # where known
    name: str | None = None  # the plan's or vault's name, where known
    checkpoint_id: str | None = None
    category: str | None = None  # the error category of a failure
    message: str | None = None
    trigger: str | None = None  # schedule, eventbridge, direct, webhook
    reference: str | None = None  # the ticket, else the trigger's id
    finished_at: float | None = None  # a completion: when its servers finished
    servers: int | None = None
    duration_s: int | None = None
    kept: int | None = None  # an expiry: servers whose backup is kept as their last good one

    @property
    def plan(self) -> tuple[str, str, str]:
        """What names a plan across its runs: backend, project (or credentials), plan id."""
        return self.backend, self.scope, self.target_id or ""

    def to_dict(self) -> dict[str, Any]:
        return {name: value for name, value in vars(self).items() if value is not None}

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> Entry:
        """An entry as ``to_dict`` kept it (what it left out was None)."""
        given: dict[str, Any] = {name: stored.get(name) for name in field_names(cls)}
        return cls(**given)


def entry_of(notification: Notification, recorded_as: str) -> Entry | None:
    """The entry that records a started or completed notification (schema version 1), named
    by ``recorded_as`` (what runs once per notification: its key, its checkpoint, its
    message id). None for a message the history does not keep."""
    content = notification.content
    event = content.get("event")
    published = plausible_time(content.get("published_at"))
    if event not in (STARTED, COMPLETED, EXPIRED) or published is None:
        return None
    backend = backend_of(content)
    request = content.get("request") or {}
    checkpoint = content.get("checkpoint") or {}
    error = content.get("error") or {}
    trigger = content.get("trigger") or {}
    target_id = request.get(backend.target_key)  # a str, or None where the plan was unread
    credentials = request.get("credentials")
    project_id = request.get("project_id")
    finished = plausible_time(content.get("finished_at"))
    # A timed-out backup is listed as such; its message names the last poll's trouble, if any.
    category = TIMED_OUT if content["outcome"] == TIMED_OUT else error.get("category")
    return Entry(
        id=hashlib.sha256(recorded_as.encode()).hexdigest()[:32],
        at=published.timestamp(),
        event=event,
        outcome=content["outcome"],
        backend=backend.name,
        target_id=target_id,
        scope=project_id or (f"credentials:{credentials}" if credentials else ""),
        project_id=project_id or checkpoint.get("project_id"),
        name=content.get("plan_name"),
        checkpoint_id=checkpoint.get("id"),
        category=category,
        message=_short(_coded(error)),
        trigger=trigger.get("source"),
        reference=_short(trigger.get("reference") or trigger.get("id")),
        finished_at=finished.timestamp() if finished else None,
        servers=(content.get("summary") or {}).get("servers")
        if event != EXPIRED
        else len(content.get("deleted") or ()),
        duration_s=content.get("duration_s"),
        kept=len(content.get("kept_as_last_good") or ()) if event == EXPIRED else None,
    )


def _short(text: Any) -> str | None:
    return truncate(text, MAX_MESSAGE_LENGTH) if isinstance(text, str) and text else None


def _coded(error: dict[str, Any]) -> str | None:
    """An error's message led by its service code (what operators search for)."""
    message, code = error.get("message"), error.get("code")
    if code and message and code not in message:
        return f"{code}: {message}"
    return message

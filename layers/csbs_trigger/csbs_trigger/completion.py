"""What became of a started backup: its checkpoint's items judged, and the notification saying so.

A checkpoint is done when every item is terminal (and as many items as servers were asked for
have appeared): ``succeeded`` when all are ``available``, ``failed`` when any is not. Past the
deadline first, it is ``timed_out``, naming why the last poll failed where it did. Only a
checkpoint found gone on ``GONE_AFTER_POLLS`` polls in a row ends as ``failed`` /
``not_found``: any other failed poll (refused for a moment, answered nonsense, throttled) only
waits for the next one, until the deadline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from csbs_trigger.aws.tracking import Tracked
from csbs_trigger.cloud.backends import BACKENDS
from csbs_trigger.cloud.checkpoint_items import CheckpointItem
from csbs_trigger.errors import Category, TriggerError
from csbs_trigger.notify import (
    SCHEMA_VERSION,
    Notification,
    Redactor,
    duration_text,
    fit,
    iso_time,
    sender_attributes,
    target_attributes,
)
from csbs_trigger.values import frozen

EVENT_COMPLETED = "completed"
SUCCEEDED, FAILED, TIMED_OUT = "succeeded", "failed", "timed_out"
# Failures that are about this deployment (its secret, its credentials, its rights), not the
# checkpoint: they stop a tracker run and wait, rather than end every backup being followed.
DEPLOYMENT_FAILURES = frozenset({Category.AUTH_FAILED, Category.CONFIG_ERROR, Category.FORBIDDEN})
# One 404 may be a passing fault of the gateway: a checkpoint is gone when polls say so twice.
GONE_AFTER_POLLS = 2


@frozen
class Verdict:
    """How a backup ended, and why where it did not succeed."""

    outcome: str  # succeeded | failed | timed_out
    error: TriggerError | None = None


def judge(
    items: Sequence[CheckpointItem] | None,
    *,
    expected_items: int | None,
    now: float,
    deadline_at: float,
    failure: TriggerError | None = None,
    misses: int = 0,
) -> Verdict | None:
    """The checkpoint's outcome from its latest poll (``items`` None: the poll failed with
    ``failure``; ``misses``: how many polls in a row, this one included, found it gone), or
    None while it is still running."""
    gone = failure is not None and failure.category is Category.NOT_FOUND
    if gone and misses >= GONE_AFTER_POLLS:
        return Verdict(FAILED, failure)
    listed_all = expected_items is None or len(items or ()) >= expected_items
    if items and listed_all and all(item.terminal for item in items):
        failed = [item for item in items if item.failed]
        if not failed:
            return Verdict(SUCCEEDED)
        first = failed[0]
        reason = first.fail_reason or first.status  # a failed item has a status
        error = TriggerError(
            f"{len(failed)} of {_servers(len(items))} failed "
            f"({first.resource_name or first.resource_id}: {reason})",
            category=Category.ITEM_ERROR,
            code=first.fail_code,
        )
        return Verdict(FAILED, error)
    if now >= deadline_at:
        counts = summary(items or (), expected_items)
        finished = counts["available"] + counts["failed"]
        known = (
            f"{finished} of {_servers(counts['servers'])}" if counts["servers"] else "no servers"
        )
        message = f"not finished before the tracking deadline: {known} finished"
        if failure is not None:
            message += f"; the last poll failed ({failure.category.value}: {failure.message})"
        return Verdict(TIMED_OUT, TriggerError(message, category=Category.TIMEOUT))
    return None


def summary(items: Sequence[CheckpointItem], expected_items: int | None = None) -> dict[str, int]:
    """How many servers (those asked for, where CSBS has not listed them all yet), and how many
    of them are available, failed or still running."""
    servers = max(len(items), expected_items or 0)
    failed = sum(item.failed for item in items)
    available = sum(item.terminal and not item.failed for item in items)
    return {"servers": servers, "available": available, "failed": failed,
            "running": servers - available - failed}  # fmt: skip


def build_completion(
    tracked: Tracked,
    verdict: Verdict,
    items: Sequence[CheckpointItem] | None,
    *,
    now: float,
    invocation_id: str | None,
    last_summary: dict[str, int] | None,
    redact: Redactor,
) -> Notification:
    """The one completion notification of a checkpoint (schema version 1, like the started one).

    ``items`` None (the last poll failed) reports the last summary a poll recorded.
    """
    registration = tracked.registration
    backend = BACKENDS[registration.backend]
    started = registration.started
    listed = [item.to_dict() for item in items or ()]
    expected = registration.expected_items
    counts = (
        summary(items, expected) if items is not None else last_summary or summary((), expected)
    )
    finished_at = _latest_finish(items) if verdict.outcome != TIMED_OUT else None
    finished_at = min(finished_at or now, now)
    duration = max(0, round(finished_at - registration.registered_at))
    message: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "event": EVENT_COMPLETED,
        "outcome": verdict.outcome,
        "backend": backend.name,
        "trigger": started["trigger"],
        "invocation_id": invocation_id,
        "request": started["request"],
        "plan_name": registration.plan_name,  # whole, where the subject may transliterate it
        "checkpoint": {"id": registration.checkpoint_id},
        "items": listed,
        "summary": counts,
        "error": verdict.error.to_dict() if verdict.error else None,
        "started_at": iso_time(registration.registered_at),
        "finished_at": iso_time(finished_at),
        "duration_s": duration,
        "polls": tracked.polls + 1,
        "expires_at": started.get("expires_at"),
        "published_at": iso_time(),
    }

    def keeping(count: int) -> dict[str, Any]:
        return {**message, "items": listed[:count], "items_omitted": len(listed) - count}

    attributes = {"event": EVENT_COMPLETED, "outcome": verdict.outcome,
                  **target_attributes(backend, registration.target_id),
                  **sender_attributes(started["trigger"])}  # fmt: skip
    if verdict.error is not None:
        attributes["error_category"] = verdict.error.category.value
    subject = _subject(tracked, verdict, counts, duration)
    text = fit(message, redact, entries=len(listed), keeping=keeping)
    return Notification(subject=subject, message=text, attributes=attributes)


def _subject(tracked: Tracked, verdict: Verdict, counts: dict[str, int], duration: int) -> str:
    registration = tracked.registration
    backend = BACKENDS[registration.backend]
    label = backend.label
    plan = f"{backend.target_word} {registration.plan_name or registration.target_id}"
    servers = _servers(counts["servers"])
    if verdict.outcome == SUCCEEDED:
        return f"{label} backup completed for {plan} ({servers}, {duration_text(duration)})"
    if verdict.outcome == TIMED_OUT:
        done = counts["available"] + counts["failed"]
        finished = f"{done} of {servers} finished" if counts["servers"] else "no servers listed"
        return f"{label} backup timed out for {plan} ({finished})"
    assert verdict.error is not None
    if verdict.error.category is Category.ITEM_ERROR:
        return f"{label} backup failed for {plan} ({counts['failed']} of {servers})"
    return f"{label} backup failed ({verdict.error.category.value}) for {plan}"


def _servers(count: int) -> str:
    return f"{count} server" if count == 1 else f"{count} servers"


def _latest_finish(items: Sequence[CheckpointItem] | None) -> float | None:
    """When the last server finished, where CSBS said."""
    return max((item.finished for item in items or () if item.finished is not None), default=None)

"""What became of a started backup: its checkpoint's items judged, and the notification saying so.

A checkpoint is done when every item is terminal (and as many items as servers were asked for
have appeared): ``succeeded`` when all are ``available``, ``failed`` when any is not. Past the
deadline first, it is ``timed_out``. A poll that fails for good about the checkpoint itself
(deleted: ``not_found``, refused, answered nonsense) ends it as ``failed`` naming the category;
a poll that fails for a while (throttled, unavailable, a timeout) only waits for the next one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from csbs_trigger.aws.tracking import Tracked
from csbs_trigger.cloud.checkpoint_items import CheckpointItem
from csbs_trigger.errors import Category, TriggerError
from csbs_trigger.notify import (
    SCHEMA_VERSION,
    Notification,
    Redactor,
    fit,
    iso_time,
)

EVENT_COMPLETED = "completed"
SUCCEEDED, FAILED, TIMED_OUT = "succeeded", "failed", "timed_out"
# Failures that are about this deployment (its secret, its credentials), not the checkpoint:
# they stop a tracker run and wait, rather than end every backup being followed.
DEPLOYMENT_FAILURES = frozenset({Category.AUTH_FAILED, Category.CONFIG_ERROR})


@dataclass(frozen=True)
class Verdict:
    outcome: str  # succeeded | failed | timed_out
    error: TriggerError | None = None


def ends_tracking(error: TriggerError) -> bool:
    """A poll's failure that no later poll can mend, and that is about this checkpoint."""
    return not error.retryable and error.category not in DEPLOYMENT_FAILURES


def judge(
    items: Sequence[CheckpointItem] | None,
    *,
    expected_items: int | None,
    now: float,
    deadline_at: float,
    failure: TriggerError | None = None,
) -> Verdict | None:
    """The checkpoint's outcome from its latest poll (``items`` None: the poll failed with
    ``failure``), or None while it is still running."""
    if failure is not None and ends_tracking(failure):
        return Verdict(FAILED, failure)
    if items and all(item.terminal for item in items) and len(items) >= (expected_items or 0):
        failed = [item for item in items if item.failed]
        if not failed:
            return Verdict(SUCCEEDED)
        first = failed[0]
        reason = first.fail_reason or first.status or "no reason given"
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
            message += f"; the last poll failed ({failure.category.value})"
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
        "published_at": iso_time(),
    }

    def keeping(count: int) -> dict[str, Any]:
        return {**message, "items": listed[:count], "items_omitted": len(listed) - count}

    attributes = {"event": EVENT_COMPLETED, "outcome": verdict.outcome,
                  "plan_id": registration.plan_id}  # fmt: skip
    if verdict.error is not None:
        attributes["error_category"] = verdict.error.category.value
    subject = _subject(tracked, verdict, counts, duration)
    text = fit(message, redact, entries=len(listed), keeping=keeping)
    return Notification(subject=subject, message=text, attributes=attributes)


def _subject(tracked: Tracked, verdict: Verdict, counts: dict[str, int], duration: int) -> str:
    registration = tracked.registration
    plan = f"plan {registration.plan_name or registration.plan_id}"
    servers = _servers(counts["servers"])
    if verdict.outcome == SUCCEEDED:
        return f"CSBS backup completed for {plan} ({servers}, {_duration(duration)})"
    if verdict.outcome == TIMED_OUT:
        done = counts["available"] + counts["failed"]
        finished = f"{done} of {servers} finished" if counts["servers"] else "no servers listed"
        return f"CSBS backup timed out for {plan} ({finished})"
    assert verdict.error is not None
    if verdict.error.category is Category.ITEM_ERROR:
        return f"CSBS backup failed for {plan} ({counts['failed']} of {servers})"
    return f"CSBS backup failed ({verdict.error.category.value}) for {plan}"


def _servers(count: int) -> str:
    return f"{count} server" if count == 1 else f"{count} servers"


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def _latest_finish(items: Sequence[CheckpointItem] | None) -> float | None:
    """When the last server finished, as CSBS wrote it (UTC, mostly without an offset)."""
    moments = []
    for item in items or ():
        try:
            moment = datetime.fromisoformat(item.finished_at or "")
        except ValueError:
            continue
        moments.append((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())
    return max(moments, default=None)

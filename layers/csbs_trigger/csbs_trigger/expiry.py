"""Backups that expire: the sweep deletes the backups this stack started whose lifetime ended,
never anything else, and never a server's last good backup.

Only the expiry register names what may go: a backup this stack started with a lifetime
(``keep_days``), whose completion was reported. At expiry each of its servers' backups goes,
unless it is that server's newest ``available`` backup among those the stack registered in the
project (its *last good* one): that one is kept, and goes at the first sweep after a newer one
of that server succeeded. A backup whose completion was not reported yet is never touched.

A sweep reads the due backups (soonest expiry first) while it has time, claims each (so that
overlapping sweeps never act twice on one), asks the service to delete (CSBS: at most five
deletions in flight per project), and at a later sweep confirms that they are gone; then one
``expired`` notification tells it. In ``report`` mode it deletes nothing and sends no cloud
request: the digest tells what would go. Refused credentials stop the sweep for their account
(the lockout rule); a refusal of the deletion (403, another 4xx) is told at most once a day and
tried again after a day; throttling, 5xx and timeouts are tried again at the next sweep.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from csbs_trigger.aws.expiry_register import (
    DELETING,
    DUE,
    EXPIRED,
    TOLD,
    Expiring,
    ExpiryRegister,
)
from csbs_trigger.aws.sns import PublishError
from csbs_trigger.cloud.backends import BACKENDS
from csbs_trigger.deadline import Deadline
from csbs_trigger.errors import Category, ConfigError, TriggerError
from csbs_trigger.log import logger
from csbs_trigger.notify import SCHEMA_VERSION, Notification, fit, iso_time, target_attributes
from csbs_trigger.runner import publish_and_record, record_history
from csbs_trigger.runtime import Runtime
from csbs_trigger.values import replace

EVENT_EXPIRED = "expired"
DELETED, FAILED, KEPT, DUE_IN_REPORT = "deleted", "failed", "kept", "due"
PAGE_SIZE = 100
MAX_DUE = 5000  # backups one sweep reads; the rest wait for the next
SECONDS_PER_BACKUP = 10.0  # a backup is begun only with this much of the invocation left
CSBS_DELETIONS_PER_PROJECT = 5  # CSBS runs at most five deletion tasks at once per project
REFUSAL_RETRY_SECONDS = 24 * 3600.0
# What stops the sweep for the account it happened in: asking again would lock the user.
_ACCOUNT_FAILURES = frozenset({Category.AUTH_FAILED, Category.CONFIG_ERROR})


class SweepStopped(Exception):
    """The register could not be used: nothing more can be swept now."""


@dataclass
class _Sweep:
    register: ExpiryRegister
    runtime: Runtime
    context: Any
    deadline: Deadline
    lease_until: float
    report_only: bool
    in_flight: Counter[str] = field(default_factory=Counter)  # CSBS deletions per project
    stopped: dict[str | None, TriggerError] = field(default_factory=dict)  # by credentials


def sweep(context: Any, runtime: Runtime) -> dict[str, Any]:
    """One sweep; its counts by what happened to each due backup."""
    register = runtime.expiry_register
    if register is None:
        raise ConfigError("environment variable EXPIRY_TABLE is not set")
    settings = runtime.settings
    deadline = Deadline.from_context(
        context, settings.connect_timeout_seconds, settings.read_timeout_seconds
    )
    now = runtime.clock()
    run = _Sweep(register, runtime, context, deadline,
                 lease_until=now + deadline.remaining_seconds(),
                 report_only=settings.expiry_mode == "report")  # fmt: skip
    due: list[Expiring] = []
    start: dict[str, Any] | None = None
    try:
        while len(due) < MAX_DUE:
            page, start = register.due(now, limit=PAGE_SIZE, start=start)
            due += page
            if start is None:
                break
    except TriggerError as error:
        raise SweepStopped(error.message) from None
    run.in_flight.update(e.project_id or "" for e in due
                         if e.state == DELETING and e.backend == "csbs")  # fmt: skip
    counts: Counter[str] = Counter()
    for expiring in due:
        if not _has_time(deadline):
            counts["deferred"] += 1
            continue
        counts[_sweep_one(expiring, run)] += 1
    result: dict[str, Any] = {"due": len(due), "mode": settings.expiry_mode, **counts}
    logger.info("expiry sweep finished", extra=result)
    if counts["stopped"]:
        raise SweepStopped("the expiry register could not be used")
    if counts["publish_failed"]:  # kept: the next sweep publishes them; the alarm tells now
        raise PublishError(f"{counts['publish_failed']} expiry notifications not published")
    return result


def _has_time(deadline: Deadline) -> bool:
    return deadline.remaining_seconds() - deadline.reserve_seconds >= SECONDS_PER_BACKUP


def _sweep_one(expiring: Expiring, run: _Sweep) -> str:
    """Move one due backup on under this sweep's claim; what happened, in one word."""
    runtime = run.runtime
    now = runtime.clock()
    if expiring.state not in (DUE, DELETING, TOLD):
        return "waiting"  # its completion is not reported yet: never touched
    if expiring.retry_at > now:
        return "refused"  # refused within the last day: tried again later
    if expiring.credentials in run.stopped:
        return "deferred"
    try:
        if not run.register.claim(expiring, now=now, lease_until=run.lease_until):
            return "skipped"  # another sweep holds it, or moved it on since it was read
        claimed = replace(expiring, lease_until=run.lease_until)
        if claimed.state == TOLD:
            return _tell(claimed, run)
        if claimed.state == DELETING:
            return _confirm(claimed, run)
        return _delete(claimed, run)
    except TriggerError as error:  # the register failed
        logger.error("expiry register failed", extra={
            "checkpoint_id": expiring.checkpoint_id, "reason": error.message})  # fmt: skip
        return "stopped"


def _delete(expiring: Expiring, run: _Sweep) -> str:
    """Ask for the deletion of what goes now: every server's backup but the last good ones."""
    last_good = run.register.last_good(expiring.scope, sorted(expiring.items))
    kept = tuple(sorted(server for server, item in expiring.items.items()
                        if item.get("status") == "available"
                        and last_good.get(server) == expiring.checkpoint_id))  # fmt: skip
    going = {server: item.get("item") for server, item in expiring.items.items()
             if server not in kept}  # fmt: skip
    if run.report_only or not going:
        after = replace(expiring, kept=kept)
        run.register.update(expiring, after, now=run.runtime.clock())
        outcome = DUE_IN_REPORT if run.report_only and going else KEPT
        # For the digest (one entry per backup, the latest): what would go, or why it stays.
        record_history(_notification(after, tuple(sorted(going)), None, run, outcome=outcome),
                       f"expiry-{outcome}:{expiring.checkpoint_id}", run.runtime)  # fmt: skip
        return "would_delete" if outcome == DUE_IN_REPORT else "kept"
    project = expiring.project_id or ""
    if expiring.backend == "csbs" and run.in_flight[project] >= CSBS_DELETIONS_PER_PROJECT:
        run.register.release(expiring)
        return "queued"  # CSBS deletes five at a time per project: a later sweep sends it
    service = run.runtime.service(expiring.backend, expiring.credentials)
    try:
        deleting = service.delete(expiring, going, not kept, run.deadline)
    except TriggerError as error:
        return _refused(expiring, error, run)
    if expiring.backend == "csbs":
        run.in_flight[project] += 1
    after = replace(expiring, state=DELETING, deleting=deleting, kept=kept, retry_at=0.0)
    run.register.update(expiring, after, now=run.runtime.clock())
    logger.info("expired backup deleting", extra={
        "checkpoint_id": expiring.checkpoint_id, "servers": len(deleting),
        "kept": len(kept)})  # fmt: skip
    return "deleting"


def _confirm(expiring: Expiring, run: _Sweep) -> str:
    """Whether what was sent for deletion is gone; once it is, it is told."""
    service = run.runtime.service(expiring.backend, expiring.credentials)
    try:
        gone = service.gone(expiring, expiring.deleting, run.deadline)
    except TriggerError as error:
        return _refused(expiring, error, run)
    if gone != set(expiring.deleting):
        run.register.release(expiring)
        return "still_deleting"
    if expiring.backend == "csbs":  # its deletion task ended: another may start
        run.in_flight[expiring.project_id or ""] -= 1
    deleted = tuple(sorted({*expiring.deleted, *gone}))
    notification = _notification(expiring, tuple(sorted(gone)), None, run)  # this deletion's
    told = replace(expiring, state=TOLD, deleted=deleted, deleting={},
                   notification=notification.to_record())  # fmt: skip
    if not run.register.update(expiring, told, now=run.runtime.clock(), hold=True):
        return "skipped"
    return _tell(told, run)


def _tell(expiring: Expiring, run: _Sweep) -> str:
    """Publish the notification kept for it, then let it expire (or wait, with servers kept
    as their last good backup, for a newer backup of theirs)."""
    assert expiring.notification is not None
    notification = Notification.from_record(expiring.notification)
    outcome = notification.attributes["outcome"]
    # Each deletion told once, each day's refusal once.
    recorded_as = (f"expiry-refused:{expiring.checkpoint_id}:{int(expiring.retry_at)}"
                   if outcome == FAILED else
                   f"expired:{expiring.checkpoint_id}:{len(expiring.deleted)}")  # fmt: skip
    try:
        publish_and_record(notification, recorded_as, run.runtime)
    except PublishError as error:
        logger.warning("expiry notification not published", extra={
            "checkpoint_id": expiring.checkpoint_id, "reason": str(error)})  # fmt: skip
        return "publish_failed"  # kept as told: the next sweep publishes it
    run.runtime.metrics.count("BackupsExpired" if outcome == DELETED else "BackupExpiryFailed",
                              backend=expiring.backend)  # fmt: skip
    left = {server: item for server, item in expiring.items.items()
            if server not in expiring.deleted}  # fmt: skip
    if outcome == FAILED:  # told: as it was, tried again after a day
        after = replace(expiring, state=DELETING if expiring.deleting else DUE, notification=None)
    else:
        after = replace(expiring, state=DUE if left else EXPIRED, items=left, notification=None)
    run.register.update(expiring, after, now=run.runtime.clock())
    return str(outcome)


def _refused(expiring: Expiring, error: TriggerError, run: _Sweep) -> str:
    """A deletion the service refused or could not take now."""
    runtime = run.runtime
    redact = runtime.redactor()
    logger.warning("expired backup not deleted", extra={
        "checkpoint_id": expiring.checkpoint_id, "category": error.category.value,
        "reason": redact(error.message)})  # fmt: skip
    if error.retryable:
        run.register.release(expiring)
        return "retry"  # throttled, 5xx, a timeout: the next sweep tries again
    if error.category in _ACCOUNT_FAILURES:
        run.stopped.setdefault(expiring.credentials, error)
        run.register.release(expiring)
        return "stopped_account"
    # Told now, tried again (and told again, if still refused) after a day: once a day at most.
    now = runtime.clock()
    notification = _notification(expiring, (), error, run)
    told = replace(expiring, state=TOLD, retry_at=now + REFUSAL_RETRY_SECONDS,
                   notification=notification.to_record())  # fmt: skip
    if not run.register.update(expiring, told, now=now, hold=True):
        return "skipped"
    return _tell(told, run)


def _notification(
    expiring: Expiring,
    deleted: tuple[str, ...],
    error: TriggerError | None,
    run: _Sweep,
    *,
    outcome: str | None = None,
) -> Notification:
    """One expired backup: the servers whose backups were deleted (or, ``due`` in report
    mode, would be), those kept as their last good backup, or why it could not be deleted."""
    backend = BACKENDS[expiring.backend]
    outcome = outcome or (FAILED if error is not None else DELETED)
    message = {
        "schema_version": SCHEMA_VERSION,
        "event": EVENT_EXPIRED,
        "outcome": outcome,
        "backend": backend.name,
        "project_id": expiring.project_id,
        "request": expiring.request or {backend.target_key: expiring.target_id},
        "plan_name": expiring.plan_name,
        "checkpoint": {"id": expiring.checkpoint_id},
        "created_at": iso_time(expiring.created_at),
        "expires_at": iso_time(expiring.expires_at),
        "deleted": [_server(expiring, server) for server in deleted],
        "kept_as_last_good": [_server(expiring, server) for server in expiring.kept],
        "error": error.to_dict() if error is not None else None,
        "invocation_id": getattr(run.context, "aws_request_id", None),
        "published_at": iso_time(),
    }
    attributes = {"event": EVENT_EXPIRED, "outcome": outcome,
                  **target_attributes(backend, expiring.target_id)}  # fmt: skip
    name = expiring.plan_name or expiring.target_id
    subject = (f"{backend.label} backup expired and deleted for {backend.target_word} {name}"
               if error is None else
               f"{backend.label} backup expiry failed ({error.category.value}) for "
               f"{backend.target_word} {name}")  # fmt: skip
    text = fit(message, run.runtime.redactor())
    return Notification(subject=subject, message=text, attributes=attributes)


def _server(expiring: Expiring, server: str) -> dict[str, Any]:
    item = expiring.items.get(server, {})
    return {"resource_id": server, "resource_name": item.get("name"),
            "status": item.get("status")}  # fmt: skip

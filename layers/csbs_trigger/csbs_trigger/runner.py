"""One plan of one trigger, from request to published notification, exactly once per key.

Shared by every entry point: the scheduled path runs the plans of an event, the webhook path
runs the one plan a ticket names.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from csbs_trigger.deadline import Deadline
from csbs_trigger.errors import TriggerError
from csbs_trigger.events import PlanItem, RejectedPlan
from csbs_trigger.log import logger
from csbs_trigger.models import BackupRequest, Checkpoint, Trigger
from csbs_trigger.notify import Notification, Outcome, PublishError, Redactor, build_notification
from csbs_trigger.runtime import Runtime


@dataclass(frozen=True)
class PlanResult:
    """The notification a plan ended in, whether it came from an earlier run, and its publish."""

    notification: Notification
    replayed: bool
    publish_error: PublishError | None = None

    @property
    def message(self) -> dict[str, Any]:
        return self.notification.content

    def summary(self) -> dict[str, Any]:
        summary = self.notification.summary()
        if self.replayed:
            summary["replayed"] = True
        return summary


class _NotKept(Exception):
    """A failure a later try may mend (and that created nothing): keep no record of it."""

    def __init__(self, record: dict[str, Any]) -> None:
        super().__init__("retryable failure")
        self.record = record


def run_plans(
    trigger: Trigger,
    items: tuple[PlanItem, ...],
    context: Any,
    runtime: Runtime,
) -> list[PlanResult]:
    """Run each plan (a batch with bounded concurrency) and publish one notification each.

    One failing plan never hides another's result.
    """

    # Schedule firings and EventBridge events name themselves; a hand-made direct invoke does not.
    keyed = trigger.id is not None and trigger.source in ("schedule", "eventbridge")

    def run(item: PlanItem) -> PlanResult:
        key = f"{trigger.source}:{trigger.id}:{item.plan_id}" if keyed else None
        return run_plan(trigger, item, key, context, runtime)

    backups = sum(isinstance(item, BackupRequest) for item in items)
    if backups <= 1:
        return [run(item) for item in items]
    workers = min(backups, runtime.settings.max_concurrency)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run, items))


def run_plan(
    trigger: Trigger,
    item: PlanItem,
    key: str | None,
    context: Any,
    runtime: Runtime,
) -> PlanResult:
    """Execute and publish once per ``key``; without a key (or a table), run unprotected."""
    invocation_id = getattr(context, "aws_request_id", None)
    deduplicator = runtime.deduplicator if key else None

    def execute() -> dict[str, Any]:
        outcome = _execute(trigger, item, key if deduplicator else None, context, runtime)
        notification = build_notification(outcome, Redactor(runtime.secret_values()))
        _log(notification)
        error = outcome.error
        if deduplicator and error and error.retryable and not error.maybe_created:
            raise _NotKept(notification.to_record())
        return notification.to_record()

    if deduplicator is None or key is None:
        if key is not None:
            logger.warning("IDEMPOTENCY_TABLE is not set: this trigger is not deduplicated")
        return _publish(Notification.from_record(execute()), runtime, replayed=False)
    try:
        record = deduplicator.once(key, "execute", execute, context)
    except _NotKept as failure:
        return _publish(Notification.from_record(failure.record), runtime, replayed=False)
    notification = Notification.from_record(record)
    replayed = notification.content["invocation_id"] != invocation_id
    if replayed:
        logger.info("trigger replayed: no second backup", extra={"idempotency_key": key})
    try:
        deduplicator.once(key, "publish", lambda: _publish_record(notification, runtime), context)
    except PublishError as error:
        return PlanResult(notification, replayed, error)
    return PlanResult(notification, replayed)


def _execute(
    trigger: Trigger, item: PlanItem, key: str | None, context: Any, runtime: Runtime
) -> Outcome:
    started = time.monotonic()
    checkpoint: Checkpoint | None = None
    error: TriggerError | None = None
    attempts = 0
    if isinstance(item, RejectedPlan):
        error = item.error
    else:
        settings = runtime.settings
        deadline = Deadline.from_context(
            context, settings.connect_timeout_seconds, settings.read_timeout_seconds
        )
        try:
            execution = runtime.client.execute_backup_policy(item, deadline)
            checkpoint, attempts = execution.checkpoint, execution.attempts
        except TriggerError as failure:
            error, attempts = failure, failure.attempts
    return Outcome(
        trigger=trigger,
        invocation_id=getattr(context, "aws_request_id", None),
        plan_id=item.plan_id,
        request=item if isinstance(item, BackupRequest) else None,
        checkpoint=checkpoint,
        error=error,
        attempts=attempts,
        duration_ms=int((time.monotonic() - started) * 1000),
        idempotency_key=key,
    )


def _publish(notification: Notification, runtime: Runtime, *, replayed: bool) -> PlanResult:
    try:
        _publish_record(notification, runtime)
    except PublishError as error:
        return PlanResult(notification, replayed, error)
    return PlanResult(notification, replayed)


def _publish_record(notification: Notification, runtime: Runtime) -> dict[str, Any]:
    try:
        return {"message_id": runtime.publisher.publish(notification)}
    except PublishError as error:
        plan_id = notification.attributes.get("plan_id")
        logger.error("notification not published", extra={"plan_id": plan_id, "reason": str(error)})
        raise


def _log(notification: Notification) -> None:
    """One line per run, from the (already redacted) notification."""
    content = notification.content
    fields: dict[str, Any] = {
        **notification.summary(),
        "trigger_source": content["trigger"]["source"],
        "trigger_id": content["trigger"]["id"],
        "attempts": content["attempts"],
        "duration_ms": content["duration_ms"],
    }
    error = content["error"]
    if error is None:
        logger.info("backup policy executed", extra=fields)
        return
    fields.update(
        retryable=error["retryable"],
        http_status=error["http_status"],
        error_code=error["code"],
        error_message=error["message"],
        maybe_created=error["maybe_created"],
    )
    logger.warning("backup trigger failed", extra=fields)


def raise_for_publish_failures(results: list[PlanResult]) -> None:
    """Only a failed publish fails the invocation: Lambda retries it, the DLQ keeps it."""
    failures = [result.publish_error for result in results if result.publish_error]
    if failures:
        raise PublishError(f"{len(failures)} of {len(results)} notifications not published")


def overall(results: list[PlanResult]) -> str:
    outcomes = {result.message["outcome"] for result in results}
    return outcomes.pop() if len(outcomes) == 1 else "partial"

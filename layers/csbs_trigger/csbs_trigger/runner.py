"""One plan of one trigger, from request to published notification, exactly once per key.

Shared by every entry point: the scheduled path runs the plans of an event, the webhook path
runs the one plan a ticket names. Each plan item is a ``Unit`` with two keys: its execution's
(one per distinct request of a trigger, so the same request twice starts one backup) and its
notification's (one per item, so every item is told its outcome).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from csbs_trigger.aws.idempotency import AlreadyInProgressError, PayloadConflictError
from csbs_trigger.aws.sns import PublishError, PublishRefused
from csbs_trigger.aws.tracking import Registration
from csbs_trigger.cloud.backend import Backend, BackupRequest, Execution
from csbs_trigger.deadline import Deadline
from csbs_trigger.errors import TriggerError
from csbs_trigger.history import entry_of
from csbs_trigger.log import logger
from csbs_trigger.models import Trigger
from csbs_trigger.notify import Notification, Outcome, build_notification, iso_time
from csbs_trigger.plans import PlanItem, RejectedPlan, Resolution
from csbs_trigger.runtime import Runtime
from csbs_trigger.values import frozen, replace

_T = TypeVar("_T")
_R = TypeVar("_R")


@frozen
class Unit:
    """One plan item of a trigger and the keys that make it run once and be told once.

    ``key`` names the execution; ``payload`` is what it must always stand for (a delivery's body
    digest: the same key with another payload is refused). Without a key nothing is deduplicated.
    """

    item: PlanItem
    key: str | None = None
    notice_key: str | None = None
    payload: str = ""

    @classmethod
    def of(cls, item: PlanItem, key: str | None, *, payload: str) -> Unit:
        """A unit that is its trigger's only item: its notification shares its key."""
        return cls(item, key, key, payload)


@frozen
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
        super().__init__()
        self.record = record


def request_digest(request: BackupRequest | Resolution) -> str:
    """Names a request by what the service is asked: the plan or vault (or what a resolution
    finds them by), the set of resources, the options."""
    return hashlib.sha256(json.dumps(request.identity()).encode()).hexdigest()[:32]


def batch_units(trigger: Trigger, items: tuple[PlanItem, ...], *, queued: bool) -> list[Unit]:
    """Keys for the items of a scheduled or EventBridge event (a hand-made direct invoke names
    nothing that a repeat would carry: it is not keyed, unless its plans are ``queued``, where
    its request id names them across Lambda's retries and the queue's redeliveries). A
    request's key is its digest, so the same request twice in a batch runs once; a rejected
    item's key is its position."""
    keyed = ("schedule", "eventbridge", "direct") if queued else ("schedule", "eventbridge")
    if trigger.id is None or trigger.source not in keyed:
        return [Unit(item) for item in items]
    units = []
    for index, item in enumerate(items):
        prefix = f"{trigger.source}:{trigger.id}:{item.target_id}"
        key = (
            f"{prefix}:item-{index}"
            if isinstance(item, RejectedPlan)
            else f"{prefix}:{request_digest(item)}"
        )
        units.append(Unit(item, key, f"{key}#{index}"))
    return units


def run_units(
    trigger: Trigger, units: list[Unit], context: Any, runtime: Runtime,
    *, workers: int | None = None,
) -> list[PlanResult]:  # fmt: skip
    """Run each distinct request once (a batch with bounded concurrency), then tell every unit
    its outcome in one notification each; one failing plan never hides another's result.
    ``workers``: how many at once (default: one per backup to start, up to MAX_CONCURRENCY; a
    batch of bad plans only is told one by one)."""
    first: dict[object, Unit] = {}
    for unit in units:
        first.setdefault(_identity(unit), unit)
    distinct = list(first.values())
    backups = sum(isinstance(unit.item, BackupRequest) for unit in distinct)
    if workers is None:
        workers = min(backups, runtime.settings.max_concurrency)
    executions = bounded_map(
        lambda unit: execute_once(trigger, unit, context, runtime), distinct, workers
    )
    executed = dict(zip(first, executions, strict=True))
    return bounded_map(
        lambda unit: publish_once(unit, executed[_identity(unit)], context, runtime),
        units,
        workers,
    )


def run_plan(trigger: Trigger, unit: Unit, context: Any, runtime: Runtime) -> PlanResult:
    """One unit: execute once, publish once."""
    return publish_once(unit, execute_once(trigger, unit, context, runtime), context, runtime)


def _identity(unit: Unit) -> object:
    """Units with the same identity are one execution (unkeyed: the same request)."""
    if unit.key is not None:
        return unit.key
    return id(unit) if isinstance(unit.item, RejectedPlan) else request_digest(unit.item)


def bounded_map(function: Callable[[_T], _R], items: Iterable[_T], workers: int) -> list[_R]:
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(function, items))


@frozen
class Executed:
    """An execution's notification record, and whether the idempotency table holds it."""

    record: dict[str, Any]
    recorded: bool


def execute_once(
    trigger: Trigger, unit: Unit, context: Any, runtime: Runtime, *, final: bool = False
) -> Executed:
    """Call CSBS once per ``unit.key`` (a repeat gets the stored record); without a key (or a
    table), run unprotected. A failure a later try may mend is not kept, unless this try is
    the ``final`` one (a queued plan's last delivery): then it is the outcome, told once.

    If the result cannot be recorded after CSBS was called, it is reported all the same and the
    invocation does not fail: a retry must never start a second backup.
    """
    deduplicator = runtime.deduplicator if unit.key else None
    ran: list[dict[str, Any]] = []

    def execute() -> dict[str, Any]:
        key = unit.key if deduplicator else None
        outcome = _execute(trigger, unit.item, key, context, runtime)
        notification = build_notification(outcome, runtime.redactor())
        _log(notification)
        record = notification.to_record()
        error = outcome.error
        if deduplicator and error and error.retryable and not error.maybe_created and not final:
            raise _NotKept(record)
        ran.append(record)
        return record

    if deduplicator is None or unit.key is None:
        if unit.key is not None:
            logger.warning("IDEMPOTENCY_TABLE is not set: this trigger is not deduplicated")
        return Executed(execute(), recorded=False)
    try:
        record = deduplicator.once(unit.key, "execute", execute, context, payload=unit.payload)
    except _NotKept as failure:
        return Executed(failure.record, recorded=False)
    except (AlreadyInProgressError, PayloadConflictError):
        raise
    except TriggerError as error:
        if not ran:
            raise
        logger.error(
            "result not recorded: reported without a record",
            extra={"idempotency_key": unit.key, "reason": error.message},
        )
        return Executed(ran[0], recorded=False)
    return Executed(record, recorded=True)


def publish_once(unit: Unit, executed: Executed, context: Any, runtime: Runtime) -> PlanResult:
    """Publish the execution's notification once per ``unit.notice_key``."""
    notification = Notification.from_record(executed.record)
    replayed = notification.content["invocation_id"] != context.aws_request_id
    if replayed:
        logger.info("trigger replayed: no second backup", extra={"idempotency_key": unit.key})
    deduplicator = runtime.deduplicator if executed.recorded and unit.notice_key else None
    try:
        if deduplicator is None or unit.notice_key is None:
            publish_and_record(notification, None, runtime)
        else:
            notice_key = unit.notice_key
            deduplicator.once(
                notice_key,
                "publish",
                lambda: publish_and_record(notification, notice_key, runtime),
                context,
                payload=unit.payload,
            )
    except PublishError as error:
        return PlanResult(notification, replayed, error)
    return PlanResult(notification, replayed)


def _execute(
    trigger: Trigger, item: PlanItem, key: str | None, context: Any, runtime: Runtime
) -> Outcome:
    began = time.monotonic()
    planned = Outcome(
        trigger=trigger,
        invocation_id=context.aws_request_id,
        backend=item.backend,
        target_id=item.target_id,
        request=item if isinstance(item, BackupRequest) else None,
        duration_ms=0,
        idempotency_key=key,
    )
    if isinstance(item, RejectedPlan):
        _count_not_started(item.backend, item.error, runtime)
        return replace(planned, error=item.error, resolved_from=item.resolved_from)
    assert not isinstance(item, Resolution), "resolution.resolve_units runs before"
    settings = runtime.settings
    deadline = Deadline.from_context(
        context, settings.connect_timeout_seconds, settings.read_timeout_seconds
    )
    try:
        execution = runtime.service(item.backend.name, item.credentials).start(item, deadline)
    except TriggerError as failure:
        _count_not_started(item.backend, failure, runtime)
        return replace(planned, error=failure, attempts=failure.attempts,
                       duration_ms=_ms_since(began))  # fmt: skip
    expires_at = give_lifetime(item, execution, runtime)
    tracking = register(trigger, item, execution, key, planned.invocation_id, runtime,
                        expires_at=expires_at)  # fmt: skip
    runtime.metrics.count("BackupsStarted", backend=item.backend.name)
    return replace(planned, checkpoint=execution.started, attempts=execution.attempts,
                   tracking=tracking, expires_at=expires_at,
                   duration_ms=_ms_since(began))  # fmt: skip


def _count_not_started(backend: Backend | None, error: TriggerError, runtime: Runtime) -> None:
    named = {"backend": backend.name} if backend is not None else {}
    runtime.metrics.count("BackupsNotStarted", **named, error_category=error.category.value)


def _ms_since(began: float) -> int:
    return int((time.monotonic() - began) * 1000)


def give_lifetime(request: BackupRequest, execution: Execution, runtime: Runtime) -> float | None:
    """Register a started backup in the expiry register with its lifetime (the plan's
    ``keep_days``, else the stack's default); when it expires (None: kept forever). A register
    that cannot be written keeps the backup forever, never loses it."""
    keep_days = request.keep_days or runtime.settings.default_keep_days
    if keep_days is None:
        return None
    from csbs_trigger.aws.expiry_register import Expiring  # only for a backup with a lifetime

    started, register = execution.started, runtime.expiry_register
    if register is None:
        logger.error("no expiry register (EXPIRY_TABLE): the backup is kept",
                     extra={"checkpoint_id": started.id})  # fmt: skip
        return None
    now = runtime.clock()
    expiring = Expiring(
        checkpoint_id=started.id,
        backend=request.backend.name,
        target_id=request.target_id,
        plan_name=started.target_name,
        project_id=started.project_id or execution.project_id,
        credentials=request.credentials,
        created_at=now,
        expires_at=now + keep_days * 86400,
        request=request.to_dict(),
    )
    try:
        register.register(expiring)
    except TriggerError as error:
        logger.error("backup not registered to expire: it is kept",
                     extra={"checkpoint_id": started.id, "reason": error.message})  # fmt: skip
        return None
    return expiring.expires_at


def register(
    trigger: Trigger,
    request: BackupRequest,
    execution: Execution,
    key: str | None,
    invocation_id: str | None,
    runtime: Runtime,
    *,
    expires_at: float | None = None,
) -> dict[str, Any] | None:
    """Leave a started backup for the completion tracker, in the step that started it (a
    replayed trigger replays that step's record: it never registers twice). A table that cannot
    be written loses the completion, never the backup or its started notification."""
    if runtime.tracking is None:
        return None
    now = runtime.clock()
    deadline_at = now + runtime.settings.tracking_deadline_seconds
    started = execution.started
    asked = len(request.resources) if request.resources else started.resource_count
    registration = Registration(
        checkpoint_id=started.id,
        backend=request.backend.name,
        target_id=request.target_id,
        plan_name=started.target_name,
        project_id=started.project_id or execution.project_id,
        expected_items=asked or None,
        credentials=request.credentials,
        details=runtime.service(request.backend.name).tracking_details(started),
        started={
            "trigger": trigger.to_dict(),
            "request": request.to_dict(),
            "invocation_id": invocation_id,
            "idempotency_key": key,
            "expires_at": iso_time(expires_at) if expires_at is not None else None,
        },
        registered_at=now,
        deadline_at=deadline_at,
    )
    try:
        runtime.tracking.register(registration)
    except TriggerError as error:
        logger.error("backup not registered for tracking: no completion will be reported",
                     extra={"checkpoint_id": started.id, "reason": error.message})  # fmt: skip
        return {"deadline": None, "error": error.message}
    return {"deadline": iso_time(deadline_at)}


def publish_and_record(
    notification: Notification, recorded_as: str | None, runtime: Runtime
) -> dict[str, Any]:
    """Publish, then keep the notification in the history as ``recorded_as`` (what it is told
    once per: its notice key, its checkpoint; None: its own message id)."""
    published = publish_record(notification, runtime)
    record_history(notification, recorded_as or published["message_id"], runtime)
    return published


def record_history(notification: Notification, recorded_as: str, runtime: Runtime) -> None:
    """The digest's record of a published notification; a table that fails loses the entry,
    never the notification (it is published already)."""
    if runtime.history is None:
        return
    try:
        entry = entry_of(notification, recorded_as)
        if entry is not None:
            runtime.history.record(entry)
    except Exception as error:  # whatever fails here must not fail the publish
        # The notification is out: an exception here would count its publish as failed, and
        # the retry would tell it twice.
        reason = error.message if isinstance(error, TriggerError) else type(error).__name__
        attributes = notification.attributes
        logger.error("outcome not recorded in the history: the digest will miss it", extra={
            "event": attributes.get("event"), "outcome": attributes.get("outcome"),
            "reason": reason})  # fmt: skip
        runtime.metrics.count("HistoryNotRecorded")


def publish_record(notification: Notification, runtime: Runtime) -> dict[str, Any]:
    """Publish; when SNS refuses the whole notification for good, publish its essentials."""
    plan_id = notification.attributes.get("plan_id") or notification.attributes.get("vault_id")
    try:
        return {"message_id": runtime.publisher.publish(notification)}
    except PublishRefused as refusal:
        reason = str(refusal)
        logger.warning("notification refused: publishing its essentials", extra={
            "plan_id": plan_id, "reason": reason})  # fmt: skip
        essentials = notification.essentials(f"{reason}: only its essentials are kept")
        try:
            return {"message_id": runtime.publisher.publish(essentials), "essentials": True}
        except PublishError as error:
            reason = str(error)
    except PublishError as error:
        reason = str(error)
    logger.error("notification not published", extra={"plan_id": plan_id, "reason": reason})
    raise PublishError(reason)


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
        raise PublishError(
            f"{len(failures)} of {len(results)} notifications not published: {failures[0]}"
        )


def overall(results: list[PlanResult]) -> str:
    outcomes = {result.message["outcome"] for result in results}
    return outcomes.pop() if len(outcomes) == 1 else "partial"

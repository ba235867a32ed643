"""Firings too large to run in one invocation: more than ``MAX_INLINE_PLANS`` plans.

The firing's invocation checks every plan, tells the bad ones at once, and queues each valid
one as a message; the plan worker runs each message exactly as an inline plan (the same
idempotency keys, the same notification, the same tracking registration). The keys make a
redelivered message, a retried firing and a firing delivered twice run each plan once.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from csbs_trigger.aws import sqs
from csbs_trigger.aws.idempotency import AlreadyInProgressError
from csbs_trigger.aws.sns import PublishError
from csbs_trigger.cloud.backend import BackupRequest
from csbs_trigger.errors import Category, ConfigError, InvalidEventError, TriggerError
from csbs_trigger.log import logger
from csbs_trigger.models import Trigger
from csbs_trigger.notify import Notification
from csbs_trigger.plans import PlanItem, RejectedPlan, Resolution
from csbs_trigger.runner import (
    Unit,
    batch_units,
    bounded_map,
    execute_once,
    publish_once,
    raise_for_publish_failures,
    run_units,
)
from csbs_trigger.runtime import Runtime
from csbs_trigger.text import printable
from csbs_trigger.triggers.events import MAX_INLINE_PLANS, parse_plan
from csbs_trigger.values import frozen, replace

MESSAGE_VERSION = 1
# Large firings, and the backups a webhook's resolution found (with its sender and ticket).
_TRIGGER_SOURCES = ("schedule", "eventbridge", "direct", "webhook")
_MAX_KEY_LENGTH = 1024


class PlansNotQueued(TriggerError):
    """Some plans of a firing are not in the queue: the invocation fails, Lambda retries it
    (and the keys keep the plans already queued from running twice)."""

    category = Category.UNAVAILABLE


@frozen
class QueuedPlan:
    """One plan of a firing as the plan queue carries it (the project's own format)."""

    trigger: Trigger
    unit: Unit

    def to_body(self) -> str:
        item = self.unit.item
        assert not isinstance(item, RejectedPlan)
        resolved = getattr(item, "resolved_from", None)
        return json.dumps({
            "v": MESSAGE_VERSION,
            "trigger": {key: value for key, value in self.trigger.to_dict().items()
                        if value is not None or key in ("source", "id")},
            "plan": item.as_plan(),
            "key": self.unit.key,
            "notice_key": self.unit.notice_key,
            **({} if resolved is None else {"resolved_from": resolved}),
        }, ensure_ascii=False, separators=(",", ":"))  # fmt: skip

    @classmethod
    def from_body(cls, body: Any) -> QueuedPlan:
        """A message read back, checked like anything from outside: a queue can be written to
        by whoever may."""
        try:
            message = json.loads(body) if isinstance(body, str) else None
        except ValueError:
            message = None
        if not isinstance(message, dict) or message.get("v") != MESSAGE_VERSION:
            raise InvalidEventError(f"a queued plan must be a version {MESSAGE_VERSION} message")
        trigger, plan = message.get("trigger"), message.get("plan")
        if not (
            isinstance(trigger, dict)
            and trigger.get("source") in _TRIGGER_SOURCES
            and _is_key(trigger.get("id"))
            and all(
                trigger.get(name) is None or _is_key(trigger[name])
                for name in ("sender", "reference")
            )
            and all(_is_key(message.get(name)) for name in ("key", "notice_key"))
            and isinstance(plan, dict)
        ):
            raise InvalidEventError("a queued plan needs its trigger, keys and plan")
        item = parse_plan(plan, where="queued plan")
        if isinstance(item, RejectedPlan):
            raise item.error
        resolved = message.get("resolved_from")
        if resolved is not None:  # a backup a resolution found: it still says what was asked
            if not isinstance(resolved, dict) or not isinstance(item, BackupRequest):
                raise InvalidEventError("a queued plan's resolved_from must be an object")
            item = replace(item, resolved_from=resolved)
        return cls(
            Trigger(
                source=trigger["source"],
                id=trigger["id"],
                sender=trigger.get("sender"),
                reference=trigger.get("reference"),
            ),
            Unit(item, message["key"], message["notice_key"]),
        )


def enqueue_firing(
    trigger: Trigger, items: tuple[PlanItem, ...], context: Any, runtime: Runtime
) -> dict[str, Any]:
    """Tell the firing's bad plans their failure now and queue the others, one message each."""
    return enqueue_units(trigger, batch_units(trigger, items, queued=True), context, runtime)


def enqueue_units(
    trigger: Trigger, units: list[Unit], context: Any, runtime: Runtime
) -> dict[str, Any]:
    """Tell the rejected units their failure now and queue the others (keyed), one message
    each: the plans of a large firing, or the backups a resolution found."""
    queue = runtime.plan_queue
    if queue is None:
        error = ConfigError(
            "environment variable PLAN_QUEUE_URL is not set: a firing of more than "
            f"{MAX_INLINE_PLANS} plans goes through the plan queue"
        )
        units = [replace(unit, item=_rejected(unit.item, error)) for unit in units]
    rejected = [unit for unit in units if isinstance(unit.item, RejectedPlan)]
    to_queue = [unit for unit in units if not isinstance(unit.item, RejectedPlan)]
    # Up to 1,000 of them, told within the invocation: side by side.
    workers = runtime.settings.max_concurrency
    told = run_units(trigger, rejected, context, runtime, workers=workers) if rejected else []
    unsent = queue.send([QueuedPlan(trigger, unit).to_body() for unit in to_queue]) if queue else 0
    raise_for_publish_failures(told)
    if unsent:
        raise PlansNotQueued(f"{unsent} of {len(to_queue)} plans not queued")
    logger.info("firing queued", extra={"plans": len(units), "queued": len(to_queue),
                                        "rejected": len(rejected)})  # fmt: skip
    return {
        "outcome": "queued",
        "trigger": {"source": trigger.source, "id": trigger.id},
        "counts": {"plans": len(units), "queued": len(to_queue), "rejected": len(rejected)},
        "plans": [result.summary() for result in told],
    }


def handle_plan_messages(event: Any, context: Any, runtime: Runtime) -> dict[str, Any]:
    """Run each queued plan; the ones to try again are the batch's item failures. One plan's
    trouble never fails the others."""
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list):
        raise InvalidEventError("the plan worker takes SQS events (Records)")
    held = bounded_map(
        lambda record: _run_message(record, context, runtime),
        records,
        runtime.settings.max_concurrency,
    )
    return {"batchItemFailures": [{"itemIdentifier": item} for item in held if item]}


def _run_message(record: Any, context: Any, runtime: Runtime) -> str | None:
    """One message: None when done with (told its outcome), else its id, to come back."""
    record = record if isinstance(record, dict) else {}
    message_id = _message_id(record)
    try:
        queued = QueuedPlan.from_body(record.get("body"))
    except InvalidEventError as error:
        logger.error("queued plan unreadable", extra={"message_id": message_id,
                                                      "reason": error.message})  # fmt: skip
        # Told once however often SQS delivers it: keyed by what it holds.
        body = record.get("body")
        digest = hashlib.sha256(repr(body).encode("utf-8", "surrogatepass")).hexdigest()
        key = f"queue:unreadable:{digest}"
        trigger = Trigger(source="queue", id=message_id)
        unit = Unit(RejectedPlan(error), key, key, payload=digest)
        [result] = run_units(trigger, [unit], context, runtime)
        return message_id if result.publish_error else None
    try:
        deliveries = sqs.deliveries(record)
        final = deliveries >= runtime.settings.plan_max_deliveries
        if isinstance(queued.unit.item, Resolution):
            return _resolve_message(queued, record, deliveries, context, runtime, final=final)
        executed = execute_once(queued.trigger, queued.unit, context, runtime, final=final)
        failure = Notification.from_record(executed.record).content["error"]
        if failure and failure["category"] == Category.THROTTLED.value and not final:
            delay = failure["retry_after_seconds"] or sqs.backoff(deliveries)
            logger.info("plan throttled: back to the queue", extra={
                "idempotency_key": queued.unit.key, "deliveries": deliveries,
                "delay_seconds": delay})  # fmt: skip
            if runtime.plan_queue is not None and isinstance(record.get("receiptHandle"), str):
                runtime.plan_queue.hold_back(record["receiptHandle"], delay)
            return message_id
        result = publish_once(queued.unit, executed, context, runtime)
    except AlreadyInProgressError:
        return message_id  # another worker runs it now: its outcome is told from there
    except Exception as exc:  # never the whole batch for one plan
        # Its type only: an unforeseen exception's text or traceback may hold anything.
        logger.error("queued plan failed: it comes back", extra={"message_id": message_id,
                     "reason": type(exc).__name__})  # fmt: skip
        return message_id
    return message_id if result.publish_error else None


def _resolve_message(
    queued: QueuedPlan, record: dict[str, Any], deliveries: int, context: Any, runtime: Runtime,
    *, final: bool,
) -> str | None:  # fmt: skip
    """A queued plan naming servers or a policy: resolved once (its key), and what it resolved
    to queued as plans of their own (each then runs as any queued plan). A lookup that may
    succeed later brings the message back, told only at its last delivery."""
    from csbs_trigger.resolution import Deferred, expand_unit  # only a worker that resolves

    try:
        units = expand_unit(queued.unit, context, runtime, final=final)
    except Deferred as deferred:
        delay = deferred.error.retry_after_seconds or sqs.backoff(deliveries)
        logger.info("plan not resolved yet: back to the queue", extra={
            "idempotency_key": queued.unit.key, "deliveries": deliveries,
            "category": deferred.error.category.value,  # not its text: the service's words
            "delay_seconds": delay})  # fmt: skip
        if runtime.plan_queue is not None and isinstance(record.get("receiptHandle"), str):
            runtime.plan_queue.hold_back(record["receiptHandle"], delay)
        return _message_id(record)
    try:
        enqueue_units(queued.trigger, units, context, runtime)
    except (PublishError, PlansNotQueued):
        return _message_id(record)  # comes back: the keys keep what is done from running again
    return None


def _message_id(record: dict[str, Any]) -> str | None:
    return record.get("messageId") if isinstance(record.get("messageId"), str) else None


def _rejected(item: PlanItem, error: TriggerError) -> PlanItem:
    """A plan that cannot be queued fails with ``error`` (a bad one keeps its own)."""
    if isinstance(item, RejectedPlan):
        return item
    if isinstance(item, Resolution):
        return RejectedPlan(error, item.backend, None, item.asked())
    return RejectedPlan(error, item.backend, item.target_id, item.resolved_from)


def _is_key(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= _MAX_KEY_LENGTH and printable(value)

"""The scheduled path: EventBridge Scheduler, EventBridge rules and direct invocations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from csbs_trigger.plans import Resolution
from csbs_trigger.runner import batch_units, overall, raise_for_publish_failures, run_units
from csbs_trigger.runtime import Runtime
from csbs_trigger.triggers.events import MAX_INLINE_PLANS, parse_event
from csbs_trigger.triggers.queued import enqueue_firing, enqueue_units

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


def handle_event(event: Any, context: LambdaContext, runtime: Runtime) -> dict[str, Any]:
    """Run every plan of the event and publish one notification each (a firing of more than
    ``MAX_INLINE_PLANS``: tell its bad plans and queue the others for the plan worker). Plans
    naming servers or a policy are resolved first; more backups than ``MAX_INLINE_PLANS`` from
    them are queued alike.

    Returns normally once the notifications are out, even when backups failed: raising would
    make Lambda's asynchronous retries repeat the backups. Only a failed publish raises (and
    then the retry replays what already ran, thanks to the idempotency records).
    """
    parsed = parse_event(event, request_id=context.aws_request_id)
    if len(parsed.items) > MAX_INLINE_PLANS:
        return enqueue_firing(parsed.trigger, parsed.items, context, runtime)
    # A direct invocation's resolution is keyed by its request id: Lambda's retry of it must
    # start what the first resolution found, not look again.
    resolving = any(isinstance(item, Resolution) for item in parsed.items)
    units = batch_units(parsed.trigger, parsed.items, queued=resolving)
    if resolving:
        from csbs_trigger.resolution import backups_in, resolve_units  # only when it resolves

        units = resolve_units(units, context, runtime)
        if backups_in(units) > MAX_INLINE_PLANS:
            return enqueue_units(parsed.trigger, units, context, runtime)
    results = run_units(parsed.trigger, units, context, runtime)
    raise_for_publish_failures(results)
    return {
        "outcome": overall(results),
        "trigger": {"source": parsed.trigger.source, "id": parsed.trigger.id},
        "plans": [result.summary() for result in results],
    }

"""Lambda entry point for EventBridge Scheduler, EventBridge rules and direct invocations."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from csbs_trigger import container_runtime, handle_event, logger


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_event(event, context, container_runtime())

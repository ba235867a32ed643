"""Lambda entry point for the plan queue: the plans of firings too large to run inline."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from csbs_trigger import container_runtime, handle_plan_messages, logger


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_plan_messages(event, context, container_runtime())

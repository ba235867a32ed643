"""Lambda entry point for webhooks: API Gateway HTTP API and function URL (payload v2)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from csbs_trigger import container_runtime, handle_webhook, logger


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_webhook(event, context, container_runtime())

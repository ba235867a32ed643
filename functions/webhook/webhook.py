"""Lambda entry point for webhooks: API Gateway HTTP API and function URL (payload v2)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from csbs_trigger import Runtime, handle_webhook, logger

_runtime: Runtime | None = None


def runtime() -> Runtime:
    """Built on the first invocation, not at import: clients and secrets live per container."""
    global _runtime
    if _runtime is None:
        _runtime = Runtime.from_env()
    return _runtime


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_webhook(event, context, runtime())

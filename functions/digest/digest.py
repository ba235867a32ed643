"""Lambda entry point for the daily digest, run by an EventBridge Scheduler cron schedule."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from csbs_trigger import container_runtime, logger, run_digest


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return run_digest(event, context, container_runtime())

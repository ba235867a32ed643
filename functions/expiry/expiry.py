"""Lambda entry point of the expiry sweep (ExpirySchedule, hourly by default): the backups
this stack started whose lifetime ended are deleted, but never a server's last good one."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from csbs_trigger import container_runtime, logger, sweep


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return sweep(context, container_runtime())

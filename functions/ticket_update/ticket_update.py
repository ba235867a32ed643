"""Lambda entry point for the ticket update queue: each backup's result written into the ticket
that asked for it."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from csbs_trigger import container_runtime, handle_ticket_messages, logger


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_ticket_messages(event, context, container_runtime())

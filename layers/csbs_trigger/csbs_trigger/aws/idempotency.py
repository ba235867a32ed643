"""Exactly once: each step of a trigger runs once per key, a repeat gets the first result.

Powertools idempotency on DynamoDB does the bookkeeping. A trigger has two steps, each with its
own record: ``execute`` (the CSBS call, whose result is the notification to send) and
``publish``. If publishing fails, the invocation fails and Lambda retries it: the retry replays
the stored ``execute`` result (no second backup) and publishes again (the failed ``publish``
left no record). A repeat after both steps replays both: no second backup, no second message.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.shared.constants import IDEMPOTENCY_DISABLED_ENV
from aws_lambda_powertools.shared.functions import strtobool

from csbs_trigger.errors import Category, ConfigError, TriggerError

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_dynamodb import DynamoDBClient

# How long a delivery or a schedule firing is remembered: longer than any sender retries.
DEFAULT_EXPIRY_SECONDS = 24 * 3600
_KEY_PREFIX = "csbs-trigger"


class AlreadyInProgressError(TriggerError):
    """Another invocation is running the same trigger right now."""

    category = Category.BUSY


class PayloadConflictError(TriggerError):
    """The key was used before for a different payload (one delivery id, two bodies)."""

    category = Category.INVALID_EVENT


class Deduplicator:
    """Runs ``step`` once per (key, step name); later calls return the stored result."""

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        *,
        expires_after_seconds: int = DEFAULT_EXPIRY_SECONDS,
    ) -> None:
        # Imported here, when a container first needs the table: the DynamoDB layer brings boto3
        # with it, which a container's first invocation loads anyway (Runtime.from_env).
        from aws_lambda_powertools.utilities.idempotency import (
            DynamoDBPersistenceLayer,
            IdempotencyConfig,
            idempotent_function,
        )

        self._config = IdempotencyConfig(
            event_key_jmespath="key",
            payload_validation_jmespath="payload",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=expires_after_seconds,
        )
        persistence = DynamoDBPersistenceLayer(table_name=table_name, boto3_client=client)
        self._once = idempotent_function(
            data_keyword_argument="record",
            persistence_store=persistence,
            config=self._config,
            key_prefix=_KEY_PREFIX,
        )(_run_step)

    def once(
        self,
        key: str,
        step: str,
        run: Callable[[], dict[str, Any]],
        context: LambdaContext | None,
        *,
        payload: str,
    ) -> dict[str, Any]:
        """``payload`` is what ``key`` must always stand for: a repeat with another payload is a
        ``PayloadConflictError``, and runs nothing."""
        _refuse_if_disabled()
        if context is not None:
            # In-progress records expire with the invocation, so a crashed run can be retried.
            self._config.register_lambda_context(context)
        from aws_lambda_powertools.utilities.idempotency.exceptions import (
            BaseError as IdempotencyError,
        )
        from aws_lambda_powertools.utilities.idempotency.exceptions import (
            IdempotencyAlreadyInProgressError,
            IdempotencyValidationError,
        )

        record = {"key": f"{key}#{step}", "payload": payload}
        try:
            result: dict[str, Any] = self._once(record=record, run=run)
        except IdempotencyAlreadyInProgressError:
            raise AlreadyInProgressError("the same trigger is being run right now") from None
        except IdempotencyValidationError:
            raise PayloadConflictError(
                "this delivery id was used before for a different payload"
            ) from None
        except IdempotencyError as exc:  # the table failed, or its record is inconsistent
            raise TriggerError(
                f"the idempotency table could not be used ({type(exc).__name__})",
                category=Category.UNAVAILABLE,
            ) from None
        return result


def _refuse_if_disabled() -> None:
    """Powertools skips all of this when the variable reads as true to it (and fails on a value
    it cannot read): never let either pass silently."""
    value = os.environ.get(IDEMPOTENCY_DISABLED_ENV)
    if value is None:
        return
    try:
        disabled = strtobool(value)
    except ValueError:
        disabled = True
    if disabled:
        raise ConfigError(f"{IDEMPOTENCY_DISABLED_ENV} is set: refusing to run unprotected")


def _run_step(record: dict[str, str], run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    return run()

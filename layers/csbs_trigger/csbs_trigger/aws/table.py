"""A DynamoDB table of ours: its calls, their failures as one ``unavailable`` error naming the
table, and conditional writes that answer False when their condition did not hold."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from csbs_trigger.errors import Category, TriggerError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class Table:
    what = "table"  # how errors name it: "the tracking table could not be used (...)"

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def _write(self, operation: str, **arguments: Any) -> bool:
        """A conditional write: False when its condition did not hold."""
        return self._call_if(operation, **arguments) is not None

    def _call_if(self, operation: str, **arguments: Any) -> dict[str, Any] | None:
        """A conditional call: its answer, or None when its condition did not hold."""
        try:
            return self._call(operation, **arguments)
        except _ConditionFailed:
            return None

    def _call(self, operation: str, **arguments: Any) -> dict[str, Any]:
        try:
            method = getattr(self._client, operation)
            return method(TableName=self._table, **arguments)  # type: ignore[no-any-return]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "Unknown")
            if code == "ConditionalCheckFailedException":
                raise _ConditionFailed from None
            raise TriggerError(
                f"the {self.what} could not be used ({code})", category=Category.UNAVAILABLE
            ) from None
        except BotoCoreError as exc:
            raise TriggerError(
                f"the {self.what} could not be reached ({type(exc).__name__})",
                category=Category.UNAVAILABLE,
            ) from None


class _ConditionFailed(Exception):
    pass

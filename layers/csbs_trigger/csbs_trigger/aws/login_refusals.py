"""The login refusal table (DynamoDB): logins IAM refused, shared by every function and container.

A container's memory is not enough: the tracker runs every few minutes, mostly in a new
container, and each trigger may start one, so a changed password would be sent again and again
until IAM locks the account (and every other system using it). One item per refused login,
keyed by the login's digest (``cloud.auth``), never the login itself::

    {"login": <digest>, "refused_at": <unix>, "retry_at": <unix>, "expires_at": <unix, TTL>,
     "http_status": <IAM's status>, "request_id": <IAM's request id, where it gave one>}

Until ``retry_at`` nobody sends that login. After it, exactly one caller wins the conditional
update that moves ``retry_at`` an hour on, and tries once. A table that cannot be read leaves
the decision to this container's memory: a DynamoDB failure must not stop every backup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from csbs_trigger.cloud.auth import REFUSAL_REMEMBERED_SECONDS, MemoryLoginGuard, Refusal
from csbs_trigger.errors import UpstreamError
from csbs_trigger.log import logger
from csbs_trigger.values import replace

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# A mark outlives its retry time by this much, then DynamoDB's TTL removes it.
KEPT_AFTER_RETRY_SECONDS = 7 * 24 * 3600


class TableLoginGuard:
    def __init__(self, client: DynamoDBClient, table_name: str, clock: Callable[[], float]) -> None:
        self._client = client
        self._table = table_name
        self._clock = clock
        self._memory = MemoryLoginGuard(clock)
        self._marked: set[str] = set()  # logins this container saw a mark for

    def check(self, login: str) -> None:
        self._memory.check(login)
        try:
            item = self._client.get_item(
                TableName=self._table, Key={"login": {"S": login}}, ConsistentRead=True
            ).get("Item")
        except (BotoCoreError, ClientError) as exc:
            _unusable(exc)
            return
        if item is None:
            return
        self._marked.add(login)
        refusal = _refusal(item)
        now = self._clock()
        if now >= refusal.retry_at:
            if self._take_the_retry(login, item["retry_at"]["N"], now):
                return
            # another caller took this hour's try
            refusal = replace(refusal, retry_at=now + REFUSAL_REMEMBERED_SECONDS)
        self._memory.remember(login, refusal)
        raise refusal.error()

    def refused(self, login: str, error: UpstreamError) -> None:
        refusal = Refusal.of(error, self._clock())
        self._memory.remember(login, refusal)
        item = {
            "login": {"S": login},
            "refused_at": {"N": repr(refusal.refused_at)},
            "retry_at": {"N": repr(refusal.retry_at)},
            "expires_at": {"N": str(int(refusal.retry_at) + KEPT_AFTER_RETRY_SECONDS)},
        }
        if refusal.http_status is not None:
            item["http_status"] = {"N": str(refusal.http_status)}
        if refusal.request_id is not None:
            item["request_id"] = {"S": refusal.request_id}
        try:
            self._client.put_item(TableName=self._table, Item=item)
        except (BotoCoreError, ClientError) as exc:
            _unusable(exc)

    def accepted(self, login: str) -> None:
        self._memory.accepted(login)
        if login not in self._marked:
            return
        self._marked.discard(login)
        try:
            self._client.delete_item(TableName=self._table, Key={"login": {"S": login}})
        except (BotoCoreError, ClientError) as exc:
            _unusable(exc)

    def _take_the_retry(self, login: str, seen_retry_at: str, now: float) -> bool:
        """Whether this caller is the one to try the login again (the hourly retry)."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"login": {"S": login}},
                UpdateExpression="SET retry_at = :next",
                ConditionExpression="retry_at = :seen",
                ExpressionAttributeValues={
                    ":next": {"N": repr(now + REFUSAL_REMEMBERED_SECONDS)},
                    ":seen": {"N": seen_retry_at},
                },
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False  # another caller is trying it now
            _unusable(exc)
        except BotoCoreError as exc:
            _unusable(exc)
        return True


def _refusal(item: dict[str, Any]) -> Refusal:
    status, request_id = item.get("http_status", {}).get("N"), item.get("request_id", {}).get("S")
    return Refusal(
        refused_at=float(item["refused_at"]["N"]),
        retry_at=float(item["retry_at"]["N"]),
        http_status=int(status) if status is not None else None,
        request_id=request_id,
    )


def _unusable(exc: BaseException) -> None:
    logger.warning(
        "login refusal table unusable: this container's memory decides",
        extra={"reason": type(exc).__name__},
    )

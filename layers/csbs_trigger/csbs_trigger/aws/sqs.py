"""SQS adapter: a queue of ours (the plan queue a large firing hands its plans to, the ticket
update queue), and a worker's way to hold a message back."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from csbs_trigger.log import logger

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

BATCH_ENTRIES = 10  # SendMessageBatch takes at most 10 entries
BATCH_BYTES = 256 * 1024  # and at most 256 KiB in all
SEND_ROUNDS = 3  # tries per entry before it is reported unsent
MAX_VISIBILITY_SECONDS = 12 * 3600
# A message to try again without a time given comes back after this (doubled per delivery).
BACKOFF_SECONDS, MAX_BACKOFF_SECONDS = 30.0, 900.0


class Queue:
    def __init__(self, client: SQSClient, url: str) -> None:
        self._client = client
        self._url = url

    def send(self, bodies: list[str]) -> int:
        """Send every body, in batches SQS takes, retrying the entries it did not; how many
        could not be sent after ``SEND_ROUNDS`` tries each."""
        return sum(self._send_batch(batch) for batch in _batches(bodies))

    def hold_back(self, receipt_handle: str, seconds: float) -> None:
        """Let a received message come back only after ``seconds`` (a throttled plan or ticket
        write waits as it was asked). Best effort: without it, the queue's own visibility
        timeout holds."""
        seconds = max(0, min(int(seconds), MAX_VISIBILITY_SECONDS))
        try:
            self._client.change_message_visibility(
                QueueUrl=self._url, ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
            )
        except (BotoCoreError, ClientError) as exc:
            logger.warning("message not held back", extra={"reason": type(exc).__name__})

    def _send_batch(self, bodies: list[str]) -> int:
        pending = {str(index): body for index, body in enumerate(bodies)}
        for _ in range(SEND_ROUNDS):
            try:
                answer = self._client.send_message_batch(
                    QueueUrl=self._url,
                    Entries=[{"Id": key, "MessageBody": body} for key, body in pending.items()],
                )
            except (BotoCoreError, ClientError) as exc:
                reason = type(exc).__name__
                logger.warning("plans not queued, trying again",
                               extra={"plans": len(pending), "reason": reason})  # fmt: skip
                continue
            failed = answer.get("Failed", [])
            if failed:
                logger.warning("plans not queued, trying again", extra={
                    "plans": len(failed), "reason": failed[0].get("Code")})  # fmt: skip
            pending = {entry["Id"]: pending[entry["Id"]] for entry in failed}
            if not pending:
                return 0
        return len(pending)


def _batches(bodies: list[str]) -> list[list[str]]:
    """At most 10 bodies and 256 KiB a batch (a plan's body is far below 256 KiB)."""
    batches: list[list[str]] = []
    size = 0
    for body in bodies:
        length = len(body.encode())
        if not batches or len(batches[-1]) == BATCH_ENTRIES or size + length > BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(body)
        size += length
    return batches


def deliveries(record: dict[str, Any]) -> int:
    """How often SQS has delivered this message, this time included."""
    attributes = record.get("attributes")
    count = attributes.get("ApproximateReceiveCount") if isinstance(attributes, dict) else None
    return int(count) if isinstance(count, str) and count.isdigit() else 1


def backoff(delivery: int) -> float:
    """Seconds until the next try, after ``delivery`` tries: doubled each, capped, jittered."""
    ceiling = min(MAX_BACKOFF_SECONDS, BACKOFF_SECONDS * 2.0 ** (delivery - 1))
    return ceiling / 2 + random.random() * ceiling / 2  # noqa: S311 (jitter, no secret)

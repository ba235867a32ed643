"""The tracking table (DynamoDB): the checkpoints being followed to their end.

One item per checkpoint, written when the backup starts. While it is followed it sits in the
sparse ``due`` index (``queue`` = ``pending``, sorted by ``polled_at``), so a tracker run asks
for the checkpoints polled longest ago, page by page, and never scans the finished ones.

Every change is conditional, so overlapping tracker runs never both act on one checkpoint:

    pending ──claim──▶ pending (polled) ──complete──▶ completing ──finish──▶ done
                 ▲         │                               │
                 └─────────┘ (not terminal yet)            └─ the publish failed: claimed again

A claim takes a lease until the claiming invocation ends; only the holder of the current claim
may record, complete or finish. ``completing`` keeps the completion notification, so a run that
failed to publish leaves it for the next run to publish, never to compute again.
"""

from __future__ import annotations

import json
from dataclasses import field
from typing import TYPE_CHECKING, Any

from csbs_trigger.aws.table import Table
from csbs_trigger.values import frozen

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

DUE_INDEX = "due"
PENDING = "pending"
COMPLETING = "completing"
DONE = "done"
# How long a finished checkpoint's record stays readable (TTL), for whoever investigates.
KEPT_AFTER_DONE_SECONDS = 30 * 24 * 3600


@frozen
class Registration:
    """What a started backup leaves for the tracker: enough to poll it and to report it."""

    checkpoint_id: str
    backend: str  # the backend that started it ("csbs", "cbr")
    target_id: str  # the CSBS policy or the CBR vault
    plan_name: str | None  # the policy's or the vault's name
    project_id: str | None
    expected_items: int | None  # servers the checkpoint was created for, where it said
    started: dict[str, Any]  # trigger, request, invocation_id, idempotency_key
    registered_at: float
    deadline_at: float
    details: dict[str, Any] = field(default_factory=dict)  # what its backend follows it by
    credentials: str | None = None  # the named secret it was started with (None: the stack's)


@frozen
class Tracked:
    """One item of the table as a tracker run read it."""

    registration: Registration
    state: str
    polled_at: float
    polls: int
    notification: dict[str, Any] | None  # the completion, once computed
    progress: dict[str, int] | None  # the last poll's summary of the items
    misses: int = 0  # consecutive polls that found the checkpoint gone

    @property
    def checkpoint_id(self) -> str:
        return self.registration.checkpoint_id


class TrackingTable(Table):
    what = "tracking table"

    def register(self, registration: Registration) -> bool:
        """Start following a checkpoint; False when it is followed already (a replay)."""
        item: dict[str, AttributeValueTypeDef] = {
            "checkpoint_id": _s(registration.checkpoint_id),
            "state": _s(PENDING),
            "queue": _s(PENDING),
            "polled_at": _n(registration.registered_at),
            "polls": _n(0),
            "registered_at": _n(registration.registered_at),
            "deadline_at": _n(registration.deadline_at),
            "backend": _s(registration.backend),
            "target_id": _s(registration.target_id),
            "started": _s(json.dumps(registration.started, ensure_ascii=False)),
            "expires_at": _n(int(registration.deadline_at) + KEPT_AFTER_DONE_SECONDS),
        }
        if registration.details:
            item["details"] = _s(json.dumps(registration.details, ensure_ascii=False))
        if registration.plan_name is not None:
            item["plan_name"] = _s(registration.plan_name)
        if registration.project_id is not None:
            item["project_id"] = _s(registration.project_id)
        if registration.credentials is not None:
            item["credentials"] = _s(registration.credentials)
        if registration.expected_items is not None:
            item["expected_items"] = _n(registration.expected_items)
        return self._write(
            "put_item",
            Item=item,
            ConditionExpression="attribute_not_exists(checkpoint_id)",
        )

    def due(
        self, cutoff: float, *, limit: int, start: dict[str, Any] | None = None
    ) -> tuple[list[Tracked], dict[str, Any] | None]:
        """A page of followed checkpoints last polled at or before ``cutoff``, oldest first, and
        where the next page starts (None: no more)."""
        query: dict[str, Any] = {
            "IndexName": DUE_INDEX,
            "KeyConditionExpression": "#queue = :pending AND polled_at <= :cutoff",
            "ExpressionAttributeNames": {"#queue": "queue"},
            "ExpressionAttributeValues": {":pending": _s(PENDING), ":cutoff": _n(cutoff)},
            "Limit": limit,
        }
        if start is not None:
            query["ExclusiveStartKey"] = start
        answer = self._call("query", **query)
        items = [_tracked(item) for item in answer["Items"]]  # a query always answers Items
        return items, answer.get("LastEvaluatedKey")

    def claim(self, tracked: Tracked, claim: str, *, now: float, lease_until: float) -> bool:
        """Take the checkpoint for this run until ``lease_until``; False when another run has
        polled it since it was read, or holds it now."""
        return self._write(
            "update_item",
            Key={"checkpoint_id": _s(tracked.checkpoint_id)},
            UpdateExpression="SET polled_at = :now, claim = :claim, lease_until = :lease "
            "ADD polls :one",
            ConditionExpression="polled_at = :seen AND #state = :state "
            "AND (attribute_not_exists(lease_until) OR lease_until < :now)",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues={
                ":now": _n(now),
                ":claim": _s(claim),
                ":lease": _n(lease_until),
                ":one": _n(1),
                ":seen": _n(tracked.polled_at),
                ":state": _s(tracked.state),
            },
        )

    def release(
        self,
        tracked: Tracked,
        claim: str,
        progress: dict[str, int] | None,
        *,
        failure: dict[str, Any] | None,
        misses: int,
    ) -> bool:
        """Record what the poll saw (``progress``; or the ``failure`` it met, and how many polls
        in a row found the checkpoint gone) and let the next run take the checkpoint."""
        values: dict[str, AttributeValueTypeDef] = {":claim": _s(claim), ":misses": _n(misses)}
        sets = ["misses = :misses"]
        if progress is not None:
            sets.append("progress = :progress")
            values[":progress"] = _s(json.dumps(progress))
        if failure is not None:
            sets.append("last_error = :failure")
            values[":failure"] = _s(json.dumps(failure, ensure_ascii=False))
        removed = "lease_until" if failure is not None else "lease_until, last_error"
        update = f"SET {', '.join(sets)} REMOVE {removed}"
        return self._write(
            "update_item",
            Key={"checkpoint_id": _s(tracked.checkpoint_id)},
            UpdateExpression=update,
            ConditionExpression="claim = :claim",
            ExpressionAttributeValues=values,
        )

    def complete(self, tracked: Tracked, claim: str, notification: dict[str, Any]) -> bool:
        """Keep the completion to publish; only the holder of the claim may."""
        return self._write(
            "update_item",
            Key={"checkpoint_id": _s(tracked.checkpoint_id)},
            UpdateExpression="SET #state = :completing, notification = :notification",
            ConditionExpression="claim = :claim AND #state = :pending",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues={
                ":completing": _s(COMPLETING),
                ":notification": _s(json.dumps(notification, ensure_ascii=False)),
                ":claim": _s(claim),
                ":pending": _s(PENDING),
            },
        )

    def finish(self, tracked: Tracked, claim: str, *, now: float, message_id: str) -> bool:
        """The completion is published: leave the due index, and expire in a while."""
        return self._write(
            "update_item",
            Key={"checkpoint_id": _s(tracked.checkpoint_id)},
            UpdateExpression="SET #state = :done, finished_at = :now, message_id = :message, "
            "expires_at = :expires REMOVE #queue, lease_until",
            ConditionExpression="claim = :claim AND #state = :completing",
            ExpressionAttributeNames={"#state": "state", "#queue": "queue"},
            ExpressionAttributeValues={
                ":done": _s(DONE),
                ":now": _n(now),
                ":message": _s(message_id),
                ":expires": _n(int(now) + KEPT_AFTER_DONE_SECONDS),
                ":claim": _s(claim),
                ":completing": _s(COMPLETING),
            },
        )


def _s(value: str) -> AttributeValueTypeDef:
    return {"S": value}


def _n(value: float) -> AttributeValueTypeDef:
    return {"N": str(value)}  # a float's str is its shortest exact form, as its repr


def _tracked(item: dict[str, Any]) -> Tracked:
    """A table item back as data (the table is ours: its shape is what ``register`` wrote)."""

    def text(name: str) -> str | None:
        value = item.get(name)
        return value["S"] if value else None

    def number(name: str) -> float | None:
        value = item.get(name)
        return float(value["N"]) if value else None

    notification, progress, details = text("notification"), text("progress"), text("details")
    expected = number("expected_items")
    registration = Registration(
        checkpoint_id=item["checkpoint_id"]["S"],
        backend=text("backend") or "csbs",  # an older release's record is a CSBS checkpoint
        target_id=text("target_id") or item["plan_id"]["S"],
        details={} if details is None else json.loads(details),
        plan_name=text("plan_name"),
        project_id=text("project_id"),
        credentials=text("credentials"),
        expected_items=None if expected is None else int(expected),
        started=json.loads(item["started"]["S"]),
        registered_at=float(item["registered_at"]["N"]),
        deadline_at=float(item["deadline_at"]["N"]),
    )
    return Tracked(
        registration=registration,
        state=item["state"]["S"],
        polled_at=float(item["polled_at"]["N"]),
        polls=int(float(item["polls"]["N"])),
        notification=None if notification is None else json.loads(notification),
        progress=None if progress is None else json.loads(progress),
        misses=int(number("misses") or 0),
    )

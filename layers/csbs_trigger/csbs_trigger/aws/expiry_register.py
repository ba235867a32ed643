"""The expiry register (DynamoDB): the backups this stack started with a lifetime, and each
server's newest good backup. Nothing is ever deleted that is not in it.

One item per backup, written when it starts (whether or not it is followed), keyed by its
checkpoint id::

    waiting ──completion reported──▶ due ──delete sent──▶ deleting ──gone──▶ told ──▶ expired
                                      ▲                                        │
                                      └──── servers kept as their last good ───┘

While not expired it sits in the sparse ``expiring`` index (``queue`` = ``expiring``, sorted by
``expires_at``), so a sweep reads only what is due. One item per server and project names the
newest backup of that server that ended ``available`` (``last-good``), so a sweep asks no
cloud whether a backup is a server's last good one. Every change is conditional on the state a
sweep read and on its lease, so overlapping sweeps never act twice on one backup.
"""

from __future__ import annotations

import json
from dataclasses import field
from typing import TYPE_CHECKING, Any

from csbs_trigger.aws.table import Table
from csbs_trigger.values import frozen

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

EXPIRING_INDEX = "expiring"
WAITING, DUE, DELETING, TOLD, EXPIRED = "waiting", "due", "deleting", "told", "expired"
# An expired backup's record stays readable this long (TTL), for whoever investigates.
KEPT_AFTER_EXPIRY_SECONDS = 30 * 24 * 3600


@frozen
class Expiring:
    """One registered backup: where it is, with which credentials, and what became of each
    server's backup (``items``: server id → its status and the id the service names it by)."""

    checkpoint_id: str
    backend: str
    target_id: str
    plan_name: str | None
    project_id: str | None
    credentials: str | None
    created_at: float
    expires_at: float
    request: dict[str, Any] = field(default_factory=dict)  # as its notifications name it
    state: str = WAITING
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleting: dict[str, str | None] = field(default_factory=dict)  # server → id being deleted
    deleted: tuple[str, ...] = ()  # servers whose backups are gone, told or to be told
    kept: tuple[str, ...] = ()  # servers whose backup is kept as their last good one
    notification: dict[str, Any] | None = None  # ``told``: the notification to publish
    retry_at: float = 0.0  # a refused deletion is tried again from then
    lease_until: float = 0.0  # the claim this sweep holds (the table's value is never read)

    @property
    def scope(self) -> str:
        return scope_of(self.backend, self.project_id, self.credentials)


def scope_of(backend: str, project_id: str | None, credentials: str | None) -> str:
    """Where a server's last good backup is looked up: the backend and the project (else the
    credentials' own one)."""
    return f"{backend}\n{project_id or credentials or ''}"


class ExpiryRegister(Table):
    what = "expiry register table"

    def register(self, expiring: Expiring) -> bool:
        """Give a started backup its lifetime; False when it has one already (a replay)."""
        item: dict[str, AttributeValueTypeDef] = {
            "id": _s(expiring.checkpoint_id),
            "state": _s(WAITING),
            "queue": _s(EXPIRING_INDEX),
            "backend": _s(expiring.backend),
            "target_id": _s(expiring.target_id),
            "created_at": _n(expiring.created_at),
            "expires_at": _n(expiring.expires_at),
            "request": _s(json.dumps(expiring.request, ensure_ascii=False)),
            "items": _s("{}"),
            "deleting": _s("{}"),
            "deleted": _s("[]"),
            "kept": _s("[]"),
            "retry_at": _n(0),
        }
        for name, value in (("plan_name", expiring.plan_name),
                            ("project_id", expiring.project_id),
                            ("credentials", expiring.credentials)):  # fmt: skip
            if value is not None:
                item[name] = _s(value)
        return self._write("put_item", Item=item, ConditionExpression="attribute_not_exists(id)")

    def completed(self, checkpoint_id: str, items: dict[str, dict[str, Any]]) -> bool:
        """Its completion was reported: each server's result; from now on it may expire.
        False when it has no lifetime (or was told its completion before)."""
        return self._write(
            "update_item",
            Key={"id": _s(checkpoint_id)},
            UpdateExpression="SET #state = :due, #items = :items",
            ConditionExpression="#state = :waiting",
            ExpressionAttributeNames={"#state": "state", "#items": "items"},
            ExpressionAttributeValues={
                ":due": _s(DUE),
                ":waiting": _s(WAITING),
                ":items": _s(json.dumps(items)),
            },
        )

    def good(self, scope: str, server: str, checkpoint_id: str, created_at: float) -> None:
        """``checkpoint_id`` backed ``server`` up well: its last good backup, unless a newer
        one is already."""
        self._write(
            "update_item",
            Key={"id": _s(_last_good(scope, server))},
            UpdateExpression="SET checkpoint_id = :checkpoint, created_at = :created",
            ConditionExpression="attribute_not_exists(id) OR created_at < :created",
            ExpressionAttributeValues={
                ":checkpoint": _s(checkpoint_id),
                ":created": _n(created_at),
            },
        )

    def last_good(self, scope: str, servers: list[str]) -> dict[str, str]:
        """Each server's last good backup (its checkpoint id), where it has one."""
        found: dict[str, str] = {}
        for server in servers:  # a backup holds few servers; each one read consistently
            item = self._call(
                "get_item", Key={"id": _s(_last_good(scope, server))}, ConsistentRead=True
            ).get("Item")
            if item is not None:
                found[server] = item["checkpoint_id"]["S"]
        return found

    def due(
        self, now: float, *, limit: int, start: dict[str, Any] | None = None
    ) -> tuple[list[Expiring], dict[str, Any] | None]:
        """A page of the backups whose lifetime ended by ``now`` and are not expired yet,
        soonest first, and where the next page starts (None: no more)."""
        query: dict[str, Any] = {
            "IndexName": EXPIRING_INDEX,
            "KeyConditionExpression": "#queue = :expiring AND expires_at <= :now",
            "ExpressionAttributeNames": {"#queue": "queue"},
            "ExpressionAttributeValues": {":expiring": _s(EXPIRING_INDEX), ":now": _n(now)},
            "Limit": limit,
        }
        if start is not None:
            query["ExclusiveStartKey"] = start
        answer = self._call("query", **query)
        return [_expiring(item) for item in answer["Items"]], answer.get("LastEvaluatedKey")

    def read(self, checkpoint_id: str) -> Expiring | None:
        item = self._call("get_item", Key={"id": _s(checkpoint_id)}, ConsistentRead=True).get(
            "Item"
        )
        return None if item is None else _expiring(item)

    def claim(self, expiring: Expiring, *, now: float, lease_until: float) -> bool:
        """Take the backup until ``lease_until``; False when it changed since it was read or
        another sweep holds it."""
        return self._write(
            "update_item",
            Key={"id": _s(expiring.checkpoint_id)},
            UpdateExpression="SET lease_until = :lease",
            ConditionExpression="#state = :seen AND (attribute_not_exists(lease_until) "
            "OR lease_until < :now)",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues={
                ":lease": _n(lease_until),
                ":now": _n(now),
                ":seen": _s(expiring.state),
            },
        )

    def update(self, before: Expiring, after: Expiring, *, now: float, hold: bool = False) -> bool:
        """Move a claimed backup on from ``before`` to ``after`` and let it go (``hold``: keep
        the claim, for a next step); False when the claim passed to another sweep meanwhile."""
        values: dict[str, AttributeValueTypeDef] = {
            ":state": _s(after.state),
            ":deleting": _s(json.dumps(after.deleting)),
            ":deleted": _s(json.dumps(list(after.deleted))),
            ":kept": _s(json.dumps(list(after.kept))),
            ":items": _s(json.dumps(after.items)),
            ":retry": _n(after.retry_at),
            ":seen": _s(before.state),
            ":lease": _n(before.lease_until),
        }
        sets = ["#state = :state", "deleting = :deleting", "deleted = :deleted", "kept = :kept",
                "#items = :items", "retry_at = :retry"]  # fmt: skip
        removed = [] if hold else ["lease_until"]
        if after.notification is not None:
            sets.append("notification = :notification")
            values[":notification"] = _s(json.dumps(after.notification, ensure_ascii=False))
        else:
            removed.append("notification")
        if after.state == EXPIRED:
            sets.append("forget_at = :forget")
            values[":forget"] = _n(int(now) + KEPT_AFTER_EXPIRY_SECONDS)
            removed.append("#queue")
        return self._write(
            "update_item",
            Key={"id": _s(before.checkpoint_id)},
            UpdateExpression=f"SET {', '.join(sets)}"
            + (f" REMOVE {', '.join(removed)}" if removed else ""),
            ConditionExpression="#state = :seen AND lease_until = :lease",
            ExpressionAttributeNames={"#state": "state", "#items": "items",
                                      **({"#queue": "queue"} if after.state == EXPIRED else {})},
            ExpressionAttributeValues=values,
        )  # fmt: skip

    def release(self, expiring: Expiring) -> None:
        """Let another sweep take it (nothing changed)."""
        self._write(
            "update_item",
            Key={"id": _s(expiring.checkpoint_id)},
            UpdateExpression="REMOVE lease_until",
            ConditionExpression="lease_until = :lease",
            ExpressionAttributeValues={":lease": _n(expiring.lease_until)},
        )


def _last_good(scope: str, server: str) -> str:
    return f"last-good\n{scope}\n{server}"


def _s(value: str) -> AttributeValueTypeDef:
    return {"S": value}


def _n(value: float) -> AttributeValueTypeDef:
    return {"N": str(value)}


def _expiring(item: dict[str, Any]) -> Expiring:
    """An item back as data (the table is ours: its shape is what ``register`` wrote)."""

    def text(name: str) -> str | None:
        value = item.get(name)
        return value["S"] if value else None

    def stored(name: str) -> Any:
        return json.loads(item[name]["S"])

    notification = text("notification")
    return Expiring(
        checkpoint_id=item["id"]["S"],
        backend=item["backend"]["S"],
        target_id=item["target_id"]["S"],
        plan_name=text("plan_name"),
        project_id=text("project_id"),
        credentials=text("credentials"),
        created_at=float(item["created_at"]["N"]),
        expires_at=float(item["expires_at"]["N"]),
        request=stored("request"),
        state=item["state"]["S"],
        items=stored("items"),
        deleting=stored("deleting"),
        deleted=tuple(stored("deleted")),
        kept=tuple(stored("kept")),
        notification=None if notification is None else json.loads(notification),
        retry_at=float(item["retry_at"]["N"]),
    )

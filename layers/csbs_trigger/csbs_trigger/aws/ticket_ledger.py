"""The ticket ledger (DynamoDB): one item per result to write into a ticket, so that each is
written once however often, and by however many workers, it is delivered; and the senders whose
credentials a ticket system refused, so that no worker sends them again until they change.

    {"id": "note\\n<sender>\\n<reference>\\n<marker>", "state": "writing" | "written" | "failed",
     "lease_until": <unix>, "unknown": <an attempt's answer was lost>, "report": <the failure
     notification, until it is published>, "expires_at": <TTL>}
    {"id": "refused\\n<sender>\\n<credentials' digest>", "refused_at", "expires_at"}

A worker writes only while it holds the lease its conditional update won; a lease that ran out
(its worker died) can be won again, and whoever wins it after a lost answer reads the ticket
before writing.
"""

from __future__ import annotations

from csbs_trigger.aws.table import Table
from csbs_trigger.values import frozen

KEPT_SECONDS = 30 * 24 * 3600  # results are redelivered within days, never a month later
REFUSAL_KEPT_SECONDS = 365 * 24 * 3600
WRITING, WRITTEN, FAILED = "writing", "written", "failed"


@frozen
class Claim:
    """What the ledger says of a result: ``writing`` is ours to write (``unknown``: read the
    ticket first); ``busy``: another worker holds it; ``written`` / ``failed``: settled
    (``report``: a failure notification still to publish)."""

    state: str
    unknown: bool = False
    report: str | None = None


class TicketLedger(Table):
    what = "ticket ledger table"

    def claim(self, key: str, now: float, lease_seconds: float) -> Claim:
        won = self._claim(key, now, lease_seconds)
        if won is not None:
            return won
        item = self._call("get_item", Key=_key(key), ConsistentRead=True).get("Item", {})
        state = item.get("state", {}).get("S", WRITING)
        report = item.get("report", {}).get("S")
        return Claim("busy" if state == WRITING else state, report=report)

    def _claim(self, key: str, now: float, lease_seconds: float) -> Claim | None:
        answer = self._call_if(
            "update_item",
            Key=_key(key),
            UpdateExpression="SET #state = :writing, lease_until = :lease, expires_at = :ttl",
            ConditionExpression="attribute_not_exists(id) OR "
            "(#state = :writing AND lease_until < :now)",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues={
                ":writing": {"S": WRITING},
                ":lease": {"N": repr(now + lease_seconds)},
                ":now": {"N": repr(now)},
                ":ttl": {"N": str(int(now) + KEPT_SECONDS)},
            },
            ReturnValues="ALL_OLD",
        )
        if answer is None:
            return None
        old = answer.get("Attributes", {})
        # A lease that ran out without a release: its worker died, perhaps after writing.
        abandoned = float(old.get("lease_until", {}).get("N", "0")) > 0
        return Claim(WRITING, unknown=old.get("unknown", {}).get("BOOL", False) or abandoned)

    def release(self, key: str, *, unknown: bool) -> None:
        """Give the result back (to be tried at a later delivery); ``unknown``: the attempt's
        answer was lost, so the next one reads the ticket first."""
        expression = "SET lease_until = :zero" + (", #unknown = :true" if unknown else "")
        self._call(
            "update_item",
            Key=_key(key),
            UpdateExpression=expression,
            **({"ExpressionAttributeNames": {"#unknown": "unknown"}} if unknown else {}),
            ExpressionAttributeValues={":zero": {"N": "0"},
                                       **({":true": {"BOOL": True}} if unknown else {})},
        )  # fmt: skip

    def written(self, key: str) -> None:
        self._call("update_item", Key=_key(key),
                   UpdateExpression="SET #state = :written REMOVE lease_until, report",
                   ExpressionAttributeNames={"#state": "state"},
                   ExpressionAttributeValues={":written": {"S": WRITTEN}})  # fmt: skip

    def failed(self, key: str, report: str) -> None:
        """Settled as failed; ``report`` (the notification) is kept until it is published."""
        self._call("update_item", Key=_key(key),
                   UpdateExpression="SET #state = :failed, report = :report REMOVE lease_until",
                   ExpressionAttributeNames={"#state": "state"},
                   ExpressionAttributeValues={":failed": {"S": FAILED},
                                              ":report": {"S": report}})  # fmt: skip

    def reported(self, key: str) -> None:
        self._call("update_item", Key=_key(key), UpdateExpression="REMOVE report")

    def refused(self, sender: str, fingerprint: str) -> bool:
        """Whether a ticket system refused (401) these credentials of the sender."""
        item = self._call("get_item", Key=_key(_refusal(sender, fingerprint)),
                          ConsistentRead=True).get("Item")  # fmt: skip
        return item is not None

    def refuse(self, sender: str, fingerprint: str, now: float) -> None:
        """Mark the sender's credentials refused, for every worker, until they change."""
        self._call("put_item", Item={
            **_key(_refusal(sender, fingerprint)),
            "refused_at": {"N": repr(now)},
            "expires_at": {"N": str(int(now) + REFUSAL_KEPT_SECONDS)},
        })  # fmt: skip


def _key(key: str) -> dict[str, dict[str, str]]:
    return {"id": {"S": key}}


def _refusal(sender: str, fingerprint: str) -> str:
    return f"refused\n{sender}\n{fingerprint}"

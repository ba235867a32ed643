"""The history table (DynamoDB): the entries the digest reads, and where the last digest ended.

Entries are kept by the UTC day they were published (``pk`` ``day#2026-12-03``, ``sk`` the
time and the entry's id), so a digest reads its 35 days as 36 queries, never a scan, and an
entry written again (a notification replayed) lands on itself. TTL removes them after 35 days.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from csbs_trigger.aws.table import Table
from csbs_trigger.history import KEPT_SECONDS, Entry

_LAST_DIGEST = {"pk": {"S": "digest"}, "sk": {"S": "last"}}


class HistoryTable(Table):
    what = "history table"

    def record(self, entry: Entry) -> None:
        moment = datetime.fromtimestamp(entry.at, UTC)
        self._call(
            "put_item",
            Item={
                "pk": {"S": _day(moment)},
                "sk": {"S": f"{moment.isoformat(timespec='milliseconds')}#{entry.id}"},
                "entry": {"S": json.dumps(entry.to_dict(), ensure_ascii=False)},
                "expires_at": {"N": str(int(entry.at) + KEPT_SECONDS)},
            },
        )

    def entries(self, since: float, until: float) -> list[Entry]:
        """Every entry published in [``since``, ``until``), oldest first."""
        first, last = datetime.fromtimestamp(since, UTC), datetime.fromtimestamp(until, UTC)
        low, high = (
            first.isoformat(timespec="milliseconds"),
            last.isoformat(timespec="milliseconds"),
        )
        found: list[Entry] = []
        day = first.replace(hour=0, minute=0, second=0, microsecond=0)
        while day <= last:
            start: dict[str, Any] | None = None
            while True:
                query: dict[str, Any] = {
                    "KeyConditionExpression": "pk = :day AND sk BETWEEN :low AND :high",
                    "ExpressionAttributeValues": {
                        ":day": {"S": _day(day)}, ":low": {"S": low}, ":high": {"S": high},
                    },
                    "ProjectionExpression": "entry",
                }  # fmt: skip
                if start is not None:
                    query["ExclusiveStartKey"] = start
                answer = self._call("query", **query)
                for item in answer["Items"]:
                    entry = Entry.from_dict(json.loads(item["entry"]["S"]))
                    if since <= entry.at < until:
                        found.append(entry)
                start = answer.get("LastEvaluatedKey")
                if start is None:
                    break
            day += timedelta(days=1)
        return found

    def last_digest(self) -> float | None:
        """Where the last digest's period ended (None: no digest yet)."""
        item = self._call("get_item", Key=_LAST_DIGEST, ConsistentRead=True).get("Item")
        return float(item["until"]["N"]) if item else None

    def digested(self, until: float) -> None:
        """A digest covered the time up to ``until`` (an older one's end never replaces it)."""
        self._write(
            "update_item",
            Key=_LAST_DIGEST,
            UpdateExpression="SET #until = :until",
            ConditionExpression="attribute_not_exists(#until) OR #until < :until",
            ExpressionAttributeNames={"#until": "until"},
            ExpressionAttributeValues={":until": {"N": str(until)}},
        )


def _day(moment: datetime) -> str:
    return f"day#{moment.date().isoformat()}"

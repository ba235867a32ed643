"""Checkpoint items ("backups"): what a checkpoint became, one item per server.

``GET /v1/{project_id}/checkpoint_items?checkpoint_id=<id>`` answers
``{"checkpoint_items": [...]}``. Real answers drift as the create answer does: numbers as
strings or floats, ``extend_info`` as a JSON string or an object, fields missing. Parsing keeps
CSBS's status words and turns every number into a number; it refuses only a page that is not a
list of items, or an item without an id (nothing could be tracked by it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from csbs_trigger.errors import UpstreamError, truncate
from csbs_trigger.models import decode_extra_info, field_text
from csbs_trigger.text import plausible_time
from csbs_trigger.values import frozen

# Statuses an item does not leave by itself; ``available`` is the only success.
SUCCEEDED = frozenset({"available"})
# CSBS ends an item in error (or deleting it); CBR also waits to delete one, or skips a
# resource it is backing up already.
FAILED = frozenset({"error", "deleting", "deleted", "waiting_delete", "skipped"})
_MAX_TEXT = 300  # names and failure reasons: enough for an operator, bounded for a message


@frozen
class CheckpointItem:
    """What one resource's backup became (a CSBS checkpoint item, a CBR backup)."""

    id: str
    checkpoint_id: str | None
    resource_id: str | None
    resource_name: str | None
    status: str | None
    progress: float | None  # 0-100
    size_mb: float | None
    finished_at: str | None  # as CSBS wrote it (UTC, mostly without an offset)
    fail_code: str | None
    fail_reason: str | None
    finished: float | None = None  # finished_at as Unix time, where it names a real moment

    @property
    def terminal(self) -> bool:
        return self.status in SUCCEEDED or self.status in FAILED

    @property
    def failed(self) -> bool:
        return self.status in FAILED

    def to_dict(self) -> dict[str, Any]:
        """As a completion notification lists it."""
        return {
            "id": self.id,
            "resource_id": self.resource_id,
            "resource_name": self.resource_name,
            "status": self.status,
            "progress": self.progress,
            "size_mb": self.size_mb,
            "finished_at": self.finished_at,
            "fail_code": self.fail_code,
            "fail_reason": self.fail_reason,
        }


def parse_items_page(document: Any) -> list[CheckpointItem]:
    """The items of one page of the list answer, or ``bad_response``."""
    items = document.get("checkpoint_items") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise UpstreamError.bad_response("CSBS answered without a checkpoint_items list")
    return [parse_item(item) for item in items]


def parse_item(item: Any) -> CheckpointItem:
    item_id = short_text(item.get("id")) if isinstance(item, dict) else None
    if item_id is None:
        raise UpstreamError.bad_response("CSBS listed a checkpoint item without an id")
    extend = decode_extra_info(item.get("extend_info"))
    extend = extend if isinstance(extend, dict) else {}
    fail_code = extend.get("fail_code")
    if isinstance(fail_code, dict):  # {"Code": ..., "Description": ...}, often {}
        fail_code = fail_code.get("Code")
    finished_at = short_text(extend.get("finished_at"))
    moment = plausible_time(finished_at)
    finished = None if moment is None else moment.timestamp()
    return CheckpointItem(
        id=item_id,
        checkpoint_id=short_text(item.get("checkpoint_id")),
        resource_id=short_text(item.get("resource_id")),
        resource_name=short_text(extend.get("resource_name")) or short_text(item.get("name")),
        status=short_text(item.get("status")),
        progress=number_within(extend.get("progress"), low=0, high=100),
        size_mb=number_within(extend.get("size"), low=0),
        finished_at=finished_at if finished is not None else None,
        fail_code=short_text(fail_code),
        fail_reason=short_text(extend.get("fail_reason")),
        finished=finished,
    )


def of_checkpoint(items: Iterable[CheckpointItem], checkpoint_id: str) -> list[CheckpointItem]:
    """The items that count for ``checkpoint_id``: not another checkpoint's, and one per resource
    (the first listed), however the server listed them."""
    kept: dict[str, CheckpointItem] = {}
    for item in items:
        if item.checkpoint_id in (None, checkpoint_id):
            kept.setdefault(item.resource_id or item.id, item)
    return list(kept.values())


def short_text(value: Any) -> str | None:
    """Short text from a field that may hold a number, an empty string or nothing."""
    text = (field_text(value) or "").strip()
    return truncate(text, _MAX_TEXT) if text else None


def number_within(value: Any, *, low: float, high: float = math.inf) -> float | None:
    """A finite number within [low, high] from an int, a float or a numeric string (a
    400-digit integer is no float: no number)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)  # a string may hold spaces around the number
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) and low <= number <= high else None

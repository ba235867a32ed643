"""Turn scheduled, EventBridge and direct events into validated backup requests.

Accepted shapes (all validated before any network call):

* a plan: a CSBS policy ``{"plan_id": ..., "resources": [...], "auto_trigger": false}`` or a
  CBR vault ``{"vault_id": ..., "resources": [...], "incremental": false, ...}`` (everything but
  the id optional; each backend names its options), optionally with ``project_id`` (another
  project than the credentials' own), ``credentials`` (a named secret's), ``schedule_arn`` and
  ``scheduled_time`` (EventBridge Scheduler context attributes);
* a batch: ``{"plans": [<plan>, ...]}`` with the same optional schedule keys;
* an EventBridge event whose ``detail`` is either of the above.

A bad plan inside a batch rejects only that plan: the others still run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from csbs_trigger.cloud.backend import Backend, BackupRequest
from csbs_trigger.cloud.backends import BACKEND_BY_TARGET_KEY, PLAN_FIELDS
from csbs_trigger.errors import InvalidEventError, TriggerError
from csbs_trigger.models import Trigger
from csbs_trigger.text import printable

# A firing holds at most this many plans; more than MAX_INLINE_PLANS go through the plan queue.
MAX_PLANS_PER_EVENT = 1000
MAX_INLINE_PLANS = 20
MAX_TRACE_ID_LENGTH = 256
# A backup's lifetime a plan may give (keep_days): a day to ten years.
MIN_KEEP_DAYS, MAX_KEEP_DAYS = 1, 3650
# CSBS ids are UUIDs; accept any short id of that alphabet so other clouds' ids still pass.
_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# What EventBridge Scheduler puts for <aws.scheduler.schedule-arn> and <...scheduled-time>.
_SCHEDULE_FORMATS = {
    "schedule_arn": (
        re.compile(
            r"arn:aws[a-z-]*:scheduler:[a-z0-9-]+:[0-9]{12}:schedule/[\w.-]{1,64}/[\w.-]{1,64}"
        ),
        "an EventBridge Scheduler schedule ARN",
    ),
    "scheduled_time": (
        re.compile(
            r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:?[0-9]{2})"
        ),
        "an ISO 8601 time such as 2026-11-27T02:00:00Z",
    ),
}

# What names the backend of a plan: "plan_id" (CSBS), "vault_id" (CBR).
_NAMING = " or ".join(BACKEND_BY_TARGET_KEY)
# Where a plan runs, for any backend; never read from a webhook's body (a signed sender must
# not pick another tenant's project).
_SCOPE_FIELDS = ("project_id", "credentials")
_SCOPE_FORMATS = {
    "project_id": (re.compile(r"[0-9a-f]{32}"), "a project id of 32 hex digits"),
    "credentials": (
        re.compile(r"[A-Za-z0-9_/-]{1,64}"),
        "a secret name of 1 to 64 letters, digits, '-', '_' or '/'",
    ),
}
_SCHEDULE_KEYS = frozenset({"schedule_arn", "scheduled_time"})
_BATCH_KEYS = frozenset({"plans"}) | _SCHEDULE_KEYS
_EVENTBRIDGE_KEYS = frozenset({"detail-type", "source", "detail"})


@dataclass(frozen=True)
class RejectedPlan:
    """A plan (or a whole event) that cannot run, with what could be read of it: the backend
    and the plan or vault it names, where they are readable."""

    error: TriggerError
    backend: Backend | None = None
    target_id: str | None = None


PlanItem = BackupRequest | RejectedPlan


@dataclass(frozen=True)
class ParsedEvent:
    """An event read: who fired it and the plans it asks for."""

    trigger: Trigger
    items: tuple[PlanItem, ...]


def parse_event(event: Any, *, request_id: str | None = None) -> ParsedEvent:
    """Read an invocation event; ``request_id`` names direct invocations that carry no id."""
    if isinstance(event, Mapping) and event.keys() >= _EVENTBRIDGE_KEYS:
        event_id = event.get("id")
        items = _parse_payload(event["detail"], where="detail")
        if not _is_trace_id(event_id):
            # The id names the event across EventBridge's retries: without it each retry would
            # start another backup.
            error = InvalidEventError(
                f"event.id must be the EventBridge event id (1 to {MAX_TRACE_ID_LENGTH} "
                f"characters of valid text), got {_kind(event_id)}"
            )
            items = tuple(
                RejectedPlan(error, item.backend, item.target_id)
                if isinstance(item, BackupRequest)
                else item
                for item in items
            )
            return ParsedEvent(Trigger(source="eventbridge", id=None), items)
        return ParsedEvent(Trigger(source="eventbridge", id=event_id), items)
    items = _parse_payload(event, where="event")
    schedule_key = _schedule_key(event) if isinstance(event, Mapping) else None
    if schedule_key:
        return ParsedEvent(Trigger(source="schedule", id=schedule_key), items)
    return ParsedEvent(Trigger(source="direct", id=request_id), items)


def parse_plan(plan: Mapping[str, Any], *, where: str) -> PlanItem:
    """One plan given as a mapping, such as a mapped webhook payload."""
    try:
        return _parse_plan(plan, where=where)
    except InvalidEventError as error:
        return _rejected(error, plan)


def _parse_payload(payload: Any, *, where: str) -> tuple[PlanItem, ...]:
    try:
        if not isinstance(payload, Mapping):
            raise InvalidEventError(f"{where} must be a JSON object, got {_kind(payload)}")
        if "plans" in payload:
            _reject_unknown_keys(payload, _BATCH_KEYS, where)
            _check_schedule_fields(payload, where)
            return _parse_batch(payload["plans"], where=f"{where}.plans")
        _check_schedule_fields(payload, where)
        return (_parse_plan(payload, where=where, also=_SCHEDULE_KEYS),)
    except InvalidEventError as error:
        return (_rejected(error, payload),)


def _parse_batch(plans: Any, *, where: str) -> tuple[PlanItem, ...]:
    if not isinstance(plans, list) or not plans:
        raise InvalidEventError(f"{where} must be a non-empty list of plans")
    if len(plans) > MAX_PLANS_PER_EVENT:
        raise InvalidEventError(
            f"{where} holds {len(plans)} plans; at most {MAX_PLANS_PER_EVENT} per event"
        )
    items: list[PlanItem] = []
    for index, plan in enumerate(plans):
        try:
            if not isinstance(plan, Mapping):
                raise InvalidEventError(f"{where}[{index}] must be an object, got {_kind(plan)}")
            items.append(_parse_plan(plan, where=f"{where}[{index}]"))
        except InvalidEventError as error:
            items.append(_rejected(error, plan))
    return tuple(items)


def _rejected(error: InvalidEventError, plan: Any) -> RejectedPlan:
    """Keep the backend and id of a rejected plan where readable, so the notification names
    them."""
    if isinstance(plan, Mapping):
        named = [key for key in BACKEND_BY_TARGET_KEY if key in plan]
        if len(named) == 1 and _is_id(plan[named[0]]):
            return RejectedPlan(error, BACKEND_BY_TARGET_KEY[named[0]], plan[named[0]])
    return RejectedPlan(error)


def _parse_plan(
    plan: Mapping[str, Any], *, where: str, also: frozenset[str] = frozenset()
) -> BackupRequest:
    """One plan: exactly one of the backends' ids, then that backend's fields, each checked."""
    named = [key for key in BACKEND_BY_TARGET_KEY if key in plan]
    if len(named) > 1:
        raise InvalidEventError(f"{where} names {' and '.join(named)}: exactly one of them")
    if not named or plan[named[0]] is None:
        known = frozenset([*BACKEND_BY_TARGET_KEY, *PLAN_FIELDS, *_SCOPE_FIELDS])
        unknown = _unknown_keys(plan, known | also)
        raise InvalidEventError(
            f"{where}.{_NAMING} is missing" + (f" (unknown keys: {unknown})" if unknown else "")
        )
    target_key = named[0]
    backend = BACKEND_BY_TARGET_KEY[target_key]
    allowed = frozenset({target_key, "resources", "keep_days", *_SCOPE_FIELDS,
                         *(o.name for o in backend.options)}) | also  # fmt: skip
    _reject_unknown_keys(plan, allowed, where)
    _check_id(plan[target_key], f"{where}.{target_key}")
    for key, (pattern, rule) in _SCOPE_FORMATS.items():
        value = plan.get(key)
        if value is not None and not (isinstance(value, str) and pattern.fullmatch(value)):
            raise InvalidEventError(f"{where}.{key} must be {rule}, got {_kind(value)}")

    resources = plan.get("resources")
    if resources is not None:
        if not isinstance(resources, list):
            raise InvalidEventError(f"{where}.resources must be a list of resource ids")
        if not resources:
            # The service would be asked to back up nothing at all: say which was meant.
            raise InvalidEventError(
                f"{where}.resources is empty: leave it out to back up every resource of the "
                f"{backend.target_word}"
            )
        if len(resources) > backend.max_resources:
            raise InvalidEventError(
                f"{where}.resources holds {len(resources)} ids; at most {backend.max_resources}"
            )
        for index, resource in enumerate(resources):
            _check_id(resource, f"{where}.resources[{index}]")
        if len(set(resources)) != len(resources):
            raise InvalidEventError(f"{where}.resources lists a resource id twice")

    keep_days = plan.get("keep_days")
    if keep_days is not None and not (
        isinstance(keep_days, int) and not isinstance(keep_days, bool)
        and MIN_KEEP_DAYS <= keep_days <= MAX_KEEP_DAYS
    ):  # fmt: skip
        raise InvalidEventError(
            f"{where}.keep_days must be a whole number of days from {MIN_KEEP_DAYS} to "
            f"{MAX_KEEP_DAYS}, got "
            + (str(keep_days) if type(keep_days) is int else _kind(keep_days))
        )

    options = []
    for option in backend.options:
        value = plan.get(option.name)
        if value is None:
            continue
        if not option.valid(value):
            raise InvalidEventError(f"{where}.{option.name} must be {option.rule}")
        options.append((option.name, value))

    return BackupRequest(
        backend=backend,
        target_id=plan[target_key],
        resources=None if resources is None else tuple(resources),
        options=tuple(options),
        project_id=plan.get("project_id"),
        credentials=plan.get("credentials"),
        keep_days=keep_days,
    )


def _schedule_key(payload: Mapping[str, Any]) -> str | None:
    """The schedule and its scheduled time: what names one firing across Scheduler's retries.
    Only well-formed values name one (a malformed pair has rejected the plans already)."""
    arn, scheduled_time = payload.get("schedule_arn"), payload.get("scheduled_time")
    if _is_schedule_value("schedule_arn", arn) and _is_schedule_value(
        "scheduled_time", scheduled_time
    ):
        return f"{arn}#{scheduled_time}"
    return None


def _is_schedule_value(key: str, value: Any) -> bool:
    pattern, _ = _SCHEDULE_FORMATS[key]
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def _check_schedule_fields(payload: Mapping[str, Any], where: str) -> None:
    """Both or neither, and real values: a lone ARN, or a placeholder copied from the template
    into a manual test, would make every firing look like the first and be skipped."""
    present = _SCHEDULE_KEYS & payload.keys()
    if present and present != _SCHEDULE_KEYS:
        raise InvalidEventError(
            f"{where} needs schedule_arn and scheduled_time together (they name one firing)"
        )
    for key in sorted(present):
        if not _is_schedule_value(key, payload[key]):
            raise InvalidEventError(f"{where}.{key} must be {_SCHEDULE_FORMATS[key][1]}")


def _reject_unknown_keys(payload: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = _unknown_keys(payload, allowed)
    if unknown:
        raise InvalidEventError(
            f"{where} has unknown keys {unknown}; allowed: {', '.join(sorted(allowed))}"
        )


def _unknown_keys(payload: Mapping[str, Any], allowed: frozenset[str]) -> str:
    unknown = sorted(str(key) for key in payload.keys() - allowed)
    return ", ".join(repr(key[:40]) for key in unknown[:5])


def _check_id(value: Any, where: str) -> None:
    if not _is_id(value):
        raise InvalidEventError(
            f"{where} must be an id of 1 to 64 letters, digits, '-' or '_', got {_kind(value)}"
        )


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and _ID_PATTERN.fullmatch(value) is not None


def _kind(value: Any) -> str:
    """Describe a bad value without echoing it: events may carry anything."""
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    return "null" if value is None else type(value).__name__


def _is_trace_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_TRACE_ID_LENGTH and printable(value)

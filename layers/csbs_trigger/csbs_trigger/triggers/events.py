"""Turn scheduled, EventBridge and direct events into validated backup requests.

Accepted shapes (all validated before any network call):

* a plan: a CSBS policy ``{"plan_id": ..., "resources": [...], "auto_trigger": false}`` or a
  CBR vault ``{"vault_id": ..., "resources": [...], "incremental": false, ...}`` (everything but
  the id optional; each backend names its options), optionally with ``project_id`` (another
  project than the credentials' own), ``credentials`` (a named secret's), ``schedule_arn`` and
  ``scheduled_time`` (EventBridge Scheduler context attributes);
* what to back up, resolved at run time to what protects it (``resolution.py``): a CBR policy
  ``{"policy_id": ...}`` (all its vaults' resources, or the given ``resources`` among them), or
  servers ``{"resources": [...]}`` or ``{"resource_names": [...]}`` with ``backend`` (``csbs``
  or ``cbr``; without it the stack's ``DEFAULT_BACKEND``), and the same optional keys;
* a batch: ``{"plans": [<plan>, ...]}`` with the same optional schedule keys;
* an EventBridge event whose ``detail`` is either of the above.

A bad plan inside a batch rejects only that plan: the others still run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from csbs_trigger.cloud.backend import Backend, BackupRequest, Option
from csbs_trigger.cloud.backends import (
    BACKEND_BY_POLICY_KEY,
    BACKEND_BY_TARGET_KEY,
    BACKENDS,
    OPTIONS,
    PLAN_FIELDS,
)
from csbs_trigger.errors import InvalidEventError
from csbs_trigger.models import Trigger
from csbs_trigger.plans import MAX_RESOLVED_SERVERS, PlanItem, RejectedPlan, Resolution, is_id
from csbs_trigger.text import printable
from csbs_trigger.values import frozen

# A firing holds at most this many plans; more than MAX_INLINE_PLANS go through the plan queue.
MAX_PLANS_PER_EVENT = 1000
MAX_INLINE_PLANS = 20
MAX_TRACE_ID_LENGTH = 256
# A backup's lifetime a plan may give (keep_days): a day to ten years.
MIN_KEEP_DAYS, MAX_KEEP_DAYS = 1, 3650
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

# What names the backend of a plan: "plan_id" (CSBS), "vault_id" (CBR), and what names what
# to back up for a resolution: "policy_id" (CBR), servers by id or by name.
_NAMING = " or ".join(BACKEND_BY_TARGET_KEY)
_SERVER_KEYS = ("resources", "resource_names")
_ASKING = (*BACKEND_BY_POLICY_KEY, *_SERVER_KEYS)
_RESOLUTION_KEYS = frozenset(
    {*_ASKING, "backend", "keep_days", "project_id", "credentials", *(o.name for o in OPTIONS)}
)
# A server's name as ECS takes it (1 to 64 characters); printable, so that it is safe to show.
_MAX_NAME_LENGTH = 64
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


@frozen
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
        if len(named) == 1 and is_id(plan[named[0]]):
            return RejectedPlan(error, BACKEND_BY_TARGET_KEY[named[0]], plan[named[0]])
    return RejectedPlan(error)


def _parse_plan(
    plan: Mapping[str, Any], *, where: str, also: frozenset[str] = frozenset()
) -> BackupRequest | Resolution:
    """One plan: exactly one of the backends' ids, then that backend's fields, each checked; or
    what a resolution finds the plans or vaults by (a policy, servers)."""
    named = [key for key in (*BACKEND_BY_TARGET_KEY, *BACKEND_BY_POLICY_KEY) if key in plan]
    if len(named) > 1:
        raise InvalidEventError(f"{where} names {' and '.join(named)}: exactly one of them")
    by_policy = bool(named) and named[0] in BACKEND_BY_POLICY_KEY
    # Servers alone are a resolution; with keys no plan knows, more likely a misspelt plan id.
    # A null list names no server: such a plan is missing what it backs up, never a resolution
    # of nothing (which would end without a backup or a word).
    by_servers = not named and any(plan.get(key) is not None for key in _SERVER_KEYS)
    if by_policy or (by_servers and not _unknown_keys(plan, _RESOLUTION_KEYS | also)):
        return _parse_resolution(plan, where=where, also=also)
    if not named or plan[named[0]] is None:
        known = frozenset([*BACKEND_BY_TARGET_KEY, *PLAN_FIELDS, *_SCOPE_FIELDS, *_ASKING,
                           "backend"])  # fmt: skip
        unknown = _unknown_keys(plan, known | also)
        raise InvalidEventError(
            f"{where}.{_NAMING} is missing" + (f" (unknown keys: {unknown})" if unknown else "")
        )
    target_key = named[0]
    backend = BACKEND_BY_TARGET_KEY[target_key]
    allowed = frozenset({target_key, "resources", "keep_days", "backend", *_SCOPE_FIELDS,
                         *(o.name for o in backend.options)}) | also  # fmt: skip
    _reject_unknown_keys(plan, allowed, where)
    if plan.get("backend") not in (None, backend.name):
        raise InvalidEventError(
            f"{where}.backend must be {backend.name} (the backend of {target_key}) or left out"
        )
    _check_id(plan[target_key], f"{where}.{target_key}")
    scope = _scope(plan, where)
    resources = _ids(plan, "resources", backend.max_resources, where, backend.target_word)
    keep_days = _keep_days(plan, where)
    return BackupRequest(
        backend=backend,
        target_id=plan[target_key],
        resources=resources,
        options=_options(plan, backend.options, where),
        project_id=scope.get("project_id"),
        credentials=scope.get("credentials"),
        keep_days=keep_days,
    )


def _parse_resolution(plan: Mapping[str, Any], *, where: str, also: frozenset[str]) -> Resolution:
    """A policy (``policy_id``: its backend's) or servers (``resources``, ``resource_names``,
    one of them) and the backend to look them up in (None: the stack's default)."""
    backend = _backend(plan, where)
    policy_key = next((key for key in BACKEND_BY_POLICY_KEY if key in plan), None)
    if policy_key is not None:
        if backend not in (None, BACKEND_BY_POLICY_KEY[policy_key]):
            raise InvalidEventError(f"{where}.{policy_key} is a CBR policy: backend must be cbr")
        backend = BACKEND_BY_POLICY_KEY[policy_key]
        _check_id(plan[policy_key], f"{where}.{policy_key}")
    if "resources" in plan and "resource_names" in plan:
        raise InvalidEventError(f"{where} names resources and resource_names: one of them")
    if policy_key is not None and "resource_names" in plan:
        raise InvalidEventError(f"{where}.resource_names goes without {policy_key}: name servers "
                                "by id (resources) to back up some of a policy's")  # fmt: skip
    options = OPTIONS if backend is None else backend.options
    allowed = frozenset({*_ASKING, "backend", "keep_days", *_SCOPE_FIELDS,
                         *(o.name for o in options)}) | also  # fmt: skip
    _reject_unknown_keys(plan, allowed, where)
    scope = _scope(plan, where)
    resources = _ids(plan, "resources", MAX_RESOLVED_SERVERS, where, "policy")
    names = _names(plan, where)
    keep_days = _keep_days(plan, where)
    return Resolution(
        backend=backend,
        policy_id=plan[policy_key] if policy_key else None,
        resources=resources,
        resource_names=names,
        options=_options(plan, options, where),
        project_id=scope.get("project_id"),
        credentials=scope.get("credentials"),
        keep_days=keep_days,
    )


def _backend(plan: Mapping[str, Any], where: str) -> Backend | None:
    name = plan.get("backend")
    if name is None:
        return None
    if not isinstance(name, str) or name not in BACKENDS:
        raise InvalidEventError(
            f"{where}.backend must be one of {', '.join(BACKENDS)}, got {_kind(name)}"
        )
    return BACKENDS[name]


def _scope(plan: Mapping[str, Any], where: str) -> dict[str, str]:
    """``project_id`` and ``credentials``, where the plan gives them, each checked."""
    scope = {}
    for key, (pattern, rule) in _SCOPE_FORMATS.items():
        value = plan.get(key)
        if value is not None and not (isinstance(value, str) and pattern.fullmatch(value)):
            raise InvalidEventError(f"{where}.{key} must be {rule}, got {_kind(value)}")
        if value is not None:
            scope[key] = value
    return scope


def _ids(
    plan: Mapping[str, Any], key: str, most: int, where: str, whole: str
) -> tuple[str, ...] | None:
    """A list of distinct ids (``key``: ``resources``), at most ``most``; None where left out
    (``whole``: what leaving it out backs up entirely)."""
    resources = plan.get(key)
    if resources is None:
        return None
    if not isinstance(resources, list):
        raise InvalidEventError(f"{where}.{key} must be a list of resource ids")
    if not resources:
        # The service would be asked to back up nothing at all: say which was meant.
        raise InvalidEventError(
            f"{where}.{key} is empty: leave it out to back up every resource of the {whole}"
        )
    if len(resources) > most:
        raise InvalidEventError(f"{where}.{key} holds {len(resources)} ids; at most {most}")
    for index, resource in enumerate(resources):
        _check_id(resource, f"{where}.{key}[{index}]")
    if len(set(resources)) != len(resources):
        raise InvalidEventError(f"{where}.{key} lists a resource id twice")
    return tuple(resources)


def _names(plan: Mapping[str, Any], where: str) -> tuple[str, ...] | None:
    """``resource_names``: distinct server names, at most ``MAX_RESOLVED_SERVERS``."""
    names = plan.get("resource_names")
    if names is None:
        return None
    if not isinstance(names, list) or not names:
        raise InvalidEventError(f"{where}.resource_names must be a non-empty list of names")
    if len(names) > MAX_RESOLVED_SERVERS:
        raise InvalidEventError(
            f"{where}.resource_names holds {len(names)} names; at most {MAX_RESOLVED_SERVERS}"
        )
    for index, name in enumerate(names):
        if not (isinstance(name, str) and 0 < len(name) <= _MAX_NAME_LENGTH and printable(name)
                and name.strip() == name):  # fmt: skip
            raise InvalidEventError(
                f"{where}.resource_names[{index}] must be a server name of 1 to "
                f"{_MAX_NAME_LENGTH} printable characters, got {_kind(name)}"
            )
    if len(set(names)) != len(names):
        raise InvalidEventError(f"{where}.resource_names lists a name twice")
    return tuple(names)


def _keep_days(plan: Mapping[str, Any], where: str) -> int | None:
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
    return keep_days


def _options(
    plan: Mapping[str, Any], options: tuple[Option, ...], where: str
) -> tuple[tuple[str, Any], ...]:
    """The backend's options the plan gives, each checked, in the backend's order."""
    given = []
    for option in options:
        value = plan.get(option.name)
        if value is None:
            continue
        if not option.valid(value):
            raise InvalidEventError(f"{where}.{option.name} must be {option.rule}")
        given.append((option.name, value))
    return tuple(given)


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
    if not is_id(value):
        raise InvalidEventError(
            f"{where} must be an id of 1 to 64 letters, digits, '-' or '_', got {_kind(value)}"
        )


def _kind(value: Any) -> str:
    """Describe a bad value without echoing it: events may carry anything."""
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    return "null" if value is None else type(value).__name__


def _is_trace_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_TRACE_ID_LENGTH and printable(value)

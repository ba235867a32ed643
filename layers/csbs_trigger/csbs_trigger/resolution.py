"""Triggers that name what to back up, not what protects it: a CBR policy, servers by id or by
name. Each is resolved to the plans and vaults that protect it, once per trigger.

names → server ids (ECS, exact names only) → where each server is protected (the backend's
list: CBR vaults, CSBS policies; one request a page) → one backup a plan or vault, of exactly
the servers asked. A server nothing protects is told ``not_protected`` on its own; the others
still run. What a trigger resolved to is kept under its key (step ``resolve``): a retry or a
redelivery starts the same backups, never looks again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from csbs_trigger.aws.idempotency import AlreadyInProgressError, PayloadConflictError
from csbs_trigger.cloud.backend import Backend, BackupRequest, BackupService
from csbs_trigger.cloud.backends import BACKENDS
from csbs_trigger.deadline import Deadline
from csbs_trigger.errors import Category, InvalidEventError, TriggerError, UpstreamError
from csbs_trigger.log import logger
from csbs_trigger.plans import RejectedPlan, Resolution, Runnable, is_id
from csbs_trigger.runner import Unit, bounded_map, request_digest
from csbs_trigger.runtime import Runtime
from csbs_trigger.values import frozen


class NotProtected(TriggerError):
    """A server no plan or vault lists, or a policy applied to no vault: nothing to start."""

    category = Category.NOT_PROTECTED


@frozen
class Resolved:
    """The backups a resolution found (one a plan or vault) and what it could not resolve."""

    backups: tuple[BackupRequest, ...]
    unresolved: tuple[RejectedPlan, ...] = ()

    def to_record(self, item: Resolution) -> dict[str, Any]:
        """As the idempotency table keeps it (JSON): what the item asked is not repeated for
        every backup (a hundred names a hundred times would outgrow a DynamoDB item)."""
        asked = item.asked()

        def extra(resolved_from: Mapping[str, Any] | None) -> dict[str, Any]:
            return {k: v for k, v in (resolved_from or {}).items() if k not in asked}

        return {
            "backups": [{"backend": b.backend.name, "target_id": b.target_id,
                         "resources": None if b.resources is None else list(b.resources),
                         "resolved_from": extra(b.resolved_from)} for b in self.backups],
            "unresolved": [{"error": r.error.to_dict(), "backend": r.backend and r.backend.name,
                            "resolved_from": extra(r.resolved_from)} for r in self.unresolved],
        }  # fmt: skip

    @classmethod
    def from_record(cls, record: Mapping[str, Any], item: Resolution) -> Resolved:
        asked = item.asked()
        backups = tuple(
            item.request(BACKENDS[entry["backend"]], entry["target_id"],
                         None if entry["resources"] is None else tuple(entry["resources"]),
                         asked | entry["resolved_from"])
            for entry in record["backups"]
        )  # fmt: skip
        unresolved = tuple(
            RejectedPlan(_error(entry["error"]), BACKENDS.get(entry["backend"] or ""), None,
                         asked | entry["resolved_from"])
            for entry in record["unresolved"]
        )  # fmt: skip
        return cls(backups, unresolved)


def resolve_units(
    units: list[Unit], context: Any, runtime: Runtime, *, final: bool = False
) -> list[Unit]:
    """``units`` with each resolution replaced by the units of what it resolved to (every
    other unit as it was). A lookup that may succeed later is kept nowhere (unless ``final``):
    its failure is told, and a retry resolves afresh."""

    def expand(unit: Unit) -> list[Unit]:
        if not isinstance(unit.item, Resolution):
            return [unit]
        try:
            return expand_unit(unit, context, runtime, final=final)
        except Deferred as deferred:  # told, not kept: a retry resolves afresh
            return [Unit(_failure(unit.item, deferred.error))]

    expanded = bounded_map(expand, units, runtime.settings.max_concurrency)
    return [unit for units_of_one in expanded for unit in units_of_one]


def backups_in(units: list[Unit]) -> int:
    """How many backups the units would start (what decides whether they are queued)."""
    return sum(not isinstance(unit.item, RejectedPlan) for unit in units)


def expand_unit(unit: Unit, context: Any, runtime: Runtime, *, final: bool = False) -> list[Unit]:
    """The units of what one resolution unit resolved to, from its record where a run before
    kept one. ``Deferred`` where a lookup failed in a way a later try may mend."""
    item = unit.item
    assert isinstance(item, Resolution)
    deduplicator = runtime.deduplicator if unit.key else None
    done: list[Resolved] = []

    def run() -> dict[str, Any]:
        resolved = resolve(item, context, runtime, final=final)
        done.append(resolved)
        return resolved.to_record(item)

    try:
        if deduplicator is None or unit.key is None:
            resolved = resolve(item, context, runtime, final=final)
        else:
            resolved = Resolved.from_record(
                deduplicator.once(unit.key, "resolve", run, context, payload=unit.payload), item
            )
    except (AlreadyInProgressError, PayloadConflictError):
        raise
    except TriggerError as error:
        if not done:
            raise  # the idempotency table failed: nothing ran, the invocation is retried
        logger.error("resolution not recorded: its backups run without its record",
                     extra={"idempotency_key": unit.key, "reason": error.message})  # fmt: skip
        resolved = done[0]
    return _units(unit, resolved)


class Deferred(Exception):
    """A resolution that failed in a way a later try may mend: keep no record of it."""

    def __init__(self, error: TriggerError) -> None:
        super().__init__(error.message)
        self.error = error


def resolve(item: Resolution, context: Any, runtime: Runtime, *, final: bool = False) -> Resolved:
    """Look up what protects what ``item`` names. A failure that ends it for good is its one
    unresolved entry; one a later try may mend raises ``Deferred``."""
    settings = runtime.settings
    deadline = Deadline.from_context(
        context, settings.connect_timeout_seconds, settings.read_timeout_seconds
    )
    try:
        resolved = _resolve(item, _backend(item, runtime), deadline, runtime)
    except TriggerError as error:
        if error.retryable and not final:
            raise Deferred(error) from None
        return Resolved((), (_failure(item, error),))
    logger.info("plan resolved", extra={
        "resolved_from": item.asked(), "backups": [b.target_id for b in resolved.backups],
        "unresolved": len(resolved.unresolved)})  # fmt: skip
    return resolved


def _backend(item: Resolution, runtime: Runtime) -> Backend:
    """The plan's backend, else the stack's; options the backend does not take are refused."""
    default = runtime.settings.default_backend
    backend = item.backend or (BACKENDS[default] if default else None)
    if backend is None:
        raise InvalidEventError(
            "a plan naming servers needs a backend (csbs or cbr) to find them in: set its "
            "backend, or the stack's DefaultBackend"
        )
    known = {option.name for option in backend.options}
    foreign = [name for name, _ in item.options if name not in known]
    if foreign:
        raise InvalidEventError(f"{backend.name} takes no {', '.join(foreign)}")
    return backend


def _resolve(item: Resolution, backend: Backend, deadline: Deadline, runtime: Runtime) -> Resolved:
    service = runtime.service(backend.name, item.credentials)
    asked = item.asked()
    if item.policy_id is not None:
        return _policy(item, backend, service, deadline, asked)
    unresolved: list[RejectedPlan] = []
    names: dict[str, str] = {}  # server id → the name it was asked by
    if item.resource_names is not None:
        directory = runtime.servers(item.credentials)
        for name in item.resource_names:
            found = directory.named(name, item.project_id, deadline)
            _check_ids(found, "ECS listed a server")
            if len(found) == 1:
                names[found[0]] = name
                continue
            error: TriggerError = (
                TriggerError(f"no server is named {name}", category=Category.NOT_FOUND)
                if not found
                else InvalidEventError(f"{len(found)} servers are named {name}: name one by id")
            )
            unresolved.append(RejectedPlan(error, backend, None, asked | {"name": name}))
        servers = list(names)
    else:
        servers = list(item.resources or ())
    protection = service.protection(servers, item.project_id, deadline) if servers else {}
    groups: dict[str, list[str]] = {}
    others: dict[str, list[str]] = {}
    for server in servers:
        listed = protection.get(server) or []
        _check_ids(listed, f"{backend.label} listed a target")
        if not listed:
            named = f"server {names[server]} ({server})" if server in names else f"server {server}"
            error = NotProtected(f"no {backend.target_word} of {backend.label} protects {named}")
            unresolved.append(RejectedPlan(error, backend, None, asked | {"server": server}))
            continue
        groups.setdefault(listed[0], []).append(server)
        if len(listed) > 1:
            others[server] = listed[1:]
    backups = []
    for target_id, members in groups.items():
        resolved_from = dict(asked)
        if names:
            resolved_from["servers"] = {names[server]: server for server in members}
        other = {server: others[server] for server in members if server in others}
        if other:
            resolved_from[f"other_{backend.target_key}s"] = other
        backups.append(item.request(backend, target_id, tuple(members), resolved_from))
    return Resolved(tuple(backups), tuple(unresolved))


def _policy(
    item: Resolution, backend: Backend, service: BackupService, deadline: Deadline,
    asked: dict[str, Any],
) -> Resolved:  # fmt: skip
    """A policy's vaults, each backed up whole, or of the given servers those in it."""
    assert item.policy_id is not None
    vaults = service.policy_targets(item.policy_id, item.project_id, deadline)
    _check_ids(vaults, "CBR listed a vault")
    if not vaults:
        error = NotProtected(f"CBR policy {item.policy_id} is applied to no vault")
        return Resolved((), (RejectedPlan(error, backend, None, asked),))
    if item.resources is None:
        return Resolved(tuple(item.request(backend, vault, None, asked) for vault in vaults))
    protection = service.protection(item.resources, item.project_id, deadline)
    groups: dict[str, list[str]] = {}
    unresolved = []
    for server in item.resources:
        vault = next((v for v in protection.get(server) or [] if v in vaults), None)
        if vault is None:
            error = NotProtected(
                f"no vault of CBR policy {item.policy_id} protects server {server}"
            )
            unresolved.append(RejectedPlan(error, backend, None, asked | {"server": server}))
            continue
        groups.setdefault(vault, []).append(server)
    backups = tuple(item.request(backend, vault, tuple(members), asked)
                    for vault, members in groups.items())  # fmt: skip
    return Resolved(backups, tuple(unresolved))


def _units(unit: Unit, resolved: Resolved) -> list[Unit]:
    """One unit a backup (keyed under the trigger's key: a retry finds the same keys) and one
    a server or name that did not resolve."""
    items: list[Runnable] = [*resolved.backups, *resolved.unresolved]
    units = []
    for index, item in enumerate(items):
        if unit.key is None:
            units.append(Unit(item))
            continue
        if isinstance(item, BackupRequest):
            key = f"{unit.key}:{item.target_id}:{request_digest(item)}"
        else:
            key = f"{unit.key}:unresolved-{index}"
        units.append(Unit(item, key, f"{key}#0", unit.payload))
    return units


def _failure(item: Resolution, error: TriggerError) -> RejectedPlan:
    return RejectedPlan(error, item.backend, None, item.asked())


def _check_ids(ids: list[str], what: str) -> None:
    """Ids from a service become a request's: each must be one."""
    for value in ids:
        if not is_id(value):
            raise UpstreamError.bad_response(f"{what} whose id is no id", http_status=200)


def _error(entry: Mapping[str, Any]) -> TriggerError:
    error = TriggerError(entry["message"], category=Category(entry["category"]),
                         http_status=entry["http_status"], code=entry["code"],
                         request_id=entry["request_id"])  # fmt: skip
    error.retry_after_seconds = entry["retry_after_seconds"]
    return error

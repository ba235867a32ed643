"""Issue 28, step by step: the resolution core (``resolution.py``) with backends that answer from
memory, so that each rule is shown on its own, in milliseconds (the wire and the tables are
``test_resolution.py``'s)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from csbs_trigger.aws.idempotency import AlreadyInProgressError
from csbs_trigger.cloud.backend import BackupRequest
from csbs_trigger.cloud.backends import BACKENDS
from csbs_trigger.deadline import Deadline
from csbs_trigger.errors import Category, TriggerError, UpstreamError
from csbs_trigger.plans import RejectedPlan, Resolution
from csbs_trigger.resolution import (
    Deferred,
    Resolved,
    backups_in,
    expand_unit,
    resolve,
    resolve_units,
)
from csbs_trigger.runner import Unit, request_digest
from csbs_trigger.settings import Settings
from support.lambda_context import FakeLambdaContext

CBR, CSBS = BACKENDS["cbr"], BACKENDS["csbs"]
S1, S2, S3, S4 = "srv-1", "srv-2", "srv-3", "srv-4"


@dataclass
class Service:
    """A backend's lookups answered from memory; each call recorded."""

    protected: dict[str, list[str]] = field(default_factory=dict)
    policies: dict[str, list[str]] = field(default_factory=dict)
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    fail: TriggerError | None = None

    def protection(
        self, servers: Sequence[str], project_id: str | None, deadline: Deadline
    ) -> dict[str, list[str]]:
        self.calls.append(("protection", tuple(servers), project_id))
        if self.fail is not None:
            raise self.fail
        return {server: self.protected[server] for server in servers if server in self.protected}

    def policy_targets(
        self, policy_id: str, project_id: str | None, deadline: Deadline
    ) -> list[str]:
        self.calls.append(("policy", policy_id, project_id))
        return list(self.policies[policy_id])


@dataclass
class Directory:
    servers: dict[str, list[str]] = field(default_factory=dict)  # name: ids
    calls: list[tuple[str, str | None]] = field(default_factory=list)

    def named(self, name: str, project_id: str | None, deadline: Deadline) -> list[str]:
        self.calls.append((name, project_id))
        return list(self.servers.get(name, []))


class Table:
    """Each (key, step) runs once; a repeat answers what the first stored (as JSON, like the
    table); a failing step stores nothing."""

    def __init__(self) -> None:
        self.records: dict[str, Any] = {}
        self.fail_after: TriggerError | None = None  # the write of the result fails

    def once(self, key: str, step: str, run: Callable[[], dict[str, Any]], context: Any, *,
             payload: str) -> dict[str, Any]:  # fmt: skip
        name = f"{key}#{step}"
        if name not in self.records:
            result = run()
            if self.fail_after is not None:
                raise self.fail_after
            self.records[name] = json.dumps(result)
        return json.loads(self.records[name])  # type: ignore[no-any-return]


class Runtime:
    def __init__(self, *, default_backend: str | None = None, table: Table | None = None) -> None:
        self.settings = Settings.from_env(
            {"NOTIFICATION_TOPIC_ARN": "arn:aws:sns:eu-central-1:123456789012:t",
             "DEFAULT_BACKEND": default_backend or ""}
        )  # fmt: skip
        self.cloud = {"cbr": Service(), "csbs": Service()}
        self.directory = Directory()
        self.deduplicator = table
        self.credentials_asked: list[tuple[str, str | None]] = []

    def service(self, backend: str, credentials: str | None = None) -> Service:
        self.credentials_asked.append((backend, credentials))
        return self.cloud[backend]

    def servers(self, credentials: str | None = None) -> Directory:
        self.credentials_asked.append(("ecs", credentials))
        return self.directory


def at(*ids: str) -> list[str]:
    return list(ids)


def run(item: Resolution, runtime: Runtime, *, final: bool = False) -> Resolved:
    return resolve(item, FakeLambdaContext(), runtime, final=final)  # type: ignore[arg-type]


def view(found: Resolved | list[Unit]) -> list[Any]:
    """What a resolution (or its units) holds, errors by their fields (exceptions compare by
    identity)."""
    items = (
        [*found.backups, *found.unresolved]
        if isinstance(found, Resolved)
        else [(u.key, u.notice_key, u.payload, u.item) for u in found]
    )
    return [
        tuple(view_item(part) for part in item) if isinstance(item, tuple) else view_item(item)
        for item in items
    ]


def view_item(item: Any) -> Any:
    if isinstance(item, RejectedPlan):
        return (item.error.to_dict(), item.backend, item.target_id, item.resolved_from)
    return item


def backups(resolved: Resolved) -> dict[str, tuple[str, ...] | None]:
    return {b.target_id: b.resources for b in resolved.backups}


# -- servers by id -----------------------------------------------------------------------------
def test_servers_are_grouped_by_the_first_target_listing_them_in_the_order_asked() -> None:
    runtime = Runtime()
    runtime.cloud["cbr"].protected = {S1: at("v-b"), S2: at("v-a"), S3: at("v-b")}

    resolved = run(Resolution(CBR, resources=(S1, S2, S3), project_id="p" * 32), runtime)

    assert [(b.target_id, b.resources) for b in resolved.backups] == [
        ("v-b", (S1, S3)), ("v-a", (S2,))
    ]  # fmt: skip
    assert all(b.backend is CBR and b.project_id == "p" * 32 for b in resolved.backups)
    assert [b.resolved_from for b in resolved.backups] == [{"resources": [S1, S2, S3]}] * 2
    assert runtime.cloud["cbr"].calls == [("protection", (S1, S2, S3), "p" * 32)]
    assert resolved.unresolved == ()


def test_a_server_in_several_targets_goes_with_the_first_and_names_the_others() -> None:
    runtime = Runtime()
    runtime.cloud["csbs"].protected = {S1: at("p-1", "p-2", "p-3"), S2: at("p-2")}

    resolved = run(Resolution(CSBS, resources=(S1, S2)), runtime)

    assert backups(resolved) == {"p-1": (S1,), "p-2": (S2,)}
    first, second = resolved.backups
    assert first.resolved_from == {"resources": [S1, S2], "other_plan_ids": {S1: ["p-2", "p-3"]}}
    assert second.resolved_from == {"resources": [S1, S2]}


def test_each_unprotected_server_is_its_own_failure_and_the_others_still_resolve() -> None:
    runtime = Runtime()
    runtime.cloud["cbr"].protected = {S2: at("v-a")}

    resolved = run(Resolution(CBR, resources=(S1, S2, S3)), runtime)

    assert backups(resolved) == {"v-a": (S2,)}
    assert [(r.error.category, r.error.message, r.resolved_from, r.backend, r.target_id)
            for r in resolved.unresolved] == [
        (Category.NOT_PROTECTED, f"no vault of CBR protects server {S1}",
         {"resources": [S1, S2, S3], "server": S1}, CBR, None),
        (Category.NOT_PROTECTED, f"no vault of CBR protects server {S3}",
         {"resources": [S1, S2, S3], "server": S3}, CBR, None),
    ]  # fmt: skip
    assert not resolved.unresolved[0].error.retryable


def test_a_target_id_that_is_no_id_is_a_bad_response() -> None:
    runtime = Runtime()
    runtime.cloud["cbr"].protected = {S1: ["../other"]}

    resolved = run(Resolution(CBR, resources=(S1,)), runtime)

    [failed] = resolved.unresolved
    assert failed.error.category is Category.BAD_RESPONSE
    assert failed.error.message == "CBR listed a target whose id is no id"
    assert resolved.backups == ()


# -- servers by name ---------------------------------------------------------------------------
def test_names_resolve_to_their_one_server_and_the_backup_says_which() -> None:
    runtime = Runtime()
    runtime.directory.servers = {"web": [S1], "db": [S2], "cache": [S3]}
    runtime.cloud["cbr"].protected = {S1: at("v-a"), S2: at("v-a"), S3: at("v-b")}

    resolved = run(Resolution(CBR, resource_names=("web", "db", "cache"), project_id="q" * 32,
                              credentials="team-b"), runtime)  # fmt: skip

    asked = ["web", "db", "cache"]
    assert [(b.target_id, b.resources, b.resolved_from) for b in resolved.backups] == [
        ("v-a", (S1, S2), {"resource_names": asked, "servers": {"web": S1, "db": S2}}),
        ("v-b", (S3,), {"resource_names": asked, "servers": {"cache": S3}}),
    ]  # fmt: skip
    assert runtime.directory.calls == [("web", "q" * 32), ("db", "q" * 32), ("cache", "q" * 32)]
    assert ("ecs", "team-b") in runtime.credentials_asked
    assert ("cbr", "team-b") in runtime.credentials_asked
    assert all(b.credentials == "team-b" for b in resolved.backups)


def test_a_name_with_no_server_or_two_fails_alone() -> None:
    runtime = Runtime()
    runtime.directory.servers = {"twin": [S1, S2], "db": [S3]}
    runtime.cloud["csbs"].protected = {S3: at("p-1")}

    resolved = run(Resolution(CSBS, resource_names=("none", "twin", "db")), runtime)

    assert backups(resolved) == {"p-1": (S3,)}
    assert [(r.error.category, r.error.message, r.resolved_from["name"])
            for r in resolved.unresolved] == [
        (Category.NOT_FOUND, "no server is named none", "none"),
        (Category.INVALID_EVENT, "2 servers are named twin: name one by id", "twin"),
    ]  # fmt: skip
    assert runtime.cloud["csbs"].calls == [("protection", (S3,), None)]  # only what resolved


def test_a_named_server_nothing_protects_is_named_by_name_and_id() -> None:
    runtime = Runtime()
    runtime.directory.servers = {"lonely": [S4]}

    [failed] = run(Resolution(CBR, resource_names=("lonely",)), runtime).unresolved

    assert failed.error.message == f"no vault of CBR protects server lonely ({S4})"
    assert failed.resolved_from == {"resource_names": ["lonely"], "server": S4}


def test_no_name_resolving_asks_no_backend() -> None:
    runtime = Runtime()

    resolved = run(Resolution(CBR, resource_names=("none",)), runtime)

    assert runtime.cloud["cbr"].calls == []
    assert len(resolved.unresolved) == 1


def test_a_server_id_from_ecs_that_is_no_id_is_a_bad_response() -> None:
    runtime = Runtime()
    runtime.directory.servers = {"web": ["a b"]}

    [failed] = run(Resolution(CBR, resource_names=("web",)), runtime).unresolved

    assert failed.error.category is Category.BAD_RESPONSE
    assert failed.error.message == "ECS listed a server whose id is no id"


# -- a policy ----------------------------------------------------------------------------------
def test_a_policy_backs_up_each_vault_whole() -> None:
    runtime = Runtime()
    runtime.cloud["cbr"].policies = {"pol": ["v-a", "v-b"]}

    resolved = run(Resolution(CBR, policy_id="pol", keep_days=3), runtime)

    assert backups(resolved) == {"v-a": None, "v-b": None}
    assert {b.keep_days for b in resolved.backups} == {3}
    assert [b.resolved_from for b in resolved.backups] == [{"policy_id": "pol"}] * 2
    assert runtime.cloud["cbr"].calls == [("policy", "pol", None)]


def test_a_policy_with_servers_backs_up_those_in_its_vaults_only() -> None:
    runtime = Runtime()
    runtime.cloud["cbr"].policies = {"pol": ["v-a", "v-b"]}
    runtime.cloud["cbr"].protected = {S1: at("v-b"), S2: at("v-c"), S3: at("v-b")}

    resolved = run(Resolution(CBR, policy_id="pol", resources=(S1, S2, S3)), runtime)

    asked = {"policy_id": "pol", "resources": [S1, S2, S3]}
    assert [(b.target_id, b.resources, b.resolved_from) for b in resolved.backups] == [
        ("v-b", (S1, S3), asked)
    ]
    [failed] = resolved.unresolved
    assert failed.error.message == f"no vault of CBR policy pol protects server {S2}"
    assert failed.resolved_from == {**asked, "server": S2}


def test_a_policy_applied_to_no_vault_is_not_protected() -> None:
    runtime = Runtime()
    runtime.cloud["cbr"].policies = {"pol": []}

    resolved = run(Resolution(CBR, policy_id="pol", resources=(S1,)), runtime)

    [failed] = resolved.unresolved
    assert failed.error.category is Category.NOT_PROTECTED
    assert failed.error.message == "CBR policy pol is applied to no vault"
    assert resolved.backups == ()
    assert runtime.cloud["cbr"].calls == [("policy", "pol", None)]


def test_a_policy_vault_that_is_no_id_is_a_bad_response() -> None:
    runtime = Runtime()
    runtime.cloud["cbr"].policies = {"pol": ["v a"]}

    [failed] = run(Resolution(CBR, policy_id="pol"), runtime).unresolved

    assert failed.error.message == "CBR listed a vault whose id is no id"


# -- the backend and its options ---------------------------------------------------------------
def test_without_a_backend_the_stacks_default_is_used() -> None:
    runtime = Runtime(default_backend="csbs")
    runtime.cloud["csbs"].protected = {S1: at("p-1")}

    resolved = run(Resolution(None, resources=(S1,)), runtime)

    assert [b.backend for b in resolved.backups] == [CSBS]


def test_without_any_backend_the_plan_is_refused_naming_it() -> None:
    runtime = Runtime()

    [failed] = run(Resolution(None, resources=(S1,)), runtime).unresolved

    assert failed.error.category is Category.INVALID_EVENT
    assert "needs a backend (csbs or cbr)" in failed.error.message
    assert "DefaultBackend" in failed.error.message
    assert runtime.credentials_asked == []


def test_options_the_backend_does_not_take_are_refused() -> None:
    runtime = Runtime(default_backend="csbs")
    options = (("auto_trigger", True), ("incremental", False), ("name", "x"))
    item = Resolution(None, resources=(S1,), options=options)

    [failed] = run(item, runtime).unresolved

    assert failed.error.message == "csbs takes no incremental, name"
    assert runtime.cloud["csbs"].calls == []


def test_the_options_go_with_every_backup() -> None:
    runtime = Runtime()
    runtime.cloud["cbr"].protected = {S1: at("v-a")}
    options = (("incremental", False),)

    [backup] = run(Resolution(CBR, resources=(S1,), options=options), runtime).backups

    assert backup.options == options


# -- failures a later try may mend -------------------------------------------------------------
def test_a_lookup_that_may_succeed_later_is_deferred_unless_it_is_the_last_try() -> None:
    runtime = Runtime()
    throttled = UpstreamError("throttled", category=Category.THROTTLED)
    runtime.cloud["cbr"].fail = throttled
    item = Resolution(CBR, resources=(S1,))

    with pytest.raises(Deferred) as deferred:
        run(item, runtime)
    assert deferred.value.error is throttled
    [failed] = run(item, runtime, final=True).unresolved
    assert failed.error is throttled
    assert failed.resolved_from == {"resources": [S1]}


def test_a_lookup_that_fails_for_good_is_kept_as_its_one_failure() -> None:
    runtime = Runtime()
    runtime.cloud["cbr"].fail = UpstreamError("forbidden", category=Category.FORBIDDEN)

    resolved = run(Resolution(CBR, resources=(S1,)), runtime)

    assert [r.error.category for r in resolved.unresolved] == [Category.FORBIDDEN]
    assert resolved.backups == ()


# -- once per trigger --------------------------------------------------------------------------
def unit(item: Resolution, key: str | None = "schedule:arn#t:None:d1") -> Unit:
    return Unit(item, key, None if key is None else f"{key}#0", "payload-1")


def test_what_a_resolution_found_is_kept_and_a_repeat_never_looks_again() -> None:
    table = Table()
    runtime = Runtime(table=table)
    runtime.cloud["cbr"].protected = {S1: at("v-a"), S2: at("v-b")}
    item = Resolution(CBR, resources=(S1, S2, S3))
    context = FakeLambdaContext()

    first = expand_unit(unit(item), context, runtime)  # type: ignore[arg-type]
    runtime.cloud["cbr"].protected = {S1: at("v-b"), S2: at("v-b")}  # moved meanwhile
    again = expand_unit(unit(item), context, runtime)  # type: ignore[arg-type]

    assert view(again) == view(first)
    assert len(first) == 3
    assert len(runtime.cloud["cbr"].calls) == 1
    assert list(table.records) == ["schedule:arn#t:None:d1#resolve"]


def test_each_backup_is_keyed_under_the_trigger_and_told_under_its_own_key() -> None:
    runtime = Runtime(table=Table())
    runtime.cloud["cbr"].protected = {S1: at("v-a"), S2: at("v-b")}
    key = "webhook:generic:msg_1"

    units = expand_unit(unit(Resolution(CBR, resources=(S1, S3, S2)), key), FakeLambdaContext(),
                        runtime)  # type: ignore[arg-type]  # fmt: skip

    first, second, failed = units
    assert isinstance(first.item, BackupRequest)
    assert isinstance(second.item, BackupRequest)
    assert first.key == f"{key}:v-a:{request_digest(first.item)}"
    assert second.key == f"{key}:v-b:{request_digest(second.item)}"
    assert failed.key == f"{key}:unresolved-2"
    assert [u.notice_key for u in units] == [f"{u.key}#0" for u in units]
    assert {u.payload for u in units} == {"payload-1"}
    assert isinstance(failed.item, RejectedPlan)


def test_an_unkeyed_resolution_gives_unkeyed_units() -> None:
    runtime = Runtime(table=Table())
    runtime.cloud["cbr"].protected = {S1: at("v-a")}

    units = expand_unit(unit(Resolution(CBR, resources=(S1, S2)), None), FakeLambdaContext(),
                        runtime)  # type: ignore[arg-type]  # fmt: skip

    assert [(u.key, u.notice_key, u.payload) for u in units] == [(None, None, "")] * 2
    assert runtime.deduplicator.records == {}  # type: ignore[union-attr]


def test_the_record_keeps_what_was_found_not_what_was_asked_again() -> None:
    item = Resolution(CBR, resource_names=tuple(f"name-{i:02d}" for i in range(40)))
    runtime = Runtime()
    runtime.directory.servers = {f"name-{i:02d}": [f"s-{i:02d}"] for i in range(40)}
    runtime.cloud["cbr"].protected = {f"s-{i:02d}": at(f"v-{i:02d}") for i in range(39)}
    resolved = run(item, runtime)

    record = resolved.to_record(item)

    assert "name-07" not in json.dumps(record["backups"][0])  # the names asked, not 40 times
    assert record["backups"][0] == {"backend": "cbr", "target_id": "v-00", "resources": ["s-00"],
                                    "resolved_from": {"servers": {"name-00": "s-00"}}}  # fmt: skip
    assert record["unresolved"][0]["resolved_from"] == {"server": "s-39"}
    assert record["unresolved"][0]["backend"] == "cbr"
    assert view(Resolved.from_record(json.loads(json.dumps(record)), item)) == view(resolved)


def test_a_record_of_failures_reads_back_with_every_field() -> None:
    item = Resolution(CBR, policy_id="pol")
    error = UpstreamError("gone", category=Category.NOT_FOUND, http_status=404,
                          code="BackupService.6000", request_id="req-1")  # fmt: skip
    error.retry_after_seconds = 7.0
    resolved = Resolved((), (RejectedPlan(error, None, None, {"policy_id": "pol"}),))

    [back] = Resolved.from_record(json.loads(json.dumps(resolved.to_record(item))), item).unresolved

    assert back.error.to_dict() == {**error.to_dict(), "maybe_created": False}
    assert back.backend is None
    assert back.resolved_from == {"policy_id": "pol"}


def test_a_table_failing_after_the_lookup_still_starts_what_was_found(logs: io.StringIO) -> None:
    table = Table()
    table.fail_after = TriggerError("table down", category=Category.UNAVAILABLE)
    runtime = Runtime(table=table)
    runtime.cloud["cbr"].protected = {S1: at("v-a")}

    units = expand_unit(unit(Resolution(CBR, resources=(S1,))), FakeLambdaContext(), runtime)  # type: ignore[arg-type]

    assert [u.item.target_id for u in units] == ["v-a"]
    assert [u.key for u in units] == [f"schedule:arn#t:None:d1:v-a:{request_digest(units[0].item)}"]  # type: ignore[arg-type]
    [line] = lines(logs, "resolution not recorded: its backups run without its record")
    assert (line["level"], line["idempotency_key"], line["reason"]) == (
        "ERROR", "schedule:arn#t:None:d1", "table down")  # fmt: skip


def test_a_resolution_logs_what_it_found(logs: io.StringIO) -> None:
    runtime = Runtime()
    runtime.cloud["cbr"].protected = {S1: at("v-a"), S2: at("v-b")}

    run(Resolution(CBR, resources=(S1, S2, S3)), runtime)

    [line] = lines(logs, "plan resolved")
    assert (line["level"], line["resolved_from"], line["backups"], line["unresolved"]) == (
        "INFO", {"resources": [S1, S2, S3]}, ["v-a", "v-b"], 1)  # fmt: skip


def lines(logs: io.StringIO, message: str) -> list[dict[str, Any]]:
    parsed = [json.loads(line) for line in logs.getvalue().splitlines() if line.startswith("{")]
    return [line for line in parsed if line["message"] == message]


def test_a_table_failing_before_the_lookup_fails_the_invocation() -> None:
    class Down(Table):
        def once(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            raise TriggerError("table down", category=Category.UNAVAILABLE)

    runtime = Runtime(table=Down())

    with pytest.raises(TriggerError, match="table down"):
        expand_unit(unit(Resolution(CBR, resources=(S1,))), FakeLambdaContext(), runtime)  # type: ignore[arg-type]
    assert runtime.cloud["cbr"].calls == []


def test_a_resolution_running_elsewhere_is_not_run_twice() -> None:
    class Busy(Table):
        def once(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            raise AlreadyInProgressError("running")

    with pytest.raises(AlreadyInProgressError):
        expand_unit(unit(Resolution(CBR, resources=(S1,))), FakeLambdaContext(),
                    Runtime(table=Busy()))  # type: ignore[arg-type]  # fmt: skip


def test_a_deferred_resolution_is_told_unkeyed_and_kept_nowhere() -> None:
    table = Table()
    runtime = Runtime(table=table)
    runtime.cloud["cbr"].fail = UpstreamError("throttled", category=Category.THROTTLED)
    other = Unit(BackupRequest(CBR, "v-z"), "k", "k#0")
    item = Resolution(CBR, resources=(S1,))

    units = resolve_units([other, unit(item)], FakeLambdaContext(), runtime)  # type: ignore[arg-type]

    assert units[0] is other
    [told] = units[1:]
    assert told.key is None
    assert isinstance(told.item, RejectedPlan)
    assert told.item.error.category is Category.THROTTLED
    assert told.item.resolved_from == {"resources": [S1]}
    assert table.records == {}
    final = resolve_units([unit(item)], FakeLambdaContext(), runtime, final=True)  # type: ignore[arg-type]
    assert final[0].key == "schedule:arn#t:None:d1:unresolved-0"


def test_backups_in_counts_what_would_start() -> None:
    units = [Unit(BackupRequest(CBR, "v-1")), Unit(RejectedPlan(TriggerError("x"))),
             Unit(BackupRequest(CSBS, "p-1"))]  # fmt: skip

    assert backups_in(units) == 2
    assert backups_in([]) == 0


# -- what each failure names, and the defaults ------------------------------------------------
def test_every_failure_names_its_backend() -> None:
    runtime = Runtime()
    runtime.directory.servers = {"twin": [S1, S2]}
    runtime.cloud["cbr"].policies = {"empty": [], "pol": ["v-a"]}
    runtime.cloud["cbr"].protected = {S3: at("v-b")}

    named = run(Resolution(CBR, resource_names=("none", "twin")), runtime).unresolved
    empty = run(Resolution(CBR, policy_id="empty"), runtime).unresolved
    outside = run(Resolution(CBR, policy_id="pol", resources=(S3,)), runtime).unresolved
    runtime.cloud["cbr"].fail = UpstreamError("down", category=Category.FORBIDDEN)
    failed = run(Resolution(CBR, resources=(S1,)), runtime).unresolved

    rejections = [*named, *empty, *outside, *failed]
    assert [(r.backend, r.target_id) for r in rejections] == [(CBR, None)] * 5
    assert empty[0].resolved_from == {"policy_id": "empty"}


def test_a_policy_is_read_and_its_servers_found_in_the_plans_project() -> None:
    runtime = Runtime()
    runtime.cloud["cbr"].policies = {"pol": ["v-a"]}
    runtime.cloud["cbr"].protected = {S1: at("v-a")}

    run(Resolution(CBR, policy_id="pol", resources=(S1,), project_id="e" * 32), runtime)

    assert runtime.cloud["cbr"].calls == [("policy", "pol", "e" * 32),
                                          ("protection", (S1,), "e" * 32)]  # fmt: skip


def test_without_any_backend_the_message_says_what_to_set() -> None:
    [failed] = run(Resolution(None, resources=(S1,)), Runtime()).unresolved

    assert failed.error.message == (
        "a plan naming servers needs a backend (csbs or cbr) to find them in: set its backend, "
        "or the stack's DefaultBackend"
    )


def test_an_id_that_is_no_id_is_a_bad_200_answer() -> None:
    runtime = Runtime()
    runtime.cloud["cbr"].protected = {S1: ["a b"]}

    [failed] = run(Resolution(CBR, resources=(S1,)), runtime).unresolved

    assert failed.error.http_status == 200


def test_by_default_a_lookup_that_may_succeed_later_is_deferred() -> None:
    runtime = Runtime(table=Table())
    runtime.cloud["cbr"].fail = UpstreamError("throttled", category=Category.THROTTLED)
    item = Resolution(CBR, resources=(S1,))

    with pytest.raises(Deferred):
        resolve(item, FakeLambdaContext(), runtime)  # type: ignore[arg-type]
    with pytest.raises(Deferred):
        expand_unit(unit(item), FakeLambdaContext(), runtime)  # type: ignore[arg-type]


def test_an_unkeyed_resolution_at_its_last_try_keeps_its_failure() -> None:
    runtime = Runtime()
    runtime.cloud["cbr"].fail = UpstreamError("throttled", category=Category.THROTTLED)

    [told] = expand_unit(unit(Resolution(CBR, resources=(S1,)), None), FakeLambdaContext(),
                         runtime, final=True)  # type: ignore[arg-type]  # fmt: skip

    assert isinstance(told.item, RejectedPlan)
    assert told.item.error.category is Category.THROTTLED


def test_a_keyed_resolution_without_a_table_still_resolves() -> None:
    runtime = Runtime(table=None)
    runtime.cloud["cbr"].protected = {S1: at("v-a")}

    [backup] = expand_unit(unit(Resolution(CBR, resources=(S1,))), FakeLambdaContext(),
                           runtime)  # type: ignore[arg-type]  # fmt: skip

    assert isinstance(backup.item, BackupRequest)
    assert backup.item.target_id == "v-a"


def test_unkeyed_units_carry_what_was_resolved() -> None:
    runtime = Runtime()
    runtime.cloud["cbr"].protected = {S1: at("v-a")}

    units = expand_unit(unit(Resolution(CBR, resources=(S1, S2)), None), FakeLambdaContext(),
                        runtime)  # type: ignore[arg-type]  # fmt: skip

    assert isinstance(units[0].item, BackupRequest)
    assert isinstance(units[1].item, RejectedPlan)

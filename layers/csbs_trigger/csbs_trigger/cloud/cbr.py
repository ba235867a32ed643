"""The CBR adapter (Cloud Backup and Recovery, API v3): a restore point of a vault's resources,
followed through the vault's backups and, for a failed one, its task.

``POST /v3/{project_id}/checkpoints`` answers the restore point with the vault's resources and
the ones it skipped (busy: already being backed up). ``GET /backups?checkpoint_id=`` lists one
backup per resource (and, with a ``parent_id``, each server's disk backups); backups carry no
failure reason, the task list (``GET /operation-logs``) does. Answers drift as CSBS's do:
numbers as strings, ``extra_info`` as a JSON string, ``vault: null``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from csbs_trigger.cloud.api import ApiClient, Call, segment
from csbs_trigger.cloud.backend import (
    Backend,
    BackupRequest,
    BackupService,
    Deletable,
    Execution,
    Followed,
    Option,
    Skipped,
    is_bool,
    matches,
)
from csbs_trigger.cloud.checkpoint_items import (
    CheckpointItem,
    number_within,
    of_checkpoint,
    short_text,
)
from csbs_trigger.cloud.endpoints import Service
from csbs_trigger.cloud.transport import Answer
from csbs_trigger.deadline import Deadline
from csbs_trigger.errors import Category, UpstreamError, classify
from csbs_trigger.models import (
    ProtectedResource,
    checkpoint_object,
    decode_extra_info,
    field_text,
    listed,
    objects,
    parse_resources,
)
from csbs_trigger.settings import Settings
from csbs_trigger.text import plausible_time
from csbs_trigger.values import frozen, replace

SERVICE = Service("cbr", "CBR", "v3", frozenset({"cbr"}))
BACKEND = Backend(
    service=SERVICE,
    target_key="vault_id",
    target_word="vault",
    max_resources=256,  # a vault holds at most 256 resources
    options=(
        Option("auto_trigger", is_bool, "true or false"),
        Option("incremental", is_bool, "true or false"),
        Option("name", matches(r"[A-Za-z0-9_-]{1,64}"), "1 to 64 letters, digits, '_' or '-'"),
        Option(
            "description",
            matches(r"[^<>\x00-\x1f\x7f]{0,255}"),
            "text of at most 255 characters, without '<', '>' or control characters",
        ),
    ),
    policy_key="policy_id",
)
# The rows a page of the backup and task lists is asked for: CBR serves at most 100 a page,
# whatever ``limit`` asks (1000 is documented).
PAGE_SIZE = 100
# The backup rows one resource may have in a restore point: the server's and one per disk (an
# ECS takes at most 60 disks).
ROWS_PER_RESOURCE = 64
# The task list of one vault since the backup started holds this backup's tasks and a few more.
MAX_TASKS = 4000
# Task list times are the minute a task began; a backup's tasks begin after the request.
_TASKS_SINCE_SECONDS = 300


@frozen
class RestorePoint:
    """The restore point CBR created (``protecting`` at first) and the vault it belongs to."""

    id: str
    status: str | None
    created_at: str | None
    project_id: str | None
    vault_id: str | None
    vault_name: str | None
    resources: tuple[ProtectedResource, ...]
    skipped: tuple[Skipped, ...]
    extra_info: Any

    @property
    def target_name(self) -> str | None:
        return self.vault_name

    @property
    def resource_count(self) -> int:
        return len(self.resources) + len(self.skipped)

    def to_dict(self, keep: int | None = None) -> dict[str, Any]:
        resources = self.resources if keep is None else self.resources[:keep]
        vault: dict[str, Any] = {
            "id": self.vault_id,
            "name": self.vault_name,
            "resources": [resource.to_dict() for resource in resources],
            "skipped_resources": [skipped.to_dict() for skipped in self.skipped],
        }
        if keep is not None:
            vault["resources_omitted"] = len(self.resources) - len(resources)
        return {"id": self.id, "status": self.status, "created_at": self.created_at,
                "project_id": self.project_id, "vault": vault,
                "extra_info": self.extra_info}  # fmt: skip


class CbrClient(BackupService):
    backend = BACKEND

    def __init__(self, api: ApiClient) -> None:
        self._api = api

    def start(self, request: BackupRequest, deadline: Deadline) -> Execution:
        """POST a restore point of the vault. Every resource skipped is the first skip's
        failure (``BackupService.0002``: busy), and nothing was backed up."""
        body = {"checkpoint": {"vault_id": request.target_id, "parameters": request.parameters()}}
        call = Call("POST", "/checkpoints", parse=_restore_point, body=body, creates=True)
        sent = self._api.call(call, deadline, request.project_id)
        point = sent.value
        if point.skipped and not point.resources:
            first = point.skipped[0]
            error = UpstreamError(
                f"CBR skipped every resource of the vault ({first.name or first.id}: "
                f"{first.reason or 'no reason given'})",
                category=classify(400, first.code),
                http_status=200,
                code=first.code,
            )
            error.attempts = sent.attempts
            raise error
        return Execution(point, sent.attempts, sent.project_id)

    def poll(self, backup: Followed, deadline: Deadline) -> list[CheckpointItem]:
        """The restore point's backups, one per resource (disk rows left out), with the
        resources it skipped; a failed backup's reason comes from its task. No backups yet:
        the restore point is asked for, so that one deleted ends as ``not_found``."""
        rows = self._backups(backup, deadline)
        if not rows:
            self._api.call(
                Call("GET", f"/checkpoints/{segment(backup.checkpoint_id)}", parse=_nothing),
                deadline,
                backup.project_id,
            )
        skipped = [_skipped(entry).as_item() for entry in backup.details.get("skipped") or ()]
        skipped_ids = {item.resource_id for item in skipped}
        items = [item for item in rows if item.resource_id not in skipped_ids]
        if any(item.status == "error" and not item.fail_reason for item in items):
            items = self._with_reasons(items, backup, deadline)
        return [*items, *skipped] if items else items

    def delete(
        self, backup: Deletable, items: Mapping[str, str | None], whole: bool, deadline: Deadline
    ) -> dict[str, str | None]:
        """Each server's backup of the restore point, as CBR lists it now
        (``GET /backups?checkpoint_id=``, every page), is deleted
        (``DELETE /backups/{id}``); a server it no longer lists is gone already."""
        rows = self._pages("/backups", "backups", {"checkpoint_id": backup.checkpoint_id},
                           BACKEND.max_resources * ROWS_PER_RESOURCE, backup.project_id,
                           deadline)  # fmt: skip
        listed = {item.resource_id: item.id for item in _server_backups(rows, backup.checkpoint_id)}
        deleting: dict[str, str | None] = {}
        for server in items:
            backup_id = listed.get(server)
            deleting[server] = backup_id
            if backup_id is None:
                continue
            call = Call("DELETE", f"/backups/{segment(backup_id)}", parse=_nothing)
            try:
                self._api.call(call, deadline, backup.project_id)
            except UpstreamError as error:
                if error.category is not Category.NOT_FOUND:
                    raise
        return deleting

    def gone(
        self, backup: Deletable, deleting: Mapping[str, str | None], deadline: Deadline
    ) -> set[str]:
        """The servers whose backup answers 404 or reads ``deleted``."""
        gone = set()
        for server, backup_id in deleting.items():
            if backup_id is None:
                gone.add(server)
                continue
            call = Call("GET", f"/backups/{segment(backup_id)}", parse=_backup_status)
            try:
                status = self._api.call(call, deadline, backup.project_id).value
            except UpstreamError as error:
                if error.category is not Category.NOT_FOUND:
                    raise
                status = "deleted"
            if status == "deleted":
                gone.add(server)
        return gone

    def protection(
        self, servers: Sequence[str], project_id: str | None, deadline: Deadline
    ) -> dict[str, list[str]]:
        """The vaults listing the servers: ``GET /vaults?resource_ids=<id>,<id>``, every page
        (a server is in one vault at most, so the vaults are no more than the servers)."""
        query = {"resource_ids": ",".join(servers)}
        vaults = self._pages("/vaults", "vaults", query, len(servers), project_id, deadline)
        asked = set(servers)
        found: dict[str, list[str]] = {}
        for vault in vaults:
            vault_id = short_text(vault.get("id"))
            if vault_id is None:
                raise UpstreamError.bad_response("CBR listed a vault without an id")
            for resource in parse_resources(vault.get("resources")):
                if resource.id in asked and vault_id not in found.get(resource.id, []):
                    found.setdefault(resource.id, []).append(vault_id)
        return {server: sorted(listed) for server, listed in found.items()}

    def policy_targets(
        self, policy_id: str, project_id: str | None, deadline: Deadline
    ) -> list[str]:
        """The vaults the policy is applied to (``GET /policies/{id}``:
        ``associated_vaults[].vault_id``), each once."""
        call = Call("GET", f"/policies/{segment(policy_id)}", parse=_policy_vaults)
        return self._api.call(call, deadline, project_id).value

    def _backups(self, backup: Followed, deadline: Deadline) -> list[CheckpointItem]:
        """The restore point's server backups (disk rows are no resource). Paging stops as
        soon as every resource it backs up has its row (a healthy poll costs one GET)."""
        skipped = len(backup.details.get("skipped") or ())
        wanted = (backup.expected_items or BACKEND.max_resources) - skipped
        query = {"checkpoint_id": backup.checkpoint_id}

        listed: set[Any] = set()

        def enough(page: list[dict[str, Any]]) -> bool:
            listed.update(row.get("resource_id") or row.get("id") for row in page
                          if not row.get("parent_id")
                          and row.get("checkpoint_id") in (None, backup.checkpoint_id))  # fmt: skip
            return len(listed) >= wanted

        rows = self._pages("/backups", "backups", query, wanted * ROWS_PER_RESOURCE,
                           backup.project_id, deadline, enough=enough)  # fmt: skip
        return _server_backups(rows, backup.checkpoint_id)

    def _with_reasons(
        self, items: list[CheckpointItem], backup: Followed, deadline: Deadline
    ) -> list[CheckpointItem]:
        since = datetime.fromtimestamp(backup.registered_at - _TASKS_SINCE_SECONDS, UTC)
        query = {
            "vault_id": backup.target_id,
            "operation_type": "backup",
            "start_time": since.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        # Past its bound the list is read no further: the items keep the reasons found so far.
        entries = self._pages(
            "/operation-logs",
            "operation_logs",
            query,
            MAX_TASKS,
            backup.project_id,
            deadline,
            strict=False,
        )
        failures = _failures(entries, backup.checkpoint_id)
        return [
            replace(item, fail_code=failures[item.resource_id][0],
                    fail_reason=failures[item.resource_id][1])
            if item.status == "error" and item.resource_id in failures
            else item
            for item in items
        ]  # fmt: skip

    def _pages(
        self,
        path: str,
        key: str,
        query: Mapping[str, str],
        bound: int,
        project_id: str | None,
        deadline: Deadline,
        *,
        enough: Callable[[list[dict[str, Any]]], bool] = lambda rows: False,
        strict: bool = True,
    ) -> list[dict[str, Any]]:
        """The rows of a list (``key`` in its answer) that pages with ``limit`` and ``offset``
        until ``count`` rows are read, a page is empty or the pages are ``enough``; never more
        pages than ``bound`` rows fill, and one more (a list that pages on forever is a
        ``bad_response``, or where not ``strict`` what was read by then)."""
        rows: list[dict[str, Any]] = []
        for _ in range(bound // PAGE_SIZE + 2):
            page_query = {**query, "limit": str(PAGE_SIZE), "offset": str(len(rows))}
            call = Call("GET", path, parse=lambda answer: _list_page(answer.json(), key),
                        query=page_query)  # fmt: skip
            page, count = self._api.call(call, deadline, project_id).value
            rows.extend(page)
            if not page or len(rows) >= count or enough(page):
                return rows
        if not strict:
            return rows
        raise UpstreamError.bad_response(
            f"CBR listed more pages in {path} than {bound} rows fill", http_status=200
        )


def build(api: ApiClient, settings: Settings) -> CbrClient:
    return CbrClient(api)


def _restore_point(answer: Answer) -> RestorePoint:
    """The created restore point. A resource counts once: a skipped one is skipped, whether or
    not ``vault.resources`` lists it too (the documentation says neither way)."""
    checkpoint, point_id = checkpoint_object(answer.json(), "CBR")
    vault = checkpoint.get("vault")
    vault = vault if isinstance(vault, dict) else {}
    skipped = {entry.id: entry for entry in map(_skipped, objects(vault.get("skipped_resources")))}
    resources = parse_resources(vault.get("resources"))
    return RestorePoint(
        id=point_id,
        status=field_text(checkpoint.get("status")),
        created_at=field_text(checkpoint.get("created_at")),
        project_id=field_text(checkpoint.get("project_id")),
        vault_id=field_text(vault.get("id")),
        vault_name=field_text(vault.get("name")),
        resources=tuple(resource for resource in resources if resource.id not in skipped),
        skipped=tuple(skipped.values()),
        extra_info=decode_extra_info(checkpoint.get("extra_info")),
    )


def _skipped(entry: Mapping[str, Any]) -> Skipped:
    return Skipped(
        id=short_text(entry.get("id")) or "",
        name=short_text(entry.get("name")),
        code=short_text(entry.get("code")),
        reason=short_text(entry.get("reason")),
    )


def _server_backups(rows: list[dict[str, Any]], checkpoint_id: str) -> list[CheckpointItem]:
    """The restore point's server backups, one per server: a disk's row (it has a
    ``parent_id``) is no resource of its own."""
    return of_checkpoint([_backup(row) for row in rows if not row.get("parent_id")], checkpoint_id)


def _backup(row: Mapping[str, Any]) -> CheckpointItem:
    backup_id = short_text(row.get("id"))
    if backup_id is None:
        raise UpstreamError.bad_response("CBR listed a backup without an id")
    status = short_text(row.get("status"))
    terminal = status in ("available", "error")
    finished_at = short_text(row.get("updated_at")) if terminal else None
    moment = plausible_time(finished_at)
    return CheckpointItem(
        id=backup_id,
        checkpoint_id=short_text(row.get("checkpoint_id")),
        resource_id=short_text(row.get("resource_id")),
        resource_name=short_text(row.get("resource_name")),
        status=status,
        progress=None,  # a backup row carries none (the SDK's BackupExtendInfo has no progress)
        size_mb=None,  # CBR lists the resource's size, not the backup's
        finished_at=finished_at if moment is not None else None,
        fail_code=None,
        fail_reason=None,
        finished=None if moment is None else moment.timestamp(),
    )


def _failures(
    entries: list[dict[str, Any]], checkpoint_id: str
) -> dict[str | None, tuple[str | None, str]]:
    """The error code and message of each resource whose task in this restore point failed
    with a message (a task names its resource in ``extra_info.resource``)."""
    failures: dict[str | None, tuple[str | None, str]] = {}
    for entry in entries:
        extra = decode_extra_info(entry.get("extra_info"))
        resource = extra.get("resource") if isinstance(extra, dict) else None
        error = entry.get("error_info")
        if not isinstance(resource, dict) or not isinstance(error, dict):
            continue
        reason = short_text(error.get("message"))
        if reason and short_text(entry.get("checkpoint_id")) == checkpoint_id:
            failures[short_text(resource.get("id"))] = (short_text(error.get("code")), reason)
    return failures


def _list_page(document: Any, key: str) -> tuple[list[dict[str, Any]], int]:
    """The rows of one page and the total the list says it holds (its length where the count
    is missing or no number)."""
    rows = listed(document, key, "CBR")
    count = number_within(document.get("count"), low=0)
    return rows, int(count) if count is not None else len(rows)


def _policy_vaults(answer: Answer) -> list[str]:
    document = answer.json()
    policy = document.get("policy") if isinstance(document, dict) else None
    if not isinstance(policy, dict):
        raise UpstreamError.bad_response("CBR answered without a policy object", http_status=200)
    associated = objects(policy.get("associated_vaults"))
    vaults = (short_text(entry.get("vault_id")) for entry in associated)
    return list(dict.fromkeys(vault for vault in vaults if vault))


def _backup_status(answer: Answer) -> str | None:
    document = answer.json()
    backup = document.get("backup") if isinstance(document, dict) else None
    return short_text(backup.get("status")) if isinstance(backup, dict) else None


def _nothing(answer: Answer) -> None:
    """Only whether the restore point is there counts, not what is said of it."""

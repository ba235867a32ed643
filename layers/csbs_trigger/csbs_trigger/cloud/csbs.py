"""The CSBS adapter: "Executing a Backup Policy" starts a checkpoint of a policy's servers, and
the checkpoint items tell what became of it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    is_bool,
)
from csbs_trigger.cloud.checkpoint_items import CheckpointItem, of_checkpoint, parse_items_page
from csbs_trigger.cloud.endpoints import Service
from csbs_trigger.cloud.transport import Answer
from csbs_trigger.deadline import Deadline
from csbs_trigger.errors import Category, UpstreamError
from csbs_trigger.models import field_text, listed, parse_checkpoint_body, parse_resources
from csbs_trigger.settings import Settings

SERVICE = Service("csbs", "CSBS", "v1", frozenset({"csbs", "data-protect"}))
BACKEND = Backend(
    service=SERVICE,
    target_key="plan_id",
    target_word="plan",
    max_resources=100,  # CSBS holds 64 servers a policy
    options=(Option("auto_trigger", is_bool, "true or false"),),
)
# A checkpoint holds one item per server of its policy (CSBS allows 64 a policy); where the
# servers asked for are not known, paging stops after this many distinct items.
MAX_CHECKPOINT_ITEMS = 256
# The policies a project's list is read to find servers in: far more than a project holds (the
# list pages on past them: a ``bad_response``).
MAX_POLICIES = 1000
_PAGE_SIZE = 100


class CsbsClient(BackupService):
    backend = BACKEND

    def __init__(self, api: ApiClient, provider_id: str) -> None:
        self._api = api
        self._provider_id = provider_id

    def start(self, request: BackupRequest, deadline: Deadline) -> Execution:
        return self.execute_backup_policy(request, deadline)

    def poll(self, backup: Followed, deadline: Deadline) -> list[CheckpointItem]:
        return self.list_checkpoint_items(
            backup.checkpoint_id,
            deadline,
            project_id=backup.project_id,
            expected=backup.expected_items,
        )

    def delete(
        self, backup: Deletable, items: Mapping[str, str | None], whole: bool, deadline: Deadline
    ) -> dict[str, str | None]:
        """``DELETE …/checkpoints/{id}``, with ``?checkpoint_items=`` when only some servers'
        items go. Deleting takes CSBS up to 30 minutes; a 400 or 409 while it does (the
        checkpoint is being deleted already), and a 404, are no error."""
        path = (
            f"/providers/{segment(self._provider_id)}/checkpoints/{segment(backup.checkpoint_id)}"
        )
        query = None if whole else {"checkpoint_items": ",".join(i for i in items.values() if i)}
        call = Call("DELETE", path, parse=_nothing, query=query)
        try:
            self._api.call(call, deadline, backup.project_id)
        except UpstreamError as error:
            if error.http_status not in (400, 404, 409):
                raise
        return dict(items)

    def gone(
        self, backup: Deletable, deleting: Mapping[str, str | None], deadline: Deadline
    ) -> set[str]:
        """The servers whose items no longer list, or list as ``deleted`` (a checkpoint that
        is gone lists none)."""
        try:
            items = self.list_checkpoint_items(
                backup.checkpoint_id, deadline, project_id=backup.project_id
            )
        except UpstreamError as error:
            if error.category is not Category.NOT_FOUND:
                raise
            items = []
        present = {item.id for item in items if item.status != "deleted"}
        return {server for server, item in deleting.items() if item not in present}

    def protection(
        self, servers: Sequence[str], project_id: str | None, deadline: Deadline
    ) -> dict[str, list[str]]:
        """The policies listing the servers: ``GET /policies``, every page (``limit``, then
        ``marker``: the last policy's id) up to an empty one (the list has no count, and a
        server may serve fewer a page than asked), each policy's ``resources[].id``."""
        asked = set(servers)
        found: dict[str, list[str]] = {}
        marker: str | None = None
        for _ in range(MAX_POLICIES // _PAGE_SIZE + 2):
            query = {"limit": str(_PAGE_SIZE)} | ({} if marker is None else {"marker": marker})
            call = Call("GET", "/policies", parse=_policies_page, query=query)
            page = self._api.call(call, deadline, project_id).value
            for policy in page:
                for resource in parse_resources(policy.get("resources")):
                    if resource.id in asked:
                        found.setdefault(resource.id, []).append(policy["id"])
            if not page:
                return {server: sorted(listed) for server, listed in found.items()}
            if page[-1]["id"] == marker:
                raise UpstreamError.bad_response("CSBS answered the same page of policies")
            marker = page[-1]["id"]
        raise UpstreamError.bad_response(
            f"CSBS listed more pages of policies than {MAX_POLICIES} policies fill"
        )

    def execute_backup_policy(self, backup: BackupRequest, deadline: Deadline) -> Execution:
        """POST a checkpoint for the plan. Errors carry ``attempts``: how many POSTs were sent."""
        body = {"checkpoint": {"plan_id": backup.target_id, "parameters": backup.parameters()}}
        call = Call(
            "POST",
            f"/providers/{segment(self._provider_id)}/checkpoints",
            parse=lambda answer: parse_checkpoint_body(answer.body),
            body=body,
            creates=True,
        )
        sent = self._api.call(call, deadline, backup.project_id)
        return Execution(sent.value, sent.attempts, sent.project_id)

    def list_checkpoint_items(
        self,
        checkpoint_id: str,
        deadline: Deadline,
        *,
        project_id: str | None = None,
        expected: int | None = None,
        page_size: int = 100,
    ) -> list[CheckpointItem]:
        """The checkpoint's items, one per resource, read in ``project_id`` (None: the
        credentials' own project) page by page (``limit``, then ``marker``: the last item's id).

        Paging stops at an empty page, or as soon as every one of the ``expected`` resources
        has its item (a healthy poll costs one GET), and never reads more pages than the
        checkpoint can hold items: a server that pages on forever is a ``bad_response``. A GET
        creates nothing, so every transient failure may be retried."""
        bound = expected or MAX_CHECKPOINT_ITEMS
        items: list[CheckpointItem] = []
        marker: str | None = None
        for _ in range(bound // page_size + 2):  # the pages of ``bound`` items, and an empty one
            query = {"checkpoint_id": checkpoint_id, "limit": str(page_size)}
            if marker is not None:
                query["marker"] = marker
            call = Call("GET", "/checkpoint_items", parse=_items_page, query=query)
            page = self._api.call(call, deadline, project_id).value
            if not page:
                return items
            if page[-1].id == marker:
                raise UpstreamError.bad_response("CSBS answered the same page of checkpoint items")
            items = of_checkpoint([*items, *page], checkpoint_id)
            if expected is not None and len(items) >= expected:
                return items
            marker = page[-1].id
        raise UpstreamError.bad_response(
            f"CSBS listed more pages of checkpoint items than {bound} items fill"
        )


def _items_page(answer: Answer) -> list[CheckpointItem]:
    return parse_items_page(answer.json())


def _policies_page(answer: Answer) -> list[dict[str, Any]]:
    """One page of policies, each with its id (a policy without one is no plan to start)."""
    page = []
    for policy in listed(answer.json(), "policies", "CSBS"):
        policy_id = field_text(policy.get("id"))
        if not policy_id:
            raise UpstreamError.bad_response("CSBS listed a policy without an id")
        page.append({**policy, "id": policy_id})
    return page


def _nothing(answer: Answer) -> None:
    """A deletion's answer says nothing the sweep needs: it reads the items afterwards."""


def build(api: ApiClient, settings: Settings) -> CsbsClient:
    return CsbsClient(api, settings.provider_id)

"""The CSBS client: "Executing a Backup Policy" with the retries that cannot duplicate a backup,
and the checkpoint items that tell what became of it."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import quote

import requests

from csbs_trigger.cloud.auth import CsbsAuth, Scope
from csbs_trigger.cloud.checkpoint_items import CheckpointItem, of_checkpoint, parse_items_page
from csbs_trigger.cloud.transport import Answer, send
from csbs_trigger.deadline import Deadline
from csbs_trigger.errors import Category, TriggerError, UpstreamError
from csbs_trigger.models import BackupRequest, Checkpoint, parse_checkpoint_body

USER_AGENT = "csbs-trigger/1"
# A checkpoint holds one item per server of its policy (CSBS allows 64 a policy); where the
# servers asked for are not known, paging stops after this many distinct items.
MAX_CHECKPOINT_ITEMS = 256
_T = TypeVar("_T")


class AuthSource(Protocol):
    """Where the client gets its auth, and a fresh one when the current one is refused."""

    def current(self) -> CsbsAuth: ...

    def refresh(self, stale: CsbsAuth) -> CsbsAuth | None: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter for transient failures, within the attempt budget.

    ``busy`` is retryable but not here: a running backup takes minutes. A request that may
    have reached CSBS before it failed is never repeated: it may have created a checkpoint.
    """

    max_attempts: int = 3
    base_delay_seconds: float = 0.5
    max_delay_seconds: float = 8.0

    def should_retry(self, error: TriggerError, tries: int) -> bool:
        return (
            tries < self.max_attempts
            and error.retryable
            and error.category is not Category.BUSY
            and not error.maybe_created
        )

    def delay(self, error: TriggerError, tries: int, rng: Callable[[], float]) -> float:
        if error.retry_after_seconds is not None:
            return error.retry_after_seconds
        ceiling = min(self.max_delay_seconds, self.base_delay_seconds * 2.0 ** (tries - 1))
        return rng() * ceiling


@dataclass(frozen=True)
class Execution:
    checkpoint: Checkpoint
    attempts: int
    project_id: str  # the project it was created in


class CsbsClient:
    def __init__(
        self,
        auth_source: AuthSource,
        session: requests.Session,
        provider_id: str,
        *,
        retry: RetryPolicy = RetryPolicy(),  # frozen: one default serves every client
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._auth_source = auth_source
        self._session = session
        self._provider_id = provider_id
        self._retry = retry
        self._sleep = sleep
        self._rng = rng

    def execute_backup_policy(self, backup: BackupRequest, deadline: Deadline) -> Execution:
        """POST a checkpoint for the plan. Errors carry ``attempts``: how many POSTs were sent."""
        body = {"checkpoint": {"plan_id": backup.plan_id, "parameters": backup.parameters()}}
        call = _Call(
            "POST",
            f"/providers/{_segment(self._provider_id)}/checkpoints",
            parse=lambda answer: parse_checkpoint_body(answer.body),
            body=body,
            creates=True,
        )
        sent = self._call(call, deadline)
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
            call = _Call("GET", "/checkpoint_items", parse=_items_page, query=query)
            page = self._call(call, deadline, project_id).value
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

    def _call(
        self, call: _Call[_T], deadline: Deadline, project_id: str | None = None
    ) -> _Sent[_T]:
        """Send ``call`` with the current auth, in ``project_id`` (None: the credentials' own):
        its parsed answer, how many were sent, where.

        When IAM or CSBS refuses the credentials, they are read afresh once (the secret may have
        been rotated, the token revoked) before ``auth_failed``. Transient failures are retried
        per ``RetryPolicy`` while the invocation has time.
        """
        attempts = tries = 0
        refreshed = False
        auth: CsbsAuth | None = None
        while True:
            tries += 1
            try:
                auth = auth or self._auth_source.current()
                scope = auth.scope(deadline, project_id)  # may ask IAM for a token
                request = self._prepare(auth, scope, call, deadline)
                timeouts = deadline.timeouts("CSBS")
                attempts += 1
                return _Sent(self._send(request, timeouts, call), attempts, scope.project_id)
            except TriggerError as error:
                error.attempts = attempts
                if error.category is Category.AUTH_FAILED and auth and not refreshed:
                    refreshed, tries = True, tries - 1  # a refresh is not a retry
                    fresh = self._auth_source.refresh(auth)
                    if fresh is None:  # nothing changed: the same request would be refused
                        raise
                    auth = fresh
                    continue
                if not self._retry.should_retry(error, tries):
                    raise
                delay = self._retry.delay(error, tries, self._rng)
                if not deadline.can_wait(delay):
                    raise
                self._sleep(delay)

    def _prepare(
        self, auth: CsbsAuth, scope: Scope, call: _Call[Any], deadline: Deadline
    ) -> requests.PreparedRequest:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if call.body is not None:
            headers["Content-Type"] = "application/json"
        request = requests.Request(
            call.method,
            f"{scope.csbs_endpoint}/v1/{_segment(scope.project_id)}{call.path}",
            params=call.query,
            data=None if call.body is None else json.dumps(call.body).encode(),
            headers=headers,
        ).prepare()
        auth.authenticate(request, deadline, scope)
        return request

    def _send(
        self, request: requests.PreparedRequest, timeouts: tuple[float, float], call: _Call[_T]
    ) -> _T:
        try:
            answer = send(self._session, request, what="CSBS", timeouts=timeouts)
        except UpstreamError as error:
            error.maybe_created = call.creates and error.request_sent
            raise
        if not answer.ok:
            raise answer.error()
        try:
            return call.parse(answer)
        except TriggerError as error:
            error.maybe_created = call.creates  # CSBS said 2xx: it may well have created one
            raise


@dataclass(frozen=True)
class _Call(Generic[_T]):
    """One CSBS request: where (below /v1/{project_id}), what, and how its answer is read."""

    method: str
    path: str
    parse: Callable[[Answer], _T]
    body: dict[str, Any] | None = None
    query: dict[str, str] | None = None
    creates: bool = False  # a POST that reached CSBS may have created a checkpoint


@dataclass(frozen=True)
class _Sent(Generic[_T]):
    value: _T
    attempts: int
    project_id: str


def _items_page(answer: Answer) -> list[CheckpointItem]:
    return parse_items_page(answer.json())


def _segment(value: str) -> str:
    """One path segment, whatever ``value`` holds: never a way into another path."""
    return quote(value, safe="")

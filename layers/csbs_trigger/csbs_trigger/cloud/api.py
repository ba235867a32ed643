"""Calls to a backup service's API: auth, retries that cannot duplicate a backup, and the
answer parsed, the same for every service (CSBS under ``/v1``, CBR under ``/v3``)."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import quote

import requests

from csbs_trigger.cloud.auth import CsbsAuth, Scope
from csbs_trigger.cloud.endpoints import Service
from csbs_trigger.cloud.transport import Answer, send
from csbs_trigger.deadline import Deadline
from csbs_trigger.errors import Category, TriggerError, UpstreamError
from csbs_trigger.values import frozen

USER_AGENT = "csbs-trigger/1"
_T = TypeVar("_T")


class AuthSource(Protocol):
    """Where the client gets its auth, and a fresh one when the current one is refused."""

    def current(self) -> CsbsAuth: ...

    def refresh(self, stale: CsbsAuth) -> CsbsAuth | None: ...


@frozen
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
            and error.retry_now
            and error.category is not Category.BUSY
            and not error.maybe_created
        )

    def delay(self, error: TriggerError, tries: int, rng: Callable[[], float]) -> float:
        if error.retry_after_seconds is not None:
            return error.retry_after_seconds
        ceiling = min(self.max_delay_seconds, self.base_delay_seconds * 2.0 ** (tries - 1))
        return rng() * ceiling


DEFAULT_RETRY = RetryPolicy()  # read-only: one default serves every client


class Throttle:
    """How long the gateway asked one account's calls to wait: the container's other calls
    with the same credentials wait too (or give up in time), rather than hammer it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._until = 0.0

    def hold(self, seconds: float) -> None:
        with self._lock:
            self._until = max(self._until, self._clock() + seconds)

    def remaining(self) -> float:
        with self._lock:
            return max(0.0, self._until - self._clock())


class ApiClient:
    """One service's API (``service``: where, and how messages name it) over one session."""

    def __init__(
        self,
        service: Service,
        auth_source: AuthSource,
        session: requests.Session,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
        throttle: Throttle | None = None,  # shared by the clients of one account
    ) -> None:
        self.service = service
        self._throttle = throttle
        self._auth_source = auth_source
        self._session = session
        self._retry = retry
        self._sleep = sleep
        self._rng = rng

    def call(self, call: Call[_T], deadline: Deadline, project_id: str | None = None) -> Sent[_T]:
        """Send ``call`` with the current auth, in ``project_id`` (None: the credentials' own):
        its parsed answer, how many were sent, where.

        When IAM or the service refuses the credentials, they are read afresh once (the secret
        may have been rotated, the token revoked) before ``auth_failed``. Transient failures are
        retried per ``RetryPolicy`` while the invocation has time.
        """
        attempts = tries = 0
        refreshed = False
        auth: CsbsAuth | None = None
        self._wait_for_throttle(deadline)
        while True:
            tries += 1
            try:
                auth = auth or self._auth_source.current()
                scope = auth.scope(deadline, self.service, project_id)  # may ask IAM
                request = self._prepare(auth, scope, call, deadline)
                timeouts = deadline.timeouts(self.service.label)
                attempts += 1
                return Sent(self._send(request, timeouts, call), attempts, scope.project_id)
            except TriggerError as error:
                error.attempts = attempts
                if error.category is Category.AUTH_FAILED and auth and not refreshed:
                    refreshed, tries = True, tries - 1  # a refresh is not a retry
                    fresh = self._auth_source.refresh(auth)
                    if fresh is None:  # nothing changed: the same request would be refused
                        raise
                    auth = fresh
                    continue
                delay = self._retry.delay(error, tries, self._rng)
                if error.category is Category.THROTTLED and self._throttle is not None:
                    self._throttle.hold(delay)
                if not self._retry.should_retry(error, tries) or not deadline.can_wait(delay):
                    raise
                self._sleep(delay)

    def _wait_for_throttle(self, deadline: Deadline) -> None:
        """Wait as long as the gateway asked this account's calls to (when the invocation has
        the time; else fail ``throttled`` before sending: a worker's plan comes back later)."""
        wait = self._throttle.remaining() if self._throttle is not None else 0.0
        if wait <= 0:
            return
        if not deadline.can_wait(wait):
            error = UpstreamError(
                f"{self.service.label} calls with these credentials wait {wait:.0f} s more: "
                "the API gateway throttled them",
                category=Category.THROTTLED,
            )
            error.retry_after_seconds = wait
            raise error
        self._sleep(wait)

    def _prepare(
        self, auth: CsbsAuth, scope: Scope, call: Call[Any], deadline: Deadline
    ) -> requests.PreparedRequest:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if call.body is not None:
            headers["Content-Type"] = "application/json"
        request = requests.Request(
            call.method,
            f"{scope.endpoint}/{self.service.api_version}/{segment(scope.project_id)}{call.path}",
            params=call.query,
            data=None if call.body is None else json.dumps(call.body).encode(),
            headers=headers,
        ).prepare()
        auth.authenticate(request, deadline, scope)
        return request

    def _send(
        self, request: requests.PreparedRequest, timeouts: tuple[float, float], call: Call[_T]
    ) -> _T:
        try:
            answer = send(self._session, request, what=self.service.label, timeouts=timeouts)
        except UpstreamError as error:
            error.maybe_created = call.creates and error.request_sent
            raise
        if not answer.ok:
            raise answer.error()
        try:
            return call.parse(answer)
        except TriggerError as error:
            error.maybe_created = call.creates  # it said 2xx: it may well have created one
            raise


@frozen
class Call(Generic[_T]):
    """One request: where (below /<version>/{project_id}), what, and how its answer is read."""

    method: str
    path: str
    parse: Callable[[Answer], _T]
    body: dict[str, Any] | None = None
    query: dict[str, str] | None = None
    creates: bool = False  # a POST that reached the service may have created a backup


@frozen
class Sent(Generic[_T]):
    """A call's parsed answer, how many requests it took, and the project it went to."""

    value: _T
    attempts: int
    project_id: str


def segment(value: str) -> str:
    """One path segment, whatever ``value`` holds: never a way into another path."""
    return quote(value, safe="")

"""How requests to the backup services are authenticated.

``CsbsAuth`` is the port: it names the project and the service's endpoint to call,
authenticates a prepared request, and forgets what it cached when the service says 401.
``KeystonePasswordAuth`` fetches and reuses Keystone v3 tokens, one per project;
``AccessKeyAuth`` signs each request with an AK/SK pair. ``auth_for`` picks the one the
credentials call for.

Every token request goes through the container's ``Logins``. A login (domain, user, password:
never the project it is scoped to, nor the secret that holds it) is sent by one caller at a
time; one that failed is not sent again in the same invocation (the plans that share it share
its answer); one IAM refused is remembered by a ``LoginGuard``, keyed by a digest of the login,
and not sent again until the secret changes, and at most once an hour, because every refused
login counts towards the account's lockout (Open Telekom Cloud: 5 in 15 minutes).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, Protocol

import requests

from csbs_trigger.cloud import signing
from csbs_trigger.cloud.credentials import (
    AccessKeyCredentials,
    CloudCredentials,
    PasswordCredentials,
)
from csbs_trigger.cloud.endpoints import Service, catalog_endpoints
from csbs_trigger.cloud.transport import send
from csbs_trigger.deadline import Deadline
from csbs_trigger.errors import Category, UpstreamError
from csbs_trigger.text import plausible_time
from csbs_trigger.values import frozen

# Renew a token this long before IAM says it expires, so no call starts with a dying token.
TOKEN_RENEWAL_MARGIN = timedelta(minutes=10)
# A refused login is not sent again for this long, unless the secret changes.
REFUSAL_REMEMBERED_SECONDS = 3600.0
REFUSED_NOTE = "IAM refused the password; it is not tried again until the secret changes"
# The digest that names a login is stretched: a leaked mark must not be a cheap way to the
# password behind it.
_DIGEST_ITERATIONS = 20_000


@frozen
class Scope:
    """Where a request goes: the project (in the path) and the service's base URL."""

    project_id: str
    endpoint: str


class CsbsAuth(Protocol):
    def scope(self, deadline: Deadline, service: Service, project_id: str | None = None) -> Scope:
        """Where to send a request to ``service`` for ``project_id`` (None: the credentials'
        own project)."""
        ...

    def authenticate(
        self, request: requests.PreparedRequest, deadline: Deadline, scope: Scope
    ) -> None: ...

    def invalidate(self) -> bool:
        """Forget what is cached; True when something was (so the same credentials may pass)."""
        ...

    def secret_values(self) -> tuple[str, ...]: ...


@frozen
class Refusal:
    """IAM's refusal of a login as remembered: when, when it may be tried again, and what IAM
    said (so that every plan it answers names the same request)."""

    refused_at: float
    retry_at: float
    http_status: int | None = None
    request_id: str | None = None

    @classmethod
    def of(cls, error: UpstreamError, now: float) -> Refusal:
        return cls(now, now + REFUSAL_REMEMBERED_SECONDS, error.http_status, error.request_id)

    def error(self) -> UpstreamError:
        moment = datetime.fromtimestamp(self.refused_at, UTC).isoformat(timespec="seconds")
        again = datetime.fromtimestamp(self.retry_at, UTC).isoformat(timespec="seconds")
        return UpstreamError(
            f"{REFUSED_NOTE} (refused at {moment}; tried once more after {again} if it never does)",
            category=Category.AUTH_FAILED,
            http_status=self.http_status,
            request_id=self.request_id,
        )


class LoginGuard(Protocol):
    """Remembers logins IAM refused, by a digest of the login (never the login itself)."""

    def check(self, login: str) -> None:
        """Raise the remembered refusal (``auth_failed``) if ``login`` may not be sent now."""
        ...

    def refused(self, login: str, error: UpstreamError) -> None: ...

    def accepted(self, login: str) -> None: ...


class MemoryLoginGuard:
    """This container's memory of refused logins (what a guard without a table has)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._refused: dict[str, Refusal] = {}

    def check(self, login: str) -> None:
        with self._lock:
            refusal = self._refused.get(login)
        if refusal is not None and self._clock() < refusal.retry_at:
            raise refusal.error()

    def remember(self, login: str, refusal: Refusal) -> None:
        with self._lock:
            self._refused[login] = refusal

    def refused(self, login: str, error: UpstreamError) -> None:
        self.remember(login, Refusal.of(error, self._clock()))

    def accepted(self, login: str) -> None:
        with self._lock:
            self._refused.pop(login, None)


class Logins:
    """The container's token requests, by login: one caller at a time sends a login; one that
    failed is answered from memory for the rest of the invocation (the next may try once more);
    one IAM refused is left to the guard."""

    def __init__(self, guard: LoginGuard) -> None:
        self.guard = guard
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._failed: dict[str, UpstreamError] = {}  # this invocation's failed logins

    def new_invocation(self) -> None:
        with self._lock:
            self._failed.clear()

    def send(self, login: str, request: Callable[[], Token]) -> Token:
        """``request``'s token, unless ``login`` failed in this invocation or is refused."""
        with self._lock:
            lock = self._locks.setdefault(login, threading.Lock())
        with lock:
            failed = self._failed.get(login)
            if failed is not None:
                raise _again(failed)
            self.guard.check(login)
            try:
                token = request()
            except UpstreamError as error:
                if _never_reached_iam(error):
                    raise  # a connection never made: it may be tried again at once
                if error.category is Category.AUTH_FAILED:
                    self.guard.refused(login, error)
                    error = _refused(error)
                error.retry_now = False
                self._failed[login] = error
                raise error from None
            self.guard.accepted(login)
            return token


def _never_reached_iam(error: UpstreamError) -> bool:
    """Whether the login cannot have reached IAM (the connection was refused or never made):
    only such a try may be repeated within the invocation."""
    transport = error.category in (Category.TIMEOUT, Category.NETWORK)
    return transport and not error.request_sent


def _again(error: UpstreamError) -> UpstreamError:
    """A login's failure told again to a plan that shares it: nothing was sent for this one."""
    again = UpstreamError(error.message, category=error.category, http_status=error.http_status,
                          code=error.code, request_id=error.request_id)  # fmt: skip
    again.retry_after_seconds = error.retry_after_seconds
    again.retry_now = False
    return again


@frozen
class Token:
    """A Keystone token, the project it is scoped to, and when to renew it."""

    value: str = field(repr=False)
    expires_at: datetime
    project_id: str
    catalog: dict[str, str] | None  # public endpoints by catalog type; None: not asked for
    renew_at: datetime


def auth_for(credentials: CloudCredentials, session: requests.Session, logins: Logins) -> CsbsAuth:
    if isinstance(credentials, AccessKeyCredentials):
        return AccessKeyAuth(credentials)
    return KeystonePasswordAuth(credentials, session, logins=logins)


class AccessKeyAuth:
    """Signs every request with the access key; there is nothing to fetch or to cache. One key
    signs for any project its user may use (``X-Project-Id``)."""

    def __init__(
        self,
        credentials: AccessKeyCredentials,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._credentials = credentials
        self._now = now

    def scope(self, deadline: Deadline, service: Service, project_id: str | None = None) -> Scope:
        credentials = self._credentials
        return Scope(project_id or credentials.project_id, credentials.endpoints.of(service))

    def authenticate(
        self, request: requests.PreparedRequest, deadline: Deadline, scope: Scope
    ) -> None:
        credentials = self._credentials
        signing.SdkHmacSha256Auth(
            credentials.access_key,
            credentials.secret_key,
            scope.project_id,
            security_token=credentials.security_token,
            now=self._now,
        )(request)

    def invalidate(self) -> bool:
        """Nothing cached: a 401 means the keys themselves are refused."""
        return False

    def secret_values(self) -> tuple[str, ...]:
        return self._credentials.secret_values


class KeystonePasswordAuth:
    """Keystone v3 password auth. A token is scoped to one project: one is fetched per project
    asked for, and serves every call there until shortly before it expires."""

    def __init__(
        self,
        credentials: PasswordCredentials,
        session: requests.Session,
        *,
        logins: Logins,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._credentials = credentials
        self._session = session
        self._logins = logins
        self._now = now
        self._lock = threading.Lock()
        # By the project asked for ("": the secret's own, by name) and by the project it names.
        self._tokens: dict[str, Token] = {}

    def scope(self, deadline: Deadline, service: Service, project_id: str | None = None) -> Scope:
        endpoints = self._credentials.endpoints
        if endpoints.complete(service):
            token = self._current_token(deadline, project_id)
            return Scope(project_id=token.project_id, endpoint=endpoints.of(service))
        token = self._current_token(deadline, project_id, catalog=True)
        return Scope(project_id=token.project_id, endpoint=endpoints.of(service, token.catalog))

    def authenticate(
        self, request: requests.PreparedRequest, deadline: Deadline, scope: Scope
    ) -> None:
        request.headers["X-Auth-Token"] = self._current_token(deadline, scope.project_id).value

    def invalidate(self) -> bool:
        with self._lock:
            held = bool(self._tokens)
            self._tokens.clear()
            return held

    def secret_values(self) -> tuple[str, ...]:
        with self._lock:
            tokens = tuple({token.value for token in self._tokens.values()})
        return self._credentials.secret_values + tokens

    def _current_token(
        self, deadline: Deadline, project_id: str | None, *, catalog: bool = False
    ) -> Token:
        """The lock makes concurrent plans share one token request per project; ``Logins``
        decides whether the login may be sent. A token asked for without its catalog (the
        secret named every endpoint needed so far) is fetched again where one is needed."""
        key = project_id or self._credentials.project_id or ""
        with self._lock:
            token = self._tokens.get(key)
            lacking = token is not None and catalog and token.catalog is None
            if token is None or lacking or self._now() >= token.renew_at:
                token = self._logins.send(
                    self._login,
                    lambda: self._request_token(deadline, key, catalog=catalog),
                )
                self._tokens[key] = self._tokens[token.project_id] = token
            return token

    @cached_property
    def _login(self) -> str:
        """Names one login (domain, user, password: whatever project it is scoped to and
        whichever secret holds it) without revealing it; stretched once per credentials."""
        credentials = self._credentials
        salt = json.dumps([credentials.user_domain_name, credentials.username]).encode()
        password = credentials.password.encode("utf-8", "surrogatepass")
        digest = hashlib.pbkdf2_hmac("sha256", password, salt, _DIGEST_ITERATIONS)
        return hashlib.sha256(salt + digest).hexdigest()

    def _request_token(self, deadline: Deadline, project_id: str, *, catalog: bool) -> Token:
        credentials = self._credentials
        project: dict[str, Any] = (
            {"id": project_id}
            if project_id
            else {
                "name": credentials.project_name,
                "domain": {"name": credentials.user_domain_name},
            }
        )
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": credentials.username,
                            "password": credentials.password,
                            "domain": {"name": credentials.user_domain_name},
                        }
                    },
                },
                "scope": {"project": project},
            }
        }
        # The catalog is only needed to find a service; without it the answer is a few hundred
        # bytes.
        url = f"{credentials.auth_url}/auth/tokens"
        if not catalog:
            url += "?nocatalog"
        request = requests.Request(
            "POST",
            url,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        ).prepare()
        answer = send(self._session, request, what="IAM", timeouts=deadline.timeouts("IAM"))
        if not answer.ok:
            raise answer.error(token_request=True)
        token_value = answer.headers.get("X-Subject-Token")
        if not token_value:
            raise UpstreamError.bad_response("IAM answered without an X-Subject-Token header")
        return _parse_token(token_value, answer.json(), self._now(), catalog=catalog)


def _refused(error: UpstreamError) -> UpstreamError:
    """IAM's refusal, saying that it is not tried again."""
    refused = UpstreamError(
        f"{REFUSED_NOTE} ({error.message})",
        category=Category.AUTH_FAILED,
        http_status=error.http_status,
        code=error.code,
        request_id=error.request_id,
    )
    refused.retry_after_seconds = error.retry_after_seconds
    return refused


def _parse_token(value: str, document: Any, now: datetime, *, catalog: bool) -> Token:
    token = document.get("token") if isinstance(document, dict) else None
    if not isinstance(token, dict):
        raise UpstreamError.bad_response("IAM answered without a token object")
    project = token.get("project")
    project_id = project.get("id") if isinstance(project, dict) else None
    if not isinstance(project_id, str) or not project_id:
        raise UpstreamError.bad_response("IAM answered with a token that names no project")
    expires = token.get("expires_at")
    expires_at = plausible_time(expires) if isinstance(expires, str) else None
    if expires_at is None:
        raise UpstreamError.bad_response("IAM answered with a token without a plausible expires_at")
    # Short-lived tokens (shorter than twice the margin) are renewed half-way through their life.
    margin = min(TOKEN_RENEWAL_MARGIN, (expires_at - now) / 2)
    return Token(
        value=value,
        expires_at=expires_at,
        project_id=project_id,
        catalog=catalog_endpoints(token.get("catalog"), project_id) if catalog else None,
        renew_at=expires_at - margin,
    )

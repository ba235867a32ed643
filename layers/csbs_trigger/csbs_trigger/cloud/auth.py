"""How CSBS requests are authenticated.

``CsbsAuth`` is the port: it names the project and endpoint to call, authenticates a prepared
request, and forgets what it cached when CSBS says 401. ``KeystonePasswordAuth`` fetches and
reuses Keystone v3 tokens; ``AccessKeyAuth`` signs each request with an AK/SK pair.
``auth_for`` picks the one the credentials call for.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import requests

from csbs_trigger.cloud import signing
from csbs_trigger.cloud.credentials import (
    AccessKeyCredentials,
    CloudCredentials,
    PasswordCredentials,
)
from csbs_trigger.cloud.transport import send
from csbs_trigger.deadline import Deadline
from csbs_trigger.errors import Category, ConfigError, UpstreamError

# Renew a token this long before IAM says it expires, so no call starts with a dying token.
TOKEN_RENEWAL_MARGIN = timedelta(minutes=10)
# A refused login is answered from memory this long: concurrent plans and polls share it.
REFUSAL_REMEMBERED = timedelta(seconds=60)
_CSBS_CATALOG_TYPES = frozenset({"data-protect", "csbs"})


@dataclass(frozen=True)
class Scope:
    """Where the checkpoint request goes."""

    project_id: str
    csbs_endpoint: str


class CsbsAuth(Protocol):
    def scope(self, deadline: Deadline) -> Scope: ...

    def authenticate(self, request: requests.PreparedRequest, deadline: Deadline) -> None: ...

    def invalidate(self) -> bool:
        """Forget what is cached; True when something was (so the same credentials may pass)."""
        ...

    def secret_values(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class Token:
    value: str = field(repr=False)
    expires_at: datetime
    project_id: str
    csbs_endpoint: str | None
    renew_at: datetime


def auth_for(credentials: CloudCredentials, session: requests.Session) -> CsbsAuth:
    if isinstance(credentials, AccessKeyCredentials):
        return AccessKeyAuth(credentials)
    return KeystonePasswordAuth(credentials, session)


class AccessKeyAuth:
    """Signs every request with the access key; there is nothing to fetch or to cache."""

    def __init__(
        self,
        credentials: AccessKeyCredentials,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._credentials = credentials
        self._sign = signing.SdkHmacSha256Auth(
            credentials.access_key,
            credentials.secret_key,
            credentials.project_id,
            security_token=credentials.security_token,
            now=now,
        )

    def scope(self, deadline: Deadline) -> Scope:
        return Scope(self._credentials.project_id, self._credentials.csbs_endpoint)

    def authenticate(self, request: requests.PreparedRequest, deadline: Deadline) -> None:
        self._sign(request)

    def invalidate(self) -> bool:
        """Nothing cached: a 401 means the keys themselves are refused."""
        return False

    def secret_values(self) -> tuple[str, ...]:
        return self._credentials.secret_values


class KeystonePasswordAuth:
    """Keystone v3 password auth; one token serves every call until shortly before it expires."""

    def __init__(
        self,
        credentials: PasswordCredentials,
        session: requests.Session,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._credentials = credentials
        self._session = session
        self._now = now
        self._lock = threading.Lock()
        self._token: Token | None = None
        # IAM's last refusal of these credentials, and until when it is answered from here.
        self._refused: tuple[UpstreamError, datetime] | None = None

    def scope(self, deadline: Deadline) -> Scope:
        token = self._current_token(deadline)
        endpoint = self._credentials.csbs_endpoint or token.csbs_endpoint
        if endpoint is None:
            raise ConfigError(
                "the cloud secret has no csbs_endpoint and the token's catalog lists no CSBS"
            )
        return Scope(project_id=token.project_id, csbs_endpoint=endpoint)

    def authenticate(self, request: requests.PreparedRequest, deadline: Deadline) -> None:
        request.headers["X-Auth-Token"] = self._current_token(deadline).value

    def invalidate(self) -> bool:
        with self._lock:
            held, self._token = self._token is not None, None
            return held

    def secret_values(self) -> tuple[str, ...]:
        token = self._token
        return self._credentials.secret_values + ((token.value,) if token else ())

    def _current_token(self, deadline: Deadline) -> Token:
        """The lock makes concurrent plans share one token request; a refusal is shared for a
        while too (every refused login counts towards IAM's lockout of the account)."""
        with self._lock:
            if self._refused is not None and self._now() < self._refused[1]:
                raise copy.copy(self._refused[0])
            if self._token is None or self._now() >= self._token.renew_at:
                try:
                    self._token = self._request_token(deadline)
                except UpstreamError as error:
                    if error.category is Category.AUTH_FAILED:
                        self._refused = (error, self._now() + REFUSAL_REMEMBERED)
                    raise
            return self._token

    def _request_token(self, deadline: Deadline) -> Token:
        credentials = self._credentials
        project: dict[str, Any] = (
            {"id": credentials.project_id}
            if credentials.project_id
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
        # The catalog is only needed to find CSBS; without it the answer is a few hundred bytes.
        url = f"{credentials.auth_url}/auth/tokens"
        if credentials.csbs_endpoint:
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
        return _parse_token(token_value, answer.json(), self._now())


def _parse_token(value: str, document: Any, now: datetime) -> Token:
    token = document.get("token") if isinstance(document, dict) else None
    if not isinstance(token, dict):
        raise UpstreamError.bad_response("IAM answered without a token object")
    project = token.get("project")
    project_id = project.get("id") if isinstance(project, dict) else None
    if not isinstance(project_id, str) or not project_id:
        raise UpstreamError.bad_response("IAM answered with a token that names no project")
    try:
        expires_at = datetime.fromisoformat(str(token.get("expires_at")).replace("Z", "+00:00"))
    except ValueError:
        raise UpstreamError.bad_response("IAM answered with a token without expires_at") from None
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    # Short-lived tokens (shorter than twice the margin) are renewed half-way through their life.
    margin = min(TOKEN_RENEWAL_MARGIN, (expires_at - now) / 2)
    return Token(
        value=value,
        expires_at=expires_at,
        project_id=project_id,
        csbs_endpoint=_csbs_endpoint_from_catalog(token.get("catalog"), project_id),
        renew_at=expires_at - margin,
    )


def _csbs_endpoint_from_catalog(catalog: Any, project_id: str) -> str | None:
    """The catalog lists CSBS as ``https://csbs.<region>.../v1/<project_id>``: keep the base."""
    for service in catalog if isinstance(catalog, list) else []:
        if not isinstance(service, dict) or service.get("type") not in _CSBS_CATALOG_TYPES:
            continue
        for endpoint in service.get("endpoints") or []:
            url = endpoint.get("url") if isinstance(endpoint, dict) else None
            if isinstance(url, str) and endpoint.get("interface", "public") == "public":
                return url.rstrip("/").removesuffix(f"/{project_id}").removesuffix("/v1")
    return None

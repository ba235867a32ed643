"""The cloud secret: which keys it holds and how they become credentials.

The SecretString is a JSON object named after OpenStack clouds.yaml keys, holding exactly one
of two credential sets:

* password: ``auth_url``, ``username``, ``password``, ``user_domain_name``, and ``project_id``
  or ``project_name`` (Keystone v3 token auth);
* access keys: ``ak``, ``sk``, ``project_id``, optionally ``security_token`` (request signing).

``csbs_endpoint`` and ``cbr_endpoint`` name the services' endpoints. Without them, a ``region``
of a known cloud gives them (``endpoints.endpoint_for_region``); password credentials can also
take them from the token's catalog. Errors name missing or malformed keys, never their values.
"""

from __future__ import annotations

import re
from dataclasses import field
from typing import Any
from urllib.parse import urlsplit

from csbs_trigger.cloud.endpoints import Endpoints, is_known_region
from csbs_trigger.errors import ConfigError
from csbs_trigger.settings import config_object
from csbs_trigger.text import printable
from csbs_trigger.values import frozen

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_PASSWORD_KEYS = ("auth_url", "username", "password", "user_domain_name")
_ACCESS_KEYS = ("ak", "sk")
# The backup services' endpoint keys (any service's ``<name>_endpoint`` is read alike).
_ENDPOINT_KEY = re.compile(r"[a-z]+_endpoint")
_PROJECT_ID = re.compile(r"[0-9a-f]{32}")
_ACCESS_KEY = re.compile(r"[A-Za-z0-9]{1,128}")


@frozen
class PasswordCredentials:
    """Keystone v3 password credentials scoped to one project."""

    auth_url: str
    username: str
    password: str = field(repr=False)
    user_domain_name: str
    project_id: str | None
    project_name: str | None
    endpoints: Endpoints

    @property
    def secret_values(self) -> tuple[str, ...]:
        """Values that must never reach a log line or a notification."""
        return (self.password,)


@frozen
class AccessKeyCredentials:
    """An access key pair (and, for temporary credentials, a security token) for one project."""

    access_key: str
    secret_key: str = field(repr=False)
    security_token: str | None = field(repr=False)
    project_id: str
    endpoints: Endpoints

    @property
    def secret_values(self) -> tuple[str, ...]:
        return (self.secret_key,) + ((self.security_token,) if self.security_token else ())


CloudCredentials = PasswordCredentials | AccessKeyCredentials


def parse_cloud_secret(secret_string: str) -> CloudCredentials:
    secret = config_object(secret_string, "the cloud secret")

    has_password = any(key in secret for key in ("username", "password"))
    has_access_keys = any(key in secret for key in _ACCESS_KEYS)
    if has_password and has_access_keys:
        raise ConfigError(
            "the cloud secret holds both username/password and ak/sk: keep exactly one set"
        )
    if not (has_password or has_access_keys):
        raise ConfigError("the cloud secret holds neither username/password nor ak/sk")
    return _access_keys(secret) if has_access_keys else _password(secret)


def _password(secret: dict[str, Any]) -> PasswordCredentials:
    values = {key: _text(secret, key) for key in _PASSWORD_KEYS}
    missing = [key for key, value in values.items() if not value]
    project_id, project_name = _project_id(secret), _text(secret, "project_name")
    if not (project_id or project_name):
        missing.append("project_id (or project_name)")
    if missing:
        raise ConfigError(f"the cloud secret lacks keys: {', '.join(missing)}")
    return PasswordCredentials(
        auth_url=_url(secret, "auth_url"),
        username=secret["username"].strip(),
        password=secret["password"],  # as it is: spaces may belong to a password
        user_domain_name=secret["user_domain_name"].strip(),
        project_id=project_id,
        project_name=project_name,
        endpoints=_endpoints(secret),
    )


def _access_keys(secret: dict[str, Any]) -> AccessKeyCredentials:
    access_key, secret_key = _text(secret, "ak"), _text(secret, "sk")
    project_id = _project_id(secret)
    endpoints = _endpoints(secret)
    named = {"ak": access_key, "sk": secret_key, "project_id": project_id}
    missing = [key for key, value in named.items() if not value]
    if not (endpoints.configured or endpoints.region):
        missing.append("csbs_endpoint or cbr_endpoint (or region)")
    if missing or not (access_key and secret_key and project_id):
        raise ConfigError(f"the cloud secret lacks keys: {', '.join(missing)}")
    if not _ACCESS_KEY.fullmatch(access_key):
        raise ConfigError("the cloud secret key ak must be letters and digits only")
    security_token = _text(secret, "security_token")
    if security_token is not None and not security_token.isascii():
        # It travels in a header, which carries no other characters.
        raise ConfigError("the cloud secret key security_token must be ASCII text")
    return AccessKeyCredentials(
        access_key=access_key,
        secret_key=secret_key,
        security_token=security_token,
        project_id=project_id,
        endpoints=endpoints,
    )


def _project_id(secret: dict[str, Any]) -> str | None:
    """A project id is 32 hex digits (it goes into every request path)."""
    value = _text(secret, "project_id")
    if value is not None and not _PROJECT_ID.fullmatch(value):
        raise ConfigError("the cloud secret key project_id must be 32 hexadecimal digits")
    return value


def _endpoints(secret: dict[str, Any]) -> Endpoints:
    configured = {
        key: _url(secret, key)
        for key in sorted(secret)
        if _ENDPOINT_KEY.fullmatch(key) and _text(secret, key)
    }
    region = _text(secret, "region")
    if region is not None and not is_known_region(region):
        raise ConfigError(
            "the cloud secret key region names no known cloud region; set csbs_endpoint or "
            "cbr_endpoint instead"
        )
    return Endpoints(configured, region)


def _text(secret: dict[str, Any], key: str) -> str | None:
    """A value without surrounding spaces; a control character (a pasted newline) is refused
    rather than carried into a header, a URL or a signature."""
    value = secret.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"the cloud secret key {key} must be a string")
    if not printable(value):
        raise ConfigError(f"the cloud secret key {key} holds a control character or invalid text")
    return value.strip() or None


def _url(secret: dict[str, Any], key: str) -> str:
    """An https URL; plain http only to loopback, where the local stand-ins live."""
    value = _text(secret, key)
    parts = urlsplit(value or "")
    try:
        parts.port  # noqa: B018 - urllib checks the port only when it is read
    except ValueError:
        raise ConfigError(f"the cloud secret key {key} has an invalid port") from None
    secure = parts.scheme == "https" or (
        parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS
    )
    if not value or not parts.hostname or not secure or parts.query or parts.fragment:
        raise ConfigError(f"the cloud secret key {key} must be an https URL")
    return value.rstrip("/")

"""The cloud secret: which keys it holds and how they become credentials.

The SecretString is a JSON object named after OpenStack clouds.yaml keys. Errors name missing or
malformed keys, never their values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from csbs_trigger.errors import ConfigError

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class PasswordCredentials:
    """Keystone v3 password credentials scoped to one project."""

    auth_url: str
    username: str
    password: str = field(repr=False)
    user_domain_name: str
    project_id: str | None
    project_name: str | None
    csbs_endpoint: str | None

    @property
    def secret_values(self) -> tuple[str, ...]:
        """Values that must never reach a log line or a notification."""
        return (self.password,)


# A second scheme (AK/SK signing) joins this union and parse_cloud_secret.
CloudCredentials = PasswordCredentials


def parse_cloud_secret(secret_string: str) -> CloudCredentials:
    try:
        secret = json.loads(secret_string)
    except ValueError:
        raise ConfigError("the cloud secret is not valid JSON") from None
    if not isinstance(secret, dict):
        raise ConfigError("the cloud secret must be a JSON object")

    required = ("auth_url", "username", "password", "user_domain_name")
    missing = [key for key in required if not _text(secret, key)]
    if not (_text(secret, "project_id") or _text(secret, "project_name")):
        missing.append("project_id (or project_name)")
    if missing:
        raise ConfigError(f"the cloud secret lacks keys: {', '.join(missing)}")

    return PasswordCredentials(
        auth_url=_url(secret, "auth_url"),
        username=secret["username"],
        password=secret["password"],
        user_domain_name=secret["user_domain_name"],
        project_id=_text(secret, "project_id"),
        project_name=_text(secret, "project_name"),
        csbs_endpoint=_url(secret, "csbs_endpoint") if "csbs_endpoint" in secret else None,
    )


def _text(secret: dict[str, Any], key: str) -> str | None:
    value = secret.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"the cloud secret key {key} must be a string")
    return value.strip() or None


def _url(secret: dict[str, Any], key: str) -> str:
    """An https URL; plain http only to loopback, where the local stand-ins live."""
    value = _text(secret, key)
    parts = urlsplit(value or "")
    secure = parts.scheme == "https" or (
        parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS
    )
    if not value or not parts.hostname or not secure or parts.query or parts.fragment:
        raise ConfigError(f"the cloud secret key {key} must be an https URL")
    return value.rstrip("/")

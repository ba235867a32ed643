"""The cloud secret: which keys it holds and how they become credentials.

The SecretString is a JSON object named after OpenStack clouds.yaml keys, holding exactly one
of two credential sets:

* password: ``auth_url``, ``username``, ``password``, ``user_domain_name``, and ``project_id``
  or ``project_name`` (Keystone v3 token auth);
* access keys: ``ak``, ``sk``, ``project_id``, optionally ``security_token`` (request signing).

``csbs_endpoint`` names the CSBS endpoint. Without it, a ``region`` of a known cloud gives it
(``csbs_endpoint_for_region``); password credentials can also take it from the token's catalog.
Errors name missing or malformed keys, never their values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from csbs_trigger.errors import ConfigError
from csbs_trigger.settings import config_object

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_PASSWORD_KEYS = ("auth_url", "username", "password", "user_domain_name")
_ACCESS_KEYS = ("ak", "sk")
# Open Telekom Cloud regions and their domain; every other region name is Huawei Cloud's.
_OTC_REGION_DOMAINS = {"eu-de": "otc.t-systems.com", "eu-nl": "otc.t-systems.com",
                       "eu-ch2": "sc.otc.t-systems.com"}  # fmt: skip
_HUAWEI_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]{1,3}")


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


@dataclass(frozen=True)
class AccessKeyCredentials:
    """An access key pair (and, for temporary credentials, a security token) for one project."""

    access_key: str
    secret_key: str = field(repr=False)
    security_token: str | None = field(repr=False)
    project_id: str
    csbs_endpoint: str

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
    missing = [key for key in _PASSWORD_KEYS if not _text(secret, key)]
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
        csbs_endpoint=_endpoint(secret),
    )


def _access_keys(secret: dict[str, Any]) -> AccessKeyCredentials:
    missing = [key for key in (*_ACCESS_KEYS, "project_id") if not _text(secret, key)]
    endpoint = _endpoint(secret)
    if endpoint is None:
        missing.append("csbs_endpoint (or region)")
    if missing or endpoint is None:
        raise ConfigError(f"the cloud secret lacks keys: {', '.join(missing)}")
    return AccessKeyCredentials(
        access_key=secret["ak"],
        secret_key=secret["sk"],
        security_token=_text(secret, "security_token"),
        project_id=secret["project_id"],
        csbs_endpoint=endpoint,
    )


def _endpoint(secret: dict[str, Any]) -> str | None:
    if _text(secret, "csbs_endpoint"):
        return _url(secret, "csbs_endpoint")
    region = _text(secret, "region")
    if region:
        return csbs_endpoint_for_region(region)
    return None


def csbs_endpoint_for_region(region: str) -> str:
    """CSBS's public endpoint in a region of Open Telekom Cloud or Huawei Cloud."""
    if region in _OTC_REGION_DOMAINS:
        return f"https://csbs.{region}.{_OTC_REGION_DOMAINS[region]}"
    if _HUAWEI_REGION.fullmatch(region):
        return f"https://csbs.{region}.myhuaweicloud.com"
    raise ConfigError(
        "the cloud secret key region names no known cloud region; set csbs_endpoint instead"
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

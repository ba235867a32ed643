"""The ticket secret (``TICKET_SECRET_ID``): one ticket system per webhook source name, checked
once as it is read. A sender whose entry is wrong is a ``config_error`` for that sender only."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from csbs_trigger.errors import ConfigError, InvalidEventError
from csbs_trigger.values import frozen

JIRA_CLOUD, JIRA_DC, SERVICENOW = "jira-cloud", "jira-dc", "servicenow"
KINDS = (JIRA_CLOUD, JIRA_DC, SERVICENOW)
DEFAULT_TABLE = "change_request"
_MAX_FIELD_LENGTH = 1024
_TABLE = re.compile(r"[a-z][a-z0-9_]{0,79}")
# A reference goes into a URL path: only a ticket key of its kind is one.
_JIRA_REFERENCE = re.compile(r"[A-Z][A-Z0-9_]{0,63}-[0-9]{1,18}|[0-9]{1,18}")
_SERVICENOW_REFERENCE = re.compile(r"[A-Za-z]{1,20}[0-9]{1,20}")
# Refusal marks are keyed by a stretched digest of the credentials, never the credentials.
_DIGEST_ITERATIONS = 20_000


@frozen
class TicketSystem:
    """Where one sender's tickets live, and how to sign in there."""

    sender: str
    kind: str
    base_url: str  # without a trailing slash
    user: str | None  # basic auth: the Jira Cloud account's email, the ServiceNow user
    secret: str  # the API token, personal access token or password
    internal: bool = False  # Jira Service Management: an internal note, not a public reply
    table: str = DEFAULT_TABLE  # ServiceNow's table of the tickets

    @property
    def label(self) -> str:
        return "ServiceNow" if self.kind == SERVICENOW else "Jira"

    @property
    def secrets(self) -> tuple[str, ...]:
        """What must never be shown: the secret, and the basic auth header's form of it."""
        if self.user is None:
            return (self.secret,)
        basic = base64.b64encode(f"{self.user}:{self.secret}".encode()).decode()
        return (self.secret, basic)

    @cached_property
    def fingerprint(self) -> str:
        """Names these credentials (a refusal holds until they change) without revealing them."""
        salt = json.dumps([self.sender, self.kind, self.base_url, self.user]).encode()
        digest = hashlib.pbkdf2_hmac("sha256", self.secret.encode(), salt, _DIGEST_ITERATIONS)
        return hashlib.sha256(salt + digest).hexdigest()

    def check_reference(self, reference: str) -> None:
        """The ticket key goes into a URL: anything but a key of this kind is refused."""
        pattern = _SERVICENOW_REFERENCE if self.kind == SERVICENOW else _JIRA_REFERENCE
        if not pattern.fullmatch(reference):
            shape = ("letters then digits (CHG0031337)" if self.kind == SERVICENOW
                     else "an issue key (OPS-123) or a numeric id")  # fmt: skip
            raise InvalidEventError(f"the ticket reference is not {shape}")


def parse_systems(document: Any) -> dict[str, TicketSystem | ConfigError]:
    """Each sender's system, or the ``config_error`` that keeps its results from being
    written (the message names the sender and the field, never a value)."""
    if not isinstance(document, dict):
        raise ConfigError("the ticket secret must be a JSON object keyed by webhook source name")
    systems: dict[str, TicketSystem | ConfigError] = {}
    for sender, entry in document.items():
        try:
            systems[sender] = _system(sender, entry)
        except ConfigError as error:
            systems[sender] = error
    return systems


def _system(sender: str, entry: Any) -> TicketSystem:
    def fail(what: str) -> ConfigError:
        return ConfigError(f"the ticket secret of sender {sender}: {what}")

    if not isinstance(entry, dict):
        raise fail("must be an object")
    kind = entry.get("kind")
    if kind not in KINDS:
        raise fail(f"kind must be one of {', '.join(KINDS)}")

    def text(name: str) -> str:
        value = entry.get(name)
        if not isinstance(value, str) or not value.strip() or len(value) > _MAX_FIELD_LENGTH:
            raise fail(f"{name} is missing or not a text of at most {_MAX_FIELD_LENGTH}")
        return value

    url_key = "instance_url" if kind == SERVICENOW else "base_url"
    base_url = _checked_url(text(url_key), fail, url_key)
    if kind == JIRA_CLOUD:
        internal = entry.get("internal", False)
        if not isinstance(internal, bool):
            raise fail("internal must be true or false")
        return TicketSystem(sender, kind, base_url, text("email"), text("api_token"), internal)
    if kind == JIRA_DC:
        return TicketSystem(sender, kind, base_url, None, text("token"))
    table = entry.get("table", DEFAULT_TABLE)
    if not isinstance(table, str) or not _TABLE.fullmatch(table):
        raise fail("table must be a ServiceNow table name (change_request)")
    return TicketSystem(sender, kind, base_url, text("username"), text("password"), table=table)


def _checked_url(url: str, fail: Any, name: str) -> str:
    """An ``https://`` address, or ``http://`` to this machine (a local run), and nothing a
    request could be led astray by: no user, query or fragment."""
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    if parts.username or parts.password or parts.query or parts.fragment or not host:
        raise fail(f"{name} must be a plain https:// address")
    if parts.scheme == "https" or (parts.scheme == "http" and _loopback(host)):
        return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")
    raise fail(f"{name} must be https:// (or http:// to a loopback address)")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

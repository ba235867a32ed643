"""Webhook senders: how each one signs, and where its payload keeps plan, servers and ids.

The shipped sources live in ``webhook_sources.json`` beside this file; the ``WEBHOOK_SOURCES``
setting (JSON of the same shape) adds sources or replaces shipped ones whole. Per source:

* ``scheme``: ``standard-webhooks``, ``hub-signature`` or ``bearer`` (see webhook_auth);
* ``plan_id`` (a CSBS policy) or ``vault_id`` (a CBR vault), or both where the payload names
  either; ``delivery_id`` (required); ``resources``, ``reference`` and the backends' options
  (``auto_trigger``, ``incremental``, ``name``, ``description``): each a JMESPath expression
  over the JSON body, or ``{"header": "<name>"}`` for a header;
* instead of (or besides) a plan or vault: what a resolution finds them by (``resolution.py``),
  ``policy_id`` (a CBR policy), ``resources`` (server ids) or ``resource_names`` (server names;
  a list, or a string of names separated by commas), and ``backend`` (mapped, or ``fixed``);
  used when the payload names no plan or vault;
* ``timestamp`` (optional): where the signed body says when it was sent (Unix seconds or
  milliseconds); it must then lie within the tolerance, so a captured body cannot be replayed
  later;
* ``tolerance_seconds`` (optional): how far a signed time may lie from now for this source
  (default ``WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS``); never beyond the idempotency record's
  lifetime, which answers the replays inside it;
* ``when`` (optional): a JMESPath condition over the body; a signed delivery for which it is not
  true is ignored (200, nothing started, nothing notified);
* ``token_header`` (``bearer`` only, optional): the header that carries the token, where the
  sender cannot set ``Authorization``.

A wrong mapping is a ``config_error``; a payload that does not fit it is an ``invalid_event``
that names the missing field.
"""

from __future__ import annotations

import json
import re
from dataclasses import field
from pathlib import Path
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult

from csbs_trigger.aws.idempotency import DEFAULT_EXPIRY_SECONDS
from csbs_trigger.cloud.backends import (
    BACKEND_BY_POLICY_KEY,
    BACKEND_BY_TARGET_KEY,
    BACKENDS,
    OPTION_NAMES,
    PLAN_FIELDS,
)
from csbs_trigger.errors import ConfigError, InvalidEventError
from csbs_trigger.plans import PlanItem, RejectedPlan
from csbs_trigger.settings import config_object
from csbs_trigger.triggers.events import parse_plan
from csbs_trigger.triggers.webhook_auth import SCHEMES
from csbs_trigger.values import frozen

SHIPPED_SOURCES = Path(__file__).with_name("webhook_sources.json")
_SOURCE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_TARGETS = tuple(BACKEND_BY_TARGET_KEY)  # plan_id, vault_id
_POLICIES = tuple(BACKEND_BY_POLICY_KEY)  # policy_id
# What a payload names to be resolved when it names no plan or vault.
_ASKING = (*_POLICIES, "resources", "resource_names")
_FIELDS = (*_TARGETS, *_POLICIES, *PLAN_FIELDS, "resource_names", "backend", "reference",
           "delivery_id", "timestamp")  # fmt: skip
_REQUIRED = ("scheme", "delivery_id")
_OPTIONS = ("tolerance_seconds", "when", "token_header", "fixed")
# What a source may fix for every delivery, never read from a body: a signed sender must not
# pick another tenant's account or project.
_FIXED = ("credentials", "project_id", "backend")
_MAX_ID_LENGTH = 200
_HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}")


@frozen
class Field:
    """Where one value is: a header, or a compiled JMESPath expression over the body."""

    description: str
    header: str | None = None
    expression: ParsedResult | None = None

    def read(self, body: Any, headers: dict[str, str]) -> Any:
        """The value, or ``Unreadable`` where the expression cannot take the body's types
        (``join`` over numbers, ``sort`` over mixed types, ``>`` between a string and a
        number): a signed sender's body, never a crash."""
        if self.expression is None:
            return headers.get(self.header or "")
        try:
            return self.expression.search(body)
        except (JMESPathError, TypeError, ValueError, ArithmeticError, RecursionError) as exc:
            raise Unreadable(type(exc).__name__) from None


class Unreadable(Exception):
    """A field's expression raised on this body (its exception's type, nothing of the body)."""


@frozen
class Mapped:
    """What a payload says: the plan (or why it is unusable), the delivery id, the ticket."""

    plan: PlanItem
    delivery_id: str | None
    reference: str | None
    timestamp: Any = None  # from a source's ``timestamp`` field: when the sender signed it


@frozen
class Source:
    """One webhook sender: how it signs, and where its payload keeps each field."""

    name: str
    scheme: str
    fields: dict[str, Field]
    tolerance_seconds: float | None = None  # None: the function's default
    when: Field | None = None
    bearer_header: str = "authorization"
    fixed: dict[str, Any] = field(default_factory=dict)  # credentials, project_id, keep_days

    def ignores(self, body: Any) -> str | None:
        """Why a delivery is not for this source to act on (its ``when`` is not true), or None."""
        if self.when is None:
            return None
        try:
            met = self.when.read(body, {})
        except Unreadable:  # a type the expression cannot take: not met
            met = None
        if met is True:
            return None
        return (
            f"the delivery does not meet the {self.name} source's condition {self.when.description}"
        )

    def map(self, body: Any, headers: dict[str, str]) -> Mapped:
        values: dict[str, Any] = {}
        unreadable: list[str] = []
        for name, where in self.fields.items():
            try:
                values[name] = where.read(body, headers)
            except Unreadable:
                unreadable.append(f"{name} at {where.description}")
        reference = _short_text(values.get("reference"))
        delivery_id = _short_text(values.get("delivery_id"))
        timestamp = values.get("timestamp")
        if unreadable:
            error = InvalidEventError(
                f"the {self.name} payload does not fit its mapping: {', '.join(unreadable)} "
                "cannot be read from it"
            )
            return Mapped(RejectedPlan(error), delivery_id, reference, timestamp)
        # Ticket fields left empty arrive as "" (ServiceNow) or null: they name nothing.
        targets = {key: values[key] for key in _TARGETS if _named(values.get(key))}
        if not targets:  # what a resolution finds them by
            targets = {key: values[key] for key in _POLICIES if _named(values.get(key))}
            names = _listed(values.get("resource_names"))
            if names:
                targets["resource_names"] = names
        resources = _listed(values.get("resources"))
        if not targets and not resources:
            places = " or ".join(
                f"{key} at {self.fields[key].description}"
                for key in (*_TARGETS, *_ASKING)
                if key in self.fields
            )
            error = InvalidEventError(f"the {self.name} payload names no {places}")
            return Mapped(RejectedPlan(error), delivery_id, reference, timestamp)
        if delivery_id is None:
            # Without a delivery id a retried delivery would run twice: refuse instead.
            error = InvalidEventError(
                f"the {self.name} delivery has no id at {self.fields['delivery_id'].description}"
            )
            return Mapped(RejectedPlan(error), None, reference, timestamp)
        plan: dict[str, Any] = dict(targets)
        # Ticketing systems send an empty field as "" (or null, or []): every server of the plan.
        if resources:
            plan["resources"] = resources
        for name in (*OPTION_NAMES, "keep_days", "backend"):  # where the payload gives them
            if values.get(name) is not None:
                plan[name] = values[name]
        plan_item = parse_plan({**plan, **self.fixed}, where=f"{self.name} payload")
        return Mapped(plan_item, delivery_id, reference, timestamp)


def _named(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _listed(value: Any) -> Any:
    """A list field as ticket fields hold it: a list, or "a, b" (an empty one is none)."""
    if isinstance(value, str):
        value = [item for item in re.split(r"[\s,;]+", value) if item]
    return None if value == [] else value


def load_sources(override: str | None) -> dict[str, Source]:
    """The shipped sources, extended or replaced by ``override`` (JSON)."""
    config: dict[str, Any] = json.loads(SHIPPED_SOURCES.read_text())
    if override:
        config.update(
            config_object(override, "WEBHOOK_SOURCES", shape="a JSON object keyed by source name")
        )
    return {name: _source(name, entry) for name, entry in config.items()}


def _source(name: str, entry: Any) -> Source:
    if not _SOURCE_NAME.fullmatch(name):
        raise ConfigError(f"webhook source name {name[:40]!r} is not a lower-case word")
    if not isinstance(entry, dict):
        raise ConfigError(f"webhook source {name} must be an object")
    missing = [key for key in _REQUIRED if key not in entry]
    if not any(key in entry for key in (*_TARGETS, *_ASKING)):
        missing.append(" or ".join((*_TARGETS, *_ASKING)))
    unknown = sorted(set(entry) - set(_FIELDS) - set(_OPTIONS) - {"scheme"})
    if missing or unknown:
        raise ConfigError(
            f"webhook source {name}: missing {missing or 'nothing'}, unknown {unknown or 'nothing'}"
        )
    if entry["scheme"] not in SCHEMES:
        raise ConfigError(f"webhook source {name}: scheme must be one of {', '.join(SCHEMES)}")
    # A number is a lifetime the source fixes; a string, where its body gives one.
    keep_days = entry.get("keep_days")
    fixed_keep = {} if keep_days is None or isinstance(keep_days, str) else {"keep_days": keep_days}
    fields = {key: _field(name, key, entry[key]) for key in _FIELDS
              if key in entry and not (key == "keep_days" and fixed_keep)}  # fmt: skip
    when = entry.get("when")
    if when is not None and not isinstance(when, str):
        raise ConfigError(f"webhook source {name}: when must be a JMESPath string")
    return Source(
        name=name,
        scheme=entry["scheme"],
        fields=fields,
        tolerance_seconds=_tolerance(name, entry.get("tolerance_seconds")),
        when=None if when is None else _field(name, "when", when),
        bearer_header=_bearer_header(name, entry),
        fixed=_fixed(name, entry.get("fixed", {}), fixed_keep),
    )


def _fixed(source: str, fixed: Any, keep: dict[str, Any]) -> dict[str, Any]:
    """A source's fixed credentials, project and lifetime, checked as a plan's are."""
    if not isinstance(fixed, dict) or not set(fixed) <= set(_FIXED):
        raise ConfigError(
            f"webhook source {source}: fixed must be an object of {' and '.join(_FIXED)}"
        )
    backend = fixed.get("backend")
    if backend is not None and (not isinstance(backend, str) or backend not in BACKENDS):
        raise ConfigError(
            f"webhook source {source}: fixed backend must be one of {', '.join(BACKENDS)}"
        )
    scope = {key: value for key, value in fixed.items() if key != "backend"}
    checked = parse_plan({"plan_id": "checked", **scope}, where=f"webhook source {source}: fixed")
    if isinstance(checked, RejectedPlan):
        raise ConfigError(checked.error.message)
    lifetime = parse_plan({"plan_id": "checked", **keep}, where=f"webhook source {source}")
    if isinstance(lifetime, RejectedPlan):
        raise ConfigError(lifetime.error.message)
    return {**fixed, **keep}


def _tolerance(source: str, value: Any) -> float | None:
    """A source's timestamp tolerance: replays inside it are answered from the idempotency
    record, so it may never outlast the record."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 1 <= value <= DEFAULT_EXPIRY_SECONDS
    ):
        raise ConfigError(
            f"webhook source {source}: tolerance_seconds must be a number from 1 to "
            f"{DEFAULT_EXPIRY_SECONDS} (the lifetime of the idempotency record)"
        )
    return float(value)


def _bearer_header(source: str, entry: dict[str, Any]) -> str:
    header = entry.get("token_header", "authorization")
    if "token_header" in entry and entry["scheme"] != "bearer":
        raise ConfigError(f"webhook source {source}: token_header goes with the bearer scheme")
    if not isinstance(header, str) or not _HEADER_NAME.fullmatch(header):
        raise ConfigError(f"webhook source {source}: token_header must be a header name")
    return header.lower()


def _field(source: str, key: str, spec: Any) -> Field:
    if isinstance(spec, dict) and set(spec) == {"header"} and isinstance(spec["header"], str):
        return Field(description=f"header {spec['header']}", header=spec["header"].lower())
    if isinstance(spec, str):
        try:
            return Field(description=repr(spec), expression=jmespath.compile(spec))
        except JMESPathError:
            raise ConfigError(
                f"webhook source {source}: {key} is not a valid JMESPath expression"
            ) from None
    raise ConfigError(
        f'webhook source {source}: {key} must be a JMESPath string or {{"header": name}}'
    )


def _short_text(value: Any) -> str | None:
    """Ids and ticket references: short strings (numbers are read as text)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        value = str(value)
    if isinstance(value, str) and 0 < len(value.strip()) <= _MAX_ID_LENGTH:
        return value.strip()
    return None

"""The function's configuration, read from the environment once per container."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from csbs_trigger import safe_json
from csbs_trigger.errors import ConfigError
from csbs_trigger.models import DEFAULT_PROVIDER_ID
from csbs_trigger.values import frozen

DEFAULT_METRICS_NAMESPACE = "CsbsTrigger"
# Any recovery point objective of a second or more (a century: no bound anyone would reach).
MAX_RPO_SECONDS = 100 * 365 * 24 * 3600


@frozen
class Settings:
    """Names match template.yaml's environment; tests read them from there.

    Without a topic nothing can be reported, so its absence fails the invocation; a missing
    secret id is reported as a ``config_error`` notification when a plan needs it.
    """

    topic_arn: str
    secret_id: str | None
    provider_id: str = DEFAULT_PROVIDER_ID
    cloud_secret_prefix: str | None = None  # a plan's ``credentials`` name a secret below it
    secret_max_age_seconds: float = 300.0
    connect_timeout_seconds: float = 3.05
    read_timeout_seconds: float = 20.0
    max_concurrency: int = 4
    max_attempts: int = 3
    idempotency_table: str | None = None
    webhook_secret_id: str | None = None
    webhook_sources: str | None = None  # JSON that extends or overrides the shipped sources
    webhook_max_body_bytes: int = 256 * 1024
    webhook_tolerance_seconds: float = 300.0
    tracking_table: str | None = None  # None: backups are started, not followed to their end
    tracking_deadline_seconds: float = 8 * 3600.0
    tracking_poll_interval_seconds: float = 300.0
    login_refusal_table: str | None = None  # None: a refused login is remembered per container
    metrics_namespace: str = DEFAULT_METRICS_NAMESPACE
    plan_queue_url: str | None = None  # where a firing of more than 20 plans sends them
    plan_max_deliveries: int = 5  # a throttled queued plan is told failed at this delivery
    history_table: str | None = None  # None: outcomes are not kept for the digest
    digest_rpo_seconds: float = 26 * 3600.0  # a plan's last success older than this: a breach
    expiry_table: str | None = None  # the register of backups with a lifetime
    default_keep_days: int | None = None  # a plan without keep_days: None, kept forever
    expiry_mode: str = "delete"  # or "report": the sweep deletes nothing, the digest tells
    default_backend: str | None = None  # where a plan naming only servers looks them up
    ticket_secret_id: str | None = None  # None: results are not written into tickets
    ticket_ledger_table: str | None = None  # each result written once (the ticket ledger)
    ticket_queue_url: str | None = None  # the ticket update queue (to hold a message back)
    ticket_max_deliveries: int = 8  # a write still failing at this delivery is reported failed

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        if not env.get("NOTIFICATION_TOPIC_ARN"):
            raise ConfigError("environment variable NOTIFICATION_TOPIC_ARN is not set")
        return cls(
            topic_arn=env["NOTIFICATION_TOPIC_ARN"],
            secret_id=env.get("CSBS_SECRET_ID") or None,
            provider_id=env.get("CSBS_PROVIDER_ID") or DEFAULT_PROVIDER_ID,
            cloud_secret_prefix=env.get("CLOUD_SECRET_PREFIX") or None,
            secret_max_age_seconds=_number(env, "SECRET_MAX_AGE_SECONDS", 300.0, 0, 3600),
            connect_timeout_seconds=_number(env, "CSBS_CONNECT_TIMEOUT_SECONDS", 3.05, 0.1, 30),
            read_timeout_seconds=_number(env, "CSBS_READ_TIMEOUT_SECONDS", 20.0, 0.1, 300),
            max_concurrency=int(_number(env, "MAX_CONCURRENCY", 4, 1, 16)),
            max_attempts=int(_number(env, "CSBS_MAX_ATTEMPTS", 3, 1, 10)),
            idempotency_table=env.get("IDEMPOTENCY_TABLE") or None,
            webhook_secret_id=env.get("WEBHOOK_SECRET_ID") or None,
            webhook_sources=env.get("WEBHOOK_SOURCES") or None,
            webhook_max_body_bytes=int(
                _number(env, "WEBHOOK_MAX_BODY_BYTES", 256 * 1024, 1024, 6 * 1024 * 1024)
            ),
            webhook_tolerance_seconds=_number(
                env, "WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS", 300, 10, 3600
            ),
            tracking_table=env.get("TRACKING_TABLE") or None,
            tracking_deadline_seconds=_number(
                env, "TRACKING_DEADLINE_SECONDS", 8 * 3600, 1, 7 * 24 * 3600
            ),
            tracking_poll_interval_seconds=_number(
                env, "TRACKING_POLL_INTERVAL_SECONDS", 300, 0, 24 * 3600
            ),
            login_refusal_table=env.get("LOGIN_REFUSAL_TABLE") or None,
            metrics_namespace=env.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_METRICS_NAMESPACE,
            plan_queue_url=env.get("PLAN_QUEUE_URL") or None,
            plan_max_deliveries=int(_number(env, "PLAN_MAX_DELIVERIES", 5, 1, 100)),
            history_table=env.get("HISTORY_TABLE") or None,
            digest_rpo_seconds=_number(env, "DIGEST_RPO_SECONDS", 26 * 3600, 1, MAX_RPO_SECONDS),
            expiry_table=env.get("EXPIRY_TABLE") or None,
            default_keep_days=_whole(env, "DEFAULT_KEEP_DAYS", 1, 3650),
            expiry_mode=_choice(env, "EXPIRY_MODE", ("delete", "report")),
            default_backend=_choice(env, "DEFAULT_BACKEND", ("", "csbs", "cbr")) or None,
            ticket_secret_id=env.get("TICKET_SECRET_ID") or None,
            ticket_ledger_table=env.get("TICKET_LEDGER_TABLE") or None,
            ticket_queue_url=env.get("TICKET_QUEUE_URL") or None,
            ticket_max_deliveries=int(_number(env, "TICKET_MAX_DELIVERIES", 8, 1, 100)),
        )


def config_object(text: str, what: str, *, shape: str = "a JSON object") -> dict[str, Any]:
    """A JSON object from configuration (a secret, an override), or a config_error naming it."""
    try:
        value = safe_json.loads(text)
    except ValueError:
        raise ConfigError(f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{what} must be {shape}")
    return value


def _whole(env: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    """A whole number from ``low`` to ``high``, or None where the variable is empty."""
    value = _number(env, name, 0, low, high) if env.get(name) else None
    if value is not None and not value.is_integer():
        raise ConfigError(f"environment variable {name} must be a whole number")
    return None if value is None else int(value)


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (the first where the variable is empty)."""
    value = env.get(name) or choices[0]
    if value not in choices:
        named = ", ".join(choice for choice in choices if choice)
        raise ConfigError(f"environment variable {name} must be one of {named}")
    return value


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name} is not a number") from None
    if not low <= value <= high:
        raise ConfigError(f"environment variable {name} must be between {low:g} and {high:g}")
    return value

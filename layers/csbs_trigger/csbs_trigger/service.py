"""From one invocation event to one notification per plan.

``Runtime`` holds what outlives an invocation (clients, the cached secret, the token);
``handle_event`` is the whole scheduled/direct path, shared by every handler that runs plans.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import requests

from csbs_trigger.auth import CsbsAuth, auth_for
from csbs_trigger.credentials import CloudCredentials, parse_cloud_secret
from csbs_trigger.csbs import CsbsClient, RetryPolicy
from csbs_trigger.deadline import Deadline
from csbs_trigger.errors import ConfigError, TriggerError
from csbs_trigger.events import RejectedPlan, parse_event
from csbs_trigger.log import logger
from csbs_trigger.models import BackupRequest, Checkpoint, Trigger
from csbs_trigger.notify import Outcome, PublishError, Redactor, SnsPublisher, build_notification
from csbs_trigger.secret_store import SecretStore
from csbs_trigger.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sns import SNSClient


class Runtime:
    """Everything that lives as long as the Lambda container: settings, clients and caches.

    It is the CSBS client's ``AuthSource``: one auth (and so one token) per credential set,
    built again from a freshly read secret when IAM or CSBS refuses it.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        secretsmanager: SecretsManagerClient,
        sns: SNSClient,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.publisher = SnsPublisher(sns, settings.topic_arn)
        self._secrets = (
            SecretStore(
                secretsmanager, settings.secret_id, max_age_seconds=settings.secret_max_age_seconds
            )
            if settings.secret_id
            else None
        )
        self._session = session or requests.Session()
        self.client = CsbsClient(
            self,
            self._session,
            settings.provider_id,
            retry=RetryPolicy(max_attempts=settings.max_attempts),
            sleep=sleep,
            rng=rng,
        )
        self._lock = threading.Lock()
        self._credentials: CloudCredentials | None = None
        self._auth: CsbsAuth | None = None
        self._retired_secret_values: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, **overrides: Any) -> Runtime:
        import boto3
        from botocore.config import Config

        settings = Settings.from_env()
        # botocore retries AWS calls itself; only the CSBS call is retried by hand.
        config = Config(
            connect_timeout=3, read_timeout=5, retries={"mode": "standard", "max_attempts": 3}
        )
        session = boto3.session.Session()
        return cls(
            settings,
            secretsmanager=session.client("secretsmanager", config=config),
            sns=session.client("sns", config=config),
            **overrides,
        )

    def current(self) -> CsbsAuth:
        """The auth for the credentials in the (cached) secret."""
        return self._auth_for(self._read_secret(refresh=False), stale=None)

    def refresh(self, stale: CsbsAuth) -> CsbsAuth:
        """A new auth from the secret read afresh, unless another plan has made one already."""
        with self._lock:
            if self._auth is not None and self._auth is not stale:
                return self._auth
        return self._auth_for(self._read_secret(refresh=True), stale=stale)

    def secret_values(self) -> tuple[str, ...]:
        """Every secret this container holds now or held before the last rotation."""
        with self._lock:
            current = self._auth.secret_values() if self._auth else ()
            return current + self._retired_secret_values

    def _read_secret(self, *, refresh: bool) -> str:
        if self._secrets is None:
            raise ConfigError("environment variable CSBS_SECRET_ID is not set")
        return self._secrets.get(refresh=refresh)

    def _auth_for(self, secret_string: str, *, stale: CsbsAuth | None) -> CsbsAuth:
        credentials = parse_cloud_secret(secret_string)
        with self._lock:
            if self._auth is None or self._auth is stale or credentials != self._credentials:
                if self._auth is not None:
                    self._retired_secret_values = self._auth.secret_values()
                self._auth = auth_for(credentials, self._session)
                self._credentials = credentials
            return self._auth


def handle_event(event: Any, context: Any, runtime: Runtime) -> dict[str, Any]:
    """Run every plan of the event and publish one notification each.

    Returns normally once the notifications are out, even when backups failed: raising would
    make Lambda's asynchronous retries repeat the backups. Only a failed publish raises.
    """
    invocation_id = getattr(context, "aws_request_id", None)
    settings = runtime.settings
    deadline = Deadline.from_context(
        context, settings.connect_timeout_seconds, settings.read_timeout_seconds
    )
    parsed = parse_event(event, request_id=invocation_id)
    outcomes = _run_plans(parsed.trigger, parsed.items, invocation_id, deadline, runtime)
    _publish(outcomes, runtime)
    results = [outcome.summary() for outcome in outcomes]
    succeeded = sum(outcome.error is None for outcome in outcomes)
    return {
        "outcome": _overall(succeeded, len(outcomes)),
        "trigger": {"source": parsed.trigger.source, "id": parsed.trigger.id},
        "plans": results,
    }


def _run_plans(
    trigger: Trigger,
    items: tuple[BackupRequest | RejectedPlan, ...],
    invocation_id: str | None,
    deadline: Deadline,
    runtime: Runtime,
) -> list[Outcome]:
    started = time.monotonic()

    def run(item: BackupRequest | RejectedPlan) -> Outcome:
        checkpoint: Checkpoint | None = None
        error: TriggerError | None = None
        attempts = 0
        if isinstance(item, RejectedPlan):
            error = item.error
        else:
            try:
                execution = runtime.client.execute_backup_policy(item, deadline)
                checkpoint, attempts = execution.checkpoint, execution.attempts
            except TriggerError as failure:
                error, attempts = failure, failure.attempts
        return Outcome(
            trigger=trigger,
            invocation_id=invocation_id,
            plan_id=item.plan_id,
            request=item if isinstance(item, BackupRequest) else None,
            checkpoint=checkpoint,
            error=error,
            attempts=attempts,
            duration_ms=int((time.monotonic() - started) * 1000),
        )

    backups = sum(isinstance(item, BackupRequest) for item in items)
    if backups <= 1:
        return [run(item) for item in items]
    # One failing plan never hides another: each runs (bounded) and ends in its own outcome.
    workers = min(backups, runtime.settings.max_concurrency)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run, items))


def _publish(outcomes: list[Outcome], runtime: Runtime) -> None:
    redact = Redactor(runtime.secret_values())
    failures: list[str] = []
    for outcome in outcomes:
        _log(outcome, redact)
        try:
            runtime.publisher.publish(build_notification(outcome, redact))
        except PublishError as error:
            logger.error(
                "notification not published",
                extra={"plan_id": outcome.plan_id, "reason": str(error)},
            )
            failures.append(str(error))
    if failures:
        raise PublishError(
            f"{len(failures)} of {len(outcomes)} notifications not published: {failures[0]}"
        )


def _log(outcome: Outcome, redact: Redactor) -> None:
    fields: dict[str, Any] = {
        **outcome.summary(),
        "trigger_source": outcome.trigger.source,
        "trigger_id": outcome.trigger.id,
        "attempts": outcome.attempts,
        "duration_ms": outcome.duration_ms,
    }
    if outcome.error is None:
        logger.info("backup policy executed", extra=fields)
        return
    fields.update(
        retryable=outcome.error.retryable,
        http_status=outcome.error.http_status,
        error_code=outcome.error.code,
        error_message=redact(outcome.error.message),
    )
    logger.warning("backup trigger failed", extra=fields)


def _overall(succeeded: int, total: int) -> str:
    if succeeded == total:
        return "succeeded"
    return "failed" if succeeded == 0 else "partial"

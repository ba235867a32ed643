"""What lives as long as the Lambda container: settings, clients, caches.

Each ``Account`` (the stack's own secret, or one a plan names by ``credentials``) is the
``AuthSource`` of the clients acting with it: one auth (and so one token per project) per
value of its secret, built again from a freshly read secret when IAM or the service refuses
it.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

import requests
from requests.adapters import HTTPAdapter

from csbs_trigger import safe_json
from csbs_trigger.aws.history import HistoryTable
from csbs_trigger.aws.idempotency import Deduplicator
from csbs_trigger.aws.login_refusals import TableLoginGuard
from csbs_trigger.aws.metrics import Metrics
from csbs_trigger.aws.secret_store import SecretStore
from csbs_trigger.aws.sns import SnsPublisher
from csbs_trigger.aws.sqs import Queue
from csbs_trigger.aws.tracking import TrackingTable
from csbs_trigger.cloud.api import ApiClient, RetryPolicy, Throttle
from csbs_trigger.cloud.auth import CsbsAuth, LoginGuard, Logins, MemoryLoginGuard, auth_for
from csbs_trigger.cloud.backend import BackupService
from csbs_trigger.cloud.backends import ADAPTERS_BY_NAME
from csbs_trigger.cloud.credentials import CloudCredentials, parse_cloud_secret
from csbs_trigger.cloud.endpoints import Service
from csbs_trigger.errors import ConfigError
from csbs_trigger.notify import Redactor
from csbs_trigger.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

    from csbs_trigger.aws.expiry_register import ExpiryRegister
    from csbs_trigger.aws.ticket_ledger import TicketLedger
    from csbs_trigger.cloud.ecs import ServerDirectory
    from csbs_trigger.tickets.clients import TicketClient
    from csbs_trigger.tickets.systems import TicketSystem
    from csbs_trigger.triggers.webhook_sources import Source


class Runtime:
    """Settings, AWS clients, the HTTP session, the cached secrets and the current auth."""

    def __init__(
        self,
        settings: Settings,
        *,
        secretsmanager: SecretsManagerClient,
        sns: SNSClient,
        dynamodb: DynamoDBClient | None = None,
        sqs: SQSClient | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.clock = clock  # Unix time: what webhook timestamps are checked against
        self.sns, self.dynamodb = sns, dynamodb
        self.publisher = SnsPublisher(sns, settings.topic_arn)
        self.metrics = Metrics(settings.metrics_namespace)
        self.webhook_secrets_store = (
            SecretStore(
                secretsmanager,
                settings.webhook_secret_id,
                max_age_seconds=settings.secret_max_age_seconds,
            )
            if settings.webhook_secret_id
            else None
        )
        self.plan_queue = (
            Queue(sqs, settings.plan_queue_url)
            if sqs is not None and settings.plan_queue_url
            else None
        )
        self.ticket_queue = (
            Queue(sqs, settings.ticket_queue_url)
            if sqs is not None and settings.ticket_queue_url
            else None
        )
        self.ticket_secret = (
            SecretStore(secretsmanager, settings.ticket_secret_id, what="the ticket secret",
                        max_age_seconds=settings.secret_max_age_seconds)
            if settings.ticket_secret_id
            else None
        )  # fmt: skip
        self._ticket_systems: tuple[str, dict[str, TicketSystem | ConfigError]] | None = None
        self.senders_without_writeback: set[str] = set()  # logged once per container
        self.tracking = (
            TrackingTable(dynamodb, settings.tracking_table)
            if dynamodb is not None and settings.tracking_table
            else None
        )
        self.history = (
            HistoryTable(dynamodb, settings.history_table)
            if dynamodb is not None and settings.history_table
            else None
        )
        login_guard: LoginGuard = (
            TableLoginGuard(dynamodb, settings.login_refusal_table, clock)
            if dynamodb is not None and settings.login_refusal_table
            else MemoryLoginGuard(clock)
        )
        # Every account's token requests, by login: one user named in several secrets is one.
        self.logins = Logins(login_guard)
        self._secretsmanager = secretsmanager
        self._session = session or _http_session(settings.max_concurrency)
        self._retry = RetryPolicy(max_attempts=settings.max_attempts)
        self._sleep, self._rng = sleep, rng
        self._lock = threading.Lock()
        self._webhook_sources: dict[str, Source] | None = None
        # By credentials name (None: the stack's own secret): each its own secret, token and
        # clients, so that one account's trouble is never another's.
        self._accounts: dict[str | None, Account] = {}
        self._services: dict[tuple[str, str | None], BackupService] = {}
        self._redactor: tuple[tuple[str, ...], Redactor] | None = None

    @classmethod
    def from_env(cls, aws_session: Any = None, **overrides: Any) -> Runtime:
        """As Lambda builds it; ``aws_session`` (a boto3 Session) is for tests that start many
        containers: its loaded service models are shared, what it configures is not."""
        import boto3
        from botocore.config import Config

        settings = Settings.from_env()
        # botocore retries AWS calls itself; only the CSBS call is retried by hand. Every plan
        # of a batch may hold a connection at once: the pools are as large as the concurrency.
        config = Config(
            connect_timeout=3,
            read_timeout=5,
            retries={"mode": "standard", "max_attempts": 3},
            max_pool_connections=settings.max_concurrency,
        )
        session = aws_session or boto3.session.Session()

        def client(service: str) -> Any:
            return _LazyClient(session, service, config)

        return cls(
            settings,
            secretsmanager=client("secretsmanager"),
            sns=client("sns"),
            dynamodb=client("dynamodb")
            if settings.idempotency_table
            or settings.tracking_table
            or settings.login_refusal_table
            or settings.history_table
            or settings.ticket_ledger_table
            or settings.expiry_table
            else None,
            sqs=client("sqs") if settings.plan_queue_url or settings.ticket_queue_url else None,
            **overrides,
        )

    def service(self, backend: str, credentials: str | None = None) -> BackupService:
        """The client of ``backend`` ("csbs", "cbr") acting with ``credentials`` (None: the
        stack's own secret)."""
        with self._lock:
            service = self._services.get((backend, credentials))
        if service is None:
            adapter = ADAPTERS_BY_NAME[backend]
            api = self._api(adapter.backend.service, credentials)
            with self._lock:
                service = self._services.setdefault(
                    (backend, credentials), adapter.build(api, self.settings)
                )
        return service

    def servers(self, credentials: str | None = None) -> ServerDirectory:
        """The ECS server list acting with ``credentials``: server ids by name."""
        from csbs_trigger.cloud.ecs import SERVICE, ServerDirectory

        return ServerDirectory(self._api(SERVICE, credentials))

    def _api(self, service: Service, credentials: str | None) -> ApiClient:
        account = self.account(credentials)
        return ApiClient(service, account, self._session, retry=self._retry, sleep=self._sleep,
                         rng=self._rng, throttle=account.throttle)  # fmt: skip

    @property
    def services(self) -> dict[str, BackupService]:
        """Every backend's client with the stack's own secret."""
        return {name: self.service(name) for name in ADAPTERS_BY_NAME}

    def account(self, credentials: str | None) -> Account:
        """The account of ``credentials``: its secret (CSBS_SECRET_ID, or the prefix and the
        name) and its auth."""
        with self._lock:
            account = self._accounts.get(credentials)
            if account is None:
                account = self._accounts[credentials] = Account(
                    credentials, self._secret_store(credentials), self._session, self.logins
                )
            return account

    @cached_property
    def expiry_register(self) -> ExpiryRegister | None:
        """Built when first needed: a function that starts no backup with a lifetime, and
        tracks none, never loads it."""
        from csbs_trigger.aws.expiry_register import ExpiryRegister

        if self.dynamodb is None or not self.settings.expiry_table:
            return None
        return ExpiryRegister(self.dynamodb, self.settings.expiry_table)

    @cached_property
    def ticket_ledger(self) -> TicketLedger | None:
        """Built when first needed (only the ticket update function has one)."""
        from csbs_trigger.aws.ticket_ledger import TicketLedger

        if self.dynamodb is None or not self.settings.ticket_ledger_table:
            return None
        return TicketLedger(self.dynamodb, self.settings.ticket_ledger_table)

    @cached_property
    def deduplicator(self) -> Deduplicator | None:
        """Built when a trigger first needs it (Powertools idempotency is a large import the
        completion tracker never needs)."""
        if self.dynamodb is None or not self.settings.idempotency_table:
            return None
        return Deduplicator(self.dynamodb, self.settings.idempotency_table)

    def webhook_sources(self) -> dict[str, Source]:
        """The configured webhook senders, loaded and checked once per container (only the
        webhook function reads them: their module and its JMESPath load here)."""
        from csbs_trigger.triggers.webhook_sources import load_sources

        if self._webhook_sources is None:
            self._webhook_sources = load_sources(self.settings.webhook_sources)
        return self._webhook_sources

    def webhook_secrets(self, source: Source) -> list[str]:
        """The active secrets of one sender (several while a secret is being rotated).

        A weak one (blank, short, undecodable) would let anybody sign: the source is then a
        ``config_error`` until the secret is fixed, named in the log without its value.
        """
        from csbs_trigger.triggers.webhook_auth import secret_weakness

        if self.webhook_secrets_store is None:
            raise ConfigError("environment variable WEBHOOK_SECRET_ID is not set")
        try:
            secrets = safe_json.loads(self.webhook_secrets_store.get())
        except ValueError:
            raise ConfigError("the webhook secret is not valid JSON") from None
        value = secrets.get(source.name) if isinstance(secrets, dict) else None
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list):
            return []
        if not all(isinstance(item, str) for item in values):
            raise ConfigError(f"the webhook secret of source {source.name} is not a string")
        for item in values:
            weakness = secret_weakness(source.scheme, item)
            if weakness:
                raise ConfigError(f"the webhook secret of source {source.name}: {weakness}")
        return list(values)

    def ticket_systems(self, *, refresh: bool = False) -> dict[str, TicketSystem | ConfigError]:
        """Each sender's ticket system (or why it has none that works), from the ticket secret:
        empty when write-back is off. Parsed once per value of the secret."""
        from csbs_trigger.tickets.systems import parse_systems

        if self.ticket_secret is None:
            return {}
        text = self.ticket_secret.get(refresh=refresh)
        with self._lock:
            if self._ticket_systems is None or self._ticket_systems[0] != text:
                try:
                    systems = parse_systems(safe_json.loads(text))
                except ValueError:
                    raise ConfigError("the ticket secret is not valid JSON") from None
                self._ticket_systems = (text, systems)
            return self._ticket_systems[1]

    def ticket_client(self, system: TicketSystem) -> TicketClient:
        from csbs_trigger.tickets.clients import client_for

        timeouts = (self.settings.connect_timeout_seconds, self.settings.read_timeout_seconds)
        return client_for(system, self._session, timeouts)

    def secret_values(self) -> tuple[str, ...]:
        """Every secret this container holds now or held before the last rotation, of every
        account and ticket system."""
        with self._lock:
            accounts = list(self._accounts.values())
            systems = self._ticket_systems[1].values() if self._ticket_systems else ()
        tickets = [value for system in systems if not isinstance(system, ConfigError)
                   for value in system.secrets]  # fmt: skip
        return (*(value for account in accounts for value in account.secret_values()), *tickets)

    def redactor(self) -> Redactor:
        """A redactor of every secret held now or before the last rotation (built once each)."""
        values = self.secret_values()
        with self._lock:
            if self._redactor is None or self._redactor[0] != values:
                self._redactor = (values, Redactor(values))
            return self._redactor[1]

    def _secret_store(self, credentials: str | None) -> SecretStore | None:
        settings = self.settings
        secret_id = settings.secret_id
        if credentials is not None:
            prefix = settings.cloud_secret_prefix
            secret_id = None if prefix is None else f"{prefix}{credentials}"
        if secret_id is None:
            return None
        return SecretStore(self._secretsmanager, secret_id,
                           max_age_seconds=settings.secret_max_age_seconds)  # fmt: skip


class Account:
    """One set of cloud credentials, read from its secret, and the auth built from them: the
    ``AuthSource`` of the clients that act with it. One auth (and so one token per project)
    per value of the secret, built again from a freshly read secret when IAM or the service
    refuses it."""

    def __init__(
        self,
        name: str | None,
        secrets: SecretStore | None,
        session: requests.Session,
        logins: Logins,
    ) -> None:
        self.name = name  # None: the stack's own secret (CSBS_SECRET_ID)
        self.throttle = Throttle()  # the gateway's rate limit counts per account
        self._secrets = secrets
        self._session = session
        self._logins = logins
        self._lock = threading.Lock()
        self._credentials: CloudCredentials | None = None
        self._auth: CsbsAuth | None = None
        self._retired_secret_values: tuple[str, ...] = ()
        self._parsed: tuple[str, CloudCredentials] | None = None

    def current(self) -> CsbsAuth:
        """The auth for the credentials in the (cached) secret."""
        return self._auth_for(self._parse(self._read_secret(refresh=False)), stale=None)

    def refresh(self, stale: CsbsAuth) -> CsbsAuth | None:
        """What to try after ``stale`` was refused, or None when nothing changed.

        The secret is read afresh: new credentials get a new auth. The same credentials are
        tried again only where ``stale`` held a token to drop (the service refused the token,
        not the password): a refused password sent again counts towards IAM's lockout.
        """
        with self._lock:
            if self._auth is not None and self._auth is not stale:
                return self._auth  # another plan has refreshed it already
        credentials = self._parse(self._read_secret(refresh=True))
        with self._lock:
            if credentials == self._credentials:
                return stale if stale.invalidate() else None
        return self._auth_for(credentials, stale=stale)

    def secret_values(self) -> tuple[str, ...]:
        """The secrets this account holds now or held before the last rotation."""
        with self._lock:
            current = self._auth.secret_values() if self._auth else ()
            return current + self._retired_secret_values

    def _parse(self, secret_string: str) -> CloudCredentials:
        """The secret's credentials, parsed once per value of the secret."""
        parsed = self._parsed
        if parsed is None or parsed[0] != secret_string:
            try:
                parsed = self._parsed = (secret_string, parse_cloud_secret(secret_string))
            except ConfigError as error:
                raise self._named(error) from None
        return parsed[1]

    def _read_secret(self, *, refresh: bool) -> str:
        if self._secrets is None:
            missing = "CSBS_SECRET_ID" if self.name is None else "CLOUD_SECRET_PREFIX"
            raise self._named(ConfigError(f"environment variable {missing} is not set"))
        try:
            return self._secrets.get(refresh=refresh)
        except ConfigError as error:
            raise self._named(error) from None

    def _named(self, error: ConfigError) -> ConfigError:
        """The stack's own secret's errors as they were; a named one's say which it is."""
        if self.name is None:
            return error
        return ConfigError(f"credentials {self.name}: {error.message}", code=error.code)

    def _auth_for(self, credentials: CloudCredentials, *, stale: CsbsAuth | None) -> CsbsAuth:
        with self._lock:
            if self._auth is None or self._auth is stale or credentials != self._credentials:
                if self._auth is not None:
                    self._retired_secret_values = self._auth.secret_values()
                self._auth = auth_for(credentials, self._session, self._logins)
                self._credentials = credentials
            return self._auth


class _LazyClient:
    """A boto3 client built when first used: a container pays for building one (about 4 ms of
    CPU each) only for the services it calls; a scheduled firing of 20 plans or fewer never
    builds its SQS client. One at a time in the process: a boto3 session must not build two
    clients at once, a batch's plans may first reach a client side by side, and a session may
    serve more than one Runtime (tests' containers share one)."""

    _building = threading.Lock()

    def __init__(self, session: Any, service: str, config: Any) -> None:
        self._session, self._service, self._config = session, service, config
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            with self._building:
                if self._client is None:
                    self._client = self._session.client(self._service, config=self._config)
        return getattr(self._client, name)


def _http_session(pool_size: int) -> requests.Session:
    """One keep-alive connection per concurrent plan, none discarded under a full batch."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


_container_runtime: Runtime | None = None


def container_runtime() -> Runtime:
    """This Lambda container's Runtime, built on the first invocation rather than at import
    (import-time reads slow cold starts and tests); every handler of the container shares it,
    and calls this once at the start of each invocation."""
    global _container_runtime
    if _container_runtime is None:
        _container_runtime = Runtime.from_env()
    _container_runtime.logins.new_invocation()  # every handler calls this once per invocation
    return _container_runtime

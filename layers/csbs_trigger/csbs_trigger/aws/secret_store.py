"""Secrets Manager adapter: reads a secret and keeps it for a bounded time across invocations."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from csbs_trigger.errors import Category, ConfigError, TriggerError, UpstreamError

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

# Errors that no retry will mend: the operator must fix the secret or the function's role.
_CONFIG_ERROR_CODES = frozenset(
    {
        "ResourceNotFoundException",
        "AccessDeniedException",
        "DecryptionFailure",
        "InvalidRequestException",
        "InvalidParameterException",
    }
)


class SecretStore:
    """One secret's string, fetched at most once per ``max_age`` seconds (or on ``refresh``)."""

    def __init__(
        self,
        client: SecretsManagerClient,
        secret_id: str,
        *,
        max_age_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        what: str = "the cloud secret",
    ) -> None:
        self._what = what
        self._client = client
        self._secret_id = secret_id
        self._max_age = max_age_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._value: str | None = None
        self._fetched_at = 0.0

    def get(self, *, refresh: bool = False) -> str:
        with self._lock:
            fresh = self._clock() - self._fetched_at < self._max_age
            if self._value is None or refresh or not fresh:
                self._value = self._fetch()
                self._fetched_at = self._clock()
            return self._value

    def _fetch(self) -> str:
        try:
            answer = self._client.get_secret_value(SecretId=self._secret_id)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "Unknown")
            if code in _CONFIG_ERROR_CODES:
                raise ConfigError(f"{self._what} could not be read ({code})", code=code) from None
            raise TriggerError(
                f"Secrets Manager failed ({code})", category=Category.UNAVAILABLE, code=code
            ) from None
        except BotoCoreError as exc:
            raise UpstreamError.network("Secrets Manager", exc, request_sent=False) from None
        if "SecretString" not in answer:
            raise ConfigError(f"{self._what} holds binary data, not a JSON string")
        return answer["SecretString"]

"""Notifications: one SNS message per plan per trigger, succeeded or failed.

Message schema (version 1) is documented in README.md; subscribers filter on the ``outcome``,
``plan_id`` and ``error_category`` message attributes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from csbs_trigger.errors import TriggerError
from csbs_trigger.models import BackupRequest, Checkpoint, Trigger

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sns.type_defs import MessageAttributeValueTypeDef

SCHEMA_VERSION = 1
MAX_SUBJECT_LENGTH = 100
# Shorter values would redact ordinary words; no real password or token is this short.
_MIN_REDACTED_LENGTH = 4


@dataclass(frozen=True)
class Outcome:
    """What became of one plan of one trigger: a checkpoint or a classified error."""

    trigger: Trigger
    invocation_id: str | None
    plan_id: str | None
    request: BackupRequest | None
    checkpoint: Checkpoint | None
    error: TriggerError | None
    attempts: int
    duration_ms: int
    idempotency_key: str | None = None  # None: this run is not deduplicated

    @property
    def outcome(self) -> str:
        return "succeeded" if self.error is None else "failed"


@dataclass(frozen=True)
class Notification:
    subject: str
    message: str
    attributes: dict[str, str]

    @cached_property
    def content(self) -> dict[str, Any]:
        """The message as data (parsed once): what answers and summaries are read from."""
        return json.loads(self.message)  # type: ignore[no-any-return]

    def summary(self) -> dict[str, Any]:
        """The short form the handler returns and logs."""
        content = self.content
        summary: dict[str, Any] = {
            "plan_id": (content["request"] or {}).get("plan_id"),
            "outcome": content["outcome"],
        }
        if content["checkpoint"]:
            summary["checkpoint_id"] = content["checkpoint"]["id"]
        if content["error"]:
            summary["error_category"] = content["error"]["category"]
        return summary

    def to_record(self) -> dict[str, Any]:
        """What the idempotency table keeps of a run: enough to answer and publish again."""
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Notification:
        return cls(
            subject=record["subject"], message=record["message"], attributes=record["attributes"]
        )


class Redactor:
    """Removes known secret values (passwords, tokens) from any text about to leave the function."""

    def __init__(self, secret_values: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for value in secret_values:
            if len(value) >= _MIN_REDACTED_LENGTH:
                forms.update({value, json.dumps(value)[1:-1]})
        # Longest first, so a secret that contains another is removed whole.
        self._forms = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for form in self._forms:
            text = text.replace(form, "[redacted]")
        return text


def build_notification(outcome: Outcome, redact: Redactor) -> Notification:
    request: dict[str, Any] | None
    if outcome.request is not None:
        request = outcome.request.to_dict()
    elif outcome.plan_id is not None:
        request = {"plan_id": outcome.plan_id, "resources": None, "auto_trigger": None}
    else:
        request = None
    message = {
        "schema_version": SCHEMA_VERSION,
        "outcome": outcome.outcome,
        "trigger": outcome.trigger.to_dict(),
        "invocation_id": outcome.invocation_id,
        "idempotency_key": outcome.idempotency_key,
        "request": request,
        "checkpoint": outcome.checkpoint.to_dict() if outcome.checkpoint else None,
        "error": outcome.error.to_dict() if outcome.error else None,
        "attempts": outcome.attempts,
        "duration_ms": outcome.duration_ms,
        "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    attributes = {"outcome": outcome.outcome}
    if outcome.plan_id:
        attributes["plan_id"] = outcome.plan_id
    if outcome.error is not None:
        attributes["error_category"] = outcome.error.category.value
    return Notification(
        subject=_subject(outcome),
        message=redact(json.dumps(message, ensure_ascii=False)),
        attributes=attributes,
    )


def _subject(outcome: Outcome) -> str:
    plan = f" for plan {outcome.plan_id}" if outcome.plan_id else ""
    if outcome.error is None:
        subject = f"CSBS backup started{plan}"
    else:
        subject = f"CSBS backup failed ({outcome.error.category.value}){plan}"
    return subject[:MAX_SUBJECT_LENGTH]


class PublishError(Exception):
    """A notification could not be published: the invocation must fail so Lambda keeps the event."""


class SnsPublisher:
    def __init__(self, client: SNSClient, topic_arn: str) -> None:
        self._client = client
        self._topic_arn = topic_arn

    def publish(self, notification: Notification) -> str:
        attributes: dict[str, MessageAttributeValueTypeDef] = {
            name: {"DataType": "String", "StringValue": value}
            for name, value in notification.attributes.items()
        }
        try:
            answer = self._client.publish(
                TopicArn=self._topic_arn,
                Subject=notification.subject,
                Message=notification.message,
                MessageAttributes=attributes,
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "Unknown")
            raise PublishError(f"SNS refused the notification ({code})") from None
        except BotoCoreError as exc:
            raise PublishError(f"SNS could not be reached ({type(exc).__name__})") from None
        return answer["MessageId"]

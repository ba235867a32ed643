"""SNS: publishes notifications, and tells a refusal for good from a failure worth a retry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from csbs_trigger.notify import Notification

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sns.type_defs import MessageAttributeValueTypeDef


class PublishError(Exception):
    """A notification could not be published: the invocation must fail so Lambda keeps the event."""


class PublishRefused(PublishError):
    """SNS will never take this notification as it is (too large, an invalid parameter)."""


# SNS's answers to a message it will refuse however often it is sent.
_REFUSED_CODES = frozenset({"InvalidParameter", "InvalidParameterValue"})


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
            refused = PublishRefused if code in _REFUSED_CODES else PublishError
            raise refused(f"SNS refused the notification ({code})") from None
        except (ParamValidationError, UnicodeError) as exc:  # refused before it was sent
            raise PublishRefused(
                f"SNS cannot take the notification ({type(exc).__name__})"
            ) from None
        except BotoCoreError as exc:
            raise PublishError(f"SNS could not be reached ({type(exc).__name__})") from None
        return answer["MessageId"]

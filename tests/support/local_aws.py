"""Local AWS: moto in server mode on loopback, reached by boto3 through ``AWS_ENDPOINT_URL``.

Nothing is patched: the code under test builds its clients as it does in Lambda. The server
runs in this process, so the resources a test starts from (tables from the template, the topic
and its inbox, queues, secrets) are made in moto's own models directly: the same state the
API would make, without the ~5 ms an HTTP round trip costs each (about 16 a test).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import requests
import yaml
from moto.server import ThreadedMotoServer

REGION = "eu-central-1"
TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


@dataclass(frozen=True)
class Delivered:
    """One notification as an SQS subscriber of the topic receives it."""

    subject: str | None
    message: dict[str, Any]
    raw_message: str
    attributes: dict[str, str]
    message_id: str  # what SNS answered the publish with


class Inbox:
    """An SQS queue subscribed to the notification topic."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self._queue_url = queue_url

    def drain(self) -> list[Delivered]:
        delivered: list[Delivered] = []
        while True:
            answer = self._sqs.receive_message(
                QueueUrl=self._queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            )
            messages = answer.get("Messages", [])
            if not messages:
                return delivered
            for message in messages:
                envelope = json.loads(message["Body"])
                delivered.append(
                    Delivered(
                        subject=envelope.get("Subject"),
                        message=json.loads(envelope["Message"]),
                        raw_message=envelope["Message"],
                        attributes={
                            name: value["Value"]
                            for name, value in envelope.get("MessageAttributes", {}).items()
                        },
                        message_id=envelope["MessageId"],
                    )
                )
            self._sqs.delete_message_batch(QueueUrl=self._queue_url, Entries=[
                {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                for index, message in enumerate(messages)
            ])  # fmt: skip


class _TemplateLoader(yaml.SafeLoader):
    """Reads template.yaml with its CloudFormation tags (``!Ref``, ``!If``, ...) as plain data."""


def _plain(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)  # type: ignore[arg-type]


_TemplateLoader.add_multi_constructor("!", _plain)


def read_template() -> dict[str, Any]:
    """template.yaml as plain data, parsed once per text of the file (parsing it took 40 ms, a
    fifth of every test's set-up); callers only read it."""
    return _parsed_template(TEMPLATE.read_text())


@functools.cache
def _parsed_template(text: str) -> dict[str, Any]:
    return yaml.load(text, Loader=_TemplateLoader)  # noqa: S506 - a safe loader


class LocalAws:
    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._clients: dict[str, Any] = {}

    def __enter__(self) -> LocalAws:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per AWS call otherwise
        self._server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.stop()

    @property
    def endpoint_url(self) -> str:
        host, port = self._server.get_host_and_port()
        return f"http://{host}:{port}"

    def env(self) -> dict[str, str]:
        """What a process needs in its environment to use this local AWS."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
        }

    def client(self, service: str) -> Any:
        """One client per service for the whole run (building one costs about 100 ms)."""
        if service not in self._clients:
            self._clients[service] = self._new_client(service)
        return self._clients[service]

    def _new_client(self, service: str) -> Any:
        env = self.env()
        return boto3.session.Session().client(
            service,  # type: ignore[call-overload]
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name=REGION,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )

    def reset(self) -> None:
        requests.post(f"{self.endpoint_url}/moto-api/reset", timeout=5).raise_for_status()

    @staticmethod
    def _model(service: str) -> Any:
        """moto's model of ``service`` in this account and region: what the server answers
        from."""
        from moto.backends import get_backend
        from moto.core import DEFAULT_ACCOUNT_ID

        return get_backend(service)[DEFAULT_ACCOUNT_ID][REGION]  # type: ignore[call-overload]

    def create_secret(self, name: str, value: dict[str, Any] | str) -> str:
        text = value if isinstance(value, str) else json.dumps(value)
        created = self._model("secretsmanager").create_secret(
            name=name, secret_string=text, secret_binary=None, description=None, tags=None,
            kms_key_id=None, client_request_token=None, replica_regions=[],
            force_overwrite=False,
        )  # fmt: skip
        return str(json.loads(created)["ARN"])

    def update_secret(self, secret_id: str, value: dict[str, Any] | str) -> None:
        text = value if isinstance(value, str) else json.dumps(value)
        self.client("secretsmanager").put_secret_value(SecretId=secret_id, SecretString=text)

    def idempotency_table(self, name: str = "csbs-trigger-idempotency") -> str:
        return self.table("IdempotencyTable", name)

    def tracking_table(self, name: str = "csbs-trigger-tracking") -> str:
        return self.table("TrackingTable", name)

    def login_refusal_table(self, name: str = "csbs-trigger-login-refusals") -> str:
        return self.table("LoginRefusalTable", name)

    def history_table(self, name: str = "csbs-trigger-history") -> str:
        return self.table("HistoryTable", name)

    def expiry_table(self, name: str = "csbs-trigger-expiry") -> str:
        return self.table("ExpiryTable", name)

    def ticket_ledger_table(self, name: str = "csbs-trigger-ticket-ledger") -> str:
        return self.table("TicketLedgerTable", name)

    def ticket_queue(self, topic_arn: str, name: str = "csbs-trigger-ticket-updates") -> str:
        """The ticket update queue, subscribed to the topic as template.yaml subscribes it (raw
        delivery, its filter policy); its URL."""
        resources = read_template()["Resources"]
        properties = resources["TicketUpdateQueue"]["Properties"]
        url, arn = self._queue(name, VisibilityTimeout=str(properties["VisibilityTimeout"]))
        subscription = resources["TicketUpdateSubscription"]["Properties"]
        self.client("sns").subscribe(
            TopicArn=topic_arn, Protocol="sqs", Endpoint=arn,
            Attributes={"RawMessageDelivery": str(subscription["RawMessageDelivery"]).lower(),
                        "FilterPolicyScope": subscription["FilterPolicyScope"],
                        "FilterPolicy": json.dumps(subscription["FilterPolicy"])},
        )  # fmt: skip
        return url

    def table(self, logical_id: str, name: str) -> str:
        """A DynamoDB table as template.yaml defines it (keys, indexes, billing, TTL)."""
        properties = read_template()["Resources"][logical_id]["Properties"]
        dynamodb = self._model("dynamodb")
        dynamodb.create_table(
            name, schema=properties["KeySchema"], throughput=None,
            attr=properties["AttributeDefinitions"],
            global_indexes=properties.get("GlobalSecondaryIndexes") or [], indexes=[],
            streams=None, billing_mode=properties["BillingMode"], sse_specification=None,
            tags=[], deletion_protection_enabled=None, warm_throughput=None,
        )  # fmt: skip
        dynamodb.update_time_to_live(name, properties["TimeToLiveSpecification"])
        return name

    def plan_queue(self, name: str = "csbs-trigger-plans") -> str:
        """The plan queue as template.yaml defines it (its visibility timeout); its URL."""
        properties = read_template()["Resources"]["PlanQueue"]["Properties"]
        return self._queue(name, VisibilityTimeout=str(properties["VisibilityTimeout"]))[0]

    def _queue(self, name: str, **attributes: str) -> tuple[str, str]:
        """A queue made as CreateQueue makes it: its URL and ARN."""
        queue = self._model("sqs").create_queue(name, **attributes)
        return f"{self.endpoint_url}/{queue.account_id}/{name}", str(queue.queue_arn)

    def run_plan_queue(
        self, queue_url: str, handler: Callable[[dict[str, Any], Any], dict[str, Any]],
        context: Callable[[], Any], held: dict[str, str], *, max_batches: int = 200,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """Lambda's SQS event source, here: batches of up to 10 visible messages to
        ``handler`` until none is left; a message it reports as an item failure stays in the
        queue (in ``held``: its id and last receipt handle), the others are deleted. The
        handler's answers, in order."""
        sqs = self.client("sqs")
        answers: list[dict[str, Any]] = []
        for _ in range(max_batches):
            messages = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
            ).get("Messages", [])
            if not messages:
                return answers
            event = {"Records": [{
                "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"], "attributes": m["Attributes"], "eventSource": "aws:sqs",
            } for m in messages]}  # fmt: skip
            answer = handler(event, context())
            answers.append(answer)
            failed = {failure["itemIdentifier"] for failure in answer["batchItemFailures"]}
            for message in messages:
                if message["MessageId"] in failed:
                    held[message["MessageId"]] = message["ReceiptHandle"]
                else:
                    held.pop(message["MessageId"], None)
                    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        raise AssertionError(f"the plan queue was not drained in {max_batches} batches")

    def topic_with_inbox(self, name: str) -> tuple[str, Inbox]:
        sns = self._model("sns")
        topic_arn = sns.create_topic(name).arn
        queue_url, queue_arn = self._queue(f"{name}-inbox")
        sns.subscribe(topic_arn, queue_arn, "sqs")
        return str(topic_arn), Inbox(self.client("sqs"), queue_url)

"""Local AWS: moto's server application on loopback, reached by boto3 through
``AWS_ENDPOINT_URL``.

Nothing of the code under test is patched: it builds its clients as it does in Lambda. The
server runs in this process, so the resources a test starts from (tables from the template,
the topic and its inbox, queues, secrets) are made in moto's own models directly: the same
state the API would make, without the HTTP round trip each (about 16 a test).
"""

from __future__ import annotations

import functools
import io
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import boto3
import yaml

from support.loopback import KeepAliveHandler, LoopbackServer

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
    """An SQS queue subscribed to the notification topic: what SNS delivered to it, read in
    moto's model of the queue (a test drains it after every step; over the API that was two
    calls each time, and the harness's own calls were a seventh of a test's)."""

    def __init__(self, sqs: Any, queue_name: str) -> None:  # moto's SQS model, the queue's name
        self._sqs = sqs
        self._queue_name = queue_name

    def drain(self) -> list[Delivered]:
        delivered: list[Delivered] = []
        while messages := self._sqs.receive_message(
            self._queue_name, count=10, wait_seconds_timeout=0, visibility_timeout=30
        ):
            for message in messages:
                envelope = json.loads(message.body)
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
                self._sqs.delete_message(self._queue_name, message.receipt_handle)
        return delivered


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


@functools.cache
def _one_signing_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache  # moto's classes are patched once a process, however many servers it starts
def _spare_moto_repeated_work() -> None:
    """Costs of moto that are not AWS's behaviour, paid once instead of over and over: it
    lists its own package folder to route each request (1.3 ms a request), it makes a new
    2048-bit RSA key for each SNS subscription to sign what it delivers (60 ms, once a test
    since every test subscribes its inbox anew), and it parses an update expression twice per
    UpdateItem (to check the names it uses, then to apply it), each time anew (a fifth of the
    call). Routing is as before, the envelopes are signed as before, by one key for every
    subscription, and each expression text is parsed once: its readers only look, and the one
    that rewrites the tree works on its own deep copy."""
    import moto.backends
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser
    from moto.sns.models import Subscription

    modules = tuple(moto.backends.list_of_moto_modules())
    moto.backends.list_of_moto_modules = lambda: modules  # type: ignore[assignment]
    Subscription.private_key = lambda self: _one_signing_key()  # type: ignore[method-assign]
    parse = functools.lru_cache(maxsize=512)(UpdateExpressionParser.make.__func__)
    UpdateExpressionParser.make = classmethod(parse)  # type: ignore[method-assign,assignment]


class _AwsServer(LoopbackServer):
    # moto's models are not thread-safe (a put racing a read of the same table can fail with a
    # 500 that AWS never sends); AWS applies each call atomically, so moto answers one at a
    # time. Connections are still accepted and read side by side.
    app_lock = threading.Lock()


class _AwsHandler(KeepAliveHandler):
    """moto's WSGI application behind an HTTP/1.1 server that keeps connections alive, as AWS's
    endpoints do. moto's own server (werkzeug's development server) closes the connection
    after every answer, which cost each call a new connection and a new thread (about 40 % of
    a call's time here) and never let the clients' connection pools work as in Lambda."""

    timeout = 120  # the idle connection of a container a test dropped: its thread ends

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

    def _serve(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            self.send_error(411, "a request body needs its Content-Length here")
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        host, port = self.server.server_address[:2]
        path, _, query = self.path.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command, "SCRIPT_NAME": "", "QUERY_STRING": query,
            "PATH_INFO": unquote(path, encoding="latin-1"),
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)), "SERVER_NAME": str(host), "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": self.request_version, "REMOTE_ADDR": self.client_address[0],
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
            "wsgi.errors": io.StringIO(), "wsgi.multithread": True, "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }  # fmt: skip
        for name, value in self.headers.items():
            key = "HTTP_" + name.upper().replace("-", "_")
            if key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                environ[key] = f"{environ[key]},{value}" if key in environ else value
        started: list[Any] = []
        chunks: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], *_: Any) -> Any:
            started[:] = [status, headers]
            return chunks.append

        with self.server.app_lock:  # type: ignore[attr-defined]
            answer = self.server.app(environ, start_response)  # type: ignore[attr-defined]
            try:
                chunks.extend(answer)
            finally:
                getattr(answer, "close", lambda: None)()
        status, headers = started
        payload = b"".join(chunks)
        code, _, reason = status.partition(" ")
        self.send_response(int(code), reason)
        for name, value in headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


class LocalAws:
    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        _spare_moto_repeated_work()
        self._server = _AwsServer(("127.0.0.1", 0), _AwsHandler)
        self._server.app = DomainDispatcherApplication(create_backend_app)  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._clients: dict[str, Any] = {}

    def __enter__(self) -> LocalAws:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def endpoint_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

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
        """Every model emptied, as ``POST /moto-api/reset`` empties them (over HTTP that was a
        new connection and server thread for each test), between answers."""
        from moto.moto_api._internal.models import moto_api_backend

        with self._server.app_lock:
            moto_api_backend.reset()

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
            done = [m for m in messages if m["MessageId"] not in failed]
            for message in messages:
                if message["MessageId"] in failed:
                    held[message["MessageId"]] = message["ReceiptHandle"]
                else:
                    held.pop(message["MessageId"], None)
            if done:  # as the event source deletes them: one batch
                deleted = sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
                    {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                    for index, message in enumerate(done)
                ])  # fmt: skip
                assert not deleted.get("Failed"), deleted
        raise AssertionError(f"the plan queue was not drained in {max_batches} batches")

    def topic_with_inbox(self, name: str) -> tuple[str, Inbox]:
        sns = self._model("sns")
        topic_arn = sns.create_topic(name).arn
        _, queue_arn = self._queue(f"{name}-inbox")
        sns.subscribe(topic_arn, queue_arn, "sqs")
        return str(topic_arn), Inbox(self._model("sqs"), f"{name}-inbox")

"""Fixtures: the CSBS/IAM stand-in and local AWS on loopback, and a deployed function.

Everything talks over real sockets: the handler builds its boto3 clients and HTTP session as in
Lambda, and reaches moto's server through ``AWS_ENDPOINT_URL`` and the stand-in through the
cloud secret.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import expiry
import plan_worker
import pytest
import ticket_update
from hypothesis import HealthCheck, settings

import completion_tracker
import csbs_trigger.runtime
import scheduled_backup
import webhook
from csbs_trigger import ConfigError, Runtime, logger
from support.lambda_context import FakeLambdaContext
from support.local_aws import Delivered, Inbox, LocalAws
from support.local_run import SAMPLE_PLANS, SAMPLE_VAULTS
from support.standin import CsbsStandIn, Fault
from support.ticket_standin import TicketStandIn

ROOT = Path(__file__).resolve().parents[1]

# How long an example takes is the machine's doing (a loaded CI runner, mutmut's tracing), not
# the code's: no example fails for it. `make mutation` also fixes the examples it draws, so that
# a mutant's verdict never depends on luck.
settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("mutation", settings.get_profile("suite"), derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))
# Tables tests fill row by row, shown after the run (the fault matrix). Rows go through files,
# so that the rows of every xdist worker reach the one table the controller prints.
SUMMARY_DIR = ROOT / "build" / "summary"


def _is_worker() -> bool:
    return "PYTEST_XDIST_WORKER" in os.environ


def pytest_configure(config: pytest.Config) -> None:
    if not _is_worker():
        shutil.rmtree(SUMMARY_DIR, ignore_errors=True)


def record_row(table: str, columns: tuple[str, ...], order: int, cells: tuple[str, ...]) -> None:
    SUMMARY_DIR.mkdir(parents=True, exist_ok=True)
    record = {"table": table, "columns": columns, "order": order, "cells": cells}
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with (SUMMARY_DIR / f"{worker}.jsonl").open("a") as rows:
        rows.write(json.dumps(record) + "\n")


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if _is_worker():
        return
    seed = getattr(config.option, "randomly_seed", None)  # pytest-randomly's order of this run
    if isinstance(seed, int):
        terminalreporter.write_line(f"random order: repeat it with --randomly-seed={seed}")
    records = [
        json.loads(line)
        for path in sorted(SUMMARY_DIR.glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    for table in sorted({record["table"] for record in records}):
        rows = sorted((r for r in records if r["table"] == table), key=lambda r: r["order"])
        lines = markdown_table(tuple(rows[0]["columns"]), [tuple(r["cells"]) for r in rows])
        report = ROOT / "build" / f"{table}.md"
        report.write_text("\n".join(lines) + "\n")
        terminalreporter.write_sep("-", f"{table} ({len(rows)} rows, also in build/{table}.md)")
        for line in lines:
            terminalreporter.write_line(line)


def markdown_table(columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in [columns, *rows]) for i in range(len(columns))]

    def line(cells: tuple[str, ...]) -> str:
        padded = (cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return [line(columns), rule, *(line(row) for row in rows)]


def read_event(name: str) -> dict[str, Any]:
    """The same samples a user passes to ``sam local invoke -e``."""
    return json.loads((ROOT / "events" / name).read_text())  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def local_aws() -> Iterator[LocalAws]:
    with LocalAws() as aws:
        yield aws


@pytest.fixture
def aws(local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> LocalAws:
    local_aws.reset()
    for name, value in local_aws.env().items():
        monkeypatch.setenv(name, value)
    return local_aws


@pytest.fixture
def standin() -> Iterator[CsbsStandIn]:
    with CsbsStandIn() as server:
        for plan_id, (name, servers) in SAMPLE_PLANS.items():
            server.add_plan(plan_id, name, servers)
        for vault_id, (name, servers) in SAMPLE_VAULTS.items():
            server.add_vault(vault_id, name, servers)
        yield server


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Everything the function logs, as the JSON lines CloudWatch would receive."""
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous = _swap_stream(handler, buffer)
    yield buffer
    # A pytest run in the same process before this one (mutmut's) may have closed the stream
    # the handler was built with.
    _swap_stream(handler, sys.stdout if getattr(previous, "closed", False) else previous)


def _swap_stream(handler: logging.StreamHandler[Any], stream: Any) -> Any:
    """``setStream`` without its flush of the old stream, which may be closed."""
    assert handler.lock is not None  # every Handler makes its lock when it is built
    with handler.lock:
        previous, handler.stream = handler.stream, stream
    return previous


# One boto3 session for every container a test starts: a new one loads the service models
# again (about 100 ms for three clients); clients still read their configuration afresh.
_AWS_SESSION = boto3.session.Session()


@dataclass
class Deployment:
    """The scheduled-backup function wired to the stand-in and local AWS, as a stack would be.

    Backoff pauses are recorded in ``sleeps`` instead of slept, with the jitter pinned at half.
    """

    aws: LocalAws
    standin: CsbsStandIn
    secret_arn: str
    topic_arn: str
    inbox: Inbox
    monkeypatch: pytest.MonkeyPatch
    sleeps: list[float] = field(default_factory=list)
    now: float | None = None  # the function's clock (Unix time); None: the real one
    reserved: list[socket.socket] = field(default_factory=list)  # closed after the test
    published: list[Delivered] = field(default_factory=list)  # every notification drained
    plan_queue_url: str = ""
    held: dict[str, str] = field(default_factory=dict)  # message id: its last receipt handle

    def cold_start(self) -> None:
        """A new container: the next invocation reads configuration and secret afresh."""
        try:
            runtime: Runtime | None = Runtime.from_env(
                _AWS_SESSION, sleep=self.sleeps.append, rng=lambda: 0.5, clock=self.clock
            )
        except ConfigError:
            runtime = None  # the handler meets the same error itself
        self.monkeypatch.setattr(csbs_trigger.runtime, "_container_runtime", runtime)

    def overlapping(self, run: Callable[[], None], answer: Fault) -> None:
        """Run ``run`` twice, the second while CSBS holds the first one's request (and then
        answers it with ``answer``): two deliveries at once, by events rather than by luck."""
        arrived, release = threading.Event(), threading.Event()
        self.standin.fail_next("csbs", replace(answer, arrived=arrived, release=release))
        first = threading.Thread(target=run)
        first.start()
        try:
            assert arrived.wait(30), "the first request never reached the stand-in"
            run()
        finally:
            release.set()
            first.join()

    def closed_port(self) -> int:
        """A loopback port bound for the rest of the test and never listening: refused."""
        reserved = socket.socket()
        reserved.bind(("127.0.0.1", 0))
        self.reserved.append(reserved)
        return int(reserved.getsockname()[1])

    def clock(self) -> float:
        return time.time() if self.now is None else self.now

    def invoke(self, event: Any, context: FakeLambdaContext | None = None) -> dict[str, Any]:
        return scheduled_backup.handler(event, context or FakeLambdaContext())  # type: ignore[no-any-return]

    def work(self) -> list[dict[str, Any]]:
        """The plan worker drains the plan queue as Lambda's SQS event source runs it (a
        message it reports as an item failure stays, in ``held``)."""
        return self.aws.run_plan_queue(
            self.plan_queue_url, plan_worker.handler,
            lambda: FakeLambdaContext(function_name="csbs-trigger-plan-worker"), self.held,
        )  # fmt: skip

    def time_passes(self) -> None:
        """Every message held back (by the worker, or by the visibility timeout) is due now."""
        sqs = self.aws.client("sqs")
        for receipt in self.held.values():
            sqs.change_message_visibility(
                QueueUrl=self.plan_queue_url, ReceiptHandle=receipt, VisibilityTimeout=0
            )

    def queued(self) -> int:
        attributes = self.aws.client("sqs").get_queue_attributes(
            QueueUrl=self.plan_queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(value) for value in attributes.values())

    def sweep(self, context: FakeLambdaContext | None = None) -> dict[str, Any]:
        """One run of the expiry sweep, as its schedule starts it."""
        context = context or FakeLambdaContext(function_name="csbs-trigger-expiry")
        return expiry.handler({}, context)  # type: ignore[no-any-return]

    def track(self, context: FakeLambdaContext | None = None) -> dict[str, Any]:
        """One run of the completion tracker, as its schedule starts it."""
        context = context or FakeLambdaContext(function_name="csbs-trigger-tracker")
        return completion_tracker.handler({}, context)  # type: ignore[no-any-return]

    def invoke_webhook(
        self, event: dict[str, Any], context: FakeLambdaContext | None = None
    ) -> dict[str, Any]:
        context = context or FakeLambdaContext(function_name="csbs-trigger-webhook")
        return webhook.handler(event, context)  # type: ignore[no-any-return]

    @property
    def runtime(self) -> Runtime:
        runtime = csbs_trigger.runtime._container_runtime
        assert runtime is not None
        return runtime

    def refuse(self, client: Any, operation: str, code: str, *, times: int = 1) -> list[str]:
        """Make the next ``times`` calls of ``operation`` on a boto3 ``client`` of the function
        fail with ``code``, as the service would answer (botocore raises its ClientError)."""
        refused: list[str] = []

        def answer(**_: Any) -> tuple[Any, dict[str, Any]] | None:
            if len(refused) >= times:
                return None
            refused.append(operation)
            return SimpleNamespace(status_code=400), {"Error": {"Code": code, "Message": code}}

        service = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register(f"before-call.{service}.{operation}", answer)
        return refused

    def notifications(self) -> list[Delivered]:
        """What was published since the last call (all of it stays in ``published``)."""
        delivered = self.inbox.drain()
        self.published += delivered
        return delivered

    def set_secret(self, value: dict[str, Any] | str) -> None:
        self.aws.update_secret(self.secret_arn, value)

    def set_env(self, name: str, value: str | None) -> None:
        """Change the function's configuration; like a redeploy, it starts a new container."""
        if value is None:
            self.monkeypatch.delenv(name, raising=False)
        else:
            self.monkeypatch.setenv(name, value)
        self.cold_start()


@pytest.fixture
def deployment(
    aws: LocalAws, standin: CsbsStandIn, monkeypatch: pytest.MonkeyPatch, logs: io.StringIO
) -> Iterator[Deployment]:
    secret_arn = aws.create_secret("csbs-trigger/cloud", standin.cloud_secret())
    topic_arn, inbox = aws.topic_with_inbox("csbs-trigger-notifications")
    monkeypatch.setenv("CSBS_SECRET_ID", secret_arn)
    monkeypatch.setenv("NOTIFICATION_TOPIC_ARN", topic_arn)
    monkeypatch.setenv("IDEMPOTENCY_TABLE", aws.idempotency_table())
    monkeypatch.setenv("TRACKING_TABLE", aws.tracking_table())
    monkeypatch.setenv("LOGIN_REFUSAL_TABLE", aws.login_refusal_table())
    monkeypatch.setenv("HISTORY_TABLE", aws.history_table())
    monkeypatch.setenv("EXPIRY_TABLE", aws.expiry_table())
    monkeypatch.setenv("CLOUD_SECRET_PREFIX", "csbs-trigger/clouds/")  # the template's default
    monkeypatch.setenv("TRACKING_POLL_INTERVAL_SECONDS", "0")  # every run polls every backup
    webhook_secrets = json.loads((ROOT / "events" / "secrets" / "webhooks.json").read_text())
    monkeypatch.setenv(
        "WEBHOOK_SECRET_ID", aws.create_secret("csbs-trigger/webhooks", webhook_secrets)
    )
    monkeypatch.delenv("WEBHOOK_SOURCES", raising=False)
    for name in ("CSBS_PROVIDER_ID", "SECRET_MAX_AGE_SECONDS", "CSBS_READ_TIMEOUT_SECONDS",
                 "TRACKING_DEADLINE_SECONDS", "PLAN_MAX_DELIVERIES", "DEFAULT_KEEP_DAYS",
                 "EXPIRY_MODE", "DEFAULT_BACKEND"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    plan_queue_url = aws.plan_queue()
    monkeypatch.setenv("PLAN_QUEUE_URL", plan_queue_url)
    deployment = Deployment(aws, standin, secret_arn, topic_arn, inbox, monkeypatch,
                            plan_queue_url=plan_queue_url)  # fmt: skip
    deployment.cold_start()
    yield deployment
    for reserved in deployment.reserved:
        reserved.close()


# The ticket write-back's set-up (issue 26): a webhook asks for a backup of PLAN_A's SERVER for
# a Jira issue or a ServiceNow change.
PLAN_A = "62171999-3df1-42f7-9513-6f9b1bea4744"
SERVER = "7a32a8b5-7977-4e24-b5da-e0eb457db75b"
ISSUE, CHANGE = "OPS-7", "CHG0031337"


@dataclass
class WriteBack:
    deployment: Deployment
    tickets: TicketStandIn
    secret_arn: str
    queue_url: str
    held: dict[str, str] = field(default_factory=dict)

    def update(self) -> list[dict[str, Any]]:
        """The ticket update function drains its queue as Lambda's SQS event source runs it."""
        return self.deployment.aws.run_plan_queue(
            self.queue_url, ticket_update.handler,
            lambda: FakeLambdaContext(function_name="csbs-trigger-ticket-update"), self.held,
        )  # fmt: skip

    def time_passes(self) -> None:
        sqs = self.deployment.aws.client("sqs")
        for receipt in self.held.values():
            sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=receipt, VisibilityTimeout=0
            )

    def set_secret(self, value: dict[str, Any]) -> None:
        self.deployment.aws.update_secret(self.secret_arn, value)

    def sender(self, kind: str) -> None:
        """The generic webhook source writes back to ``kind``'s stand-in."""
        systems = self.tickets.secrets()
        entry = systems["jira" if kind == "jira-cloud" else kind]
        self.set_secret({**systems, "generic": entry})

    def backup(self, reference: str, *, delivery: str = "msg_1", finish: bool = True) -> None:
        """A webhook asks for a backup; with ``finish``, it is followed to its completion."""
        from test_webhooks import generic_event

        body = {"plan_id": PLAN_A, "resources": [SERVER], "reference": reference}
        answer = self.deployment.invoke_webhook(generic_event(body, delivery=delivery))
        assert answer["statusCode"] in (201, 422, 502, 503), answer
        if finish:
            self.deployment.standin.polls_to_finish = 1
            for _ in range(3):
                self.deployment.track()


@pytest.fixture
def writeback(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> Iterator[WriteBack]:
    with TicketStandIn() as tickets:
        tickets.add_issue(ISSUE)
        tickets.add_record(CHANGE)
        aws = deployment.aws
        secret_arn = aws.create_secret("csbs-trigger/tickets", tickets.secrets())
        queue_url = aws.ticket_queue(deployment.topic_arn)
        monkeypatch.setenv("TICKET_SECRET_ID", secret_arn)
        monkeypatch.setenv("TICKET_LEDGER_TABLE", aws.ticket_ledger_table())
        monkeypatch.setenv("TICKET_QUEUE_URL", queue_url)
        monkeypatch.delenv("TICKET_MAX_DELIVERIES", raising=False)
        deployment.cold_start()
        yield WriteBack(deployment, tickets, secret_arn, queue_url)

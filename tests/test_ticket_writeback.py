"""Ticket write-back (issue 26): each backup's result written into the ticket that asked for
it, once, over HTTP to stand-ins of Jira Cloud, Jira Data Center and ServiceNow, through the
topic's real subscription (raw delivery, its filter) and the ticket ledger in local DynamoDB."""

from __future__ import annotations

import base64
import io
import json
import threading
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ticket_update
from conftest import CHANGE, ISSUE, PLAN_A, ROOT, SERVER, Deployment, WriteBack, read_event
from test_webhooks import generic_event

import csbs_trigger.runtime
from csbs_trigger.aws import sqs
from csbs_trigger.tickets.note import note_of
from csbs_trigger.tickets.systems import parse_systems
from support.lambda_context import FakeLambdaContext
from support.standin import Fault
from support.ticket_standin import (
    JIRA_API_TOKEN,
    JIRA_EMAIL,
    JIRA_PAT,
    SERVICENOW_PASSWORD,
    Record,
)

ADF_SCHEMA = json.loads((Path(__file__).parent / "schemas" / "adf-v1-full.json").read_text())


def ledger_items(writeback: WriteBack) -> list[dict[str, Any]]:
    table = writeback.deployment.runtime.settings.ticket_ledger_table or ""
    return writeback.deployment.aws.client("dynamodb").scan(TableName=table)["Items"]  # type: ignore[no-any-return]


def completion_messages(writeback: WriteBack, visibility: int = 30) -> list[dict[str, Any]]:
    """The completions waiting in the ticket update queue (received, held ``visibility`` s)."""
    messages = writeback.deployment.aws.client("sqs").receive_message(
        QueueUrl=writeback.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=visibility
    )["Messages"]
    return [m for m in messages if json.loads(m["Body"])["event"] == "completed"]


def comments(writeback: WriteBack, key: str = ISSUE) -> list[dict[str, Any]]:
    return writeback.tickets.issues[key]


def reports(deployment: Deployment) -> list[Any]:
    """The write-back failures told on the topic since the last look."""
    return [n for n in deployment.notifications() if n.attributes["event"] == "writeback"]


def marker_of(text: str) -> str:
    return text.rstrip().splitlines()[-1]


# -- what is written, in each system's format -----------------------------------------------------


def test_a_completion_is_one_jira_cloud_comment_in_valid_adf(writeback: WriteBack) -> None:
    writeback.sender("jira-cloud")
    writeback.deployment.cold_start()
    writeback.backup(ISSUE)

    answers = writeback.update()

    assert [a["batchItemFailures"] for a in answers] == [[]]
    [comment] = comments(writeback)
    jsonschema.validate(comment["body"], ADF_SCHEMA)
    texts = [node["text"] for block in comment["body"]["content"]
             for node in block.get("content", []) if node["type"] == "text"]  # fmt: skip
    assert texts
    assert all(text and "\n" not in text for text in texts)
    completed = [n for n in writeback.deployment.notifications()
                 if n.attributes["event"] == "completed"]  # fmt: skip
    [completion] = completed
    checkpoint_id = completion.message["checkpoint"]["id"]
    assert texts[0] == "CSBS backup completed for plan " + (
        f"{completion.message['plan_name']} ({PLAN_A})"
    )
    assert f"Checkpoint: {checkpoint_id}" in texts
    assert "Servers: 1 available, 0 failed, of 1" in texts
    assert texts[-1] == f"[csbs-trigger checkpoint {checkpoint_id}]"
    assert comment["properties"] == [
        {"key": "csbs-trigger", "value": {"checkpoint_id": checkpoint_id, "outcome": "succeeded"}},
        {"key": "sd.public.comment", "value": {"internal": True}},
    ]
    [post] = writeback.tickets.writes()
    assert post.path == f"/rest/api/3/issue/{ISSUE}/comment"
    assert reports(writeback.deployment) == []


def test_a_public_jira_cloud_comment_carries_no_internal_property(writeback: WriteBack) -> None:
    systems = writeback.tickets.secrets()
    writeback.set_secret({**systems, "generic": {**systems["jira"], "internal": False}})
    writeback.backup(ISSUE)

    writeback.update()

    [comment] = comments(writeback)
    assert [p["key"] for p in comment["properties"]] == ["csbs-trigger"]


def test_a_failed_backup_is_a_jira_dc_comment_in_wiki_markup(writeback: WriteBack) -> None:
    writeback.sender("jira-dc")
    writeback.deployment.standin.failing_servers = {SERVER}
    writeback.backup(ISSUE)

    writeback.update()

    [comment] = comments(writeback)
    [post] = writeback.tickets.writes()
    assert post.path == f"/rest/api/2/issue/{ISSUE}/comment"
    assert post.headers["Authorization"] == f"Bearer {JIRA_PAT}"
    body = comment["body"]
    assert isinstance(body, str)
    lines = body.splitlines()
    assert lines[0].startswith("CSBS backup failed for plan ")
    assert "Failed servers:" in lines
    [failure] = [line for line in lines if line.startswith("* ")]
    assert SERVER in failure
    assert lines[-1].startswith("\\[csbs-trigger checkpoint ")
    assert lines[-1].endswith("\\]")


def test_a_start_that_failed_for_good_is_a_servicenow_work_note(writeback: WriteBack) -> None:
    writeback.sender("servicenow")
    writeback.deployment.standin.plans.pop(PLAN_A)  # a plan deleted: not_found, not retryable

    writeback.backup(CHANGE, finish=False)
    writeback.update()

    [note] = writeback.tickets.records[CHANGE].work_notes
    lines = note.splitlines()
    assert lines[0] == f"CSBS backup not started for plan {PLAN_A}: not_found"
    assert lines[1].startswith("Error: not_found")
    assert lines[-1] == f"[csbs-trigger trigger msg_1 plan {PLAN_A}]"
    lookup, patch = writeback.tickets.calls("servicenow")
    assert lookup.query["sysparm_query"] == [f"number={CHANGE}"]
    assert lookup.query["sysparm_limit"] == ["2"]
    assert patch.method == "PATCH"
    assert patch.path.endswith(f"/change_request/{writeback.tickets.records[CHANGE].sys_id}")


@pytest.mark.parametrize("what", ["started", "retryable failure", "no reference", "scheduled"])
def test_what_is_not_final_or_names_no_ticket_writes_nothing(
    writeback: WriteBack, what: str
) -> None:
    writeback.sender("jira-cloud")
    deployment = writeback.deployment
    if what == "started":
        writeback.backup(ISSUE, finish=False)
    elif what == "retryable failure":
        deployment.standin.fail_next("csbs", *[Fault(503)] * 3)
        writeback.backup(ISSUE, finish=False)
    elif what == "no reference":
        body = {"plan_id": PLAN_A, "resources": [SERVER]}
        deployment.invoke_webhook(generic_event(body))
    else:
        deployment.invoke({"plan_id": PLAN_A})

    writeback.update()

    assert comments(writeback) == []
    assert writeback.tickets.requests == []


def test_a_sender_without_write_back_writes_nothing_and_says_so_once(
    writeback: WriteBack, logs: io.StringIO
) -> None:
    writeback.set_secret({"jira": writeback.tickets.secrets()["jira"]})  # not "generic"
    writeback.deployment.cold_start()
    writeback.backup(ISSUE, delivery="msg_1", finish=False)
    writeback.deployment.standin.plans.pop(PLAN_A)
    writeback.backup(ISSUE, delivery="msg_2", finish=False)  # a failed start: final

    writeback.backup(ISSUE, delivery="msg_3", finish=False)
    writeback.update()

    assert writeback.tickets.requests == []
    said = [json.loads(line) for line in logs.getvalue().splitlines() if line.startswith("{")]
    unconfigured = [line["sender"] for line in said
                    if line.get("message") == "no ticket write-back for this sender"]  # fmt: skip
    assert unconfigured == ["generic"]


# -- exactly once ---------------------------------------------------------------------------------


def test_a_redelivered_or_republished_result_is_written_once(writeback: WriteBack) -> None:
    writeback.sender("jira-cloud")
    writeback.backup(ISSUE)
    [message] = completion_messages(writeback, visibility=0)
    writeback.deployment.aws.client("sqs").send_message(
        QueueUrl=writeback.queue_url, MessageBody=message["Body"]
    )  # SNS again

    writeback.update()

    assert len(comments(writeback)) == 1
    assert len(writeback.tickets.writes()) == 1


def test_two_workers_on_one_result_write_it_once(writeback: WriteBack) -> None:
    writeback.sender("jira-cloud")
    writeback.backup(ISSUE)
    [message] = completion_messages(writeback)
    record = {"messageId": "m-1", "receiptHandle": message["ReceiptHandle"],
              "body": message["Body"], "attributes": {"ApproximateReceiveCount": "1"}}  # fmt: skip
    holds = recorded_holds(writeback)
    arrived, release = threading.Event(), threading.Event()
    writeback.tickets.fail_next("jira", Fault(passthrough=True, arrived=arrived, release=release))
    answers: list[dict[str, Any]] = []
    first = threading.Thread(target=lambda: answers.append(
        ticket_update.handler({"Records": [record]}, FakeLambdaContext())))  # fmt: skip
    first.start()
    try:
        assert arrived.wait(30)
        second = ticket_update.handler(
            {"Records": [{**record, "messageId": "m-2"}]}, FakeLambdaContext()
        )
    finally:
        release.set()
        first.join()

    assert second["batchItemFailures"] == [{"itemIdentifier": "m-2"}]  # it comes back
    assert holds == [120]  # when the first worker's claim has run out at the latest
    assert answers == [{"batchItemFailures": []}]
    again = ticket_update.handler(
        {"Records": [{**record, "messageId": "m-3"}]}, FakeLambdaContext()
    )
    assert again == {"batchItemFailures": []}
    assert len(comments(writeback)) == 1


@pytest.mark.parametrize("kind", ["jira-cloud", "jira-dc", "servicenow"])
@pytest.mark.parametrize("lost", ["reset", "timeout", "503"])
def test_a_write_whose_answer_was_lost_is_read_for_before_it_is_written_again(
    writeback: WriteBack, kind: str, lost: str
) -> None:
    """The ticket stored the note, and its answer never came (or came as a 503): the next
    delivery finds the marker and writes nothing more."""
    writeback.deployment.set_env("CSBS_READ_TIMEOUT_SECONDS", "0.5")
    writeback.sender(kind)
    reference = CHANGE if kind == "servicenow" else ISSUE
    system = "servicenow" if kind == "servicenow" else "jira"
    fault = {"reset": Fault(passthrough=True, reset=True),
             "timeout": Fault(passthrough=True, delay_seconds=5),
             "503": Fault(503, {"errorMessages": ["busy"]}, passthrough=True)}[lost]  # fmt: skip
    if kind == "servicenow":
        writeback.tickets.fail_next(system, Fault(passthrough=True))  # the lookup answers
    writeback.tickets.fail_next(system, fault)
    writeback.backup(reference)

    first = writeback.update()
    writeback.time_passes()
    second = writeback.update()

    assert len(first[0]["batchItemFailures"]) == 1
    assert [a["batchItemFailures"] for a in second] == [[]]
    if kind == "servicenow":
        assert len(writeback.tickets.records[CHANGE].work_notes) == 1
    else:
        assert len(comments(writeback)) == 1
    assert len(writeback.tickets.writes()) == 1  # never a second POST or PATCH
    assert reports(writeback.deployment) == []


def test_a_5xx_that_stored_nothing_is_read_for_and_then_written(writeback: WriteBack) -> None:
    writeback.sender("jira-cloud")
    writeback.tickets.fail_next("jira", Fault(503, {"errorMessages": ["maintenance"]}))
    writeback.backup(ISSUE)

    writeback.update()
    writeback.time_passes()
    writeback.update()

    assert len(comments(writeback)) == 1
    methods = [r.method for r in writeback.tickets.calls("jira")]
    assert methods == ["POST", "GET", "POST"]  # read before writing again
    [read] = [r for r in writeback.tickets.calls("jira") if r.method == "GET"]
    assert read.query["orderBy"] == ["-created"]


def recorded_holds(writeback: WriteBack) -> list[int]:
    """The visibility timeouts the function sets on the ticket queue's messages, in order."""
    sqs = writeback.deployment.aws.client("sqs")
    holds: list[int] = []
    original = sqs.change_message_visibility

    def recorded(**arguments: Any) -> Any:
        answer = original(**arguments)  # a hold SQS refused (a bad receipt) is no hold
        holds.append(arguments["VisibilityTimeout"])
        return answer

    writeback.deployment.runtime.ticket_queue._client = type(  # type: ignore[union-attr]
        "Recording", (), {"change_message_visibility": staticmethod(recorded)}
    )()
    return holds


@pytest.mark.parametrize(("retry_after", "low", "high"), [
    ("7", 7, 7), ("0", 1, 1), (None, 15, 30), ("100000", 43190, 43195),
])  # fmt: skip
def test_a_429_comes_back_after_retry_after_without_a_read(
    writeback: WriteBack, retry_after: str | None, low: int, high: int
) -> None:
    """At least a second, at most what SQS allows from the receipt (12 h), an exponential
    backoff without the header (15 to 30 s at the first delivery)."""
    writeback.sender("jira-cloud")
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    writeback.tickets.fail_next("jira", Fault(429, {"errorMessages": ["Rate limit exceeded."]},
                                              headers=headers))  # fmt: skip
    writeback.backup(ISSUE)
    holds = recorded_holds(writeback)

    writeback.update()
    writeback.time_passes()
    writeback.update()

    [hold] = holds
    assert low <= hold <= high
    assert [r.method for r in writeback.tickets.calls("jira")] == ["POST", "POST"]
    assert len(comments(writeback)) == 1


# -- failures: reported once ----------------------------------------------------------------------


@pytest.mark.parametrize(("status", "category"), [(403, "forbidden"), (404, "not_found"),
                                                  (410, "invalid_request"),
                                                  (413, "invalid_request")])  # fmt: skip
def test_a_closed_or_missing_ticket_is_reported_failed_once(
    writeback: WriteBack, status: int, category: str
) -> None:
    writeback.sender("jira-cloud")
    writeback.tickets.fail_next("jira", Fault(status, {"errorMessages": ["You cannot comment."]}))
    writeback.backup(ISSUE)
    writeback.deployment.notifications()

    answers = writeback.update()

    assert [a["batchItemFailures"] for a in answers] == [[]]
    [report] = reports(writeback.deployment)
    assert report.attributes == {"event": "writeback", "outcome": "failed",
                                 "trigger_sender": "generic"}  # fmt: skip
    message = report.message
    assert message["trigger"] == {"sender": "generic", "reference": ISSUE}
    assert (message["error"]["category"], message["error"]["http_status"]) == (category, status)
    assert marker_of(message["text"]).startswith("[csbs-trigger checkpoint ")
    assert message["checkpoint"]["id"] in message["text"]
    assert report.subject == f"Ticket {ISSUE} not updated ({category})"
    assert len(writeback.tickets.writes()) == 1
    [settled] = [item for item in ledger_items(writeback) if item["id"]["S"].startswith("note")]
    assert settled["state"] == {"S": "failed"}
    assert "report" not in settled  # published: not kept
    assert "lease_until" not in settled


def test_a_refused_login_is_not_sent_again_until_the_secret_changes(writeback: WriteBack) -> None:
    writeback.sender("servicenow")
    writeback.deployment.cold_start()
    writeback.tickets.servicenow_password = "rotated-by-the-servicenow-admin"
    writeback.deployment.standin.plans.pop(PLAN_A)  # every start fails for good: final results
    writeback.backup(CHANGE, delivery="msg_1", finish=False)
    writeback.update()
    [refused] = reports(writeback.deployment)
    assert refused.message["error"]["category"] == "auth_failed"
    sent = len(writeback.tickets.requests)
    assert sent == 1

    writeback.deployment.cold_start()  # another container
    writeback.backup(CHANGE, delivery="msg_2", finish=False)
    writeback.update()

    [again] = reports(writeback.deployment)
    assert (again.message["error"]["category"], again.message["error"]["http_status"]) == (
        "auth_failed", 401,
    )  # fmt: skip
    assert again.message["error"]["message"] == (
        "ServiceNow refused the credentials of sender generic before (HTTP 401): not sent "
        "again until its ticket secret changes"
    )
    [mark] = [item for item in ledger_items(writeback) if item["id"]["S"].startswith("refused")]
    refused_at = float(mark["refused_at"]["N"])
    assert int(mark["expires_at"]["N"]) == int(refused_at) + 365 * 24 * 3600
    assert len(writeback.tickets.requests) == sent  # no request at all

    systems = writeback.tickets.secrets()
    writeback.set_secret({**systems, "generic": {
        **systems["servicenow"], "password": "rotated-by-the-servicenow-admin"}})  # fmt: skip
    writeback.backup(CHANGE, delivery="msg_3", finish=False)
    writeback.update()

    assert len(writeback.tickets.records[CHANGE].work_notes) == 1  # at once, same container
    assert reports(writeback.deployment) == []
    # Each request signed in with the secret's credentials, never with a session cookie.
    assert not [r for r in writeback.tickets.requests if "Cookie" in r.headers]


@pytest.mark.parametrize("reference", ["ABC-1/../../x", "OPS-7?x=1", "ops-7", "A" * 70])
def test_a_reference_that_is_no_ticket_key_is_reported_without_a_request(
    writeback: WriteBack, reference: str
) -> None:
    writeback.sender("jira-cloud")
    writeback.backup(reference)

    writeback.update()

    assert writeback.tickets.requests == []
    [report] = reports(writeback.deployment)
    assert report.message["error"]["category"] == "invalid_event"


@pytest.mark.parametrize("entry", [
    {"kind": "jira-cloud", "base_url": "http://jira.example.com", "email": "a", "api_token": "t"},
    {"kind": "jira-cloud", "base_url": "https://u:p@jira.example.com", "email": "a",
     "api_token": "t"},
    {"kind": "jira-cloud", "base_url": "https://jira.example.com", "email": "a"},
    {"kind": "redmine", "base_url": "https://redmine.example.com", "token": "t"},
    {"kind": "servicenow", "instance_url": "https://x.service-now.com", "username": "u",
     "password": "p", "table": "change_request; drop"},
    "not an object",
])  # fmt: skip
def test_a_wrong_entry_is_a_config_error_for_that_sender_only(
    writeback: WriteBack, entry: Any
) -> None:
    systems = writeback.tickets.secrets()
    writeback.set_secret({**systems, "generic": entry, "servicenow": systems["servicenow"]})
    writeback.deployment.cold_start()
    writeback.backup(ISSUE)

    writeback.update()

    assert writeback.tickets.requests == []
    [report] = reports(writeback.deployment)
    assert report.message["error"]["category"] == "config_error"
    assert "sender generic" in report.message["error"]["message"]


def test_a_write_still_failing_at_its_last_delivery_is_reported(writeback: WriteBack) -> None:
    writeback.deployment.set_env("TICKET_MAX_DELIVERIES", "3")
    writeback.sender("jira-cloud")
    writeback.tickets.fail_next("jira", *[Fault(502)] * 20)
    writeback.backup(ISSUE)
    writeback.deployment.notifications()

    for _ in range(3):
        writeback.update()
        writeback.time_passes()

    [report] = reports(writeback.deployment)
    assert report.message["error"]["category"] == "unavailable"
    assert writeback.update() == []  # gone from the queue


def test_a_long_list_of_failed_servers_is_cut_to_8000_characters(writeback: WriteBack) -> None:
    writeback.sender("servicenow")
    deployment = writeback.deployment
    deployment.standin.polls_to_finish = 1
    deployment.invoke_webhook(generic_event({"plan_id": PLAN_A, "reference": CHANGE}))
    checkpoint_id = json.loads(deployment.notifications()[0].raw_message)["checkpoint"]["id"]
    failed = [{"id": f"i-{n}", "checkpoint_id": checkpoint_id, "resource_id": f"srv-{n:03d}",
               "resource_name": f"vm-{n:03d}", "status": "error",
               "extend_info": {"fail_code": "CSBS.7102", "fail_reason": "\u2603 disk gone " * 20}}
              for n in range(60)]  # fmt: skip
    deployment.standin.fail_next("csbs", *[Fault(200, {"checkpoint_items": failed})] * 3)
    for _ in range(2):
        deployment.track()

    writeback.update()

    [note] = writeback.tickets.records[CHANGE].work_notes
    assert len(note) <= 8000
    lines = note.splitlines()
    assert lines[-1] == f"[csbs-trigger checkpoint {checkpoint_id}]"
    assert lines[-2].startswith("- and ")
    assert lines[-2].endswith(" more")
    assert len([line for line in lines if line.startswith("- vm-")]) < 60


def test_no_credential_reaches_a_log_a_report_or_the_ledger(
    writeback: WriteBack, logs: io.StringIO
) -> None:
    """Jira echoes the request's credentials in its error (as some proxies do)."""
    writeback.sender("jira-cloud")
    basic = base64.b64encode(f"{JIRA_EMAIL}:{JIRA_API_TOKEN}".encode()).decode()
    echo = {"errorMessages": [f"token {JIRA_API_TOKEN} has no permission",
                              f"Authorization: Basic {basic}"]}  # fmt: skip
    writeback.tickets.fail_next("jira", Fault(403, echo))
    writeback.backup(ISSUE)

    writeback.update()

    [report] = reports(writeback.deployment)
    ledger = writeback.deployment.aws.client("dynamodb").scan(
        TableName=writeback.deployment.runtime.settings.ticket_ledger_table or ""
    )["Items"]
    for text in (report.raw_message, report.subject or "", logs.getvalue(), json.dumps(ledger)):
        for secret in (JIRA_API_TOKEN, JIRA_PAT, SERVICENOW_PASSWORD, basic):
            assert secret not in text
    assert "[redacted]" in report.message["error"]["message"]


def test_a_note_is_found_on_the_second_page_of_a_busy_issue(writeback: WriteBack) -> None:
    """After a lost answer the issue has 150 newer comments: the read pages on to the note."""
    writeback.sender("jira-cloud")
    writeback.tickets.fail_next("jira", Fault(passthrough=True, reset=True))
    writeback.backup(ISSUE)
    writeback.update()
    chatter = [{"id": f"c-{n}", "body": {"version": 1, "type": "doc", "content": []}}
               for n in range(150)]  # fmt: skip
    writeback.tickets.issues[ISSUE].extend(chatter)
    writeback.time_passes()

    writeback.update()

    reads = [r for r in writeback.tickets.calls("jira") if r.method == "GET"]
    assert [r.query["startAt"] for r in reads] == [["0"], ["100"]]
    assert len(writeback.tickets.writes()) == 1


@pytest.mark.parametrize("rows", [0, 2])
def test_a_servicenow_number_that_names_no_record_or_two_is_reported(
    writeback: WriteBack, rows: int
) -> None:
    writeback.sender("servicenow")
    writeback.tickets.records.pop(CHANGE)
    for index in range(rows):  # the same number twice (an import gone wrong)
        writeback.tickets.records[f"copy-{index}"] = Record(uuid.uuid4().hex, CHANGE)
    writeback.backup(CHANGE)

    writeback.update()

    assert writeback.tickets.writes() == []
    [report] = reports(writeback.deployment)
    category = "not_found" if rows == 0 else "invalid_request"
    assert report.message["error"]["category"] == category


def test_the_sample_secret_and_event_write_the_sample_comment(writeback: WriteBack) -> None:
    """events/secrets/tickets.json names a system per shipped source; events/ticket-update.json
    (a completion for Jira issue CHG-42) is written there, here to the stand-in."""
    sample = json.loads((ROOT / "events" / "secrets" / "tickets.json").read_text())
    systems = parse_systems(sample)
    assert {name: getattr(system, "kind", None) for name, system in systems.items()} == {
        "jira": "jira-cloud", "jira-automation": "jira-dc", "servicenow": "servicenow",
    }  # fmt: skip
    writeback.set_secret({**sample, "jira": writeback.tickets.secrets()["jira"]})
    writeback.deployment.cold_start()
    writeback.tickets.add_issue("CHG-42")

    answer = ticket_update.handler(read_event("ticket-update.json"), FakeLambdaContext())

    assert answer == {"batchItemFailures": []}
    [comment] = writeback.tickets.issues["CHG-42"]
    texts = json.dumps(comment["body"])
    assert "[csbs-trigger checkpoint fc4d5750-22e7-4798-8a46-f48f62c4c1da]" in texts
    assert "Servers: 2 available, 0 failed, of 2" in texts
    assert "(42 min)" in texts


def test_a_report_the_topic_refused_is_published_once_at_the_next_delivery(
    writeback: WriteBack,
) -> None:
    writeback.sender("jira-cloud")
    writeback.tickets.fail_next("jira", Fault(404, {"errorMessages": ["Issue does not exist"]}))
    writeback.backup(ISSUE)
    writeback.deployment.notifications()
    refused = writeback.deployment.refuse(
        writeback.deployment.runtime.sns, "Publish", "InternalError"
    )

    first = writeback.update()
    writeback.time_passes()
    second = writeback.update()

    assert refused == ["Publish"]
    assert len(first[0]["batchItemFailures"]) == 1  # it comes back: the report is not lost
    assert [a["batchItemFailures"] for a in second] == [[]]
    [report] = reports(writeback.deployment)
    assert report.message["error"]["category"] == "not_found"
    assert len(writeback.tickets.writes()) == 1  # the ticket is not tried again


def test_every_notification_of_a_senders_trigger_names_the_sender(writeback: WriteBack) -> None:
    writeback.backup(ISSUE)
    writeback.deployment.invoke({"plan_id": PLAN_A})

    told = writeback.deployment.notifications()

    named = {(n.attributes["event"], n.attributes.get("trigger_sender")) for n in told}
    assert named == {("started", "generic"), ("completed", "generic"), ("started", None)}


def test_a_claim_whose_worker_died_is_read_for_once_it_runs_out(writeback: WriteBack) -> None:
    """A worker claimed the result and was never heard of again (killed mid-write): before
    its claim runs out nobody writes; after it, the next one reads the ticket first."""
    writeback.sender("jira-cloud")
    writeback.backup(ISSUE)
    [message] = completion_messages(writeback, visibility=0)
    note = note_of(json.loads(message["Body"]))
    assert note is not None
    ledger = writeback.deployment.runtime.ticket_ledger
    assert ledger is not None
    now = 1_800_000_000.0
    writeback.deployment.now = now
    key = f"note\ngeneric\n{ISSUE}\n{note.marker}"
    assert ledger.claim(key, now, 120.0).state == "writing"  # the worker that died
    [claimed] = [item for item in ledger_items(writeback) if item["id"]["S"] == key]
    assert (claimed["state"], claimed["lease_until"]) == ({"S": "writing"}, {"N": repr(now + 120)})

    writeback.deployment.now = now + 119
    early = writeback.update()
    writeback.time_passes()
    writeback.deployment.now = now + 121
    writeback.update()

    assert len(early[0]["batchItemFailures"]) == 1
    assert [r.method for r in writeback.tickets.calls("jira")] == ["GET", "POST"]
    item = writeback.deployment.aws.client("dynamodb").get_item(
        TableName=writeback.deployment.runtime.settings.ticket_ledger_table or "",
        Key={"id": {"S": key}},
    )["Item"]
    assert item["state"] == {"S": "written"}
    assert int(item["expires_at"]["N"]) == int(now + 121) + 30 * 24 * 3600


# -- what each step logs and counts, and the report's every field (for operators' queries) ----


def said(logs: io.StringIO, message: str) -> list[dict[str, Any]]:
    parsed = [json.loads(line) for line in logs.getvalue().splitlines() if line.startswith("{")]
    return [line for line in parsed if line.get("message") == message]


def counted(capsys: pytest.CaptureFixture[str]) -> list[tuple[str, dict[str, str]]]:
    from test_completion_tracking import emf

    return [m for m in emf(capsys.readouterr().out) if m[0].startswith("TicketUpdate") and m[1]]


def test_a_write_that_comes_back_logs_why_and_when(
    writeback: WriteBack, logs: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqs.random, "random", lambda: 0.123)  # the backoff's jitter, pinned
    writeback.sender("jira-cloud")
    writeback.tickets.fail_next("jira", Fault(503))
    writeback.backup(ISSUE)
    holds = recorded_holds(writeback)

    writeback.update()

    [line] = said(logs, "ticket update comes back")
    marker = line["marker"]
    assert marker.startswith("[csbs-trigger checkpoint ")
    assert {k: line[k] for k in ("level", "sender", "reference", "category", "delivery")} == {
        "level": "INFO", "sender": "generic", "reference": ISSUE, "category": "unavailable",
        "delivery": 1}  # fmt: skip
    [hold] = holds
    ceiling = sqs.BACKOFF_SECONDS  # the first delivery's
    delay = ceiling / 2 + 0.123 * ceiling / 2
    assert line["delay_seconds"] == round(delay, 1)  # to the tenth of a second
    assert hold == int(delay)


def test_a_write_that_failed_for_good_logs_counts_and_reports_each_field(
    writeback: WriteBack, logs: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    writeback.sender("jira-cloud")
    writeback.deployment.standin.plans.pop(PLAN_A)  # the start fails for good: no checkpoint
    writeback.tickets.fail_next("jira", Fault(404, {"errorMessages": ["Issue does not exist"]}))
    writeback.backup(ISSUE, finish=False)
    writeback.deployment.notifications()
    capsys.readouterr()

    writeback.update()

    [line] = said(logs, "ticket update failed")
    assert {k: line[k] for k in ("level", "sender", "reference", "category", "delivery")} == {
        "level": "WARNING", "sender": "generic", "reference": ISSUE, "category": "not_found",
        "delivery": 1}  # fmt: skip
    assert line["marker"].startswith("[csbs-trigger trigger ")
    assert counted(capsys) == [("TicketUpdateFailed", {"kind": "jira-cloud"})]
    [report] = reports(writeback.deployment)
    message = report.message
    assert sorted(message) == ["checkpoint", "error", "event", "outcome", "published_at",
                               "schema_version", "text", "trigger"]  # fmt: skip
    assert (message["schema_version"], message["event"], message["outcome"]) == (
        1, "writeback", "failed")  # fmt: skip
    assert message["checkpoint"] is None  # nothing started
    assert message["error"] == {"category": "not_found", "http_status": 404, "code": None,
                                "message": message["error"]["message"]}  # fmt: skip
    assert message["published_at"].endswith("+00:00")
    assert marker_of(message["text"]) == line["marker"]


def test_a_written_note_logs_and_counts_its_system(
    writeback: WriteBack, logs: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    writeback.sender("servicenow")
    writeback.backup(CHANGE)
    capsys.readouterr()

    writeback.update()

    [line] = said(logs, "ticket updated")
    assert (line["level"], line["sender"], line["reference"]) == ("INFO", "generic", CHANGE)
    assert counted(capsys) == [("TicketUpdated", {"kind": "servicenow"})]


def test_a_broken_ticket_secret_counts_its_failure_as_of_no_system(
    writeback: WriteBack, capsys: pytest.CaptureFixture[str]
) -> None:
    writeback.set_secret({"generic": "not an object"})
    writeback.deployment.cold_start()
    writeback.backup(ISSUE)
    capsys.readouterr()

    writeback.update()

    assert counted(capsys) == [("TicketUpdateFailed", {"kind": "unknown"})]


def test_credentials_refused_and_changed_to_credentials_refused_too_are_not_sent(
    writeback: WriteBack,
) -> None:
    """A container still holding the first refused credentials reads the secret again: the new
    ones were refused as well (by another container), so nothing is sent with either."""
    writeback.sender("servicenow")
    writeback.deployment.set_env("SECRET_MAX_AGE_SECONDS", "3600")  # this container keeps it
    writeback.tickets.servicenow_password = "changed-by-the-admin"
    writeback.deployment.standin.plans.pop(PLAN_A)
    writeback.backup(CHANGE, delivery="msg_1", finish=False)
    writeback.update()  # refused: the first credentials are marked
    systems = writeback.tickets.secrets()
    wrong_too = {**systems["servicenow"], "password": "still-not-the-password"}
    writeback.set_secret({**systems, "generic": wrong_too})
    first = writeback.deployment.runtime  # holds the first credentials for an hour
    writeback.deployment.cold_start()  # another container tries the new ones: refused, marked
    writeback.backup(CHANGE, delivery="msg_2", finish=False)
    writeback.update()
    sent = len(writeback.tickets.requests)
    assert sent == 2
    reports(writeback.deployment)
    writeback.deployment.monkeypatch.setattr(csbs_trigger.runtime, "_container_runtime", first)

    writeback.backup(CHANGE, delivery="msg_3", finish=False)
    writeback.update()

    assert len(writeback.tickets.requests) == sent
    [again] = reports(writeback.deployment)
    assert again.message["error"]["category"] == "auth_failed"


def test_credentials_refused_then_replaced_by_an_unusable_entry_are_reported_refused(
    writeback: WriteBack,
) -> None:
    writeback.sender("servicenow")
    writeback.deployment.set_env("SECRET_MAX_AGE_SECONDS", "3600")
    writeback.tickets.servicenow_password = "changed-by-the-admin"
    writeback.deployment.standin.plans.pop(PLAN_A)
    writeback.backup(CHANGE, delivery="msg_1", finish=False)
    writeback.update()
    reports(writeback.deployment)
    writeback.set_secret({**writeback.tickets.secrets(), "generic": {"kind": "servicenow"}})

    writeback.backup(CHANGE, delivery="msg_2", finish=False)
    answers = writeback.update()

    assert [a["batchItemFailures"] for a in answers] == [[]]
    [again] = reports(writeback.deployment)
    assert again.message["error"]["category"] == "auth_failed"


def test_a_note_found_written_before_is_logged_so(
    writeback: WriteBack, logs: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    writeback.sender("jira-cloud")
    writeback.tickets.fail_next("jira", Fault(503, {"errorMessages": ["busy"]}, passthrough=True))
    writeback.backup(ISSUE)
    writeback.update()
    writeback.time_passes()
    capsys.readouterr()

    writeback.update()

    [line] = said(logs, "ticket note found, written before")
    [written] = comments(writeback)
    assert (line["level"], line["sender"], line["reference"]) == ("INFO", "generic", ISSUE)
    assert line["marker"].startswith("[csbs-trigger checkpoint ")
    assert line["marker"] in json.dumps(written["body"])
    [updated] = said(logs, "ticket updated")
    assert updated["marker"] == line["marker"]
    assert counted(capsys) == [("TicketUpdated", {"kind": "jira-cloud"})]


def test_a_ticket_secret_that_is_no_json_reports_every_write_as_config_error(
    writeback: WriteBack, capsys: pytest.CaptureFixture[str]
) -> None:
    writeback.set_secret("{not json")
    writeback.deployment.cold_start()
    writeback.backup(ISSUE)
    writeback.deployment.notifications()
    capsys.readouterr()

    answers = writeback.update()

    assert [a["batchItemFailures"] for a in answers] == [[]]
    [report] = reports(writeback.deployment)
    assert report.message["error"]["category"] == "config_error"
    assert report.message["error"]["message"] == "the ticket secret is not valid JSON"
    assert counted(capsys) == [("TicketUpdateFailed", {"kind": "unknown"})]
    assert writeback.tickets.requests == []


@pytest.mark.parametrize("event", [[], "Records", None, {"Records": "x"}])
def test_the_function_takes_sqs_events_only(writeback: WriteBack, event: Any) -> None:
    from csbs_trigger import InvalidEventError

    with pytest.raises(
        InvalidEventError, match=r"^the ticket update function takes SQS events \(Records\)$"
    ):
        ticket_update.handler(event, FakeLambdaContext(function_name="csbs-trigger-ticket-update"))


def test_a_ledger_that_fails_brings_the_message_back_and_says_so(
    writeback: WriteBack, logs: io.StringIO
) -> None:
    writeback.sender("jira-cloud")
    writeback.backup(ISSUE)
    writeback.deployment.refuse(writeback.deployment.runtime.dynamodb, "UpdateItem",
                                "InternalServerError", times=10)  # fmt: skip

    [answer] = writeback.update()

    [failure] = answer["batchItemFailures"]
    [line] = said(logs, "ticket update failed: it comes back")
    assert (line["level"], line["message_id"]) == ("ERROR", failure["itemIdentifier"])
    assert line["reason"] == "TriggerError"  # its type, never its text
    assert writeback.tickets.requests == []


def test_a_record_that_is_no_object_is_passed_over(writeback: WriteBack) -> None:
    from csbs_trigger.writeback import handle_ticket_messages

    answer = handle_ticket_messages(
        {"Records": [5, "x", None]}, FakeLambdaContext(), writeback.deployment.runtime
    )

    assert answer == {"batchItemFailures": []}


def test_a_5xx_asking_to_wait_comes_back_after_the_backoff(
    writeback: WriteBack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a 429's Retry-After is followed; a 5xx's answer may be lost, and is read for after
    the backoff (here pinned: 15 s and a bit)."""
    monkeypatch.setattr(sqs.random, "random", lambda: 0.0)
    writeback.sender("jira-cloud")
    writeback.tickets.fail_next("jira", Fault(503, {"errorMessages": ["busy"]},
                                              headers={"Retry-After": "2"}))  # fmt: skip
    writeback.backup(ISSUE)
    holds = recorded_holds(writeback)

    writeback.update()

    assert holds == [int(sqs.BACKOFF_SECONDS / 2)]


def test_without_the_ticket_queue_a_write_to_retry_comes_back_by_its_visibility(
    writeback: WriteBack,
) -> None:
    writeback.sender("jira-cloud")
    writeback.tickets.fail_next("jira", Fault(429, {"errorMessages": ["slow down"]}))
    writeback.backup(ISSUE)
    writeback.deployment.set_env("TICKET_QUEUE_URL", None)

    [answer] = writeback.update()

    assert len(answer["batchItemFailures"]) == 1

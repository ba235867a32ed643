"""The ticket systems' adapters against the stand-ins (issue 26.4-7): each request as the
documented API wants it, the note found again by its marker in either form, and every refusal
classified, never retried here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from csbs_trigger.errors import UpstreamError
from csbs_trigger.tickets.clients import (
    JiraClient,
    ServiceNowClient,
    TicketClient,
    adf_document,
    client_for,
    wiki_text,
)
from csbs_trigger.tickets.note import Note
from csbs_trigger.tickets.systems import TicketSystem, parse_systems
from support.standin import Fault
from support.ticket_standin import Record, TicketStandIn

NOTE = Note("jira", "OPS-7", "[csbs-trigger checkpoint c-1]", "succeeded", "c-1",
            ("CSBS backup completed for plan p-1",), ())  # fmt: skip


def paragraph(text: str) -> dict[str, Any]:
    return {"type": "paragraph", "content": [{"type": "text", "text": text}]}


def test_failed_servers_are_a_bullet_list_in_adf_and_wiki() -> None:
    note = Note("jira", "OPS-7", "[csbs-trigger checkpoint c-1]", "failed", "c-1",
                ("CSBS backup failed for plan p-1",), ("db-1 (s-1): E1 gone",), 3)  # fmt: skip
    assert adf_document(note)["content"] == [
        paragraph("CSBS backup failed for plan p-1"),
        paragraph("Failed servers:"),
        {"type": "bulletList", "content": [
            {"type": "listItem", "content": [paragraph("db-1 (s-1): E1 gone")]},
            {"type": "listItem", "content": [paragraph("and 3 more")]},
        ]},
        paragraph("[csbs-trigger checkpoint c-1]"),
    ]  # fmt: skip
    assert wiki_text(note) == "\n".join([
        "CSBS backup failed for plan p-1", "Failed servers:", "* db-1 (s-1): E1 gone",
        "* and 3 more", "\\[csbs-trigger checkpoint c-1\\]",
    ])  # fmt: skip


@pytest.fixture
def tickets() -> Iterator[TicketStandIn]:
    with TicketStandIn() as standin:
        standin.add_issue("OPS-7")
        standin.add_record("CHG0031337")
        yield standin


def client(tickets: TicketStandIn, sender: str) -> TicketClient:
    system = parse_systems(tickets.secrets())[sender]
    assert isinstance(system, TicketSystem)
    return client_for(system, requests.Session(), (1.0, 5.0))


def test_each_system_gets_its_own_client(tickets: TicketStandIn) -> None:
    assert isinstance(client(tickets, "jira"), JiraClient)
    assert isinstance(client(tickets, "jira-dc"), JiraClient)
    assert isinstance(client(tickets, "servicenow"), ServiceNowClient)


def test_jira_cloud_posts_adf_with_basic_auth_and_json(tickets: TicketStandIn) -> None:
    client(tickets, "jira").write(NOTE)

    [post] = tickets.writes()
    assert post.path == "/rest/api/3/issue/OPS-7/comment"
    assert post.headers["Accept"] == "application/json"
    assert post.headers["Content-Type"] == "application/json"
    assert post.headers["Authorization"].startswith("Basic ")
    body = post.json()
    assert body["body"] == {"version": 1, "type": "doc", "content": [
        paragraph("CSBS backup completed for plan p-1"),
        paragraph("[csbs-trigger checkpoint c-1]"),
    ]}  # fmt: skip
    marked = {"checkpoint_id": "c-1", "outcome": "succeeded"}
    assert body["properties"] == [
        {"key": "csbs-trigger", "value": marked},
        {"key": "sd.public.comment", "value": {"internal": True}},  # an internal note
    ]


def test_jira_dc_posts_wiki_text_with_its_token(tickets: TicketStandIn) -> None:
    client(tickets, "jira-dc").write(NOTE)

    [post] = tickets.writes()
    assert post.path == "/rest/api/2/issue/OPS-7/comment"
    assert post.headers["Authorization"] == f"Bearer {tickets.jira_pat}"
    assert post.json() == {"body": "CSBS backup completed for plan p-1\n"
                                   "\\[csbs-trigger checkpoint c-1\\]"}  # fmt: skip


@pytest.mark.parametrize("sender", ["jira", "jira-dc"])
def test_a_jira_note_is_found_in_either_form_newest_first(
    tickets: TicketStandIn, sender: str
) -> None:
    jira = client(tickets, sender)
    assert jira.has_note(NOTE) is False
    jira.write(NOTE)

    assert jira.has_note(NOTE) is True
    read = [r for r in tickets.requests if r.method == "GET"][-1]
    assert read.query == {"orderBy": ["-created"], "maxResults": ["100"], "startAt": ["0"]}


def test_a_jira_read_pages_until_the_total_and_no_further(tickets: TicketStandIn) -> None:
    tickets.issues["OPS-7"].extend({"id": str(n), "body": "chatter"} for n in range(230))

    assert client(tickets, "jira").has_note(NOTE) is False

    reads = [r.query["startAt"][0] for r in tickets.requests if r.method == "GET"]
    assert reads == ["0", "100", "200"]


def test_a_jira_list_that_pages_on_forever_is_a_bad_response(tickets: TicketStandIn) -> None:
    endless = Fault(200, {"comments": [{"id": "1", "body": "x"}], "total": 10**9})
    tickets.fail_next("jira", *[endless] * 60)

    with pytest.raises(UpstreamError) as raised:
        client(tickets, "jira").has_note(NOTE)

    assert (raised.value.category.value, str(raised.value), raised.value.http_status) == (
        "bad_response", "Jira listed more than 5000 comments", 200,
    )  # fmt: skip


@pytest.mark.parametrize("answer", [{"comments": "x"}, [], {"total": 1}])
def test_a_jira_comment_list_without_its_list_is_a_bad_response(
    tickets: TicketStandIn, answer: Any
) -> None:
    tickets.fail_next("jira", Fault(200, answer))

    with pytest.raises(UpstreamError) as raised:
        client(tickets, "jira").has_note(NOTE)

    assert str(raised.value) == "Jira answered without a comments list"
    assert raised.value.http_status == 200


def test_servicenow_finds_the_record_then_patches_its_work_notes(tickets: TicketStandIn) -> None:
    record = tickets.records["CHG0031337"]
    servicenow = client(tickets, "servicenow")
    note = Note("servicenow", "CHG0031337", NOTE.marker, "succeeded", "c-1", NOTE.lines, ())

    assert servicenow.has_note(note) is False
    servicenow.write(note)
    assert servicenow.has_note(note) is True

    lookup, journal, _, patch, _, found = tickets.requests
    assert lookup.query == {"sysparm_query": ["number=CHG0031337"],
                            "sysparm_fields": ["sys_id,number"],
                            "sysparm_limit": ["2"]}  # fmt: skip
    assert journal.path == "/api/now/table/sys_journal_field"
    assert journal.query == {
        "sysparm_query": [f"element_id={record.sys_id}^element=work_notes^valueLIKE"
                          "[csbs-trigger checkpoint c-1]"],
        "sysparm_fields": ["sys_id"], "sysparm_limit": ["1"],
    }  # fmt: skip
    assert (patch.method, patch.path) == ("PATCH", f"/api/now/table/change_request/{record.sys_id}")
    assert patch.json() == {"work_notes": note.text()}
    assert found.path == journal.path


@pytest.mark.parametrize(("rows", "category", "message"), [
    ([], "not_found", "ServiceNow has no change_request records numbered CHG0031337"),
    ([{"sys_id": "a" * 32, "number": "CHG0031337"}] * 2, "invalid_request",
     "ServiceNow has 2 change_request records numbered CHG0031337"),
    ([{"sys_id": "a" * 32, "number": "CHG00313370"}], "not_found",
     "ServiceNow has no change_request records numbered CHG0031337"),
    ([{"sys_id": "not hex", "number": "CHG0031337"}], "bad_response",
     "ServiceNow answered CHG0031337 without a sys_id"),
])  # fmt: skip
def test_a_number_must_name_exactly_one_record(
    tickets: TicketStandIn, rows: list[dict[str, Any]], category: str, message: str
) -> None:
    tickets.fail_next("servicenow", Fault(200, {"result": rows}))
    note = Note("servicenow", "CHG0031337", NOTE.marker, "succeeded", "c-1", NOTE.lines, ())

    with pytest.raises(UpstreamError) as raised:
        client(tickets, "servicenow").write(note)

    assert (raised.value.category.value, str(raised.value)) == (category, message)
    assert raised.value.http_status == 200
    assert tickets.writes() == []


@pytest.mark.parametrize("answer", [{"results": []}, [], {"result": "x"}])
def test_a_servicenow_answer_without_its_result_list_is_a_bad_response(
    tickets: TicketStandIn, answer: Any
) -> None:
    tickets.fail_next("servicenow", Fault(200, answer))
    with pytest.raises(UpstreamError) as raised:
        client(tickets, "servicenow").write(
            Note("servicenow", "CHG0031337", NOTE.marker, "succeeded", "c-1", NOTE.lines, ())
        )
    assert str(raised.value) == "ServiceNow answered without a result list"
    assert raised.value.http_status == 200


def test_a_table_named_in_the_secret_is_the_one_written(tickets: TicketStandIn) -> None:
    tickets.records["CHG0031337"] = Record("b" * 32, "CHG0031337", table="u_change")
    systems = tickets.secrets()
    system = parse_systems({"s": {**systems["servicenow"], "table": "u_change"}})["s"]
    assert isinstance(system, TicketSystem)

    client_for(system, requests.Session(), (1.0, 5.0)).write(
        Note("s", "CHG0031337", NOTE.marker, "succeeded", "c-1", NOTE.lines, ())
    )

    [patch] = tickets.writes()
    assert patch.path == f"/api/now/table/u_change/{'b' * 32}"


REFUSALS = [(401, "auth_failed"), (403, "forbidden"), (429, "throttled"), (503, "unavailable")]


@pytest.mark.parametrize(("status", "category"), REFUSALS)
def test_a_refusal_is_classified_and_sent_once(
    tickets: TicketStandIn, status: int, category: str
) -> None:
    tickets.fail_next("jira", Fault(status, {"errorMessages": ["no"]}, {"Retry-After": "3"}))

    with pytest.raises(UpstreamError) as raised:
        client(tickets, "jira").write(NOTE)

    assert (raised.value.category.value, raised.value.http_status) == (category, status)
    assert str(raised.value).startswith(f"Jira answered HTTP {status}")
    assert len(tickets.requests) == 1
    assert json.dumps(raised.value.to_dict())  # what a report carries


@pytest.mark.parametrize("sender", ["jira", "servicenow"])
def test_a_ticket_system_that_does_not_answer_in_time_is_a_timeout(
    tickets: TicketStandIn, sender: str
) -> None:
    system = parse_systems(tickets.secrets())[sender]
    assert isinstance(system, TicketSystem)
    tickets.fail_next(
        "jira" if sender == "jira" else "servicenow", Fault(passthrough=True, delay_seconds=3)
    )
    slow = client_for(system, requests.Session(), (1.0, 0.3))

    with pytest.raises(UpstreamError) as raised:
        slow.write(Note(sender, "OPS-7" if sender == "jira" else "CHG0031337", NOTE.marker,
                        "succeeded", "c-1", NOTE.lines, ()))  # fmt: skip

    assert raised.value.category.value == "timeout"

"""What a ticket is told (issue 26.6), whatever a notification holds: the note is built from
messages of every shape (hypothesis), never raises, never exceeds 8,000 characters, ends in
its marker, and renders as valid Atlassian Document Format and escaped wiki markup."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from csbs_trigger.tickets.clients import adf_document, wiki_text
from csbs_trigger.tickets.note import MAX_NOTE_LENGTH, Note, note_of
from csbs_trigger.values import replace

ADF_SCHEMA = json.loads((Path(__file__).parent / "schemas" / "adf-v1-full.json").read_text())
_TEXT = st.one_of(st.none(), st.text(max_size=400), st.integers(), st.booleans(), st.just([]))
_ITEM = st.fixed_dictionaries({
    "resource_id": _TEXT, "resource_name": _TEXT, "fail_code": _TEXT, "fail_reason": _TEXT,
    "status": st.sampled_from(["error", "skipped", "available", None, 5]),
})  # fmt: skip


@st.composite
def messages(draw: st.DrawFn) -> Any:
    event = draw(st.sampled_from(["completed", "started", "digest", None]))
    message: dict[str, Any] = {
        "event": event,
        "outcome": draw(st.sampled_from(["succeeded", "failed", "timed_out", "other"])),
        "backend": draw(st.sampled_from(["csbs", "cbr", None, 3])),
        "trigger": draw(st.one_of(st.none(), st.fixed_dictionaries({
            "id": _TEXT, "sender": st.sampled_from(["jira", "", None]),
            "reference": st.sampled_from(["OPS-1", "", None])}))),
        "request": draw(st.one_of(st.none(), st.fixed_dictionaries(
            {"plan_id": _TEXT, "vault_id": _TEXT}))),
        "plan_name": draw(_TEXT),
        "checkpoint": draw(st.one_of(st.none(), st.fixed_dictionaries({"id": _TEXT}))),
        "summary": draw(st.one_of(st.none(), st.dictionaries(
            st.sampled_from(["servers", "available", "failed"]), _TEXT))),
        "items": draw(st.one_of(st.none(), st.lists(_ITEM, max_size=80))),
        "error": draw(st.one_of(st.none(), st.fixed_dictionaries({
            "category": _TEXT, "code": _TEXT, "message": _TEXT,
            "retryable": st.sampled_from([True, False, None])}))),
        "started_at": draw(_TEXT), "finished_at": draw(_TEXT),
        "duration_s": draw(st.one_of(st.none(), st.integers(0, 10**6), st.text(max_size=3))),
    }  # fmt: skip
    return draw(st.sampled_from([message, [message], "text", None]))


@settings(max_examples=300, deadline=None)
@given(message=messages())
def test_any_message_gives_a_bounded_note_or_none(message: Any) -> None:
    note = note_of(message)
    if note is None:
        return
    text = note.text()
    lines = text.split("\n")
    assert len(text) <= MAX_NOTE_LENGTH
    assert lines[-1] == note.marker
    assert note.marker.startswith("[csbs-trigger ")
    assert all(line.strip() for line in lines)
    assert not [c for c in text if c != "\n" and (ord(c) < 32 or 127 <= ord(c) < 160)]
    jsonschema.validate(adf_document(note), ADF_SCHEMA)
    wiki = wiki_text(note)
    assert wiki.split("\n")[-1] == note.marker.replace("[", "\\[").replace("]", "\\]")


def test_a_completion_names_only_a_final_outcome_and_a_start_only_a_failure_for_good() -> None:
    base = {"trigger": {"sender": "jira", "reference": "OPS-1", "id": "d-1"},
            "request": {"plan_id": "p-1"}, "checkpoint": {"id": "c-1"}}  # fmt: skip
    final = {"category": "not_found", "retryable": False, "message": "gone"}
    retryable = {**final, "retryable": True}
    assert note_of({**base, "event": "completed", "outcome": "succeeded"}) is not None
    assert note_of({**base, "event": "started", "outcome": "succeeded"}) is None
    assert note_of({**base, "event": "started", "outcome": "failed", "error": retryable}) is None
    failed = note_of({**base, "event": "started", "outcome": "failed", "error": final})
    assert failed is not None
    assert failed.marker == "[csbs-trigger trigger d-1 plan p-1]"
    vault = note_of({**base, "backend": "cbr", "request": {"vault_id": "v-1"},
                     "event": "started", "outcome": "failed", "error": final})  # fmt: skip
    assert vault is not None
    assert vault.marker == "[csbs-trigger trigger d-1 vault v-1]"
    odd = note_of({**base, "trigger": {**base["trigger"], "id": "a^b c"}, "event": "started",
                   "outcome": "failed", "error": final})  # fmt: skip
    assert odd is not None
    assert "^" not in odd.marker  # an id a ticket search would misread is named by its digest


COMPLETED = {
    "event": "completed", "outcome": "failed", "backend": "cbr",
    "trigger": {"source": "webhook", "id": "d-1", "sender": "jira", "reference": "OPS-7"},
    "request": {"vault_id": "v-1"}, "plan_name": "vault-db",
    "checkpoint": {"id": "c-1"},
    "summary": {"servers": 3, "available": 1, "failed": 2, "running": 0},
    "started_at": "2027-01-15T08:00:00+00:00", "finished_at": "2027-01-15T08:41:00+00:00",
    "duration_s": 2460,
    "error": {"category": "item_error", "code": "BackupService.7102", "retryable": False,
              "message": "2 of 3 servers failed (db-1: The server has stopped.)"},
    "items": [
        {"resource_id": "s-1", "resource_name": "db-1", "status": "error",
         "fail_code": "BackupService.7102", "fail_reason": "The server has stopped."},
        {"resource_id": "s-2", "resource_name": "app-1", "status": "available"},
        {"resource_id": "s-3", "resource_name": None, "status": "skipped",
         "fail_code": None, "fail_reason": None},
    ],
}  # fmt: skip


def test_a_completion_reads_as_an_operator_writes_it() -> None:
    note = note_of(COMPLETED)

    assert note is not None
    assert (note.sender, note.reference, note.outcome, note.checkpoint_id) == (
        "jira", "OPS-7", "failed", "c-1",
    )  # fmt: skip
    assert note.text() == "\n".join([
        "CBR backup failed for vault vault-db (v-1)",
        "Checkpoint: c-1",
        "Servers: 1 available, 2 failed, of 3",
        "Started: 2027-01-15T08:00:00+00:00, finished: 2027-01-15T08:41:00+00:00 (41 min)",
        "Error: item_error BackupService.7102: 2 of 3 servers failed (db-1: The server has "
        "stopped.)",
        "Failed servers:",
        "- db-1 (s-1): BackupService.7102 The server has stopped.",
        "- s-3: skipped",
        "[csbs-trigger checkpoint c-1]",
    ])  # fmt: skip


def test_a_success_names_no_error_and_a_plan_named_by_its_id_once() -> None:
    succeeded = {**COMPLETED, "outcome": "succeeded", "backend": "csbs", "plan_name": None,
                 "request": {"plan_id": "p-1"}, "items": [], "duration_s": 59}  # fmt: skip
    note = note_of(succeeded)

    assert note is not None
    assert note.text_lines()[0] == "CSBS backup completed for plan p-1"
    assert note.text_lines()[3].endswith("(59 s)")
    assert not any(line.startswith(("Error", "Failed")) for line in note.text_lines())
    timed_out = note_of({**succeeded, "outcome": "timed_out"})
    assert timed_out is not None
    assert timed_out.text_lines()[0] == "CSBS backup timed out for plan p-1"
    assert timed_out.text_lines()[4].startswith("Error: item_error")


def test_a_start_that_failed_for_good_names_its_error() -> None:
    note = note_of({
        "event": "started", "outcome": "failed", "backend": "csbs",
        "trigger": {"source": "webhook", "id": "d-9", "sender": "servicenow",
                    "reference": "CHG0031337"},
        "request": {"plan_id": "p-1"},
        "error": {"category": "not_found", "code": "CSBS.3000", "retryable": False,
                  "message": "CSBS answered HTTP 404: the plan does not exist"},
    })  # fmt: skip

    assert note is not None
    assert (note.outcome, note.checkpoint_id) == ("failed", None)
    assert note.text() == "\n".join([
        "CSBS backup not started for plan p-1: not_found",
        "Error: not_found CSBS.3000: CSBS answered HTTP 404: the plan does not exist",
        "[csbs-trigger trigger d-9 plan p-1]",
    ])  # fmt: skip


def test_each_server_a_resolution_could_not_start_is_its_own_note() -> None:
    """Issue 28: one delivery naming servers fails for each unprotected server or unknown name
    on its own; each is a note of its own (one marker would write only the first)."""

    def failed(resolved_from: dict[str, Any], category: str, message: str) -> Any:
        return note_of({
            "event": "started", "outcome": "failed", "backend": "cbr",
            "trigger": {"source": "webhook", "id": "d-9", "sender": "servicenow",
                        "reference": "CHG0040011"},
            "request": {"vault_id": None, "resolved_from": resolved_from},
            "error": {"category": category, "retryable": False, "message": message},
        })  # fmt: skip

    asked = {"resource_names": ["web-1", "db 1", "ghost"]}
    unprotected = failed({**asked, "server": "s-1"}, "not_protected", "no vault protects web-1")
    twin = failed({**asked, "name": "db 1"}, "invalid_event", "2 servers are named db 1")
    policy = failed({"policy_id": "pol-1"}, "not_protected", "CBR policy pol-1 is applied to no "
                    "vault")  # fmt: skip

    assert unprotected.lines[0] == "CBR backup not started for server s-1: not_protected"
    assert unprotected.marker == "[csbs-trigger trigger d-9 server s-1]"
    assert twin.lines[0] == "CBR backup not started for server named db 1: invalid_event"
    digest = hashlib.sha256(b"db 1").hexdigest()[:32]
    assert twin.marker == f"[csbs-trigger trigger d-9 name sha256:{digest}]"
    assert policy.lines[0] == "CBR backup not started for policy pol-1: not_protected"
    assert policy.marker == "[csbs-trigger trigger d-9 policy pol-1]"


@pytest.mark.parametrize(
    "request_field",
    [None, "a request that is text", {"vault_id": None, "resolved_from": "servers web-1"},
     {"vault_id": None, "resolved_from": ["web-1"]}],
)  # fmt: skip
def test_a_failure_whose_request_or_resolution_is_no_object_is_noted_for_its_vault(
    request_field: Any,
) -> None:
    """What a message says it was resolved from is read only where it is an object: any other
    shape is noted as the vault's failure (as if it named no resolution), never a crash of
    the ticket update."""

    def failed(request: Any) -> Any:
        return note_of({
            "event": "started", "outcome": "failed", "backend": "cbr",
            "trigger": {"source": "webhook", "id": "d-9", "sender": "servicenow",
                        "reference": "CHG0040011"},
            "request": request,
            "error": {"category": "not_protected", "retryable": False, "message": "no vault"},
        })  # fmt: skip

    note, plain = failed(request_field), failed({"vault_id": None})

    assert note is not None
    assert plain is not None
    assert (note.marker, note.lines) == (plain.marker, plain.lines)
    assert note.lines[0].startswith("CBR backup not started for vault ")


def test_the_failed_servers_that_do_not_fit_are_counted() -> None:
    items = [{"resource_id": f"s-{n:03d}", "resource_name": f"vm-{n:03d}", "status": "error",
              "fail_code": "E", "fail_reason": "r" * 900} for n in range(20)]  # fmt: skip
    note = note_of({**COMPLETED, "items": items})

    assert note is not None
    assert len(note.text()) <= MAX_NOTE_LENGTH
    assert note.failures_omitted == 20 - len(note.failures)
    assert 0 < len(note.failures) < 20
    assert note.text_lines()[-2] == f"- and {note.failures_omitted} more"
    longer = Note(note.sender, note.reference, note.marker, note.outcome, note.checkpoint_id,
                  note.lines, (*note.failures, "x" * 900), note.failures_omitted - 1)  # fmt: skip
    assert len(longer.text()) > MAX_NOTE_LENGTH  # one more would not have fit


def test_adf_and_wiki_render_the_same_lines() -> None:
    note = note_of(COMPLETED)
    assert note is not None

    document = adf_document(note)

    paragraphs = [block for block in document["content"] if block["type"] == "paragraph"]
    assert [p["content"][0]["text"] for p in paragraphs] == [
        *note.lines, "Failed servers:", note.marker,
    ]  # fmt: skip
    [bullets] = [block for block in document["content"] if block["type"] == "bulletList"]
    assert [item["content"][0]["content"][0]["text"] for item in bullets["content"]] == list(
        note.failures
    )
    assert document["version"] == 1
    assert document["type"] == "doc"
    wiki = wiki_text(note).split("\n")
    assert wiki[-1] == "\\[csbs-trigger checkpoint c-1\\]"
    assert wiki[-3:-1] == ["* db-1 (s-1): BackupService.7102 The server has stopped.",
                           "* s-3: skipped"]  # fmt: skip
    assert wiki_text(replace(note, failures_omitted=2)).split("\n")[-2] == "* and 2 more"
    assert adf_document(replace(note, failures_omitted=2))["content"][-2]["content"][-1][
        "content"][0]["content"][0]["text"] == "and 2 more"  # fmt: skip


def test_wiki_escapes_what_markup_would_read() -> None:
    note = Note("s", "OPS-1", "[m]", "failed", None, ("a {b} |c| *d* !e! [f] \\g",), ())
    assert wiki_text(note).split("\n")[0] == "a \\{b\\} \\|c\\| \\*d\\* \\!e\\! \\[f\\] \\\\g"


def test_a_note_of_exactly_8000_characters_is_kept_whole() -> None:
    def item(reason_length: int) -> dict[str, Any]:
        return {"resource_id": "s-1", "resource_name": "db-1", "status": "error",
                "fail_code": "E", "fail_reason": "r" * reason_length}  # fmt: skip

    def with_last(length: int) -> Note:
        note = note_of({**COMPLETED, "items": [item(1000)] * 7 + [item(length)]})
        assert note is not None
        return note

    shortest = len(with_last(1).text())
    exact = with_last(1 + MAX_NOTE_LENGTH - shortest)
    over = with_last(2 + MAX_NOTE_LENGTH - shortest)

    assert (len(exact.text()), exact.failures_omitted) == (MAX_NOTE_LENGTH, 0)
    assert over.failures_omitted == 1


def test_an_id_a_ticket_search_would_misread_is_named_by_its_digest() -> None:
    odd = "a^b c"
    note = note_of({"event": "started", "outcome": "failed", "request": {"plan_id": "p-1"},
                    "trigger": {"id": odd, "sender": "jira", "reference": "OPS-1"},
                    "error": {"category": "not_found", "retryable": False}})  # fmt: skip
    assert note is not None
    digest = hashlib.sha256(odd.encode()).hexdigest()[:32]
    assert note.marker == f"[csbs-trigger trigger sha256:{digest} plan p-1]"


def test_counts_and_fields_that_are_no_numbers_or_texts_are_left_out() -> None:
    odd = {**COMPLETED, "summary": {"servers": True, "available": "2"}, "plan_name": {"x": 1},
           "started_at": ["t"], "items": []}  # fmt: skip
    note = note_of(odd)
    assert note is not None
    assert note.text_lines()[0] == "CBR backup failed for vault v-1"
    assert note.text_lines()[2] == "Servers: 0 available, 0 failed, of 0"
    assert note.text_lines()[3].startswith("Started: None, finished: ")


@pytest.mark.parametrize("trigger", [
    {"sender": "", "reference": "OPS-1"}, {"sender": "jira", "reference": ""},
    {"sender": 5, "reference": "OPS-1"}, {"sender": "jira", "reference": 7},
    {"reference": "OPS-1"}, {"sender": "jira"},
])  # fmt: skip
def test_a_trigger_that_names_no_sender_or_no_reference_asks_for_nothing(
    trigger: dict[str, Any],
) -> None:
    assert note_of({**COMPLETED, "trigger": trigger}) is None


def test_a_start_that_failed_is_told_to_its_own_sender_and_ticket() -> None:
    failure = {"category": "not_found", "retryable": False, "message": "m"}
    note = note_of({"event": "started", "outcome": "failed", "request": {"plan_id": "p-1"},
                    "trigger": {"id": "\\ud800x", "sender": "sn", "reference": "CHG1"},
                    "error": failure})  # fmt: skip
    assert note is not None
    assert (note.sender, note.reference) == ("sn", "CHG1")
    assert note.text_lines()[1] == "Error: not_found: m"  # no code: none shown
    digest = hashlib.sha256("\\ud800x".encode("utf-8", "replace")).hexdigest()[:32]
    assert note.marker == f"[csbs-trigger trigger sha256:{digest} plan p-1]"


def test_a_completion_without_a_duration_or_a_usable_error_still_reads() -> None:
    note = note_of({**COMPLETED, "duration_s": None, "error": "oops"})
    assert note is not None
    assert note.text_lines()[3] == (
        "Started: 2027-01-15T08:00:00+00:00, finished: 2027-01-15T08:41:00+00:00"
    )
    assert not any(line.startswith("Error") for line in note.text_lines())

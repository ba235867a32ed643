"""What a ticket is told (issue 26.6), whatever a notification holds: the note is built from
messages of every shape (hypothesis), never raises, never exceeds 8,000 characters, ends in
its marker, and renders as valid Atlassian Document Format and escaped wiki markup."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
from hypothesis import given, settings
from hypothesis import strategies as st

from csbs_trigger.tickets.clients import adf_document, wiki_text
from csbs_trigger.tickets.note import MAX_NOTE_LENGTH, note_of

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

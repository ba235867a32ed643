"""What a ticket is told of a backup: built from the notification that reports it (the
completion, or a start that failed for good), as plain lines that each ticket system renders in
its own format; the last line is the marker by which a written note is found again."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from csbs_trigger.cloud.backend import Backend
from csbs_trigger.notify import backend_of, duration_text
from csbs_trigger.text import shown
from csbs_trigger.values import frozen

MAX_NOTE_LENGTH = 8000
MARKER_PREFIX = "[csbs-trigger "
_MAX_FIELD_LENGTH = 1000
# What a marker may hold as it is: a ticket system searches for it as text (ServiceNow in an
# encoded query, where ``^`` separates conditions).
_MARKER_SAFE = re.compile(r"[A-Za-z0-9._:@+/-]{1,128}")
_FAILED = ("error", "skipped")  # an item's statuses that count as failed
_FAILED = ("error", "skipped")  # an item's statuses that count as failed
_OUTCOME_WORDS = {"succeeded": "completed", "failed": "failed", "timed_out": "timed out"}


@frozen
class Note:
    """One result to write into one ticket: ``marker`` names the result (one note each)."""

    sender: str
    reference: str
    marker: str
    outcome: str
    checkpoint_id: str | None
    lines: tuple[str, ...]
    failures: tuple[str, ...]  # one line per failed server, as many as fit
    failures_omitted: int = 0

    def text_lines(self) -> list[str]:
        """Every line as written: the summary, the failed servers as a list, the marker."""
        failures = [f"- {line}" for line in self.failures]
        if self.failures_omitted:
            failures.append(f"- and {self.failures_omitted} more")
        heading = ["Failed servers:"] if failures else []
        return [*self.lines, *heading, *failures, self.marker]

    def text(self) -> str:
        return "\n".join(self.text_lines())


def note_of(content: Any) -> Note | None:
    """The note a notification asks for, or None: it names no ticket, or says nothing final
    (a backup started, or a start that the sender will retry)."""
    if not isinstance(content, dict):
        return None
    trigger = content.get("trigger")
    trigger = trigger if isinstance(trigger, dict) else {}
    sender, reference = trigger.get("sender"), trigger.get("reference")
    if not (isinstance(sender, str) and sender and isinstance(reference, str) and reference):
        return None
    error = content.get("error") if isinstance(content.get("error"), dict) else None
    event, outcome = content.get("event"), content.get("outcome")
    if event == "completed" and outcome in _OUTCOME_WORDS:
        return _completed(content, sender, reference, str(outcome), error)
    if event == "started" and outcome == "failed" and error and error.get("retryable") is False:
        return _not_started(content, sender, reference, trigger.get("id"), error)
    return None


def _completed(
    content: dict[str, Any], sender: str, reference: str, outcome: str, error: dict[str, Any] | None
) -> Note:
    backend = backend_of(content)
    checkpoint = content.get("checkpoint")
    checkpoint_id = _field(checkpoint.get("id")) if isinstance(checkpoint, dict) else None
    target = _target(content, backend.target_key)
    name = _field(content.get("plan_name"))
    counts = _object(content.get("summary"))
    duration = content.get("duration_s")
    took = f" ({duration_text(duration)})" if isinstance(duration, int) else ""
    lines = [
        f"{backend.label} backup {_OUTCOME_WORDS[outcome]} for {backend.target_word} "
        + (f"{name} ({target})" if name and target and name != target else f"{name or target}"),
        f"Checkpoint: {checkpoint_id}",
        f"Servers: {_count(counts, 'available')} available, {_count(counts, 'failed')} failed, "
        f"of {_count(counts, 'servers')}",
        f"Started: {_field(content.get('started_at'))}, finished: "
        f"{_field(content.get('finished_at'))}{took}",
    ]
    if error and outcome != "succeeded":
        lines.append(_error_line(error))
    items = content.get("items")
    items = items if isinstance(items, list) else []
    failed = [item for item in items if isinstance(item, dict) and item.get("status") in _FAILED]
    failures = [_failure_line(item) for item in failed]
    marker = f"{MARKER_PREFIX}checkpoint {_marker_part(checkpoint_id)}]"
    return _fitted(sender, reference, marker, outcome, checkpoint_id, lines, failures)


def _not_started(
    content: dict[str, Any], sender: str, reference: str, trigger_id: Any, error: dict[str, Any]
) -> Note:
    backend = backend_of(content)
    kind, word, named = _not_started_what(content, backend)
    lines = [
        f"{backend.label} backup not started for {word} {named}: {_field(error.get('category'))}",
        _error_line(error),
    ]
    marker = (f"{MARKER_PREFIX}trigger {_marker_part(_field(trigger_id))} {kind} "
              f"{_marker_part(named)}]")  # fmt: skip
    return _fitted(sender, reference, marker, "failed", None, lines, [])


def _not_started_what(content: dict[str, Any], backend: Backend) -> tuple[str, str, str | None]:
    """What did not start, as its marker names it, as its note says it, and its id: the plan or
    vault, or (a trigger naming servers or a policy, resolved one by one) the server, the name
    or the policy it failed for, each a note of its own."""
    target = _target(content, backend.target_key)
    request = content.get("request")
    resolved_from = request.get("resolved_from") if isinstance(request, dict) else None
    asked = resolved_from if isinstance(resolved_from, dict) and target is None else {}
    for key, kind, word in (("server", "server", "server"), ("name", "name", "server named"),
                            ("policy_id", "policy", "policy")):  # fmt: skip
        if _field(asked.get(key)):
            return kind, word, _field(asked[key])
    kind = "vault" if backend.target_key == "vault_id" else "plan"
    return kind, backend.target_word, target


def _fitted(
    sender: str,
    reference: str,
    marker: str,
    outcome: str,
    checkpoint_id: str | None,
    lines: list[str],
    failures: list[str],
) -> Note:
    """The note within ``MAX_NOTE_LENGTH``: as many failed servers as fit, and how many not
    (each field is bounded, so the summary alone always fits)."""
    kept = len(failures)
    while True:
        note = Note(sender, reference, marker, outcome, checkpoint_id, tuple(lines),
                    tuple(failures[:kept]), len(failures) - kept)  # fmt: skip
        if kept == 0 or len(note.text()) <= MAX_NOTE_LENGTH:
            return note
        kept -= 1


def _error_line(error: dict[str, Any]) -> str:
    code = _field(error.get("code"))
    return (f"Error: {_field(error.get('category'))}" + (f" {code}" if code else "")
            + f": {_field(error.get('message'))}")  # fmt: skip


def _failure_line(item: dict[str, Any]) -> str:
    name, server = _field(item.get("resource_name")), _field(item.get("resource_id"))
    who = f"{name} ({server})" if name and server and name != server else f"{name or server}"
    code = _field(item.get("fail_code"))
    reason = _field(item.get("fail_reason")) or _field(item.get("status"))
    return f"{who}: " + (f"{code} " if code else "") + f"{reason}"


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _target(content: dict[str, Any], key: str) -> str | None:
    request = content.get("request")
    return _field(request.get(key)) if isinstance(request, dict) else None


def _count(counts: dict[str, Any], key: str) -> int:
    value = counts.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _field(value: Any) -> str | None:
    """A value of the notification as one line of text: control characters and line breaks
    gone (a line break would start another paragraph), bounded."""
    if value is None or isinstance(value, dict | list):
        return None
    text = " ".join(str(shown(str(value))).split())
    return text[:_MAX_FIELD_LENGTH] or None


def _marker_part(value: str | None) -> str:
    """An id as a marker holds it: as is where it is plain, else its digest."""
    if value and _MARKER_SAFE.fullmatch(value):
        return value
    return "sha256:" + hashlib.sha256((value or "").encode("utf-8", "replace")).hexdigest()[:32]

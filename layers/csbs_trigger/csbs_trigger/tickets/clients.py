"""The ticket systems' adapters: each writes a note into a ticket, and finds one written before
by its marker (after an attempt whose answer was lost). Errors are the package's own
(``UpstreamError``, classified like every other service's answers); nothing is ever retried here.
"""

from __future__ import annotations

import json
import re
from typing import Any, Protocol

import requests

from csbs_trigger.cloud.transport import Answer, send
from csbs_trigger.errors import Category, UpstreamError
from csbs_trigger.tickets.note import Note
from csbs_trigger.tickets.systems import JIRA_CLOUD, JIRA_DC, TicketSystem

# Comments read, newest first, while looking for a note written before: Jira pages by 100.
JIRA_PAGE_SIZE = 100
MAX_JIRA_PAGES = 50
_SYS_ID = re.compile(r"[0-9a-f]{32}")
# Jira wiki markup reads links, macros, tables, images and bold from these anywhere in a line
# (the others it reads only at word boundaries, which ids and times do not make).
_WIKI_SPECIAL = re.compile(r"([\\\[\]{}|!*])")


class TicketClient(Protocol):
    def write(self, note: Note) -> None: ...

    def has_note(self, note: Note) -> bool: ...


def client_for(system: TicketSystem, session: requests.Session, timeouts: tuple[float, float]
               ) -> TicketClient:  # fmt: skip
    if system.kind in (JIRA_CLOUD, JIRA_DC):
        return JiraClient(system, session, timeouts)
    return ServiceNowClient(system, session, timeouts)


class _Http:
    def __init__(
        self, system: TicketSystem, session: requests.Session, timeouts: tuple[float, float]
    ) -> None:
        self.system, self._session, self._timeouts = system, session, timeouts

    def call(self, method: str, path: str, *, query: dict[str, str] | None = None,
             body: Any = None) -> Answer:  # fmt: skip
        """One request, its answer if it is a success, else the classified error."""
        system = self.system
        headers = {"Accept": "application/json"}
        auth = None
        if system.user is None:
            headers["Authorization"] = f"Bearer {system.secret}"
        else:
            auth = (system.user, system.secret)
        request = requests.Request(method, system.base_url + path, params=query, headers=headers,
                                   json=body, auth=auth).prepare()  # fmt: skip
        answer = send(self._session, request, what=system.label, timeouts=self._timeouts)
        if not answer.ok:
            raise answer.error()
        return answer


class JiraClient(_Http):
    """Jira Cloud (REST API 3, a comment in Atlassian Document Format) and Jira Data Center
    (REST API 2, a comment in wiki markup, personal access token)."""

    @property
    def _api(self) -> str:
        return "/rest/api/3" if self.system.kind == JIRA_CLOUD else "/rest/api/2"

    def write(self, note: Note) -> None:
        path = f"{self._api}/issue/{note.reference}/comment"
        self.call("POST", path, body=self.comment(note))

    def comment(self, note: Note) -> dict[str, Any]:
        if self.system.kind == JIRA_DC:
            return {"body": wiki_text(note)}
        properties: list[dict[str, Any]] = [{
            "key": "csbs-trigger",
            "value": {"checkpoint_id": note.checkpoint_id, "outcome": note.outcome},
        }]  # fmt: skip
        if self.system.internal:
            properties.append({"key": "sd.public.comment", "value": {"internal": True}})
        return {"body": adf_document(note), "properties": properties}

    def has_note(self, note: Note) -> bool:
        """Whether a comment holds the note's marker (as written, or escaped as wiki markup)."""
        forms = {note.marker, _wiki_escaped(note.marker)}
        path = f"{self._api}/issue/{note.reference}/comment"
        start = 0
        for _ in range(MAX_JIRA_PAGES):
            query = {"orderBy": "-created", "maxResults": str(JIRA_PAGE_SIZE),
                     "startAt": str(start)}  # fmt: skip
            comments, total = _comment_page(self.call("GET", path, query=query))
            for comment in comments:
                body = comment.get("body")
                text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
                if any(form in text for form in forms):
                    return True
            start += len(comments)
            if not comments or start >= total:
                return False
        raise UpstreamError.bad_response(
            f"Jira listed more than {MAX_JIRA_PAGES * JIRA_PAGE_SIZE} comments", http_status=200
        )


class ServiceNowClient(_Http):
    """A work note on the record whose number is the reference (``change_request`` unless the
    secret names another table)."""

    def write(self, note: Note) -> None:
        sys_id = self._sys_id(note.reference)
        self.call("PATCH", f"/api/now/table/{self.system.table}/{sys_id}",
                  body={"work_notes": note.text()})  # fmt: skip

    def has_note(self, note: Note) -> bool:
        sys_id = self._sys_id(note.reference)
        query = {
            "sysparm_query": f"element_id={sys_id}^element=work_notes^valueLIKE{note.marker}",
            "sysparm_fields": "sys_id",
            "sysparm_limit": "1",
        }
        return bool(_rows(self.call("GET", "/api/now/table/sys_journal_field", query=query)))

    def _sys_id(self, reference: str) -> str:
        """The record's sys_id: exactly one row must have the reference as its number."""
        query = {"sysparm_query": f"number={reference}", "sysparm_fields": "sys_id,number",
                 "sysparm_limit": "2"}  # fmt: skip
        rows = [row for row in _rows(self.call("GET", f"/api/now/table/{self.system.table}",
                                               query=query))
                if row.get("number") == reference]  # fmt: skip
        if len(rows) != 1:
            error = UpstreamError(
                f"ServiceNow has {len(rows) or 'no'} {self.system.table} record"
                f"{'s' if len(rows) != 1 else ''} numbered {reference}",
                category=Category.NOT_FOUND if not rows else Category.INVALID_REQUEST,
                http_status=200,
            )
            raise error
        sys_id = rows[0].get("sys_id")
        if not isinstance(sys_id, str) or not _SYS_ID.fullmatch(sys_id):
            raise UpstreamError.bad_response(
                f"ServiceNow answered {reference} without a sys_id", http_status=200
            )
        return sys_id


def adf_document(note: Note) -> dict[str, Any]:
    """The note in Atlassian Document Format: a paragraph per line, the failed servers as a
    bullet list (never an empty text node, never a line break inside one)."""
    content: list[dict[str, Any]] = [_paragraph(line) for line in note.lines]
    failures = [*note.failures, *([f"and {note.failures_omitted} more"]
                                  if note.failures_omitted else [])]  # fmt: skip
    if failures:
        content.append(_paragraph("Failed servers:"))
        content.append({"type": "bulletList", "content": [
            {"type": "listItem", "content": [_paragraph(line)]} for line in failures]})  # fmt: skip
    content.append(_paragraph(note.marker))
    return {"version": 1, "type": "doc", "content": content}


def wiki_text(note: Note) -> str:
    """The note in Jira wiki markup: every character markup would read escaped, the failed
    servers as a list."""
    lines = [_wiki_escaped(line) for line in note.text_lines()]
    return "\n".join(f"* {line[2:]}" if line.startswith("- ") else line for line in lines)


def _wiki_escaped(text: str) -> str:
    return _WIKI_SPECIAL.sub(r"\\\1", text)


def _paragraph(text: str) -> dict[str, Any]:
    return {"type": "paragraph", "content": [{"type": "text", "text": text}]}


def _comment_page(answer: Answer) -> tuple[list[dict[str, Any]], int]:
    document = answer.json()
    comments = document.get("comments") if isinstance(document, dict) else None
    if not isinstance(comments, list):
        raise UpstreamError.bad_response("Jira answered without a comments list", http_status=200)
    total = document.get("total")
    listed = [comment for comment in comments if isinstance(comment, dict)]
    return listed, total if isinstance(total, int) and not isinstance(total, bool) else len(listed)


def _rows(answer: Answer) -> list[dict[str, Any]]:
    document = answer.json()
    rows = document.get("result") if isinstance(document, dict) else None
    if not isinstance(rows, list):
        raise UpstreamError.bad_response("ServiceNow answered without a result list",
                                         http_status=200)  # fmt: skip
    return [row for row in rows if isinstance(row, dict)]

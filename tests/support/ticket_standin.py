"""Jira Cloud, Jira Data Center and ServiceNow as their REST APIs answer, over loopback: the
three ticket systems a backup's result is written back to (issue 26).

Routes, as documented and as the real services answer them:

* Jira Cloud ``/rest/api/3/issue/{key}/comment`` (basic auth, email and API token; comment body
  in Atlassian Document Format) and Jira Data Center ``/rest/api/2/issue/{key}/comment``
  (``Authorization: Bearer <PAT>``; body in wiki markup): POST adds a comment (201), GET pages
  them (``startAt``, ``maxResults``, ``orderBy=-created``). An unknown issue is 404 with Jira's
  ``errorMessages``; wrong credentials 401.
* ServiceNow ``/api/now/table/{table}?sysparm_query=number=<n>`` finds a record, PATCH
  ``/api/now/table/{table}/{sys_id}`` with ``work_notes`` appends a journal entry, and
  ``/api/now/table/sys_journal_field?sysparm_query=element_id=…^element=work_notes^valueLIKE…``
  finds one; its errors are ``{"error": {"message", "detail"}, "status": "failure"}``.

Faults (``support.standin.Fault``) replace the next answer of a system; ``passthrough`` does the
work (a comment is stored) and then loses the answer (``reset``, ``delay_seconds``) or answers
the fault's status and body instead (a 503 after the write).
"""

from __future__ import annotations

import base64
import json
import socket
import struct
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from support.standin import Fault, Recorded

JIRA_EMAIL, JIRA_API_TOKEN = "backup-bot@example.com", "ATATT3xFfGF0-jira-cloud-token-5f1c"
JIRA_PAT = "NjQ5ODg4MjE0NzA4OpersonalAccessTokenDC"
SERVICENOW_USER, SERVICENOW_PASSWORD = "svc_csbs_trigger", "Sn0w-integration-pass!"

Answer = tuple[int, Any, dict[str, str]]


@dataclass
class Record:
    """A ServiceNow record and the work notes journaled on it."""

    sys_id: str
    number: str
    table: str = "change_request"
    work_notes: list[str] = field(default_factory=list)


class TicketStandIn:
    """Start with ``with TicketStandIn() as tickets:``; ``tickets.url`` is its base URL."""

    def __init__(self) -> None:
        # Jira issues by key (both kinds share them), each with its comments in order.
        self.issues: dict[str, list[dict[str, Any]]] = {}
        self.records: dict[str, Record] = {}  # ServiceNow records by number
        self.requests: list[Recorded] = []
        self.faults: dict[str, list[Fault]] = {"jira": [], "servicenow": []}
        self.jira_email, self.jira_api_token, self.jira_pat = JIRA_EMAIL, JIRA_API_TOKEN, JIRA_PAT
        self.servicenow_user, self.servicenow_password = SERVICENOW_USER, SERVICENOW_PASSWORD
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.standin = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> TicketStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def add_issue(self, key: str) -> None:
        self.issues.setdefault(key, [])

    def add_record(self, number: str, table: str = "change_request") -> Record:
        record = self.records[number] = Record(uuid.uuid4().hex, number, table)
        return record

    def fail_next(self, system: str, *faults: Fault) -> None:
        with self._lock:
            self.faults[system].extend(faults)

    def calls(self, system: str) -> list[Recorded]:
        prefix = "/rest/api/" if system == "jira" else "/api/now/"
        return [r for r in self.requests if r.path.startswith(prefix)]

    def writes(self) -> list[Recorded]:
        return [r for r in self.requests if r.method in ("POST", "PATCH")]

    def secrets(self) -> dict[str, dict[str, Any]]:
        """A ticket secret naming this stand-in for the shipped sources."""
        return {
            "jira": {"kind": "jira-cloud", "base_url": self.url, "email": self.jira_email,
                     "api_token": self.jira_api_token, "internal": True},
            "jira-dc": {"kind": "jira-dc", "base_url": self.url, "token": self.jira_pat},
            "servicenow": {"kind": "servicenow", "instance_url": self.url,
                           "username": self.servicenow_user,
                           "password": self.servicenow_password},
        }  # fmt: skip


class _Server(ThreadingHTTPServer):
    request_queue_size = 64
    daemon_threads = True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def standin(self) -> TicketStandIn:
        return self.server.standin  # type: ignore[attr-defined,no-any-return]

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        recorded = Recorded(self.command, parts.path, parse_qs(parts.query),
                            dict(self.headers.items()), body)  # fmt: skip
        system = "jira" if parts.path.startswith("/rest/api/") else "servicenow"
        with self.standin._lock:
            self.standin.requests.append(recorded)
            queue = self.standin.faults[system]
            fault = queue.pop(0) if queue else None
        if fault is not None and fault.arrived is not None:
            fault.arrived.set()
        if fault is not None and fault.release is not None:
            fault.release.wait(30)  # a bound, so a failing test never hangs the run
        if fault is not None and not fault.passthrough:
            self._send(fault.status, fault.body if fault.body is not None else b"", fault.headers)
            return
        status, answer, headers = (
            self._jira(recorded) if system == "jira" else self._servicenow(recorded)
        )
        if fault is not None:  # the work is done; its answer is lost
            if fault.delay_seconds:
                self.standin._stopping.wait(fault.delay_seconds)
            if fault.reset:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))  # fmt: skip
                self.connection.close()
                self.close_connection = True
                return
            if fault.body is not None:  # answered as the fault says (a 503 after the write)
                status, answer, headers = fault.status, fault.body, fault.headers
        self._send(status, answer, headers)

    # -- Jira ---------------------------------------------------------------------------------
    def _jira(self, request: Recorded) -> Answer:
        segments = request.path.strip("/").split("/")
        # rest api <version> issue <key> comment
        if len(segments) != 6 or segments[3] != "issue" or segments[5] != "comment":
            return 404, {"errorMessages": ["null for uri"], "errors": {}}, {}
        version, key = segments[2], segments[4]
        if not self._jira_authorized(version):
            return 401, b"", {"WWW-Authenticate": 'Basic realm="protected-area"'}
        comments = self.standin.issues.get(key)
        if comments is None:
            missing = "Issue does not exist or you do not have permission to see it."
            return 404, {"errorMessages": [missing], "errors": {}}, {}
        if request.method == "POST":
            document = request.json()
            comment = {"id": str(10000 + len(comments)), "body": document["body"],
                       "properties": document.get("properties", []),
                       "created": "2026-12-06T02:00:00.000+0000"}  # fmt: skip
            with self.standin._lock:
                comments.append(comment)
            return 201, {k: v for k, v in comment.items() if k != "properties"}, {}
        start = int(request.query.get("startAt", ["0"])[0])
        size = min(int(request.query.get("maxResults", ["50"])[0]), 100)
        ordered = (
            list(reversed(comments)) if request.query.get("orderBy") == ["-created"] else comments
        )
        return 200, {"startAt": start, "maxResults": size, "total": len(comments),
                     "comments": ordered[start : start + size]}, {}  # fmt: skip

    def _jira_authorized(self, version: str) -> bool:
        authorization = self.headers.get("Authorization", "")
        if version == "2":
            return authorization == f"Bearer {self.standin.jira_pat}"
        expected = f"{self.standin.jira_email}:{self.standin.jira_api_token}".encode()
        return authorization == f"Basic {base64.b64encode(expected).decode()}"

    # -- ServiceNow ---------------------------------------------------------------------------
    def _servicenow(self, request: Recorded) -> Answer:
        expected = f"{self.standin.servicenow_user}:{self.standin.servicenow_password}".encode()
        if self.headers.get("Authorization") != f"Basic {base64.b64encode(expected).decode()}":
            return 401, {"error": {"message": "User Not Authenticated",
                                   "detail": "Required to provide Auth information"},
                         "status": "failure"}, {}  # fmt: skip
        segments = request.path.strip("/").split("/")  # api now table <table> [<sys_id>]
        table = segments[3] if len(segments) >= 4 else ""
        conditions = dict(
            condition.split("=", 1) if "=" in condition else (condition, "")
            for condition in request.query.get("sysparm_query", [""])[0].split("^")
        )
        if table == "sys_journal_field" and request.method == "GET":
            wanted = conditions.get("valueLIKE") or next(
                (c[len("valueLIKE") :] for c in conditions if c.startswith("valueLIKE")), ""
            )
            element = conditions.get("element_id")
            rows = [{"sys_id": uuid.uuid4().hex, "element_id": r.sys_id, "value": note}
                    for r in self.standin.records.values() if r.sys_id == element
                    for note in r.work_notes if wanted and wanted in note]  # fmt: skip
            return 200, {"result": rows[: int(request.query.get("sysparm_limit", ["10"])[0])]}, {}
        if len(segments) == 4 and request.method == "GET":
            rows = [{"sys_id": r.sys_id, "number": r.number}
                    for r in self.standin.records.values()
                    if r.table == table and r.number == conditions.get("number")]  # fmt: skip
            return 200, {"result": rows[: int(request.query.get("sysparm_limit", ["10"])[0])]}, {}
        if len(segments) == 5 and request.method == "PATCH":
            record = next((r for r in self.standin.records.values()
                           if r.table == table and r.sys_id == segments[4]), None)  # fmt: skip
            if record is None:
                return 404, {"error": {"message": "No Record found", "detail":
                             "Record doesn't exist or ACL restricts the record retrieval"},
                             "status": "failure"}, {}  # fmt: skip
            with self.standin._lock:
                record.work_notes.append(request.json()["work_notes"])
            return 200, {"result": {"sys_id": record.sys_id, "number": record.number}}, {}
        return 400, {"error": {"message": "Invalid request", "detail": request.path},
                     "status": "failure"}, {}  # fmt: skip

    def _send(self, status: int, body: Any, headers: dict[str, str]) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        # As Jira and ServiceNow do: a session cookie with every answer.
        cookie = {"Set-Cookie": f"JSESSIONID={uuid.uuid4().hex}; Path=/; HttpOnly"}
        for name, value in {"Content-Type": "application/json", **cookie, **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

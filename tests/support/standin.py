"""A CSBS + CBR + IAM stand-in: a real HTTP server on 127.0.0.1 that enforces the API contract.

It serves Keystone's ``POST /v3/auth/tokens``, CSBS's
``POST /v1/{project_id}/providers/{provider_id}/checkpoints`` and checkpoint items, and CBR's
restore points, backups and tasks under ``/v3/{project_id}/`` (as the official CBR SDK's response
models read them, which a test checks, with what real CBR answers show besides: ``vault: null``
on a GET, disk backups with a ``parent_id``, pages capped below the ``limit`` asked for), checks
what a real server checks
(token, project, provider, content type, body shape, plan and resources), answers as real servers
do (``extra_info`` as a JSON string, microsecond timestamps without a zone), records every request,
and can be told to fail the next requests in any way the client must survive.
"""

from __future__ import annotations

import hmac
import json
import secrets
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from support.loopback import KeepAliveHandler, LoopbackServer

# The stand-in accepts the sample secrets in events/secrets/ (test-only values, which the tests
# check never leave the function).
_SAMPLES = Path(__file__).resolve().parents[2] / "events" / "secrets"
_PASSWORD_SAMPLE = json.loads((_SAMPLES / "password.json").read_text())
_ACCESS_KEY_SAMPLE = json.loads((_SAMPLES / "access-keys.json").read_text())

PROVIDER_ID = "fc4d5750-22e7-4798-8a46-f48f62c4c1da"
PROJECT_ID: str = _PASSWORD_SAMPLE["project_id"]
PROJECT_NAME = "eu-de_backups"
DOMAIN_NAME: str = _PASSWORD_SAMPLE["user_domain_name"]
USERNAME: str = _PASSWORD_SAMPLE["username"]
PASSWORD: str = _PASSWORD_SAMPLE["password"]
ACCESS_KEY: str = _ACCESS_KEY_SAMPLE["ak"]
SECRET_KEY: str = _ACCESS_KEY_SAMPLE["sk"]
SECURITY_TOKEN = "gQpjbi1ub3J0aC00jLMxtdemporarytokenforstandin"
MAX_CLOCK_SKEW = timedelta(minutes=15)


@dataclass
class Plan:
    name: str
    resources: dict[str, str]  # id -> server name
    busy_code: str | None = None  # e.g. "CSBS.1001" while a backup of the plan is running


@dataclass
class Fault:
    """What the next matching request gets instead of the real answer."""

    status: int = 500
    body: bytes | dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0  # answer late: past the client's read timeout
    reset: bool = False  # start the answer, then reset the connection mid-body
    # Hold the answer: ``arrived`` is set when the request is in, the answer waits for ``release``
    # (so a test overlaps two requests by events, not by luck).
    arrived: threading.Event | None = None
    release: threading.Event | None = None
    passthrough: bool = False  # once released, answer as the stand-in would have


@dataclass
class Vault:
    name: str
    resources: dict[str, str]  # id -> server name
    busy: set[str] = field(default_factory=set)  # being backed up already: skipped


@dataclass
class CreatedRestorePoint:
    id: str
    vault_id: str
    servers: list[tuple[str, str]]  # (id, name) backed up
    backup_ids: list[str]
    project_id: str
    created_at: datetime
    polls: int = 0
    deleted: bool = False
    deleting: dict[str, int] = field(default_factory=dict)  # backup id: reads until it is gone
    gone: set[str] = field(default_factory=set)  # backup ids deleted


@dataclass
class CreatedCheckpoint:
    id: str
    plan_id: str
    servers: list[tuple[str, str]]  # (id, name)
    item_ids: list[str]
    project_id: str = PROJECT_ID
    polls: int = 0
    deleted: bool = False
    deleting: dict[str, int] = field(default_factory=dict)  # item id: reads until it is gone
    gone: set[str] = field(default_factory=set)  # item ids deleted


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class CsbsStandIn:
    """Start with ``with CsbsStandIn() as standin:``; ``standin.url`` is its base URL."""

    def __init__(self, *, token_lifetime: timedelta = timedelta(hours=24)) -> None:
        self.token_lifetime = token_lifetime
        self.password = PASSWORD  # change it to play a password rotation
        self.answer_delay_seconds = 0.0  # how long each checkpoint takes to be answered
        # The API gateway's limit on checkpoint POSTs (a token bucket of this many a second,
        # answered 429 APIGW.0308 above it); None: no limit.
        self.rate_limit_per_second: float | None = None
        self._bucket = (0.0, 0.0)  # tokens, when last filled (monotonic)
        self.error_request_ids: list[str] = []  # the ids its error answers carried, in order
        # Checkpoints it created, and how their items progress: empty at the first poll, then
        # protecting with rising progress, then available (or error for ``failing_servers``).
        self.checkpoints: dict[str, CreatedCheckpoint] = {}
        self.failing_servers: set[str] = set()
        self.polls_to_finish = 3
        # A deletion takes this many reads of the checkpoint (or the backup) to finish; CSBS
        # runs at most this many deletion tasks at once in a project.
        self.deletion_reads = 1
        # What a CSBS item being deleted reads as until it is gone: CSBS may list it "deleted".
        self.deleting_status = "deleting"
        self.csbs_deletion_tasks = 5
        self.plans: dict[str, Plan] = {}
        self.requests: list[Recorded] = []
        # Every JSON answer sent (method, path, status, body), for checks against official
        # models.
        self.answers: list[tuple[str, str, int, Any]] = []
        self._faults: dict[str, deque[Fault]] = {
            "iam": deque(), "csbs": deque(), "cbr": deque(), "ecs": deque()
        }  # fmt: skip
        # ECS: the project's servers (id: name), and the most a page of the list holds.
        self.servers: dict[str, str] = {}
        self.ecs_page_limit = 1000
        # CBR backup policies (id: the vaults it is applied to); the CSBS policy list is
        # ``plans``, read ``csbs_policy_page_limit`` a page.
        self.cbr_policies: dict[str, list[str]] = {}
        self.csbs_policy_page_limit = 1000
        # CBR: vaults by id, the restore points created, the rows a list page holds at most.
        self.vaults: dict[str, Vault] = {}
        self.restore_points: dict[str, CreatedRestorePoint] = {}
        self.cbr_page_limit = 100
        # Whether the create answer's vault.resources also lists the resources it skipped (the
        # documentation says neither way).
        self.skipped_also_listed = False
        # Changes a test makes to the checkpoint object of every created answer (CSBS's and
        # CBR's), as a server might word it.
        self.edit_created: Callable[[dict[str, Any]], None] | None = None
        self.disks_per_server = 1  # disk backups (with a parent_id) listed beside each server's
        self.other_tasks = 0  # tasks of other backups the vault's task list holds besides
        self._tokens: dict[str, tuple[datetime, str]] = {}  # token: expiry, its project
        # The projects the user has the backup role in (id: name); add one to play a second.
        self.projects: dict[str, str] = {PROJECT_ID: PROJECT_NAME}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = LoopbackServer(("127.0.0.1", 0), _Handler)
        self._server.standin = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    # -- life cycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> CsbsStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> CsbsStandIn:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- set-up -----------------------------------------------------------------------------
    def add_plan(self, plan_id: str, name: str, resources: dict[str, str]) -> None:
        self.plans[plan_id] = Plan(name=name, resources=dict(resources))

    def add_vault(self, vault_id: str, name: str, resources: dict[str, str]) -> None:
        self.vaults[vault_id] = Vault(name=name, resources=dict(resources))

    def fail_next(self, route: str, *faults: Fault) -> None:
        """Queue faults for the next requests to ``route`` ("iam", "csbs" or "cbr"), in
        order."""
        with self._lock:
            self._faults[route].extend(faults)

    def clear_faults(self, route: str) -> None:
        """Forget the faults queued for ``route`` that no request took."""
        with self._lock:
            self._faults[route].clear()

    def revoke_tokens(self) -> None:
        """As when a password changes: every issued token is refused from now on."""
        with self._lock:
            self._tokens.clear()

    def access_key_secret(self, *, temporary: bool = False, **overrides: Any) -> dict[str, Any]:
        """events/secrets/access-keys.json pointed at this stand-in (plus a security token
        when ``temporary``)."""
        secret: dict[str, Any] = {**_ACCESS_KEY_SAMPLE, "region": None, "csbs_endpoint": self.url,
                                  "cbr_endpoint": self.url, "ecs_endpoint": self.url}  # fmt: skip
        if temporary:
            secret["security_token"] = SECURITY_TOKEN
        secret.update(overrides)
        return {key: value for key, value in secret.items() if value is not None}

    def cloud_secret(self, **overrides: Any) -> dict[str, Any]:
        """events/secrets/password.json pointed at this stand-in."""
        secret: dict[str, Any] = {
            **_PASSWORD_SAMPLE,
            "auth_url": f"{self.url}/v3",
            "csbs_endpoint": self.url,
            "cbr_endpoint": self.url,
            "ecs_endpoint": self.url,
        }
        secret.update(overrides)
        return {key: value for key, value in secret.items() if value is not None}

    # -- inspection -------------------------------------------------------------------------
    def calls(self, route: str) -> list[Recorded]:
        with self._lock:
            return [request for request in self.requests if _route(request.path) == route]

    def issued_tokens(self) -> list[str]:
        with self._lock:
            return list(self._tokens)

    def _item(self, created: CreatedCheckpoint, index: int) -> dict[str, Any] | None:
        """One item as a real server lists it at this poll (extend_info as a JSON string,
        progress as a string: the drift real answers show)."""
        if created.polls <= 1:
            return None  # the list is empty for a short while after the checkpoint is created
        server_id, name = created.servers[index]
        finished = created.polls > self.polls_to_finish
        failing = server_id in self.failing_servers
        status = ("error" if failing else "available") if finished else "protecting"
        progress = 100 if finished else 100 * (created.polls - 1) // self.polls_to_finish
        extend: dict[str, Any] = {"progress": str(progress), "resource_name": name,
                                  "fail_code": {}, "fail_reason": "", "size": 0}  # fmt: skip
        if finished:
            extend["finished_at"] = datetime.now(UTC).replace(tzinfo=None).isoformat()
            extend["size"] = 0 if failing else 1024.0
        if finished and failing:
            extend["fail_code"] = {"Code": 2001, "Description": "snapshot failed"}
            extend["fail_reason"] = "The server is stopped"
        return {"id": created.item_ids[index], "checkpoint_id": created.id,
                "name": f"backup_{name}", "resource_id": server_id,
                "resource_type": "OS::Nova::Server", "status": status,
                "extend_info": json.dumps(extend)}  # fmt: skip

    def _backup_status(self, point: CreatedRestorePoint, server_id: str) -> tuple[str, int]:
        finished = point.polls > self.polls_to_finish
        if not finished:
            status = "waiting_protect" if point.polls == 2 else "protecting"
            return status, 100 * (point.polls - 1) // self.polls_to_finish
        return ("error" if server_id in self.failing_servers else "available"), 100

    def _backup_rows(self, point: CreatedRestorePoint) -> list[dict[str, Any]]:
        """The restore point's backups at this poll: none at first, then one per server (and
        one per disk, with the server's backup as ``parent_id``)."""
        if point.polls <= 1:
            return []
        rows = []
        now = datetime.now(UTC).replace(tzinfo=None).isoformat()
        for (server_id, name), backup_id in zip(point.servers, point.backup_ids, strict=True):
            if backup_id in point.gone:
                continue
            status, _ = self._backup_status(point, server_id)
            status = "deleting" if backup_id in point.deleting else status
            row = {
                "id": backup_id,
                "checkpoint_id": point.id,
                "parent_id": None,
                "resource_id": server_id,
                "resource_name": name,
                "resource_size": 40,
                "resource_type": "OS::Nova::Server",
                "status": status,
                "vault_id": point.vault_id,
                "updated_at": now,
                "protected_at": now,
                "extend_info": {
                    "auto_trigger": False,
                    "supported_restore_mode": "backup",
                    "contain_system_disk": True,
                    "support_lld": True,
                    "system_disk": False,
                },
            }
            disks = [{**row, "id": f"{backup_id}-disk-{index}", "parent_id": backup_id,
                      "resource_id": f"{server_id}-volume-{index}",
                      "resource_type": "OS::Cinder::Volume", "resource_name": f"{name}-disk"}
                     for index in range(self.disks_per_server)]  # fmt: skip
            rows += [row, *disks]
        return rows

    def _tasks(self, point: CreatedRestorePoint) -> list[dict[str, Any]]:
        """One backup task per server: its error where the backup failed."""
        tasks = []
        for server_id, name in point.servers:
            status, progress = self._backup_status(point, server_id)
            failed = status == "error"
            tasks.append({
                "id": str(uuid.uuid4()), "checkpoint_id": point.id, "vault_id": point.vault_id,
                "operation_type": "backup", "project_id": point.project_id,
                "status": "failed" if failed else "success" if status == "available" else
                "running",
                "error_info": {"code": "BackupService.7102" if failed else "",
                               "message": "The server has stopped." if failed else ""},
                "extra_info": {"resource": {"id": server_id, "name": name,
                                            "type": "OS::Nova::Server"},
                               "common": {"progress": progress}},
            })  # fmt: skip
        return tasks

    # -- used by the handler ------------------------------------------------------------------
    def _record(self, request: Recorded) -> Fault | None:
        route = _route(request.path)
        with self._lock:
            self.requests.append(request)
            return self._faults[route].popleft() if self._faults[route] else None

    def _over_rate(self) -> bool:
        """Whether a checkpoint POST now is above the gateway's limit (else it takes a token)."""
        rate = self.rate_limit_per_second
        if rate is None:
            return False
        with self._lock:
            tokens, filled = self._bucket
            now = time.monotonic()
            tokens = min(rate, tokens + (now - filled) * rate) if filled else rate
            if tokens < 1:
                self._bucket = (tokens, now)
                return True
            self._bucket = (tokens - 1, now)
            return False

    def _issue_token(self, project_id: str) -> tuple[str, datetime]:
        token = "MIIT" + secrets.token_urlsafe(48)
        expires_at = datetime.now(UTC) + self.token_lifetime
        with self._lock:
            self._tokens[token] = (expires_at, project_id)
        return token, expires_at

    def _token_project(self, token: str | None) -> str | None:
        """The project a valid token is scoped to, or None."""
        with self._lock:
            expires_at, project_id = self._tokens.get(token or "", (None, None))
        return project_id if expires_at is not None and expires_at > datetime.now(UTC) else None


Answer = tuple[int, dict[str, Any] | bytes, dict[str, str]]


def _route(path: str) -> str:
    if path.startswith("/v3/auth/"):
        return "iam"
    if path.startswith("/v1/") and path.endswith("/cloudservers/detail"):
        return "ecs"
    return "cbr" if path.startswith("/v3/") else "csbs"


def _bad_request(message: str) -> Answer:
    # Karbor's own validation answers in this nested shape.
    return 400, {"badRequest": {"code": 400, "message": message}}, {}


class _Handler(KeepAliveHandler):
    server_version = "csbs-standin/1"

    def _csbs_error(self, status: int, code: str, message: str) -> Answer:
        """An error as CSBS words it, with a request id the stand-in remembers."""
        request_id = uuid.uuid4().hex
        self.standin.error_request_ids.append(request_id)
        return status, {"error_code": code, "error_msg": message, "request_id": request_id}, {}

    @property
    def standin(self) -> CsbsStandIn:
        return self.server.standin  # type: ignore[attr-defined,no-any-return]

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        recorded = Recorded(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={name: value for name, value in self.headers.items()},
            body=body,
        )
        fault = self.standin._record(recorded)
        if fault is not None:
            self._inject(fault)
            if not fault.passthrough:
                return
        if parts.path == "/v3/auth/tokens" and self.command == "POST":
            answer = self._tokens(recorded)
        elif parts.path.startswith("/v1/") and parts.path.endswith("/checkpoint_items"):
            answer = self._checkpoint_items(recorded)
        elif _route(parts.path) == "ecs":
            answer = self._servers(recorded)
        elif parts.path.startswith("/v1/") and parts.path.endswith("/policies"):
            answer = self._policies(recorded)
        elif parts.path.startswith("/v1/") and self.standin._over_rate():
            limit = self.standin.rate_limit_per_second
            answer = 429, {"error_code": "APIGW.0308", "error_msg": "The throttling threshold "
                           f"has been reached: policy user over ratelimit,limit:{limit},time:1 "
                           "second"}, {"Retry-After": "1"}  # fmt: skip
        elif parts.path.startswith("/v1/"):
            self.standin._stopping.wait(self.standin.answer_delay_seconds)
            answer = self._checkpoints(recorded)
        elif _route(parts.path) == "cbr":
            answer = self._cbr(recorded)
        else:
            answer = 404, {"error_code": "APIGW.0101", "error_msg": "API not found"}, {}
        created = answer[1].get("checkpoint") if isinstance(answer[1], dict) else None
        edit = self.standin.edit_created
        if edit is not None and self.command == "POST" and answer[0] == 200 and created:
            edit(created)
        self._send(*answer)

    # -- IAM --------------------------------------------------------------------------------
    def _tokens(self, request: Recorded) -> Answer:
        unauthorized: Answer = (
            401,
            {
                "error": {
                    "code": 401,
                    "title": "Unauthorized",
                    "message": "The request you have made requires authentication.",
                }
            },
            {},
        )
        try:
            auth = request.json()["auth"]
            identity = auth["identity"]
            user = identity["password"]["user"]
            project = auth["scope"]["project"]
        except (ValueError, KeyError, TypeError):
            return (
                400,
                {"error": {"code": 400, "title": "Bad Request", "message": "Invalid auth body"}},
                {},
            )
        if identity.get("methods") != ["password"]:
            return unauthorized
        if (user.get("name"), user.get("password"), (user.get("domain") or {}).get("name")) != (
            USERNAME,
            self.standin.password,
            DOMAIN_NAME,
        ):
            return unauthorized
        by_name = {name: project_id for project_id, name in self.standin.projects.items()}
        scoped = project.get("id") or by_name.get(project.get("name"))
        if scoped not in self.standin.projects or project.get("name") not in (None, *by_name):
            return unauthorized
        if not (project.get("id") or project.get("name")):
            return (
                400,
                {
                    "error": {
                        "code": 400,
                        "title": "Bad Request",
                        "message": "scope names no project",
                    }
                },
                {},
            )
        token, expires_at = self.standin._issue_token(scoped)
        body: dict[str, Any] = {
            "token": {
                "methods": ["password"],
                "expires_at": expires_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "issued_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "user": {"name": USERNAME, "id": uuid.uuid4().hex, "domain": {"name": DOMAIN_NAME}},
                "project": {
                    "id": scoped,
                    "name": self.standin.projects[scoped],
                    "domain": {"name": DOMAIN_NAME},
                },
            }
        }
        if "nocatalog" not in request.query:
            body["token"]["catalog"] = [
                {
                    "type": "compute",
                    "name": "nova",
                    "endpoints": [{"interface": "public", "url": "https://ecs.invalid/v2"}],
                },
                {
                    "type": "cbr",
                    "name": "cbr",
                    "endpoints": [
                        {"interface": "public", "url": f"{self.standin.url}/v3/{scoped}"}
                    ],
                },
                {
                    "type": "ecs",
                    "name": "ecs",
                    "endpoints": [
                        {"interface": "public", "url": f"{self.standin.url}/v1/{scoped}"}
                    ],
                },
                {
                    "type": "data-protect",
                    "name": "karbor",
                    "endpoints": [
                        {
                            "interface": "public",
                            "region": "eu-de",
                            "url": f"{self.standin.url}/v1/{scoped}",
                        }
                    ],
                },
            ]
        return 201, body, {"X-Subject-Token": token}

    # -- CSBS -------------------------------------------------------------------------------
    def _checkpoints(self, request: Recorded) -> Answer:
        segments = request.path.strip("/").split("/")
        if len(segments) == 6 and segments[4] == "checkpoints" and request.method == "DELETE":
            return self._delete_checkpoint(request, segments[1], segments[5])
        if len(segments) != 5 or segments[2] != "providers" or segments[4] != "checkpoints":
            return 404, {"error_code": "APIGW.0101", "error_msg": "API not found"}, {}
        if request.method != "POST":
            return 405, {"error_code": "APIGW.0103", "error_msg": "Method not allowed"}, {}
        _, project_id, _, provider_id, _ = segments
        refusal = self._refusal(request, project_id)
        if refusal:
            return refusal
        if provider_id != PROVIDER_ID:
            return self._csbs_error(400, "CSBS.9001", "Invalid provider id")
        if (request.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
            return _bad_request("Content-Type must be application/json")
        try:
            document = request.json()
        except ValueError:
            return _bad_request("Malformed request body")
        problem = _checkpoint_body_problem(document)
        if problem:
            return _bad_request(problem)
        checkpoint = document["checkpoint"]
        plan = self.standin.plans.get(checkpoint["plan_id"])
        if plan is None:
            return self._csbs_error(404, "CSBS.3000", "Backup policy not found")
        if plan.busy_code:
            return self._csbs_error(500, plan.busy_code, "The backup policy is executing a backup")
        parameters = checkpoint["parameters"]
        wanted = parameters.get("resources")
        unknown = [resource for resource in wanted or [] if resource not in plan.resources]
        if unknown:
            return _bad_request(f"Resource {unknown[0]} is not in the backup policy")
        resources = wanted if wanted is not None else list(plan.resources)
        created_at = datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")
        checkpoint_id = str(uuid.uuid4())
        self.standin.checkpoints[checkpoint_id] = CreatedCheckpoint(
            checkpoint_id,
            checkpoint["plan_id"],
            [(resource, plan.resources[resource]) for resource in resources],
            sorted(str(uuid.uuid4()) for _ in resources),
            project_id,
        )
        return (
            200,
            {
                "checkpoint": {
                    "status": "protecting",
                    "created_at": created_at,
                    "id": checkpoint_id,
                    "resource_graph": None,
                    "project_id": project_id,
                    "protection_plan": {
                        "id": checkpoint["plan_id"],
                        "name": plan.name,
                        "resources": [
                            {
                                "type": "OS::Nova::Server",
                                "id": resource,
                                "name": plan.resources[resource],
                                "extra_info": "{}",
                            }
                            for resource in resources
                        ],
                    },
                    "extra_info": json.dumps({"created_by": "manual"}),
                }
            },
            {},
        )

    def _refusal(self, request: Recorded, project_id: str) -> Answer | None:
        """What the gateway answers a request it does not let through, or None."""
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith("SDK-HMAC-SHA256 "):
            authorized = _signature_valid(request, authorization, project_id)
        else:
            scoped = self.standin._token_project(request.headers.get("X-Auth-Token"))
            authorized = scoped is not None
            if authorized and scoped != project_id:
                return self._csbs_error(
                    403, "APIGW.0302", "The project in the URL does not match the token"
                )
        if not authorized:
            return self._csbs_error(
                401,
                "APIGW.0301",
                "Incorrect IAM authentication information: verify aksk signature fail",
            )
        if project_id not in self.standin.projects:
            return self._csbs_error(
                403, "APIGW.0302", "The project in the URL does not match the token"
            )
        return None

    def _delete_checkpoint(self, request: Recorded, project_id: str, checkpoint_id: str) -> Answer:
        """``DELETE …/checkpoints/{id}[?checkpoint_items=a,b]``: the items go after
        ``deletion_reads`` reads; the whole checkpoint, once each of its items is gone."""
        refusal = self._refusal(request, project_id)
        if refusal:
            return refusal
        created = self.standin.checkpoints.get(checkpoint_id)
        if created is None or created.deleted or created.project_id != project_id:
            return self._csbs_error(404, "CSBS.3001", "The backup record does not exist")
        if created.deleting:
            return self._csbs_error(400, "CSBS.6031", "The checkpoint is being deleted")
        tasks = sum(bool(c.deleting) for c in self.standin.checkpoints.values()
                    if c.project_id == project_id)  # fmt: skip
        if tasks >= self.standin.csbs_deletion_tasks:
            return self._csbs_error(400, "CSBS.6032", "Too many deletion tasks in the project")
        named = request.query.get("checkpoint_items", [""])[-1]
        items = [i for i in named.split(",") if i] or list(created.item_ids)
        if any(item not in created.item_ids for item in items):
            return self._csbs_error(400, "CSBS.9006", "Invalid checkpoint item")
        with self.standin._lock:
            created.deleting.update(dict.fromkeys(items, self.standin.deletion_reads))
        return 200, {}, {}

    def _checkpoint_items(self, request: Recorded) -> Answer:
        """``GET /v1/{project_id}/checkpoint_items?checkpoint_id=&limit=&marker=``, paged by item
        id; each first page of a poll moves the checkpoint's items one step on."""
        segments = request.path.strip("/").split("/")
        if len(segments) != 3 or request.method != "GET":
            return 404, {"error_code": "APIGW.0101", "error_msg": "API not found"}, {}
        refusal = self._refusal(request, segments[1])
        if refusal:
            return refusal
        query = {key: values[-1] for key, values in request.query.items()}
        created = self.standin.checkpoints.get(query.get("checkpoint_id", ""))
        if created is None or created.deleted or created.project_id != segments[1]:
            return self._csbs_error(404, "CSBS.3001", "The backup record does not exist")
        marker, limit = query.get("marker"), int(query.get("limit") or 1000)
        if marker is None:
            created.polls += 1
            with self.standin._lock:
                for item_id in list(created.deleting):
                    created.deleting[item_id] -= 1
                    if created.deleting[item_id] <= 0:
                        del created.deleting[item_id]
                        created.gone.add(item_id)
                created.deleted = created.gone >= set(created.item_ids)
        if created.deleted:
            return 200, {"checkpoint_items": []}, {}
        listed = [self.standin._item(created, index) for index in range(len(created.servers))]
        items = [item for item in listed if item is not None and item["id"] not in created.gone]
        items = [{**item, "status": self.standin.deleting_status}
                 if item["id"] in created.deleting else item
                 for item in items]  # fmt: skip
        items = sorted(items, key=lambda item: item["id"])
        if marker is not None:
            items = [item for item in items if item["id"] > marker]
        return 200, {"checkpoint_items": items[:limit]}, {}

    def _policies(self, request: Recorded) -> Answer:
        """``GET /v1/{project_id}/policies?limit=&marker=``: the plans, by id, each with its
        servers."""
        refusal = self._refusal(request, request.path.strip("/").split("/")[1])
        if refusal:
            return refusal
        query = {key: values[-1] for key, values in request.query.items()}
        limit = min(int(query.get("limit") or 1000), self.standin.csbs_policy_page_limit)
        marker = query.get("marker")
        policies = [
            {"id": plan_id, "name": plan.name, "description": "", "status": "suspended",
             "provider_id": PROVIDER_ID, "project_id": request.path.strip("/").split("/")[1],
             "created_at": "2026-11-02T08:00:00.000000",
             "parameters": {"common": {}},
             "resources": [{"id": server, "name": name, "type": "OS::Nova::Server",
                            "extra_info": {}} for server, name in plan.resources.items()],
             "scheduled_operations": []}
            for plan_id, plan in sorted(self.standin.plans.items())
            if marker is None or plan_id > marker
        ]  # fmt: skip
        return 200, {"policies": policies[:limit]}, {}

    # -- ECS --------------------------------------------------------------------------------
    def _servers(self, request: Recorded) -> Answer:
        """``GET /v1/{project_id}/cloudservers/detail?name=&limit=&offset=``: ``name`` matches
        loosely (any server whose name holds it), ``offset`` is the page number from 1."""
        refusal = self._refusal(request, request.path.strip("/").split("/")[1])
        if refusal:
            return refusal
        query = {key: values[-1] for key, values in request.query.items()}
        name = query.get("name", "")
        matches = [
            {"id": server, "name": server_name, "status": "ACTIVE",
             "flavor": {"id": "s3.medium.2", "name": "s3.medium.2"},
             "metadata": {}, "tags": [], "OS-EXT-STS:vm_state": "active"}
            for server, server_name in sorted(self.standin.servers.items())
            if name in server_name
        ]  # fmt: skip
        limit = min(int(query.get("limit") or 25), self.standin.ecs_page_limit)
        page = max(int(query.get("offset") or 1), 1)
        return 200, {"count": len(matches),
                     "servers": matches[(page - 1) * limit : page * limit]}, {}  # fmt: skip

    # -- CBR --------------------------------------------------------------------------------
    def _cbr(self, request: Recorded) -> Answer:
        segments = request.path.strip("/").split("/")
        not_found: Answer = 404, {"error_code": "APIGW.0101", "error_msg": "API not found"}, {}
        if len(segments) < 3:
            return not_found
        project_id, resource = segments[1], segments[2:]
        refusal = self._refusal(request, project_id)
        if refusal:
            return refusal
        query = {key: values[-1] for key, values in request.query.items()}
        if resource == ["checkpoints"] and request.method == "POST":
            return self._create_restore_point(request, project_id)
        if len(resource) == 2 and resource[0] == "checkpoints" and request.method == "GET":
            return self._restore_point(resource[1], project_id)
        if resource == ["backups"] and request.method == "GET":
            return self._backups(query, project_id)
        if len(resource) == 2 and resource[0] == "backups":
            return self._backup(resource[1], project_id, request.method)
        if resource == ["operation-logs"] and request.method == "GET":
            return self._tasks(query, project_id)
        if resource == ["vaults"] and request.method == "GET":
            return self._vaults(query, project_id)
        if len(resource) == 2 and resource[0] == "policies" and request.method == "GET":
            return self._policy(resource[1])
        return not_found

    def _vaults(self, query: dict[str, str], project_id: str) -> Answer:
        """``GET /vaults?resource_ids=a,b&limit=&offset=``: the vaults holding any of them, each
        with all its resources."""
        wanted = set(filter(None, query.get("resource_ids", "").split(",")))
        vaults = [
            {"id": vault_id, "name": vault.name, "project_id": project_id,
             "provider_id": "0daac4c5-6707-4851-97ba-169e36266b66",
             "created_at": "2026-11-02T08:00:00.000+00:00", "auto_bind": False,
             "bind_rules": {}, "auto_expand": False, "user_id": "aa2999fa5ae640f28926f8fd7918",
             "enterprise_project_id": "0", "tags": [], "description": "",
             "billing": {"allocated": 0, "cloud_type": "public",
                         "consistent_level": "crash_consistent", "charging_mode": "post_paid",
                         "protect_type": "backup", "object_type": "server",
                         "spec_code": "vault.backup.server.normal", "used": 0,
                         "status": "available", "size": 100},
             "resources": [{"id": server, "name": name, "type": "OS::Nova::Server",
                            "extra_info": {}, "protect_status": "available", "size": 40}
                           for server, name in vault.resources.items()]}
            for vault_id, vault in sorted(self.standin.vaults.items())
            if not wanted or wanted & set(vault.resources)
        ]  # fmt: skip
        offset, limit = int(query.get("offset") or 0), int(query.get("limit") or 1000)
        page = vaults[offset : offset + min(limit, self.standin.cbr_page_limit)]
        return 200, {"vaults": page, "count": len(vaults)}, {}

    def _policy(self, policy_id: str) -> Answer:
        """``GET /policies/{id}``: the policy and the vaults it is applied to."""
        vaults = self.standin.cbr_policies.get(policy_id)
        if vaults is None:
            return self._cbr_error(404, "BackupService.6000", "The policy does not exist.")
        return 200, {"policy": {
            "id": policy_id, "name": f"policy-{policy_id[:8]}", "enabled": True,
            "operation_type": "backup",
            "operation_definition": {"retention_duration_days": 30, "timezone": "UTC+01:00"},
            "trigger": {"id": "d0a1e4b5-36c6-4a0c-9f5e-8d8f1f1b9e2b", "name": "default",
                        "type": "time",
                        "properties": {"pattern": ["FREQ=DAILY;INTERVAL=1;BYHOUR=2;BYMINUTE=00"],
                                       "start_time": "2026-11-02 08:00:00"}},
            "associated_vaults": [{"vault_id": vault, "destination_vault_id": None}
                                  for vault in vaults],
        }}, {}  # fmt: skip

    def _cbr_error(self, status: int, code: str, message: str) -> Answer:
        return status, {"error_code": code, "error_msg": message}, {}

    def _create_restore_point(self, request: Recorded, project_id: str) -> Answer:
        try:
            document = request.json()
        except ValueError:
            return self._cbr_error(400, "BackupService.0001", "Malformed request body")
        problem = _restore_point_body_problem(document)
        if problem:
            return self._cbr_error(400, "BackupService.0001", problem)
        checkpoint = document["checkpoint"]
        vault = self.standin.vaults.get(checkpoint["vault_id"])
        if vault is None:
            return self._cbr_error(404, "BackupService.6105", "The vault does not exist.")
        wanted = checkpoint["parameters"].get("resources")
        unknown = [resource for resource in wanted or [] if resource not in vault.resources]
        if unknown:
            return self._cbr_error(400, "BackupService.6302", "The resource does not exist.")
        asked = wanted if wanted is not None else list(vault.resources)
        backed = [resource for resource in asked if resource not in vault.busy]
        point_id = str(uuid.uuid4())
        created = datetime.now(UTC)
        self.standin.restore_points[point_id] = CreatedRestorePoint(
            point_id, checkpoint["vault_id"], [(r, vault.resources[r]) for r in backed],
            [str(uuid.uuid4()) for _ in backed], project_id, created,
        )  # fmt: skip
        parameters = checkpoint["parameters"]
        return 200, {"checkpoint": {
            "id": point_id, "project_id": project_id, "status": "protecting",
            "created_at": created.replace(tzinfo=None).isoformat(),  # no zone, as CBR writes it
            "vault": {
                "id": checkpoint["vault_id"], "name": vault.name,
                "resources": [{"id": r, "type": "OS::Nova::Server", "name": vault.resources[r],
                               "extra_info": "{}", "resource_size": "40", "backup_size": "0",
                               "backup_count": "0", "protect_status": "available"}
                              for r in (asked if self.standin.skipped_also_listed else backed)],
                "skipped_resources": [{"id": r, "type": "OS::Nova::Server",
                                       "name": vault.resources[r], "code": "BackupService.0002",
                                       "reason": "Resources are being backed up."}
                                      for r in asked if r in vault.busy],
            },
            "extra_info": {"name": parameters.get("name"),
                           "description": parameters.get("description"),
                           "retention_duration": -1},
        }}, {}  # fmt: skip

    def _restore_point(self, point_id: str, project_id: str) -> Answer:
        point = self.standin.restore_points.get(point_id)
        if point is None or point.deleted or point.project_id != project_id:
            return self._cbr_error(
                404, "BackupService.6217", "The backup restore point does not exist."
            )
        return 200, {"checkpoint": {"id": point.id, "project_id": project_id,
                                    "status": "available", "vault": None}}, {}  # fmt: skip

    def _backup(self, backup_id: str, project_id: str, method: str) -> Answer:
        """``GET`` / ``DELETE /v3/{project_id}/backups/{id}``: a deletion takes
        ``deletion_reads`` reads to finish; a backup gone is 404."""
        points = [p for p in self.standin.restore_points.values() if p.project_id == project_id]
        point = next((p for p in points if backup_id in p.backup_ids), None)
        if point is None or backup_id in point.gone or point.deleted:
            return self._cbr_error(404, "BackupService.6000", "The backup does not exist.")
        if method == "DELETE":
            with self.standin._lock:
                point.deleting.setdefault(backup_id, self.standin.deletion_reads)
            return 200, {}, {}
        if method != "GET":
            return self._cbr_error(405, "APIGW.0103", "Method not allowed")
        if backup_id in point.deleting:
            with self.standin._lock:
                point.deleting[backup_id] -= 1
                if point.deleting[backup_id] <= 0:
                    point.deleting.pop(backup_id)
                    point.gone.add(backup_id)
                    return self._cbr_error(404, "BackupService.6000", "The backup does not exist.")
            status = "deleting"
        else:
            server = point.servers[point.backup_ids.index(backup_id)][0]
            status = self.standin._backup_status(point, server)[0]
        return 200, {"backup": {"id": backup_id, "checkpoint_id": point.id, "status": status,
                                "vault_id": point.vault_id}}, {}  # fmt: skip

    def _backups(self, query: dict[str, str], project_id: str) -> Answer:
        """``GET /backups?checkpoint_id=&limit=&offset=``: each first page of a poll moves the
        restore point's backups one step on; each server's disks are listed beside it."""
        point = self.standin.restore_points.get(query.get("checkpoint_id", ""))
        rows: list[dict[str, Any]] = []
        if point is not None and not point.deleted and point.project_id == project_id:
            offset = int(query.get("offset") or 0)
            if offset == 0:
                point.polls += 1
            rows = self.standin._backup_rows(point)
        offset, limit = int(query.get("offset") or 0), int(query.get("limit") or 1000)
        page = rows[offset : offset + min(limit, self.standin.cbr_page_limit)]
        return 200, {"backups": page, "count": len(rows)}, {}

    def _tasks(self, query: dict[str, str], project_id: str) -> Answer:
        """``GET /operation-logs?vault_id=&operation_type=backup&start_time=``: one task per
        backup of the vault's restore points whose tasks began since ``start_time`` (CBR
        stamps a task with the minute it began)."""
        start_time = query.get("start_time")  # optional: without it, every task
        since = (datetime.strptime(start_time, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
                 if start_time else datetime.min.replace(tzinfo=UTC))  # fmt: skip
        tasks = [
            task
            for point in self.standin.restore_points.values()
            if point.vault_id == query.get("vault_id") and point.project_id == project_id
            and point.created_at.replace(second=0, microsecond=0) >= since
            and query.get("operation_type") == "backup"
            for task in self.standin._tasks(point)
        ]  # fmt: skip
        offset, limit = int(query.get("offset") or 0), int(query.get("limit") or 1000)
        if self.standin.other_tasks:  # made up as they are read: there may be 100,000
            end = min(offset + min(limit, self.standin.cbr_page_limit), self.standin.other_tasks)
            others = [{"id": f"other-{index}", "checkpoint_id": f"other-{index}",
                       "status": "success", "operation_type": "backup"}
                      for index in range(offset, end)]  # fmt: skip
            return 200, {"operation_logs": others, "count": self.standin.other_tasks}, {}
        page = tasks[offset : offset + min(limit, self.standin.cbr_page_limit)]
        return 200, {"operation_logs": page, "count": len(tasks)}, {}

    # -- writing ----------------------------------------------------------------------------
    def _send(self, status: int, body: dict[str, Any] | bytes, headers: dict[str, str]) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        if not isinstance(body, bytes):
            with self.standin._lock:
                self.standin.answers.append((self.command, urlsplit(self.path).path, status, body))
        self.send_response(status)
        if not any(name.lower() == "content-type" for name in headers):
            self.send_header("Content-Type", "application/json")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _inject(self, fault: Fault) -> None:
        if fault.arrived is not None:
            fault.arrived.set()
        if fault.release is not None:
            fault.release.wait(30)  # a bound, so a failing test never hangs the run
        if fault.passthrough:
            return
        if fault.delay_seconds:
            # Wakes early when the stand-in stops, so no test waits out the delay.
            self.standin._stopping.wait(fault.delay_seconds)
        body = fault.body if fault.body is not None else b""
        if fault.reset:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(fault.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data) + 100))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            # SO_LINGER 0: close with a TCP reset instead of a clean end of stream.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        self._send(fault.status, body, fault.headers)


def _signature_valid(request: Recorded, authorization: str, project_id: str) -> bool:
    """Verify an AK/SK signature as the API gateway does, with the Huawei SDK's own signer."""
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.sdk_request import SdkRequest
    from huaweicloudsdkcore.signer.signer import Signer

    fields = dict(part.strip().split("=", 1) for part in authorization.split(" ", 1)[1].split(","))
    headers = {name.lower(): value for name, value in request.headers.items()}
    signed_names = fields.get("SignedHeaders", "").split(";")
    if fields.get("Access") != ACCESS_KEY or not {"host", "x-sdk-date"} <= set(signed_names):
        return False
    if any(name not in headers for name in signed_names):
        return False
    if headers.get("x-project-id") != project_id:
        return False
    if "x-security-token" in headers and headers["x-security-token"] != SECURITY_TOKEN:
        return False
    try:
        signed_at = datetime.strptime(headers["x-sdk-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return False
    if abs(datetime.now(UTC) - signed_at) > MAX_CLOCK_SKEW:
        return False
    expected = SdkRequest(
        method=request.method,
        schema="http",
        host=headers["host"],
        resource_path=request.path,
        query_params=sorted(
            (key, value) for key, values in request.query.items() for value in values
        ),
        header_params={name: headers[name] for name in signed_names},
        body=request.body,
    )
    Signer(BasicCredentials(ACCESS_KEY, SECRET_KEY)).sign(expected)
    expected_signature = expected.header_params["Authorization"].rsplit("Signature=", 1)[1]
    return hmac.compare_digest(expected_signature, fields.get("Signature", ""))


_RESTORE_POINT_PARAMETERS = {"auto_trigger": bool, "incremental": bool, "name": str,
                              "description": str, "resources": list}  # fmt: skip


def _restore_point_body_problem(document: Any) -> str | None:
    """What CBR refuses in a create-restore-point body, or None."""
    checkpoint = document.get("checkpoint") if isinstance(document, dict) else None
    if not isinstance(checkpoint, dict) or set(checkpoint) != {"vault_id", "parameters"}:
        return "checkpoint must hold exactly vault_id and parameters"
    if not isinstance(checkpoint["vault_id"], str):
        return "checkpoint.vault_id must be a string"
    parameters = checkpoint["parameters"]
    if not isinstance(parameters, dict):
        return "checkpoint.parameters must be an object"
    for key, value in parameters.items():
        kind = _RESTORE_POINT_PARAMETERS.get(key)
        if kind is None or not isinstance(value, kind):
            return f"checkpoint.parameters.{key} is not valid"
    return None


def _checkpoint_body_problem(document: Any) -> str | None:
    """What the API page requires of the request body, or None when it complies."""
    if not isinstance(document, dict) or set(document) != {"checkpoint"}:
        return "Body must be an object with exactly one key: checkpoint"
    checkpoint = document["checkpoint"]
    if not isinstance(checkpoint, dict):
        return "checkpoint must be an object"
    unknown = set(checkpoint) - {"plan_id", "parameters"}
    if unknown:
        return f"Unknown checkpoint fields: {sorted(unknown)}"
    if not isinstance(checkpoint.get("plan_id"), str) or not checkpoint["plan_id"]:
        return "checkpoint.plan_id is mandatory"
    parameters = checkpoint.get("parameters")
    if not isinstance(parameters, dict):
        return "checkpoint.parameters is mandatory"
    unknown = set(parameters) - {"auto_trigger", "resources"}
    if unknown:
        return f"Unknown parameters: {sorted(unknown)}"
    if "auto_trigger" in parameters and not isinstance(parameters["auto_trigger"], bool):
        return "parameters.auto_trigger must be a boolean"
    resources = parameters.get("resources")
    if "resources" in parameters and (
        not isinstance(resources, list)
        or not all(isinstance(item, str) and item for item in resources)
    ):
        return "parameters.resources must be a list of ids"
    return None

"""Who fired a run, and the typed answer of the CSBS "Executing a Backup Policy" call.

Parsing is lenient where real servers drift from the API page (``extra_info`` as a JSON string,
numbers as floats or strings, unknown fields) and strict only where a missing value would make the
answer useless: a checkpoint without an id.
"""

from __future__ import annotations

import json
import re
from typing import Any

from csbs_trigger import safe_json
from csbs_trigger.errors import UpstreamError
from csbs_trigger.values import frozen

DEFAULT_PROVIDER_ID = "fc4d5750-22e7-4798-8a46-f48f62c4c1da"
# Checkpoint ids are UUIDs; anything far longer is no id a notification could carry.
MAX_CHECKPOINT_ID_LENGTH = 128


@frozen
class Trigger:
    """Who fired this run.

    ``source`` is schedule, eventbridge, direct or webhook; ``id`` traces it back (the schedule
    and its time, the event id, the request id, the delivery id); webhooks also name their
    ``sender`` and the ticket ``reference``.
    """

    source: str
    id: str | None
    sender: str | None = None
    reference: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"source": self.source, "id": self.id, "sender": self.sender,
                "reference": self.reference}  # fmt: skip


@frozen
class ProtectedResource:
    """A server (or disk) a backup covers, as CSBS's plan and CBR's vault list it."""

    id: str
    type: str | None
    name: str | None
    extra_info: Any

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "name": self.name, "extra_info": self.extra_info}


@frozen
class ProtectionPlan:
    """The CSBS policy a checkpoint was made of, as the answer names it."""

    id: str | None
    name: str | None
    resources: tuple[ProtectedResource, ...]


@frozen
class Checkpoint:
    """The backup record CSBS created; its status starts as ``protecting``."""

    id: str
    status: str | None
    created_at: str | None
    project_id: str | None
    resource_graph: str | None
    protection_plan: ProtectionPlan | None
    extra_info: Any

    @property
    def target_name(self) -> str | None:
        return self.protection_plan.name if self.protection_plan else None

    @property
    def resource_count(self) -> int:
        return len(self.protection_plan.resources) if self.protection_plan else 0

    @property
    def skipped(self) -> tuple[Any, ...]:
        return ()  # CSBS refuses a busy policy as a whole

    def to_dict(self, keep: int | None = None) -> dict[str, Any]:
        """As notifications carry it (built by hand: ``asdict`` deep-copies, on every run);
        ``keep``: only the first servers, and how many were left out."""
        plan = self.protection_plan
        shown: dict[str, Any] | None = None
        if plan is not None:
            resources = plan.resources if keep is None else plan.resources[:keep]
            shown = {
                "id": plan.id,
                "name": plan.name,
                "resources": [resource.to_dict() for resource in resources],
            }
            if keep is not None:
                shown["resources_omitted"] = len(plan.resources) - len(resources)
        return {
            "id": self.id,
            "status": self.status,
            "created_at": self.created_at,
            "project_id": self.project_id,
            "resource_graph": self.resource_graph,
            "protection_plan": shown,
            "extra_info": self.extra_info,
        }


# The API page's own example prints extra_info unescaped ("extra_info": "{"created_by": ...}"),
# which is not JSON; a server that copies it is read as if the string were escaped.
_UNESCAPED_EXTRA_INFO = re.compile(r'("extra_info"\s*:\s*)"(\{.*?\})"(?=\s*[,}\]])', re.DOTALL)


def parse_checkpoint_body(body: bytes) -> Checkpoint:
    """Decode and parse a 200 answer's body, or raise ``bad_response``."""
    text = body.decode("utf-8", errors="replace")
    try:
        document = safe_json.loads(text)
    except ValueError:
        repaired = _UNESCAPED_EXTRA_INFO.sub(
            lambda match: match.group(1) + json.dumps(match.group(2)), text
        )
        try:
            document = safe_json.loads(repaired)
        except ValueError:
            raise UpstreamError.bad_response(
                "CSBS answered 200 with a body that is not JSON", http_status=200
            ) from None
    return parse_checkpoint_answer(document)


def parse_checkpoint_answer(document: Any) -> Checkpoint:
    """Build a ``Checkpoint`` from the decoded 200 answer, or raise ``bad_response``."""
    checkpoint, checkpoint_id = checkpoint_object(document, "CSBS")
    plan = checkpoint.get("protection_plan")
    return Checkpoint(
        id=checkpoint_id,
        status=field_text(checkpoint.get("status")),
        created_at=field_text(checkpoint.get("created_at")),
        project_id=field_text(checkpoint.get("project_id")),
        resource_graph=field_text(checkpoint.get("resource_graph")),
        protection_plan=_parse_plan(plan) if isinstance(plan, dict) else None,
        extra_info=decode_extra_info(checkpoint.get("extra_info")),
    )


def checkpoint_object(document: Any, what: str) -> tuple[dict[str, Any], str]:
    """The ``checkpoint`` object of a 200 answer from ``what`` (CSBS, CBR) and its id, or
    ``bad_response``: without a usable id nothing could be followed or told."""
    checkpoint = document.get("checkpoint") if isinstance(document, dict) else None
    if not isinstance(checkpoint, dict):
        raise UpstreamError.bad_response(
            f"{what} answered 200 without a checkpoint object", http_status=200
        )
    checkpoint_id = field_text(checkpoint.get("id"))
    if not checkpoint_id:
        raise UpstreamError.bad_response(
            f"{what} answered 200 without a checkpoint id", http_status=200
        )
    if len(checkpoint_id) > MAX_CHECKPOINT_ID_LENGTH:
        raise UpstreamError.bad_response(
            f"{what} answered 200 with a checkpoint id of {len(checkpoint_id)} characters",
            http_status=200,
        )
    return checkpoint, checkpoint_id


def _parse_plan(plan: dict[str, Any]) -> ProtectionPlan:
    return ProtectionPlan(
        id=field_text(plan.get("id")),
        name=field_text(plan.get("name")),
        resources=parse_resources(plan.get("resources")),
    )


def listed(document: Any, key: str, what: str) -> list[dict[str, Any]]:
    """The objects of the ``key`` list of a 200 answer from ``what`` (CBR, CSBS, ECS), or
    ``bad_response``: an answer without its list is no empty page."""
    rows = document.get(key) if isinstance(document, dict) else None
    if not isinstance(rows, list):
        raise UpstreamError.bad_response(f"{what} answered without a {key} list", http_status=200)
    return objects(rows)


def objects(value: Any) -> list[dict[str, Any]]:
    """The objects of a list an answer holds; anything else holds none."""
    return [entry for entry in value if isinstance(entry, dict)] if isinstance(value, list) else []


def parse_resources(resources: Any) -> tuple[ProtectedResource, ...]:
    """The resources an answer lists, each once (the first listing): a resource listed twice
    is one server to back up, never a second backup to wait for."""
    listed: dict[str, ProtectedResource] = {}
    for item in objects(resources):
        resource_id = field_text(item.get("id")) or ""
        listed.setdefault(resource_id, ProtectedResource(
            id=resource_id,
            type=field_text(item.get("type")),
            name=field_text(item.get("name")),
            extra_info=decode_extra_info(item.get("extra_info")),
        ))  # fmt: skip
    return tuple(listed.values())


def decode_extra_info(value: Any) -> Any:
    """Real answers carry ``extra_info`` as a JSON string; decode it where it holds an object."""
    if isinstance(value, str):
        try:
            decoded = safe_json.loads(value)
        except ValueError:
            return value
        return decoded if isinstance(decoded, dict) else value
    return value


def field_text(value: Any) -> str | None:
    """A string field that may arrive as a number (or a bool) in real answers."""
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)

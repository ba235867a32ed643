"""The webhook path: ``POST /webhooks/{source}`` from API Gateway (HTTP API) or a function URL.

verify the sender → map its payload → run the plan once per delivery → answer at once.
Requests that fail verification get 401 with no hint of which check failed, are logged, and
never reach CSBS or SNS. Every authenticated request ends in the same notification as the
scheduled path, with the ticket's reference in its trigger.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from typing import Any

from csbs_trigger import safe_json
from csbs_trigger.aws.idempotency import AlreadyInProgressError, PayloadConflictError
from csbs_trigger.aws.sns import PublishError
from csbs_trigger.errors import Category, ConfigError, TriggerError
from csbs_trigger.log import logger
from csbs_trigger.models import Trigger
from csbs_trigger.notify import backend_of
from csbs_trigger.plans import RejectedPlan, Resolution
from csbs_trigger.runner import PlanResult, Unit, run_plan, run_units
from csbs_trigger.runtime import Runtime
from csbs_trigger.text import encodable
from csbs_trigger.triggers.events import MAX_INLINE_PLANS
from csbs_trigger.triggers.queued import PlansNotQueued, enqueue_units
from csbs_trigger.triggers.webhook_auth import signed_timestamp_refusal, signs_delivery_id, verify
from csbs_trigger.triggers.webhook_sources import Mapped, Source

_PATH = re.compile(r"/webhooks/([^/]+)/?")
# Upstream failures the sender should simply try again later answer 503/504; the others 502.
_STATUS_BY_CATEGORY = {
    Category.INVALID_EVENT: 422,
    Category.NOT_PROTECTED: 422,
    Category.CONFIG_ERROR: 500,
    Category.BUSY: 503,
    Category.THROTTLED: 503,
    Category.UNAVAILABLE: 503,
    Category.TIMEOUT: 504,
}
_UPSTREAM_FAILURE = 502
_DEFAULT_RETRY_AFTER_SECONDS = 30
# Every status this endpoint answers; the OpenAPI document must list exactly these.
STATUSES = (200, 201, 202, 400, 401, 404, 405, 409, 413, 415, 422, 500, 502, 503, 504)


def handle_webhook(event: dict[str, Any], context: Any, runtime: Runtime) -> dict[str, Any]:
    """The HTTP answer to one delivery; every refusal (4xx but 409) is counted as
    ``TriggerRejected``, by status, so that a flood of forged or broken deliveries shows."""
    answer = _handle(event, context, runtime)
    status = answer["statusCode"]
    if 400 <= status < 500 and status != 409:
        runtime.metrics.count("TriggerRejected", status=str(status))
    return answer


def _handle(event: dict[str, Any], context: Any, runtime: Runtime) -> dict[str, Any]:
    name = (event.get("pathParameters") or {}).get("source") or _source_from_path(
        event.get("rawPath") or event.get("path") or ""
    )
    try:
        sources = runtime.webhook_sources()
    except ConfigError as error:
        logger.error("webhook sources are misconfigured", extra={"reason": error.message})
        return _answer(500, {"error": "config_error", "message": "webhook sources misconfigured"})
    source = sources.get(name or "")
    if source is None:
        return _answer(404, {"error": "unknown webhook source"})
    if _method(event) != "POST":
        return _answer(405, {"error": "only POST is allowed"}, {"Allow": "POST"})

    headers = {str(key).lower(): str(value) for key, value in (event.get("headers") or {}).items()}
    if not all(encodable(key + value) for key, value in headers.items()):
        return _answer(400, {"error": "a header is not valid text"})
    body = _body(event)
    if body is None:
        return _answer(400, {"error": "the body is not valid base64"})
    if len(body) > runtime.settings.webhook_max_body_bytes:
        return _answer(413, {"error": "the body is too large"})

    try:
        secrets = runtime.webhook_secrets(source)
    except TriggerError as error:
        logger.error("webhook secrets unusable", extra={"source": name, "reason": error.message})
        return _answer(500, {"error": "config_error", "message": "webhook secrets unusable"})
    now = runtime.clock()
    tolerance = source.tolerance_seconds or runtime.settings.webhook_tolerance_seconds
    refusal = verify(source.scheme, headers, body, secrets, now=now, tolerance_seconds=tolerance,
                     bearer_header=source.bearer_header)  # fmt: skip
    if refusal:
        logger.warning("webhook rejected", extra={"source": name, "reason": refusal})
        return _answer(401, {"error": "unauthorized"})

    if headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        return _answer(415, {"error": "send application/json"})
    try:
        payload = safe_json.loads(body)
    except ValueError:
        return _answer(415, {"error": "the body is not valid JSON"})

    mapped = source.map(payload, headers)
    if "timestamp" in source.fields:
        refusal = signed_timestamp_refusal(mapped.timestamp, now=now, tolerance_seconds=tolerance)
        if refusal:
            logger.warning("webhook rejected", extra={"source": name, "reason": refusal})
            return _answer(401, {"error": "unauthorized"})
    ignored = source.ignores(payload)
    if ignored:  # signed, but not news for a backup (a comment, an edit): start nothing
        logger.info("webhook ignored", extra={"source": name, "reason": ignored,
                                              "delivery_id": mapped.delivery_id})  # fmt: skip
        return _answer(200, {"ignored": ignored})
    trigger = Trigger(
        source="webhook", id=mapped.delivery_id, sender=source.name, reference=mapped.reference
    )
    digest = hashlib.sha256(body).hexdigest()
    unit = Unit.of(mapped.plan, _key(source, mapped, digest), payload=digest)
    if unit.key is not None and runtime.deduplicator is None:
        # Never run a webhook unprotected: senders retry.
        unprotected = ConfigError("IDEMPOTENCY_TABLE is not set")
        unit = Unit(RejectedPlan(unprotected, mapped.plan.backend, mapped.plan.target_id))
    try:
        if isinstance(unit.item, Resolution):
            return _resolve(trigger, unit, context, runtime)
        result = run_plan(trigger, unit, context, runtime)
    except AlreadyInProgressError:
        return _answer(409, {"error": "this delivery is being processed"}, {"Retry-After": "5"})
    except PayloadConflictError as conflict:
        # Start nothing; tell the operator once, unkeyed, what the sender did.
        logger.warning("webhook refused", extra={"source": name, "reason": conflict.message})
        refused = RejectedPlan(conflict, mapped.plan.backend, mapped.plan.target_id)
        result = run_plan(trigger, Unit(refused), context, runtime)
    except TriggerError as error:  # the idempotency records cannot be kept: never run unprotected
        logger.error("webhook not run", extra={"source": name, "reason": error.message})
        status = _STATUS_BY_CATEGORY.get(error.category, 503)
        retry = {"Retry-After": str(_DEFAULT_RETRY_AFTER_SECONDS)} if status == 503 else {}
        return _answer(status, {"error": error.category.value}, retry)
    return _result_answer(result)


def _resolve(trigger: Trigger, unit: Unit, context: Any, runtime: Runtime) -> dict[str, Any]:
    """A delivery naming servers or a policy: every backup it resolves to starts (201 with
    each checkpoint id), or is queued when there are more than ``MAX_INLINE_PLANS`` (202)."""
    from csbs_trigger.resolution import backups_in, resolve_units  # only when it resolves

    units = resolve_units([unit], context, runtime)
    if backups_in(units) > MAX_INLINE_PLANS:
        try:
            queued = enqueue_units(trigger, units, context, runtime)
        except (PublishError, PlansNotQueued) as error:
            logger.error("resolved backups not queued", extra={"reason": str(error)})
            return _answer(503, {"error": "not queued, retry"}, {"Retry-After": "10"})
        failed = [_failure(u.item.error, u.item.resolved_from) for u in units
                  if isinstance(u.item, RejectedPlan)]  # fmt: skip
        body = {"queued": queued["counts"]["queued"], "failed": failed}
        return _answer(202, {**body, "reference": trigger.reference})
    results = run_units(trigger, units, context, runtime)
    started = [result for result in results if result.message["checkpoint"] is not None]
    if any(result.publish_error for result in results) or not started:
        return _result_answer(next((r for r in results if r.publish_error), results[0]))
    checkpoints = [
        {**_named(result.message), "checkpoint_id": result.message["checkpoint"]["id"],
         "status": result.message["checkpoint"]["status"]}
        for result in started
    ]  # fmt: skip
    failed = [
        _failure(result.message["error"], (result.message["request"] or {}).get("resolved_from"))
        for result in results
        if result not in started
    ]
    headers = {"Idempotent-Replayed": "true"} if all(r.replayed for r in results) else {}
    body = {"checkpoints": checkpoints, "failed": failed, "reference": trigger.reference}
    return _answer(201, body, headers)


def _named(message: dict[str, Any]) -> dict[str, Any]:
    """The plan or vault a message is about, by its backend's key."""
    key = backend_of(message).target_key  # plan_id, vault_id
    return {key: (message["request"] or {}).get(key)}


def _failure(error: Any, resolved_from: Any) -> dict[str, Any]:
    """What a delivery asked for that did not start (its error, a dict or a ``TriggerError``),
    as its answer lists it: the server or name it concerns, where it is one."""
    if isinstance(error, TriggerError):
        error = error.to_dict()
    named = {key: resolved_from[key] for key in ("server", "name") if key in (resolved_from or {})}
    return {"error": error["category"], "message": error["message"], **named}


def _method(event: dict[str, Any]) -> str | None:
    """The HTTP method in payload format 2.0 (HTTP API, function URL) or 1.0 (REST API)."""
    context = event.get("requestContext") or {}
    http = context.get("http") or {}
    return http.get("method") or event.get("httpMethod") or context.get("httpMethod")


def _key(source: Source, mapped: Mapped, body_digest: str) -> str | None:
    """What names one delivery: its id where the signature covers it, else the signed body
    itself, so a captured body sent again under a fresh id is answered from the first run."""
    if mapped.delivery_id is None:
        return None
    if signs_delivery_id(source.scheme):
        return f"webhook:{source.name}:{mapped.delivery_id}"
    return f"webhook:{source.name}:body-{body_digest}"


def _result_answer(result: PlanResult) -> dict[str, Any]:
    message = result.message
    headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
    if result.publish_error is not None:
        # The backup is recorded; the sender's retry replays it and publishes again.
        headers["Retry-After"] = "10"
        return _answer(503, {"error": "notification not published, retry"}, headers)
    named = _named(message)
    reference = message["trigger"]["reference"]
    checkpoint, error = message["checkpoint"], message["error"]
    if checkpoint is not None:
        body = {"checkpoint_id": checkpoint["id"], "status": checkpoint["status"]}
        return _answer(201, {**body, **named, "reference": reference}, headers)
    category = Category(error["category"])
    status = _STATUS_BY_CATEGORY.get(category, _UPSTREAM_FAILURE)
    if status in (503, 504):
        retry_after = error["retry_after_seconds"] or _DEFAULT_RETRY_AFTER_SECONDS
        headers["Retry-After"] = str(int(retry_after))
    body = {
        "error": category.value,
        "message": error["message"],
        "retryable": error["retryable"],
        "code": error["code"],
        "maybe_created": error["maybe_created"],
        **named,
        "reference": reference,
    }
    return _answer(status, body, headers)


def _source_from_path(path: str) -> str | None:
    match = _PATH.fullmatch(path)
    return match.group(1) if match else None


def _body(event: dict[str, Any]) -> bytes | None:
    raw = event.get("body") or ""
    if not event.get("isBase64Encoded"):
        return str(raw).encode("utf-8", "surrogatepass")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return None


def _answer(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": json.dumps(body),
    }

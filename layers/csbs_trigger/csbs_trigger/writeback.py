"""Ticket write-back: the result a ticket asked for (a backup's completion, or a start that
failed for good) written into that ticket, exactly once.

The ticket update queue receives the topic's notifications of triggers that name a sender (the
subscription's filter). Each result is claimed in the ticket ledger before anything is sent:
a redelivery, a second worker or a republished completion finds it claimed or settled. A write
whose answer was lost (a timeout, a reset, a 5xx) is never repeated blindly: the next delivery
reads the ticket for the note's marker first. A write that cannot succeed is reported once on
the topic (``event: writeback``); one that succeeds publishes nothing.
"""

from __future__ import annotations

import json
import time
from typing import Any

from csbs_trigger import safe_json
from csbs_trigger.aws import sqs
from csbs_trigger.aws.sqs import MAX_VISIBILITY_SECONDS
from csbs_trigger.aws.ticket_ledger import WRITING, TicketLedger
from csbs_trigger.errors import (
    Category,
    ConfigError,
    InvalidEventError,
    TriggerError,
    UpstreamError,
)
from csbs_trigger.log import logger
from csbs_trigger.notify import SCHEMA_VERSION, Notification, fit, iso_time
from csbs_trigger.runtime import Runtime
from csbs_trigger.tickets.note import Note, note_of
from csbs_trigger.tickets.systems import TicketSystem

EVENT_WRITEBACK = "writeback"
# A claim outlives the function's timeout (60 s): a live worker never loses it to another.
LEASE_SECONDS = 120.0
_MIN_HOLD_SECONDS = 1.0


def handle_ticket_messages(event: Any, context: Any, runtime: Runtime) -> dict[str, Any]:
    """Write each message's result; the ones to try again are the batch's item failures."""
    received = time.time()
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list):
        raise InvalidEventError("the ticket update function takes SQS events (Records)")
    held = [_handle_record(record, runtime, received) for record in records]
    return {"batchItemFailures": [{"itemIdentifier": item} for item in held if item]}


def _handle_record(record: Any, runtime: Runtime, received: float) -> str | None:
    """One message: None when done with, else its id (it comes back)."""
    record = record if isinstance(record, dict) else {}
    message_id = record.get("messageId") if isinstance(record.get("messageId"), str) else None
    try:
        content = safe_json.loads(record.get("body") or "")
    except (ValueError, TypeError):
        content = None
    note = note_of(content)
    if note is None:
        return None  # no ticket named, or nothing final to tell
    try:
        delay = _write_back(note, record, runtime)
    except Exception as exc:  # the ledger or the topic failed: the message comes back
        # Its type only: an unforeseen exception's text may hold anything.
        logger.error("ticket update failed: it comes back", extra={
            "message_id": message_id, "reason": type(exc).__name__})  # fmt: skip
        return message_id
    if delay is None:
        return None
    _hold_back(record, runtime, delay, received)
    return message_id


def _write_back(note: Note, record: dict[str, Any], runtime: Runtime) -> float | None:
    """Write the note once; None when done with it, else the seconds until it is tried again."""
    systems = _systems(runtime)
    system = systems if isinstance(systems, ConfigError) else systems.get(note.sender)
    if system is None:
        if note.sender not in runtime.senders_without_writeback:
            runtime.senders_without_writeback.add(note.sender)
            logger.info("no ticket write-back for this sender", extra={"sender": note.sender})
        return None
    ledger = runtime.ticket_ledger
    if ledger is None:
        raise ConfigError("environment variable TICKET_LEDGER_TABLE is not set")
    key = f"note\n{note.sender}\n{note.reference}\n{note.marker}"
    claim = ledger.claim(key, runtime.clock(), LEASE_SECONDS)
    if claim.state == "busy":
        return LEASE_SECONDS  # another worker writes it now
    if claim.state != WRITING:
        if claim.report is not None:  # settled as failed, its report not yet published
            _publish_report(key, claim.report, ledger, runtime)
        return None
    try:
        if isinstance(system, ConfigError):
            raise system
        system.check_reference(note.reference)
        system = _not_refused(system, ledger, runtime)
        client = runtime.ticket_client(system)
        if claim.unknown and client.has_note(note):
            logger.info("ticket note found, written before", extra=_log_of(note))
        else:
            client.write(note)
    except TriggerError as error:
        return _failed(note, key, system, error, record, runtime)
    ledger.written(key)
    runtime.metrics.count("TicketUpdated", kind=system.kind)
    logger.info("ticket updated", extra=_log_of(note))
    return None


def _systems(runtime: Runtime) -> dict[str, TicketSystem | ConfigError] | ConfigError:
    try:
        return runtime.ticket_systems()
    except ConfigError as error:  # the secret itself: every sender's writes fail alike
        return error


def _not_refused(system: TicketSystem, ledger: TicketLedger, runtime: Runtime) -> TicketSystem:
    """The sender's system, unless its credentials were refused: then the secret is read again,
    and only changed credentials are sent."""
    if not ledger.refused(system.sender, system.fingerprint):
        return system
    fresh = runtime.ticket_systems(refresh=True).get(system.sender)
    if (
        isinstance(fresh, TicketSystem)
        and fresh.fingerprint != system.fingerprint
        and not ledger.refused(fresh.sender, fresh.fingerprint)
    ):
        return fresh
    raise UpstreamError(
        f"{system.label} refused the credentials of sender {system.sender} before (HTTP 401): "
        "not sent again until its ticket secret changes",
        category=Category.AUTH_FAILED,
        http_status=401,
    )


def _failed(
    note: Note,
    key: str,
    system: TicketSystem | ConfigError,
    error: TriggerError,
    record: dict[str, Any],
    runtime: Runtime,
) -> float | None:
    """Release the note to come back (throttled, or an answer lost), or report it failed."""
    ledger = runtime.ticket_ledger
    assert ledger is not None
    refused_now = error.category is Category.AUTH_FAILED and error.http_status == 401
    if refused_now and isinstance(system, TicketSystem):
        ledger.refuse(system.sender, system.fingerprint, runtime.clock())
    delivery = sqs.deliveries(record)
    if error.retryable and delivery < runtime.settings.ticket_max_deliveries:
        throttled = error.category is Category.THROTTLED
        # A 429 wrote nothing; a 5xx, or a timeout or reset once sent, may have written it.
        arrived = error.http_status is not None or getattr(error, "request_sent", False)
        unknown = not throttled and arrived
        ledger.release(key, unknown=unknown)
        asked = error.retry_after_seconds if throttled else None
        delay = asked if asked is not None else sqs.backoff(delivery)
        logger.info("ticket update comes back", extra={
            **_log_of(note), "category": error.category.value, "delivery": delivery,
            "delay_seconds": round(delay, 1)})  # fmt: skip
        return max(delay, _MIN_HOLD_SECONDS)
    report = json.dumps(_report(note, error, runtime).to_record(), ensure_ascii=False)
    ledger.failed(key, report)
    _publish_report(key, report, ledger, runtime)
    kind = system.kind if isinstance(system, TicketSystem) else "unknown"
    runtime.metrics.count("TicketUpdateFailed", kind=kind)
    logger.warning("ticket update failed", extra={
        **_log_of(note), "category": error.category.value, "delivery": delivery})  # fmt: skip
    return None


def _report(note: Note, error: TriggerError, runtime: Runtime) -> Notification:
    """The one notification of a note that could not be written: what would have been."""
    failure = error.to_dict()
    message = {
        "schema_version": SCHEMA_VERSION,
        "event": EVENT_WRITEBACK,
        "outcome": "failed",
        "trigger": {"sender": note.sender, "reference": note.reference},
        "checkpoint": {"id": note.checkpoint_id} if note.checkpoint_id else None,
        "error": {name: failure[name] for name in ("category", "http_status", "code", "message")},
        "text": note.text(),
        "published_at": iso_time(),
    }
    return Notification(
        subject=f"Ticket {note.reference} not updated ({error.category.value})",
        message=fit(message, runtime.redactor()),
        attributes={
            "event": EVENT_WRITEBACK,
            "outcome": "failed",
            "trigger_sender": note.sender,
        },
    )


def _publish_report(key: str, stored: str, ledger: TicketLedger, runtime: Runtime) -> None:
    """Publish a failure as the ledger keeps it, then mark it published."""
    runtime.publisher.publish(Notification.from_record(json.loads(stored)))
    ledger.reported(key)


def _hold_back(record: dict[str, Any], runtime: Runtime, delay: float, received: float) -> None:
    """The message comes back after ``delay``, within what SQS allows from its receipt."""
    receipt = record.get("receiptHandle")
    if runtime.ticket_queue is None or not isinstance(receipt, str):
        return
    left = MAX_VISIBILITY_SECONDS - (time.time() - received) - 5
    runtime.ticket_queue.hold_back(receipt, max(_MIN_HOLD_SECONDS, min(delay, left)))


def _log_of(note: Note) -> dict[str, Any]:
    return {"sender": note.sender, "reference": note.reference, "marker": note.marker}

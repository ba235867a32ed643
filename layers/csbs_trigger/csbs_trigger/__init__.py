"""csbs-trigger core: start CSBS and CBR backups from AWS events, follow each backup to its end,
and report both to SNS; a daily digest tells whether every plan is protected.

The public API is what handlers need; everything else is importable from its module. Each name
here is imported when first asked for, so a function loads only its own path (the scheduled
function never loads the digest, the tracker or the webhook mapping): a shorter cold start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from csbs_trigger.aws.sns import PublishError
    from csbs_trigger.cloud.backend import BackupRequest
    from csbs_trigger.digest import run_digest
    from csbs_trigger.errors import (
        Category,
        ConfigError,
        InvalidEventError,
        TriggerError,
        UpstreamError,
    )
    from csbs_trigger.expiry import sweep
    from csbs_trigger.log import logger
    from csbs_trigger.models import Checkpoint, Trigger
    from csbs_trigger.runtime import Runtime, container_runtime
    from csbs_trigger.settings import Settings
    from csbs_trigger.tracker import track
    from csbs_trigger.triggers.queued import handle_plan_messages
    from csbs_trigger.triggers.scheduled import handle_event
    from csbs_trigger.triggers.webhooks import handle_webhook
    from csbs_trigger.writeback import handle_ticket_messages

_MODULE_OF = {
    "BackupRequest": "csbs_trigger.cloud.backend",
    "Category": "csbs_trigger.errors",
    "Checkpoint": "csbs_trigger.models",
    "ConfigError": "csbs_trigger.errors",
    "InvalidEventError": "csbs_trigger.errors",
    "PublishError": "csbs_trigger.aws.sns",
    "Runtime": "csbs_trigger.runtime",
    "Settings": "csbs_trigger.settings",
    "Trigger": "csbs_trigger.models",
    "TriggerError": "csbs_trigger.errors",
    "UpstreamError": "csbs_trigger.errors",
    "container_runtime": "csbs_trigger.runtime",
    "handle_event": "csbs_trigger.triggers.scheduled",
    "handle_plan_messages": "csbs_trigger.triggers.queued",
    "handle_ticket_messages": "csbs_trigger.writeback",
    "handle_webhook": "csbs_trigger.triggers.webhooks",
    "logger": "csbs_trigger.log",
    "run_digest": "csbs_trigger.digest",
    "sweep": "csbs_trigger.expiry",
    "track": "csbs_trigger.tracker",
}
__all__ = [
    "BackupRequest",
    "Category",
    "Checkpoint",
    "ConfigError",
    "InvalidEventError",
    "PublishError",
    "Runtime",
    "Settings",
    "Trigger",
    "TriggerError",
    "UpstreamError",
    "container_runtime",
    "handle_event",
    "handle_plan_messages",
    "handle_ticket_messages",
    "handle_webhook",
    "logger",
    "run_digest",
    "sweep",
    "track",
]


def __getattr__(name: str) -> Any:
    """The public name ``name``, from its module (imported now, if it was not before)."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'csbs_trigger' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

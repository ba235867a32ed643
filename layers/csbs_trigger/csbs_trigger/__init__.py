"""csbs-trigger core: start CSBS and CBR backups from AWS events, follow each backup to its end,
and report both to SNS; a daily digest tells whether every plan is protected.

The public API is what handlers need; everything else is importable from its module.
"""

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
from csbs_trigger.log import logger
from csbs_trigger.models import Checkpoint, Trigger
from csbs_trigger.runtime import Runtime, container_runtime
from csbs_trigger.settings import Settings
from csbs_trigger.tracker import track
from csbs_trigger.triggers.queued import handle_plan_messages
from csbs_trigger.triggers.scheduled import handle_event
from csbs_trigger.triggers.webhooks import handle_webhook

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
    "handle_webhook",
    "logger",
    "run_digest",
    "track",
]

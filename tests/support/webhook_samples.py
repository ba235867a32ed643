"""The signed webhook samples in events/, built from the raw payloads in events/webhooks/.

``python -m support.webhook_samples`` writes them again after a payload or secret changes;
a test checks that the committed files are what this module builds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from csbs_trigger.triggers.webhook_auth import hub_signature, standard_webhooks_signature
from support.http_api import http_api_event

EVENTS = Path(__file__).resolve().parents[2] / "events"
SECRETS: dict[str, list[str]] = json.loads((EVENTS / "secrets" / "webhooks.json").read_text())
SAMPLE_TIME = 1795740000  # 2026-11-27 00:40 UTC; re-sign standard-webhooks samples to use them
GENERIC_DELIVERY = "msg_2pQd9Wc1sample"


def signed_headers(source: str, body: bytes, *, timestamp: int = SAMPLE_TIME) -> dict[str, str]:
    """The headers a sender of ``source`` sends with ``body``, signed with the sample secret."""
    headers = {"Content-Type": "application/json"}
    if source == "jira":
        headers["X-Atlassian-Webhook-Identifier"] = "a3c2e1d0-jira-delivery-0001"
        headers["X-Hub-Signature"] = hub_signature(SECRETS["jira"][0], body)
    elif source == "servicenow":
        headers["Authorization"] = f"Bearer {SECRETS['servicenow'][0]}"
    elif source == "jira-automation":  # the rule's "Send web request" sets this header
        headers["X-Automation-Webhook-Token"] = SECRETS["jira-automation"][0]
    else:
        headers["webhook-id"] = GENERIC_DELIVERY
        headers["webhook-timestamp"] = str(timestamp)
        headers["webhook-signature"] = standard_webhooks_signature(
            SECRETS["generic"][0], GENERIC_DELIVERY, timestamp, body
        )
    return headers


_JIRA_TIMESTAMP = re.compile(rb'"timestamp": *[0-9]+')


def stamped(source: str, body: bytes, now: float) -> bytes:
    """``body`` as its sender would send it at ``now``: Jira Cloud signs a top-level
    ``timestamp`` in milliseconds, which must lie within the tolerance."""
    if source != "jira":
        return body
    return _JIRA_TIMESTAMP.sub(b'"timestamp": %d' % int(now * 1000), body, count=1)


SAMPLES = {
    "webhook-jira.json": ("jira", "jira-issue-updated.json"),
    "webhook-servicenow.json": ("servicenow", "servicenow-change-request.json"),
    "webhook-generic.json": ("generic", "generic.json"),
    "webhook-jira-automation.json": ("jira-automation", "jira-automation.json"),
}


def build(name: str) -> dict[str, Any]:
    source, payload = SAMPLES[name]
    body = (EVENTS / "webhooks" / payload).read_bytes()
    event = http_api_event("POST", f"/webhooks/{source}", signed_headers(source, body), body)
    event["requestContext"].update(
        requestId=f"sample-{source}",
        timeEpoch=SAMPLE_TIME * 1000,
        time="27/Nov/2026:00:40:00 +0000",
    )
    return event


def main() -> None:
    for name in SAMPLES:
        (EVENTS / name).write_text(json.dumps(build(name), indent=2) + "\n")


if __name__ == "__main__":
    main()

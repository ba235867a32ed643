"""The webhook endpoint on 127.0.0.1: no AWS account, no cloud account, no Docker.

Starts the CSBS + IAM stand-in, a local AWS (moto server) with the idempotency table, the
secrets from events/secrets/ and a notification topic, then serves the webhook function on
http://127.0.0.1:PORT/webhooks/{source}.

    make webhook          # serve until Ctrl-C, printing each notification as it is published
    make webhook PORT=9000     # another port (when 8080 is taken, a free one is picked)
    make webhook ARGS=--demo   # send the signed samples (and a replay, and a forgery), then stop
    make webhook ARGS=--logs   # also print the function's JSON log lines
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import time
from typing import Any

import requests

from csbs_trigger import logger
from support.local_aws import LocalAws
from support.local_run import ROOT, SAMPLE_PLANS, print_notification, quiet_function_logs
from support.standin import CsbsStandIn
from support.webhook_samples import EVENTS, SAMPLES, signed_headers, stamped
from support.webhook_server import WebhookServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--demo", action="store_true", help="send the samples, then stop")
    parser.add_argument("--logs", action="store_true", help="print the function's log lines")
    args = parser.parse_args(argv)

    with CsbsStandIn() as standin, LocalAws() as aws:
        for plan_id, (name, servers) in SAMPLE_PLANS.items():
            standin.add_plan(plan_id, name, servers)
        topic_arn, inbox = aws.topic_with_inbox("csbs-trigger-notifications")
        webhook_secrets = json.loads((EVENTS / "secrets" / "webhooks.json").read_text())
        os.environ.update(aws.env())
        os.environ.update(
            {
                "CSBS_SECRET_ID": aws.create_secret("csbs-trigger/cloud", standin.cloud_secret()),
                "WEBHOOK_SECRET_ID": aws.create_secret("csbs-trigger/webhooks", webhook_secrets),
                "IDEMPOTENCY_TABLE": aws.idempotency_table(),
                "TRACKING_TABLE": aws.tracking_table(),
                "LOGIN_REFUSAL_TABLE": aws.login_refusal_table(),
                "POWERTOOLS_METRICS_DISABLED": "true",  # the EMF lines are for CloudWatch
                "NOTIFICATION_TOPIC_ARN": topic_arn,
                "POWERTOOLS_LOG_LEVEL": "WARNING",
            }
        )
        # The package's logger exists already (the sample signer imported it): set it directly.
        logger.setLevel(os.environ["POWERTOOLS_LOG_LEVEL"])
        if not args.logs:  # the summaries below say what happened; whole lines with --logs
            quiet_function_logs()
        function = importlib.import_module("webhook")
        with WebhookServer(function.handler, args.port) as server:
            print(
                f"webhook endpoint: {server.url}/webhooks/{{generic,jira,jira-automation,"
                "servicenow}"
            )
            print(f"(CSBS/IAM stand-in on {standin.url}, local AWS on {aws.endpoint_url})\n")
            if args.demo:
                demo(server.url, inbox)
                return 0
            print_curl_examples(server.url)
            print("\nwaiting for webhooks; Ctrl-C stops\n", flush=True)
            try:
                while True:
                    for delivered in inbox.drain():
                        print_notification(delivered, full=False)
                    time.sleep(0.5)  # a poll for the person watching, not a wait in a test
            except KeyboardInterrupt:
                return 0


def print_curl_examples(url: str) -> None:
    for name, (source, payload) in SAMPLES.items():
        path = EVENTS / "webhooks" / payload
        body = stamped(source, path.read_bytes(), time.time())
        if body != path.read_bytes():  # stamped now: send the stamped copy
            path = ROOT / "build" / "webhooks" / payload
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
        headers = signed_headers(source, body, timestamp=int(time.time()))
        command = ["curl", "-sS", "-i", "-X", "POST", f"{url}/webhooks/{source}"]
        for header, value in headers.items():
            command += ["-H", f"{header}: {value}"]
        command += ["--data-binary", f"@{path.relative_to(ROOT)}"]
        minutes = {"generic": 5, "jira": 35}.get(source)
        note = f" (signed now: valid for {minutes} minutes)" if minutes else ""
        print(f"# {name.removesuffix('.json')}{note}\n{shlex.join(command)}\n")


def demo(url: str, inbox: Any) -> None:
    def send(label: str, source: str, body: bytes, headers: dict[str, str]) -> None:
        print(f"=== {label}", flush=True)
        answer = requests.post(f"{url}/webhooks/{source}", data=body, headers=headers, timeout=30)
        replayed = " (replayed)" if answer.headers.get("Idempotent-Replayed") else ""
        print(f"POST /webhooks/{source} -> {answer.status_code}{replayed}")
        print(f"    {answer.text}")
        for delivered in inbox.drain():
            print_notification(delivered, full=False)
        print()

    now = time.time()
    for name, (source, payload) in SAMPLES.items():
        body = stamped(source, (EVENTS / "webhooks" / payload).read_bytes(), now)
        send(name, source, body, signed_headers(source, body, timestamp=int(now)))
    body = stamped("jira", (EVENTS / "webhooks" / "jira-issue-updated.json").read_bytes(), now)
    send("the Jira delivery again (the sender retried)", "jira", body, signed_headers("jira", body))
    replayed = {**signed_headers("jira", body), "X-Atlassian-Webhook-Identifier": "captured"}
    send("the captured Jira body under a fresh delivery id", "jira", body, replayed)
    comment = body.replace(b'"field": "status"', b'"field": "comment"')
    commented = {**signed_headers("jira", comment), "X-Atlassian-Webhook-Identifier": "comment"}
    send("a comment on the Jira change (no status change: nothing starts)", "jira", comment,
         commented)  # fmt: skip
    forged = body.replace(b"CHG-42", b"CHG-99")
    send("a forged Jira delivery (body changed after signing)", "jira", forged,
         {**signed_headers("jira", body), "X-Atlassian-Webhook-Identifier": "forged"})  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())

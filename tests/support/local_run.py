"""Run the scheduled-backup function locally: no AWS account, no cloud account, no Docker.

Starts the CSBS + IAM stand-in and a local AWS (moto server) on 127.0.0.1, stores a cloud
secret, creates the notification topic with a subscribed queue, then feeds the ``events/``
samples to the handler as Lambda would (event + context) and prints what was published.

Then the completion tracker follows every started backup to its end (in AWS it runs every
5 minutes; here back to back): the stand-in's servers go from no items to ``protecting`` to
``available``, except plan "backup"'s server and vault "vault-db"'s, which end in ``error``
(CBR names the reason in its task list). Then one backup with a 1-second tracking deadline is
reported ``timed_out``. Then a firing of 25 plans is queued and the plan worker drains the
queue, as Lambda's SQS event source would run it, and the signed webhook samples are sent to
the webhook function on a local endpoint; the ticket update function writes their results into
the Jira issues and the ServiceNow change that asked (local stand-ins). Then backups with a
lifetime expire: one is deleted, one kept as its servers' last good backup. Last, the daily digest
of all of it, with a recovery point objective short enough that the backups of the start
breach it.

    make run                      # every sample
    make run EVENTS=events/batch.json
    make run ARGS="--full --logs"  # whole messages, and the function's JSON log lines
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from csbs_trigger import logger
from support.http_api import http_api_event
from support.lambda_context import FakeLambdaContext
from support.local_aws import Delivered, LocalAws
from support.standin import CsbsStandIn
from support.ticket_standin import TicketStandIn
from support.webhook_samples import signed_headers

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_EVENTS = ["schedule.json", "eventbridge.json", "batch.json", "vaults.json", "direct.json",
                  "invalid.json"]  # fmt: skip

# The plans and servers the sample events name, as the stand-in's project holds them.
SAMPLE_PLANS = {
    "62171999-3df1-42f7-9513-6f9b1bea4744": (
        "nightly-app-servers",
        {
            "7a32a8b5-7977-4e24-b5da-e0eb457db75b": "app-server-1",
            "b2b433bf-7dd6-4a74-aa8f-85673dfbda48": "app-server-2",
        },
    ),
    "6a6cda7e-7b89-4b14-8e5c-3b6821a97d2c": (
        "backup",
        {"1c960fe4-e679-421a-97cd-4f7463d2344b": "server0"},
    ),
}
# A firing of more plans than one invocation runs: queued, drained by the plan worker.
LARGE_FIRING = 25
LARGE_FIRING_SCHEDULE = "arn:aws:scheduler:eu-central-1:123456789012:schedule/default/estate"
# The CBR vaults the sample events name (a project created since 2025 backs up with CBR).
SAMPLE_VAULTS = {
    "3b5816b5-f29c-4172-9d9a-76c719a659ce": (
        "vault-be94",
        {
            "94eba8b2-acc9-4d82-badc-127144cc5526": "ecs-1f0f-0002",
            "e8cc6bfd-d324-4b88-9109-9fb0ba70676f": "ecs-9f93-0002",
        },
    ),
    "ea7b8717-2543-478a-a92d-3ca7ee448f67": (
        "vault-db",
        {"d6bf7592-ca52-43a2-9979-e418d64b29bb": "db-server-1"},
    ),
}
# ECS's servers by name (issue 28): the vaults' and plans' servers, and one whose name only
# holds another's (ECS matches names loosely; only an exact name counts).
SAMPLE_SERVERS = {
    server: name
    for _, servers in (*SAMPLE_PLANS.values(), *SAMPLE_VAULTS.values())
    for server, name in servers.items()
} | {"0f0e0d0c-0b0a-4909-8807-060504030201": "db-server-10"}
SAMPLE_POLICY = "8f1e2d3c-4b5a-4697-8a1b-2c3d4e5f6a7b"  # events/policy.json
DIGEST_SCHEDULE = "cron(0 7 * * ? *)"  # the template's DigestSchedule default
# The direct sample runs while a backup of its plan is still executing, to show a failure.
BUSY_FOR_DIRECT_SAMPLE = "CSBS.1001"
# The servers whose backups end in error, to show a failed completion (CSBS, CBR).
FAILING_SERVERS = {"1c960fe4-e679-421a-97cd-4f7463d2344b", "d6bf7592-ca52-43a2-9979-e418d64b29bb"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("events", nargs="*", help="event files (default: the samples in events/)")
    parser.add_argument(
        "--logs", action="store_true", help="show the function's JSON log lines too"
    )
    parser.add_argument(
        "--full", action="store_true", help="print each notification's whole message"
    )
    args = parser.parse_args(argv)
    event_files = [Path(name) for name in args.events] or [
        ROOT / "events" / name for name in DEFAULT_EVENTS
    ]

    with CsbsStandIn() as standin, LocalAws() as aws, TicketStandIn() as tickets:
        for plan_id, (name, servers) in SAMPLE_PLANS.items():
            standin.add_plan(plan_id, name, servers)
        for vault_id, (name, servers) in SAMPLE_VAULTS.items():
            standin.add_vault(vault_id, name, servers)
        secret_arn = aws.create_secret("csbs-trigger/cloud", standin.cloud_secret())
        topic_arn, inbox = aws.topic_with_inbox("csbs-trigger-notifications")
        os.environ.update(aws.env())
        os.environ.update(
            {
                "CSBS_SECRET_ID": secret_arn,
                "NOTIFICATION_TOPIC_ARN": topic_arn,
                "IDEMPOTENCY_TABLE": aws.idempotency_table(),
                "TRACKING_TABLE": aws.tracking_table(),
                "LOGIN_REFUSAL_TABLE": aws.login_refusal_table(),
                "HISTORY_TABLE": aws.history_table(),
                "TRACKING_POLL_INTERVAL_SECONDS": "0",  # every run polls every started backup
                "POWERTOOLS_LOG_LEVEL": "INFO",
                "POWERTOOLS_METRICS_DISABLED": "true",  # the EMF lines are for CloudWatch
            }
        )
        standin.failing_servers = set(FAILING_SERVERS)
        if not args.logs:  # the summaries below say what happened; whole lines with --logs
            quiet_function_logs()
        print(f"CSBS/IAM stand-in on {standin.url}, local AWS on {aws.endpoint_url}")
        function = importlib.import_module("scheduled_backup")
        tracker = importlib.import_module("completion_tracker")
        runtime_module = importlib.import_module("csbs_trigger.runtime")

        def invoke(path: Path, note: str = "") -> None:
            print(f"\n=== {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}{note}")
            sys.stdout.flush()
            result = function.handler(json.loads(path.read_text()), FakeLambdaContext())
            print(f"handler returned: {json.dumps(result)}")
            for delivered in inbox.drain():
                print_notification(delivered, full=args.full)

        print("\n--- cloud secret: events/secrets/password.json (Keystone token auth)")
        for path in event_files:
            busy = path.name == "direct.json" and not args.events
            for plan_id in SAMPLE_PLANS:
                standin.plans[plan_id].busy_code = BUSY_FOR_DIRECT_SAMPLE if busy else None
            invoke(path, "  (a manual backup of the plan is still running)" if busy else "")

        print("\n--- cloud secret: events/secrets/access-keys.json (AK/SK request signing)")
        aws.update_secret(secret_arn, standin.access_key_secret())
        runtime_module._container_runtime = None  # a new container: reads the secret afresh
        for plan in standin.plans.values():
            plan.busy_code = None
        invoke(ROOT / "events" / "direct.json")

        def track(note: str, *, brief: bool = False) -> dict[str, Any]:
            print(f"\n=== completion tracker run{note}")
            sys.stdout.flush()
            result: dict[str, Any] = tracker.handler({}, FakeLambdaContext("csbs-trigger-tracker"))
            print(f"handler returned: {json.dumps(result)}")
            for delivered in inbox.drain():
                if brief:
                    print_subject(delivered)
                else:
                    print_notification(delivered, full=args.full)
            return result

        print("\n--- completion tracker (every 5 minutes in AWS; here back to back)")
        for run in range(1, 10):
            if not track(f" {run}")["due"]:
                break

        print("\n--- a backup not finished before its tracking deadline (1 s)")
        os.environ["TRACKING_DEADLINE_SECONDS"] = "1"
        runtime_module._container_runtime = None  # a redeploy with the new setting
        standin.polls_to_finish = 10
        invoke(ROOT / "events" / "direct.json")
        began = time.time()  # the backup was registered before: its deadline lies within 1 s
        track(" (no items yet)")
        track(" (protecting)")
        time.sleep(max(0.0, began + 1.1 - time.time()))  # a demo of a deadline: its one wait
        track(" after the deadline")

        print(
            f"\n--- a firing of {LARGE_FIRING} plans: more than 20, so queued for the plan worker"
            " (in AWS: SQS and its event source; here the moto queue, polled by this runner)"
        )
        os.environ.pop("TRACKING_DEADLINE_SECONDS")
        fresh_since = time.time()  # the digest's demo RPO: what succeeded before this is too old
        os.environ["PLAN_QUEUE_URL"] = aws.plan_queue()
        runtime_module._container_runtime = None  # a redeploy with the queue
        standin.polls_to_finish = 0
        plans = []
        for index in range(1, LARGE_FIRING + 1):
            plan_id = f"estate-{index:02d}"
            standin.add_plan(
                plan_id, f"estate-app-{index:02d}", {f"vm-{index:02d}": f"app-{index:02d}"}
            )
            plans.append({"plan_id": plan_id})
        firing = {"plans": plans, "schedule_arn": LARGE_FIRING_SCHEDULE,
                  "scheduled_time": "2026-11-30T02:00:00Z"}  # fmt: skip
        print("\n=== a scheduled firing of 25 plans")
        result = function.handler(firing, FakeLambdaContext())
        print(f"handler returned: {json.dumps(result)}")
        worker = importlib.import_module("plan_worker")
        answers = aws.run_plan_queue(
            os.environ["PLAN_QUEUE_URL"], worker.handler,
            lambda: FakeLambdaContext("csbs-trigger-plan-worker"), {},
        )  # fmt: skip
        for number, answer in enumerate(answers, 1):
            print(f"plan worker batch {number}: {json.dumps(answer)}")
        told = inbox.drain()
        for delivered in told:
            print_subject(delivered)
        print(f"{len(told)} notifications for {LARGE_FIRING} plans")
        track(" (the queued plans' backups)", brief=True)
        track(" (the queued plans' backups)", brief=True)

        # Ticket write-back: the sample ticket secret, pointed at the local Jira and ServiceNow.
        ticket_secret = json.loads((ROOT / "events" / "secrets" / "tickets.json").read_text())
        local_systems = tickets.secrets()
        ticket_secret["jira"] = local_systems["jira"]
        ticket_secret["jira-automation"] = local_systems["jira-dc"]
        ticket_secret["servicenow"] = local_systems["servicenow"]
        tickets.add_issue("CHG-42")
        tickets.add_issue("CHG-43")
        tickets.add_record("CHG0040007")
        tickets.add_record("CHG0040011")  # the change naming servers, not a plan
        os.environ["TICKET_SECRET_ID"] = aws.create_secret("csbs-trigger/tickets", ticket_secret)
        os.environ["TICKET_LEDGER_TABLE"] = aws.ticket_ledger_table()
        os.environ["TICKET_QUEUE_URL"] = aws.ticket_queue(topic_arn)

        print("\n--- webhooks: the signed samples on a local endpoint (make webhook serves it)")
        from support.local_webhook import demo  # it reuses this module's printers
        from support.webhook_server import WebhookServer

        secrets = json.loads((ROOT / "events" / "secrets" / "webhooks.json").read_text())
        os.environ["WEBHOOK_SECRET_ID"] = aws.create_secret("csbs-trigger/webhooks", secrets)
        runtime_module._container_runtime = None  # a redeploy with the webhook secret
        with WebhookServer(importlib.import_module("webhook").handler, 0) as server:
            print(f"webhook endpoint: {server.url}/webhooks/{{source}}")
            demo(server.url, inbox)
        track(" (the webhooks' backups)", brief=True)
        track(" (the webhooks' backups)", brief=True)

        print(
            "\n--- backing up what a ticket names: a ServiceNow change naming two hosts (in two"
            " vaults), a CBR policy (applied to two vaults), and server names from a schedule"
        )
        standin.servers = dict(SAMPLE_SERVERS)
        standin.cbr_policies[SAMPLE_POLICY] = list(SAMPLE_VAULTS)
        os.environ["DEFAULT_BACKEND"] = "cbr"
        runtime_module._container_runtime = None  # a redeploy with DefaultBackend=cbr
        body = (ROOT / "events" / "webhooks" / "servicenow-change-servers.json").read_bytes()
        print("\n=== events/webhooks/servicenow-change-servers.json (u_csbs_server_names: "
              f"{json.loads(body)['change_request']['u_csbs_server_names']!r})")  # fmt: skip
        answer = importlib.import_module("webhook").handler(
            http_api_event("POST", "/webhooks/servicenow", signed_headers("servicenow", body),
                           body),
            FakeLambdaContext("csbs-trigger-webhook"),
        )  # fmt: skip
        print(f"POST /webhooks/servicenow -> {answer['statusCode']}\n    {answer['body']}")
        for delivered in inbox.drain():
            print_notification(delivered, full=args.full)
        for name in ("policy.json", "servers.json"):
            invoke(ROOT / "events" / name)
        track(" (the resolved backups)", brief=True)
        track(" (the resolved backups)", brief=True)

        print(
            "\n--- ticket write-back: each result a ticket asked for, written into it once"
            f" (Jira Cloud and ServiceNow stand-ins on {tickets.url})"
        )
        updater = importlib.import_module("ticket_update")
        answers = aws.run_plan_queue(
            os.environ["TICKET_QUEUE_URL"], updater.handler,
            lambda: FakeLambdaContext("csbs-trigger-ticket-update"), {},
        )  # fmt: skip
        for number, answer in enumerate(answers, 1):
            print(f"ticket update batch {number}: {json.dumps(answer)}")
        for key, comments in tickets.issues.items():
            for comment in comments:
                body = comment["body"]
                if isinstance(body, str):
                    print(f"\n  Jira Data Center comment on {key} (wiki markup):")
                    lines = body.splitlines()
                else:
                    print(f"\n  Jira Cloud comment on {key} (Atlassian Document Format):")
                    lines = adf_lines(body)
                for line in lines:
                    print(f"    {line}")
        for number, record in tickets.records.items():
            for note in record.work_notes:
                print(f"\n  ServiceNow work note on {number}:")
                for line in note.splitlines():
                    print(f"    {line}")
        for delivered in inbox.drain():
            print_subject(delivered)

        print(
            "\n--- backup lifetimes: a plan's and a vault's backup kept one day, a newer one of the"
            " plan kept forever; then the expiry sweep (in AWS: hourly) with the functions'"
            " clock a day and a minute ahead"
        )
        os.environ["EXPIRY_TABLE"] = aws.expiry_table()
        runtime_module._container_runtime = None  # a redeploy with the register
        plan_id, vault_id = next(iter(SAMPLE_PLANS)), next(iter(SAMPLE_VAULTS))
        for plan in ({"plan_id": plan_id, "keep_days": 1}, {"plan_id": plan_id},
                     {"vault_id": vault_id, "keep_days": 1}):  # fmt: skip
            result = function.handler(plan, FakeLambdaContext())
            print(f"{json.dumps(plan)}: {result['plans'][0]['outcome']}, "
                  f"expires_at {inbox.drain()[0].message['expires_at']}")  # fmt: skip
        track(" (the three backups)", brief=True)
        track(" (the three backups)", brief=True)
        ahead = 86400 + 60
        runtime_module._container_runtime = runtime_module.Runtime.from_env(
            clock=lambda: time.time() + ahead
        )
        sweeper = importlib.import_module("expiry")
        for run in (1, 2):
            result = sweeper.handler({}, FakeLambdaContext("csbs-trigger-expiry"))
            print(f"\n=== expiry sweep {run}\nhandler returned: {json.dumps(result)}")
            if result.get("kept"):
                print(f"  {result['kept']} backup kept: it is its servers' last good backup")
            for delivered in inbox.drain():
                print_notification(delivered, full=args.full)
        runtime_module._container_runtime = None  # the real clock again

        rpo = max(1, math.ceil(time.time() - fresh_since))
        print(
            f"\n--- the daily digest (in AWS: {DIGEST_SCHEDULE}), with a demo RPO of {rpo} s:"
            " every backup that succeeded before the 25-plan firing is too old"
        )
        os.environ["DIGEST_RPO_SECONDS"] = str(rpo)
        runtime_module._container_runtime = None  # a redeploy with the setting
        digest = importlib.import_module("digest")
        result = digest.handler({}, FakeLambdaContext("csbs-trigger-digest"))
        print(f"handler returned: {json.dumps(result)}")
        for delivered in inbox.drain():
            print_notification(delivered, full=args.full)

        posts = [call for call in standin.calls("csbs") if call.method == "POST"]
        print(
            f"\nIAM token requests: {len(standin.calls('iam'))}, "
            f"CSBS checkpoint requests: {len(posts)}, "
            f"checkpoint item requests: {len(standin.calls('csbs')) - len(posts)}, "
            f"CBR requests: {len(standin.calls('cbr'))}"
        )
    return 0


def quiet_function_logs() -> None:
    """Keep the function's JSON log lines (700 characters each) out of the readable output."""
    handler = logger.registered_handler
    if isinstance(handler, logging.StreamHandler):
        handler.setStream(io.StringIO())


def adf_lines(document: dict[str, Any]) -> list[str]:
    """A comment's text as Jira shows it: its paragraphs, and its list items as bullets."""
    lines = []
    for block in document.get("content", []):
        if block["type"] == "bulletList":
            for item in block["content"]:
                lines += [f"- {text}" for text in adf_lines({"content": item["content"]})]
        else:
            lines.append("".join(node.get("text", "") for node in block.get("content", [])))
    return lines


def print_subject(delivered: Delivered) -> None:
    attributes = delivered.attributes
    print(f"  SNS [{attributes['event']}: {attributes['outcome']}] {delivered.subject}")


def print_notification(delivered: Delivered, *, full: bool) -> None:
    message: dict[str, Any] = delivered.message
    print(f"  SNS [{message['event']}: {message['outcome']}] {delivered.subject}")
    print(f"      attributes {json.dumps(delivered.attributes, sort_keys=True)}")
    if full:
        for line in json.dumps(message, indent=2).splitlines():
            print(f"      {line}")
        return
    if message["event"] == "completed":
        print_completion(message)
        return
    if message["event"] == "expired":
        deleted = ", ".join(s["resource_name"] or s["resource_id"] for s in message["deleted"])
        kept = ", ".join(s["resource_name"] or s["resource_id"]
                         for s in message["kept_as_last_good"])  # fmt: skip
        print(f"      checkpoint {message['checkpoint']['id']}, created {message['created_at']},"
              f" expired {message['expires_at']}")  # fmt: skip
        print(f"      deleted: {deleted or 'none'}; kept as last good: {kept or 'none'}")
        return
    if message["event"] == "digest":
        print_digest(message)
        return
    trigger = message["trigger"]
    print(f"      trigger {trigger['source']} {trigger['id']}")
    print(f"      attempts {message['attempts']}, {message['duration_ms']} ms")
    checkpoint = message["checkpoint"]
    if checkpoint:
        held = checkpoint.get("protection_plan") or checkpoint.get("vault") or {}  # CSBS, CBR
        servers = [item["name"] for item in held.get("resources", [])]
        print(f"      checkpoint {checkpoint['id']} {checkpoint['status']}")
        print(f"      created_at {checkpoint['created_at']}, servers {', '.join(servers)}")
        print(f"      extra_info {json.dumps(checkpoint['extra_info'])}")
        for skipped in held.get("skipped_resources") or []:
            print(f"      skipped {skipped['name']}: {skipped['code']} {skipped['reason']}")
    if message["error"]:
        print(f"      error {json.dumps(message['error'])}")
    if message.get("tracking"):
        print(f"      tracking {json.dumps(message['tracking'])}")
    resolved_from = (message.get("request") or {}).get("resolved_from")
    if resolved_from:
        print(f"      resolved from {json.dumps(resolved_from)}")


def print_completion(message: dict[str, Any]) -> None:
    print(
        f"      checkpoint {message['checkpoint']['id']}, {message['polls']} polls, "
        f"{message['started_at']} to {message['finished_at']} ({message['duration_s']} s)"
    )
    for item in message["items"]:
        size = f"{item['size_mb']:g} MB" if item["size_mb"] is not None else "-"
        failure = f"  {item['fail_code']}: {item['fail_reason']}" if item["fail_reason"] else ""
        print(
            f"      {item['resource_name']:<14} {item['status']:<11} "
            f"{item['progress'] or 0:>5.0f} %  {size}{failure}"
        )
    if message["error"]:
        error = message["error"]
        print(f"      error {error['category']}: {error['message']}")


def print_digest(message: dict[str, Any]) -> None:
    """The digest as an operator reads it: totals, a line per plan, the breaches."""
    period = message["period"]
    print(f"      period {period['from']} .. {period['to']}")
    print("      totals " + ", ".join(f"{k} {v}" for k, v in message["totals"].items()))
    for plan in message["plans"]:
        target = plan.get("plan_id") or plan.get("vault_id")
        success = plan["last_success_at"] or "never"
        print(f"      {plan['backend']:4} {plan['name'] or target:22} runs {plan['runs']}"
              f"  last {plan['last_outcome']:9}  last success {success}")  # fmt: skip
        for failure in plan["failures"]:
            print(f"           {failure['time']} {failure['category']}: {failure['message']}")
    if message["plans_omitted"]:
        print(f"      ... and {message['plans_omitted']} more plans")
    for breach in message["rpo_breaches"]:
        name = breach["name"] or breach.get("plan_id") or breach.get("vault_id")
        print(f"      RPO breach: {breach['backend']} {name}: {breach['reason']}")


if __name__ == "__main__":
    raise SystemExit(main())

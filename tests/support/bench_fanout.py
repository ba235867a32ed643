"""Fan-out: 1,000 plans through the plan queue, on what Lambda runs (the packaged artifact on
Python 3.13 with boto3 only) against the loopback stand-in and moto's server.

* throughput: the packaged scheduled function queues a firing of 1,000 plans; as many packaged
  plan workers as ``PlanWorkerConcurrency`` (5) drain the queue as Lambda's SQS event source
  runs them. The stand-in answers each POST in 100 ms and throttles above a rate (429
  ``APIGW.0308``, ``Retry-After: 1``). Reported: wall time against the ideal at that
  concurrency and rate, the POSTs it accepted (exactly 1,000), the notifications (1,000) and
  the duplicates (0).
* CPU: the worker's CPU time per plan, in a warm container (after its first batch), against a
  bare SQS worker that makes the same calls by hand (receive, the idempotency records of the
  backup and of its notice, the token, the POST, the tracking record, the publish, the
  history's entry, delete),
  both without throttling. Budget 1.1x.

    make bench            # runs this after the cold/warm benchmark
    python -m support.bench_fanout --plans 1000 --workers 5 --rate 100
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from typing import Any

from support.artifacts import BUILD
from support.bench import _BARE_CALLS, _BARE_LOGIN, CONTEXT, LAYER, RUNTIME_PYTHON
from support.local_aws import LocalAws
from support.standin import CsbsStandIn

CPU_BUDGET = 1.1
ANSWER_SECONDS = 0.1
MAX_CONCURRENCY = 4  # the functions' default: plans at once in one invocation

# The artifact's folders on the path (argv[1]), the context.
_START = (
    """
import json, os, sys, time
sys.path[:0] = sys.argv[1].split(os.pathsep)
"""
    + CONTEXT
)
_LOOP = (
    _START
    + """
import boto3
sqs = boto3.client("sqs")
url = os.environ["PLAN_QUEUE_URL"]
def drain(run):
    # Lambda's SQS event source: batches of 10; an item failure stays, the rest are deleted.
    done = idle = warm = 0
    cpu = None  # counted from the end of the first batch: a warm container's cost per plan
    while idle < 2:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                       MessageSystemAttributeNames=["All"]).get("Messages", [])
        if not messages:  # done, or the rest is in flight or held back: look again soon
            counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
            idle += all(v == "0" for v in counts["Attributes"].values())
            time.sleep(0.1)
            continue
        idle = 0
        records = [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"], "attributes": m["Attributes"]} for m in messages]
        failed = {f["itemIdentifier"] for f in run({"Records": records})["batchItemFailures"]}
        for m in messages:
            if m["MessageId"] not in failed:
                try:
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
                except sqs.exceptions.ReceiptHandleIsInvalid:
                    pass  # delivered again meanwhile (real SQS takes the stale handle)
                done += 1
        if cpu is None:
            cpu, warm = time.process_time(), done
    used = time.process_time() - cpu if cpu is not None else 0.0
    print(json.dumps({"plans": done, "warm_plans": done - warm, "warm_cpu": used}))
"""
)
WORKER = (
    _LOOP
    + """
handler = __import__("plan_worker").handler
drain(lambda event: handler(event, Context()))
"""
)
# The bare worker: BARE's clients and once-per-key records, its login, then each message by
# hand, one after the other (a throttled POST waits and is sent again).
BARE_WORKER = (
    _LOOP
    + "import hashlib, requests\n"
    + _BARE_CALLS
    + _BARE_LOGIN
    + """
tracking = os.environ["TRACKING_TABLE"]
_once = once
def once(key, step):
    try:
        return _once(key, step)
    except dynamodb.exceptions.ConditionalCheckFailedException:
        return None  # SQS delivered it twice: the other delivery does it
def run(event):
    for record in event["Records"]:
        message = json.loads(record["body"])
        plan_id = message["plan"]["plan_id"]
        if "token" not in cache:
            login()
        def post():
            secret = cache["secret"]
            url = (f"{secret['csbs_endpoint']}/v1/{secret['project_id']}/providers/"
                   "fc4d5750-22e7-4798-8a46-f48f62c4c1da/checkpoints")
            while True:
                answer = http.post(url, json={"checkpoint": {"plan_id": plan_id,
                                   "parameters": {}}}, headers={"X-Auth-Token": cache["token"]},
                                   timeout=(3, 20))
                if answer.status_code != 429:
                    break
                time.sleep(float(answer.headers.get("Retry-After", "1")))
            checkpoint = answer.json()["checkpoint"]
            now = time.time()
            dynamodb.put_item(TableName=tracking, Item={
                "checkpoint_id": {"S": checkpoint["id"]}, "state": {"S": "pending"},
                "queue": {"S": "pending"}, "polled_at": {"N": str(now)},
                "polls": {"N": "0"}, "registered_at": {"N": str(now)},
                "deadline_at": {"N": str(now + 28800)}, "backend": {"S": "csbs"},
                "target_id": {"S": plan_id}, "started": {"S": json.dumps(message["trigger"])},
                "expires_at": {"N": str(int(now) + 2620800)}},
                ConditionExpression="attribute_not_exists(checkpoint_id)")
            return {"outcome": "succeeded", "request": message["plan"], "checkpoint": checkpoint}
        result = once(message["key"], post)
        def tell():
            message_id = sns.publish(
                TopicArn=os.environ["NOTIFICATION_TOPIC_ARN"],
                Subject=f"CSBS backup started for plan {plan_id}",
                Message=json.dumps(result), MessageAttributes={
                    "event": {"DataType": "String", "StringValue": "started"},
                    "outcome": {"DataType": "String", "StringValue": "succeeded"},
                    "backend": {"DataType": "String", "StringValue": "csbs"},
                    "plan_id": {"DataType": "String", "StringValue": plan_id}})["MessageId"]
            now = time.time()  # the history's entry of the outcome, for the digest
            dynamodb.put_item(TableName=os.environ["HISTORY_TABLE"], Item={
                "pk": {"S": time.strftime("day#%Y-%m-%d", time.gmtime(now))},
                "sk": {"S": f"{now}#{message['notice_key']}"},
                "entry": {"S": json.dumps({"event": "started", "outcome": "succeeded",
                                           "backend": "csbs", "target_id": plan_id,
                                           "checkpoint_id": result["checkpoint"]["id"]})},
                "expires_at": {"N": str(int(now) + 3024000)}})
            return message_id
        once(message["notice_key"], tell)
    return {"batchItemFailures": []}
drain(run)
"""
)
ENQUEUE = (
    _START
    + """
result = __import__("scheduled_backup").handler(json.loads(sys.argv[2]), Context())
print(json.dumps(result["counts"]))
"""
)


def _python(script: str, folder: str, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    path = os.pathsep.join([str(BUILD / folder), str(LAYER)])
    return subprocess.Popen(
        [str(RUNTIME_PYTHON), "-s", "-P", "-c", script, path, *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=BUILD,
    )  # fmt: skip


def _report(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = process.communicate(timeout=1800)
    if process.returncode != 0:
        raise RuntimeError(err[-3000:])
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def fan_out(
    env: dict[str, str], plans: int, workers: int, script: str, firing: int
) -> tuple[float, list[dict[str, Any]]]:
    """One firing of ``plans`` queued by the packaged function, drained by ``workers``
    processes running ``script``: the wall time of the draining and each worker's report."""
    event = {"plans": [{"plan_id": f"fan-{index:04d}"} for index in range(plans)],
             "schedule_arn": "arn:aws:scheduler:eu-central-1:123456789012:schedule/default/fan",
             "scheduled_time": f"2026-12-{firing:02d}T02:00:00Z"}  # fmt: skip
    counts = _report(_python(ENQUEUE, "ScheduledBackupFunction", env, json.dumps(event)))
    assert counts == {"plans": plans, "queued": plans, "rejected": 0}, counts
    began = time.perf_counter()
    running = [_python(script, "PlanWorkerFunction", env) for _ in range(workers)]
    reports = [_report(process) for process in running]
    wall = time.perf_counter() - began
    print(f"  (firing {firing}: {sum(r['plans'] for r in reports)} plans in {wall:.1f} s)",
          flush=True)  # fmt: skip
    return wall, reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--plans", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=5, help="PlanWorkerConcurrency")
    parser.add_argument("--rate", type=float, default=6.0,
                        help="POSTs a second the stand-in takes")  # fmt: skip
    args = parser.parse_args(argv)
    if not RUNTIME_PYTHON.exists() or not (BUILD / "PlanWorkerFunction").is_dir():
        print("no packaged artifact or python3.13 runtime: run make package (README, Deploy)")
        return 2

    with CsbsStandIn() as standin, LocalAws() as aws:
        for index in range(args.plans):
            standin.add_plan(f"fan-{index:04d}", f"fan-{index:04d}", {f"vm-{index:04d}": "vm"})
        standin.answer_delay_seconds = ANSWER_SECONDS
        topic_arn, inbox = aws.topic_with_inbox("csbs-trigger-bench-fanout")
        env = {
            **{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
            **aws.env(),
            "CSBS_SECRET_ID": aws.create_secret("csbs-trigger/bench", standin.cloud_secret()),
            "NOTIFICATION_TOPIC_ARN": topic_arn,
            "IDEMPOTENCY_TABLE": aws.idempotency_table(),
            "TRACKING_TABLE": aws.tracking_table(),
            "LOGIN_REFUSAL_TABLE": aws.login_refusal_table(),
            "HISTORY_TABLE": aws.history_table(),
            "PLAN_QUEUE_URL": aws.plan_queue(),
            "POWERTOOLS_LOG_LEVEL": "ERROR",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "PYTHONDONTWRITEBYTECODE": "1",
        }

        def posts() -> tuple[int, int]:
            calls = [c for c in standin.calls("csbs") if c.method == "POST"]
            return len(calls), len(standin.checkpoints)

        # 1. throughput under the gateway's limit
        standin.rate_limit_per_second = args.rate
        wall, reports = fan_out(env, args.plans, args.workers, WORKER, firing=1)
        assert sum(report["plans"] for report in reports) >= args.plans  # SQS: at least once
        sent, accepted = posts()
        told = inbox.drain()
        plan_ids = [d.attributes.get("plan_id") for d in told]
        duplicates = accepted - len(set(c.plan_id for c in standin.checkpoints.values()))
        ideal = max(args.plans / args.rate,
                    args.plans * ANSWER_SECONDS / (args.workers * MAX_CONCURRENCY))  # fmt: skip

        # 2. CPU per plan, without throttling: the worker, then the bare worker
        standin.rate_limit_per_second = None
        cpu: dict[str, float] = {}
        walls: dict[str, float] = {}
        for side, script, firing in (("function", WORKER, 2), ("bare", BARE_WORKER, 3)):
            walls[side], side_reports = fan_out(env, args.plans, args.workers, script, firing)
            assert sum(r["plans"] for r in side_reports) >= args.plans  # SQS: at least once
            warm_plans = sum(r["warm_plans"] for r in side_reports)
            cpu[side] = sum(r["warm_cpu"] for r in side_reports) / warm_plans
            inbox.drain()

    ratio = cpu["function"] / cpu["bare"]
    print(f"fan-out: {args.plans} plans, {args.workers} plan workers of {MAX_CONCURRENCY} plans"
          f" each, the stand-in answering in {ANSWER_SECONDS * 1000:.0f} ms and taking"
          f" {args.rate:.0f} POSTs a second (429 above)")  # fmt: skip
    print(f"  wall time to drain the queue  {wall:6.1f} s (ideal {ideal:.1f} s: "
          f"{wall / ideal:.2f}x)")  # fmt: skip
    print(f"  without the limit             {walls['function']:6.1f} s (bare workers "
          f"{walls['bare']:.1f} s: the local AWS's pace)")  # fmt: skip
    print(f"  POSTs accepted                {accepted} (of {sent} sent: "
          f"{sent - accepted} throttled and sent again)")  # fmt: skip
    print(f"  notifications                 {len(told)} ({len(set(plan_ids))} plans)")
    print(f"  duplicates                    {duplicates}")
    print(f"  worker CPU per plan           function {cpu['function'] * 1000:.1f} ms, "
          f"bare {cpu['bare'] * 1000:.1f} ms: {ratio:.2f}x (budget {CPU_BUDGET})")  # fmt: skip
    ok = accepted == args.plans and len(told) == args.plans and duplicates == 0
    ok = ok and len(set(plan_ids)) == args.plans and ratio <= CPU_BUDGET
    print("budgets met" if ok else "BUDGET EXCEEDED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Cold-start, warm-invocation and memory figures of the scheduled-backup function.

All against the same loopback stand-ins, in one run:

* cold: each sample is a fresh interpreter (a cold Lambda container). The function's cold path
  (import the handler module, first invocation) is set against a bare script that imports
  boto3 and requests and makes the same calls by hand: read the secret, get a token, POST the
  checkpoint, publish to SNS. The function also keeps its two idempotency records (a DynamoDB
  client, four writes) that the bare script skips: the ratio is the conservative one.
  Budget: ratio <= 1.3.
* warm: after one invocation, the time per further invocation (secret and token cached: one
  POST, one publish, each inside an idempotency record) against a bare loop making the same
  HTTP and AWS calls with requests and boto3 directly. Budget: ratio <= 1.15.

    make bench            # or: python -m support.bench --runs 9
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
from importlib import metadata

from support.local_aws import LocalAws
from support.local_run import ROOT, SAMPLE_PLANS
from support.standin import CsbsStandIn

COLD_BUDGET = 1.3
WARM_BUDGET = 1.15
WARM_CALLS = 150
EVENT = json.loads((ROOT / "events" / "schedule.json").read_text())

# Both scripts start their clock after the interpreter is up and the context object is made.
_PRELUDE = """
import json, sys, time
from support.lambda_context import FakeLambdaContext
context = FakeLambdaContext()
event = json.loads(sys.argv[1])
started = time.perf_counter()
"""
_REPORT = """
elapsed = time.perf_counter() - started
# VmHWM, unlike ru_maxrss, starts afresh at exec: it is this interpreter's own peak.
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"seconds": elapsed, "max_rss_kib": int(peak.split()[1])}))
"""
HANDLER_SCRIPT = (
    _PRELUDE
    + """
import scheduled_backup
result = scheduled_backup.handler(event, context)
assert result["outcome"] == "succeeded", result
"""
    + _REPORT
)
BARE_SCRIPT = (
    _PRELUDE
    + """
import os
import boto3, requests
secretsmanager, sns = boto3.client("secretsmanager"), boto3.client("sns")
answer = secretsmanager.get_secret_value(SecretId=os.environ["CSBS_SECRET_ID"])
secret = json.loads(answer["SecretString"])
auth = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
    "name": secret["username"], "password": secret["password"],
    "domain": {"name": secret["user_domain_name"]}}}},
    "scope": {"project": {"id": secret["project_id"]}}}}
answer = requests.post(secret["auth_url"] + "/auth/tokens?nocatalog", json=auth, timeout=(3, 20))
token = answer.headers["X-Subject-Token"]
url = (secret["csbs_endpoint"] + "/v1/" + secret["project_id"]
       + "/providers/fc4d5750-22e7-4798-8a46-f48f62c4c1da/checkpoints")
body = {"checkpoint": {"plan_id": event["plan_id"], "parameters": {
    "auto_trigger": event["auto_trigger"], "resources": event["resources"]}}}
answer = requests.post(url, json=body, headers={"X-Auth-Token": token}, timeout=(3, 20))
assert answer.status_code == 200, answer.text
sns.publish(TopicArn=os.environ["NOTIFICATION_TOPIC_ARN"], Subject="CSBS backup started",
            Message=json.dumps(answer.json()))
"""
    + _REPORT
)


# What an idempotency record costs the bare scripts: a conditional put, the step, an update.
_RECORDS = """
dynamodb, table = boto3.client("dynamodb"), os.environ["IDEMPOTENCY_TABLE"]

def once(key, step):
    dynamodb.put_item(TableName=table, ConditionExpression="attribute_not_exists(id)", Item={
        "id": {"S": key}, "status": {"S": "INPROGRESS"},
        "expiration": {"N": str(int(time.time()) + 86400)}})
    result = step()
    dynamodb.update_item(TableName=table, Key={"id": {"S": key}},
        UpdateExpression="SET #s = :s, #d = :d",
        ExpressionAttributeNames={"#s": "status", "#d": "data"},
        ExpressionAttributeValues={":s": {"S": "COMPLETED"}, ":d": {"S": json.dumps(result)}})
    return result

def backup_once(key, http):
    # The function's two records: execute (the POST) and publish.
    def post():
        answer = http.post(url, json=body, headers={"X-Auth-Token": token}, timeout=(3, 20))
        assert answer.status_code == 200, answer.text
        return answer.json()
    checkpoint = once(key + "#execute", post)
    once(key + "#publish", lambda: sns.publish(TopicArn=os.environ["NOTIFICATION_TOPIC_ARN"],
         Subject="CSBS backup started", Message=json.dumps(checkpoint))["MessageId"])
"""
# The bare cold path again, with the function's two idempotency records around its calls.
BARE_WITH_RECORDS_SCRIPT = (
    BARE_SCRIPT.split("\nanswer = requests.post(url")[0]
    + _RECORDS
    + """
backup_once(f"bare:{event['scheduled_time']}", requests)
"""
    + _REPORT
)

# Warm loops: the median time of one invocation once everything is cached.
_WARM_REPORT = """
import statistics
print(json.dumps({"seconds": statistics.median(samples)}))
"""
WARM_HANDLER_SCRIPT = (
    _PRELUDE
    + """
import scheduled_backup
scheduled_backup.handler(event, context)
samples = []
for number in range(int(sys.argv[2])):
    when = event["scheduled_time"].replace("02:00:00Z", f"02:00:00.{number}Z")
    firing = {**event, "scheduled_time": when}
    started = time.perf_counter()
    scheduled_backup.handler(firing, FakeLambdaContext())
    samples.append(time.perf_counter() - started)
"""
    + _WARM_REPORT
)
WARM_BARE_SCRIPT = (
    BARE_SCRIPT.split("\nelapsed =")[0]
    + _RECORDS
    + """
samples = []
session = requests.Session()
for number in range(int(sys.argv[2])):
    started = time.perf_counter()
    backup_once(f"bare:{event['scheduled_time']}.{number}", session)
    samples.append(time.perf_counter() - started)
"""
    + _WARM_REPORT
)


_firings = itertools.count()


def run(script: str, env: dict[str, str], *extra: str) -> dict[str, float]:
    # Each run is a new schedule firing: a repeated one would be replayed, not executed.
    event = {**EVENT, "scheduled_time": f"2026-11-{next(_firings) + 1:02d}T02:00:00Z"}
    completed = subprocess.run(
        [sys.executable, "-c", script, json.dumps(event), *extra],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def layer_size_bytes() -> int:
    """Installed size of the layer's distributions here (the arm64 build differs slightly)."""
    requirements = (ROOT / "layers/csbs_trigger/requirements.txt").read_text().splitlines()
    names = [line.split("==")[0] for line in requirements if "==" in line]
    total = sum(
        file.locate().stat().st_size
        for name in names
        for file in metadata.distribution(name).files or []
        if file.locate().is_file()
    )
    package = ROOT / "layers/csbs_trigger/csbs_trigger"
    return total + sum(path.stat().st_size for path in package.rglob("*.py"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7, help="cold starts of each kind")
    args = parser.parse_args(argv)

    with CsbsStandIn() as standin, LocalAws() as aws:
        for plan_id, (name, servers) in SAMPLE_PLANS.items():
            standin.add_plan(plan_id, name, servers)
        topic_arn, _ = aws.topic_with_inbox("csbs-trigger-bench")
        env = {
            **os.environ,
            **aws.env(),
            "CSBS_SECRET_ID": aws.create_secret("csbs-trigger/bench", standin.cloud_secret()),
            "NOTIFICATION_TOPIC_ARN": topic_arn,
            "IDEMPOTENCY_TABLE": aws.idempotency_table(),
            "PYTHONPATH": os.pathsep.join(
                str(ROOT / part)
                for part in ("layers/csbs_trigger", "functions/scheduled_backup", "tests")
            ),
            "PYTHONDONTWRITEBYTECODE": "",
        }
        run(HANDLER_SCRIPT, env)  # warm the file system cache and write .pyc files for both
        run(BARE_SCRIPT, env)
        run(BARE_WITH_RECORDS_SCRIPT, env)
        handler, bare, bare_records, warm_handler, warm_bare = [], [], [], [], []
        for _ in range(args.runs):  # interleaved, so drift on the machine hits all alike
            handler.append(run(HANDLER_SCRIPT, env))
            bare.append(run(BARE_SCRIPT, env))
            bare_records.append(run(BARE_WITH_RECORDS_SCRIPT, env))
        for _ in range(3):
            warm_handler.append(run(WARM_HANDLER_SCRIPT, env, str(WARM_CALLS))["seconds"])
            warm_bare.append(run(WARM_BARE_SCRIPT, env, str(WARM_CALLS))["seconds"])

    handler_s = statistics.median(sample["seconds"] for sample in handler)
    bare_s = statistics.median(sample["seconds"] for sample in bare)
    ratio = handler_s / bare_s
    handler_rss = max(sample["max_rss_kib"] for sample in handler) / 1024
    bare_rss = max(sample["max_rss_kib"] for sample in bare) / 1024
    print(f"cold start, median of {args.runs} fresh interpreters (import + first invocation):")
    print(f"  function:         {handler_s * 1000:7.1f} ms   peak RSS {handler_rss:6.1f} MiB")
    print(f"  bare boto3+requests: {bare_s * 1000:4.1f} ms   peak RSS {bare_rss:6.1f} MiB")
    print(f"  ratio:            {ratio:7.2f}   (budget {COLD_BUDGET})")
    records_s = statistics.median(sample["seconds"] for sample in bare_records)
    print(
        f"  bare + the same 2 idempotency records: {records_s * 1000:.1f} ms,"
        f" like-for-like ratio {handler_s / records_s:.2f}"
    )
    warm_s, warm_bare_s = statistics.median(warm_handler), statistics.median(warm_bare)
    warm_ratio = warm_s / warm_bare_s
    print(f"warm invocation, median of 3 x {WARM_CALLS} (secret and token cached, same calls):")
    print(f"  function:         {warm_s * 1000:7.2f} ms")
    print(f"  bare boto3+requests: {warm_bare_s * 1000:4.2f} ms")
    print(f"  ratio:            {warm_ratio:7.2f}   (budget {WARM_BUDGET})")
    print(f"layer contents installed here: {layer_size_bytes() / 1e6:.1f} MB (boto3 excluded)")
    return 0 if ratio <= COLD_BUDGET and warm_ratio <= WARM_BUDGET else 1


if __name__ == "__main__":
    raise SystemExit(main())

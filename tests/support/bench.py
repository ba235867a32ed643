"""What a cold and a warm invocation cost, measured on what Lambda runs: the packaged artifact
(`make package`) on Python 3.13 with boto3 only, all three functions, against the loopback stand-ins
and moto's server (which run here, outside the measured processes).

* cold: each sample is a fresh interpreter that writes no bytecode (a new container): CPU time
  (user + sys) of importing the handler, and of import plus first invocation, and peak RSS.
  Baseline in the same run, alternating with it: a bare function that imports boto3 (the
  runtime's, with its bytecode) and requests (from the packaged layer) and makes the same calls
  by hand — secret, token, POST, publish (a message of what ran and what CSBS answered, with
  the attributes subscribers filter on), and the two idempotency records written with the same
  DynamoDB requests a once-per-key protocol makes (Powertools' shape). Each function sample is
  paired with the bare one next to it, and a ratio is the median of the pairs' ratios (a burst
  of load on the machine lands on both of a pair). Budget: the function's cold import CPU at
  most 1.2x the baseline's, import plus first invocation 1.1x; peak RSS below 128 MiB.
* warm: after a first invocation, the CPU time of one more (secret and token cached, kept-alive
  connections, as Lambda's clients keep them) against the bare loop doing the same, in rounds
  that alternate the two; the ratio is the median of the rounds' paired ratios. Budget 1.1x.
* the tracker: each run polls the same 10 never-finishing backups (a page of the due index, a
  claim, the item pages and a release each) against a bare loop making those requests one by
  one; same budgets.

    make bench            # or: python -m support.bench --runs 15
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from csbs_trigger.triggers.webhook_auth import standard_webhooks_signature
from support.artifacts import BUILD
from support.http_api import http_api_event
from support.local_aws import LocalAws
from support.local_run import ROOT, SAMPLE_PLANS
from support.standin import CsbsStandIn
from support.webhook_samples import SECRETS, signed_headers

RUNTIME_PYTHON = ROOT / ".venv-runtime" / "bin" / "python"
LAYER = BUILD / "CoreLayer" / "python"
COLD_IMPORT_BUDGET = 1.2
FIRST_BUDGET = 1.1  # import and the first invocation: what a cold start costs
WARM_BUDGET = 1.1
RSS_BUDGET_MIB = 128
WARM_CALLS = 50

# A Lambda-like context, for every script the benchmarks run.
CONTEXT = """
class Context:
    function_name, memory_limit_in_mb = "bench", 256
    invoked_function_arn = "arn:aws:lambda:eu-central-1:123456789012:function:bench"
    aws_request_id = "bench"
    def get_remaining_time_in_millis(self):
        return 60_000
"""
# Every script: the artifact's folders on the path, the context, CPU read at points.
_PRELUDE = (
    """
import json, os, sys, time
sys.path[:0] = sys.argv[3].split(os.pathsep)
cpu0, wall0 = time.process_time(), time.perf_counter()
"""
    + CONTEXT
    + """
event, calls = json.loads(sys.argv[1]), int(sys.argv[2])
"""
)
_REPORT = """
def warm(invoke, fresh_event):
    import gc
    gc.collect()
    gc.disable()  # a collection lands on one side or the other by chance: keep both out
    cpu, wall = [], []
    for number in range(calls):
        current = fresh_event(number)
        c, w = time.process_time(), time.perf_counter()
        invoke(current)
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return cpu, wall

cpu_import, wall_import = cpu1 - cpu0, wall1 - wall0
cpu_first, wall_first = cpu2 - cpu0, wall2 - wall0
warm_cpu, warm_wall = warm(invoke, fresh_event) if calls else ([], [])
# VmHWM, unlike the kernel's ru_maxrss, starts afresh at exec: this interpreter's own peak.
status = open("/proc/self/status").read().split("VmHWM:")[1]
print(json.dumps({
    "max_rss_mib": int(status.split()[0]) / 1024, "import_cpu": cpu_import,
    "import_wall": wall_import, "first_cpu": cpu_first, "first_wall": wall_first,
    "warm_cpu": warm_cpu, "warm_wall": warm_wall}))
"""
# The bare functions' first step: the secret, then a token from IAM (kept in ``cache``).
_BARE_LOGIN = """
cache = {}
def login():
    answer = secretsmanager.get_secret_value(SecretId=os.environ["CSBS_SECRET_ID"])
    secret = cache["secret"] = json.loads(answer["SecretString"])
    # Never a refused login again (the lockout rule): its mark is read first, by a stretched
    # digest of the login.
    import hashlib
    salt = json.dumps([secret["user_domain_name"], secret["username"]]).encode()
    digest = hashlib.pbkdf2_hmac("sha256", secret["password"].encode(), salt, 20_000)
    dynamodb.get_item(TableName=os.environ["LOGIN_REFUSAL_TABLE"], ConsistentRead=True,
                      Key={"login": {"S": hashlib.sha256(salt + digest).hexdigest()}})
    auth = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": secret["username"], "password": secret["password"],
        "domain": {"name": secret["user_domain_name"]}}}},
        "scope": {"project": {"id": secret["project_id"]}}}}
    answer = http.post(secret["auth_url"] + "/auth/tokens?nocatalog", json=auth, timeout=(3, 20))
    cache["token"] = answer.headers["X-Subject-Token"]
"""
FUNCTION = (
    _PRELUDE
    + """
handler = __import__(sys.argv[4]).handler
cpu1, wall1 = time.process_time(), time.perf_counter()
def invoke(current):
    result = handler(current, Context())
    assert result.get("outcome", result.get("statusCode", result.get("running"))) in (
        "succeeded", 201, int(os.environ.get("BENCH_PENDING", -1))), result
invoke(event)
cpu2, wall2 = time.process_time(), time.perf_counter()
fresh = json.loads(sys.argv[5])
def fresh_event(number):
    return fresh[number]
"""
    + _REPORT
)
# The bare functions' clients and once-per-key records.
_BARE_CALLS = """
clients = (boto3.client(name) for name in ("secretsmanager", "sns", "dynamodb"))
secretsmanager, sns, dynamodb = clients
table, http = os.environ["IDEMPOTENCY_TABLE"], requests.Session()

def once(key, step):
    # The requests a conditional once-per-key protocol makes (as Powertools makes them): a put
    # unless a live record exists, the step, then the result with its payload hash.
    now = time.time()
    dynamodb.put_item(TableName=table, Item={
        "id": {"S": key}, "expiration": {"N": str(int(now) + 86400)},
        "status": {"S": "INPROGRESS"},
        "in_progress_expiration": {"N": str(int(now * 1000) + 60000)},
        "validation": {"S": hashlib.md5(key.encode()).hexdigest()}},
        ConditionExpression="attribute_not_exists(#id) OR #expiry < :now OR (#status = :inprogress"
                            " AND attribute_exists(#in_progress_expiry)"
                            " AND #in_progress_expiry < :now_in_millis)",
        ExpressionAttributeNames={"#id": "id", "#expiry": "expiration",
                                  "#in_progress_expiry": "in_progress_expiration",
                                  "#status": "status"},
        ExpressionAttributeValues={":now": {"N": str(int(now))},
                                   ":now_in_millis": {"N": str(int(now * 1000))},
                                   ":inprogress": {"S": "INPROGRESS"}},
        ReturnValuesOnConditionCheckFailure="ALL_OLD")
    result = step()
    dynamodb.update_item(TableName=table, Key={"id": {"S": key}},
        UpdateExpression="SET #response_data = :response_data, #expiry = :expiry, "
                         "#status = :status, #validation_key = :validation_key",
        ExpressionAttributeNames={"#response_data": "data", "#expiry": "expiration",
                                  "#status": "status", "#validation_key": "validation"},
        ExpressionAttributeValues={":response_data": {"S": json.dumps(result, sort_keys=True)},
                                   ":expiry": {"N": str(int(now) + 86400)},
                                   ":status": {"S": "COMPLETED"},
                                   ":validation_key": {"S": hashlib.md5(key.encode()).hexdigest()}})
    return result

"""
BARE = (
    _PRELUDE
    + """
import hashlib, hmac, base64
import boto3, requests
cpu1, wall1 = time.process_time(), time.perf_counter()
"""
    + _BARE_CALLS
    + _BARE_LOGIN
    + """
def invoke(current):
    if "token" not in cache:
        login()
        if os.environ.get("WEBHOOK_SECRET_ID"):
            secretsmanager.get_secret_value(SecretId=os.environ["WEBHOOK_SECRET_ID"])
    secret = cache["secret"]
    body = current.get("body")
    if body is not None:  # a webhook: verify its signature as the function does
        headers = current["headers"]
        key = base64.b64decode(os.environ["BENCH_WEBHOOK_KEY"])
        signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body.encode()
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        assert hmac.compare_digest("v1," + expected, headers["webhook-signature"])
        current = json.loads(body)
        key_id = headers["webhook-id"]
    else:
        key_id = current["scheduled_time"]
    url = (secret["csbs_endpoint"] + "/v1/" + secret["project_id"]
           + "/providers/fc4d5750-22e7-4798-8a46-f48f62c4c1da/checkpoints")
    request = {"checkpoint": {"plan_id": current["plan_id"], "parameters": {
        "resources": current["resources"]}}}
    def post():
        answer = http.post(url, json=request, headers={"X-Auth-Token": cache["token"]},
                           timeout=(3, 20))
        assert answer.status_code == 200, answer.text
        return answer.json()
    # What any useful notification holds: what ran, for whom, and what CSBS answered; with
    # the message attributes subscribers filter on.
    def execute():
        answer = post()
        # Registered for the completion tracker, as the function does.
        dynamodb.put_item(TableName=os.environ["TRACKING_TABLE"], Item={
            "checkpoint_id": {"S": answer["checkpoint"]["id"]}, "queue": {"S": "pending"},
            "polled_at": {"N": repr(time.time())}, "started": {"S": json.dumps(request)}},
            ConditionExpression="attribute_not_exists(checkpoint_id)")
        return {"outcome": "succeeded", "request": request, "trigger": key_id, "answer": answer}
    message = once(f"bare:{key_id}#execute", execute)
    attributes = {"outcome": {"DataType": "String", "StringValue": "succeeded"},
                  "plan_id": {"DataType": "String", "StringValue": current["plan_id"]}}
    def publish():
        message_id = sns.publish(
            TopicArn=os.environ["NOTIFICATION_TOPIC_ARN"], Subject="CSBS backup started",
            Message=json.dumps(message), MessageAttributes=attributes)["MessageId"]
        # Kept in the history the digest reads, as the function keeps it.
        now = time.time()
        dynamodb.put_item(TableName=os.environ["HISTORY_TABLE"], Item={
            "pk": {"S": "day#" + time.strftime("%Y-%m-%d", time.gmtime(now))},
            "sk": {"S": f"{now}#{key_id}"}, "expires_at": {"N": str(int(now) + 35 * 86400)},
            "entry": {"S": json.dumps({"id": key_id, "at": now, "outcome": "succeeded",
                                       "plan": current["plan_id"]})}})
        return message_id
    once(f"bare:{key_id}#publish", publish)

invoke(event)
cpu2, wall2 = time.process_time(), time.perf_counter()
fresh = json.loads(sys.argv[5])
def fresh_event(number):
    return fresh[number]
"""
    + _REPORT
)

# The completion tracker by hand: the same DynamoDB and CSBS requests, one checkpoint at a time
# (page through the due index; claim, list the items until an empty page, release each).
BARE_TRACKER = (
    _PRELUDE
    + """
import boto3, requests
cpu1, wall1 = time.process_time(), time.perf_counter()
secretsmanager, dynamodb = boto3.client("secretsmanager"), boto3.client("dynamodb")
table, http = os.environ["TRACKING_TABLE"], requests.Session()
"""
    + _BARE_LOGIN
    + """
def invoke(current):
    if "token" not in cache:
        login()
    secret, now = cache["secret"], time.time()
    url = secret["csbs_endpoint"] + "/v1/" + secret["project_id"] + "/checkpoint_items"
    page = dynamodb.query(TableName=table, IndexName="due",
        KeyConditionExpression="#q = :p AND polled_at <= :now",
        ExpressionAttributeNames={"#q": "queue"},
        ExpressionAttributeValues={":p": {"S": "pending"}, ":now": {"N": repr(now)}}, Limit=50)
    for item in page["Items"]:
        key = {"checkpoint_id": item["checkpoint_id"]}
        dynamodb.update_item(TableName=table, Key=key,
            UpdateExpression="SET polled_at = :now, claim = :c, lease_until = :l ADD polls :one",
            ConditionExpression="polled_at = :seen",
            ExpressionAttributeValues={":now": {"N": repr(time.time())}, ":c": {"S": "bare"},
                ":l": {"N": repr(now + 60)}, ":one": {"N": "1"}, ":seen": item["polled_at"]})
        query, items = {"checkpoint_id": item["checkpoint_id"]["S"], "limit": "100"}, []
        while True:
            answer = http.get(url, params=query, headers={"X-Auth-Token": cache["token"]},
                              timeout=(3, 20))
            listed = answer.json()["checkpoint_items"]
            if not listed:
                break
            items += listed
            query["marker"] = listed[-1]["id"]
        statuses = [json.loads(i["extend_info"])["progress"] for i in items]
        dynamodb.update_item(TableName=table, Key=key, UpdateExpression=
            "SET progress = :p REMOVE lease_until", ConditionExpression="claim = :c",
            ExpressionAttributeValues={":p": {"S": json.dumps(statuses)}, ":c": {"S": "bare"}})

invoke(event)
cpu2, wall2 = time.process_time(), time.perf_counter()
def fresh_event(number):
    return {}
"""
    + _REPORT
)
# Backups the tracker follows in every sample: they never finish, so every run polls them all.
PENDING_BACKUPS = 10

_firings = itertools.count()


def scheduled_event() -> dict[str, Any]:
    """A new schedule firing each time: a repeated one would be replayed, not executed."""
    event = json.loads((ROOT / "events" / "schedule.json").read_text())
    moment = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=next(_firings))
    return {**event, "scheduled_time": moment.strftime("%Y-%m-%dT%H:%M:%SZ")}


def webhook_event() -> dict[str, Any]:
    body = json.dumps({"plan_id": next(iter(SAMPLE_PLANS)), "resources": [
        next(iter(next(iter(SAMPLE_PLANS.values()))[1]))]}).encode()  # fmt: skip
    headers = signed_headers("generic", body, timestamp=int(time.time()))
    headers["webhook-id"] = f"msg_bench_{next(_firings)}"
    headers["webhook-signature"] = standard_webhooks_signature(
        SECRETS["generic"][0], headers["webhook-id"], int(headers["webhook-timestamp"]), body
    )
    return http_api_event("POST", "/webhooks/generic", headers, body)


def sample(
    script: str, folder: str, module: str, make_event: Callable[[], dict[str, Any]],
    env: dict[str, str], calls: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """One fresh interpreter; adds its whole CPU time as the kernel counted it."""
    path = os.pathsep.join([str(BUILD / folder), str(LAYER)])
    fresh = [make_event() for _ in range(calls)]
    process = subprocess.Popen(
        [str(RUNTIME_PYTHON), "-s", "-P", "-c", script, json.dumps(make_event()), str(calls),
         path, module, json.dumps(fresh)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=BUILD,
    )  # fmt: skip
    _, status, usage = os.wait4(process.pid, 0)
    out, err = process.communicate()
    if status != 0:
        raise RuntimeError(f"{module} failed:\n{err[-3000:]}")
    report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    report["process_cpu"] = usage.ru_utime + usage.ru_stime
    return report


def start_backups(env: dict[str, str], count: int) -> None:
    """``count`` backups started (and registered for tracking) by the packaged scheduled
    function, for every tracker sample to poll."""
    for _ in range(count):
        sample(FUNCTION, "ScheduledBackupFunction", "scheduled_backup", scheduled_event, env)


def paired_ratio(function: list[dict[str, Any]], bare: list[dict[str, Any]], key: str) -> float:
    """The median of the ratios of samples taken side by side."""
    return statistics.median(f[key] / b[key] for f, b in zip(function, bare, strict=True))


def spread(values: list[float], unit: float = 1000) -> str:
    return (f"median {statistics.median(values) * unit:7.1f}  "
            f"(min {min(values) * unit:.1f}, max {max(values) * unit:.1f})")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=11, help="cold starts of each kind (>= 7)")
    args = parser.parse_args(argv)
    if not RUNTIME_PYTHON.exists() or not LAYER.is_dir():
        print("no packaged artifact or python3.13 runtime: run make package (README, Deploy)")
        return 2

    with CsbsStandIn() as standin, LocalAws() as aws:
        for plan_id, (name, servers) in SAMPLE_PLANS.items():
            standin.add_plan(plan_id, name, servers)
        topic_arn, _ = aws.topic_with_inbox("csbs-trigger-bench")
        env = {
            **{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
            **aws.env(),
            "CSBS_SECRET_ID": aws.create_secret("csbs-trigger/bench", standin.cloud_secret()),
            "WEBHOOK_SECRET_ID": aws.create_secret("csbs-trigger/bench-webhooks", SECRETS),
            "BENCH_WEBHOOK_KEY": SECRETS["generic"][0].removeprefix("whsec_"),
            "NOTIFICATION_TOPIC_ARN": topic_arn,
            "IDEMPOTENCY_TABLE": aws.idempotency_table(),
            "TRACKING_TABLE": aws.tracking_table("csbs-trigger-bench-started"),
            "LOGIN_REFUSAL_TABLE": aws.login_refusal_table(),
            "HISTORY_TABLE": aws.history_table(),
            "TRACKING_POLL_INTERVAL_SECONDS": "0",
            "BENCH_PENDING": str(PENDING_BACKUPS),
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        # The tracker follows backups of its own table: the others' samples start hundreds.
        tracked = {**env, "TRACKING_TABLE": aws.tracking_table("csbs-trigger-bench-tracked")}
        standin.polls_to_finish = 10**9
        start_backups(tracked, PENDING_BACKUPS)
        kinds = {
            "scheduled": ("ScheduledBackupFunction", "scheduled_backup", scheduled_event, BARE),
            "webhook": ("WebhookFunction", "webhook", webhook_event, BARE),
            "tracker": ("CompletionTrackerFunction", "completion_tracker", dict, BARE_TRACKER),
        }
        results: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for kind, (folder, module, make_event, bare_script) in kinds.items():
            env = tracked if kind == "tracker" else env
            cold: dict[str, list[dict[str, Any]]] = {"function": [], "bare": []}
            warm: dict[str, list[dict[str, Any]]] = {"function": [], "bare": []}
            for _ in range(args.runs):  # alternating, so drift on the machine hits both alike
                cold["function"].append(sample(FUNCTION, folder, module, make_event, env))
                cold["bare"].append(sample(bare_script, folder, module, make_event, env))
            calls = WARM_CALLS if kind != "tracker" else WARM_CALLS // 5
            for _ in range(args.runs):
                for side, script in (("function", FUNCTION), ("bare", bare_script)):
                    warm[side].append(sample(script, folder, module, make_event, env, calls))
            results[kind] = {**{f"cold_{k}": v for k, v in cold.items()},
                             **{f"warm_{k}": v for k, v in warm.items()}}  # fmt: skip

    ok = True
    print(f"Python 3.13 (packaged artifact, {RUNTIME_PYTHON.parent.parent.name}), "
          f"{args.runs} cold starts each, alternating; times in ms")  # fmt: skip
    for kind, result in results.items():
        function, bare = result["cold_function"], result["cold_bare"]
        # Each cold start is paired with the bare one that ran next to it, as the warm rounds
        # are: a burst of load on the machine lands on both of a pair, and the median of the
        # pairs' ratios sets it aside.
        import_ratio = paired_ratio(function, bare, "import_cpu")
        first_ratio = paired_ratio(function, bare, "first_cpu")
        of_medians = statistics.median(s["first_cpu"] for s in function) / statistics.median(
            s["first_cpu"] for s in bare
        )
        rss = max(s["max_rss_mib"] for s in function)
        warm_f = [v for s in result["warm_function"] for v in s["warm_cpu"]]
        warm_b = [v for s in result["warm_bare"] for v in s["warm_cpu"]]
        # The ratio of the rounds' medians, paired round by round: drift between rounds cancels.
        warm_ratio = statistics.median(
            statistics.median(f["warm_cpu"]) / statistics.median(b["warm_cpu"])
            for f, b in zip(result["warm_function"], result["warm_bare"], strict=True)
        )
        what = f" ({PENDING_BACKUPS} pending backups a run)" if kind == "tracker" else ""
        print(f"\n{kind} function{what}")
        for label, key in (("cold import CPU", "import_cpu"), ("cold import wall", "import_wall"),
                           ("import + 1st invocation CPU", "first_cpu"),
                           ("import + 1st invocation wall", "first_wall"),
                           ("whole process CPU (kernel)", "process_cpu")):  # fmt: skip
            print(f"  {label:30} function {spread([s[key] for s in function])}")
            print(f"  {'':30} bare     {spread([s[key] for s in bare])}")
        print(f"  {'warm invocation CPU':30} function {spread(warm_f)}")
        print(f"  {'':30} bare     {spread(warm_b)}")
        warm_wall_f = [v for s in result["warm_function"] for v in s["warm_wall"]]
        warm_wall_b = [v for s in result["warm_bare"] for v in s["warm_wall"]]
        print(f"  {'warm invocation wall':30} function {spread(warm_wall_f)}")
        print(f"  {'':30} bare     {spread(warm_wall_b)}")
        bare_rss = max(s["max_rss_mib"] for s in bare)
        print(f"  peak RSS: function {rss:.1f} MiB, bare {bare_rss:.1f} MiB "
              f"(budget {RSS_BUDGET_MIB})")  # fmt: skip
        print(f"  cold import CPU ratio {import_ratio:.2f} (budget {COLD_IMPORT_BUDGET}), "
              f"import + 1st invocation CPU ratio {first_ratio:.2f} (budget {FIRST_BUDGET}; "
              f"ratio of the medians {of_medians:.2f}), "
              f"warm CPU ratio {warm_ratio:.2f} (budget {WARM_BUDGET})")  # fmt: skip
        ok = ok and import_ratio <= COLD_IMPORT_BUDGET and warm_ratio <= WARM_BUDGET
        ok = ok and first_ratio <= FIRST_BUDGET
        ok = ok and rss < RSS_BUDGET_MIB
    print("\nbudgets met" if ok else "\nBUDGET EXCEEDED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

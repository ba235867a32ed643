"""What ships, run as Lambda runs it: the artifact `sam build` made (make package), on Python
3.13 with boto3 and nothing else, from a folder nothing may write to (no bytecode written), each
handler of template.yaml imported and invoked once against the stand-ins and local AWS.

Without python3.13 this test cannot run: it fails in CI (CI=true) and says why elsewhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import ISSUE, ROOT, Deployment, WriteBack, read_event
from test_scale_out import FIRING, many_plans
from test_webhooks import PLAN_A, generic_event

from support.artifacts import BUILD, Artifact, artifacts

RUNTIME_PYTHON = ROOT / ".venv-runtime" / "bin" / "python"
# Run in the runtime: the artifact's folders are the only paths besides the interpreter's own.
SCRIPT = """
import json, sys
function_dir, layer_dir, module_name, attribute, event = sys.argv[1:6]
sys.path[:0] = [function_dir, layer_dir]
assert sys.dont_write_bytecode

class Context:
    function_name = "csbs-trigger-packaged"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:eu-central-1:123456789012:function:packaged"
    aws_request_id = "packaged-smoke-test"
    def get_remaining_time_in_millis(self):
        return 60_000

handler = getattr(__import__(module_name), attribute)
result = handler(json.loads(event), Context())
from importlib.util import MAGIC_NUMBER
shipped = [m for m in list(sys.modules.values())
           if (getattr(m, "__file__", None) or "").startswith((layer_dir, function_dir))]
print(json.dumps({"result": result, "magic": MAGIC_NUMBER.hex(),
                  "cached": [m.__cached__ for m in shipped]}))
"""


def _runtime_or_fail() -> Path:
    if not RUNTIME_PYTHON.exists() or not (BUILD / "CoreLayer").is_dir():
        reason = (
            "no packaged artifact or no python3.13 runtime environment: run `make artifact` "
            "with python3.13 on PATH or in pyenv (README, Deploy)"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return RUNTIME_PYTHON


def _invoke(artifact: Artifact, event: dict[str, Any]) -> dict[str, Any]:
    python = _runtime_or_fail()
    assert artifact.handler is not None
    module_name, attribute = artifact.handler.rsplit(".", 1)
    before = sorted(BUILD.rglob("*"))
    # No user site, no script folder on the path, not the source tree's PYTHONPATH.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    answer = subprocess.run(
        [str(python), "-s", "-P", "-c", SCRIPT, str(artifact.folder),
         str(BUILD / "CoreLayer" / "python"), module_name, attribute, json.dumps(event)],
        env={**env, "PYTHONDONTWRITEBYTECODE": "1"}, cwd=BUILD, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert answer.returncode == 0, answer.stderr[-3000:]
    assert sorted(BUILD.rglob("*")) == before  # nothing was written into the artifact
    report: dict[str, Any] = json.loads(answer.stdout.strip().splitlines()[-1])
    _assert_bytecode_is_used(report["cached"], bytes.fromhex(report["magic"]))
    return report


def _assert_bytecode_is_used(cached: list[str], magic: bytes) -> None:
    """Every layer module came with a .pyc this Python trusts from a zip dated 1980: its own
    magic number and hash-based, unchecked (flags 0b01) — so nothing is compiled at cold start."""
    assert len(cached) > 50
    for path in cached:
        header = Path(path).read_bytes()[:8]
        assert header[:4] == magic, path
        assert int.from_bytes(header[4:8], "little") == 0b01, path


def _artifact(logical_id: str) -> Artifact:
    [artifact] = [a for a in artifacts() if a.logical_id == logical_id]
    return artifact


def test_packaged_scheduled_function_runs_a_plan(deployment: Deployment) -> None:
    report = _invoke(_artifact("ScheduledBackupFunction"), read_event("schedule.json"))

    assert report["result"]["outcome"] == "succeeded"
    [delivered] = deployment.notifications()
    assert delivered.message["outcome"] == "succeeded"
    assert len(deployment.standin.calls("csbs")) == 1


def test_packaged_webhook_function_answers_a_signed_delivery(deployment: Deployment) -> None:
    report = _invoke(_artifact("WebhookFunction"), generic_event({"plan_id": PLAN_A}))

    assert report["result"]["statusCode"] == 201, report["result"]
    assert len(deployment.notifications()) == 1


def test_packaged_tracker_reports_a_completion(deployment: Deployment) -> None:
    deployment.standin.polls_to_finish = 0
    deployment.invoke(read_event("schedule.json"))
    [started] = deployment.notifications()
    tracker = _artifact("CompletionTrackerFunction")

    reports = [_invoke(tracker, {}) for _ in range(2)]  # no items yet, then all available

    assert [report["result"].get("succeeded", 0) for report in reports] == [0, 1]
    [completed] = deployment.notifications()
    assert completed.message["checkpoint"]["id"] == started.message["checkpoint"]["id"]
    assert completed.attributes["event"] == "completed"


def test_packaged_plan_worker_runs_queued_plans(deployment: Deployment) -> None:
    deployment.invoke({"plans": many_plans(deployment, 21), **FIRING})
    messages = deployment.aws.client("sqs").receive_message(
        QueueUrl=deployment.plan_queue_url, MaxNumberOfMessages=10,
        MessageSystemAttributeNames=["All"],
    )["Messages"]  # fmt: skip
    event = {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"],
                          "body": m["Body"], "attributes": m["Attributes"]}
                         for m in messages]}  # fmt: skip

    report = _invoke(_artifact("PlanWorkerFunction"), event)

    assert report["result"] == {"batchItemFailures": []}
    assert len(deployment.notifications()) == len(messages)
    assert len(deployment.standin.calls("csbs")) == len(messages)


def test_packaged_digest_reports_what_the_functions_recorded(deployment: Deployment) -> None:
    deployment.standin.polls_to_finish = 0
    deployment.invoke(read_event("schedule.json"))
    deployment.track()
    deployment.track()
    deployment.notifications()

    report = _invoke(_artifact("DigestFunction"), {})

    assert report["result"]["plans"] == report["result"]["protected"] == 1
    [digest] = deployment.notifications()
    assert digest.attributes == {"event": "digest", "outcome": "ok"}
    assert digest.message["totals"]["succeeded"] == 1


def test_packaged_ticket_update_writes_a_comment(writeback: WriteBack) -> None:
    writeback.sender("jira-cloud")
    writeback.backup(ISSUE)
    messages = writeback.deployment.aws.client("sqs").receive_message(
        QueueUrl=writeback.queue_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
    )["Messages"]
    event = {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"],
                          "body": m["Body"], "attributes": m["Attributes"]}
                         for m in messages]}  # fmt: skip

    report = _invoke(_artifact("TicketUpdateFunction"), event)

    assert report["result"] == {"batchItemFailures": []}
    [comment] = writeback.tickets.issues[ISSUE]
    assert "[csbs-trigger checkpoint " in json.dumps(comment["body"])


def test_packaged_expiry_sweep_deletes_an_expired_backup(deployment: Deployment) -> None:
    deployment.standin.polls_to_finish = 1
    deployment.now = time.time() - 3 * 86400  # started three days ago, kept for one
    result = deployment.invoke({"plan_id": PLAN_A, "keep_days": 1})
    old = result["plans"][0]["checkpoint_id"]
    for _ in range(3):
        deployment.track()
    deployment.now = None
    deployment.invoke({"plan_id": PLAN_A})  # the servers' newer good backup
    for _ in range(3):
        deployment.track()
    deployment.notifications()

    first = _invoke(_artifact("ExpiryFunction"), {})
    second = _invoke(_artifact("ExpiryFunction"), {})

    assert (first["result"]["deleting"], second["result"]["deleted"]) == (1, 1)
    [told] = [n for n in deployment.notifications() if n.attributes["event"] == "expired"]
    assert told.message["checkpoint"]["id"] == old


def test_every_handler_of_the_template_is_packaged() -> None:
    _runtime_or_fail()
    handlers = [a for a in artifacts() if a.kind == "function"]
    assert {a.logical_id for a in handlers} == {
        "ScheduledBackupFunction",
        "WebhookFunction",
        "CompletionTrackerFunction",
        "PlanWorkerFunction",
        "TicketUpdateFunction",
        "ExpiryFunction",
        "DigestFunction",
    }
    for artifact in handlers:
        assert sorted(p.name for p in artifact.folder.iterdir()) == [
            "__pycache__",
            f"{artifact.handler.rsplit('.', 1)[0]}.py" if artifact.handler else "",
        ]  # the handler and its bytecode: no openapi.yaml, no requirements.txt
    layer = BUILD / "CoreLayer" / "python"
    assert not list(layer.glob("boto3*"))
    assert not list(layer.glob("botocore*"))
    assert not (layer / "requirements.txt").exists()
    wheels = [p.name for p in layer.rglob("*.so")]
    assert wheels
    assert all("aarch64" in name for name in wheels), wheels

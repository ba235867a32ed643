"""Scale-out (issue 18): plans in many projects under one stack, over HTTP against the stand-in
(IAM, CSBS, CBR) and moto."""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import plan_worker
import pytest
from conftest import Deployment
from test_completion_tracking import completions, tracked_item
from test_webhooks import generic_event

import csbs_trigger.runner
import csbs_trigger.triggers.queued
from csbs_trigger.cloud.backend import BackupRequest
from csbs_trigger.cloud.csbs import BACKEND as CSBS
from csbs_trigger.errors import ConfigError
from csbs_trigger.models import Trigger
from csbs_trigger.runner import Unit
from csbs_trigger.tracker import TrackerStopped
from csbs_trigger.triggers.queued import PlansNotQueued, QueuedPlan
from csbs_trigger.triggers.webhook_sources import SHIPPED_SOURCES as SOURCES
from csbs_trigger.triggers.webhook_sources import load_sources
from support.lambda_context import FakeLambdaContext
from support.standin import PROJECT_ID, PROVIDER_ID, Fault

OTHER_PROJECT = "0123456789abcdef0123456789abcdef"
THIRD_PROJECT = "fedcba9876543210fedcba9876543210"
PLAN_A = "62171999-3df1-42f7-9513-6f9b1bea4744"  # nightly-app-servers: two servers
PLAN_B = "6a6cda7e-7b89-4b14-8e5c-3b6821a97d2c"
VAULT = "3b5816b5-f29c-4172-9d9a-76c719a659ce"


@pytest.fixture
def projects(deployment: Deployment) -> Deployment:
    deployment.standin.projects[OTHER_PROJECT] = "eu-de_other"
    deployment.standin.projects[THIRD_PROJECT] = "eu-de_third"
    return deployment


def logins(deployment: Deployment) -> list[Any]:
    """The project each IAM login was scoped to."""
    return [call.json()["auth"]["scope"]["project"] for call in deployment.standin.calls("iam")]


# -- 1. many projects --------------------------------------------------------------------------


def test_a_plan_runs_in_the_project_it_names_with_one_login_per_project(
    projects: Deployment,
) -> None:
    plans = [{"plan_id": PLAN_A, "project_id": OTHER_PROJECT},
             {"plan_id": PLAN_B, "project_id": OTHER_PROJECT},
             {"vault_id": VAULT, "project_id": THIRD_PROJECT},
             {"plan_id": PLAN_B}]  # fmt: skip

    result = projects.invoke({"plans": plans})

    assert [plan["outcome"] for plan in result["plans"]] == ["succeeded"] * 4
    posts = [c.path for c in projects.standin.calls("csbs") + projects.standin.calls("cbr")]
    assert sorted(posts) == sorted([
        f"/v1/{OTHER_PROJECT}/providers/{PROVIDER_ID}/checkpoints",
        f"/v1/{OTHER_PROJECT}/providers/{PROVIDER_ID}/checkpoints",
        f"/v3/{THIRD_PROJECT}/checkpoints",
        f"/v1/{PROJECT_ID}/providers/{PROVIDER_ID}/checkpoints",
    ])  # fmt: skip
    scopes = logins(projects)
    assert len(scopes) == 3  # one per project, not one per plan
    assert {"id": OTHER_PROJECT} in scopes
    assert {"id": THIRD_PROJECT} in scopes
    by_plan = {(n.attributes.get("plan_id") or n.attributes["vault_id"],
                n.message["request"].get("project_id")): n
               for n in projects.notifications()}  # fmt: skip
    assert set(by_plan) == {(PLAN_A, OTHER_PROJECT), (PLAN_B, OTHER_PROJECT),
                            (VAULT, THIRD_PROJECT), (PLAN_B, None)}  # fmt: skip
    assert by_plan[(VAULT, THIRD_PROJECT)].message["checkpoint"]["project_id"] == THIRD_PROJECT


@pytest.mark.parametrize("keys", ["password", "access keys"])
def test_a_backup_in_another_project_is_registered_and_polled_there(
    projects: Deployment, keys: str
) -> None:
    standin = projects.standin
    secret = standin.cloud_secret() if keys == "password" else standin.access_key_secret()
    projects.set_secret(secret)
    projects.cold_start()
    standin.polls_to_finish = 0
    result = projects.invoke({"plan_id": PLAN_A, "project_id": OTHER_PROJECT})
    checkpoint_id = result["plans"][0]["checkpoint_id"]
    projects.notifications()
    assert tracked_item(projects, checkpoint_id)["project_id"]["S"] == OTHER_PROJECT

    projects.track()
    projects.track()

    [completed] = completions(projects)
    assert completed.message["outcome"] == "succeeded"
    calls = standin.calls("csbs")
    assert {call.path.split("/")[2] for call in calls} == {OTHER_PROJECT}
    if keys == "access keys":
        assert {call.headers["X-Project-Id"] for call in calls} == {OTHER_PROJECT}
        assert standin.calls("iam") == []
    else:
        assert logins(projects) == [{"id": OTHER_PROJECT}] * len(logins(projects))


@pytest.mark.parametrize(
    "project_id",
    ["0123456789ABCDEF0123456789ABCDEF", "0123", "0123456789abcdef0123456789abcdeg", 12, "", []],
)
def test_a_project_id_that_is_no_project_id_is_an_invalid_event(
    projects: Deployment, project_id: Any
) -> None:
    projects.invoke({"plan_id": PLAN_A, "project_id": project_id})

    [failed] = projects.notifications()
    assert failed.message["error"]["category"] == "invalid_event"
    assert failed.message["error"]["message"].startswith(
        "event.project_id must be a project id of 32 hex digits, got "
    )
    assert projects.standin.calls("csbs") == projects.standin.calls("iam") == []


def test_the_same_plan_in_two_projects_is_two_backups_and_in_one_project_one(
    projects: Deployment,
) -> None:
    plans = [{"plan_id": PLAN_A, "project_id": OTHER_PROJECT}, {"plan_id": PLAN_A},
             {"plan_id": PLAN_A, "project_id": OTHER_PROJECT}]  # fmt: skip
    firing = {"plans": plans, "schedule_arn":
              "arn:aws:scheduler:eu-de-1:123456789012:schedule/default/nightly",
              "scheduled_time": "2026-12-03T02:00:00Z"}  # fmt: skip

    projects.invoke(firing)
    projects.invoke(firing)  # Scheduler's retry of the same firing

    posts = projects.standin.calls("csbs")
    assert sorted(call.path.split("/")[2] for call in posts) == sorted([OTHER_PROJECT, PROJECT_ID])
    told = projects.notifications()  # one per plan of the firing, none for the retry
    assert len(told) == 3
    assert len({n.message["checkpoint"]["id"] for n in told}) == 2


def test_a_webhook_body_never_picks_the_project(projects: Deployment) -> None:
    body = b'{"plan_id": "%s", "project_id": "%s"}' % (PLAN_A.encode(), OTHER_PROJECT.encode())

    projects.invoke_webhook(generic_event(body))

    [call] = projects.standin.calls("csbs")
    assert call.path.split("/")[2] == PROJECT_ID


# -- 2. many credentials ---------------------------------------------------------------------


def named_secret(deployment: Deployment, name: str, value: dict[str, Any] | str) -> None:
    deployment.aws.create_secret(f"csbs-trigger/clouds/{name}", value)


def test_a_plan_acts_with_the_credentials_it_names(projects: Deployment) -> None:
    standin = projects.standin
    named_secret(projects, "team-a", standin.cloud_secret(project_id=OTHER_PROJECT))
    named_secret(projects, "ops/keys", standin.access_key_secret(project_id=THIRD_PROJECT))
    plans = [{"plan_id": PLAN_A, "credentials": "team-a"},
             {"plan_id": PLAN_B, "credentials": "team-a"},
             {"vault_id": VAULT, "credentials": "ops/keys"},
             {"plan_id": PLAN_B}]  # fmt: skip

    result = projects.invoke({"plans": plans})

    assert [plan["outcome"] for plan in result["plans"]] == ["succeeded"] * 4
    scopes = sorted(json.dumps(scope) for scope in logins(projects))  # one per account
    assert scopes == sorted(json.dumps({"id": p}) for p in (OTHER_PROJECT, PROJECT_ID))
    [cbr] = standin.calls("cbr")
    assert cbr.path == f"/v3/{THIRD_PROJECT}/checkpoints"
    assert cbr.headers["Authorization"].startswith("SDK-HMAC-SHA256 ")
    told = {n.message["request"].get("credentials") for n in projects.notifications()}
    assert told == {"team-a", "ops/keys", None}


def test_a_backup_is_polled_with_the_credentials_it_was_started_with(
    projects: Deployment,
) -> None:
    standin = projects.standin
    named_secret(projects, "keys", standin.access_key_secret(project_id=OTHER_PROJECT))
    standin.polls_to_finish = 0
    result = projects.invoke({"plan_id": PLAN_A, "credentials": "keys"})
    checkpoint_id = result["plans"][0]["checkpoint_id"]
    projects.notifications()
    assert tracked_item(projects, checkpoint_id)["credentials"]["S"] == "keys"

    projects.track()
    projects.track()

    [completed] = completions(projects)
    assert completed.message["outcome"] == "succeeded"
    polls = [call for call in standin.calls("csbs") if call.method == "GET"]
    assert polls
    assert all(call.headers["X-Project-Id"] == OTHER_PROJECT for call in polls)
    assert standin.calls("iam") == []  # never the stack's own password


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        (None, "credentials team-b: the cloud secret could not be read "
               "(ResourceNotFoundException)"),
        ('{"username": "u", "password": "hunter2-secret"', "credentials team-b: the cloud secret"),
        ({"username": "u", "password": "hunter2-secret"}, "credentials team-b: the cloud secret"),
    ],
)  # fmt: skip
def test_a_named_secret_missing_or_malformed_fails_that_plan_only(
    projects: Deployment, secret: Any, message: str
) -> None:
    if secret is not None:
        named_secret(projects, "team-b", secret)

    result = projects.invoke({"plans": [{"plan_id": PLAN_A, "credentials": "team-b"},
                                        {"plan_id": PLAN_B}]})  # fmt: skip

    assert [plan["outcome"] for plan in result["plans"]] == ["failed", "succeeded"]
    failed = next(n for n in projects.notifications() if n.message["outcome"] == "failed")
    assert failed.message["error"]["category"] == "config_error"
    assert failed.message["error"]["message"].startswith(message)
    assert "hunter2" not in json.dumps(failed.message)


def test_a_refused_login_is_tried_once_per_credentials_not_once_per_plan(
    projects: Deployment,
) -> None:
    standin = projects.standin
    named_secret(projects, "team-a", standin.cloud_secret(password="not-the-password"))
    plans = [{"plan_id": PLAN_A, "credentials": "team-a"},
             {"plan_id": PLAN_B, "credentials": "team-a"},
             {"vault_id": VAULT, "credentials": "team-a"},
             {"plan_id": PLAN_B}]  # fmt: skip

    result = projects.invoke({"plans": plans})
    again = projects.invoke({"plans": plans})  # another firing, within the hour

    outcomes = [plan["outcome"] for plan in result["plans"] + again["plans"]]
    assert outcomes == ["failed", "failed", "failed", "succeeded"] * 2
    sent = [call.json()["auth"]["identity"]["password"]["user"]["password"]
            for call in standin.calls("iam")]  # fmt: skip
    assert sent.count("not-the-password") == 1  # one failed login, never one per plan
    categories = {n.message["error"]["category"] for n in projects.notifications()
                  if n.message["outcome"] == "failed"}  # fmt: skip
    assert categories == {"auth_failed"}


@pytest.mark.parametrize("value", ["", "../other", "a" * 65, "team a", 5, ["x"]])
def test_a_credentials_name_that_is_no_secret_name_is_an_invalid_event(
    projects: Deployment, value: Any
) -> None:
    projects.invoke({"plan_id": PLAN_A, "credentials": value})

    [failed] = projects.notifications()
    assert failed.message["error"]["category"] == "invalid_event"
    assert failed.message["error"]["message"].startswith(
        "event.credentials must be a secret name of 1 to 64 letters, digits, '-', '_' or '/', got "
    )


# -- a webhook source's fixed account ----------------------------------------------------------


def test_a_webhook_source_fixes_the_credentials_and_project(projects: Deployment) -> None:
    named_secret(projects, "tenant-7", projects.standin.access_key_secret())
    generic = json.loads(SOURCES.read_text())["generic"]
    fixed = {"credentials": "tenant-7", "project_id": OTHER_PROJECT}
    projects.set_env("WEBHOOK_SOURCES", json.dumps({"generic": {**generic, "fixed": fixed}}))
    body = json.dumps({"plan_id": PLAN_A, "project_id": THIRD_PROJECT,
                       "credentials": "other-tenant"}).encode()  # fmt: skip

    projects.invoke_webhook(generic_event(body))

    [call] = projects.standin.calls("csbs")
    assert call.headers["X-Project-Id"] == OTHER_PROJECT  # the source's, not the body's
    assert call.path.split("/")[2] == OTHER_PROJECT
    [started] = projects.notifications()
    assert started.message["request"]["credentials"] == "tenant-7"


@pytest.mark.parametrize(
    ("fixed", "message"),
    [
        ({"credentials": "a b"}, "webhook source generic: fixed.credentials must be"),
        ({"project_id": "x"}, "webhook source generic: fixed.project_id must be"),
        ({"plan_id": PLAN_A}, "webhook source generic: fixed must be an object of"),
        ("tenant-7", "webhook source generic: fixed must be an object of"),
    ],
)
def test_a_bad_fixed_account_is_a_config_error(
    projects: Deployment, fixed: Any, message: str
) -> None:
    generic = json.loads(SOURCES.read_text())["generic"]
    override = json.dumps({"generic": {**generic, "fixed": fixed}})
    with pytest.raises(ConfigError) as refused:
        load_sources(override)
    assert refused.value.message.startswith(message)
    projects.set_env("WEBHOOK_SOURCES", override)

    answer = projects.invoke_webhook(generic_event(b'{"plan_id": "%s"}' % PLAN_A.encode()))

    assert answer["statusCode"] == 500
    assert json.loads(answer["body"])["error"] == "config_error"
    assert projects.standin.requests == []


# -- 3. fan-out --------------------------------------------------------------------------------

FIRING = {"schedule_arn": "arn:aws:scheduler:eu-de-1:123456789012:schedule/default/estate",
          "scheduled_time": "2026-12-03T02:00:00Z"}  # fmt: skip
FIRING_ID = f"{FIRING['schedule_arn']}#{FIRING['scheduled_time']}"


def many_plans(deployment: Deployment, count: int) -> list[dict[str, Any]]:
    """``count`` distinct CSBS plans of one server each, known to the stand-in."""
    plans = []
    for index in range(count):
        plan_id = f"estate-plan-{index:04d}"
        deployment.standin.add_plan(plan_id, f"estate-{index}", {f"srv-{index:04d}": f"vm-{index}"})
        plans.append({"plan_id": plan_id})
    return plans


def test_a_firing_of_twenty_runs_inline_and_of_twenty_one_is_queued(
    deployment: Deployment,
) -> None:
    inline = deployment.invoke({"plans": many_plans(deployment, 20), **FIRING})
    assert inline["outcome"] == "succeeded"
    assert deployment.queued() == 0

    plans = many_plans(deployment, 21)
    firing = {"plans": plans, **FIRING, "scheduled_time": "2026-12-04T02:00:00Z"}
    posts_before = len(deployment.standin.calls("csbs"))
    deployment.notifications()

    queued = deployment.invoke(firing)

    assert queued["outcome"] == "queued"
    assert queued["counts"] == {"plans": 21, "queued": 21, "rejected": 0}
    assert len(deployment.standin.calls("csbs")) == posts_before  # nothing ran inline
    assert deployment.notifications() == []
    assert deployment.queued() == 21

    answers = deployment.work()

    assert [len(answer["batchItemFailures"]) for answer in answers] == [0, 0, 0]
    assert len(deployment.standin.calls("csbs")) == posts_before + 21
    told = deployment.notifications()
    assert sorted(n.attributes["plan_id"] for n in told) == sorted(p["plan_id"] for p in plans)
    assert {n.message["trigger"]["source"] for n in told} == {"schedule"}
    assert {n.message["outcome"] for n in told} == {"succeeded"}
    # each registered for tracking exactly as an inline plan
    for notification in told:
        item = tracked_item(deployment, notification.message["checkpoint"]["id"])
        assert item["target_id"]["S"] == notification.attributes["plan_id"]


def test_a_large_direct_invoke_is_queued_keyed_by_its_request_and_run_by_the_worker(
    deployment: Deployment,
) -> None:
    plans = many_plans(deployment, 21)

    assert deployment.invoke({"plans": plans})["outcome"] == "queued"
    answers = deployment.work()

    assert all(answer["batchItemFailures"] == [] for answer in answers)
    told = deployment.notifications()
    assert len(told) == 21
    assert {(n.message["trigger"]["source"], n.message["outcome"]) for n in told} == {
        ("direct", "succeeded")
    }
    assert all(n.message["idempotency_key"].startswith("direct:") for n in told)


def test_a_queued_plan_has_the_key_and_notification_of_an_inline_one(
    deployment: Deployment,
) -> None:
    """The same firing small and large: each plan's idempotency key and message agree."""
    plans = many_plans(deployment, 21)
    deployment.invoke({"plans": plans, **FIRING})
    deployment.work()
    queued = {n.attributes["plan_id"]: n.message for n in deployment.notifications()}

    inline = deployment.invoke({"plans": plans[:1], **FIRING})  # the first plan alone, inline

    [first] = inline["plans"]
    assert first["replayed"] is True  # the same key: the backup the worker started
    assert first["checkpoint_id"] == queued[plans[0]["plan_id"]]["checkpoint"]["id"]
    assert deployment.notifications() == []  # and the same notice, told once
    assert len([c for c in deployment.standin.calls("csbs") if c.method == "POST"]) == 21


def test_bad_plans_of_a_large_firing_are_told_at_once_and_the_rest_queued(
    deployment: Deployment,
) -> None:
    plans = many_plans(deployment, 22)
    plans[3] = {"plan_id": "not an id"}
    plans[9] = {"vault_id": VAULT, "incremental": "no"}

    result = deployment.invoke({"plans": plans, **FIRING})

    assert result["counts"] == {"plans": 22, "queued": 20, "rejected": 2}
    failed = deployment.notifications()
    assert [n.message["error"]["category"] for n in failed] == ["invalid_event"] * 2
    deployment.work()
    assert len(deployment.notifications()) == 20


def test_the_bad_plans_of_a_large_firing_are_told_side_by_side(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Up to 1,000 bad plans are told within the firing's invocation: MAX_CONCURRENCY at once,
    not one after the other past the function's timeout."""
    pools: list[int | None] = []

    class Recorded(ThreadPoolExecutor):
        def __init__(self, max_workers: int | None = None) -> None:
            pools.append(max_workers)
            super().__init__(max_workers=max_workers)

    monkeypatch.setattr(csbs_trigger.runner, "ThreadPoolExecutor", Recorded)
    deployment.set_env("MAX_CONCURRENCY", "3")

    result = deployment.invoke({"plans": [{"plan_id": "not an id"}] * 25, **FIRING})

    assert result["counts"] == {"plans": 25, "queued": 0, "rejected": 25}
    assert pools == [3, 3]  # the failures recorded, then published
    assert len(deployment.notifications()) == 25


def test_a_large_firing_without_its_queue_tells_every_plan_why(deployment: Deployment) -> None:
    deployment.set_env("PLAN_QUEUE_URL", None)

    result = deployment.invoke({"plans": many_plans(deployment, 21), **FIRING})

    assert result["counts"] == {"plans": 21, "queued": 0, "rejected": 21}
    told = deployment.notifications()
    assert len(told) == 21
    assert {n.message["error"]["message"] for n in told} == {
        "environment variable PLAN_QUEUE_URL is not set: a firing of more than 20 plans goes "
        "through the plan queue"
    }
    assert deployment.standin.calls("csbs") == []


def test_more_than_a_thousand_plans_is_an_invalid_firing(deployment: Deployment) -> None:
    deployment.invoke({"plans": [{"plan_id": PLAN_A}] * 1001, **FIRING})

    [failed] = deployment.notifications()
    assert failed.message["error"]["category"] == "invalid_event"
    assert "holds 1001 plans; at most 1000" in failed.message["error"]["message"]
    assert deployment.queued() == 0


def test_a_redelivered_message_and_a_firing_delivered_twice_run_each_plan_once(
    deployment: Deployment,
) -> None:
    firing = {"plans": many_plans(deployment, 25), **FIRING}
    deployment.invoke(firing)
    deployment.invoke(firing)  # Scheduler's retry: every plan queued twice
    assert deployment.queued() == 50
    sqs = deployment.aws.client("sqs")
    # one message received, run, and not deleted: SQS delivers it again
    [message] = sqs.receive_message(QueueUrl=deployment.plan_queue_url,
                                    MaxNumberOfMessages=1)["Messages"]  # fmt: skip
    event = {"Records": [{"messageId": message["MessageId"], "body": message["Body"],
                          "receiptHandle": message["ReceiptHandle"],
                          "attributes": {"ApproximateReceiveCount": "1"}}]}  # fmt: skip
    assert plan_worker.handler(event, FakeLambdaContext())["batchItemFailures"] == []
    deployment.held[message["MessageId"]] = message["ReceiptHandle"]
    deployment.time_passes()

    deployment.work()

    posts = [c for c in deployment.standin.calls("csbs") if c.method == "POST"]
    assert len(posts) == 25
    told = deployment.notifications()
    assert len(told) == 25
    assert len({n.attributes["plan_id"] for n in told}) == 25


def test_a_firing_whose_send_fails_half_way_fails_for_a_retry_that_queues_the_rest_once(
    deployment: Deployment,
) -> None:
    firing = {"plans": many_plans(deployment, 30), **FIRING}
    deployment.cold_start()
    queue = deployment.runtime.plan_queue
    assert queue is not None
    sent: list[int] = []

    def second_batch_fails(**_: Any) -> Any:
        sent.append(1)
        if len(sent) >= 2:  # every try of the second batch
            return SimpleNamespace(status_code=500), {"Error": {"Code": "InternalError"}}
        return None

    client = queue._client
    client.meta.events.register("before-call.sqs.SendMessageBatch", second_batch_fails)
    with pytest.raises(PlansNotQueued, match=r"^20 of 30 plans not queued$"):
        deployment.invoke(firing)
    client.meta.events.unregister("before-call.sqs.SendMessageBatch", second_batch_fails)
    assert deployment.queued() == 10

    assert deployment.invoke(firing)["outcome"] == "queued"  # Lambda's retry
    deployment.work()

    assert len([c for c in deployment.standin.calls("csbs") if c.method == "POST"]) == 30
    assert len(deployment.notifications()) == 30


# -- 4. the API budget -------------------------------------------------------------------------


def throttled(retry_after: str | None = None) -> Fault:
    headers = {"Retry-After": retry_after} if retry_after else {}
    body = {"error_code": "APIGW.0308", "error_msg": "The throttling threshold has been reached:"
            " policy user over ratelimit,limit:100,time:1 minute"}  # fmt: skip
    return Fault(429, body, headers)


def held_back(deployment: Deployment) -> list[int]:
    """Record the visibility the worker gives the messages it holds back."""
    queue = deployment.runtime.plan_queue
    assert queue is not None
    seconds: list[int] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        assert isinstance(params["ReceiptHandle"], str)  # the message's, as SQS gave it
        seconds.append(params["VisibilityTimeout"])

    queue._client.meta.events.register("provide-client-params.sqs.ChangeMessageVisibility", record)
    return seconds


def test_one_throttled_plan_among_ten_goes_back_as_the_gateway_asked(
    deployment: Deployment, logs: io.StringIO
) -> None:
    deployment.set_env("MAX_CONCURRENCY", "1")  # plans one after the other: whose 429 is known
    plans = many_plans(deployment, 21)
    deployment.invoke({"plans": plans, **FIRING})
    visibility = held_back(deployment)
    deployment.standin.fail_next("csbs", *[throttled("7")] * 3)  # the first plan's 3 tries

    first = deployment.work()

    assert [len(answer["batchItemFailures"]) for answer in first] == [1, 0, 0]
    assert visibility == [7]
    [back] = [json.loads(line) for line in logs.getvalue().splitlines()
              if '"plan throttled: back to the queue"' in line]  # fmt: skip
    assert (back["deliveries"], back["delay_seconds"]) == (1, 7)
    assert back["idempotency_key"].startswith(f"schedule:{FIRING_ID}:")
    assert len(deployment.notifications()) == 20  # not told failed: it comes back
    assert deployment.queued() == 1

    deployment.time_passes()
    deployment.work()

    [late] = deployment.notifications()
    assert late.message["outcome"] == "succeeded"
    assert late.message["trigger"] == {"source": "schedule", "id": FIRING_ID, "sender": None,
                                       "reference": None}  # fmt: skip
    posts = [c for c in deployment.standin.calls("csbs") if c.method == "POST"]
    assert len(posts) == 21 + 3  # 21 backups, and the 3 throttled tries
    assert deployment.queued() == 0


def test_a_plan_throttled_at_its_fifth_delivery_is_told_failed_and_leaves(
    deployment: Deployment,
) -> None:
    deployment.set_env("MAX_CONCURRENCY", "1")
    deployment.invoke({"plans": many_plans(deployment, 21), **FIRING})
    deployment.work()
    deployment.notifications()
    unit = Unit(BackupRequest(CSBS, PLAN_A), "k-throttled", "k-throttled#0")
    body = QueuedPlan(Trigger("schedule", FIRING_ID), unit).to_body()
    deployment.aws.client("sqs").send_message(QueueUrl=deployment.plan_queue_url, MessageBody=body)
    visibility = held_back(deployment)

    for delivery in range(1, 6):
        deployment.standin.fail_next("csbs", *[throttled()] * 3)
        [answer] = deployment.work()
        told = deployment.notifications()
        if delivery < 5:
            assert len(answer["batchItemFailures"]) == 1
            assert told == []
            deployment.time_passes()

    [failed] = told
    assert failed.message["error"]["category"] == "throttled"
    assert answer["batchItemFailures"] == []
    assert deployment.queued() == 0
    # Its delete lost: SQS delivers it a 6th time. The outcome was kept: told once, no POST.
    posts = len(deployment.standin.calls("csbs"))
    event = {"Records": [{"messageId": "m-6", "receiptHandle": "r-6", "body": body,
                          "attributes": {"ApproximateReceiveCount": "6"}}]}  # fmt: skip
    assert plan_worker.handler(event, FakeLambdaContext())["batchItemFailures"] == []
    assert deployment.notifications() == []
    assert len(deployment.standin.calls("csbs")) == posts
    assert len(visibility) == 4
    assert all(15 <= seconds <= 900 for seconds in visibility)  # a backoff, without Retry-After
    assert visibility[3] > visibility[0]


def test_a_bad_message_among_ten_is_told_and_leaves_the_others_run(
    deployment: Deployment,
) -> None:
    plans = many_plans(deployment, 21)
    deployment.invoke({"plans": plans, **FIRING})
    sqs = deployment.aws.client("sqs")
    for bad in ('{"v": 1, "plan": {"plan_id": "x"}}', "not json", '{"v": 2}'):
        sqs.send_message(QueueUrl=deployment.plan_queue_url, MessageBody=bad)

    answers = deployment.work()

    assert all(answer["batchItemFailures"] == [] for answer in answers)
    told = deployment.notifications()
    failed = [n for n in told if n.message["outcome"] == "failed"]
    assert len(told) == 24
    assert [n.message["error"]["category"] for n in failed] == ["invalid_event"] * 3
    assert {n.message["trigger"]["source"] for n in failed} == {"queue"}
    assert deployment.queued() == 0


def test_an_unreadable_message_delivered_three_times_is_told_once(deployment: Deployment) -> None:
    """SQS delivers at least once: a poison message is keyed by its body's digest."""
    record = {"messageId": "m-1", "receiptHandle": "r-1", "body": '{"v": 1, "plan": 7}',
              "attributes": {"ApproximateReceiveCount": "1"}, "eventSource": "aws:sqs"}  # fmt: skip

    for delivery in (1, 2, 3):
        record["attributes"] = {"ApproximateReceiveCount": str(delivery)}
        context = FakeLambdaContext(function_name="csbs-trigger-plan-worker")
        answer = plan_worker.handler({"Records": [record]}, context)
        assert answer == {"batchItemFailures": []}  # it leaves the queue

    [told] = deployment.notifications()
    assert told.message["error"]["category"] == "invalid_event"
    assert told.message["trigger"] == {"source": "queue", "id": "m-1", "sender": None,
                                       "reference": None}  # fmt: skip


def test_a_throttle_slows_the_containers_other_calls_with_the_same_credentials(
    deployment: Deployment,
) -> None:
    deployment.set_env("MAX_CONCURRENCY", "1")
    deployment.standin.fail_next("csbs", throttled("30"))

    result = deployment.invoke({"plans": [{"plan_id": PLAN_A}, {"plan_id": PLAN_B}]})

    assert [plan["outcome"] for plan in result["plans"]] == ["succeeded", "succeeded"]
    # the first plan waits 30 s for its own second try; the second plan waits what is left of
    # them before its first (the same account), instead of meeting the limit again
    assert len(deployment.sleeps) == 2
    assert deployment.sleeps[0] == 30
    assert 25 < deployment.sleeps[1] <= 30


def test_one_accounts_broken_secret_holds_back_only_its_own_backups(
    projects: Deployment, logs: io.StringIO
) -> None:
    """A deployment failure stops the tracker for that account: its other backups wait
    without a try, the others' backups are still polled and reported, and the run still
    fails, for its alarm."""
    projects.set_env("MAX_CONCURRENCY", "1")
    named_secret(projects, "team-x", projects.standin.cloud_secret(project_id=OTHER_PROJECT))
    projects.standin.polls_to_finish = 0
    broken = projects.invoke({"plan_id": PLAN_A, "credentials": "team-x"})  # polled first
    projects.invoke({"plan_id": PLAN_B, "credentials": "team-x"})
    healthy = projects.invoke({"plan_id": PLAN_B})
    projects.notifications()
    projects.aws.client("secretsmanager").delete_secret(
        SecretId="csbs-trigger/clouds/team-x", ForceDeleteWithoutRecovery=True
    )
    projects.cold_start()

    for _ in range(2):
        with pytest.raises(TrackerStopped, match=r"^config_error: credentials team-x: "):
            projects.track()

    [completed] = completions(projects)
    assert completed.message["checkpoint"]["id"] == healthy["plans"][0]["checkpoint_id"]
    assert completed.message["outcome"] == "succeeded"
    waiting = tracked_item(projects, broken["plans"][0]["checkpoint_id"])
    assert waiting["state"]["S"] == "pending"  # it waits until the secret is back
    finished = [json.loads(line) for line in logs.getvalue().splitlines()
                if '"tracker run finished"' in line]  # fmt: skip
    assert {key: finished[0].get(key) for key in ("due", "stopped", "deferred", "running")} == {
        "due": 3, "stopped": 1, "deferred": 1, "running": 1,
    }  # fmt: skip


def test_a_plan_whose_worker_breaks_comes_back_alone_and_its_error_text_is_not_logged(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, logs: io.StringIO
) -> None:
    deployment.invoke({"plans": many_plans(deployment, 21), **FIRING})
    original = csbs_trigger.triggers.queued.execute_once
    broke: list[str] = []

    def breaking_once(trigger: Any, unit: Unit, *args: Any, **options: Any) -> Any:
        if not broke:
            broke.append(unit.key or "")
            raise RuntimeError("sk=SECRETKEY0123456789 in an unforeseen error")
        return original(trigger, unit, *args, **options)

    monkeypatch.setattr(csbs_trigger.triggers.queued, "execute_once", breaking_once)

    answers = deployment.work()

    assert sum(len(answer["batchItemFailures"]) for answer in answers) == 1
    assert len(deployment.notifications()) == 20
    assert "SECRETKEY0123456789" not in logs.getvalue()
    assert '"reason":"RuntimeError"' in logs.getvalue().replace(" ", "")
    deployment.time_passes()
    deployment.work()
    [late] = deployment.notifications()
    assert late.message["idempotency_key"] == broke[0]

"""Never lock the account (issue 25.2): Open Telekom Cloud locks a user after 5 failed logins in
15 minutes. A refused login is sent at most once an hour, whatever project scope, secret, plan
or container uses it; a token request is never sent twice in one invocation."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import Deployment
from test_scale_out import OTHER_PROJECT, PLAN_A, PLAN_B, THIRD_PROJECT, VAULT, named_secret

from csbs_trigger.aws.login_refusals import TableLoginGuard
from csbs_trigger.cloud.auth import MemoryLoginGuard
from csbs_trigger.errors import Category, UpstreamError
from support.standin import PASSWORD, PROJECT_ID, Fault

MORE_PROJECTS = [f"{n:032x}" for n in range(0xA1, 0xA4)]
EVERY_PROJECT = [PROJECT_ID, OTHER_PROJECT, THIRD_PROJECT, *MORE_PROJECTS]


@pytest.fixture
def six_projects(deployment: Deployment) -> Deployment:
    for project_id in EVERY_PROJECT[1:]:
        deployment.standin.projects[project_id] = f"eu-de_{project_id[-4:]}"
    deployment.now = 1_800_000_000.0
    return deployment


def sent_passwords(deployment: Deployment) -> list[str]:
    return [call.json()["auth"]["identity"]["password"]["user"]["password"]
            for call in deployment.standin.calls("iam")]  # fmt: skip


def failures(deployment: Deployment) -> list[dict[str, Any]]:
    return [n.message["error"] for n in deployment.notifications()
            if n.message["outcome"] == "failed"]  # fmt: skip


def test_a_changed_password_is_refused_once_an_hour_however_many_projects_use_it(
    six_projects: Deployment,
) -> None:
    deployment = six_projects
    deployment.standin.password = "changed-elsewhere"
    plans = [{"plan_id": PLAN_B, "project_id": project_id} for project_id in EVERY_PROJECT]

    deployment.invoke({"plans": plans})  # six plans in six projects, side by side
    assert sent_passwords(deployment) == [PASSWORD]
    deployment.now += 3601  # the hourly retry, in a new container
    deployment.cold_start()
    deployment.invoke({"plans": plans})

    assert sent_passwords(deployment) == [PASSWORD, PASSWORD]
    assert {error["category"] for error in failures(deployment)} == {"auth_failed"}


def test_one_user_named_in_three_secrets_is_refused_once(six_projects: Deployment) -> None:
    deployment = six_projects
    for name, project_id in zip(("team-a", "team-b", "team-c"), EVERY_PROJECT, strict=False):
        named_secret(deployment, name, deployment.standin.cloud_secret(
            password="not-the-password", project_id=project_id))  # fmt: skip
    plans = [{"plan_id": PLAN_A, "credentials": "team-a"},
             {"vault_id": VAULT, "credentials": "team-b"},
             {"plan_id": PLAN_B, "credentials": "team-c"}]  # fmt: skip

    deployment.invoke({"plans": plans})
    deployment.cold_start()
    deployment.invoke({"plans": plans})

    assert sent_passwords(deployment) == ["not-the-password"]
    assert len(failures(deployment)) == 6


def test_a_login_that_timed_out_is_sent_once_per_invocation_for_every_plan_sharing_it(
    deployment: Deployment,
) -> None:
    """IAM answers the refusal after the read timeout: every plan of the firing shares the one
    attempt (a timeout), and the next invocation may try once more."""
    deployment.set_env("CSBS_READ_TIMEOUT_SECONDS", "0.2")
    late_refusal = Fault(401, {"error": {"code": 401, "message": "wrong"}}, delay_seconds=30)
    deployment.standin.fail_next("iam", late_refusal, late_refusal)
    plans = [{"plan_id": PLAN_A}, {"plan_id": PLAN_B}, {"vault_id": VAULT},
             {"plan_id": PLAN_A, "project_id": OTHER_PROJECT}]  # fmt: skip

    result = deployment.invoke({"plans": plans})

    assert len(deployment.standin.calls("iam")) == 1
    assert [plan["outcome"] for plan in result["plans"]] == ["failed"] * 4
    assert {error["category"] for error in failures(deployment)} == {"timeout"}
    deployment.invoke({"plans": plans[:1]})
    assert len(deployment.standin.calls("iam")) == 2


def test_plans_answered_from_a_remembered_refusal_carry_its_request_id_and_status(
    deployment: Deployment,
) -> None:
    deployment.now = 1_800_000_000.0
    body = {"error": {"code": 401, "message": "The request you have made requires authentication."}}
    refusal = Fault(401, body, headers={"X-Request-Id": "req-4711"})
    deployment.standin.fail_next("iam", refusal)
    plans = [{"plan_id": PLAN_A}, {"plan_id": PLAN_B}, {"vault_id": VAULT}]

    deployment.invoke({"plans": plans})
    deployment.cold_start()  # another container reads the mark from the table
    deployment.invoke({"plans": plans})

    told = failures(deployment)
    assert len(told) == 6
    assert {(e["category"], e["http_status"], e["request_id"]) for e in told} == {
        ("auth_failed", 401, "req-4711")
    }
    assert len(deployment.standin.calls("iam")) == 1


# -- the marks themselves ------------------------------------------------------------------------


def refused(status: int = 401, request_id: str | None = "req-1") -> UpstreamError:
    return UpstreamError("IAM answered HTTP 401", category=Category.AUTH_FAILED,
                         http_status=status, request_id=request_id)  # fmt: skip


def test_the_memory_of_a_refusal_lasts_an_hour() -> None:
    now = [1_800_000_000.0]
    guard = MemoryLoginGuard(lambda: now[0])
    guard.refused("login", refused())

    now[0] += 3599.9
    with pytest.raises(UpstreamError):
        guard.check("login")
    now[0] += 0.1
    guard.check("login")  # the hour is over: it may be sent once more
    guard.check("another login")


def test_after_the_hour_exactly_one_container_tries_the_login_again(deployment: Deployment) -> None:
    dynamodb = deployment.aws.client("dynamodb")
    now = [1_800_000_000.0]
    guards = [TableLoginGuard(dynamodb, "csbs-trigger-login-refusals", lambda: now[0])
              for _ in range(3)]  # fmt: skip
    guards[0].refused("login", refused())
    now[0] += 3601

    guards[1].check("login")  # the first to ask takes the hour's one try
    with pytest.raises(UpstreamError) as refusal:
        guards[2].check("login")  # the next finds it taken

    assert (refusal.value.http_status, refusal.value.request_id) == (401, "req-1")
    [mark] = dynamodb.scan(TableName="csbs-trigger-login-refusals")["Items"]
    assert float(mark["retry_at"]["N"]) == now[0] + 3600
    assert "req-1" in json.dumps(mark)

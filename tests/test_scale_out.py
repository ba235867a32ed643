"""Scale-out (issue 18): plans in many projects under one stack, over HTTP against the stand-in
(IAM, CSBS, CBR) and moto."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Deployment
from test_completion_tracking import completions, tracked_item
from test_webhooks import generic_event

from support.standin import PROJECT_ID, PROVIDER_ID

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

"""Never lock the account (issue 25.2): Open Telekom Cloud locks a user after 5 failed logins in
15 minutes. A refused login is sent at most once an hour, whatever project scope, secret, plan
or container uses it; a token request is never sent twice in one invocation."""

from __future__ import annotations

import json
from datetime import UTC, datetime
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


MARKS = "csbs-trigger-login-refusals"


def guards(deployment: Deployment, now: list[float], count: int = 2) -> list[TableLoginGuard]:
    """``count`` containers' guards on the one table, on a clock the test moves."""
    dynamodb = deployment.aws.client("dynamodb")
    return [TableLoginGuard(dynamodb, MARKS, lambda: now[0]) for _ in range(count)]


def test_a_container_that_loses_the_hourly_retry_to_another_does_not_try(
    deployment: Deployment,
) -> None:
    """Both read the mark as due; the other wins the conditional update first: this one must
    not send the login, and waits another hour."""
    now = [1_800_000_000.0]
    first, second = guards(deployment, now)
    first.refused("login", refused())
    now[0] += 3601
    dynamodb = deployment.aws.client("dynamodb")
    raced: list[bool] = []

    def meanwhile(**_: Any) -> None:
        if not raced:
            raced.append(True)
            first.check("login")  # takes the hour's try between the other's read and update

    dynamodb.meta.events.register("after-call.dynamodb.GetItem", meanwhile)
    try:
        with pytest.raises(UpstreamError) as lost:
            second.check("login")
    finally:
        dynamodb.meta.events.unregister("after-call.dynamodb.GetItem", meanwhile)

    assert raced
    again = datetime.fromtimestamp(now[0] + 3600, UTC).isoformat(timespec="seconds")
    assert f"tried once more after {again}" in lost.value.message
    assert (lost.value.http_status, lost.value.request_id) == (401, "req-1")


def test_the_hourly_retry_is_due_at_the_hour_exactly(deployment: Deployment) -> None:
    now = [1_800_000_000.0]
    first, second = guards(deployment, now)
    first.refused("login", refused())
    now[0] += 3600

    second.check("login")  # due: this one may try


def test_a_container_keeps_what_it_knows_when_the_table_fails(deployment: Deployment) -> None:
    """The table is shared memory, the container's own is the fallback: a refusal this
    container made or read stays refused when the table can no longer be read."""
    now = [1_800_000_000.0]
    maker, reader = guards(deployment, now)
    maker.refused("login", refused())
    with pytest.raises(UpstreamError):
        reader.check("login")  # read from the table
    deployment.aws.client("dynamodb").delete_table(TableName=MARKS)

    for guard in (maker, reader):
        with pytest.raises(UpstreamError, match="IAM refused the password"):
            guard.check("login")


def test_an_accepted_login_is_forgotten_by_the_container_and_the_table(
    deployment: Deployment,
) -> None:
    now = [1_800_000_000.0]
    [guard] = guards(deployment, now, 1)
    guard.refused("login", refused())
    now[0] += 3601
    guard.check("login")  # the hour's try, IAM takes it this time

    guard.accepted("login")

    assert deployment.aws.client("dynamodb").scan(TableName=MARKS)["Items"] == []
    deployment.aws.client("dynamodb").delete_table(TableName=MARKS)
    guard.check("login")  # nothing remembered here either


def test_a_mark_is_read_consistently_and_expires_a_week_after_its_retry(
    deployment: Deployment,
) -> None:
    """A refusal another container wrote a moment ago must be seen (an eventually consistent
    read may miss it); DynamoDB's TTL removes the mark a week after its retry time."""
    now = [1_800_000_000.0]
    [guard] = guards(deployment, now, 1)
    dynamodb = deployment.aws.client("dynamodb")
    reads: list[dict[str, Any]] = []
    dynamodb.meta.events.register("provide-client-params.dynamodb.GetItem",
                                  lambda params, **_: reads.append(dict(params)))  # fmt: skip
    guard.refused("login", refused())
    guard.check("another login")

    assert [read["ConsistentRead"] for read in reads] == [True]
    [mark] = dynamodb.scan(TableName=MARKS)["Items"]
    assert int(mark["expires_at"]["N"]) == int(now[0] + 3600) + 7 * 24 * 3600


def test_a_mark_without_status_or_request_id_is_still_a_refusal(deployment: Deployment) -> None:
    """A mark an earlier release wrote holds neither."""
    now = [1_800_000_000.0]
    [guard] = guards(deployment, now, 1)
    deployment.aws.client("dynamodb").put_item(TableName=MARKS, Item={
        "login": {"S": "login"}, "refused_at": {"N": str(now[0])},
        "retry_at": {"N": str(now[0] + 3600)}})  # fmt: skip

    with pytest.raises(UpstreamError) as remembered:
        guard.check("login")

    assert (remembered.value.http_status, remembered.value.request_id) == (None, None)


def test_an_unusable_table_is_logged_by_its_error_type(deployment: Deployment, logs: Any) -> None:
    """Each of the guard's four calls to the table, failing, says why in one log line; the
    container's memory decides meanwhile."""
    now = [1_800_000_000.0]
    [guard] = guards(deployment, now, 1)
    dynamodb = deployment.aws.client("dynamodb")
    guard.refused("login", refused())
    now[0] += 3601

    def drop_the_table(**_: Any) -> None:
        dynamodb.meta.events.unregister("after-call.dynamodb.GetItem", drop_the_table)
        dynamodb.delete_table(TableName=MARKS)

    dynamodb.meta.events.register("after-call.dynamodb.GetItem", drop_the_table)
    guard.check("login")  # read the due mark, then the update for the hour's try failed
    guard.accepted("login")  # the delete of the mark fails
    guard.check("login")  # the read fails
    guard.refused("login", refused())  # the write fails

    lines = [json.loads(line) for line in logs.getvalue().splitlines() if line.startswith("{")]
    unusable = [line for line in lines if line.get("message", "").startswith("login refusal")]
    assert [line["reason"] for line in unusable] == ["ResourceNotFoundException"] * 4

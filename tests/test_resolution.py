"""Issue 28: a trigger names what to back up (a CBR policy, servers by id or by name) and the
project finds what protects it, over HTTP against the stand-in's policy, vault, CSBS policy and
ECS routes."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import Deployment
from test_scale_out import held_back
from test_webhooks import bearer_event, body_of, generic_event

from csbs_trigger.cloud.backends import BACKENDS
from csbs_trigger.models import Trigger
from support.local_aws import Delivered
from support.standin import PROJECT_ID, Fault

# The stand-in's sample vaults and plans (support.local_run).
VAULT_A = "3b5816b5-f29c-4172-9d9a-76c719a659ce"  # vault-be94: SERVER_1, SERVER_2
VAULT_DB = "ea7b8717-2543-478a-a92d-3ca7ee448f67"  # vault-db: DB_SERVER
SERVER_1 = "94eba8b2-acc9-4d82-badc-127144cc5526"
SERVER_2 = "e8cc6bfd-d324-4b88-9109-9fb0ba70676f"
DB_SERVER = "d6bf7592-ca52-43a2-9979-e418d64b29bb"
PLAN_A = "62171999-3df1-42f7-9513-6f9b1bea4744"  # nightly-app-servers: APP_1, APP_2
PLAN_B = "6a6cda7e-7b89-4b14-8e5c-3b6821a97d2c"  # backup: SERVER0
APP_1 = "7a32a8b5-7977-4e24-b5da-e0eb457db75b"
APP_2 = "b2b433bf-7dd6-4a74-aa8f-85673dfbda48"
SERVER0 = "1c960fe4-e679-421a-97cd-4f7463d2344b"
LONELY = "0f0e0d0c-0b0a-4909-8807-060504030201"  # a server nothing protects
POLICY = "8f1e2d3c-4b5a-4697-8a1b-2c3d4e5f6a7b"
SCHEDULE = {
    "schedule_arn": "arn:aws:scheduler:eu-central-1:123456789012:schedule/default/nightly",
    "scheduled_time": "2026-12-06T02:00:00Z",
}


@pytest.fixture
def cloud(deployment: Deployment) -> Deployment:
    """ECS knows every sample server by name, and some whose names only hold one of them."""
    standin = deployment.standin
    standin.servers = {
        SERVER_1: "ecs-1f0f-0002", SERVER_2: "ecs-9f93-0002", DB_SERVER: "db-server-1",
        APP_1: "app-server-1", APP_2: "app-server-2", SERVER0: "server0", LONELY: "lonely",
        "5e5e5e5e-0000-4000-8000-000000000001": "app-server-10",  # loose match of app-server-1
        "5e5e5e5e-0000-4000-8000-000000000002": "my-db-server-1",
    }  # fmt: skip
    standin.cbr_policies[POLICY] = [VAULT_A, VAULT_DB]
    return deployment


def posted(deployment: Deployment, route: str) -> list[dict[str, Any]]:
    return [call.json() for call in deployment.standin.calls(route) if call.method == "POST"]


def restore_points(deployment: Deployment) -> dict[str, list[str] | None]:
    """Each restore point asked for: vault → the resources it named (None: all)."""
    return {
        body["checkpoint"]["vault_id"]: body["checkpoint"]["parameters"].get("resources")
        for body in posted(deployment, "cbr")
    }


def started(deployment: Deployment) -> list[Delivered]:
    return [n for n in deployment.notifications() if n.attributes["event"] == "started"]


def by_outcome(notifications: list[Delivered]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for notification in notifications:
        grouped.setdefault(notification.message["outcome"], []).append(notification.message)
    return grouped


# -- CBR: servers by id ------------------------------------------------------------------------
def test_servers_in_two_vaults_become_one_restore_point_a_vault_of_exactly_them(
    cloud: Deployment,
) -> None:
    result = cloud.invoke({"resources": [SERVER_2, DB_SERVER], "backend": "cbr"})

    assert result["outcome"] == "succeeded"
    assert restore_points(cloud) == {VAULT_A: [SERVER_2], VAULT_DB: [DB_SERVER]}
    told = started(cloud)
    assert sorted(n.attributes["vault_id"] for n in told) == sorted([VAULT_A, VAULT_DB])
    for notification in told:
        assert notification.message["request"]["resolved_from"] == {
            "resources": [SERVER_2, DB_SERVER]
        }
        assert (
            notification.message["checkpoint"]["vault"]["id"] == notification.attributes["vault_id"]
        )


@pytest.mark.parametrize("field", ["resources", "resource_names"])
def test_a_plan_whose_servers_are_null_is_told_invalid_never_dropped(
    cloud: Deployment, field: str
) -> None:
    # Before: the key alone made it a plan naming servers; naming none, it resolved to nothing
    # and ended without a backup or a word.
    result = cloud.invoke({field: None, "backend": "cbr"})

    assert result["outcome"] == "failed"
    [told] = cloud.notifications()
    assert told.message["error"]["category"] == "invalid_event"
    assert told.message["error"]["message"] == "event.plan_id or vault_id is missing"
    assert restore_points(cloud) == {}


def test_servers_of_one_vault_are_one_restore_point(cloud: Deployment) -> None:
    cloud.invoke({"resources": [SERVER_1, SERVER_2], "backend": "cbr"})

    assert restore_points(cloud) == {VAULT_A: [SERVER_1, SERVER_2]}
    assert len(started(cloud)) == 1


def test_a_server_nothing_protects_is_told_on_its_own_and_the_others_still_run(
    cloud: Deployment,
) -> None:
    result = cloud.invoke({"resources": [LONELY, DB_SERVER], "backend": "cbr"})

    assert result["outcome"] == "partial"
    assert restore_points(cloud) == {VAULT_DB: [DB_SERVER]}
    outcomes = by_outcome(started(cloud))
    [failed] = outcomes["failed"]
    assert failed["error"]["category"] == "not_protected"
    assert failed["error"]["retryable"] is False
    assert LONELY in failed["error"]["message"]
    assert failed["request"]["resolved_from"] == {
        "resources": [LONELY, DB_SERVER], "server": LONELY
    }  # fmt: skip
    assert [m["request"]["vault_id"] for m in outcomes["succeeded"]] == [VAULT_DB]


def test_servers_in_no_vault_start_nothing(cloud: Deployment) -> None:
    cloud.invoke({"resources": [LONELY], "backend": "cbr"})

    assert posted(cloud, "cbr") == []
    [told] = started(cloud)
    assert told.attributes["error_category"] == "not_protected"
    assert told.attributes["backend"] == "cbr"


# -- CBR: a policy -----------------------------------------------------------------------------
def test_a_policy_becomes_a_whole_restore_point_of_each_of_its_vaults(cloud: Deployment) -> None:
    cloud.invoke({"policy_id": POLICY})

    assert sorted(posted(cloud, "cbr"), key=json.dumps) == [
        {"checkpoint": {"vault_id": VAULT_A, "parameters": {}}},
        {"checkpoint": {"vault_id": VAULT_DB, "parameters": {}}},
    ]
    told = started(cloud)
    assert {n.message["request"]["resolved_from"]["policy_id"] for n in told} == {POLICY}
    policy_reads = [c for c in cloud.standin.calls("cbr") if "/policies/" in c.path]
    assert [c.path for c in policy_reads] == [f"/v3/{PROJECT_ID}/policies/{POLICY}"]


def test_a_policy_with_servers_backs_up_those_in_its_vaults(cloud: Deployment) -> None:
    cloud.invoke({"policy_id": POLICY, "resources": [SERVER_1, LONELY]})

    assert restore_points(cloud) == {VAULT_A: [SERVER_1]}
    failed = by_outcome(started(cloud))["failed"]
    assert [m["error"]["category"] for m in failed] == ["not_protected"]
    assert POLICY in failed[0]["error"]["message"]
    assert LONELY in failed[0]["error"]["message"]


def test_a_policy_applied_to_no_vault_is_not_protected(cloud: Deployment) -> None:
    cloud.standin.cbr_policies[POLICY] = []

    cloud.invoke({"policy_id": POLICY})

    assert posted(cloud, "cbr") == []
    [told] = started(cloud)
    assert told.message["error"]["category"] == "not_protected"
    assert POLICY in told.message["error"]["message"]
    assert told.message["request"]["resolved_from"] == {"policy_id": POLICY}


def test_an_unknown_policy_is_not_found_and_creates_nothing(cloud: Deployment) -> None:
    cloud.invoke({"policy_id": "0000aaaa-1111-4222-8333-444455556666"})

    assert posted(cloud, "cbr") == []
    [told] = started(cloud)
    assert told.message["error"]["category"] == "not_found"
    assert told.message["error"]["code"] == "BackupService.6000"


# -- servers by name ---------------------------------------------------------------------------
def test_names_become_server_ids_by_exact_name_only(cloud: Deployment) -> None:
    cloud.invoke({"resource_names": ["db-server-1", "ecs-9f93-0002"], "backend": "cbr"})

    assert restore_points(cloud) == {VAULT_DB: [DB_SERVER], VAULT_A: [SERVER_2]}
    told = {n.attributes["vault_id"]: n.message for n in started(cloud)}
    assert told[VAULT_DB]["request"]["resolved_from"] == {
        "resource_names": ["db-server-1", "ecs-9f93-0002"],
        "servers": {"db-server-1": DB_SERVER},  # not my-db-server-1, which ECS also lists
    }
    assert told[VAULT_A]["request"]["resolved_from"]["servers"] == {"ecs-9f93-0002": SERVER_2}
    lookups = cloud.standin.calls("ecs")
    assert [c.query["name"] for c in lookups] == [["db-server-1"], ["ecs-9f93-0002"]]
    assert all(c.query["limit"] == ["1000"] and c.query["offset"] == ["1"] for c in lookups)


def test_a_name_no_server_has_exactly_is_not_found_for_that_name_only(cloud: Deployment) -> None:
    # "app-server" is in two names, but no server is called so.
    cloud.invoke({"resource_names": ["app-server", "server0"], "backend": "csbs"})

    assert [body["checkpoint"]["plan_id"] for body in posted(cloud, "csbs")] == [PLAN_B]
    failed = by_outcome(started(cloud))["failed"]
    assert [m["error"]["category"] for m in failed] == ["not_found"]
    assert "app-server" in failed[0]["error"]["message"]
    assert failed[0]["request"]["resolved_from"]["name"] == "app-server"


def test_a_name_two_servers_carry_is_ambiguous(cloud: Deployment) -> None:
    cloud.standin.servers["6e6e6e6e-0000-4000-8000-000000000003"] = "server0"

    cloud.invoke({"resource_names": ["server0", "app-server-1"], "backend": "csbs"})

    assert posted(cloud, "csbs") == [
        {"checkpoint": {"plan_id": PLAN_A, "parameters": {"resources": [APP_1]}}}
    ]
    [failed] = by_outcome(started(cloud))["failed"]
    assert failed["error"]["category"] == "invalid_event"
    assert "2 servers are named server0" in failed["error"]["message"]


def test_names_are_read_over_every_page_of_loose_matches(cloud: Deployment) -> None:
    cloud.standin.ecs_page_limit = 1  # app-server-1, app-server-10: two pages
    cloud.standin.servers["5e5e5e5e-0000-4000-8000-000000000000"] = "a-app-server-1"

    cloud.invoke({"resource_names": ["app-server-1"], "backend": "csbs"})

    assert posted(cloud, "csbs") == [
        {"checkpoint": {"plan_id": PLAN_A, "parameters": {"resources": [APP_1]}}}
    ]
    assert [c.query["offset"] for c in cloud.standin.calls("ecs")] == [["1"], ["2"], ["3"]]


# -- CSBS --------------------------------------------------------------------------------------
def test_a_csbs_server_in_two_policies_goes_with_the_lowest_id_and_names_the_other(
    cloud: Deployment,
) -> None:
    cloud.standin.add_plan("00000000-aaaa-4bbb-8ccc-000000000001", "weekly", {APP_2: "app-2"})

    cloud.invoke({"resources": [APP_1, APP_2], "backend": "csbs"})

    assert sorted(posted(cloud, "csbs"), key=json.dumps) == [
        {"checkpoint": {"plan_id": "00000000-aaaa-4bbb-8ccc-000000000001",
                        "parameters": {"resources": [APP_2]}}},
        {"checkpoint": {"plan_id": PLAN_A, "parameters": {"resources": [APP_1]}}},
    ]  # fmt: skip
    told = {n.attributes["plan_id"]: n.message for n in started(cloud)}
    assert told["00000000-aaaa-4bbb-8ccc-000000000001"]["request"]["resolved_from"] == {
        "resources": [APP_1, APP_2], "other_plan_ids": {APP_2: [PLAN_A]}
    }  # fmt: skip
    assert "other_plan_ids" not in told[PLAN_A]["request"]["resolved_from"]


def test_csbs_policies_are_read_page_by_page(cloud: Deployment) -> None:
    cloud.standin.csbs_policy_page_limit = 1

    cloud.invoke({"resources": [SERVER0], "backend": "csbs"})

    pages = [c for c in cloud.standin.calls("csbs") if c.path.endswith("/policies")]
    assert [c.query.get("marker") for c in pages] == [None, [PLAN_A], [PLAN_B]]  # the last: empty
    assert [c.query.get("limit") for c in pages] == [["100"]] * 3
    assert [b["checkpoint"]["plan_id"] for b in posted(cloud, "csbs")] == [PLAN_B]


# -- the backend -------------------------------------------------------------------------------
def test_servers_without_a_backend_are_refused_naming_it(cloud: Deployment) -> None:
    cloud.invoke({"resources": [SERVER_1]})

    assert cloud.standin.requests == []
    [told] = started(cloud)
    assert told.message["error"]["category"] == "invalid_event"
    assert "backend" in told.message["error"]["message"]


def test_the_stacks_default_backend_finds_them(cloud: Deployment) -> None:
    cloud.set_env("DEFAULT_BACKEND", "cbr")

    cloud.invoke({"resources": [SERVER_1]})

    assert restore_points(cloud) == {VAULT_A: [SERVER_1]}


# -- once per trigger --------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["schedule", "eventbridge"])
def test_a_retry_after_a_server_moved_starts_no_second_set(cloud: Deployment, path: str) -> None:
    plan = {"resources": [SERVER_2, DB_SERVER], "backend": "cbr"}
    event = {**plan, **SCHEDULE} if path == "schedule" else {
        "id": "7bf73129-1428-4cd3-a780-95db273d1602", "detail-type": "backup", "source": "ops",
        "detail": plan,
    }  # fmt: skip
    first = cloud.invoke(event)
    # Between two deliveries the server moves to the other vault.
    cloud.standin.vaults[VAULT_A].resources.pop(SERVER_2)
    cloud.standin.vaults[VAULT_DB].resources[SERVER_2] = "ecs-9f93-0002"

    again = cloud.invoke(event)

    assert restore_points(cloud) == {VAULT_A: [SERVER_2], VAULT_DB: [DB_SERVER]}
    assert len(posted(cloud, "cbr")) == 2
    assert len(started(cloud)) == 2  # told once each
    assert [p.get("checkpoint_id") for p in again["plans"]] == [
        p.get("checkpoint_id") for p in first["plans"]
    ]
    vault_reads = [c for c in cloud.standin.calls("cbr") if c.path.endswith("/vaults")]
    assert len(vault_reads) == 1


def test_a_webhook_retried_after_the_server_moved_answers_from_the_first_run(
    cloud: Deployment,
) -> None:
    body = {"resources": [SERVER_2, DB_SERVER], "backend": "cbr", "reference": "CHG1"}
    first = cloud.invoke_webhook(generic_event(body, delivery="msg_res"))
    cloud.standin.vaults[VAULT_A].resources.pop(SERVER_2)
    cloud.standin.vaults[VAULT_DB].resources[SERVER_2] = "ecs-9f93-0002"

    again = cloud.invoke_webhook(generic_event(body, delivery="msg_res"))

    assert first["statusCode"] == again["statusCode"] == 201
    assert body_of(again)["checkpoints"] == body_of(first)["checkpoints"]
    assert again["headers"]["Idempotent-Replayed"] == "true"
    assert len(posted(cloud, "cbr")) == 2
    checkpoints = body_of(first)["checkpoints"]
    assert {c["vault_id"] for c in checkpoints} == {VAULT_A, VAULT_DB}
    assert all(c["checkpoint_id"] for c in checkpoints)


def test_a_lookup_throttled_is_told_and_not_kept(cloud: Deployment) -> None:
    throttled = Fault(429, {"error_code": "APIGW.0308", "error_msg": "throttled"})
    cloud.standin.fail_next("cbr", throttled, throttled, throttled)  # every try of one run
    event = {"resources": [SERVER_1], "backend": "cbr", **SCHEDULE}

    cloud.invoke(event)
    [told] = started(cloud)
    assert told.message["error"]["category"] == "throttled"
    cloud.invoke(event)  # nothing kept: the retry looks again, and starts the backup

    assert restore_points(cloud) == {VAULT_A: [SERVER_1]}


# -- more than 20 backups ----------------------------------------------------------------------
def test_more_than_20_resolved_backups_are_all_queued(cloud: Deployment) -> None:
    servers = [f"5a5a5a5a-0000-4000-8000-{index:012d}" for index in range(21)]
    for index, server in enumerate(servers):
        cloud.standin.add_vault(f"vault-{index:02d}", f"vault-{index:02d}", {server: "vm"})

    result = cloud.invoke({"resources": servers, "backend": "cbr", **SCHEDULE})

    assert result["outcome"] == "queued"
    assert result["counts"]["queued"] == 21
    assert posted(cloud, "cbr") == []  # none inline
    cloud.work()
    assert len(posted(cloud, "cbr")) == 21
    told = started(cloud)
    assert len(told) == 21
    assert {n.message["request"]["resolved_from"]["resources"][0] for n in told} == {servers[0]}


def test_a_webhook_resolving_to_more_than_20_backups_answers_202(cloud: Deployment) -> None:
    servers = [f"5a5a5a5a-0000-4000-8000-{index:012d}" for index in range(21)]
    for index, server in enumerate(servers):
        cloud.standin.add_vault(f"vault-{index:02d}", f"vault-{index:02d}", {server: "vm"})

    answer = cloud.invoke_webhook(generic_event({"resources": servers, "backend": "cbr"}))

    assert answer["statusCode"] == 202
    assert body_of(answer)["queued"] == 21
    cloud.work()
    assert len(posted(cloud, "cbr")) == 21


# -- cost --------------------------------------------------------------------------------------
def test_a_hundred_servers_in_three_vaults_cost_a_handful_of_lookups(cloud: Deployment) -> None:
    servers = [f"5b5b5b5b-0000-4000-8000-{index:012d}" for index in range(100)]
    for vault in range(3):
        cloud.standin.add_vault(f"vault-{vault}", f"vault-{vault}",
                                {server: "vm" for server in servers[vault::3]})  # fmt: skip

    cloud.invoke({"resources": servers, "backend": "cbr"})

    before = [c for c in cloud.standin.requests if c.method != "POST" or "tokens" in c.path]
    assert len(before) <= 3  # a token and one page of vaults
    assert len(posted(cloud, "cbr")) == 3


def test_a_vault_list_paging_on_forever_is_a_bad_response(cloud: Deployment) -> None:
    cloud.standin.cbr_page_limit = 1
    endless = {"vaults": [{"id": "v", "name": "v", "resources": []}], "count": 10**6}
    cloud.standin.fail_next("cbr", *[Fault(200, endless) for _ in range(10)])

    cloud.invoke({"resources": [SERVER_1], "backend": "cbr"})

    [told] = started(cloud)
    assert told.message["error"]["category"] == "bad_response"
    assert len([c for c in cloud.standin.calls("cbr") if c.path.endswith("/vaults")]) == 2


# -- each form on each path --------------------------------------------------------------------
FORMS = {
    "policy_id": ({"policy_id": POLICY}, {VAULT_A: None, VAULT_DB: None}),
    "resources": ({"resources": [SERVER_1], "backend": "cbr"}, {VAULT_A: [SERVER_1]}),
    "resource_names": ({"resource_names": ["db-server-1"], "backend": "cbr"},
                       {VAULT_DB: [DB_SERVER]}),
}  # fmt: skip


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("path", ["schedule", "eventbridge", "direct", "batch", "webhook"])
def test_each_form_on_each_path(cloud: Deployment, form: str, path: str) -> None:
    plan, expected = FORMS[form]
    if path == "schedule":
        cloud.invoke({**plan, **SCHEDULE})
    elif path == "eventbridge":
        cloud.invoke({"id": "7bf73129-1428-4cd3-a780-95db273d1602", "detail-type": "backup",
                      "source": "ops", "detail": plan})  # fmt: skip
    elif path == "direct":
        cloud.invoke(plan)
    elif path == "batch":
        cloud.invoke({"plans": [plan, {"plan_id": PLAN_B}]})
    else:
        answer = cloud.invoke_webhook(generic_event({**plan, "reference": "OPS-1"}))
        assert answer["statusCode"] == 201
        assert len(body_of(answer)["checkpoints"]) == len(expected)

    assert restore_points(cloud) == expected
    resolved = [n for n in started(cloud) if n.attributes.get("backend") == "cbr"]
    assert {n.message["request"]["resolved_from"][form] == plan[form] for n in resolved} == {True}


@pytest.mark.parametrize("form", FORMS)
def test_each_form_as_a_queued_plan(cloud: Deployment, form: str) -> None:
    plan, expected = FORMS[form]
    plans = [plan] + [{"plan_id": PLAN_B, "resources": [SERVER0], "keep_days": d}
                      for d in range(1, 21)]  # fmt: skip

    cloud.invoke({"plans": plans, **SCHEDULE})
    cloud.work()  # the resolution, then what it queued
    cloud.work()

    assert restore_points(cloud) == expected
    assert len(posted(cloud, "csbs")) == 20


# -- webhooks ----------------------------------------------------------------------------------
def test_the_servicenow_source_resolves_server_names_when_the_change_names_no_plan(
    cloud: Deployment,
) -> None:
    cloud.set_env("DEFAULT_BACKEND", "cbr")
    # ServiceNow sends a field left empty as "": the plan and server ids name nothing.
    change = {
        "event_id": "9f1c3a6e1b2d4c8a8e7f6d5c4b3a2911",
        "change_request": {
            "number": "CHG0040008",
            "u_csbs_plan_id": "",
            "u_csbs_server_ids": "",
            "u_csbs_server_names": "db-server-1, ecs-1f0f-0002",
        },
    }

    answer = cloud.invoke_webhook(bearer_event(json.dumps(change).encode()))

    assert answer["statusCode"] == 201, answer["body"]
    assert restore_points(cloud) == {VAULT_DB: [DB_SERVER], VAULT_A: [SERVER_1]}
    assert {n.message["trigger"]["reference"] for n in started(cloud)} == {"CHG0040008"}


def test_a_webhook_naming_an_unprotected_server_only_answers_422(cloud: Deployment) -> None:
    answer = cloud.invoke_webhook(generic_event({"resources": [LONELY], "backend": "cbr"}))

    assert answer["statusCode"] == 422
    assert body_of(answer)["error"] == "not_protected"


def test_a_webhook_starting_some_lists_what_did_not_start(cloud: Deployment) -> None:
    body = {"resource_names": ["db-server-1", "nobody"], "backend": "cbr"}

    answer = cloud.invoke_webhook(generic_event(body))

    assert answer["statusCode"] == 201
    assert body_of(answer)["failed"] == [
        {"error": "not_found", "message": "no server is named nobody", "name": "nobody"}
    ]


# -- credentials -------------------------------------------------------------------------------
def test_access_keys_sign_the_lookups(cloud: Deployment) -> None:
    cloud.set_secret(cloud.standin.access_key_secret())
    cloud.cold_start()

    cloud.invoke({"resource_names": ["db-server-1"], "backend": "cbr"})

    assert restore_points(cloud) == {VAULT_DB: [DB_SERVER]}
    lookups = [*cloud.standin.calls("ecs"), *cloud.standin.calls("cbr")]
    assert all(c.headers["Authorization"].startswith("SDK-HMAC-SHA256 ") for c in lookups)


def test_a_token_finds_ecs_in_its_catalog(cloud: Deployment) -> None:
    cloud.set_secret(cloud.standin.cloud_secret(ecs_endpoint=None))
    cloud.cold_start()

    cloud.invoke({"resource_names": ["db-server-1"], "backend": "cbr"})

    assert restore_points(cloud) == {VAULT_DB: [DB_SERVER]}
    assert all("X-Auth-Token" in c.headers for c in cloud.standin.calls("ecs"))


def test_invalid_plans_of_servers_are_refused_before_any_call(cloud: Deployment) -> None:
    bad = [
        {"resources": [SERVER_1], "resource_names": ["x"], "backend": "cbr"},
        {"resource_names": [], "backend": "cbr"},
        {"resource_names": ["a" * 65], "backend": "cbr"},
        {"resource_names": ["x", "x"], "backend": "cbr"},
        {"resource_names": [f"n{i}" for i in range(101)], "backend": "cbr"},
        {"resources": [SERVER_1], "backend": "tape"},
        {"policy_id": POLICY, "backend": "csbs"},
        {"policy_id": POLICY, "resource_names": ["x"]},
        {"plan_id": PLAN_A, "backend": "cbr"},
        {"resources": [SERVER_1], "backend": "csbs", "incremental": False},
    ]

    cloud.invoke({"plans": bad})

    assert cloud.standin.requests == []
    told = started(cloud)
    assert len(told) == len(bad)
    assert {n.message["error"]["category"] for n in told} == {"invalid_event"}


# -- bounds and the worker ---------------------------------------------------------------------
def test_an_ecs_list_paging_on_forever_is_a_bad_response(cloud: Deployment) -> None:
    endless = {"servers": [{"id": SERVER_1, "name": "ecs-1f0f-00020"}] * 1000, "count": 10**9}
    cloud.standin.fail_next("ecs", *[Fault(200, endless) for _ in range(12)])

    cloud.invoke({"resource_names": ["ecs-1f0f-0002"], "backend": "cbr"})

    [told] = started(cloud)
    assert told.message["error"]["category"] == "bad_response"
    assert "ECS listed more pages" in told.message["error"]["message"]
    assert len(cloud.standin.calls("ecs")) == 11  # 10,000 matches, and one page more
    assert posted(cloud, "cbr") == []


def test_a_csbs_policy_list_answering_the_same_page_again_is_a_bad_response(
    cloud: Deployment,
) -> None:
    same = {"policies": [{"id": PLAN_A, "name": "p", "resources": []}]}
    cloud.standin.fail_next("csbs", *[Fault(200, same) for _ in range(3)])

    cloud.invoke({"resources": [APP_1], "backend": "csbs"})

    [told] = started(cloud)
    assert told.message["error"]["category"] == "bad_response"
    assert told.message["error"]["message"].startswith("CSBS answered the same page of policies")
    assert len(cloud.standin.calls("csbs")) == 2


def test_a_csbs_policy_id_sent_as_a_number_is_read_as_its_text(cloud: Deployment) -> None:
    listed = {"policies": [{"id": 20261206, "name": "p", "resources": [{"id": APP_1}]}]}
    cloud.standin.fail_next("csbs", Fault(200, listed), Fault(200, {"policies": []}))

    cloud.invoke({"resources": [APP_1], "backend": "csbs"})

    assert [b["checkpoint"]["plan_id"] for b in posted(cloud, "csbs")] == ["20261206"]


def test_csbs_policies_are_read_in_the_plans_project(cloud: Deployment) -> None:
    other = "0f" * 16
    cloud.standin.projects[other] = "eu-de_other"

    cloud.invoke({"resources": [APP_1], "backend": "csbs", "project_id": other})

    assert [c.path for c in cloud.standin.calls("csbs")][:1] == [f"/v1/{other}/policies"]


def test_a_csbs_policy_list_of_1000_is_read_whole_and_one_that_pages_on_is_cut(
    cloud: Deployment,
) -> None:
    """1,000 policies (10 full pages and an empty one) are read whole; a list that never ends is
    given up after as many pages as 1,000 policies fill, and two more."""

    def page(number: int) -> Fault:
        ids = [f"00000000-0000-4000-8000-{number * 100 + i:012d}" for i in range(100)]
        return Fault(200, {"policies": [{"id": i, "name": "p", "resources": []} for i in ids]})

    cloud.standin.fail_next("csbs", *[page(n) for n in range(10)], Fault(200, {"policies": []}))
    cloud.invoke({"resources": [APP_1], "backend": "csbs"})
    [told] = started(cloud)
    assert "no plan of CSBS protects" in told.message["error"]["message"]
    assert len(cloud.standin.calls("csbs")) == 11

    cloud.standin.fail_next("csbs", *[page(n) for n in range(20)])
    cloud.invoke({"resources": [APP_2], "backend": "csbs"})
    told = started(cloud)[-1]
    assert told.message["error"]["message"].startswith(
        "CSBS listed more pages of policies than 1000 policies fill"
    )
    assert len(cloud.standin.calls("csbs")) == 11 + 12


def test_a_throttled_name_lookup_is_retried_within_the_run(cloud: Deployment) -> None:
    throttled = Fault(429, {"error_code": "APIGW.0308", "error_msg": "throttled"})
    cloud.standin.fail_next("ecs", throttled)

    cloud.invoke({"resource_names": ["db-server-1"], "backend": "cbr"})

    assert restore_points(cloud) == {VAULT_DB: [DB_SERVER]}
    assert len(cloud.standin.calls("ecs")) == 2
    assert cloud.sleeps[0] == 0.25  # the backoff (jitter pinned at half); the account waits it too


def test_a_queued_resolution_redelivered_after_the_server_moved_starts_one_set(
    cloud: Deployment,
) -> None:
    plans = [{"resources": [SERVER_2, DB_SERVER], "backend": "cbr"}] + [
        {"plan_id": PLAN_B, "keep_days": days} for days in range(1, 21)
    ]
    cloud.invoke({"plans": plans, **SCHEDULE})
    # The worker resolves and queues what it found, then its message comes back (as if the
    # worker died before deleting it) after the server moved.
    first = cloud.work()
    cloud.standin.vaults[VAULT_A].resources.pop(SERVER_2)
    cloud.standin.vaults[VAULT_DB].resources[SERVER_2] = "ecs-9f93-0002"
    cloud.invoke({"plans": plans, **SCHEDULE})  # the whole firing again: every plan re-queued
    cloud.work()
    cloud.work()

    assert first
    assert restore_points(cloud) == {VAULT_A: [SERVER_2], VAULT_DB: [DB_SERVER]}
    assert len(posted(cloud, "cbr")) == 2
    cbr_told = [n for n in started(cloud) if n.attributes.get("backend") == "cbr"]
    assert len(cbr_told) == 2


def test_the_vault_list_is_read_page_by_page(cloud: Deployment) -> None:
    cloud.standin.cbr_page_limit = 1  # CBR serves fewer a page than asked

    cloud.invoke({"resources": [SERVER_1, DB_SERVER], "backend": "cbr"})

    pages = [c for c in cloud.standin.calls("cbr") if c.path.endswith("/vaults")]
    assert [c.query["offset"] for c in pages] == [["0"], ["1"]]
    assert {c.query["resource_ids"][0] for c in pages} == {f"{SERVER_1},{DB_SERVER}"}
    assert restore_points(cloud) == {VAULT_A: [SERVER_1], VAULT_DB: [DB_SERVER]}


def test_a_source_may_fix_the_backend_and_map_server_names(cloud: Deployment) -> None:
    sources = {"names": {"scheme": "standard-webhooks", "resource_names": "hosts",
                         "reference": "ticket", "delivery_id": {"header": "webhook-id"},
                         "fixed": {"backend": "cbr"}}}  # fmt: skip
    cloud.set_env("WEBHOOK_SOURCES", json.dumps(sources))
    secret = json.loads(
        (Path(__file__).parents[1] / "events" / "secrets" / "webhooks.json").read_text()
    )
    cloud.aws.update_secret(os.environ["WEBHOOK_SECRET_ID"], {**secret, "names": secret["generic"]})
    event = generic_event({"hosts": "db-server-1", "ticket": "OPS-9", "backend": "csbs",
                           "project_id": "f" * 32})  # fmt: skip
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/webhooks/names"
    event["pathParameters"] = {"source": "names"}

    answer = cloud.invoke_webhook(event)

    assert answer["statusCode"] == 201, answer["body"]
    assert restore_points(cloud) == {VAULT_DB: [DB_SERVER]}  # the body's backend is not read
    [call] = [c for c in cloud.standin.calls("cbr") if c.method == "POST"]
    assert f"/v3/{PROJECT_ID}/" in call.path  # nor its project


def test_an_ecs_list_without_a_count_ends_at_a_short_page(cloud: Deployment) -> None:
    full = {"servers": [{"id": f"5c5c5c5c-0000-4000-8000-{i:012d}", "name": "db-server-10"}
                        for i in range(1000)]}  # fmt: skip
    last = {"servers": [{"id": DB_SERVER, "name": "db-server-1"}]}
    cloud.standin.fail_next("ecs", Fault(200, full), Fault(200, last))

    cloud.invoke({"resource_names": ["db-server-1"], "backend": "cbr"})

    assert [c.query["offset"] for c in cloud.standin.calls("ecs")] == [["1"], ["2"]]
    assert restore_points(cloud) == {VAULT_DB: [DB_SERVER]}


def test_an_ecs_answer_without_a_server_list_is_a_bad_response(cloud: Deployment) -> None:
    cloud.standin.fail_next("ecs", Fault(200, {"count": 1}))

    cloud.invoke({"resource_names": ["db-server-1"], "backend": "cbr"})

    [told] = started(cloud)
    assert told.message["error"]["category"] == "bad_response"
    assert told.message["error"]["message"] == "ECS answered without a servers list"
    assert told.message["error"]["http_status"] == 200


def test_a_resolution_in_progress_lasts_no_longer_than_its_invocation(cloud: Deployment) -> None:
    """The resolve step's record knows the invocation's end: a run that dies mid-lookup does
    not keep its retries waiting for the record's whole lifetime."""
    cloud.invoke({"resources": [SERVER_1], "backend": "cbr", **SCHEDULE})

    table = cloud.runtime.settings.idempotency_table or ""
    items = cloud.aws.client("dynamodb").scan(TableName=table)["Items"]
    [resolve_step] = [i for i in items if '"unresolved"' in i.get("data", {}).get("S", "")]
    assert "in_progress_expiration" in resolve_step


def test_names_are_looked_up_in_the_plans_project(cloud: Deployment) -> None:
    other = "0f" * 16
    cloud.standin.projects[other] = "eu-de_other"

    cloud.invoke({"resource_names": ["db-server-1"], "backend": "cbr", "project_id": other})

    assert [c.path for c in cloud.standin.calls("ecs")] == [f"/v1/{other}/cloudservers/detail"]


def test_an_exact_name_on_an_early_page_is_kept_while_later_pages_are_read(
    cloud: Deployment,
) -> None:
    first = {"servers": [{"id": DB_SERVER, "name": "db-server-1"}], "count": 2}
    second = {"servers": [{"id": LONELY, "name": "db-server-10"}], "count": 2}
    cloud.standin.fail_next("ecs", Fault(200, first), Fault(200, second))

    cloud.invoke({"resource_names": ["db-server-1"], "backend": "cbr"})

    assert len(cloud.standin.calls("ecs")) == 2
    assert restore_points(cloud) == {VAULT_DB: [DB_SERVER]}


@pytest.mark.parametrize(
    ("answer", "message"),
    [([], "ECS answered without a servers list"),
     ({"servers": [{"name": "db-server-1"}]}, "ECS listed a server without an id")],
)  # fmt: skip
def test_an_unusable_ecs_answer_is_a_bad_response(
    cloud: Deployment, answer: Any, message: str
) -> None:
    cloud.standin.fail_next("ecs", Fault(200, json.dumps(answer).encode()))

    cloud.invoke({"resource_names": ["db-server-1"], "backend": "cbr"})

    [told] = started(cloud)
    assert told.message["error"]["category"] == "bad_response"
    assert told.message["error"]["message"] == message


def test_a_queued_resolution_not_resolved_yet_comes_back_and_logs_no_upstream_text(
    cloud: Deployment, logs: io.StringIO
) -> None:
    from csbs_trigger.plans import Resolution
    from csbs_trigger.runner import Unit
    from csbs_trigger.triggers.queued import QueuedPlan

    key = "schedule:arn#t:resolve"
    body = QueuedPlan(Trigger("schedule", "arn#t"),
                      Unit(Resolution(BACKENDS["cbr"], resources=(SERVER_1,)), key,
                           f"{key}#0")).to_body()  # fmt: skip
    cloud.aws.client("sqs").send_message(QueueUrl=cloud.plan_queue_url, MessageBody=body)
    echo = {"error_code": "APIGW.0308", "error_msg": "throttled; you sent password=hunter22"}
    cloud.standin.fail_next("cbr", *[Fault(503, echo)] * 3)
    visibility = held_back(cloud)

    [answer] = cloud.work()

    [message_id] = cloud.held
    assert answer["batchItemFailures"] == [{"itemIdentifier": message_id}]
    assert started(cloud) == []  # told only at its last delivery
    [line] = [json.loads(x) for x in logs.getvalue().splitlines()
              if '"plan not resolved yet: back to the queue"' in x]  # fmt: skip
    assert (line["category"], line["deliveries"]) == ("throttled", 1)
    assert line["idempotency_key"] == key
    assert 15 <= line["delay_seconds"] <= 30  # the first delivery's backoff, jittered
    assert visibility == [int(line["delay_seconds"])]
    assert '"queued plan failed' not in logs.getvalue()
    assert "hunter22" not in logs.getvalue()
    cloud.time_passes()
    cloud.work()  # resolved now, and its backup queued
    cloud.work()
    assert restore_points(cloud) == {VAULT_A: [SERVER_1]}


def test_a_queued_resolution_at_its_last_delivery_is_told_and_leaves_the_queue(
    cloud: Deployment,
) -> None:
    from csbs_trigger.plans import Resolution
    from csbs_trigger.runner import Unit
    from csbs_trigger.triggers.queued import QueuedPlan

    cloud.set_env("PLAN_MAX_DELIVERIES", "1")
    key = "schedule:arn#t:resolve"
    body = QueuedPlan(Trigger("schedule", "arn#t"),
                      Unit(Resolution(BACKENDS["cbr"], resources=(SERVER_1,)), key,
                           f"{key}#0")).to_body()  # fmt: skip
    cloud.aws.client("sqs").send_message(QueueUrl=cloud.plan_queue_url, MessageBody=body)
    cloud.standin.fail_next("cbr", *[Fault(503, {"error_code": "APIGW.0308"})] * 3)

    [answer] = cloud.work()

    assert answer["batchItemFailures"] == []
    [told] = started(cloud)
    assert told.message["error"]["category"] == "throttled"
    assert cloud.queued() == 0


def test_a_queued_resolution_tells_a_server_nothing_protects_and_queues_the_rest(
    cloud: Deployment,
) -> None:
    from csbs_trigger.plans import Resolution
    from csbs_trigger.runner import Unit
    from csbs_trigger.triggers.queued import QueuedPlan

    key = "schedule:arn#t:resolve"
    servers = (SERVER_1, "00000000-0000-4000-8000-0000000000ff")
    body = QueuedPlan(Trigger("schedule", "arn#t"),
                      Unit(Resolution(BACKENDS["cbr"], resources=servers), key,
                           f"{key}#0")).to_body()  # fmt: skip
    cloud.aws.client("sqs").send_message(QueueUrl=cloud.plan_queue_url, MessageBody=body)

    cloud.work()  # resolved: the unprotected server told, the backup queued and run
    cloud.work()

    told = sorted((n.message.get("error") or {}).get("category", "-") for n in started(cloud))
    assert told == ["-", "not_protected"]
    assert restore_points(cloud) == {VAULT_A: [SERVER_1]}


@pytest.mark.parametrize(
    ("plan", "route", "answer", "message"),
    [({"resources": [SERVER_1], "backend": "cbr"}, "cbr",
      {"vaults": [{"name": "v", "resources": [{"id": SERVER_1}]}], "count": 1},
      "CBR listed a vault without an id"),
     ({"policy_id": POLICY}, "cbr", {"policies": []}, "CBR answered without a policy object"),
     ({"resources": [APP_1], "backend": "csbs"}, "csbs", {"policy": {}},
      "CSBS answered without a policies list"),
     ({"resources": [APP_1], "backend": "csbs"}, "csbs",
      {"policies": [{"name": "p", "resources": [{"id": APP_1}]}]},
      "CSBS listed a policy without an id")],
)  # fmt: skip
def test_an_unusable_lookup_answer_is_a_bad_response(
    cloud: Deployment, plan: dict[str, Any], route: str, answer: Any, message: str
) -> None:
    cloud.standin.fail_next(route, Fault(200, answer))

    cloud.invoke(plan)

    [told] = started(cloud)
    assert (told.message["error"]["category"], told.message["error"]["message"]) == (
        "bad_response", message)  # fmt: skip
    assert posted(cloud, route) == []


def test_a_vault_listing_a_server_twice_is_one_backup_of_it(cloud: Deployment) -> None:
    twice = {
        "vaults": [
            {"id": VAULT_A, "name": "vault-be94", "resources": [{"id": SERVER_1}, {"id": SERVER_1}]}
        ],
        "count": 1,
    }
    cloud.standin.fail_next("cbr", Fault(200, twice))

    cloud.invoke({"resources": [SERVER_1], "backend": "cbr"})

    [told] = started(cloud)
    assert "other_vault_ids" not in told.message["request"]["resolved_from"]
    assert restore_points(cloud) == {VAULT_A: [SERVER_1]}


def test_a_cbr_server_in_two_vaults_goes_with_the_lowest_id_and_names_the_other(
    cloud: Deployment,
) -> None:
    both = {
        "vaults": [  # listed highest id first: the choice is the ids', not the list's order
            {"id": VAULT_DB, "name": "vault-db", "resources": [{"id": SERVER_1}]},
            {"id": VAULT_A, "name": "vault-be94", "resources": [{"id": SERVER_1}]},
        ],
        "count": 2,
    }
    cloud.standin.fail_next("cbr", Fault(200, both))

    cloud.invoke({"resources": [SERVER_1], "backend": "cbr"})

    assert restore_points(cloud) == {VAULT_A: [SERVER_1]}
    [told] = started(cloud)
    assert told.message["request"]["resolved_from"] == {
        "resources": [SERVER_1], "other_vault_ids": {SERVER_1: [VAULT_DB]}
    }  # fmt: skip


def test_a_vault_listed_twice_is_one_vault_of_its_servers(cloud: Deployment) -> None:
    vault = {"id": VAULT_A, "name": "vault-be94", "resources": [{"id": SERVER_1}]}
    cloud.standin.fail_next("cbr", Fault(200, {"vaults": [vault, vault], "count": 2}))

    cloud.invoke({"resources": [SERVER_1], "backend": "cbr"})

    [told] = started(cloud)
    assert "other_vault_ids" not in told.message["request"]["resolved_from"]
    assert restore_points(cloud) == {VAULT_A: [SERVER_1]}


def test_vaults_are_listed_in_the_plans_project(cloud: Deployment) -> None:
    other = "0f" * 16
    cloud.standin.projects[other] = "eu-de_other"

    cloud.invoke({"resources": [SERVER_1], "backend": "cbr", "project_id": other})

    reads = [c.path for c in cloud.standin.calls("cbr") if c.path.endswith("/vaults")]
    assert reads == [f"/v3/{other}/vaults"]


def test_a_policy_naming_a_vault_twice_backs_it_up_once(cloud: Deployment) -> None:
    cloud.standin.cbr_policies[POLICY] = [VAULT_DB, VAULT_DB]

    cloud.invoke({"policy_id": POLICY})

    assert len(posted(cloud, "cbr")) == 1


def test_a_policy_is_read_in_the_plans_project(cloud: Deployment) -> None:
    other = "0f" * 16
    cloud.standin.projects[other] = "eu-de_other"

    cloud.invoke({"policy_id": POLICY, "project_id": other})

    reads = [c.path for c in cloud.standin.calls("cbr") if "/policies/" in c.path]
    assert reads == [f"/v3/{other}/policies/{POLICY}"]


def test_a_policy_answer_that_is_no_object_is_a_bad_200_answer(cloud: Deployment) -> None:
    cloud.standin.fail_next("cbr", Fault(200, b"[]"))

    cloud.invoke({"policy_id": POLICY})

    [told] = started(cloud)
    error = told.message["error"]
    assert (error["category"], error["http_status"], error["message"]) == (
        "bad_response", 200, "CBR answered without a policy object")  # fmt: skip

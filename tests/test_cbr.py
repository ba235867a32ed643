"""CBR as the second backend (issue 17): a vault's restore point started, told and followed to
its end the way a CSBS plan is, over HTTP against the stand-in's CBR routes."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import Deployment
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer
from test_completion_tracking import OTHER_PROJECT, completions, tracked_item
from test_operational_trouble import tracked_state
from test_webhooks import generic_event

from support.standin import ACCESS_KEY, PROJECT_ID, SECRET_KEY, Fault, Recorded

VAULT = "3b5816b5-f29c-4172-9d9a-76c719a659ce"  # vault-be94: two servers
FAILING_VAULT = "ea7b8717-2543-478a-a92d-3ca7ee448f67"  # vault-db: its server's backup fails
SERVER_1 = "94eba8b2-acc9-4d82-badc-127144cc5526"
SERVER_2 = "e8cc6bfd-d324-4b88-9109-9fb0ba70676f"
PLAN_A = "62171999-3df1-42f7-9513-6f9b1bea4744"

OPTIONS: dict[str, Any] = {
    "resources": [SERVER_2],
    "auto_trigger": False,
    "incremental": False,
    "name": "nightly_full-1",
    "description": "Change CHG0031337, before the release",
}


def posted(deployment: Deployment) -> list[dict[str, Any]]:
    calls = deployment.standin.calls("cbr")
    return [call.json() for call in calls if call.method == "POST"]


@pytest.mark.parametrize(
    "given",
    [dict(combo) for n in range(len(OPTIONS) + 1)
     for combo in itertools.combinations(OPTIONS.items(), n)],
    ids=lambda given: "+".join(given) or "nothing",
)  # fmt: skip
def test_the_request_holds_exactly_what_the_plan_gave(
    deployment: Deployment, given: dict[str, Any]
) -> None:
    result = deployment.invoke({"vault_id": VAULT, **given})

    assert result["outcome"] == "succeeded"
    assert posted(deployment) == [{"checkpoint": {"vault_id": VAULT, "parameters": given}}]


def test_a_started_vault_backup_is_told_as_cbr(deployment: Deployment) -> None:
    deployment.invoke({"vault_id": VAULT, "incremental": False})

    [started] = deployment.notifications()
    message = started.message
    assert started.subject == f"CBR backup started for vault {VAULT}"
    assert started.attributes == {
        "event": "started", "outcome": "succeeded", "backend": "cbr", "vault_id": VAULT,
    }  # fmt: skip
    assert message["backend"] == "cbr"
    assert message["request"] == {
        "vault_id": VAULT, "resources": None, "auto_trigger": None, "incremental": False,
        "name": None, "description": None,
    }  # fmt: skip
    checkpoint = message["checkpoint"]
    [answered] = [body for method, path, _, body in deployment.standin.answers
                  if method == "POST" and path.endswith("/checkpoints")]  # fmt: skip
    point = answered["checkpoint"]
    assert (checkpoint["id"], checkpoint["created_at"], checkpoint["project_id"]) == (
        point["id"], point["created_at"], point["project_id"],
    )  # fmt: skip
    assert checkpoint["vault"]["id"] == VAULT
    assert checkpoint["extra_info"] == point["extra_info"]
    assert checkpoint["status"] == "protecting"
    assert checkpoint["vault"]["name"] == "vault-be94"
    assert [r["id"] for r in checkpoint["vault"]["resources"]] == [SERVER_1, SERVER_2]
    assert checkpoint["vault"]["skipped_resources"] == []
    assert message["tracking"]["deadline"] is not None


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ({"vault_id": VAULT, "plan_id": PLAN_A}, "names plan_id and vault_id: exactly one"),
        ({"resources": [SERVER_1]}, "a plan naming servers needs a backend"),
        ({"vault_id": VAULT, "name": "a b"}, "event.name must be 1 to 64 letters"),
        ({"vault_id": VAULT, "name": "n" * 65}, "event.name must be 1 to 64 letters"),
        ({"vault_id": VAULT, "description": "<b>"}, "event.description must be text"),
        ({"vault_id": VAULT, "description": "d" * 256}, "event.description must be text"),
        ({"vault_id": VAULT, "incremental": "false"}, "event.incremental must be true or false"),
        ({"vault_id": VAULT, "resources": [SERVER_1] * 2}, "lists a resource id twice"),
        ({"vault_id": VAULT, "resources": [str(i) for i in range(257)]}, "at most 256"),
        ({"vault_id": VAULT, "resources": []}, "every resource of the vault"),
        ({"plan_id": PLAN_A, "incremental": False}, "unknown keys 'incremental'"),
    ],
)
def test_a_cbr_plan_is_checked_before_any_call(
    deployment: Deployment, plan: dict[str, Any], message: str
) -> None:
    deployment.invoke(plan)

    [failed] = deployment.notifications()
    assert failed.message["error"]["category"] == "invalid_event"
    assert message in failed.message["error"]["message"]
    assert deployment.standin.requests == []


# CBR's create answer may or may not list a skipped resource among the vault's resources too.
SKIPPED_SHAPES = pytest.mark.parametrize(
    "also_listed", [False, True], ids=["skipped apart", "skipped also listed"]
)


@SKIPPED_SHAPES
def test_every_resource_skipped_is_a_busy_failure_and_nothing_is_tracked(
    deployment: Deployment, also_listed: bool
) -> None:
    deployment.standin.vaults[VAULT].busy = {SERVER_1, SERVER_2}
    deployment.standin.skipped_also_listed = also_listed

    result = deployment.invoke({"vault_id": VAULT})

    [failed] = deployment.notifications()
    error = failed.message["error"]
    assert (result["outcome"], error["category"], error["code"]) == (
        "failed", "busy", "BackupService.0002",
    )  # fmt: skip
    name = deployment.standin.vaults[VAULT].resources[SERVER_1]
    assert error["message"] == (
        f"CBR skipped every resource of the vault ({name}: Resources are being backed up.)"
    )
    assert error["http_status"] == 200
    assert deployment.track() == {"due": 0}


def test_a_vault_skipped_without_name_or_reason_says_which_and_that_none_was_given(
    deployment: Deployment,
) -> None:
    deployment.standin.vaults[VAULT].busy = {SERVER_1, SERVER_2}

    def unnamed(checkpoint: dict[str, Any]) -> None:
        for skipped in checkpoint["vault"]["skipped_resources"]:
            del skipped["name"], skipped["reason"]

    deployment.standin.edit_created = unnamed

    deployment.invoke({"vault_id": VAULT})

    [failed] = deployment.notifications()
    assert failed.message["error"]["message"] == (
        f"CBR skipped every resource of the vault ({SERVER_1}: no reason given)"
    )


@SKIPPED_SHAPES
def test_a_skipped_resource_is_listed_and_fails_the_completion(
    deployment: Deployment, also_listed: bool
) -> None:
    deployment.standin.vaults[VAULT].busy = {SERVER_1}
    deployment.standin.skipped_also_listed = also_listed
    deployment.standin.polls_to_finish = 1

    deployment.invoke({"vault_id": VAULT})
    [started] = deployment.notifications()
    [skipped] = started.message["checkpoint"]["vault"]["skipped_resources"]
    assert (started.message["outcome"], skipped["id"], skipped["code"]) == (
        "succeeded", SERVER_1, "BackupService.0002",
    )  # fmt: skip
    deployment.track()  # CBR lists no backup yet: nothing is known of the restore point
    progress = tracked_state(deployment, started.message["checkpoint"]["id"])["progress"]
    assert json.loads(progress) == {"servers": 2, "available": 0, "failed": 0, "running": 2}
    for _ in range(2):
        deployment.track()

    [completed] = completions(deployment)
    assert completed.message["outcome"] == "failed"
    assert completed.message["error"]["category"] == "item_error"
    assert completed.message["summary"] == {"servers": 2, "available": 1, "failed": 1,
                                            "running": 0}  # fmt: skip
    statuses = {item["resource_id"]: item["status"] for item in completed.message["items"]}
    assert statuses == {SERVER_1: "skipped", SERVER_2: "available"}
    [item] = [i for i in completed.message["items"] if i["status"] == "skipped"]
    assert (item["fail_code"], item["fail_reason"]) == (
        "BackupService.0002", "Resources are being backed up.",
    )  # fmt: skip


@pytest.mark.parametrize(("plan", "resources_of"), [
    ({"vault_id": VAULT}, lambda checkpoint: checkpoint["vault"]["resources"]),
    ({"plan_id": PLAN_A}, lambda checkpoint: checkpoint["protection_plan"]["resources"]),
], ids=["cbr", "csbs"])  # fmt: skip
def test_a_resource_the_answer_lists_twice_is_one_backup_to_wait_for(
    deployment: Deployment, plan: dict[str, Any], resources_of: Any
) -> None:
    deployment.standin.polls_to_finish = 1
    deployment.standin.edit_created = lambda checkpoint: resources_of(checkpoint).append(
        dict(resources_of(checkpoint)[0])
    )
    deployment.invoke(plan)
    [started] = deployment.notifications()
    assert started.message["outcome"] == "succeeded"

    for _ in range(3):
        deployment.track()

    [completed] = completions(deployment)
    assert completed.message["outcome"] == "succeeded"
    assert completed.message["summary"] == {"servers": 2, "available": 2, "failed": 0,
                                            "running": 0}  # fmt: skip


def test_a_backup_waits_for_every_server_asked_whatever_the_answer_lists(
    deployment: Deployment,
) -> None:
    """The request names the servers the restore point was made of; an answer that lists
    fewer never shortens what the tracker waits for."""
    deployment.standin.edit_created = lambda checkpoint: checkpoint["vault"]["resources"].pop()

    answer = deployment.invoke({"vault_id": VAULT, "resources": [SERVER_1, SERVER_2]})

    item = tracked_item(deployment, answer["plans"][0]["checkpoint_id"])
    assert item["expected_items"] == {"N": "2"}


def test_a_vault_backup_is_followed_to_its_end(deployment: Deployment) -> None:
    deployment.standin.polls_to_finish = 2
    checkpoint_id = deployment.invoke({"vault_id": VAULT})["plans"][0]["checkpoint_id"]
    deployment.notifications()
    item = tracked_item(deployment, checkpoint_id)
    assert (item["backend"]["S"], item["target_id"]["S"], item["plan_name"]["S"]) == (
        "cbr", VAULT, "vault-be94",
    )  # fmt: skip

    runs = [deployment.track() for _ in range(4)]

    assert [run.get("succeeded", 0) for run in runs] == [0, 0, 1, 0]
    [completed] = completions(deployment)
    assert completed.subject.startswith("CBR backup completed for vault vault-be94 (2 servers, ")
    assert completed.attributes == {
        "event": "completed", "outcome": "succeeded", "backend": "cbr", "vault_id": VAULT,
    }  # fmt: skip
    message = completed.message
    assert message["backend"] == "cbr"
    assert message["summary"] == {"servers": 2, "available": 2, "failed": 0, "running": 0}
    assert {i["resource_id"] for i in message["items"]} == {SERVER_1, SERVER_2}  # no disk rows


def test_a_failed_backup_names_the_reason_its_task_gives(deployment: Deployment) -> None:
    deployment.standin.failing_servers = {"d6bf7592-ca52-43a2-9979-e418d64b29bb"}
    deployment.standin.polls_to_finish = 1
    deployment.invoke({"vault_id": FAILING_VAULT})
    deployment.invoke({"vault_id": FAILING_VAULT})  # another restore point's task, not this one's
    deployment.notifications()

    for _ in range(3):
        deployment.track()

    for completed in completions(deployment):
        assert completed.subject == "CBR backup failed for vault vault-db (1 of 1 server)"
        error = completed.message["error"]
        assert error["category"] == "item_error"
        assert error["code"] == "BackupService.7102"
        assert error["message"] == "1 of 1 server failed (db-server-1: The server has stopped.)"
    tasks = [c for c in deployment.standin.calls("cbr") if c.path.endswith("/operation-logs")]
    assert tasks
    assert all(c.query["vault_id"] == [FAILING_VAULT] for c in tasks)


@pytest.fixture
def local_time_elsewhere(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The machine's clock in Newfoundland (UTC-3:30): what is sent as UTC must be UTC."""
    monkeypatch.setenv("TZ", "America/St_Johns")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("local_time_elsewhere")
def test_the_task_list_asks_for_tasks_since_the_backup_began_in_utc(
    deployment: Deployment,
) -> None:
    """Tasks are stamped with the minute they began: the list starts five minutes before the
    backup was registered, so that it holds this backup's tasks and few others."""
    deployment.standin.failing_servers = {"d6bf7592-ca52-43a2-9979-e418d64b29bb"}
    deployment.standin.polls_to_finish = 1
    checkpoint_id = deployment.invoke({"vault_id": FAILING_VAULT})["plans"][0]["checkpoint_id"]
    deployment.notifications()
    for _ in range(2):
        deployment.track()

    [task_list] = [c for c in deployment.standin.calls("cbr") if c.path.endswith("/operation-logs")]
    [since] = task_list.query["start_time"]
    began = datetime.strptime(since, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    created = deployment.standin.restore_points[checkpoint_id].created_at
    assert timedelta(seconds=299) <= created - began <= timedelta(seconds=310)


def test_the_backups_of_a_large_vault_are_read_page_by_page(deployment: Deployment) -> None:
    servers = {str(uuid.uuid4()): f"ecs-{index}" for index in range(200)}
    deployment.standin.add_vault("large-vault", "large", servers)
    deployment.standin.polls_to_finish = 1
    deployment.invoke({"vault_id": "large-vault"})
    deployment.notifications()

    deployment.track()  # no backups yet
    before = len(deployment.standin.calls("cbr"))
    deployment.track()

    [completed] = completions(deployment)
    assert completed.message["summary"]["available"] == 200
    pages = [c for c in deployment.standin.calls("cbr")[before:] if c.path.endswith("/backups")]
    # 400 rows (each server and its disk), 100 a page: four GETs, each at its own offset
    assert [c.query["offset"] for c in pages] == [["0"], ["100"], ["200"], ["300"]]


def test_a_deleted_restore_point_ends_not_found_after_two_polls(deployment: Deployment) -> None:
    checkpoint_id = deployment.invoke({"vault_id": VAULT})["plans"][0]["checkpoint_id"]
    deployment.standin.restore_points[checkpoint_id].deleted = True
    deployment.notifications()

    deployment.track()
    assert completions(deployment) == []
    deployment.track()

    [completed] = completions(deployment)
    error = completed.message["error"]
    assert (error["category"], error["code"]) == ("not_found", "BackupService.6217")
    assert completed.subject == "CBR backup failed (not_found) for vault vault-be94"


def test_a_batch_mixes_csbs_plans_and_cbr_vaults(deployment: Deployment) -> None:
    result = deployment.invoke({"plans": [{"plan_id": PLAN_A}, {"vault_id": VAULT}]})

    assert [plan["outcome"] for plan in result["plans"]] == ["succeeded", "succeeded"]
    by_backend = {d.attributes["backend"]: d for d in deployment.notifications()}
    assert by_backend["csbs"].attributes["plan_id"] == PLAN_A
    assert by_backend["cbr"].attributes["vault_id"] == VAULT
    assert len(deployment.standin.calls("csbs")) == len(deployment.standin.calls("cbr")) == 1


def test_a_webhook_names_a_vault(deployment: Deployment) -> None:
    body = json.dumps({"vault_id": VAULT, "reference": "CHG-42"}).encode()

    answer = deployment.invoke_webhook(generic_event(body))

    assert answer["statusCode"] == 201
    named = json.loads(answer["body"])
    assert (named["vault_id"], named["reference"]) == (VAULT, "CHG-42")
    assert "plan_id" not in named


def sdk_authorization(call: Recorded) -> str:
    """The Authorization huaweicloudsdkcore's own signer gives the request as it came over the
    wire (method, path, query, the headers our signature names, body)."""
    headers = {name.lower(): value for name, value in call.headers.items()}
    signed = call.headers["Authorization"].split("SignedHeaders=", 1)[1].split(",", 1)[0]
    request = SdkRequest(
        method=call.method, schema="http", host=headers["host"], resource_path=call.path,
        query_params=[(key, value) for key, values in call.query.items() for value in values],
        header_params={name: headers[name] for name in signed.split(";")}, body=call.body,
    )  # fmt: skip
    return str(Signer(BasicCredentials(ACCESS_KEY, SECRET_KEY)).sign(request).header_params[
        "Authorization"
    ])  # fmt: skip


def test_every_cbr_request_is_signed_as_the_huawei_sdk_signs_it(deployment: Deployment) -> None:
    """Start, list backups (paged, with a query), read the tasks, read the restore point:
    each request as sent carries the signature the SDK computes over it, project included."""
    deployment.set_secret(deployment.standin.access_key_secret())
    deployment.standin.failing_servers = {"d6bf7592-ca52-43a2-9979-e418d64b29bb"}
    deployment.standin.polls_to_finish = 1
    result = deployment.invoke({"plans": [{"vault_id": FAILING_VAULT}, {"vault_id": VAULT}]})
    deleted = result["plans"][1]["checkpoint_id"]
    deployment.standin.restore_points[deleted].deleted = True
    deployment.notifications()
    for _ in range(3):
        deployment.track()

    calls = deployment.standin.calls("cbr")
    routes = {(c.method, c.path.rsplit("/", 1)[1] if "/checkpoints/" not in c.path
               else "checkpoints/{id}") for c in calls}  # fmt: skip
    assert routes == {("POST", "checkpoints"), ("GET", "backups"), ("GET", "operation-logs"),
                      ("GET", "checkpoints/{id}")}  # fmt: skip
    for call in calls:
        assert call.headers["Authorization"] == sdk_authorization(call), call.path
        assert call.headers["X-Project-Id"] == PROJECT_ID
    assert deployment.standin.calls("iam") == []
    outcomes = {c.message["error"]["category"] for c in completions(deployment)}
    assert outcomes == {"item_error", "not_found"}  # every call was accepted, none refused


def test_the_catalog_names_cbr_where_the_secret_does_not(deployment: Deployment) -> None:
    deployment.set_secret(deployment.standin.cloud_secret(cbr_endpoint=None))

    assert deployment.invoke({"vault_id": VAULT})["outcome"] == "succeeded"

    [login] = deployment.standin.calls("iam")
    assert "nocatalog" not in login.query  # the catalog's /v3/<project> is not doubled
    [call] = deployment.standin.calls("cbr")
    assert call.path.count("/v3/") == 1


def test_csbs_closed_to_a_new_project_says_to_use_cbr(deployment: Deployment) -> None:
    refused = {"error_code": "BackupService.4008",
               "error_msg": "New project are not allowed to use old services"}  # fmt: skip
    deployment.standin.fail_next("csbs", Fault(400, refused))

    deployment.invoke({"plan_id": PLAN_A})

    [failed] = deployment.notifications()
    assert failed.message["error"]["category"] == "forbidden"
    assert "must use CBR: name its vault with vault_id" in failed.message["error"]["message"]


def test_a_restore_point_answered_without_its_project_is_polled_where_it_was_started(
    deployment: Deployment,
) -> None:
    standin = deployment.standin
    standin.projects[OTHER_PROJECT] = "eu-de_other"
    standin.polls_to_finish = 1
    standin.edit_created = lambda checkpoint: checkpoint.pop("project_id")
    deployment.invoke({"vault_id": VAULT})
    deployment.notifications()
    deployment.set_secret(standin.cloud_secret(project_id=OTHER_PROJECT))  # now another
    deployment.cold_start()

    runs = [deployment.track() for _ in range(3)]

    assert [run.get("succeeded", 0) for run in runs] == [0, 1, 0]
    lists = [call.path for call in standin.calls("cbr") if call.path.endswith("/backups")]
    assert set(lists) == {f"/v3/{PROJECT_ID}/backups"}


def test_a_failed_restore_points_tasks_are_read_in_its_own_project(
    deployment: Deployment,
) -> None:
    standin = deployment.standin
    standin.projects[OTHER_PROJECT] = "eu-de_other"
    standin.failing_servers = {"d6bf7592-ca52-43a2-9979-e418d64b29bb"}
    standin.polls_to_finish = 1
    deployment.invoke({"vault_id": FAILING_VAULT})
    deployment.notifications()
    deployment.set_secret(standin.cloud_secret(project_id=OTHER_PROJECT))  # now another
    deployment.cold_start()

    for _ in range(3):
        deployment.track()

    [completed] = completions(deployment)
    assert completed.message["error"]["message"] == (
        "1 of 1 server failed (db-server-1: The server has stopped.)"
    )
    tasks = {c.path for c in standin.calls("cbr") if c.path.endswith("/operation-logs")}
    assert tasks == {f"/v3/{PROJECT_ID}/operation-logs"}


def test_a_restore_point_answered_with_vault_null_is_started_and_followed(
    deployment: Deployment,
) -> None:
    """The vault is not named: the backup is told, and followed to what its rows show."""
    deployment.standin.polls_to_finish = 1
    deployment.standin.edit_created = lambda checkpoint: checkpoint.update(vault=None)

    deployment.invoke({"vault_id": VAULT})

    [started] = deployment.notifications()
    assert started.message["outcome"] == "succeeded"
    assert started.message["checkpoint"]["vault"]["resources"] == []
    runs = [deployment.track() for _ in range(3)]
    assert [run.get("succeeded", 0) for run in runs] == [0, 1, 0]


def test_a_create_answer_without_its_checkpoint_is_a_bad_response_naming_cbr(
    deployment: Deployment,
) -> None:
    deployment.standin.fail_next("cbr", Fault(200, {"restore_point": {}}))

    deployment.invoke({"vault_id": VAULT})

    [failed] = deployment.notifications()
    error = failed.message["error"]
    assert (error["category"], error["message"]) == (
        "bad_response", "CBR answered 200 without a checkpoint object",
    )  # fmt: skip


def test_every_resource_skipped_for_a_reason_cbr_does_not_document_is_an_invalid_request(
    deployment: Deployment,
) -> None:
    deployment.standin.vaults[VAULT].busy = {SERVER_1, SERVER_2}

    def undocumented(checkpoint: dict[str, Any]) -> None:
        for skipped in checkpoint["vault"]["skipped_resources"]:
            skipped["code"] = "BackupService.5999"

    deployment.standin.edit_created = undocumented

    deployment.invoke({"vault_id": VAULT})

    [failed] = deployment.notifications()
    assert (failed.message["error"]["category"], failed.message["error"]["code"]) == (
        "invalid_request", "BackupService.5999",
    )  # fmt: skip

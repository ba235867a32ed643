"""Backups that expire (issue 27): every backup this stack starts with a lifetime is deleted
when it ends, only from the register, never a server's last good backup; over HTTP to the
CSBS/CBR stand-in and the register in local DynamoDB, with the functions' clock moved on."""

from __future__ import annotations

import io
import json
import threading
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import Deployment
from test_cbr import SERVER_1, SERVER_2, VAULT
from test_completion_tracking import completions, emf
from test_digest import history
from test_log_lines import lines
from test_scale_out import OTHER_PROJECT, THIRD_PROJECT, named_secret
from test_webhooks import generic_event

from csbs_trigger import expiry as expiry_module
from csbs_trigger.aws.expiry_register import scope_of
from csbs_trigger.aws.sns import PublishError
from csbs_trigger.errors import ConfigError
from csbs_trigger.values import replace
from support.lambda_context import FakeLambdaContext
from support.standin import PROJECT_ID, PROVIDER_ID, CreatedRestorePoint, Fault

PLAN_A = "62171999-3df1-42f7-9513-6f9b1bea4744"  # app-server-1, app-server-2
APP_1, APP_2 = "7a32a8b5-7977-4e24-b5da-e0eb457db75b", "b2b433bf-7dd6-4a74-aa8f-85673dfbda48"
DAY = 86400.0
T0 = 1_800_000_000.0


@pytest.fixture
def clock(deployment: Deployment) -> Deployment:
    deployment.now = T0
    deployment.standin.polls_to_finish = 1
    return deployment


def backed_up(deployment: Deployment, plan: dict[str, Any]) -> str:
    """A backup of ``plan`` started now and followed to its completion; its checkpoint id."""
    result = deployment.invoke(plan)
    checkpoint_id = str(result["plans"][0]["checkpoint_id"])
    for _ in range(3):
        deployment.track()
    return checkpoint_id


def due_with_a_newer_good_backup(clock: Deployment, plan: dict[str, Any] | None = None) -> str:
    """A backup of ``plan`` kept a day, then a newer good one kept forever; a day later. The
    first one's checkpoint id: due, and no server's last good backup."""
    plan = plan or {"plan_id": PLAN_A}
    checkpoint_id = backed_up(clock, {**plan, "keep_days": 1})
    later(clock, 0.5)
    backed_up(clock, plan)
    clock.notifications()
    later(clock, 1)
    return checkpoint_id


def deletes(deployment: Deployment) -> list[Any]:
    return [c for c in deployment.standin.requests if c.method == "DELETE"]


def expired(deployment: Deployment) -> list[Any]:
    return [n for n in deployment.notifications() if n.attributes["event"] == "expired"]


def later(deployment: Deployment, days: float) -> None:
    assert deployment.now is not None
    deployment.now += days * DAY


# -- a lifetime per backup ------------------------------------------------------------------------


def test_a_backup_is_told_when_it_expires_and_kept_forever_without_a_lifetime(
    clock: Deployment,
) -> None:
    clock.invoke({"plan_id": PLAN_A, "keep_days": 14})
    clock.invoke({"vault_id": VAULT})

    started = {n.message["backend"]: n.message for n in clock.notifications()}

    assert started["csbs"]["expires_at"] == "2027-01-29T08:00:00+00:00"  # T0 + 14 days
    assert started["cbr"]["expires_at"] is None
    assert started["csbs"]["request"]["keep_days"] == 14
    for _ in range(3):
        clock.track()
    lifetimes = {c.message["backend"]: c.message["expires_at"] for c in completions(clock)}
    assert lifetimes == {"csbs": "2027-01-29T08:00:00+00:00", "cbr": None}


def test_a_lifetime_without_an_expiry_register_keeps_the_backup_and_says_so(
    clock: Deployment, logs: io.StringIO
) -> None:
    clock.set_env("EXPIRY_TABLE", None)
    clock.invoke({"plan_id": PLAN_A, "keep_days": 14})

    kept_and_logged(clock, logs, "no expiry register (EXPIRY_TABLE): the backup is kept")


def test_a_lifetime_the_register_refuses_keeps_the_backup_and_says_why(
    clock: Deployment, logs: io.StringIO
) -> None:
    from botocore.exceptions import ClientError

    clock.invoke({"plan_id": PLAN_A})  # a container, its clients built
    clock.notifications()
    table = clock.runtime.settings.expiry_table

    def refuse(params: dict[str, Any], **_: Any) -> None:
        if params.get("TableName") == table:
            error = {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}
            raise ClientError({"Error": error}, "PutItem")

    clock.runtime.dynamodb.meta.events.register("provide-client-params.dynamodb.PutItem", refuse)
    clock.invoke({"plan_id": PLAN_A, "keep_days": 14})

    line = kept_and_logged(clock, logs, "backup not registered to expire: it is kept")
    assert line["reason"]


def kept_and_logged(clock: Deployment, logs: io.StringIO, message: str) -> dict[str, Any]:
    """The one backup started succeeded with no lifetime (nothing would delete it), and the
    line ``message`` names its checkpoint; that line."""
    [started] = clock.notifications()
    assert started.message["outcome"] == "succeeded"
    assert started.message["expires_at"] is None
    [line] = lines(logs, message)
    assert line["checkpoint_id"] == started.message["checkpoint"]["id"]
    return line


def test_the_stack_default_gives_a_plan_without_keep_days_its_lifetime(clock: Deployment) -> None:
    clock.set_env("DEFAULT_KEEP_DAYS", "7")
    clock.invoke({"plan_id": PLAN_A})

    [started] = clock.notifications()

    assert started.message["expires_at"] == "2027-01-22T08:00:00+00:00"


@pytest.mark.parametrize("keep_days", [0, 3651, 1.5, "14", True, -1])
def test_a_keep_days_that_is_no_whole_number_of_days_in_range_is_an_invalid_event(
    clock: Deployment, keep_days: Any
) -> None:
    clock.invoke({"plan_id": PLAN_A, "keep_days": keep_days})

    [failed] = clock.notifications()
    assert failed.message["error"]["category"] == "invalid_event"
    assert (
        "keep_days must be a whole number of days from 1 to 3650"
        in (failed.message["error"]["message"])
    )
    assert clock.standin.requests == []


def generic_source(keep_days: Any) -> str:
    return json.dumps({"generic": {"scheme": "standard-webhooks", "plan_id": "plan_id",
                                   "delivery_id": {"header": "webhook-id"},
                                   "keep_days": keep_days}})  # fmt: skip


@pytest.mark.parametrize(("mapping", "body", "kept"), [
    (3, {"plan_id": PLAN_A, "keep_days": 99}, 3),  # fixed: the body cannot change it
    ("ticket.keep", {"plan_id": PLAN_A, "ticket": {"keep": 5}}, 5),
    ("ticket.keep", {"plan_id": PLAN_A, "ticket": {"keep": "5"}}, None),  # no number
    ("ticket.keep", {"plan_id": PLAN_A, "ticket": {"keep": 4000}}, None),  # out of range
])  # fmt: skip
def test_a_webhook_source_fixes_the_lifetime_or_maps_it_from_the_body(
    clock: Deployment, mapping: Any, body: dict[str, Any], kept: int | None
) -> None:
    clock.set_env("WEBHOOK_SOURCES", generic_source(mapping))

    clock.invoke_webhook(generic_event(body, timestamp=int(T0)))

    [told] = clock.notifications()
    if kept is None:
        assert told.message["error"]["category"] == "invalid_event"
        assert clock.standin.requests == []
    else:
        assert told.message["request"]["keep_days"] == kept
        assert told.message["expires_at"] == iso(T0 + kept * DAY)


def test_a_source_whose_fixed_lifetime_is_out_of_range_is_a_config_error(
    clock: Deployment,
) -> None:
    clock.set_env("WEBHOOK_SOURCES", generic_source(0))

    answer = clock.invoke_webhook(generic_event({"plan_id": PLAN_A}, timestamp=int(T0)))

    assert answer["statusCode"] == 500
    assert clock.standin.requests == []


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


# -- the sweep -----------------------------------------------------------------------------------


def test_an_expired_backup_is_deleted_and_told_once_it_is_gone(clock: Deployment) -> None:
    older = backed_up(clock, {"plan_id": PLAN_A, "keep_days": 1})
    later(clock, 0.5)
    newer = backed_up(clock, {"plan_id": PLAN_A, "keep_days": 30})
    clock.notifications()
    later(clock, 1)

    first = clock.sweep()
    assert expired(clock) == []  # deletion is asynchronous: sent, not yet confirmed
    second = clock.sweep()

    assert (first["deleting"], second["deleted"]) == (1, 1)
    [delete] = deletes(clock)
    assert delete.path == f"/v1/{PROJECT_ID}/providers/{PROVIDER_ID}/checkpoints/{older}"
    assert "checkpoint_items" not in delete.query  # every server goes: the whole checkpoint
    [told] = expired(clock)
    assert told.attributes == {"event": "expired", "outcome": "deleted", "backend": "csbs",
                               "plan_id": PLAN_A}  # fmt: skip
    assert told.subject == "CSBS backup expired and deleted for plan nightly-app-servers"
    message = told.message
    assert (message["project_id"], message["plan_name"], message["error"]) == (
        PROJECT_ID, "nightly-app-servers", None,
    )  # fmt: skip
    assert message["request"]["plan_id"] == PLAN_A
    assert message["request"]["keep_days"] == 1
    assert message["checkpoint"] == {"id": older}
    assert {s["resource_id"] for s in message["deleted"]} == {APP_1, APP_2}
    assert message["kept_as_last_good"] == []
    assert (message["created_at"], message["expires_at"]) == (
        "2027-01-15T08:00:00+00:00", "2027-01-16T08:00:00+00:00",
    )  # fmt: skip
    assert clock.sweep()["due"] == 0  # done with
    assert newer != older
    assert clock.standin.checkpoints[newer].deleted is False


def test_a_servers_last_good_backup_is_kept_until_a_newer_one_succeeds(clock: Deployment) -> None:
    only = backed_up(clock, {"plan_id": PLAN_A, "keep_days": 1})
    clock.notifications()
    later(clock, 2)

    assert clock.sweep()["kept"] == 1
    assert deletes(clock) == []
    clock.standin.failing_servers = {APP_1, APP_2}
    backed_up(clock, {"plan_id": PLAN_A})  # a newer backup that failed: no newer good one
    assert clock.sweep()["kept"] == 1
    clock.standin.failing_servers = set()
    backed_up(clock, {"plan_id": PLAN_A})  # a newer good one, kept forever

    clock.sweep()
    clock.sweep()

    [delete] = deletes(clock)
    assert delete.path.endswith(f"/checkpoints/{only}")
    [told] = expired(clock)
    assert {s["resource_id"] for s in told.message["deleted"]} == {APP_1, APP_2}


def test_a_partly_failed_backup_loses_its_failed_server_and_keeps_the_good_one(
    clock: Deployment,
) -> None:
    clock.standin.failing_servers = {APP_2}
    checkpoint_id = backed_up(clock, {"plan_id": PLAN_A, "keep_days": 1})
    clock.notifications()
    later(clock, 2)

    clock.sweep()
    clock.sweep()

    [delete] = deletes(clock)
    created = clock.standin.checkpoints[checkpoint_id]
    failed_item = created.item_ids[[s for s, _ in created.servers].index(APP_2)]
    assert delete.query["checkpoint_items"] == [failed_item]  # only that server's item
    [told] = expired(clock)
    assert [s["resource_id"] for s in told.message["deleted"]] == [APP_2]
    assert [s["resource_id"] for s in told.message["kept_as_last_good"]] == [APP_1]
    # The history (35 days of audit) keeps how many servers went and how many were kept.
    entries = {entry.event: entry for entry in history(clock)}
    assert (entries["expired"].servers, entries["expired"].kept) == (1, 1)
    assert (entries["started"].kept, entries["completed"].kept) == (None, None)


def test_a_backup_whose_completion_is_not_reported_is_never_touched(clock: Deployment) -> None:
    clock.standin.polls_to_finish = 100
    clock.invoke({"plan_id": PLAN_A, "keep_days": 1})
    clock.track()
    later(clock, 5)

    result = clock.sweep()

    assert result["waiting"] == 1
    assert deletes(clock) == []


def test_other_checkpoints_never_get_a_request(clock: Deployment) -> None:
    """A newer backup started without a lifetime in the same project and vault, and one the
    stack never started: the sweep asks nothing of either."""
    mine = backed_up(clock, {"vault_id": VAULT, "keep_days": 1, "resources": [SERVER_1]})
    later(clock, 0.5)
    forever = backed_up(clock, {"vault_id": VAULT})  # newer, good, kept forever
    clock.notifications()
    later(clock, 1)
    before = len(clock.standin.requests)

    clock.sweep()
    clock.sweep()

    swept = clock.standin.requests[before:]
    assert {c.query["checkpoint_id"][0] for c in swept if "checkpoint_id" in c.query} == {mine}
    touched = {c.path.rsplit("/", 1)[-1] for c in swept if "/backups/" in c.path}
    assert touched == set(clock.standin.restore_points[mine].backup_ids)
    assert not clock.standin.restore_points[forever].gone
    assert not clock.standin.restore_points[forever].deleting
    assert len(expired(clock)) == 1


def due_cbr_backup(clock: Deployment, project_id: str | None = None) -> CreatedRestorePoint:
    """A CBR restore point kept a day, then a newer good one of the same servers; a day
    later: due, and no server's last good backup."""
    plan: dict[str, Any] = {"vault_id": VAULT} | ({"project_id": project_id} if project_id else {})
    checkpoint_id = backed_up(clock, {**plan, "keep_days": 1})
    later(clock, 0.5)
    backed_up(clock, plan)
    clock.notifications()
    later(clock, 1)
    return clock.standin.restore_points[checkpoint_id]


def test_a_cbr_backup_is_listed_then_each_servers_backup_deleted(clock: Deployment) -> None:
    point = due_cbr_backup(clock)

    clock.sweep()
    clock.sweep()

    assert {c.path for c in deletes(clock)} == {
        f"/v3/{PROJECT_ID}/backups/{backup_id}" for backup_id in point.backup_ids
    }
    [told] = expired(clock)
    assert told.attributes["vault_id"] == VAULT
    assert {s["resource_id"] for s in told.message["deleted"]} == {SERVER_1, SERVER_2}


def test_a_cbr_deletion_is_told_only_once_cbr_no_longer_has_the_backups(
    clock: Deployment,
) -> None:
    point = due_cbr_backup(clock)
    clock.standin.deletion_reads = 2  # each backup reads "deleting" once, then is gone

    runs = [clock.sweep()]
    assert expired(clock) == []
    runs.append(clock.sweep())
    assert expired(clock) == []  # still listed as deleting: not gone yet
    runs.append(clock.sweep())

    counted = [[run.get(k, 0) for k in ("deleting", "still_deleting", "deleted")] for run in runs]
    assert counted == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    reads = [c.path for c in clock.standin.calls("cbr") if c.method == "GET" and
             c.path.startswith(f"/v3/{PROJECT_ID}/backups/")]  # fmt: skip
    assert sorted(reads) == sorted(f"/v3/{PROJECT_ID}/backups/{b}" for b in point.backup_ids * 2)
    [told] = expired(clock)
    assert {s["resource_id"] for s in told.message["deleted"]} == {SERVER_1, SERVER_2}


def test_a_cbr_backup_that_reads_deleted_is_gone(clock: Deployment) -> None:
    """A backup read back as ``deleted`` is gone. The backup query documents no such status
    (a restore point's does), but the code reads it as gone, and this pins that."""
    point = due_cbr_backup(clock)
    clock.standin.deletion_reads = 5  # left to itself, each would read "deleting" for a while
    clock.sweep()
    clock.standin.fail_next("cbr", *[
        Fault(200, {"backup": {"id": backup_id, "checkpoint_id": point.id, "status": "deleted",
                               "vault_id": VAULT}}) for backup_id in point.backup_ids
    ])  # fmt: skip

    assert clock.sweep().get("deleted") == 1

    [told] = expired(clock)
    assert {s["resource_id"] for s in told.message["deleted"]} == {SERVER_1, SERVER_2}


@pytest.mark.parametrize("answer", [[], {"backup": "deleted"}, {"backup": {"status": None}}])
def test_a_cbr_backup_whose_answer_says_nothing_is_still_deleting(
    clock: Deployment, answer: Any
) -> None:
    """An answer that names no status never counts as gone: the next sweep reads it again."""
    point = due_cbr_backup(clock)
    clock.sweep()
    clock.standin.fail_next("cbr", *[Fault(200, answer) for _ in point.backup_ids])

    assert clock.sweep() == {"mode": "delete", "due": 1, "still_deleting": 1}
    assert expired(clock) == []
    clock.sweep()
    [told] = expired(clock)
    assert told.attributes["outcome"] == "deleted"


def test_a_cbr_backup_deleted_by_hand_just_before_its_delete_counts_as_deleted(
    clock: Deployment,
) -> None:
    point = due_cbr_backup(clock)
    gone = {"error_code": "BackupService.6000", "error_msg": "The backup does not exist."}
    # The list still shows it; by its DELETE it is gone (404).
    clock.standin.fail_next("cbr", Fault(passthrough=True), Fault(404, gone))

    clock.sweep()
    point.gone.add(point.backup_ids[0])  # as CBR has it since
    clock.sweep()

    [told] = expired(clock)
    assert told.attributes["outcome"] == "deleted"
    assert {s["resource_id"] for s in told.message["deleted"]} == {SERVER_1, SERVER_2}


def test_a_cbr_backup_is_deleted_and_confirmed_in_its_own_project(clock: Deployment) -> None:
    clock.standin.projects[OTHER_PROJECT] = "eu-de_other"
    point = due_cbr_backup(clock, OTHER_PROJECT)

    clock.sweep()
    clock.sweep()

    # listed, deleted and read back where it was started, not in the credentials' default
    calls = [c for c in clock.standin.calls("cbr") if "/backups" in c.path]
    assert {c.path.split("/")[2] for c in calls} == {OTHER_PROJECT}
    assert {c.path for c in deletes(clock)} == {
        f"/v3/{OTHER_PROJECT}/backups/{backup_id}" for backup_id in point.backup_ids
    }
    [told] = expired(clock)
    assert len(told.message["deleted"]) == 2


def test_a_disk_backup_listed_under_its_servers_id_is_never_the_one_deleted(
    clock: Deployment,
) -> None:
    """CBR lists each disk's backup beside its server's, with the server's as ``parent_id``:
    only the server's backup is deleted, whatever resource the disk row names and wherever
    it is listed."""
    point = due_cbr_backup(clock)
    rows = [
        {"id": backup_id, "checkpoint_id": point.id, "resource_id": server, "status": "available"}
        for (server, _), backup_id in zip(point.servers, point.backup_ids, strict=True)
    ]
    disks = [{**row, "id": f"{row['id']}-disk", "parent_id": row["id"]} for row in rows]
    clock.standin.fail_next("cbr", Fault(200, {"backups": disks + rows, "count": 4}))

    clock.sweep()
    clock.sweep()

    assert {c.path for c in deletes(clock)} == {
        f"/v3/{PROJECT_ID}/backups/{backup_id}" for backup_id in point.backup_ids
    }


@pytest.mark.parametrize("backend", ["csbs", "cbr"])
def test_a_backup_deleted_by_hand_meanwhile_counts_as_deleted(
    clock: Deployment, backend: str
) -> None:
    plan = {"plan_id": PLAN_A} if backend == "csbs" else {"vault_id": VAULT}
    checkpoint_id = backed_up(clock, {**plan, "keep_days": 1})
    later(clock, 0.5)
    backed_up(clock, plan)
    clock.notifications()
    if backend == "csbs":
        clock.standin.checkpoints[checkpoint_id].deleted = True  # deleted in the console
    else:
        point = clock.standin.restore_points[checkpoint_id]
        point.gone.update(point.backup_ids[:1])  # one server's backup deleted in the console
    later(clock, 1)

    clock.sweep()
    clock.sweep()

    [told] = expired(clock)
    assert told.attributes["outcome"] == "deleted"
    assert len(told.message["deleted"]) == 2


def test_a_csbs_backup_is_deleted_and_confirmed_in_its_own_project(clock: Deployment) -> None:
    clock.standin.projects[OTHER_PROJECT] = "eu-de_other"
    checkpoint_id = due_with_a_newer_good_backup(clock, {"plan_id": PLAN_A,
                                                         "project_id": OTHER_PROJECT})  # fmt: skip

    clock.sweep()
    clock.sweep()

    [delete] = deletes(clock)
    assert delete.path == f"/v1/{OTHER_PROJECT}/providers/{PROVIDER_ID}/checkpoints/{checkpoint_id}"
    reads = [c.path for c in clock.standin.calls("csbs") if c.path.endswith("/checkpoint_items")]
    assert set(reads) == {f"/v1/{OTHER_PROJECT}/checkpoint_items"}
    [told] = expired(clock)
    assert told.attributes["outcome"] == "deleted"


def test_a_csbs_checkpoint_answering_409_is_being_deleted_already(clock: Deployment) -> None:
    checkpoint_id = due_with_a_newer_good_backup(clock)
    # A repeated DELETE while CSBS deletes (csbs-facts: Terraform reads 409 as still deleting).
    busy = {"error_code": "CSBS.2003", "error_msg": "item in executing"}
    clock.standin.fail_next("csbs", Fault(409, busy))

    assert clock.sweep() == {"mode": "delete", "due": 1, "deleting": 1}
    clock.standin.checkpoints[checkpoint_id].deleted = True  # that deletion has ended since
    clock.sweep()

    [told] = expired(clock)
    assert told.attributes["outcome"] == "deleted"


def test_csbs_items_listed_as_deleted_are_gone(clock: Deployment) -> None:
    due_with_a_newer_good_backup(clock)
    clock.standin.deletion_reads = 3
    clock.standin.deleting_status = "deleted"  # listed a while longer, as deleted

    clock.sweep()

    assert clock.sweep().get("deleted") == 1
    [told] = expired(clock)
    assert len(told.message["deleted"]) == 2


def test_the_failed_servers_of_a_partly_kept_backup_go_in_one_deletion(clock: Deployment) -> None:
    plan_id, servers = "00000000-aaaa-4bbb-8ccc-000000000003", ["s-1", "s-2", "s-3"]
    clock.standin.add_plan(plan_id, "three", {server: server for server in servers})
    clock.standin.failing_servers = {"s-1", "s-2"}
    checkpoint_id = backed_up(clock, {"plan_id": plan_id, "keep_days": 1})
    clock.standin.failing_servers = set()
    later(clock, 2)

    clock.sweep()

    [delete] = deletes(clock)
    created = clock.standin.checkpoints[checkpoint_id]
    failed = {item for (server, _), item in zip(created.servers, created.item_ids, strict=True)
              if server != "s-3"}  # fmt: skip
    [listed] = delete.query["checkpoint_items"]
    assert set(listed.split(",")) == failed  # s-3's is its last good backup: kept


def test_at_most_five_csbs_deletions_run_at_once_in_a_project(clock: Deployment) -> None:
    ids = [backed_up(clock, {"plan_id": PLAN_A, "keep_days": 1}) for _ in range(7)]
    later(clock, 0.5)
    backed_up(clock, {"plan_id": PLAN_A})
    clock.notifications()
    clock.standin.deletion_reads = 3  # deletions take a while
    later(clock, 1)

    first = clock.sweep()
    second = clock.sweep()

    assert (first["deleting"], first["queued"]) == (5, 2)
    assert (second["still_deleting"], second["queued"]) == (5, 2)
    assert len(deletes(clock)) == 5
    for _ in range(5):
        clock.sweep()
    assert len(deletes(clock)) == 7  # the other two once the first were done
    assert all(clock.standin.checkpoints[i].deleted for i in ids)
    assert len(expired(clock)) == 7


def test_two_overlapping_sweeps_handle_each_backup_once(clock: Deployment) -> None:
    due_with_a_newer_good_backup(clock)
    arrived, release = threading.Event(), threading.Event()
    clock.standin.fail_next("csbs", Fault(passthrough=True, arrived=arrived, release=release))
    results: list[dict[str, Any]] = []
    first = threading.Thread(target=lambda: results.append(clock.sweep()))
    first.start()
    try:
        assert arrived.wait(30)
        results.append(clock.sweep())  # while the first one's DELETE is held
    finally:
        release.set()
        first.join()

    assert sorted(r.get("skipped", 0) for r in results) == [0, 1]
    assert len(deletes(clock)) == 1


def test_a_sweep_killed_after_its_delete_confirms_it_at_the_next(
    clock: Deployment, logs: io.StringIO
) -> None:
    """The register fails right after the DELETE was sent (the sweep dies there): the next
    sweep, once the lease ran out, finds the deletion under way and tells it once."""
    checkpoint_id = due_with_a_newer_good_backup(clock)
    updates: list[str] = []

    def fail_after_the_claim(**_: Any) -> Any:
        updates.append("UpdateItem")
        if len(updates) == 1:
            return None  # the claim goes through
        return SimpleNamespace(status_code=500), {"Error": {"Code": "InternalServerError"}}

    dynamodb = clock.runtime.dynamodb
    assert dynamodb is not None
    dynamodb.meta.events.register("before-call.dynamodb.UpdateItem", fail_after_the_claim)
    with pytest.raises(Exception, match=r"^the expiry register could not be used$"):
        clock.sweep()
    [line] = lines(logs, "expiry register failed")
    assert line["checkpoint_id"] == checkpoint_id
    assert "InternalServerError" in line["reason"]
    dynamodb.meta.events.unregister("before-call.dynamodb.UpdateItem", fail_after_the_claim)

    clock.cold_start()
    later(clock, 0.01)  # its lease ran out with its invocation
    for _ in range(3):
        clock.sweep()

    assert len(expired(clock)) == 1
    assert len(deletes(clock)) == 2  # sent again: CSBS answers "being deleted", which is no error


@pytest.mark.parametrize(("status", "code"), [(403, "CSBS.9009"), (422, "CSBS.6100")])
def test_a_refused_deletion_is_told_once_a_day_and_tried_again_after_a_day(
    clock: Deployment, status: int, code: str
) -> None:
    due_with_a_newer_good_backup(clock)
    refusal = Fault(status, {"error_code": code, "error_msg": "not allowed to delete"})
    clock.standin.fail_next("csbs", refusal, refusal)

    assert clock.sweep()["failed"] == 1
    assert clock.sweep()["refused"] == 1  # within the day: not tried again, not told again
    [refused] = expired(clock)
    assert refused.attributes["outcome"] == "failed"
    assert refused.message["error"]["http_status"] == status
    category = refused.message["error"]["category"]
    assert refused.subject == (
        f"CSBS backup expiry failed ({category}) for plan nightly-app-servers"
    )
    assert refused.message["deleted"] == []
    assert len(deletes(clock)) == 1
    later(clock, 1)  # exactly a day after the refusal
    clock.sweep()
    assert len(deletes(clock)) == 2
    [again] = expired(clock)  # refused again, a day later: told again
    assert again.attributes["outcome"] == "failed"
    later(clock, 1.01)
    clock.sweep()
    clock.sweep()
    [deleted] = expired(clock)
    assert deleted.attributes["outcome"] == "deleted"


def test_throttling_and_5xx_are_tried_again_at_the_next_sweep(clock: Deployment) -> None:
    due_with_a_newer_good_backup(clock)
    clock.standin.fail_next(
        "csbs", *[Fault(503, {"error_code": "APIGW.0201", "error_msg": "x"})] * 3
    )

    assert clock.sweep()["retry"] == 1
    clock.sweep()
    clock.sweep()

    [told] = expired(clock)
    assert told.attributes["outcome"] == "deleted"


def test_refused_credentials_stop_the_sweep_for_that_account(clock: Deployment) -> None:
    for _ in range(3):
        due_with_a_newer_good_backup(clock)
    clock.standin.password = "changed by someone"
    clock.standin.revoke_tokens()
    clock.cold_start()

    logins_before = len(clock.standin.calls("iam"))

    result = clock.sweep()

    assert result["stopped_account"] == 1
    assert result["deferred"] == 2
    assert len(clock.standin.calls("iam")) - logins_before == 1  # one refused login, no more
    assert deletes(clock) == []


def test_report_mode_deletes_nothing_and_delete_mode_then_deletes_what_is_due(
    clock: Deployment,
) -> None:
    due_with_a_newer_good_backup(clock)
    clock.set_env("EXPIRY_MODE", "report")
    before = len(clock.standin.requests)

    assert clock.sweep()["would_delete"] == 1
    assert clock.standin.requests[before:] == []  # not one cloud request
    clock.set_env("EXPIRY_MODE", "delete")
    clock.sweep()
    clock.sweep()
    assert len(expired(clock)) == 1


def test_a_sweep_costs_no_cloud_request_for_a_backup_not_due(clock: Deployment) -> None:
    for _ in range(3):
        backed_up(clock, {"plan_id": PLAN_A, "keep_days": 30})
    clock.notifications()
    before = len(clock.standin.requests)

    assert clock.sweep()["due"] == 0
    assert clock.standin.requests[before:] == []


def test_last_good_backups_are_per_project(clock: Deployment) -> None:
    assert scope_of("csbs", PROJECT_ID, None) != scope_of("csbs", "0" * 32, None)
    assert scope_of("csbs", PROJECT_ID, None) != scope_of("cbr", PROJECT_ID, None)


def digest_totals(deployment: Deployment) -> dict[str, Any]:
    import digest

    deployment.notifications()
    now, deployment.now = deployment.now, None  # notifications are stamped with the real time
    digest.handler({}, FakeLambdaContext(function_name="csbs-trigger-digest"))
    deployment.now = now
    [told] = [n for n in deployment.notifications() if n.attributes["event"] == "digest"]
    return told.message  # type: ignore[no-any-return]


def test_the_digest_counts_what_expired_was_kept_and_would_go(clock: Deployment) -> None:
    """Report mode: the backup due is counted (and its plan lined up); delete mode then: the
    deletion; a server's only good backup: kept."""
    backed_up(clock, {"plan_id": PLAN_A, "keep_days": 1})
    later(clock, 0.5)
    backed_up(clock, {"plan_id": PLAN_A})
    backed_up(clock, {"vault_id": VAULT, "keep_days": 1})  # its servers' only good backup
    later(clock, 1)
    clock.set_env("EXPIRY_MODE", "report")
    clock.sweep()

    reported = digest_totals(clock)

    assert reported["totals"]["expired"] == {"deleted": 0, "failed": 0, "kept_as_last_good": 1,
                                             "due": 1}  # fmt: skip
    [line] = [line for line in reported["plans"] if line.get("plan_id") == PLAN_A]
    assert line["expired"]["due"] == 1
    clock.set_env("EXPIRY_MODE", "delete")
    later(clock, 0.1)
    for _ in range(2):
        clock.sweep()
    later(clock, 0.1)

    swept = digest_totals(clock)

    assert swept["totals"]["expired"] == {"deleted": 1, "failed": 0, "kept_as_last_good": 1,
                                          "due": 0}  # fmt: skip


def test_each_backup_is_deleted_in_its_own_project_with_its_own_credentials(
    clock: Deployment,
) -> None:
    """Three scopes: the stack's project, another project, another account. A server's last
    good backup is its newest good one in that scope: the same server ids elsewhere do not
    count."""
    standin = clock.standin
    standin.projects[OTHER_PROJECT] = "eu-de_other"
    standin.projects[THIRD_PROJECT] = "eu-de_third"
    named_secret(clock, "team-b", standin.access_key_secret(project_id=THIRD_PROJECT))
    mine = backed_up(clock, {"plan_id": PLAN_A, "keep_days": 1})
    other = backed_up(clock, {"plan_id": PLAN_A, "keep_days": 1, "project_id": OTHER_PROJECT})
    team = backed_up(clock, {"plan_id": PLAN_A, "keep_days": 1, "credentials": "team-b"})
    later(clock, 0.5)
    backed_up(clock, {"plan_id": PLAN_A})  # newer in the stack's project
    backed_up(clock, {"plan_id": PLAN_A, "credentials": "team-b"})  # newer for team-b
    clock.notifications()
    later(clock, 1)

    clock.sweep()
    clock.sweep()

    paths = {c.path for c in deletes(clock)}
    assert paths == {
        f"/v1/{PROJECT_ID}/providers/{PROVIDER_ID}/checkpoints/{mine}",
        f"/v1/{THIRD_PROJECT}/providers/{PROVIDER_ID}/checkpoints/{team}",
    }
    [signed] = [c for c in deletes(clock) if team in c.path]
    assert signed.headers["X-Project-Id"] == THIRD_PROJECT  # the account's own keys signed it
    items = [c for c in clock.standin.calls("csbs") if c.path.endswith("/checkpoint_items")]
    confirmed = [c for c in items if c.query["checkpoint_id"] == [team]]
    assert confirmed[-1].headers["Authorization"].startswith("SDK-HMAC-SHA256")
    told = {n.message["checkpoint"]["id"] for n in expired(clock)}
    assert told == {mine, team}
    assert clock.standin.checkpoints[other].deleted is False  # its project's last good one


def test_a_sweep_begins_no_backup_it_has_no_time_for(clock: Deployment) -> None:
    """With less of the invocation left than a backup may take, the due backups wait for the
    next sweep: none is claimed, none gets a request."""
    backed_up(clock, {"plan_id": PLAN_A, "keep_days": 1})
    due_with_a_newer_good_backup(clock)
    before = len(clock.standin.requests)

    short = clock.sweep(FakeLambdaContext(function_name="csbs-trigger-expiry", timeout_seconds=12))

    assert (short["due"], short["deferred"]) == (2, 2)
    assert clock.standin.requests[before:] == []
    assert clock.sweep()["deleting"] == 2  # the next sweep, with its time, goes on


def test_a_kept_server_deleted_later_is_told_on_its_own(clock: Deployment) -> None:
    """A partly failed backup: its failed server goes at expiry, its good one is kept; once a
    newer backup of that server succeeded, a second notification tells that one alone."""
    clock.standin.failing_servers = {APP_2}
    backed_up(clock, {"plan_id": PLAN_A, "keep_days": 1})
    clock.notifications()
    later(clock, 2)
    clock.sweep()
    clock.sweep()
    [first] = expired(clock)
    clock.standin.failing_servers = set()
    backed_up(clock, {"plan_id": PLAN_A, "resources": [APP_1]})  # APP_1's newer good backup

    clock.sweep()
    clock.sweep()

    [second] = expired(clock)
    assert [s["resource_id"] for s in first.message["deleted"]] == [APP_2]
    assert [s["resource_id"] for s in second.message["deleted"]] == [APP_1]
    assert second.message["kept_as_last_good"] == []
    assert clock.sweep()["due"] == 0


def test_a_lifetime_travels_with_a_batch_item_and_a_queued_plan(clock: Deployment) -> None:
    plans = [{"plan_id": PLAN_A, "keep_days": 2, "resources": [APP_1]},
             {"plan_id": PLAN_A, "resources": [APP_2]}]  # fmt: skip
    clock.invoke({"plans": plans})
    inline = {n.message["request"]["resources"][0]: n.message["expires_at"]
              for n in clock.notifications()}  # fmt: skip
    many = [{"plan_id": f"estate-{n:02d}", "keep_days": 3} for n in range(21)]
    for plan in many:
        clock.standin.add_plan(plan["plan_id"], plan["plan_id"], {f"srv-{plan['plan_id']}": "vm"})

    clock.invoke({"plans": many})
    clock.work()

    assert inline == {APP_1: "2027-01-17T08:00:00+00:00", APP_2: None}
    queued = {n.message["expires_at"] for n in clock.notifications()}
    assert queued == {"2027-01-18T08:00:00+00:00"}


def test_an_expiry_the_topic_refused_is_published_once_at_the_next_sweep(
    clock: Deployment, logs: io.StringIO
) -> None:
    checkpoint_id = due_with_a_newer_good_backup(clock)
    clock.sweep()
    clock.refuse(clock.runtime.sns, "Publish", "InternalError")

    with pytest.raises(PublishError, match=r"^1 expiry notifications not published$"):
        clock.sweep()
    [line] = lines(logs, "expiry notification not published")
    assert line["checkpoint_id"] == checkpoint_id
    assert "InternalError" in line["reason"]
    later(clock, 1 / 24)  # the next sweep, an hour later
    clock.sweep()

    [told] = expired(clock)
    assert told.attributes["outcome"] == "deleted"
    assert len(deletes(clock)) == 1


def register_item(clock: Deployment, checkpoint_id: str) -> dict[str, Any]:
    table = clock.runtime.settings.expiry_table or ""
    item = clock.aws.client("dynamodb").get_item(TableName=table, Key={"id": {"S": checkpoint_id}})[
        "Item"
    ]
    return item  # type: ignore[no-any-return]


def test_a_backup_answered_without_its_project_is_registered_where_it_was_started(
    clock: Deployment,
) -> None:
    clock.standin.edit_created = lambda checkpoint: checkpoint.pop("project_id")

    checkpoint_id = backed_up(clock, {"vault_id": VAULT, "keep_days": 1})

    assert register_item(clock, checkpoint_id)["project_id"] == {"S": PROJECT_ID}


def test_the_register_keeps_what_it_did_and_forgets_an_expired_backup_a_month_later(
    clock: Deployment,
) -> None:
    clock.standin.failing_servers = {APP_2}
    checkpoint_id = backed_up(clock, {"plan_id": PLAN_A, "keep_days": 1})
    clock.standin.failing_servers = set()
    later(clock, 2)
    clock.sweep()
    clock.sweep()  # APP_2's backup deleted; APP_1's kept as its last good one
    partly = register_item(clock, checkpoint_id)
    backed_up(clock, {"plan_id": PLAN_A, "resources": [APP_1]})
    clock.sweep()
    clock.sweep()

    done = register_item(clock, checkpoint_id)

    assert (json.loads(partly["deleted"]["S"]), json.loads(partly["kept"]["S"])) == (
        [APP_2], [APP_1],
    )  # fmt: skip
    assert partly["state"] == {"S": "due"}
    assert json.loads(done["deleted"]["S"]) == sorted([APP_1, APP_2])
    assert done["state"] == {"S": "expired"}
    assert "queue" not in done  # out of the index: no sweep reads it again
    assert "notification" not in done
    assert int(done["forget_at"]["N"]) == int(clock.now or 0) + 30 * 24 * 3600


def test_a_started_backup_is_registered_once(clock: Deployment) -> None:
    register = clock.runtime.expiry_register
    assert register is not None
    checkpoint_id = backed_up(clock, {"plan_id": PLAN_A, "keep_days": 1})
    expiring = register.read(checkpoint_id)
    assert expiring is not None

    assert register.register(replace(expiring, expires_at=0.0)) is False  # a replay
    assert register_item(clock, checkpoint_id)["expires_at"] == {"N": str(T0 + DAY)}
    assert register.read("no-such-checkpoint") is None


def test_a_sweep_reads_every_page_of_what_is_due(
    clock: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(expiry_module, "PAGE_SIZE", 2)
    for _ in range(5):
        backed_up(clock, {"plan_id": PLAN_A, "keep_days": 1})
    later(clock, 0.5)
    backed_up(clock, {"plan_id": PLAN_A})
    later(clock, 1)

    assert clock.sweep()["due"] == 5


def test_what_a_sweep_does_is_counted_logged_and_recorded(
    clock: Deployment, logs: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    """A deletion counts BackupsExpired; a refused one BackupExpiryFailed, its log line
    naming the checkpoint, the category and the (redacted) reason; the digest counts both."""
    refused = due_with_a_newer_good_backup(clock, {"plan_id": PLAN_A, "resources": [APP_1]})
    due_with_a_newer_good_backup(clock, {"plan_id": PLAN_A, "resources": [APP_2]})
    password = clock.standin.cloud_secret()["password"]
    echo = {"error_code": "CSBS.9009", "error_msg": f"no right ({password})"}
    clock.standin.fail_next("csbs", Fault(403, echo))
    capsys.readouterr()

    clock.sweep()
    clock.sweep()

    metrics = emf(capsys.readouterr().out)
    assert ("BackupExpiryFailed", {"backend": "csbs"}) in metrics
    assert ("BackupsExpired", {"backend": "csbs"}) in metrics
    [line] = lines(logs, "expired backup not deleted")
    assert (line["checkpoint_id"], line["category"]) == (refused, "forbidden")
    assert password not in line["reason"]
    assert "[redacted]" in line["reason"]
    totals = digest_totals(clock)["totals"]["expired"]
    assert (totals["failed"], totals["deleted"]) == (1, 1)


def test_a_deletion_the_service_refuses_to_confirm_is_told_failed(clock: Deployment) -> None:
    due_with_a_newer_good_backup(clock)
    clock.sweep()  # sent
    clock.standin.fail_next("csbs", Fault(403, {"error_code": "CSBS.9009", "error_msg": "no"}))

    assert clock.sweep()["failed"] == 1

    [refused] = expired(clock)
    assert refused.attributes["outcome"] == "failed"
    later(clock, 1.01)
    clock.sweep()
    [deleted] = expired(clock)
    assert deleted.attributes["outcome"] == "deleted"


def test_fifteen_due_in_a_project_run_five_at_a_time_each_freeing_its_place(
    clock: Deployment,
) -> None:
    for _ in range(15):
        backed_up(clock, {"plan_id": PLAN_A, "keep_days": 1})
    later(clock, 0.5)
    backed_up(clock, {"plan_id": PLAN_A})
    later(clock, 1)

    clock.sweep()  # five sent
    assert len(deletes(clock)) == 5
    clock.sweep()  # five confirmed, each freeing its place: five more sent at once, no more

    assert len(deletes(clock)) == 10


def test_an_older_backup_that_finishes_last_is_not_the_last_good_one(clock: Deployment) -> None:
    """The last good backup is the newest one that succeeded, not the last to finish: an
    older backup whose servers finish after a newer one's is still deleted at expiry."""
    older = clock.invoke({"plan_id": PLAN_A, "keep_days": 1})["plans"][0]["checkpoint_id"]
    later(clock, 0.1)
    clock.invoke({"plan_id": PLAN_A})
    clock.standin.checkpoints[older].polls = -3  # the older one is slower
    order = []
    for _ in range(8):
        clock.track()
        order += [n.message["checkpoint"]["id"] for n in clock.notifications()
                  if n.attributes["event"] == "completed"]  # fmt: skip
    assert order[1] == older  # the newer one finished first
    later(clock, 1)

    clock.sweep()
    clock.sweep()

    [told] = expired(clock)
    assert told.message["checkpoint"]["id"] == older


def test_an_expired_notification_holds_exactly_what_it_says(
    clock: Deployment, logs: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    older = due_with_a_newer_good_backup(clock)
    clock.sweep()
    clock.sweep(FakeLambdaContext(function_name="csbs-trigger-expiry", aws_request_id="sweep-2"))

    [told] = expired(clock)
    message = dict(told.message)
    assert message.pop("published_at")
    assert message == {
        "schema_version": 1, "event": "expired", "outcome": "deleted", "backend": "csbs",
        "project_id": PROJECT_ID,
        "request": {"plan_id": PLAN_A, "resources": None, "auto_trigger": None,
                    "keep_days": 1},
        "plan_name": "nightly-app-servers", "checkpoint": {"id": older},
        "created_at": iso(T0), "expires_at": iso(T0 + DAY),
        "deleted": [{"resource_id": APP_1, "resource_name": "app-server-1",
                     "status": "available"},
                    {"resource_id": APP_2, "resource_name": "app-server-2",
                     "status": "available"}],
        "kept_as_last_good": [], "error": None, "invocation_id": "sweep-2",
    }  # fmt: skip
    [line] = lines(logs, "expired backup deleting")
    assert (line["checkpoint_id"], line["servers"], line["kept"]) == (older, 2, 0)
    finished = lines(logs, "expiry sweep finished")
    assert [(f["mode"], f["due"], f.get("deleted")) for f in finished] == [
        ("delete", 1, None), ("delete", 1, 1),
    ]  # fmt: skip
    metrics = [name for name, _ in emf(capsys.readouterr().out)]
    assert "BackupsExpired" in metrics
    assert "BackupExpiryFailed" not in metrics


def test_refused_credentials_stop_only_their_own_account(clock: Deployment) -> None:
    """team-b's password was changed: its backups wait, the stack's own are deleted."""
    standin = clock.standin
    standin.projects[THIRD_PROJECT] = "eu-de_third"
    named_secret(clock, "team-b", standin.cloud_secret(project_id=THIRD_PROJECT))
    team = [backed_up(clock, {"plan_id": PLAN_A, "keep_days": 1, "credentials": "team-b"})
            for _ in range(2)]  # fmt: skip
    mine = backed_up(clock, {"plan_id": PLAN_A, "keep_days": 1})
    later(clock, 0.5)
    backed_up(clock, {"plan_id": PLAN_A})
    backed_up(clock, {"plan_id": PLAN_A, "credentials": "team-b"})
    clock.notifications()
    later(clock, 1)
    wrong = standin.cloud_secret(project_id=THIRD_PROJECT, password="old")
    clock.aws.update_secret("csbs-trigger/clouds/team-b", wrong)
    clock.cold_start()

    result = clock.sweep()

    assert (result["stopped_account"], result["deferred"], result["deleting"]) == (1, 1, 1)
    assert [c.path.rsplit("/", 1)[-1] for c in deletes(clock)] == [mine]
    assert not set(team) & {c.path.rsplit("/", 1)[-1] for c in deletes(clock)}


def test_a_sweep_without_its_register_is_a_config_error(clock: Deployment) -> None:
    clock.set_env("EXPIRY_TABLE", None)

    with pytest.raises(ConfigError, match=r"^environment variable EXPIRY_TABLE is not set$"):
        clock.sweep()

"""CBR's backup rows and task entries as servers write them (hypothesis): whatever drift a
poll meets, it reads this restore point's backups only, one per resource and no disks, with
numbers in range, CBR's words kept, and a failed backup's reason from its own task only."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from conftest import Deployment
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from csbs_trigger.aws.tracking import Registration
from csbs_trigger.cloud.checkpoint_items import FAILED, SUCCEEDED, CheckpointItem
from csbs_trigger.deadline import Deadline
from csbs_trigger.errors import TriggerError
from support.lambda_context import FakeLambdaContext
from support.standin import Fault

CHECKPOINT = "f672a1bb-6912-446a-816c-72792c5263e0"
OTHER_CHECKPOINT = "0e5b4d5c-2b4e-4f57-9c49-64a0b2a3c1d7"
VAULT = "3b5816b5-f29c-4172-9d9a-76c719a659ce"
RESOURCES = ["94eba8b2-acc9-4d82-badc-127144cc5526", "e8cc6bfd-d324-4b88-9109-9fb0ba70676f",
             "d6bf7592-ca52-43a2-9979-e418d64b29bb"]  # fmt: skip
STATUSES = ["waiting_protect", "protecting", "available", "error", "waiting_restore",
            "restoring", "waiting_delete", "deleting", "deleted"]  # fmt: skip
SETTINGS = settings(max_examples=80, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip

_TEXT = st.one_of(st.none(), st.text(max_size=300), st.integers(), st.floats(allow_nan=False))
_NUMBER_OR_JUNK = st.one_of(
    st.integers(min_value=-10, max_value=110), st.floats(allow_nan=True),
    st.integers(min_value=0, max_value=100).map(str),
    st.sampled_from(["", "n/a", None, True, 10**400]),
)  # fmt: skip
_TIME = st.one_of(
    _TEXT, st.sampled_from(["2026-12-03T01:02:03.456789", "0001-01-01T00:00:00+01:00"])
)


def as_json_or_object(value: dict[str, Any]) -> st.SearchStrategy[Any]:
    """extend_info / extra_info: an object, the same as a JSON string, or junk."""
    return st.sampled_from([value, json.dumps(value), "{}", "{not json", "null", 5, []])


@st.composite
def backup_rows(draw: st.DrawFn) -> dict[str, Any]:
    ids = st.sampled_from(["b-1", "b-2", " b-3 ", 42, 7.0]) | st.sampled_from([None, " ", {}])
    row: dict[str, Any] = {"id": draw(ids)}
    row["resource_id"] = draw(st.sampled_from([*RESOURCES, None, 17]))
    row["checkpoint_id"] = draw(st.sampled_from([CHECKPOINT, CHECKPOINT, OTHER_CHECKPOINT, None]))
    if draw(st.booleans()):
        row["status"] = draw(st.sampled_from(STATUSES))
    if draw(st.integers(0, 3)) == 0:  # a disk of a server: no resource of its own
        row["parent_id"] = "b-1"
        row["id"] = f"disk-{row['id']}"
    for key in ("resource_name", "updated_at", "resource_size"):
        if draw(st.booleans()):
            row[key] = draw(_TIME)
    if draw(st.booleans()):
        row["extend_info"] = draw(as_json_or_object({"progress": draw(_NUMBER_OR_JUNK)}))
    return row


@st.composite
def task_entries(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from([None, 5, "task", []]))
    resource = {"id": draw(st.sampled_from([*RESOURCES, None]))}
    entry: dict[str, Any] = {
        "id": draw(st.sampled_from(["t-1", "t-2", None])),
        "checkpoint_id": draw(st.sampled_from([CHECKPOINT, OTHER_CHECKPOINT, None])),
        "status": draw(st.sampled_from(["failed", "success", "running"])),
        "extra_info": draw(as_json_or_object({"resource": resource, "common": {"progress": 100}})),
        "error_info": draw(st.one_of(
            st.fixed_dictionaries({"code": _TEXT, "message": _TEXT}),
            st.sampled_from([None, "BackupService.7102", {}]),
        )),
    }  # fmt: skip
    return entry


def poll(deployment: Deployment, backups: list[Any], tasks: list[Any]) -> list[CheckpointItem]:
    """One poll of the restore point, the stand-in answering with these rows and tasks."""
    return poll_answered(
        deployment,
        Fault(200, {"backups": backups, "count": len(backups)}),
        Fault(200, {"operation_logs": tasks, "count": len(tasks)}),
    )


def poll_answered(
    deployment: Deployment, *answers: Fault, expected_items: int | None = None
) -> list[CheckpointItem]:
    """One poll of the restore point of ``expected_items`` resources, the stand-in's CBR
    routes answering with ``answers`` in order."""
    deployment.standin.fail_next("cbr", *answers)
    backup = Registration(checkpoint_id=CHECKPOINT, backend="cbr", target_id=VAULT,
                          plan_name="vault-be94", project_id=None, expected_items=expected_items,
                          started={}, registered_at=1_796_000_000.0,
                          deadline_at=1_796_003_600.0)  # fmt: skip
    deadline = Deadline.from_context(FakeLambdaContext(), 3.05, 20)
    try:
        return deployment.runtime.services["cbr"].poll(backup, deadline)
    finally:
        deployment.standin.clear_faults("cbr")


def text(value: Any) -> str | None:
    """A field as the test reads it: a string or number, its whitespace folded as every text
    shown is; nothing else."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return " ".join(str(value).split()) or None


def decoded(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


@SETTINGS
@given(rows=st.lists(backup_rows(), max_size=8))
def test_any_backup_rows_give_this_restore_points_resources_once(
    deployment: Deployment, rows: list[dict[str, Any]]
) -> None:
    if any(not row.get("parent_id") and text(row["id"]) is None for row in rows):
        with pytest.raises(TriggerError) as unusable:  # a poll to try again, to the deadline
            poll(deployment, rows, [])
        assert unusable.value.category.value == "bad_response"
        return

    items = poll(deployment, rows, [])
    json.dumps([item.to_dict() for item in items])  # publishable as it is
    servers = [row for row in rows if not row.get("parent_id")]
    ours = [row for row in servers if row.get("checkpoint_id") in (CHECKPOINT, None)]
    keys = [item.resource_id or item.id for item in items]
    assert len(keys) == len(set(keys))  # one per resource
    assert set(keys) == {text(row["resource_id"]) or text(row["id"]) for row in ours}
    for item in items:
        assert not item.id.startswith("disk-")
        assert item.checkpoint_id in (CHECKPOINT, None)
        assert item.progress is None or (math.isfinite(item.progress) and 0 <= item.progress <= 100)
        assert item.size_mb is None
        assert item.terminal is (item.status in SUCCEEDED | FAILED)
        assert item.finished_at is None or item.status in ("available", "error")
        assert item.status is None or item.status in STATUSES  # CBR's word, kept
        assert item.fail_reason is None  # no task names a reason here


@SETTINGS
@given(
    statuses=st.lists(st.sampled_from(["available", "error", "protecting"]), min_size=3,
                      max_size=3),
    tasks=st.lists(task_entries(), max_size=8),
)  # fmt: skip
@example(  # another restore point's task names a reason for a server of ours; ours names none
    statuses=["error", "error", "available"],
    tasks=[{"checkpoint_id": OTHER_CHECKPOINT, "extra_info": {"resource": {"id": RESOURCES[0]}},
            "error_info": {"code": "BackupService.7102", "message": "another backup's failure"}},
           {"checkpoint_id": CHECKPOINT, "extra_info": {"resource": {"id": RESOURCES[1]}},
            "error_info": {"code": "BackupService.7102", "message": None}}],
)  # fmt: skip
def test_a_failed_backups_reason_comes_from_its_own_task_only(
    deployment: Deployment, statuses: list[str], tasks: list[Any]
) -> None:
    rows = [{"id": f"b-{index}", "resource_id": resource, "checkpoint_id": CHECKPOINT,
             "status": status} for index, (resource, status) in
            enumerate(zip(RESOURCES, statuses, strict=True))]  # fmt: skip

    items = poll(deployment, rows, tasks)

    assert [(item.resource_id, item.status) for item in items] == list(
        zip(RESOURCES, statuses, strict=True)
    )
    for item in items:
        own = [
            text(decoded(task.get("error_info")).get("message"))
            for task in tasks
            if isinstance(task, dict)
            and task.get("checkpoint_id") == CHECKPOINT
            and text(decoded(decoded(task.get("extra_info")).get("resource")).get("id"))
            == item.resource_id
        ]
        if item.status != "error":
            assert item.fail_reason is None
        elif any(own):
            assert item.fail_reason in own
        else:
            assert item.fail_reason is None

"""Bounded by what the backup can hold, whatever the service sends (issue 25.5): paging, what is
stored for tracking, and the service's text where it is shown."""

from __future__ import annotations

import json
import unicodedata
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import Deployment
from test_cbr import SERVER_1, VAULT
from test_cbr_drift import CHECKPOINT, OTHER_CHECKPOINT, RESOURCES, poll_answered
from test_completion_tracking import completions
from test_operational_trouble import tracked_state

from csbs_trigger.cloud.checkpoint_items import CheckpointItem
from csbs_trigger.errors import UpstreamError
from support.standin import Fault


def backup_lists(deployment: Deployment, since: int = 0) -> list[Any]:
    return [call for call in deployment.standin.calls("cbr")[since:]
            if call.method == "GET" and call.path.endswith("/backups")]  # fmt: skip


def start_vault_backup(deployment: Deployment) -> str:
    result = deployment.invoke({"vault_id": VAULT})
    deployment.notifications()
    return str(result["plans"][0]["checkpoint_id"])


def test_a_healthy_cbr_poll_costs_one_get(deployment: Deployment) -> None:
    deployment.standin.polls_to_finish = 1
    deployment.standin.disks_per_server = 3
    start_vault_backup(deployment)
    deployment.track()  # the restore point lists nothing yet
    since = len(deployment.standin.calls("cbr"))

    assert deployment.track()["succeeded"] == 1

    assert [call.method for call in deployment.standin.calls("cbr")[since:]] == ["GET"]


def test_a_cbr_list_that_pages_on_forever_is_bounded_by_the_restore_points_resources(
    deployment: Deployment,
) -> None:
    """Two servers: however many rows the list claims, it is read no further than the pages
    two servers' backups (and their disks) can fill, and the poll waits for the next."""
    deployment.standin.cbr_page_limit = 1  # one row a page
    deployment.standin.disks_per_server = 5000  # and ever more of them
    checkpoint_id = start_vault_backup(deployment)
    deployment.track()
    since = len(deployment.standin.calls("cbr"))

    assert deployment.track() == {"due": 1, "running": 1}

    assert len(backup_lists(deployment, since)) <= 3
    state = tracked_state(deployment, checkpoint_id)
    assert json.loads(state["last_error"]) == {
        "category": "bad_response",
        "message": "CBR listed more pages in /backups than 128 rows fill",
    }


def poll_pages(
    deployment: Deployment, *pages: list[dict[str, Any]], count: int | None = None
) -> list[CheckpointItem]:
    """One poll of a restore point of two servers, CBR listing its backups in these pages."""
    count = sum(len(page) for page in pages) if count is None else count
    answers = (Fault(200, {"backups": page, "count": count}) for page in pages)
    return poll_answered(deployment, *answers, expected_items=2)


def row(resource: str, checkpoint: str = CHECKPOINT, backup_id: str = "") -> dict[str, Any]:
    return {"id": backup_id or f"{checkpoint[:4]}-{resource}", "resource_id": resource,
            "checkpoint_id": checkpoint, "status": "available"}  # fmt: skip


@pytest.mark.parametrize(
    "pages",
    [
        [[row(RESOURCES[0], OTHER_CHECKPOINT), row(RESOURCES[1], OTHER_CHECKPOINT)],
         [row(RESOURCES[0]), row(RESOURCES[1])]],
        [[row(RESOURCES[0])], [row(RESOURCES[0], backup_id="again")], [row(RESOURCES[1])]],
    ],
    ids=["another restore point's rows first", "a row read twice"],
)  # fmt: skip
def test_paging_stops_only_when_each_server_of_this_restore_point_has_its_row(
    deployment: Deployment, pages: list[list[dict[str, Any]]]
) -> None:
    """CBR filters by ``checkpoint_id`` and pages by offset: where a page holds another restore
    point's rows, or a row again (the list moved between pages), the list is read on."""
    items = poll_pages(deployment, *pages)

    assert sorted(item.resource_id or "" for item in items) == sorted(RESOURCES[:2])
    assert len(backup_lists(deployment)) == len(pages)


@pytest.mark.parametrize("answer", [{"count": 0}, [], {"backups": {"b": 1}}])
def test_a_backup_list_answer_without_its_list_is_a_bad_response(
    deployment: Deployment, answer: Any
) -> None:
    deployment.standin.fail_next("cbr", Fault(200, answer))
    with pytest.raises(UpstreamError) as raised:
        poll_pages(deployment)

    error = raised.value
    assert (error.category.value, error.http_status) == ("bad_response", 200)
    assert str(error) == "CBR answered without a backups list"


def test_a_list_past_its_bound_is_a_bad_response_to_a_200(deployment: Deployment) -> None:
    disk = {**row(RESOURCES[0]), "parent_id": "b-1"}
    with pytest.raises(UpstreamError) as raised:
        poll_pages(deployment, *[[disk]] * 3, count=10**6)

    assert (raised.value.category.value, raised.value.http_status) == ("bad_response", 200)


def test_a_task_list_that_pages_on_forever_is_bounded_and_the_completion_still_told(
    deployment: Deployment,
) -> None:
    deployment.standin.polls_to_finish = 1
    deployment.standin.failing_servers.add(SERVER_1)
    deployment.standin.cbr_page_limit = 1  # one row a page
    deployment.standin.other_tasks = 100_000  # other backups of the vault, since it started
    start_vault_backup(deployment)
    deployment.track()
    since = len(deployment.standin.calls("cbr"))

    assert deployment.track()["failed"] == 1

    task_lists = [call for call in deployment.standin.calls("cbr")[since:]
                  if call.path.endswith("/operation-logs")]  # fmt: skip
    assert 0 < len(task_lists) <= 50
    [completed] = completions(deployment)
    assert completed.message["error"]["category"] == "item_error"


def test_a_restore_point_with_256_skipped_resources_and_long_reasons_is_tracked(
    deployment: Deployment,
) -> None:
    """Each reason and name as long as a notification shows them, in three-byte characters:
    what is stored to follow the backup is cut to fit a DynamoDB item (400 KB)."""
    reason = "\u2603" * 300 + "Ressourcen werden gesichert, bitte später erneut versuchen."
    skipped = [{"id": f"{index:08x}-0000-4000-8000-000000000000", "type": "OS::Nova::Server",
                "name": "\u00e9" * 300, "code": "BackupService.0002",
                "reason": reason} for index in range(254)]  # fmt: skip
    deployment.standin.edit_created = lambda checkpoint: checkpoint["vault"][
        "skipped_resources"
    ].extend(skipped)
    deployment.standin.polls_to_finish = 1

    checkpoint_id = start_vault_backup(deployment)

    state = tracked_state(deployment, checkpoint_id)
    assert state["state"] == "pending"  # registered: followed from the next tracker run
    for _ in range(3):
        deployment.track()
    [completed] = completions(deployment)
    assert completed.message["outcome"] == "failed"
    assert completed.message["summary"]["failed"] == 254
    codes = {
        item["fail_code"] for item in completed.message["items"] if item["status"] == "skipped"
    }
    assert codes == {"BackupService.0002"}


def test_control_characters_from_the_service_never_reach_a_notification(
    deployment: Deployment,
) -> None:
    hostile = "The server \x00stopped\x1b[31m red\x1b]0;title\x07 \x7fend\u009b2J"
    deployment.standin.edit_created = lambda checkpoint: checkpoint["vault"].update(
        name=f"vault\x1b[2J{hostile}"
    )
    deployment.standin.fail_next(
        "csbs", Fault(400, {"error_code": "CSBS.9006", "error_msg": hostile})
    )
    deployment.invoke({"plan_id": "62171999-3df1-42f7-9513-6f9b1bea4744"})
    deployment.invoke({"vault_id": VAULT})

    told = deployment.notifications()
    assert len(told) == 2
    for notification in told:
        assert "stopped" in notification.raw_message
        for text in [notification.subject or "", *strings(notification.message)]:
            assert not [c for c in text if unicodedata.category(c) == "Cc" and c not in "\t\n"]


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [text for item in value for text in strings(item)]
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in [key, *strings(item)]]
    return []


def test_a_backup_tells_when_it_finished_only_when_it_did_at_a_real_time(
    deployment: Deployment,
) -> None:
    running = {**row(RESOURCES[0]), "status": "protecting", "updated_at": "2026-12-06T01:00:00"}
    done = {**row(RESOURCES[1]), "updated_at": "2026-12-06T01:02:03"}
    placeholder = {**row(RESOURCES[1]), "updated_at": "0001-01-01T00:00:00"}

    first, second = poll_pages(deployment, [running, done])
    [_, third] = poll_pages(deployment, [running, placeholder])

    assert (first.finished_at, first.finished) == (None, None)
    assert (second.finished_at, second.finished) == (
        "2026-12-06T01:02:03", datetime(2026, 12, 6, 1, 2, 3, tzinfo=UTC).timestamp(),
    )  # fmt: skip
    assert (third.finished_at, third.finished) == (None, None)


def test_a_list_without_a_count_is_the_rows_it_holds(deployment: Deployment) -> None:
    deployment.standin.fail_next("cbr", Fault(200, {"backups": [row(r) for r in RESOURCES[:2]]}))

    items = poll_pages(deployment)

    assert len(items) == 2
    assert len(backup_lists(deployment)) == 1


def test_a_backup_row_without_an_id_is_a_bad_response(deployment: Deployment) -> None:
    with pytest.raises(UpstreamError) as raised:
        poll_pages(deployment, [{**row(RESOURCES[0]), "id": None}, row(RESOURCES[1])])

    assert str(raised.value) == "CBR listed a backup without an id"

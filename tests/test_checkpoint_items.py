"""Checkpoint items as real servers write them: the documented example, and every drift in the
forms of numbers, of extend_info and of missing fields (hypothesis)."""

from __future__ import annotations

import json
import math
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import Deployment
from hypothesis import given
from hypothesis import strategies as st

from csbs_trigger.cloud.api import segment
from csbs_trigger.cloud.backend import BackupRequest
from csbs_trigger.cloud.checkpoint_items import (
    FAILED,
    SUCCEEDED,
    CheckpointItem,
    of_checkpoint,
    parse_item,
    parse_items_page,
)
from csbs_trigger.cloud.csbs import BACKEND as CSBS
from csbs_trigger.deadline import Deadline
from csbs_trigger.errors import TriggerError
from support.lambda_context import FakeLambdaContext
from support.standin import PROJECT_ID, Fault

REFERENCE = Path(__file__).resolve().parents[2] / "shared/reference/csbs-querying-all-backups.rst"
PLAN_A = "62171999-3df1-42f7-9513-6f9b1bea4744"
PLAN_MANY = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"
SERVER_A = "7a32a8b5-7977-4e24-b5da-e0eb457db75b"
SERVER_B = "b2b433bf-7dd6-4a74-aa8f-85673dfbda48"
STATUSES = ["waiting_protect", "protecting", "available", "waiting_restore", "restoring", "error",
            "waiting_delete", "deleting", "deleted"]  # fmt: skip


def documented_example() -> dict[str, Any]:
    """The example answer of the API page when it is at hand, else the same item by hand."""
    if REFERENCE.exists():
        text = REFERENCE.read_text()
        block = text[text.index("Example response") :].split("Status Codes")[0]
        body = "\n".join(line[6:] for line in block.splitlines()[3:])
        return json.loads(body)  # type: ignore[no-any-return]
    return {"checkpoint_items": [{
        "status": "available", "name": "backup_d32c", "id": "90c1d5fa-1b9f-4aeb-b2f4-81c806e98190",
        "resource_id": "f45c477a-57e5-465f-999f-d845083962db",
        "checkpoint_id": "f672a1bb-6912-446a-816c-72792c5263e0",
        "extend_info": {"fail_reason": "", "finished_at": "2017-04-15T04:25:38.675478",
                        "fail_code": {}, "progress": 100, "resource_name": "karbor_02",
                        "size": 0}}]}  # fmt: skip


def test_the_documented_example_parses() -> None:
    [item] = parse_items_page(documented_example())

    assert item.to_dict() == {
        "id": "90c1d5fa-1b9f-4aeb-b2f4-81c806e98190",
        "resource_id": "f45c477a-57e5-465f-999f-d845083962db",
        "resource_name": "karbor_02",
        "status": "available",
        "progress": 100.0,
        "size_mb": 0.0,
        "finished_at": "2017-04-15T04:25:38.675478",
        "fail_code": None,
        "fail_reason": None,
    }
    assert item.terminal
    assert not item.failed


def test_a_failed_item_names_its_code_and_reason() -> None:
    extend = {"fail_code": {"Code": 4001, "Description": "snapshot failed"},
              "fail_reason": "The server is stopped", "progress": "35"}  # fmt: skip
    item = parse_item({"id": "i-1", "status": "error", "extend_info": json.dumps(extend)})

    assert (item.fail_code, item.fail_reason, item.progress) == (
        "4001",
        "The server is stopped",
        35,
    )
    assert item.failed
    assert item.terminal


@pytest.mark.parametrize("page", [None, [], {"checkpoint_items": {}}, {"items": []}, "x"])
def test_a_page_that_is_no_list_of_items_is_a_bad_response(page: Any) -> None:
    with pytest.raises(TriggerError) as caught:
        parse_items_page(page)
    assert caught.value.category.value == "bad_response"
    assert caught.value.message == "CSBS answered without a checkpoint_items list"


def test_an_item_without_its_own_resource_name_is_named_by_the_item() -> None:
    item = parse_item({"id": "i-1", "name": "backup_app-1", "extend_info": {"resource_name": " "}})

    assert item.resource_name == "backup_app-1"


def test_an_empty_page_is_an_empty_list() -> None:
    assert parse_items_page({"checkpoint_items": []}) == []


@pytest.mark.parametrize(
    ("value", "progress", "size"),
    [(int("9" * 400), None, None), ("9" * 400, None, None), ("1e400", None, None),
     (-1, None, None), (101, None, 101.0), (100, 100.0, 100.0), (0, 0.0, 0.0),
     (" 42.5 ", 42.5, 42.5), (True, None, None), ([50], None, None)],
)  # fmt: skip
def test_numbers_are_finite_and_within_their_range_or_none(
    value: Any, progress: float | None, size: float | None
) -> None:
    item = parse_item({"id": "i-1", "extend_info": {"progress": value, "size": value}})

    assert (item.progress, item.size_mb) == (progress, size)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2027-01-15T08:04:10", 1_800_000_250.0), ("2027-01-15T09:04:10+01:00", 1_800_000_250.0),
     ("2027-01-15T08:04:10.5Z", 1_800_000_250.5), ("2000-01-01T00:00:00", 946_684_800.0),
     ("1999-12-31T23:59:59", None), ("2200-01-01T00:00:00", None),
     ("2199-12-31T23:59:59", 7_258_118_399.0), ("0001-01-01T00:00:00+01:00", None),
     ("9999-12-31T23:59:59-01:00", None), ("yesterday", None), ("", None)],
)  # fmt: skip
def test_a_finish_time_counts_only_where_it_names_a_plausible_moment(
    text: str, seconds: float | None
) -> None:
    item = parse_item({"id": "i-1", "extend_info": {"finished_at": text}})

    assert item.finished == seconds
    assert item.finished_at == (text if seconds is not None else None)


def test_only_the_checkpoints_own_items_count_once_per_server() -> None:
    def listed(item_id: str, resource: str | None, checkpoint: str | None = "cp") -> Any:
        return parse_item({"id": item_id, "resource_id": resource, "checkpoint_id": checkpoint})

    items = [listed("i-1", "r-1"), listed("i-2", "r-1"), listed("i-3", "r-2", "other"),
             listed("i-4", "r-3", None), listed("i-5", None), listed("i-6", None)]  # fmt: skip

    assert [item.id for item in of_checkpoint(items, "cp")] == ["i-1", "i-4", "i-5", "i-6"]


# -- drift -------------------------------------------------------------------------------------


def as_drifted_number(value: float) -> st.SearchStrategy[Any]:
    """The forms a number takes in real answers."""
    return st.sampled_from([value, float(value), str(value), f" {value} ", str(float(value))])


_NUMBER_OR_JUNK = st.one_of(
    st.floats(min_value=0, max_value=100, allow_nan=False).flatmap(as_drifted_number),
    st.integers(min_value=0, max_value=100).flatmap(as_drifted_number),
    st.sampled_from([None, "", "n/a", True, [], {}, float("nan"), float("inf"), -5, 1e9]),
)
_TEXT = st.one_of(st.none(), st.text(max_size=400), st.integers(), st.floats(allow_nan=False))


@st.composite
def drifted_items(draw: st.DrawFn) -> dict[str, Any]:
    extend: dict[str, Any] = {}
    for key, values in (("progress", _NUMBER_OR_JUNK), ("size", _NUMBER_OR_JUNK),
                        ("fail_reason", _TEXT), ("finished_at", _TEXT), ("resource_name", _TEXT),
                        ("fail_code", st.one_of(_TEXT, st.fixed_dictionaries(
                            {"Code": _TEXT, "Description": _TEXT})))):  # fmt: skip
        if draw(st.booleans()):
            extend[key] = draw(values)
    item: dict[str, Any] = {"id": draw(st.sampled_from(["i-1", 42, 7.0, "  i-2 "]))}
    for key in ("checkpoint_id", "resource_id", "name"):
        if draw(st.booleans()):
            item[key] = draw(_TEXT)
    if draw(st.booleans()):
        item["status"] = draw(st.sampled_from(STATUSES))
    form = draw(st.sampled_from(["object", "json string", "missing", "garbage"]))
    if form == "object":
        item["extend_info"] = extend
    elif form == "json string":
        item["extend_info"] = json.dumps(extend)
    elif form == "garbage":
        item["extend_info"] = draw(st.sampled_from(["{not json", "[]", "null", 5]))
    return item


@given(drifted_items())
def test_any_drift_parses_to_numbers_and_kept_words(raw: dict[str, Any]) -> None:
    item = parse_item(raw)
    described = item.to_dict()

    json.dumps(described)  # publishable as it is
    assert item.status == raw.get("status")  # CSBS's words, kept
    for number in (item.progress, item.size_mb):
        assert number is None or (isinstance(number, float) and math.isfinite(number))
    assert item.progress is None or 0 <= item.progress <= 100
    for text in (item.resource_name, item.fail_reason, item.finished_at, item.fail_code):
        assert text is None or (0 < len(text) <= 300 and text == text.strip())
    assert item.terminal is (raw.get("status") in SUCCEEDED | FAILED)
    assert re.fullmatch(r"i-1|42|7|i-2", item.id)


@pytest.mark.parametrize(
    "raw",
    [None, 5, "item", [], {"status": "available"}, {"id": None}, {"id": ""}, {"id": "   "},
     {"id": {}}, {"id": []}],
)  # fmt: skip
def test_an_item_that_is_no_object_or_has_no_id_is_a_bad_response(raw: Any) -> None:
    with pytest.raises(TriggerError) as caught:
        parse_item(raw)
    assert caught.value.category.value == "bad_response"
    assert caught.value.message == "CSBS listed a checkpoint item without an id"


# -- over the wire -------------------------------------------------------------------------------


def _list(deployment: Deployment, checkpoint_id: str, **options: Any) -> list[CheckpointItem]:
    deadline = Deadline.from_context(FakeLambdaContext(), 3.05, 20)
    return deployment.runtime.services["csbs"].list_checkpoint_items(
        checkpoint_id, deadline, **options
    )


def _started(deployment: Deployment, plan: dict[str, Any] | None = None) -> str:
    result = deployment.invoke(plan or {"plan_id": PLAN_A})
    return str(result["plans"][0]["checkpoint_id"])


def test_items_progress_from_none_to_available_or_error(deployment: Deployment) -> None:
    deployment.standin.failing_servers = {SERVER_B}
    checkpoint_id = _started(deployment)

    polls = [_list(deployment, checkpoint_id) for _ in range(4)]

    assert polls[0] == []  # empty for a short while after the checkpoint is created
    assert {item.status for item in polls[1] + polls[2]} == {"protecting"}
    assert [item.progress for item in polls[1]] == [33.0, 33.0]
    finished = {item.resource_id: item for item in polls[3]}
    assert finished[SERVER_A].status == "available"
    assert finished[SERVER_A].size_mb == 1024.0
    assert finished[SERVER_B].status == "error"
    assert finished[SERVER_B].fail_reason == "The server is stopped"
    assert finished[SERVER_B].fail_code == "2001"
    assert all(item.checkpoint_id == checkpoint_id and item.terminal for item in polls[3])


def test_items_are_paged_until_an_empty_page(deployment: Deployment) -> None:
    servers = {str(uuid.uuid4()): f"server-{n}" for n in range(5)}
    deployment.standin.add_plan(PLAN_MANY, "many", servers)
    deployment.standin.polls_to_finish = 0
    checkpoint_id = _started(deployment, {"plan_id": PLAN_MANY})
    _list(deployment, checkpoint_id)  # the first poll: nothing yet
    before = len(deployment.standin.calls("csbs"))

    items = _list(deployment, checkpoint_id, page_size=2)

    assert sorted(item.resource_id or "" for item in items) == sorted(servers)
    pages = deployment.standin.calls("csbs")[before:]
    assert [len(call.query.get("marker", [])) for call in pages] == [0, 1, 1, 1]  # 2, 2, 1, 0
    assert pages[1].query["marker"] == [items[1].id]


def test_a_deleted_checkpoint_is_not_found(deployment: Deployment) -> None:
    checkpoint_id = _started(deployment)
    deployment.standin.checkpoints[checkpoint_id].deleted = True

    with pytest.raises(TriggerError) as caught:
        _list(deployment, checkpoint_id)

    assert (caught.value.category.value, caught.value.code) == ("not_found", "CSBS.3001")


def test_a_get_is_retried_even_after_it_was_sent(deployment: Deployment) -> None:
    # A GET creates nothing: a reset mid-answer and a 503 are simply asked again.
    checkpoint_id = _started(deployment)
    deployment.standin.fail_next(
        "csbs", Fault(200, {"checkpoint_items": []}, reset=True), Fault(503, b"busy gateway")
    )

    assert _list(deployment, checkpoint_id) == []
    assert deployment.sleeps == [0.25, 0.5]


def test_a_revoked_token_is_renewed_for_a_get(deployment: Deployment) -> None:
    checkpoint_id = _started(deployment)
    deployment.standin.revoke_tokens()

    assert _list(deployment, checkpoint_id) == []
    assert len(deployment.standin.calls("iam")) == 2


def test_access_keys_sign_the_get_with_its_query(deployment: Deployment) -> None:
    deployment.set_secret(deployment.standin.access_key_secret())
    deployment.cold_start()
    checkpoint_id = _started(deployment)
    deployment.standin.polls_to_finish = 0
    _list(deployment, checkpoint_id)

    assert len(_list(deployment, checkpoint_id, page_size=1)) == 2  # verified by the SDK signer


def test_a_page_answered_again_is_a_bad_response_at_once(deployment: Deployment) -> None:
    checkpoint_id = _started(deployment)
    page = {"checkpoint_items": [{"id": "item-1", "status": "protecting"}]}
    deployment.standin.fail_next("csbs", Fault(200, page), Fault(200, page))

    with pytest.raises(TriggerError) as raised:
        _list(deployment, checkpoint_id)

    assert raised.value.message == "CSBS answered the same page of checkpoint items"
    assert len([c for c in deployment.standin.calls("csbs") if c.method == "GET"]) == 2


def test_requests_say_who_asks_and_what_they_take(deployment: Deployment) -> None:
    checkpoint_id = _started(deployment)

    _list(deployment, checkpoint_id)

    post, get = deployment.standin.calls("csbs")[:2]
    for call in (post, get):
        assert call.headers["Accept"] == "application/json"
        assert call.headers["User-Agent"] == "csbs-trigger/1"
    # Spelled as every HTTP client spells them: some gateways and their logs are case-sensitive.
    common = ["Accept", "Accept-Encoding", "Host", "User-Agent", "X-Auth-Token"]
    assert sorted(get.headers) == common
    assert sorted(post.headers) == sorted([*common, "Content-Length", "Content-Type"])
    assert post.headers["Content-Type"] == "application/json"
    assert get.query["limit"] == ["100"]  # the default page size


def test_the_project_a_backup_was_created_in_is_known_without_the_answer_naming_it(
    deployment: Deployment,
) -> None:
    deployment.standin.fail_next("csbs", Fault(200, {"checkpoint": {"id": "c-1"}}))
    deadline = Deadline.from_context(FakeLambdaContext(), 3.05, 20)

    execution = deployment.runtime.services["csbs"].start(BackupRequest(CSBS, PLAN_A), deadline)

    assert execution.started.project_id is None
    assert execution.project_id == PROJECT_ID


def test_a_path_segment_is_never_a_way_into_another_path() -> None:
    assert segment("../v3/auth/tokens?x=") == "..%2Fv3%2Fauth%2Ftokens%3Fx%3D"

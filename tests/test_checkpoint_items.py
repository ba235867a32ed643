"""Checkpoint items as real servers write them: the documented example, and every drift in the
forms of numbers, of extend_info and of missing fields (hypothesis)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csbs_trigger.checkpoint_items import FAILED, SUCCEEDED, parse_item, parse_items_page
from csbs_trigger.errors import TriggerError

REFERENCE = Path(__file__).resolve().parents[2] / "shared/reference/csbs-querying-all-backups.rst"
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


def test_an_empty_page_is_an_empty_list() -> None:
    assert parse_items_page({"checkpoint_items": []}) == []


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

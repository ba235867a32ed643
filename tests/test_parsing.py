"""Parsing what real CSBS servers answer, which drifts from the API page."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from csbs_trigger.errors import (
    BUSY_RETRY_AFTER_SECONDS,
    MAX_CODE_LENGTH,
    MAX_REQUEST_ID_LENGTH,
    TRUNCATION_MARK,
    Category,
    TriggerError,
    UpstreamError,
    classify,
    classify_error_answer,
    parse_error_body,
    parse_retry_after,
    truncate,
)
from csbs_trigger.models import parse_checkpoint_answer, parse_checkpoint_body

# The example response of the API page, with its unescaped extra_info made valid JSON
# (tests/fixtures/api-page-example-response.txt is the verbatim one).
API_PAGE_EXAMPLE: dict[str, Any] = {
    "checkpoint": {
        "status": "protecting",
        "created_at": "2016-12-06T21:20:29.898823",
        "id": "14626f11-b54a-44ea-8e69-7463e527506a",
        "resource_graph": None,
        "project_id": "b942cc8342734d15bcb246babb1953cf",
        "protection_plan": {
            "id": "6a6cda7e-7b89-4b14-8e5c-3b6821a97d2c",
            "resources": [
                {
                    "type": "OS::Nova::Server",
                    "id": "1c960fe4-e679-421a-97cd-4f7463d2344b",
                    "name": "server0",
                    "extra_info": "{}",
                }
            ],
            "name": "backup",
        },
        "extra_info": '{"created_by": "manual"}',
    }
}


def with_checkpoint(**fields: Any) -> dict[str, Any]:
    document = json.loads(json.dumps(API_PAGE_EXAMPLE))
    document["checkpoint"].update(fields)
    return document


def test_api_page_example_parses_into_typed_objects() -> None:
    checkpoint = parse_checkpoint_answer(API_PAGE_EXAMPLE)

    assert checkpoint.id == "14626f11-b54a-44ea-8e69-7463e527506a"
    assert checkpoint.status == "protecting"
    assert checkpoint.created_at == "2016-12-06T21:20:29.898823"
    assert checkpoint.project_id == "b942cc8342734d15bcb246babb1953cf"
    assert checkpoint.protection_plan is not None
    assert checkpoint.protection_plan.name == "backup"
    [resource] = checkpoint.protection_plan.resources
    assert (resource.id, resource.type, resource.name) == (
        "1c960fe4-e679-421a-97cd-4f7463d2344b",
        "OS::Nova::Server",
        "server0",
    )
    assert resource.extra_info == {}
    assert checkpoint.extra_info == {"created_by": "manual"}


@pytest.mark.parametrize(
    ("extra_info", "parsed"),
    [
        ('{"created_by": "manual"}', {"created_by": "manual"}),
        ({"created_by": "manual"}, {"created_by": "manual"}),
        (None, None),
        ('{"created_by": "manual"', '{"created_by": "manual"'),  # not JSON: kept raw
        ("[1, 2]", "[1, 2]"),  # JSON, but not an object: kept raw
        ("", ""),
    ],
)
def test_extra_info_is_decoded_where_it_holds_an_object(extra_info: Any, parsed: Any) -> None:
    assert parse_checkpoint_answer(with_checkpoint(extra_info=extra_info)).extra_info == parsed


def test_missing_optional_fields_are_tolerated() -> None:
    checkpoint = parse_checkpoint_answer({"checkpoint": {"id": "abc"}})

    assert checkpoint.id == "abc"
    assert checkpoint.protection_plan is None
    assert checkpoint.extra_info is None


def test_numbers_and_unknown_fields_are_tolerated() -> None:
    document = with_checkpoint(id=12345.0, project_id=7, space_saving_ratio=25.2, unknown={"x": 1})
    document["checkpoint"]["protection_plan"]["resources"][0]["size"] = "40"

    checkpoint = parse_checkpoint_answer(document)

    assert checkpoint.id == "12345"
    assert checkpoint.project_id == "7"


@pytest.mark.parametrize(
    "document",
    [{}, {"checkpoint": None}, {"checkpoint": {"id": ""}}, {"checkpoint": {"id": None}}, []],
)
def test_answer_without_checkpoint_id_is_bad_response(document: Any) -> None:
    with pytest.raises(UpstreamError) as raised:
        parse_checkpoint_answer(document)

    assert raised.value.category is Category.BAD_RESPONSE
    assert raised.value.retryable is False


@pytest.mark.parametrize(
    ("status", "code", "category"),
    [
        (500, "CSBS.1001", Category.BUSY),
        (500, "CSBS.6030", Category.BUSY),
        (500, "CSBS.6032", Category.INVALID_REQUEST),
        (400, "CSBS.6032", Category.INVALID_REQUEST),
        (401, "APIG.0301", Category.AUTH_FAILED),
        (429, "APIG.0308", Category.THROTTLED),
        (400, "CSBS.6045", Category.INVALID_REQUEST),
        (409, None, Category.INVALID_REQUEST),
        (507, None, Category.SERVER_ERROR),
        (504, None, Category.UNAVAILABLE),
        (403, "SomeOther.1", Category.FORBIDDEN),
    ],
)
def test_code_decides_before_status(status: int, code: str | None, category: Category) -> None:
    assert classify(status, code) is category


def test_error_messages_are_cut_to_a_sane_length() -> None:
    code, message, _ = parse_error_body(json.dumps({"error_msg": "x" * 5000}).encode())

    assert code is None
    assert len(message) <= 300


def test_request_id_is_kept() -> None:
    body = {"error_code": "CSBS.3000", "error_msg": "not found", "request_id": "r-1"}

    assert parse_error_body(json.dumps(body).encode()) == ("CSBS.3000", "not found", "r-1")


def test_absurdly_nested_answers_are_classified_not_crashes() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000

    with pytest.raises(UpstreamError) as raised:
        parse_checkpoint_body(deep)
    code, message, _ = parse_error_body(deep)

    assert raised.value.category is Category.BAD_RESPONSE
    assert code is None
    assert message.startswith("[[[")


# -- the error vocabulary, read field by field -------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"<html>Bad Gateway</html>", (None, "<html>Bad Gateway</html>", None)),
        (b"[1, 2]", (None, "[1, 2]", None)),
        (b'{"unexpected": "shape"}', (None, '{"unexpected": "shape"}', None)),
        (b'{"error_code": "CSBS.1001"}', ("CSBS.1001", "", None)),  # a code and no message
        (b'{"error_msg": "busy"}', (None, "busy", None)),
        (b'{"error": {"code": "E", "message": "m", "request_id": "inner"}}', ("E", "m", "inner")),
        (b'{"request_id": "outer", "error": {"code": "E", "message": "m"}}', ("E", "m", "outer")),
        (b"\xff\xfe not UTF-8", (None, "\ufffd\ufffd not UTF-8", None)),
    ],
)
def test_error_bodies_are_read_field_by_field(
    body: bytes, expected: tuple[str | None, str, str | None]
) -> None:
    assert parse_error_body(body) == expected


def test_an_empty_error_answer_still_says_what_answered() -> None:
    error = classify_error_answer("CSBS", 503, b"", {}, token_request=False)

    assert error.message == "CSBS answered HTTP 503: no error message"
    assert (error.category, error.http_status, error.code) == (Category.UNAVAILABLE, 503, None)


def test_codes_and_request_ids_are_cut_to_their_bounds() -> None:
    body = json.dumps({"error_code": "C" * 100, "error_msg": "m"}).encode()

    error = classify_error_answer("CSBS", 400, body, {"X-Request-Id": "r" * 200},
                                  token_request=False)  # fmt: skip

    assert error.code is not None
    assert len(error.code) == MAX_CODE_LENGTH
    assert error.request_id is not None
    assert len(error.request_id) == MAX_REQUEST_ID_LENGTH
    assert error.to_dict()["request_id"] == error.request_id


def test_busy_without_retry_after_says_when_to_try_again() -> None:
    busy = b'{"error_code": "CSBS.1001", "error_msg": "executing", "request_id": "b-1"}'

    error = classify_error_answer("CSBS", 500, busy, {}, token_request=False)

    assert error.retry_after_seconds == BUSY_RETRY_AFTER_SECONDS
    assert error.request_id == "b-1"  # from the body when no header names it
    told = classify_error_answer("CSBS", 500, busy, {"Retry-After": "7"}, token_request=False)
    assert told.retry_after_seconds == 7.0


def test_retry_after_in_every_form_rfc_9110_allows() -> None:
    soon = datetime.now(UTC) + timedelta(seconds=30)

    assert parse_retry_after("0") == 0.0
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after(format_datetime(datetime(2001, 1, 1, tzinfo=UTC), usegmt=True)) == 0.0
    aware = parse_retry_after(format_datetime(soon, usegmt=True))
    naive = parse_retry_after(format_datetime(soon.replace(tzinfo=None)))  # "-0000": no zone
    assert aware is not None
    assert naive is not None
    assert 25 < aware <= 30
    assert 25 < naive <= 30
    assert parse_retry_after("soon") is None


def test_truncation_keeps_the_limit_exactly() -> None:
    assert truncate("x" * 10, 10) == "x" * 10
    assert truncate("x" * 11, 10) == "x" * 9 + TRUNCATION_MARK


def test_an_error_carries_what_it_was_given() -> None:
    error = TriggerError("went wrong", request_id="req-1", http_status=500)

    assert str(error) == "went wrong"
    assert error.attempts == 0
    assert error.to_dict()["request_id"] == "req-1"
    assert UpstreamError.bad_response("odd", http_status=200).http_status == 200
    network = UpstreamError.network("CSBS", ConnectionResetError(), request_sent=True)
    assert network.message == "CSBS could not be reached (ConnectionResetError)"

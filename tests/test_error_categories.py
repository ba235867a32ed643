"""Error answers from the stand-in's real checks, and every error body shape, read right.

The full fault matrix (every status, code and transport failure) is test_fault_matrix.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Deployment, read_event

from support.standin import Fault


def test_unknown_plan_is_not_found(deployment: Deployment) -> None:
    deployment.invoke({"plan_id": "00000000-0000-0000-0000-000000000000"})

    [delivered] = deployment.notifications()
    assert delivered.message["error"]["category"] == "not_found"
    assert delivered.message["error"]["code"] == "CSBS.3000"


def test_resource_outside_the_plan_is_an_invalid_request(deployment: Deployment) -> None:
    deployment.invoke({"plan_id": "62171999-3df1-42f7-9513-6f9b1bea4744", "resources": ["other"]})

    [delivered] = deployment.notifications()
    error = delivered.message["error"]
    assert error["category"] == "invalid_request"
    assert "is not in the backup policy" in error["message"]  # read from Karbor's nested shape


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({"error": {"code": "CSBS.9006", "message": "quota exceeded"}}, "CSBS.9006", "quota"),
        ({"errorCode": "CSBS.9006", "errorMsg": "quota exceeded"}, "CSBS.9006", "quota"),
        ({"code": "CSBS.9006", "message": "quota exceeded"}, "CSBS.9006", "quota"),
        ({"badRequest": {"code": 400, "message": "Invalid input"}}, None, "Invalid input"),
        (b"plain text failure", None, "plain text failure"),
    ],
)
def test_every_error_body_shape_is_read(
    deployment: Deployment, body: dict[str, Any] | bytes, code: str | None, message: str
) -> None:
    deployment.standin.fail_next("csbs", Fault(400, body))

    deployment.invoke(read_event("direct.json"))

    [delivered] = deployment.notifications()
    assert delivered.message["error"]["code"] == code
    assert message in delivered.message["error"]["message"]


def test_token_answer_without_token_header_is_bad_response(deployment: Deployment) -> None:
    deployment.standin.fail_next(
        "iam", Fault(201, {"token": {"expires_at": "2099-01-01T00:00:00Z"}})
    )

    deployment.invoke(read_event("direct.json"))

    [delivered] = deployment.notifications()
    assert delivered.message["error"]["category"] == "bad_response"

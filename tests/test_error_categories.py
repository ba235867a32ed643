"""Every error category, each from a real HTTP exchange with the stand-in (or a real socket)."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from conftest import Deployment, read_event

from support.standin import Fault

# (fault CSBS answers with, category, retryable, http_status, code)
CSBS_ANSWERS: dict[str, tuple[Fault, str, bool, int | None, str | None]] = {
    "400 resource condition": (
        Fault(400, {"error_code": "CSBS.6006", "error_msg": "The server is stopped"}),
        "invalid_request", False, 400, "CSBS.6006",
    ),
    "400 project may not use CSBS": (
        Fault(400, {"error_code": "BackupService.4008", "error_msg": "New project not allowed"}),
        "forbidden", False, 400, "BackupService.4008",
    ),
    "403 unverified user": (
        Fault(403, {"error_code": "CSBS.9009", "error_msg": "user is unverified"}),
        "forbidden", False, 403, "CSBS.9009",
    ),
    "404 plan not found": (
        Fault(404, {"error_code": "CSBS.3000", "error_msg": "Backup policy not found"}),
        "not_found", False, 404, "CSBS.3000",
    ),
    "500 manual run in progress": (
        Fault(500, {"error_code": "CSBS.1001", "error_msg": "executing"}),
        "busy", True, 500, "CSBS.1001",
    ),
    "500 automatic run in progress": (
        Fault(500, {"error_code": "CSBS.6030", "error_msg": "auto run"}),
        "busy", True, 500, "CSBS.6030",
    ),
    "400 item executing": (
        Fault(400, {"error_code": "CSBS.2004", "error_msg": "item executing"}),
        "busy", True, 400, "CSBS.2004",
    ),
    "500 no server to back up": (
        Fault(500, {"error_code": "CSBS.6032", "error_msg": "no server can be backed up"}),
        "invalid_request", False, 500, "CSBS.6032",
    ),
    "429 gateway throttling": (
        Fault(429, {"error_code": "APIGW.0308", "error_msg": "throttled"}, {"Retry-After": "2"}),
        "throttled", True, 429, "APIGW.0308",
    ),
    "500 internal failure": (
        Fault(500, {"error_code": "CSBS.9999", "error_msg": "internal failure"}),
        "server_error", True, 500, "CSBS.9999",
    ),
    "502 bad gateway, not JSON": (
        Fault(502, b"<html>Bad Gateway</html>", {"Content-Type": "text/html"}),
        "unavailable", True, 502, None,
    ),
    "503 unavailable": (
        Fault(503, {"error_code": "APIGW.0201", "error_msg": "Service unavailable"}),
        "unavailable", True, 503, "APIGW.0201",
    ),
    "504 gateway timeout": (
        Fault(504, b""), "unavailable", True, 504, None,
    ),
    "200 without checkpoint id": (
        Fault(200, {"checkpoint": {"status": "protecting"}}), "bad_response", False, 200, None,
    ),
    "200 not JSON": (
        Fault(200, b"OK", {"Content-Type": "text/plain"}), "bad_response", False, 200, None,
    ),
    "connection reset mid-body": (
        Fault(200, {"checkpoint": {"id": "x" * 200}}, reset=True), "network", True, None, None,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CSBS_ANSWERS.keys())
def test_csbs_answer_maps_to_its_category(deployment: Deployment, case: str) -> None:
    fault, category, retryable, http_status, code = CSBS_ANSWERS[case]
    deployment.standin.fail_next("csbs", fault)

    deployment.invoke(read_event("direct.json"))

    [delivered] = deployment.notifications()
    error = delivered.message["error"]
    assert (error["category"], error["retryable"], error["http_status"], error["code"]) == (
        category,
        retryable,
        http_status,
        code,
    )
    assert delivered.attributes["error_category"] == category
    assert delivered.message["attempts"] == 1
    assert len(deployment.standin.calls("csbs")) == 1


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


def test_answer_past_the_read_timeout_is_a_timeout(deployment: Deployment) -> None:
    deployment.set_env("CSBS_READ_TIMEOUT_SECONDS", "0.2")
    deployment.standin.fail_next("csbs", Fault(200, delay_seconds=30))

    deployment.invoke(read_event("direct.json"))

    [delivered] = deployment.notifications()
    assert delivered.message["error"]["category"] == "timeout"
    assert delivered.message["error"]["retryable"] is True


def test_refused_connection_is_a_network_error(deployment: Deployment) -> None:
    with socket.socket() as closed:  # a port that was just free: nothing listens there
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    deployment.set_secret(deployment.standin.cloud_secret(csbs_endpoint=f"http://127.0.0.1:{port}"))

    deployment.invoke(read_event("direct.json"))

    [delivered] = deployment.notifications()
    assert delivered.message["error"]["category"] == "network"
    assert delivered.message["error"]["retryable"] is True


def test_refused_credentials_are_auth_failed(deployment: Deployment) -> None:
    deployment.set_secret(deployment.standin.cloud_secret(password="wrong-password"))

    deployment.invoke(read_event("direct.json"))

    [delivered] = deployment.notifications()
    assert delivered.message["error"]["category"] == "auth_failed"
    assert delivered.message["error"]["http_status"] == 401
    assert deployment.standin.calls("csbs") == []


def test_failing_token_endpoint_is_classified_by_its_status(deployment: Deployment) -> None:
    deployment.standin.fail_next("iam", Fault(503, b"maintenance"))

    deployment.invoke(read_event("direct.json"))

    [delivered] = deployment.notifications()
    assert delivered.message["error"]["category"] == "unavailable"
    assert delivered.message["error"]["message"].startswith("IAM answered HTTP 503")


def test_token_answer_without_token_header_is_bad_response(deployment: Deployment) -> None:
    deployment.standin.fail_next(
        "iam", Fault(201, {"token": {"expires_at": "2099-01-01T00:00:00Z"}})
    )

    deployment.invoke(read_event("direct.json"))

    [delivered] = deployment.notifications()
    assert delivered.message["error"]["category"] == "bad_response"

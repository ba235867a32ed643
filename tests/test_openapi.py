"""The OpenAPI document of the webhook endpoint agrees with the template and the code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, Deployment, read_event
from jsonschema import Draft202012Validator
from test_webhooks import generic_event, jira_event

from csbs_trigger.triggers.webhooks import STATUSES
from support.check_template import expand
from support.http_api import http_api_event
from support.standin import Fault
from support.webhook_samples import SAMPLE_TIME

SPEC: dict[str, Any] = yaml.safe_load(Path(ROOT / "functions/webhook/openapi.yaml").read_text())
OPERATION = SPEC["paths"]["/webhooks/{source}"]["post"]


def test_document_is_valid_openapi() -> None:
    from openapi_spec_validator import validate  # a third of a second: only where it is used

    validate(SPEC)  # raises on an invalid document, as it does here:
    broken = {**SPEC, "paths": {"/webhooks/{source}": {"post": {"responses": "none"}}}}
    with pytest.raises(Exception, match="responses"):
        validate(broken)


def when_enabled(value: Any) -> Any:
    """SAM wraps a conditional function's routes in Fn::If [condition, value, NoValue]."""
    return value["Fn::If"][1] if isinstance(value, dict) and "Fn::If" in value else value


def test_document_lists_exactly_the_routes_of_the_template() -> None:
    resources = expand(ROOT / "template.yaml")["Resources"]
    [api] = [r for r in resources.values() if r["Type"] == "AWS::ApiGatewayV2::Api"]
    routes = {
        (path, method)
        for path, methods in api["Properties"]["Body"]["paths"].items()
        for method in when_enabled(methods)
    }

    documented = {(path, method) for path, methods in SPEC["paths"].items() for method in methods}
    assert routes == {("/webhooks/{source}", "post")}
    assert documented == routes


def test_document_lists_exactly_the_statuses_the_handler_answers() -> None:
    assert {int(status) for status in OPERATION["responses"]} == set(STATUSES)


def documented_schema(status: int) -> Draft202012Validator:
    response = OPERATION["responses"][str(status)]
    if "$ref" in response:
        response = SPEC["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    schema = response["content"]["application/json"]["schema"]
    return Draft202012Validator({**schema, "components": SPEC["components"]})


@pytest.mark.parametrize(
    ("name", "status"),
    [("jira sample", 201), ("unknown source", 404), ("unsigned", 401), ("busy", 503),
     ("unmappable", 422), ("a comment", 200), ("a vault", 201), ("a busy vault", 503)],
)  # fmt: skip
def test_real_answers_match_the_documented_schemas(
    deployment: Deployment, name: str, status: int
) -> None:
    deployment.now = SAMPLE_TIME  # the Jira sample's signed body says when it was sent
    event = read_event("webhook-jira.json")
    if name == "unknown source":
        event = http_api_event("POST", "/webhooks/nobody", {}, b"{}")
    elif name == "unsigned":
        event["headers"].pop("x-hub-signature")
    elif name == "busy":
        deployment.standin.fail_next("csbs", Fault(500, {"error_code": "CSBS.1001"}))
    elif name == "a comment":  # no status change in its changelog: not news for a backup
        body = json.loads(event["body"])
        body["changelog"]["items"][0]["field"] = "comment"
        event = jira_event(json.dumps(body).encode(), fresh=False)
    elif name in ("a vault", "a busy vault"):
        vault = "3b5816b5-f29c-4172-9d9a-76c719a659ce"
        deployment.now = None  # the generic sender signs with the time it sends at
        if name == "a busy vault":
            deployment.standin.fail_next("cbr", Fault(500, {"error_code": "BackupService.0002"}))
        event = generic_event(json.dumps({"vault_id": vault}).encode())
    elif name == "unmappable":
        source = {"scheme": "hub-signature", "plan_id": "issue.nothing", "delivery_id": "issue.id"}
        deployment.set_env("WEBHOOK_SOURCES", json.dumps({"jira": source}))

    answer = deployment.invoke_webhook(event)

    assert answer["statusCode"] == status
    errors = list(documented_schema(status).iter_errors(json.loads(answer["body"])))
    assert errors == []

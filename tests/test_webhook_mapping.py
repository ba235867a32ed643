"""Bodies a signed sender may send (issue 25.3): a source's JMESPath that cannot take the body's
types is an ``invalid_event`` (422, one notification), and a ``when`` that cannot is not met;
the mapping step never crashes, whatever the body holds."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from conftest import Deployment
from hypothesis import given, settings
from hypothesis import strategies as st
from test_webhooks import SECRETS, body_of, generic_event

from csbs_trigger.errors import Category, ConfigError
from csbs_trigger.plans import RejectedPlan
from csbs_trigger.triggers.webhook_sources import Mapped, load_sources

PLAN_A = "62171999-3df1-42f7-9513-6f9b1bea4744"
# Expressions an operator may well write, and that raise on some bodies' types.
RISKY = ["join(',', ids)", "sort(ids)", "max(ids)", "sum(ids)", "ids[0] > `1`", "length(ids)",
         "sort_by(ids, &a)", "merge(a, b)", "abs(a)", "to_number(a)", "ids[?a > `1`] | [0].a",
         "starts_with(a, 'x')", "a.b.c", "not_null(a, b)"]  # fmt: skip
GENERIC = {"scheme": "standard-webhooks", "delivery_id": {"header": "webhook-id"}}


def source_with(**mapping: Any) -> Any:
    return load_sources(json.dumps({"generic": {**GENERIC, **mapping}}))["generic"]


def using(deployment: Deployment, **mapping: Any) -> None:
    deployment.set_env("WEBHOOK_SOURCES", json.dumps({"generic": {**GENERIC, **mapping}}))
    deployment.aws.update_secret("csbs-trigger/webhooks", SECRETS)


@pytest.mark.parametrize(("resources", "ids"), [
    ("join(',', ids)", [1, 2]),
    ("sort(ids)", [1, "a"]),
], ids=["join over numbers", "sort over mixed types"])  # fmt: skip
def test_a_mapping_that_cannot_take_the_body_is_an_invalid_event(
    deployment: Deployment, resources: str, ids: list[Any]
) -> None:
    using(deployment, plan_id="plan", resources=resources)

    answer = deployment.invoke_webhook(generic_event({"plan": PLAN_A, "ids": ids}))

    assert answer["statusCode"] == 422
    assert body_of(answer)["error"] == "invalid_event"
    [told] = deployment.notifications()
    assert told.message["error"]["category"] == "invalid_event"
    assert f"resources at {resources!r} cannot be read" in told.message["error"]["message"]
    assert deployment.standin.requests == []


def test_a_condition_that_cannot_take_the_body_is_not_met(deployment: Deployment) -> None:
    using(deployment, plan_id="plan", when="ids[0] > `1`")

    answer = deployment.invoke_webhook(generic_event({"plan": PLAN_A, "ids": ["a"]}))

    assert answer["statusCode"] == 200
    assert "ignored" in body_of(answer)
    assert deployment.notifications() == []
    assert deployment.standin.requests == []


@pytest.mark.parametrize("met", [1, "true", [True], {"a": True}, "yes"])
def test_a_condition_is_met_by_true_only(met: Any) -> None:
    source = source_with(plan_id="plan", when="met")

    assert source.ignores({"met": met}) is not None
    assert source.ignores({"met": True}) is None


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["ids", "a", "b", "plan", "c"]), children, max_size=4)
    ),
    max_leaves=16,
)


@settings(max_examples=300)
@given(body=_JSON, plan=st.sampled_from(RISKY), resources=st.sampled_from(RISKY),
       when=st.sampled_from(RISKY), reference=st.sampled_from(RISKY))  # fmt: skip
def test_the_mapping_step_never_raises_whatever_the_body(
    body: Any, plan: str, resources: str, when: str, reference: str
) -> None:
    source = source_with(plan_id=plan, resources=resources, when=when, reference=reference)
    headers = {"webhook-id": str(uuid.uuid4())}

    mapped = source.map(body, headers)
    ignored = source.ignores(body)

    assert isinstance(mapped, Mapped)
    assert ignored is None or isinstance(ignored, str)
    if isinstance(mapped.plan, RejectedPlan):
        assert mapped.plan.error.category is Category.INVALID_EVENT


@pytest.mark.parametrize("backend", ["tape", ["cbr"], {"cbr": 1}, 3])
def test_a_fixed_backend_that_is_none_of_them_is_a_config_error(backend: Any) -> None:
    override = {"names": {"scheme": "bearer", "resource_names": "hosts", "delivery_id": "id",
                          "fixed": {"backend": backend}}}  # fmt: skip

    with pytest.raises(ConfigError, match="fixed backend must be one of csbs, cbr"):
        load_sources(json.dumps(override))

"""Event validation: every shape accepted, every bad input named, nothing guessed."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import read_event

from csbs_trigger.cloud.backend import BackupRequest
from csbs_trigger.cloud.cbr import BACKEND as CBR
from csbs_trigger.cloud.csbs import BACKEND as CSBS
from csbs_trigger.plans import Resolution
from csbs_trigger.triggers.events import (
    MAX_PLANS_PER_EVENT,
    RejectedPlan,
    parse_event,
    parse_plan,
)

PLAN = "62171999-3df1-42f7-9513-6f9b1bea4744"
SERVER = "7a32a8b5-7977-4e24-b5da-e0eb457db75b"


def only_request(event: Any) -> BackupRequest:
    [item] = parse_event(event).items
    assert isinstance(item, BackupRequest), item
    return item


def only_rejection(event: Any) -> str:
    [item] = parse_event(event).items
    assert isinstance(item, RejectedPlan), item
    assert item.error.category.value == "invalid_event"
    return item.error.message


def only_resolution(event: Any) -> Resolution:
    [item] = parse_event(event).items
    assert isinstance(item, Resolution), item
    return item


@pytest.mark.parametrize("name", ["schedule.json", "direct.json", "eventbridge.json", "batch.json"])
def test_every_valid_sample_parses_without_rejections(name: str) -> None:
    parsed = parse_event(read_event(name))

    assert parsed.items
    assert all(isinstance(item, BackupRequest) for item in parsed.items)


def test_optional_fields_stay_unset_when_absent() -> None:
    request = only_request({"plan_id": PLAN})

    assert request == BackupRequest(CSBS, PLAN)
    assert request.parameters() == {}


def test_given_fields_are_kept_as_given() -> None:
    request = only_request({"plan_id": PLAN, "resources": [SERVER], "auto_trigger": True})

    assert request.parameters() == {"auto_trigger": True, "resources": [SERVER]}


def test_an_empty_server_list_is_refused_not_sent() -> None:
    # CSBS would be asked to back up no server at all; leaving the key out means every server.
    [item] = parse_event({"plan_id": PLAN, "resources": []}).items

    assert isinstance(item, RejectedPlan)
    assert item.error.category.value == "invalid_event"
    assert "event.resources is empty" in item.error.message


def test_an_eventbridge_event_without_a_usable_id_is_refused() -> None:
    # The id names the event across EventBridge's retries; text that cannot be encoded (a lone
    # surrogate, which JSON allows) could never be published either.
    for bad_id in ("\ud800", None, "", "x" * 257, "evt\n1"):
        event = {**read_event("eventbridge.json"), "id": bad_id}
        parsed = parse_event(event)
        [item] = parsed.items
        assert isinstance(item, RejectedPlan), bad_id
        assert "event.id must be the EventBridge event id" in item.error.message
        assert item.target_id == read_event("eventbridge.json")["detail"]["plan_id"]


def test_trigger_source_follows_the_event_shape() -> None:
    assert parse_event(read_event("schedule.json")).trigger.source == "schedule"
    assert parse_event(read_event("eventbridge.json")).trigger.source == "eventbridge"
    direct = parse_event({"plan_id": PLAN}, request_id="req-1").trigger
    assert (direct.source, direct.id) == ("direct", "req-1")


def test_eventbridge_detail_may_carry_a_batch() -> None:
    event = read_event("eventbridge.json")
    event["detail"] = read_event("batch.json")

    parsed = parse_event(event)

    assert parsed.trigger.source == "eventbridge"
    assert len(parsed.items) == 2


@pytest.mark.parametrize(
    ("event", "named"),
    [
        ([PLAN], "event must be a JSON object, got list"),
        ("plan", "event must be a JSON object, got a string of 4 characters"),
        ({}, "event.plan_id or vault_id is missing"),
        ({"plan_id": ""}, "event.plan_id must be an id"),
        ({"plan_id": "x" * 65}, "event.plan_id must be an id"),
        ({"plan_id": "../../etc"}, "event.plan_id must be an id"),
        ({"plan_id": 42}, "got int"),
        ({"plan_id": PLAN, "resources": SERVER}, "event.resources must be a list"),
        ({"plan_id": PLAN, "resources": [SERVER, SERVER]}, "lists a resource id twice"),
        ({"plan_id": PLAN, "resources": [None]}, "event.resources[0] must be an id"),
        ({"plan_id": PLAN, "resources": ["a"] * 101}, "at most 100"),
        ({"plan_id": PLAN, "auto_trigger": "false"}, "auto_trigger must be true or false"),
        ({"plan_id": PLAN, "plan": PLAN}, "unknown keys 'plan'"),
        ({"plan_id": PLAN, "scheduled_time": ""}, "needs schedule_arn and scheduled_time"),
        (
            {
                "plan_id": PLAN,
                "schedule_arn": "arn:aws:scheduler:eu-central-1:123456789012:schedule/default/x",
            },
            "needs schedule_arn and scheduled_time together",
        ),
        (
            {
                "plan_id": PLAN,
                "schedule_arn": "<aws.scheduler.schedule-arn>",
                "scheduled_time": "<aws.scheduler.scheduled-time>",
            },
            "must be an EventBridge Scheduler",
        ),
        (
            {
                "plan_id": PLAN,
                "schedule_arn": "arn:aws:scheduler:eu-central-1:123456789012:schedule/default/x",
                "scheduled_time": "yesterday",
            },
            "must be an ISO 8601 time",
        ),
        ({"plans": []}, "event.plans must be a non-empty list"),
        ({"plans": [{"plan_id": PLAN}] * (MAX_PLANS_PER_EVENT + 1)}, "at most 1000 per event"),
        ({"plans": [{"plan_id": PLAN}], "extra": 1}, "unknown keys 'extra'"),
        ({"detail-type": "x", "source": "y", "detail": None}, "detail must be a JSON object"),
    ],
)
def test_invalid_events_are_rejected_with_the_field_named(event: Any, named: str) -> None:
    assert named in only_rejection(event)


def test_rejection_never_echoes_the_bad_value() -> None:
    message = only_rejection({"plan_id": "<script>alert(1)</script>"})

    assert "<script>" not in message


def test_batch_rejects_bad_plans_one_by_one() -> None:
    event = {"plans": [{"plan_id": PLAN}, {"plan_id": PLAN, "auto_trigger": 1}, "oops"]}

    good, bad, worse = parse_event(event).items

    assert isinstance(good, BackupRequest)
    assert isinstance(bad, RejectedPlan)
    assert bad.target_id == PLAN
    assert "plans[1].auto_trigger" in bad.error.message
    assert isinstance(worse, RejectedPlan)
    assert worse.target_id is None
    assert "plans[2] must be an object" in worse.error.message


# -- the words of each refusal (they reach the failed notification) -----------------------------

ARN = "arn:aws:scheduler:eu-central-1:123456789012:schedule/default/nightly"
LONG_KEY = "k" * 50


@pytest.mark.parametrize(
    ("event", "message", "plan_id"),
    [
        ({"plans": [{"plan_id": PLAN}], "extra": 1},
         "event has unknown keys 'extra'; allowed: plans, schedule_arn, scheduled_time", None),
        ({"plans": [None]}, "event.plans[0] must be an object, got null", None),
        ({"plans": [5]}, "event.plans[0] must be an object, got int", None),
        ({"plan": PLAN}, "event.plan_id or vault_id is missing (unknown keys: 'plan')", None),
        ({"resources": [SERVER], "plan": PLAN},
         "event.plan_id or vault_id is missing (unknown keys: 'plan')", None),
        ({"plan_id": PLAN, "schedule_arn": ARN},
         "event needs schedule_arn and scheduled_time together (they name one firing)", PLAN),
        ({"plans": [{"plan_id": PLAN}], "schedule_arn": ARN},
         "event needs schedule_arn and scheduled_time together (they name one firing)", None),
        ({"plan_id": "not an id", "x": 1}, "event has unknown keys 'x'; allowed: auto_trigger, "
         "backend, credentials, keep_days, plan_id, project_id, resources, schedule_arn, "
         "scheduled_time",
         None),
        ({"plans": [{"plan_id": PLAN, "x": 1}]},
         "event.plans[0] has unknown keys 'x'; allowed: auto_trigger, backend, credentials, "
         "keep_days, plan_id, project_id, resources", PLAN),
    ],
)  # fmt: skip
def test_each_refusal_names_where_and_what(
    event: dict[str, Any], message: str, plan_id: str | None
) -> None:
    parsed = parse_event(event)

    [item] = parsed.items[:1]
    assert isinstance(item, RejectedPlan)
    assert item.error.message == message
    assert item.target_id == plan_id
    assert parsed.trigger.source == "direct"  # half a schedule names no firing


def eventbridge(event_id: Any) -> dict[str, Any]:
    return {"id": event_id, "detail-type": "Backup", "source": "ops", "detail": {"plan_id": PLAN}}


@pytest.mark.parametrize("event_id", [5, "", "x" * 257, None])
def test_an_eventbridge_event_without_a_usable_id_starts_nothing(event_id: Any) -> None:
    parsed = parse_event(eventbridge(event_id))

    assert (parsed.trigger.source, parsed.trigger.id) == ("eventbridge", None)
    [item] = parsed.items
    assert isinstance(item, RejectedPlan)
    kinds = {5: "int", None: "null", "": "a string of 0 characters"}
    kind = kinds.get(event_id, f"a string of {len(str(event_id))} characters")
    assert item.error.message == (
        f"event.id must be the EventBridge event id (1 to 256 characters of valid text), got {kind}"
    )
    assert item.target_id == PLAN


@pytest.mark.parametrize("event_id", ["a", "x" * 256])
def test_eventbridge_ids_of_one_to_256_characters_name_the_trigger(event_id: str) -> None:
    assert parse_event(eventbridge(event_id)).trigger.id == event_id


def test_unknown_keys_are_named_five_at_most_forty_characters_each() -> None:
    keys = [f"{n}{LONG_KEY}" for n in range(6)]

    message = only_rejection({"plan_id": PLAN, **dict.fromkeys(keys, 1)})

    named = [key[:40] for key in keys]
    assert ", ".join(repr(name) for name in named[:5]) in message
    assert repr(named[5]) not in message
    assert repr(keys[0][:41]) not in message


def test_a_plan_may_name_exactly_the_most_servers() -> None:
    servers = [f"server-{n}" for n in range(100)]

    assert only_request({"plan_id": PLAN, "resources": servers}).resources == tuple(servers)


def test_a_mapped_plan_is_checked_as_an_event_plan() -> None:
    """What a webhook mapping produced (parse_plan), named by where it came from."""
    accepted = parse_plan({"plan_id": PLAN, "resources": [SERVER]}, where="body")
    refused = parse_plan({"plan": PLAN}, where="body")

    assert accepted == BackupRequest(CSBS, PLAN, (SERVER,))
    assert isinstance(refused, RejectedPlan)
    assert refused.error.message == "body.plan_id or vault_id is missing (unknown keys: 'plan')"
    invalid = parse_plan({"plan_id": PLAN, "resources": "not a list"}, where="body")
    assert isinstance(invalid, RejectedPlan)
    assert invalid.target_id == PLAN  # the notification still names the plan


# Plans that name what to back up rather than what protects it (issue 28), parsed as any other
# plan: each field checked at the boundary, each refusal naming the field.
PROJECT = "0123456789abcdef0123456789abcdef"
NAMES_MAX = [f"web-{i:03d}" for i in range(100)]


@pytest.mark.parametrize(
    ("plan", "expected"),
    [
        ({"resources": [SERVER]}, Resolution(None, resources=(SERVER,))),
        ({"resources": [SERVER], "backend": "csbs"}, Resolution(CSBS, resources=(SERVER,))),
        ({"resource_names": ["web-1", "db 2"], "backend": "cbr", "keep_days": 1},
         Resolution(CBR, resource_names=("web-1", "db 2"), keep_days=1)),
        ({"resource_names": NAMES_MAX}, Resolution(None, resource_names=tuple(NAMES_MAX))),
        ({"resource_names": ["x" * 64], "keep_days": 3650},
         Resolution(None, resource_names=("x" * 64,), keep_days=3650)),
        ({"policy_id": PLAN}, Resolution(CBR, policy_id=PLAN)),
        ({"policy_id": PLAN, "backend": "cbr", "resources": [SERVER]},
         Resolution(CBR, policy_id=PLAN, resources=(SERVER,))),
        ({"resources": [SERVER], "project_id": PROJECT, "credentials": "team-b/ops_1"},
         Resolution(None, resources=(SERVER,), project_id=PROJECT, credentials="team-b/ops_1")),
    ],
)  # fmt: skip
def test_each_form_of_a_plan_to_resolve_parses_to_what_it_names(
    plan: dict[str, Any], expected: Resolution
) -> None:
    [item] = parse_event(plan).items

    assert item == expected


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ({"resources": [SERVER], "backend": "karbor"},
         "event.backend must be one of csbs, cbr, got a string"),
        ({"resources": [SERVER], "backend": 1}, "event.backend must be one of csbs, cbr, got"),
        ({"policy_id": PLAN, "backend": "csbs"},
         "event.policy_id is a CBR policy: backend must be cbr"),
        ({"policy_id": "no id!"}, "event.policy_id must be an id of 1 to 64"),
        ({"resources": [SERVER], "resource_names": ["web"]},
         "event names resources and resource_names: one of them"),
        ({"policy_id": PLAN, "resource_names": ["web"]},
         "event.resource_names goes without policy_id: name servers by id (resources)"),
        ({"resource_names": []}, "event.resource_names must be a non-empty list of names"),
        ({"resource_names": "web"}, "event.resource_names must be a non-empty list of names"),
        ({"resource_names": [*NAMES_MAX, "one-more"]},
         "event.resource_names holds 101 names; at most 100"),
        ({"resource_names": ["web", ""]},
         "event.resource_names[1] must be a server name of 1 to 64 printable characters, got a "
         "string of 0 characters"),
        ({"resource_names": ["x" * 65]}, "event.resource_names[0] must be a server name of 1 to"),
        ({"resource_names": [" web"]}, "event.resource_names[0] must be a server name"),
        ({"resource_names": ["web\x1b[31m"]}, "event.resource_names[0] must be a server name"),
        ({"resource_names": [7]},
         "event.resource_names[0] must be a server name of 1 to 64 printable characters, got "
         "int"),
        ({"resource_names": ["web", "web"]}, "event.resource_names lists a name twice"),
        ({"resources": [SERVER], "keep_days": 0},
         "event.keep_days must be a whole number of days from 1 to 3650, got 0"),
        ({"resources": [SERVER], "keep_days": 3651},
         "event.keep_days must be a whole number of days from 1 to 3650, got 3651"),
        ({"resources": [SERVER], "keep_days": True},
         "event.keep_days must be a whole number of days from 1 to 3650, got bool"),
        ({"resources": [SERVER], "keep_days": 1.5},
         "event.keep_days must be a whole number of days from 1 to 3650, got float"),
        ({"resources": [SERVER], "project_id": PROJECT.upper()},
         "event.project_id must be a project id of 32 hex digits"),
        ({"resources": [SERVER], "credentials": "team b"}, "event.credentials must be"),
        ({"resources": [SERVER], "project_id": 7},
         "event.project_id must be a project id of 32 hex digits, got int"),
        ({"policy_id": PLAN, "resources": []},
         "event.resources is empty: leave it out to back up every resource of the policy"),
        ({"resource_names": ["w"]}, None),
        ({"resources": [SERVER], "vault": "v"},
         "event.plan_id or vault_id is missing (unknown keys: 'vault')"),
        ({"resource_names": ["web"], "backend": "csbs", "incremental": True},
         "event has unknown keys 'incremental'; allowed: auto_trigger, backend, credentials, "
         "keep_days, policy_id, project_id, resource_names, resources, schedule_arn, "
         "scheduled_time"),
        ({"resource_names": ["web"], "incremental": "yes"},
         "event.incremental must be true or false"),
    ],
)  # fmt: skip
def test_a_plan_to_resolve_that_is_wrong_is_refused_naming_the_field(
    plan: dict[str, Any], message: str | None
) -> None:
    if message is None:  # a name of one character is a name
        assert only_resolution(plan).resource_names == tuple(plan["resource_names"])
    else:
        assert only_rejection(plan).startswith(message)


def test_a_plan_of_a_plan_or_vault_carries_its_scope_and_lifetime() -> None:
    request = only_request({"plan_id": PLAN, "resources": [SERVER], "keep_days": 7,
                            "project_id": PROJECT, "credentials": "team-b"})  # fmt: skip

    assert (request.project_id, request.credentials, request.keep_days) == (PROJECT, "team-b", 7)
    assert only_request({"vault_id": PLAN, "backend": "cbr"}).backend == CBR


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ({"plan_id": PLAN, "backend": "cbr"},
         "event.backend must be csbs (the backend of plan_id) or left out"),
        ({"vault_id": PLAN, "backend": "csbs"},
         "event.backend must be cbr (the backend of vault_id) or left out"),
        ({"plan_id": PLAN, "resources": []},
         "event.resources is empty: leave it out to back up every resource of the plan"),
        ({"plans": [{"plan_id": PLAN}, {"plan_id": PLAN, "keep_days": 0}]},
         "event.plans[1].keep_days must be a whole number of days from 1 to 3650, got 0"),
        ({"plans": [{"plan_id": PLAN}, {"plan_id": PLAN, "project_id": "p"}]},
         "event.plans[1].project_id must be a project id of 32 hex digits, got a string of 1 "
         "characters"),
        ({"plans": [{"plan_id": PLAN}, {"resources": [SERVER], "project_id": "p"}]},
         "event.plans[1].project_id must be a project id of 32 hex digits, got a string of 1 "
         "characters"),
        ({"plans": [{"plan_id": PLAN}, {"resources": []}]},
         "event.plans[1].resources is empty: leave it out to back up every resource"),
    ],
)  # fmt: skip
def test_a_plan_of_a_plan_or_vault_that_is_wrong_is_refused_naming_the_field(
    plan: dict[str, Any], message: str
) -> None:
    rejections = [item for item in parse_event(plan).items if isinstance(item, RejectedPlan)]

    assert [r.error.message for r in rejections if r.error.message.startswith(message)], [
        r.error.message for r in rejections
    ]


def test_a_plan_naming_both_a_plan_and_a_vault_is_refused_saying_so() -> None:
    assert only_rejection({"plan_id": PLAN, "vault_id": PLAN}) == (
        "event names plan_id and vault_id: exactly one of them"
    )
    assert only_rejection({"resources": None}) == "event.plan_id or vault_id is missing"
    # A backend is a field plans know: missing the id, it is not listed as an unknown key.
    assert only_rejection({"backend": "cbr"}) == "event.plan_id or vault_id is missing"
    assert only_request({"plan_id": PLAN, "backend": "csbs"}).backend == CSBS


def test_a_batch_of_exactly_the_most_plans_is_read_whole() -> None:
    plans = [{"plan_id": PLAN, "resources": [SERVER]}] * MAX_PLANS_PER_EVENT

    assert len(parse_event({"plans": plans}).items) == MAX_PLANS_PER_EVENT


def test_an_eventbridge_event_without_its_id_refuses_each_plan_for_its_own_backend() -> None:
    event = {"id": "", "source": "ops", "detail-type": "backup", "detail": {
        "plans": [{"plan_id": PLAN}, {"vault_id": PLAN}]}}  # fmt: skip
    rejected = parse_event(event).items

    assert [(item.backend, item.target_id) for item in rejected] == [(CSBS, PLAN), (CBR, PLAN)]
    assert all(isinstance(item, RejectedPlan) for item in rejected)

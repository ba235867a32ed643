"""The ticket secret, read once per value (issue 26.3): each sender's system, or the one
config_error that names the sender and the field (never a value) and keeps only that sender's
results from being written; and the references a system takes into a URL path."""

from __future__ import annotations

from typing import Any

import pytest

from csbs_trigger.errors import ConfigError, InvalidEventError
from csbs_trigger.tickets.systems import TicketSystem, parse_systems

CLOUD = {"kind": "jira-cloud", "base_url": "https://acme.atlassian.net", "email": "bot@acme",
         "api_token": "t0ken"}  # fmt: skip
DC = {"kind": "jira-dc", "base_url": "https://jira.acme.example/jira/", "token": "pat"}
SNOW = {"kind": "servicenow", "instance_url": "https://acme.service-now.com",
        "username": "svc", "password": "pw"}  # fmt: skip


def system(entry: Any) -> TicketSystem | ConfigError:
    return parse_systems({"jira": entry})["jira"]


def refusal(entry: Any) -> str:
    parsed = system(entry)
    assert isinstance(parsed, ConfigError)
    return parsed.message


def test_each_kind_is_read_with_its_defaults() -> None:
    assert system(CLOUD) == TicketSystem("jira", "jira-cloud", "https://acme.atlassian.net",
                                         "bot@acme", "t0ken", False)  # fmt: skip
    assert system({**CLOUD, "internal": True}) == TicketSystem(
        "jira", "jira-cloud", "https://acme.atlassian.net", "bot@acme", "t0ken", True
    )
    assert system(DC) == TicketSystem("jira", "jira-dc", "https://jira.acme.example/jira",
                                      None, "pat")  # fmt: skip
    assert system(SNOW) == TicketSystem("jira", "servicenow", "https://acme.service-now.com",
                                        "svc", "pw", table="change_request")  # fmt: skip
    assert system({**SNOW, "table": "u_change"}).table == "u_change"  # type: ignore[union-attr]


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://localhost:9000/x",
                                 "http://[::1]:80", "http://127.8.9.10"])  # fmt: skip
def test_http_is_taken_to_this_machine_only(url: str) -> None:
    parsed = system({**DC, "base_url": url})
    assert isinstance(parsed, TicketSystem)
    assert parsed.base_url == url


@pytest.mark.parametrize(("entry", "message"), [
    ("text", "must be an object"),
    ({**CLOUD, "kind": "redmine"}, "kind must be one of jira-cloud, jira-dc, servicenow"),
    ({"base_url": "https://x"}, "kind must be one of jira-cloud, jira-dc, servicenow"),
    ({**CLOUD, "email": ""}, "email is missing or not a text of at most 1024"),
    ({**CLOUD, "email": "  "}, "email is missing or not a text of at most 1024"),
    ({**CLOUD, "api_token": 5}, "api_token is missing or not a text of at most 1024"),
    ({**CLOUD, "api_token": "t" * 1025}, "api_token is missing or not a text of at most 1024"),
    ({k: v for k, v in DC.items() if k != "token"}, "token is missing"),
    ({**CLOUD, "internal": "yes"}, "internal must be true or false"),
    ({**SNOW, "table": "Change"}, "table must be a ServiceNow table name (change_request)"),
    ({**SNOW, "table": "x" * 81}, "table must be a ServiceNow table name"),
    ({**SNOW, "instance_url": "http://acme.service-now.com"},
     "instance_url must be https:// (or http:// to a loopback address)"),
    ({**CLOUD, "base_url": "ftp://acme"}, "base_url must be https:// (or http:// to a loopback"),
    ({**CLOUD, "base_url": "https://u@acme"}, "base_url must be a plain https:// address"),
    ({**CLOUD, "base_url": "https://:p@acme"}, "base_url must be a plain https:// address"),
    ({**CLOUD, "base_url": "https://acme?x=1"}, "base_url must be a plain https:// address"),
    ({**CLOUD, "base_url": "https://acme#f"}, "base_url must be a plain https:// address"),
    ({**CLOUD, "base_url": "https://"}, "base_url must be a plain https:// address"),
    ({**CLOUD, "base_url": "http://localhost.evil.example"}, "base_url must be https://"),
])  # fmt: skip
def test_a_wrong_entry_names_its_sender_and_field(entry: Any, message: str) -> None:
    said = refusal(entry)
    assert said.startswith(f"the ticket secret of sender jira: {message}")


def test_a_field_of_exactly_1024_characters_is_taken() -> None:
    assert isinstance(system({**CLOUD, "api_token": "t" * 1024}), TicketSystem)


def test_one_wrong_sender_leaves_the_others() -> None:
    systems = parse_systems({"a": CLOUD, "b": {"kind": "x"}})
    assert isinstance(systems["a"], TicketSystem)
    assert isinstance(systems["b"], ConfigError)
    assert systems["a"].sender == "a"  # type: ignore[union-attr]


@pytest.mark.parametrize("document", [[], "x", None, 5])
def test_a_secret_that_is_no_object_is_a_config_error(document: Any) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_systems(document)
    assert raised.value.message == (
        "the ticket secret must be a JSON object keyed by webhook source name"
    )


@pytest.mark.parametrize(("entry", "reference", "taken"), [
    (CLOUD, "OPS-7", True), (CLOUD, "A_1-123", True), (CLOUD, "10042", True),
    (CLOUD, "ops-7", False), (CLOUD, "OPS-", False), (CLOUD, "CHG0031337", False),
    (SNOW, "CHG0031337", True), (SNOW, "chg1", True), (SNOW, "OPS-7", False),
    (SNOW, "12345", False), (SNOW, "A" * 21 + "1", False),
])  # fmt: skip
def test_a_reference_is_a_ticket_key_of_its_kind(
    entry: dict[str, Any], reference: str, taken: bool
) -> None:
    parsed = system(entry)
    assert isinstance(parsed, TicketSystem)
    if taken:
        parsed.check_reference(reference)
        return
    with pytest.raises(InvalidEventError) as raised:
        parsed.check_reference(reference)
    shape = ("letters then digits (CHG0031337)" if entry is SNOW
             else "an issue key (OPS-123) or a numeric id")  # fmt: skip
    assert raised.value.message == f"the ticket reference is not {shape}"


def test_the_fingerprint_changes_with_the_credentials_only() -> None:
    first, same, other = system(CLOUD), system(dict(CLOUD)), system({**CLOUD, "api_token": "x"})
    assert isinstance(first, TicketSystem)
    assert isinstance(same, TicketSystem)
    assert isinstance(other, TicketSystem)
    assert first.fingerprint == same.fingerprint != other.fingerprint
    assert "t0ken" not in first.fingerprint
    assert (first.label, system(SNOW).label) == ("Jira", "ServiceNow")  # type: ignore[union-attr]

"""Keystone token life cycle against the stand-in's IAM, with a clock the test turns."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import requests

from csbs_trigger.cloud.auth import KeystonePasswordAuth, Logins, MemoryLoginGuard
from csbs_trigger.cloud.credentials import parse_cloud_secret
from csbs_trigger.cloud.csbs import SERVICE as CSBS
from csbs_trigger.deadline import Deadline
from csbs_trigger.errors import Category, UpstreamError
from support.standin import PROJECT_ID, CsbsStandIn, Fault


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def standin() -> Iterator[CsbsStandIn]:
    with CsbsStandIn() as server:
        yield server


def make_auth(standin: CsbsStandIn, clock: Clock, **secret: str | None) -> KeystonePasswordAuth:
    import json

    credentials = parse_cloud_secret(json.dumps(standin.cloud_secret(**secret)))
    guard = MemoryLoginGuard(lambda: clock().timestamp())
    return KeystonePasswordAuth(credentials, requests.Session(), logins=Logins(guard), now=clock)


DEADLINE = Deadline(lambda: 60.0, connect_seconds=2, read_seconds=5)


def test_token_is_reused_until_shortly_before_it_expires(standin: CsbsStandIn) -> None:
    clock = Clock()
    auth = make_auth(standin, clock)

    auth.scope(DEADLINE, CSBS)
    clock.now += timedelta(hours=23, minutes=45)
    auth.scope(DEADLINE, CSBS)
    assert len(standin.calls("iam")) == 1

    clock.now += timedelta(minutes=6)  # 9 minutes before expiry: inside the margin
    auth.scope(DEADLINE, CSBS)
    assert len(standin.calls("iam")) == 2


def test_short_lived_token_is_renewed_half_way(standin: CsbsStandIn) -> None:
    standin.token_lifetime = timedelta(minutes=4)
    clock = Clock()
    auth = make_auth(standin, clock)

    auth.scope(DEADLINE, CSBS)
    clock.now += timedelta(minutes=1)
    auth.scope(DEADLINE, CSBS)
    assert len(standin.calls("iam")) == 1

    clock.now += timedelta(minutes=1, seconds=30)
    auth.scope(DEADLINE, CSBS)
    assert len(standin.calls("iam")) == 2


def test_concurrent_callers_share_one_token_request(standin: CsbsStandIn) -> None:
    auth = make_auth(standin, Clock())

    with ThreadPoolExecutor(max_workers=8) as pool:
        scopes = list(pool.map(lambda _: auth.scope(DEADLINE, CSBS), range(8)))

    assert len(standin.calls("iam")) == 1
    assert {scope.project_id for scope in scopes} == {PROJECT_ID}


def test_invalidate_forces_a_new_token(standin: CsbsStandIn) -> None:
    auth = make_auth(standin, Clock())
    auth.scope(DEADLINE, CSBS)

    auth.invalidate()
    auth.scope(DEADLINE, CSBS)

    assert len(standin.calls("iam")) == 2


def test_catalog_endpoint_is_reduced_to_the_service_base(standin: CsbsStandIn) -> None:
    auth = make_auth(standin, Clock(), csbs_endpoint=None)

    scope = auth.scope(DEADLINE, CSBS)

    assert scope.endpoint == standin.url
    assert scope.project_id == PROJECT_ID


def test_secret_values_name_password_and_token(standin: CsbsStandIn) -> None:
    auth = make_auth(standin, Clock())
    auth.scope(DEADLINE, CSBS)

    assert set(auth.secret_values()) == {
        parse_cloud_secret(__import__("json").dumps(standin.cloud_secret())).password,
        *standin.issued_tokens(),
    }


@pytest.mark.parametrize(
    "expires_at", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "1970-01-01T00:00:00Z"]
)
def test_a_token_that_expires_at_no_plausible_time_is_a_bad_response(
    standin: CsbsStandIn, expires_at: str
) -> None:
    token = {"token": {"expires_at": expires_at, "project": {"id": PROJECT_ID}}}
    standin.fail_next("iam", Fault(201, token, {"X-Subject-Token": "MIIT-odd"}))
    auth = make_auth(standin, Clock())

    with pytest.raises(UpstreamError) as raised:
        auth.scope(DEADLINE, CSBS)

    assert raised.value.category is Category.BAD_RESPONSE
    assert raised.value.message == "IAM answered with a token without a plausible expires_at"

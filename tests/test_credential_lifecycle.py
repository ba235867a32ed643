"""AK/SK signing end to end, secret rotation, and endpoints derived from regions."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from types import SimpleNamespace

import pytest
import requests
from conftest import Deployment, read_event

from csbs_trigger.cloud.api import ApiClient
from csbs_trigger.cloud.auth import CsbsAuth, KeystonePasswordAuth, Logins, MemoryLoginGuard, Scope
from csbs_trigger.cloud.backend import BackupRequest, Execution
from csbs_trigger.cloud.cbr import SERVICE as CBR
from csbs_trigger.cloud.credentials import (
    PasswordCredentials,
    parse_cloud_secret,
)
from csbs_trigger.cloud.csbs import BACKEND, CsbsClient
from csbs_trigger.cloud.csbs import SERVICE as CSBS
from csbs_trigger.cloud.endpoints import Service, endpoint_for_region
from csbs_trigger.deadline import Deadline
from csbs_trigger.errors import ConfigError
from support.lambda_context import FakeLambdaContext
from support.standin import ACCESS_KEY, PROJECT_ID, PROVIDER_ID, SECURITY_TOKEN

PLAN = read_event("schedule.json")["plan_id"]
AUTHORIZATION = re.compile(
    r"SDK-HMAC-SHA256 Access=(?P<ak>\w+), SignedHeaders=(?P<names>[a-z;-]+), "
    r"Signature=(?P<signature>[0-9a-f]{64})"
)


@pytest.mark.parametrize("temporary", [False, True], ids=["permanent keys", "temporary keys"])
def test_access_keys_sign_the_request_instead_of_fetching_a_token(
    deployment: Deployment, temporary: bool
) -> None:
    deployment.set_secret(deployment.standin.access_key_secret(temporary=temporary))

    deployment.invoke(read_event("schedule.json"))

    [delivered] = deployment.notifications()
    assert delivered.message["outcome"] == "succeeded"
    assert deployment.standin.calls("iam") == []
    [call] = deployment.standin.calls("csbs")
    assert "X-Auth-Token" not in call.headers
    assert call.headers["X-Project-Id"] == PROJECT_ID
    assert re.fullmatch(r"\d{8}T\d{6}Z", call.headers["X-Sdk-Date"])
    match = AUTHORIZATION.fullmatch(call.headers["Authorization"])
    assert match is not None
    assert match["ak"] == ACCESS_KEY
    expected_names = "host;x-project-id;x-sdk-date" + (";x-security-token" if temporary else "")
    assert match["names"] == expected_names
    assert call.headers.get("X-Security-Token") == (SECURITY_TOKEN if temporary else None)


def test_rotated_password_is_picked_up_when_the_old_one_is_refused(
    deployment: Deployment,
) -> None:
    deployment.invoke(read_event("direct.json"))
    # The operator rotates the password: IAM now wants the new one and revokes old tokens.
    deployment.set_secret(deployment.standin.cloud_secret(password="n3w-Passw0rd-after-rotation"))
    deployment.standin.password = "n3w-Passw0rd-after-rotation"
    deployment.standin.revoke_tokens()

    deployment.invoke(read_event("direct.json"))  # the secret is still cached here

    first, second = (d.message for d in deployment.notifications())
    assert first["outcome"] == second["outcome"] == "succeeded"
    assert second["attempts"] == 2  # refused once with the old token, then accepted
    assert len(deployment.standin.calls("iam")) == 2


def test_rotated_access_keys_are_picked_up_when_the_old_ones_are_refused(
    deployment: Deployment,
) -> None:
    deployment.set_secret(deployment.standin.access_key_secret(sk="old-secret-key-revoked"))

    deployment.invoke(read_event("direct.json"))  # refused: the stand-in knows the new key only
    deployment.set_secret(deployment.standin.access_key_secret())
    deployment.invoke(read_event("direct.json"))

    first, second = (d.message for d in deployment.notifications())
    assert first["error"]["category"] == "auth_failed"
    assert second["outcome"] == "succeeded"


@pytest.mark.parametrize(
    ("region", "endpoint"),
    [
        ("eu-de", "https://csbs.eu-de.otc.t-systems.com"),
        ("eu-nl", "https://csbs.eu-nl.otc.t-systems.com"),
        ("eu-ch2", "https://csbs.eu-ch2.sc.otc.t-systems.com"),
        ("ap-southeast-1", "https://csbs.ap-southeast-1.myhuaweicloud.com"),
        ("cn-north-4", "https://csbs.cn-north-4.myhuaweicloud.com"),
    ],
)
def test_region_names_the_endpoint_of_known_clouds(region: str, endpoint: str) -> None:
    assert endpoint_for_region(CSBS, region) == endpoint
    cbr = endpoint.replace("https://csbs.", "https://cbr.")  # CBR: the same hosts' cbr. names
    assert endpoint_for_region(CBR, region) == cbr


@pytest.mark.parametrize("region", ["EU-DE", "eu de", "mars", "eu-de.evil.example"])
def test_unknown_region_is_a_config_error(region: str) -> None:
    with pytest.raises(ConfigError, match="known cloud region"):
        endpoint_for_region(CSBS, region)


# -- the client and its AuthSource, on their own ------------------------------------------------


def _password_auth(
    deployment: Deployment, session: requests.Session, auth_type: type[KeystonePasswordAuth],
    **overrides: str,
) -> KeystonePasswordAuth:  # fmt: skip
    secret = deployment.standin.cloud_secret(**overrides)
    credentials = parse_cloud_secret(json.dumps(secret))
    assert isinstance(credentials, PasswordCredentials)
    return auth_type(credentials, session, logins=Logins(MemoryLoginGuard(time.time)))


def _start_backup(
    session: requests.Session, current: CsbsAuth, refresh: Callable[[CsbsAuth], CsbsAuth | None]
) -> Execution:
    """One backup through a client whose AuthSource is ``current`` and ``refresh``."""
    source = SimpleNamespace(current=lambda: current, refresh=refresh)
    client = CsbsClient(ApiClient(CSBS, source, session), PROVIDER_ID)
    deadline = Deadline.from_context(FakeLambdaContext(), 3.05, 20)
    return client.start(BackupRequest(BACKEND, PLAN), deadline)


def test_a_token_dropped_after_the_scope_is_chosen_is_fetched_again_in_time(
    deployment: Deployment,
) -> None:
    """Another plan's refresh may drop the shared token between this request choosing its scope
    and being sent: the request then asks IAM again, within its own deadline."""

    class DroppedAfterScope(KeystonePasswordAuth):
        def scope(
            self, deadline: Deadline, service: Service, project_id: str | None = None
        ) -> Scope:
            chosen = super().scope(deadline, service, project_id)
            self.invalidate()  # as a concurrent plan's refresh would
            return chosen

    session = requests.Session()
    auth = _password_auth(deployment, session, DroppedAfterScope)

    execution = _start_backup(session, auth, lambda stale: None)

    assert execution.attempts == 1
    assert len(deployment.standin.calls("iam")) == 2
    [call] = deployment.standin.calls("csbs")
    assert call.headers["X-Auth-Token"] == deployment.standin.issued_tokens()[-1]


def test_what_a_refresh_returns_is_what_the_next_try_uses(deployment: Deployment) -> None:
    session = requests.Session()
    refused = _password_auth(deployment, session, KeystonePasswordAuth, password="0ld-Passw0rd")
    fresh = _password_auth(deployment, session, KeystonePasswordAuth)
    refreshed: list[CsbsAuth] = []

    def refresh(stale: CsbsAuth) -> CsbsAuth:
        refreshed.append(stale)
        return fresh

    execution = _start_backup(session, refused, refresh)

    assert refreshed == [refused]
    assert execution.attempts == 1  # IAM refused the old password: no CSBS call was made with it
    assert len(deployment.standin.calls("iam")) == 2
    assert len(deployment.standin.calls("csbs")) == 1

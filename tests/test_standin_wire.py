"""The stand-in speaks the real wire (issue 25.7): every CBR and ECS answer it sends is read with
the official Huawei SDKs' response models, and no value may read differently there (a JSON
string where the SDK has an object, a string where it has a number)."""

from __future__ import annotations

import decimal
import re
from datetime import date, datetime
from typing import Any

import pytest
import requests
from conftest import Deployment
from huaweicloudsdkcbr.v1 import CbrClient
from huaweicloudsdkecs.v2 import EcsClient
from test_cbr import SERVER_1, VAULT

from support.standin import PROJECT_ID

# The SDK's response model of each CBR route the project calls.
MODELS = [
    ("POST", re.compile(r"/v3/\w+/checkpoints"), "CreateCheckpointResponse"),
    ("GET", re.compile(r"/v3/\w+/checkpoints/[\w-]+"), "ShowCheckpointResponse"),
    ("GET", re.compile(r"/v3/\w+/backups"), "ListBackupsResponse"),
    ("GET", re.compile(r"/v3/\w+/operation-logs"), "ListOpLogsResponse"),
    ("GET", re.compile(r"/v3/\w+/vaults"), "ListVaultResponse"),
    ("GET", re.compile(r"/v3/\w+/policies/[\w-]+"), "ShowPolicyResponse"),
]
# The ECS route the project calls (to find servers by name), and its model.
ECS_MODELS = [("GET", re.compile(r"/v1/\w+/cloudservers/detail"), "ListServersDetailsResponse")]


def model_of(
    method: str, path: str, models: list[tuple[str, re.Pattern[str], str]] = MODELS
) -> str | None:
    return next((name for m, route, name in models if m == method and route.fullmatch(path)), None)


def as_read(value: Any) -> Any:
    """What the SDK read, keyed by the wire's names (a model's attribute_map)."""
    if hasattr(value, "attribute_map"):
        return {wire: as_read(getattr(value, attr)) for attr, wire in value.attribute_map.items()}
    if isinstance(value, list):
        return [as_read(item) for item in value]
    if isinstance(value, dict):
        return {key: as_read(item) for key, item in value.items()}
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value


def differences(sent: Any, read: Any, where: str = "") -> list[str]:
    """Every value the SDK reads otherwise than it was sent (fields it does not know are not
    read at all, and are no difference)."""
    if isinstance(sent, dict) and isinstance(read, dict):
        return [found for key, value in sent.items() if key in read
                for found in differences(value, read[key], f"{where}.{key}")]  # fmt: skip
    if isinstance(sent, list) and isinstance(read, list) and len(sent) == len(read):
        return [found for index, (a, b) in enumerate(zip(sent, read, strict=True))
                for found in differences(a, b, f"{where}[{index}]")]  # fmt: skip
    if isinstance(read, datetime | date) and isinstance(sent, str):
        return []  # the SDK parses times; the project reads the text
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (sent, read))
    if sent != read or (type(sent) is not type(read) and not numbers):
        return [f"{where}: sent {sent!r}, the SDK reads {read!r}"]
    return []


@pytest.fixture(scope="module")
def sdk() -> CbrClient:
    return CbrClient()


def test_every_ecs_answer_reads_the_same_with_the_official_sdk(deployment: Deployment) -> None:
    deployment.standin.servers = {SERVER_1: "ecs-1f0f-0002", "0f0e0d0c-0b0a-4909-8807-0605040302"
                                  "01": "ecs-1f0f-00020"}  # fmt: skip
    deployment.invoke({"resource_names": ["ecs-1f0f-0002"], "backend": "cbr"})

    sdk, found, checked = EcsClient(), [], 0
    for method, path, status, body in deployment.standin.answers:
        name = model_of(method, path, ECS_MODELS)
        if name is None or status != 200:
            continue
        checked += 1
        found += differences(body, as_read(sdk._deserialize(body, name)), name)

    assert checked == 1
    assert found == [], "\n".join(found)


def test_every_cbr_answer_reads_the_same_with_the_official_sdk(
    deployment: Deployment, sdk: CbrClient
) -> None:
    standin = deployment.standin
    standin.polls_to_finish = 2
    standin.failing_servers.add(SERVER_1)  # its reason comes from the task list
    standin.vaults[VAULT].busy = set()
    deployment.invoke({"vault_id": VAULT})
    for _ in range(4):
        deployment.track()
    standin.vaults[VAULT].busy = {SERVER_1}  # a create answer with a skipped resource
    deployment.invoke({"vault_id": VAULT, "name": "second"})
    standin.vaults[VAULT].busy = set()
    standin.cbr_policies["8f1e2d3c-4b5a-4697-8a1b-2c3d4e5f6a7b"] = [VAULT]  # issue 28's lookups
    deployment.invoke({"policy_id": "8f1e2d3c-4b5a-4697-8a1b-2c3d4e5f6a7b",
                       "resources": [SERVER_1]})  # fmt: skip

    checked = {}
    found = []
    for method, path, status, body in standin.answers:
        name = model_of(method, path)
        if name is None or status != 200:
            continue
        checked[name] = checked.get(name, 0) + 1
        found += differences(body, as_read(sdk._deserialize(body, name)), name)

    assert set(checked) == {name for _, _, name in MODELS}
    assert found == [], "\n".join(found)


def test_the_task_list_answers_without_a_start_time(deployment: Deployment) -> None:
    """The SDK's ListOpLogsRequest makes start_time optional (the stand-in dropped the
    connection without it)."""
    deployment.invoke({"vault_id": VAULT})
    [token] = deployment.standin.issued_tokens()

    answer = requests.get(
        f"{deployment.standin.url}/v3/{PROJECT_ID}/operation-logs",
        params={"vault_id": VAULT, "operation_type": "backup"},
        headers={"X-Auth-Token": token}, timeout=5,
    )  # fmt: skip

    assert answer.status_code == 200
    assert answer.json()["count"] == 2  # one task per server of the restore point

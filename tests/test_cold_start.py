"""What a cold start loads and defines (issue 25.10): each function imports its own path of the
package, not the others', and the package's records compile no code when they are defined
(``make bench`` measures what that costs)."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import pkgutil
import subprocess
import sys
from typing import Any

import pytest
from conftest import ROOT

import csbs_trigger
from csbs_trigger.cloud.credentials import PasswordCredentials
from csbs_trigger.cloud.endpoints import Endpoints
from csbs_trigger.values import frozen

FUNCTIONS = [
    "scheduled_backup",
    "webhook",
    "completion_tracker",
    "plan_worker",
    "digest",
    "ticket_update",
    "expiry",
]
# What only some functions need: (module, the functions that load it).
OWN_PATHS = {
    "csbs_trigger.digest": {"digest"},
    "csbs_trigger.tracker": {"completion_tracker"},
    "csbs_trigger.triggers.webhooks": {"webhook"},
    "csbs_trigger.triggers.webhook_sources": {"webhook"},
    "csbs_trigger.writeback": {"ticket_update"},
    "csbs_trigger.tickets.clients": set(),  # loaded by the first write, not at import
    "csbs_trigger.expiry": {"expiry"},
    "csbs_trigger.aws.expiry_register": {"expiry"},  # elsewhere loaded when first used
    "csbs_trigger.aws.ticket_ledger": {"ticket_update"},
    "csbs_trigger.resolution": set(),  # loaded by the first plan that names servers or a policy
    "csbs_trigger.cloud.ecs": set(),  # by the first that names servers by name
}


def test_every_public_name_resolves_from_its_module() -> None:
    assert sorted(csbs_trigger.__all__) == sorted(csbs_trigger._MODULE_OF)
    for name in csbs_trigger.__all__:
        assert getattr(csbs_trigger, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = csbs_trigger.nothing


def test_each_function_loads_its_own_path_only() -> None:
    script = (
        "import importlib, json, sys\n"
        "importlib.import_module(sys.argv[1])\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    for function in FUNCTIONS:
        path = os.pathsep.join([str(ROOT / "functions" / function),
                                str(ROOT / "layers" / "csbs_trigger")])  # fmt: skip
        env = {**os.environ, "PYTHONPATH": path}
        answer = subprocess.run([sys.executable, "-c", script, function], check=True, text=True,
                                capture_output=True, env=env)  # fmt: skip
        loaded = set(json.loads(answer.stdout))
        for module, users in OWN_PATHS.items():
            assert (module in loaded) == (function in users), (function, module)


def test_no_record_is_a_frozen_dataclass() -> None:
    """A frozen dataclass compiles six methods when its module loads (0.6 ms a class on
    python3.13, 25 ms over a scheduled cold start's 40): the package's records are ``@frozen``,
    which compiles none."""
    frozen_dataclasses = []
    for module in pkgutil.walk_packages(csbs_trigger.__path__, "csbs_trigger."):
        for value in vars(importlib.import_module(module.name)).values():
            own = isinstance(value, type) and value.__module__ == module.name
            if own and dataclasses.is_dataclass(value) and value.__dataclass_params__.frozen:
                frozen_dataclasses.append(f"{module.name}.{value.__qualname__}")
    assert frozen_dataclasses == []


def _pair() -> tuple[type, type]:
    """One record declared both ways: as a frozen dataclass, and ``@frozen``."""

    def declare(decorate: Any) -> type:
        @decorate
        class Record:
            name: str
            tags: tuple[str, ...] = ()
            secret: str = dataclasses.field(default="s", repr=False)
            seen: int = dataclasses.field(default=0, compare=False)
            notes: list[str] = dataclasses.field(default_factory=list, compare=False)

            def __post_init__(self) -> None:
                object.__setattr__(self, "tags", tuple(self.tags))

        return Record

    return declare(dataclasses.dataclass(frozen=True)), declare(frozen)


@pytest.mark.parametrize(
    ("a", "b"),
    [(("x",), ("x",)), (("x", ("t",)), ("x", ("t",))), (("x",), ("y",)),
     (("x", (), "s", 1), ("x", (), "s", 2)), (("x", (), "s"), ("x", (), "other"))],
)  # fmt: skip
def test_a_frozen_record_compares_hashes_and_shows_as_a_frozen_dataclass(
    a: tuple[Any, ...], b: tuple[Any, ...]
) -> None:
    reference, record = _pair()
    assert (record(*a) == record(*b)) is (reference(*a) == reference(*b))
    assert (record(*a) != record(*b)) is (reference(*a) != reference(*b))
    assert (hash(record(*a)) == hash(record(*b))) is (hash(reference(*a)) == hash(reference(*b)))
    assert repr(record(*a)) == repr(reference(*a))  # the secret field unshown in both
    assert record(*a) != reference(*a)  # another class is never equal
    assert record(*a).__eq__(a) is NotImplemented
    changed = dataclasses.replace(record(*a), name="z")
    assert (changed.name, changed.tags) == ("z", record(*a).tags)
    assert dataclasses.asdict(record(*a)) == dataclasses.asdict(reference(*a))


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [(("x",), {}), ((), {"name": "x", "tags": ["t"]}), (("x",), {"seen": 3, "secret": "k"}),
     (("x", ("t",), "s", 1, ["n"]), {}), (("x", ("t",), "s", 1, ["n"], "more"), {}), ((), {}),
     (("x",), {"name": "y"}), (("x",), {"colour": "red"}), ((), {"tags": ()})],
)  # fmt: skip
def test_a_frozen_record_takes_arguments_as_a_frozen_dataclass(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    reference, record = _pair()

    def made(cls: type) -> tuple[str, Any]:
        try:
            instance = cls(*args, **kwargs)
        except TypeError:
            return "TypeError", None
        return "made", dataclasses.astuple(instance)

    assert made(record) == made(reference)
    if made(record)[0] == "made" and len(args) < 5 and "notes" not in kwargs:
        # each instance its own default list
        assert record(*args, **kwargs).notes is not record(*args, **kwargs).notes


def test_a_record_keeps_its_own_hash_and_hides_its_secrets() -> None:
    endpoints = Endpoints({"csbs_endpoint": "https://csbs"}, "eu-de")
    assert hash(endpoints) == hash(((("csbs_endpoint", "https://csbs"),), "eu-de"))
    assert {endpoints: 1}[Endpoints({"csbs_endpoint": "https://csbs"}, "eu-de")] == 1
    credentials = PasswordCredentials(
        auth_url="https://iam", username="u", password="hunter2-secret", user_domain_name="d",
        project_id="0" * 32, project_name=None, endpoints=Endpoints(),
    )  # fmt: skip
    assert "hunter2-secret" not in repr(credentials)

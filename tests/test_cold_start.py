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

import pytest
from conftest import ROOT

import csbs_trigger

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


def test_no_record_goes_through_dataclasses() -> None:
    """A frozen dataclass compiles six methods when its module loads (0.6 ms a class on
    python3.13, 25 ms over a scheduled cold start's 40), and the dataclass machinery, methods or
    not, spent 4 ms on the webhook's 41 records: the package's records are ``@frozen``, read
    from their annotations alone."""
    through_dataclasses = []
    for module in pkgutil.walk_packages(csbs_trigger.__path__, "csbs_trigger."):
        for value in vars(importlib.import_module(module.name)).values():
            own = isinstance(value, type) and value.__module__ == module.name
            if (
                own
                and dataclasses.is_dataclass(value)
                and (value.__dataclass_params__.frozen or "__frozen__" in vars(value))
            ):
                through_dataclasses.append(f"{module.name}.{value.__qualname__}")
    assert through_dataclasses == []

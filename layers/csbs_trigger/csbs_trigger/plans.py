"""What a trigger asks for, as the runner takes it: a backup request (``cloud/backend.py``), a
plan that cannot run (``RejectedPlan``), or servers or a policy to be resolved first to the plans
and vaults that protect them (``Resolution``, resolved by ``resolution.py``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from csbs_trigger.cloud.backend import Backend, BackupRequest
from csbs_trigger.errors import TriggerError
from csbs_trigger.values import frozen

# The servers (or server names) one plan may name for resolution.
MAX_RESOLVED_SERVERS = 100
# CSBS and CBR ids are UUIDs; any short id of that alphabet passes, so other clouds' ids do too.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def is_id(value: Any) -> bool:
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


@frozen
class RejectedPlan:
    """A plan (or a whole event) that cannot run, with what could be read of it: the backend
    and the plan or vault it names, where they are readable, and what a resolution was asked
    for, where it was one."""

    error: TriggerError
    backend: Backend | None = None
    target_id: str | None = None
    resolved_from: Mapping[str, Any] | None = None


@frozen
class Resolution:
    """A plan that names what to back up, not what protects it: a CBR policy (its vaults), or
    servers by id or by name (the plans or vaults that list them). ``backend`` None: the
    stack's ``DefaultBackend``."""

    backend: Backend | None
    policy_id: str | None = None
    resources: tuple[str, ...] | None = None
    resource_names: tuple[str, ...] | None = None
    options: tuple[tuple[str, Any], ...] = ()
    project_id: str | None = None
    credentials: str | None = None
    keep_days: int | None = None

    @property
    def target_id(self) -> str | None:
        """No plan or vault: that is what the resolution finds."""
        return None

    def asked(self) -> dict[str, Any]:
        """What the trigger asked for, as notifications carry it in ``resolved_from``."""
        if self.policy_id is not None:
            asked: dict[str, Any] = {"policy_id": self.policy_id}
            return asked if self.resources is None else asked | {"resources": [*self.resources]}
        if self.resource_names is not None:
            return {"resource_names": list(self.resource_names)}
        return {"resources": list(self.resources or ())}

    def as_plan(self) -> dict[str, Any]:
        """The plan that asks for exactly this resolution (what a queued plan carries)."""
        backend = {} if self.backend is None else {"backend": self.backend.name}
        return self.asked() | backend | dict(self.options) | self._scope()

    def identity(self) -> list[Any]:
        """What names it (for its idempotency key): the same servers in any order are the same
        resolution; never the same as a request's (those start with a plan or vault id)."""
        asked = {key: sorted(value) if isinstance(value, list) else value
                 for key, value in self.asked().items()}  # fmt: skip
        backend = None if self.backend is None else self.backend.name
        return ["resolve", backend, asked, dict(self.options), self._scope()]

    def request(
        self, backend: Backend, target_id: str, resources: tuple[str, ...] | None,
        resolved_from: Mapping[str, Any],
    ) -> BackupRequest:  # fmt: skip
        """The backup of one plan or vault it resolved to."""
        return BackupRequest(
            backend=backend, target_id=target_id, resources=resources, options=self.options,
            project_id=self.project_id, credentials=self.credentials, keep_days=self.keep_days,
            resolved_from=resolved_from,
        )  # fmt: skip

    def _scope(self) -> dict[str, Any]:
        named = {"project_id": self.project_id, "credentials": self.credentials,
                 "keep_days": self.keep_days}  # fmt: skip
        return {key: value for key, value in named.items() if value is not None}


Runnable = BackupRequest | RejectedPlan
PlanItem = BackupRequest | RejectedPlan | Resolution

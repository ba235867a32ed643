"""The backup-service port: what the runner, the tracker and the notifications ask of a backup
service, whichever one answers.

A backend is a ``Backend`` (what a plan naming it may hold, how messages name it) and a
``BackupService`` (start one backup, list what it became). CSBS (``cloud/csbs.py``) and CBR
(``cloud/cbr.py``) are the two adapters; ``cloud/backends.py`` registers them. A third backend
is one more module and one more line there.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from csbs_trigger.cloud.checkpoint_items import CheckpointItem
from csbs_trigger.cloud.endpoints import Service
from csbs_trigger.deadline import Deadline
from csbs_trigger.errors import truncate
from csbs_trigger.values import frozen

# A skipped resource's name and reason as the tracking record keeps them: 256 of them at four
# bytes a character stay far below DynamoDB's 400 KB an item.
STORED_TEXT_LENGTH = 80


@frozen
class Option:
    """A plan field a backend passes on in its request, with the rule checked before any call."""

    name: str
    valid: Callable[[Any], bool]
    rule: str  # what ``valid`` wants, for the invalid_event message


def is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def matches(pattern: str) -> Callable[[Any], bool]:
    compiled = re.compile(pattern)
    return lambda value: isinstance(value, str) and compiled.fullmatch(value) is not None


@frozen
class Backend:
    """One backup service as triggers and notifications see it."""

    service: Service  # name ("csbs"): the ``backend`` field, attribute and metric dimension
    target_key: str  # the plan field naming what is backed up: "plan_id", "vault_id"
    target_word: str  # how subjects name it: "plan", "vault"
    max_resources: int  # how many resource ids one request may name
    options: tuple[Option, ...]  # the optional plan fields it takes, in request order
    # The plan field naming a policy that applies to its targets ("policy_id": CBR), where the
    # backend has one; a plan naming it is resolved to the policy's vaults.
    policy_key: str | None = None

    @property
    def name(self) -> str:
        return self.service.name

    @property
    def label(self) -> str:
        return self.service.label

    def request_fields(self, target_id: str | None) -> dict[str, Any]:
        """A request as notifications carry it, with nothing but its id given (None where a
        plan could not be read): every field this backend knows."""
        return {self.target_key: target_id, "resources": None,
                **{option.name: None for option in self.options}}  # fmt: skip


@frozen
class BackupRequest:
    """One backup a trigger asked for: the backend, what it backs up (a CSBS policy, a CBR
    vault), the resources (None: all of them) and the options the plan gave."""

    backend: Backend
    target_id: str
    resources: tuple[str, ...] | None = None
    options: tuple[tuple[str, Any], ...] = ()  # (name, value), only those the plan gave
    project_id: str | None = None  # None: the credentials' own project
    credentials: str | None = None  # a named secret's name; None: the stack's own secret
    keep_days: int | None = None  # its lifetime; None: the stack's default
    # What the trigger asked for where this request was resolved from servers or a policy
    # (``resolution.py``); None: the trigger named the plan or vault itself.
    resolved_from: Mapping[str, Any] | None = None

    def option(self, name: str) -> Any:
        return dict(self.options).get(name)

    def parameters(self) -> dict[str, Any]:
        """The request's ``parameters`` object: exactly what the trigger gave (a ``false`` as
        ``false``), in the backend's order."""
        given = dict(self.options)
        parameters = {o.name: given[o.name] for o in self.backend.options if o.name in given}
        if self.resources is not None:
            parameters["resources"] = list(self.resources)
        return parameters

    def to_dict(self) -> dict[str, Any]:
        """As notifications carry it: every field the backend knows, None where not given."""
        fields = self.backend.request_fields(self.target_id)
        if self.resources is not None:
            fields["resources"] = list(self.resources)
        fields |= self.scope() | self.lifetime()
        fields |= dict(self.options)
        return (
            fields
            if self.resolved_from is None
            else fields | {"resolved_from": dict(self.resolved_from)}
        )

    def as_plan(self) -> dict[str, Any]:
        """The plan that asks for exactly this request (what a queued plan carries)."""
        plan: dict[str, Any] = {self.backend.target_key: self.target_id}
        if self.resources is not None:
            plan["resources"] = list(self.resources)
        return plan | dict(self.options) | self.scope() | self.lifetime()

    def identity(self) -> list[Any]:
        """What names the request (for its idempotency key): the same set of resources in any
        order is the same request."""
        resources = None if self.resources is None else sorted(self.resources)
        given = dict(self.options)
        named = [self.target_id, resources, *(given.get(o.name) for o in self.backend.options)]
        # Another project (or another account's own) is another backup; the keys of plans
        # naming neither stay as they were.
        scope = self.scope() | self.lifetime()
        return [*named, scope] if scope else named

    def lifetime(self) -> dict[str, int]:
        """How long its backup is kept, where the plan said: ``keep_days``."""
        return {} if self.keep_days is None else {"keep_days": self.keep_days}

    def scope(self) -> dict[str, str]:
        """Where it runs, where the plan said: ``project_id`` and ``credentials``."""
        named = {"project_id": self.project_id, "credentials": self.credentials}
        return {key: value for key, value in named.items() if value is not None}


@frozen
class Skipped:
    """A resource the service did not back up, and why (CBR: it is being backed up already)."""

    id: str
    name: str | None
    code: str | None
    reason: str | None

    def to_dict(self, text_limit: int | None = None) -> dict[str, Any]:
        """As notifications carry it; ``text_limit``: name and reason cut to that length (the
        id and the code are kept whole)."""
        name, reason = self.name, self.reason
        if text_limit is not None:
            name = name and truncate(name, text_limit)
            reason = reason and truncate(reason, text_limit)
        return {"id": self.id, "name": name, "code": self.code, "reason": reason}

    def as_item(self) -> CheckpointItem:
        """As the completion lists it: an item that failed with its code and reason."""
        return CheckpointItem(
            id=self.id, checkpoint_id=None, resource_id=self.id, resource_name=self.name,
            status="skipped", progress=None, size_mb=None, finished_at=None,
            fail_code=self.code, fail_reason=self.reason,
        )  # fmt: skip


class Started(Protocol):
    """The parsed answer to a started backup, as the runner and notifications read it."""

    @property
    def id(self) -> str: ...

    @property
    def project_id(self) -> str | None: ...

    @property
    def target_name(self) -> str | None: ...

    @property
    def resource_count(self) -> int:
        """Resources listed in the answer (the backed up and the skipped)."""
        ...

    @property
    def skipped(self) -> tuple[Skipped, ...]: ...

    def to_dict(self, keep: int | None = None) -> dict[str, Any]:
        """As notifications carry it; ``keep``: list only the first resources (the message
        says how many were left out)."""
        ...


@frozen
class Execution:
    """A started backup as the service answered it, and what starting it took."""

    started: Started
    attempts: int  # requests sent
    project_id: str  # the project it was created in


class Followed(Protocol):
    """A started backup as the tracker follows it."""

    @property
    def checkpoint_id(self) -> str: ...

    @property
    def target_id(self) -> str: ...

    @property
    def project_id(self) -> str | None: ...

    @property
    def expected_items(self) -> int | None: ...

    @property
    def registered_at(self) -> float: ...

    @property
    def details(self) -> Mapping[str, Any]: ...


class Deletable(Protocol):
    """A registered backup as a sweep deletes it."""

    @property
    def checkpoint_id(self) -> str: ...

    @property
    def project_id(self) -> str | None: ...


class BackupService(ABC):
    """A backup service's client: one adapter per backend."""

    backend: Backend

    @abstractmethod
    def start(self, request: BackupRequest, deadline: Deadline) -> Execution:
        """Start one backup; errors carry ``attempts`` (requests sent) and ``maybe_created``."""

    @abstractmethod
    def poll(self, backup: Followed, deadline: Deadline) -> list[CheckpointItem]:
        """What the backup became: one item per resource, as far as the service lists them.
        ``not_found`` when the backup is gone."""

    @abstractmethod
    def delete(
        self, backup: Deletable, items: Mapping[str, str | None], whole: bool, deadline: Deadline
    ) -> dict[str, str | None]:
        """Ask the service to delete these servers' backups (server → the id it names the
        server's backup by; ``whole``: every server of the backup goes); what is being deleted
        now (server → the id to follow). A backup already gone is no error."""

    @abstractmethod
    def gone(
        self, backup: Deletable, deleting: Mapping[str, str | None], deadline: Deadline
    ) -> set[str]:
        """Of the servers whose backups are being deleted, those whose backups are gone."""

    @abstractmethod
    def protection(
        self, servers: Sequence[str], project_id: str | None, deadline: Deadline
    ) -> dict[str, list[str]]:
        """Where each of ``servers`` is protected: the ids of the plans or vaults listing it,
        lowest first (a server nothing lists is left out). One request a page of the service's list,
        never one a server; a list that pages on forever is a ``bad_response``."""

    def policy_targets(
        self, policy_id: str, project_id: str | None, deadline: Deadline
    ) -> list[str]:
        """The targets a policy applies to (only a backend with a ``policy_key`` has one)."""
        raise NotImplementedError(f"{self.backend.label} has no backup policy to resolve")

    def tracking_details(self, started: Started) -> dict[str, Any]:
        """What the tracker needs besides the ids to follow this backup (JSON): the resources
        the service skipped, which it will never list, where there are any; their texts cut so
        that a vault's every resource fits a DynamoDB item."""
        if not started.skipped:
            return {}
        return {"skipped": [s.to_dict(text_limit=STORED_TEXT_LENGTH) for s in started.skipped]}

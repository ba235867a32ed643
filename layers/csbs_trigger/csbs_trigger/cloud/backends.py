"""The backup services this project speaks to: each adapter module gives its ``BACKEND`` (what
a plan naming it holds, how messages name it) and ``build`` (its client). A new backend is a
new module in ``cloud/`` and one more entry in ``ADAPTERS``."""

from __future__ import annotations

from collections.abc import Callable

from csbs_trigger.cloud import cbr, csbs
from csbs_trigger.cloud.api import ApiClient
from csbs_trigger.cloud.backend import Backend, BackupService
from csbs_trigger.settings import Settings
from csbs_trigger.values import frozen


@frozen
class Adapter:
    """One backend and how its client is built."""

    backend: Backend
    build: Callable[[ApiClient, Settings], BackupService]


ADAPTERS = (Adapter(csbs.BACKEND, csbs.build), Adapter(cbr.BACKEND, cbr.build))
ADAPTERS_BY_NAME = {adapter.backend.name: adapter for adapter in ADAPTERS}
BACKENDS: dict[str, Backend] = {name: adapter.backend for name, adapter in ADAPTERS_BY_NAME.items()}
# What a plan may hold: exactly one backend's id (plan_id, vault_id), "resources", its lifetime
# ("keep_days"), and that backend's options (a name two backends share is one field).
BACKEND_BY_TARGET_KEY = {backend.target_key: backend for backend in BACKENDS.values()}
# What a plan may name instead, to be resolved to targets: a policy ("policy_id": CBR's).
BACKEND_BY_POLICY_KEY = {b.policy_key: b for b in BACKENDS.values() if b.policy_key is not None}
# Every backend's options, once by name (a name two backends share is one field, one rule).
OPTIONS = tuple({o.name: o for b in BACKENDS.values() for o in b.options}.values())
OPTION_NAMES = tuple(dict.fromkeys(o.name for b in BACKENDS.values() for o in b.options))
PLAN_FIELDS = ("resources", "keep_days", *OPTION_NAMES)

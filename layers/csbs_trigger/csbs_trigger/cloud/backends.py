"""The backup services this project speaks to: each adapter module gives its ``BACKEND`` (what
a plan naming it holds, how messages name it) and ``build`` (its client). A new backend is a
new module in ``cloud/`` and one more entry in ``ADAPTERS``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from csbs_trigger.cloud import cbr, csbs
from csbs_trigger.cloud.api import ApiClient
from csbs_trigger.cloud.backend import Backend, BackupService
from csbs_trigger.settings import Settings


@dataclass(frozen=True)
class Adapter:
    backend: Backend
    build: Callable[[ApiClient, Settings], BackupService]


ADAPTERS = (Adapter(csbs.BACKEND, csbs.build), Adapter(cbr.BACKEND, cbr.build))
BACKENDS: dict[str, Backend] = {adapter.backend.name: adapter.backend for adapter in ADAPTERS}

"""The CSBS client: "Executing a Backup Policy" and nothing else."""

from __future__ import annotations

import json
from dataclasses import dataclass

import requests

from csbs_trigger.auth import CsbsAuth
from csbs_trigger.deadline import Deadline
from csbs_trigger.errors import TriggerError
from csbs_trigger.models import BackupRequest, Checkpoint, parse_checkpoint_answer
from csbs_trigger.transport import send

USER_AGENT = "csbs-trigger/1"


@dataclass(frozen=True)
class Execution:
    checkpoint: Checkpoint
    attempts: int


class CsbsClient:
    def __init__(self, auth: CsbsAuth, session: requests.Session, provider_id: str) -> None:
        self._auth = auth
        self._session = session
        self._provider_id = provider_id

    def execute_backup_policy(self, backup: BackupRequest, deadline: Deadline) -> Execution:
        """POST a checkpoint for the plan; on a 401 authenticate afresh and try once more.

        Errors carry ``attempts``: how many POSTs reached the wire before giving up.
        """
        attempts = 0
        try:
            scope = self._auth.scope(deadline)
            url = (
                f"{scope.csbs_endpoint}/v1/{scope.project_id}"
                f"/providers/{self._provider_id}/checkpoints"
            )
            body = json.dumps(
                {"checkpoint": {"plan_id": backup.plan_id, "parameters": backup.parameters()}}
            ).encode()
            while True:
                request = requests.Request(
                    "POST",
                    url,
                    data=body,
                    headers={
                        "Content-Type": "application/json",
                        "Accept": "application/json",
                        "User-Agent": USER_AGENT,
                    },
                ).prepare()
                self._auth.authenticate(request, deadline)
                timeouts = deadline.timeouts("CSBS")
                attempts += 1
                answer = send(self._session, request, what="CSBS", timeouts=timeouts)
                if answer.status == 401 and attempts == 1:
                    self._auth.invalidate()
                    continue
                if not answer.ok:
                    raise answer.error()
                return Execution(parse_checkpoint_answer(answer.json()), attempts)
        except TriggerError as error:
            error.attempts = attempts
            raise

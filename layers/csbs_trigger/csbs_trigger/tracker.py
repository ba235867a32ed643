"""The completion tracker: one scheduled run polls the checkpoints that are due and reports each
finished one exactly once.

A run pages through the due index (polled longest ago first) while it has time, polls up to
``MAX_CONCURRENCY`` checkpoints at once, and leaves the rest to the next run. A checkpoint
another run holds is skipped quietly. Each checkpoint is polled in the project it was started
in. Whatever one checkpoint's answer holds, the run goes on with the others.

Credentials, rights or configuration that fail (401, 403, a refused login, a missing secret)
stop polling at once (asking IAM again per checkpoint would only lock the account): the backups
keep waiting, and the run fails so its dead-letter queue and alarm tell the operator. Those
whose deadline passes meanwhile end ``timed_out``, naming that reason. Every text that leaves
the tracker (log lines, the records, the failed run's error) goes through the redactor.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from csbs_trigger.aws.sns import PublishError
from csbs_trigger.aws.tracking import COMPLETING, Registration, Tracked, TrackingTable
from csbs_trigger.cloud.checkpoint_items import CheckpointItem
from csbs_trigger.completion import (
    DEPLOYMENT_FAILURES,
    SUCCEEDED,
    TIMED_OUT,
    Verdict,
    build_completion,
    judge,
    summary,
)
from csbs_trigger.deadline import Deadline
from csbs_trigger.errors import Category, ConfigError, TriggerError
from csbs_trigger.log import logger
from csbs_trigger.notify import Notification
from csbs_trigger.runner import bounded_map, publish_and_record
from csbs_trigger.runtime import Runtime

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

# Checkpoints asked for per page of the due index.
PAGE_SIZE = 50
# A checkpoint is begun only with this much of the invocation left: a poll, a publish, writes.
SECONDS_PER_CHECKPOINT = 10.0


class TrackerStopped(Exception):
    """The run stopped early: the deployment cannot poll (credentials, configuration, table)."""


@dataclass
class _Run:
    """One tracker run: its claim, its time, and what stopped it or an account."""

    table: TrackingTable
    runtime: Runtime
    context: LambdaContext
    deadline: Deadline
    claim: str
    lease_until: float
    stop: TriggerError | None = None  # the first trouble that stopped the run (or an account)
    unpublished: str | None = None  # why SNS did not take the first completion that failed
    # A deployment failure (credentials refused, a secret missing) stops its account only.
    stopped_accounts: dict[str | None, TriggerError] = field(default_factory=dict)

    def stop_for(self, registration: Registration) -> TriggerError | None:
        """What keeps this backup from being polled: the table's failure, or its own account's
        trouble; the other accounts' backups go on."""
        if self.stop is not None and self.stop.category not in DEPLOYMENT_FAILURES:
            return self.stop
        return self.stopped_accounts.get(registration.credentials)


def track(context: LambdaContext, runtime: Runtime) -> dict[str, Any]:
    """One tracker run; its counts by what happened to each due checkpoint."""
    table = runtime.tracking
    if table is None:
        raise ConfigError("environment variable TRACKING_TABLE is not set")
    settings = runtime.settings
    deadline = Deadline.from_context(
        context, settings.connect_timeout_seconds, settings.read_timeout_seconds
    )
    began = runtime.clock()
    run = _Run(
        table=table,
        runtime=runtime,
        context=context,
        deadline=deadline,
        claim=f"{context.aws_request_id}:{uuid.uuid4().hex[:12]}",
        lease_until=began + deadline.remaining_seconds(),  # a claim ends with its run
    )
    cutoff = began - settings.tracking_poll_interval_seconds
    counts: Counter[str] = Counter()
    seen: set[str] = set()
    start: dict[str, Any] | None = None
    oldest = began  # when the oldest backup this run read began to be followed
    while _can_go_on(run) and _has_time(deadline):
        try:
            page, start = table.due(cutoff, limit=PAGE_SIZE, start=start)
        except TriggerError as error:
            run.stop = error
            break
        fresh = [tracked for tracked in page if tracked.checkpoint_id not in seen]
        seen.update(tracked.checkpoint_id for tracked in fresh)
        oldest = min([oldest, *(tracked.registration.registered_at for tracked in fresh)])
        workers = min(len(fresh), settings.max_concurrency)
        counts.update(bounded_map(lambda tracked: _follow(tracked, run), fresh, workers))
        if start is None:
            break
    runtime.metrics.seconds("OldestTrackedBackupSeconds", began - oldest)
    result: dict[str, Any] = {"due": len(seen), **counts}
    if start is not None and run.stop is None:
        result["more_due"] = True  # this run ran out of time: the next one goes on
    logger.info("tracker run finished", extra=result)
    if run.stop is not None:
        reason = runtime.redactor()(run.stop.message)
        category = run.stop.category.value
        logger.error("tracker run stopped", extra={"category": category, "reason": reason})
        raise TrackerStopped(f"{category}: {reason}")
    if counts["publish_failed"]:
        raise PublishError(f"{counts['publish_failed']} of the run's completion notifications "
                           f"not published: {run.unpublished}")  # fmt: skip
    return result


def _has_time(deadline: Deadline) -> bool:
    return deadline.remaining_seconds() - deadline.reserve_seconds >= SECONDS_PER_CHECKPOINT


def _can_go_on(run: _Run) -> bool:
    """A run stopped for the deployment's sake still ends the backups past their deadline; one
    whose table failed can do nothing more."""
    return run.stop is None or run.stop.category in DEPLOYMENT_FAILURES


def _follow(tracked: Tracked, run: _Run) -> str:
    """Poll one checkpoint under this run's claim; what happened, in one word."""
    runtime = run.runtime
    if not _can_go_on(run) or not _has_time(run.deadline):
        return "deferred"
    stop = run.stop_for(tracked.registration)
    if stop is not None and runtime.clock() < tracked.registration.deadline_at:
        return "deferred"  # it waits until the deployment is mended
    try:
        if not run.table.claim(
            tracked, run.claim, now=runtime.clock(), lease_until=run.lease_until
        ):
            return "skipped"  # another run polled it since this one read the index, or holds it
        if tracked.state == COMPLETING:  # a completion computed before, but not published
            assert tracked.notification is not None
            return _publish(tracked, Notification.from_record(tracked.notification), run)
        if stop is not None:  # past its deadline, and no poll can be made
            return _conclude(tracked, run, None, stop)
        return _poll(tracked, run)
    except TriggerError as error:  # the table failed: nothing was published for it
        run.stop = error
        return "stopped"


def _poll(tracked: Tracked, run: _Run) -> str:
    runtime, registration = run.runtime, tracked.registration
    try:
        items = runtime.service(registration.backend, registration.credentials).poll(
            registration, run.deadline
        )
    except TriggerError as error:
        logger.warning("checkpoint poll failed", extra={
            "checkpoint_id": registration.checkpoint_id, "category": error.category.value,
            "reason": runtime.redactor()(error.message)})  # fmt: skip
        if error.category in DEPLOYMENT_FAILURES:
            run.stopped_accounts.setdefault(registration.credentials, error)
            run.stop = run.stop or error
            if runtime.clock() < registration.deadline_at:
                _release(tracked, run, None, error, misses=0)  # not a poll that found it gone
                return "stopped"
        return _conclude(tracked, run, None, error)
    return _conclude(tracked, run, items, None)


def _conclude(
    tracked: Tracked, run: _Run, items: list[CheckpointItem] | None, failure: TriggerError | None
) -> str:
    """Judge the poll (``items``, or the ``failure`` it met): report the checkpoint if it ended,
    else leave it for the next run."""
    runtime, registration = run.runtime, tracked.registration
    gone = failure is not None and failure.category is Category.NOT_FOUND
    misses = tracked.misses + 1 if gone else 0
    now = runtime.clock()
    verdict = judge(
        items,
        expected_items=registration.expected_items,
        now=now,
        deadline_at=registration.deadline_at,
        failure=failure,
        misses=misses,
    )
    if verdict is None:
        _release(tracked, run, items, failure, misses)
        return "running"
    notification = build_completion(
        tracked,
        verdict,
        items,
        now=now,
        invocation_id=run.context.aws_request_id,
        last_summary=tracked.progress,
        redact=runtime.redactor(),
    )
    _let_expire(tracked, items, runtime)
    if not run.table.complete(tracked, run.claim, notification.to_record()):
        return "skipped"  # the claim passed to another run meanwhile: it reports
    _count(verdict, notification, runtime)
    return _publish(tracked, notification, run)


def _let_expire(tracked: Tracked, items: list[CheckpointItem] | None, runtime: Runtime) -> None:
    """Tell the expiry register what became of each server: a backup with a lifetime may now
    expire, and each server that ended ``available`` has a newer last good backup. Before the
    completion is kept: a register that fails leaves the completion for the next run."""
    register = runtime.expiry_register
    if register is None:
        return
    from csbs_trigger.aws.expiry_register import scope_of

    registration = tracked.registration
    results = {item.resource_id: {"status": item.status, "item": item.id,
                                  "name": item.resource_name}
               for item in items or () if item.resource_id}  # fmt: skip
    scope = scope_of(registration.backend, registration.project_id, registration.credentials)
    for server, result in results.items():
        if result["status"] == "available":
            register.good(scope, server, registration.checkpoint_id, registration.registered_at)
    register.completed(registration.checkpoint_id, results)


def _release(
    tracked: Tracked,
    run: _Run,
    items: list[CheckpointItem] | None,
    failure: TriggerError | None,
    misses: int,
) -> None:
    progress = None if items is None else summary(items, tracked.registration.expected_items)
    recorded = None
    if failure is not None:
        redact = run.runtime.redactor()
        recorded = {"category": failure.category.value, "message": redact(failure.message)}
    run.table.release(tracked, run.claim, progress, failure=recorded, misses=misses)


def _publish(tracked: Tracked, notification: Notification, run: _Run) -> str:
    try:
        published = publish_and_record(notification, f"completed:{tracked.checkpoint_id}",
                                       run.runtime)  # fmt: skip
    except PublishError as error:
        run.unpublished = run.unpublished or str(error)
        return "publish_failed"  # kept as completing: the next run publishes it
    run.table.finish(
        tracked, run.claim, now=run.runtime.clock(), message_id=published["message_id"]
    )
    logger.info("backup completion reported", extra={
        "checkpoint_id": tracked.checkpoint_id, **notification.attributes})  # fmt: skip
    return str(notification.attributes["outcome"])


def _count(verdict: Verdict, notification: Notification, runtime: Runtime) -> None:
    metrics, backend = runtime.metrics, notification.attributes["backend"]
    if verdict.outcome == SUCCEEDED:
        metrics.count("BackupsCompleted", backend=backend)
    elif verdict.outcome == TIMED_OUT:
        metrics.count("BackupsTimedOut", backend=backend)
    else:
        assert verdict.error is not None
        category = verdict.error.category.value
        metrics.count("BackupsFailed", backend=backend, error_category=category)
    if verdict.outcome != TIMED_OUT:
        duration = notification.content["duration_s"]
        metrics.seconds("BackupDurationSeconds", duration, backend=backend)

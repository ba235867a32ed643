"""The daily digest: one notification that answers "is everything protected?".

It reads the history of the last 35 days and reports the period since the last digest (at
least 24 h): the totals, one line per plan or vault seen, and the recovery-point breaches (a
plan whose last successful backup is older than ``DIGEST_RPO_SECONDS``, or that never had
one). A schedule's firing (its scheduled time) is published once, however often it is
delivered: its period ends at that time, so a replay would report the same.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from csbs_trigger.cloud.backends import BACKENDS
from csbs_trigger.errors import ConfigError, InvalidEventError
from csbs_trigger.history import (
    COMPLETED,
    EXPIRED,
    FAILED,
    KEPT_SECONDS,
    STARTED,
    SUCCEEDED,
    TIMED_OUT,
    Entry,
)
from csbs_trigger.log import logger
from csbs_trigger.notify import (
    SCHEMA_VERSION,
    Notification,
    Redactor,
    duration_text,
    fit,
    iso_time,
)
from csbs_trigger.runner import publish_record
from csbs_trigger.runtime import Runtime
from csbs_trigger.text import plausible_time
from csbs_trigger.values import frozen

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

EVENT_DIGEST = "digest"
OK, ATTENTION = "ok", "attention"
RUNNING = "running"
DAY_SECONDS = 24 * 3600
# SNS takes 256 KiB with the subject and the attributes; the digest is never stored elsewhere.
MAX_DIGEST_BYTES = 240 * 1024
# The period's failures listed per plan, the latest first (the rest are counted).
MAX_FAILURES_PER_PLAN = 5
# The tracker reports a backup timed out within a poll interval of its deadline: a backup
# started longer ago that has no completion is no longer counted as running.
RUNNING_GRACE_SECONDS = 3600


@frozen
class Period:
    """The time a digest covers: from ``start`` up to, not including, ``end``."""

    start: float
    end: float

    def holds(self, moment: float) -> bool:
        return self.start <= moment < self.end

    def to_dict(self) -> dict[str, str]:
        return {"from": iso_time(self.start), "to": iso_time(self.end)}


@dataclass
class _Run:
    """One try of a plan: its started entry (None: only its completion was kept) and its end."""

    started: Entry | None
    completed: Entry | None = None

    @property
    def at(self) -> float:
        first = self.started or self.completed
        assert first is not None
        return first.at

    @property
    def outcome(self) -> str:
        if self.completed is not None:
            return self.completed.outcome
        assert self.started is not None
        return RUNNING if self.started.outcome == SUCCEEDED else FAILED


@dataclass
class _Plan:
    """What names a plan in the digest: its backend, id and where it runs."""

    backend: str
    target_id: str
    project_id: str | None = None
    name: str | None = None
    runs: list[_Run] = field(default_factory=list)
    expiries: list[Entry] = field(default_factory=list)  # what became of its expired backups

    def last_success_at(self) -> float | None:
        return max(
            (run.completed.finished_at or run.completed.at for run in self.runs
             if run.completed is not None and run.completed.outcome == SUCCEEDED),
            default=None,
        )  # fmt: skip

    def failures(self, period: Period) -> list[Entry]:
        """The period's failures (failed to start, failed, timed out), the latest first."""
        ends = (run.completed or run.started for run in self.runs)
        failed = [entry for entry in ends if entry is not None and entry.outcome != SUCCEEDED
                  and period.holds(entry.at)]  # fmt: skip
        return sorted(failed, key=lambda entry: entry.at, reverse=True)


def run_digest(event: Any, context: LambdaContext, runtime: Runtime) -> dict[str, Any]:
    """One digest: for the firing the event names (``scheduled_time``), published once; a
    direct invocation naming none reports up to now."""
    history = runtime.history
    if history is None:
        raise ConfigError("environment variable HISTORY_TABLE is not set")
    fired = _scheduled_time(event)
    end = fired if fired is not None else runtime.clock()
    last = history.last_digest()
    start = end - DAY_SECONDS if last is None else min(end - DAY_SECONDS, last)
    period = Period(max(start, end - KEPT_SECONDS), end)
    settings = runtime.settings
    notification = build_digest(
        history.entries(end - KEPT_SECONDS, end),
        period,
        rpo_seconds=settings.digest_rpo_seconds,
        running_since=end - settings.tracking_deadline_seconds - RUNNING_GRACE_SECONDS,
        invocation_id=context.aws_request_id,
    )
    content = notification.content
    runtime.metrics.value("PlansBreachingRpo", content["plans_breaching_rpo"])
    deduplicator = runtime.deduplicator
    if fired is not None and deduplicator is not None:
        firing = f"digest:{iso_time(fired)}"  # the whole of what the firing asks
        published = deduplicator.once(
            firing, "publish", lambda: publish_record(notification, runtime), context,
            payload=firing,
        )  # fmt: skip
    else:
        published = publish_record(notification, runtime)
    history.digested(end)
    result = {
        "outcome": content["outcome"],
        "period": content["period"],
        "plans": content["plans_seen"],
        "protected": content["plans_protected"],
        "attention": content["plans_needing_attention"],
        "message_id": published["message_id"],
    }
    logger.info("digest published", extra=result)
    return result


def _scheduled_time(event: Any) -> float | None:
    """The firing's time (the schedule's input carries it): the end of its period."""
    if not isinstance(event, dict):
        raise InvalidEventError("a digest event must be a JSON object")
    value = event.get("scheduled_time")
    if value is None:
        return None
    moment = plausible_time(value) if isinstance(value, str) else None
    if moment is None:
        raise InvalidEventError("scheduled_time must be an ISO 8601 time")
    return moment.timestamp()


def build_digest(
    entries: list[Entry],
    period: Period,
    *,
    rpo_seconds: float,
    running_since: float,
    invocation_id: str | None,
) -> Notification:
    """The digest of ``entries`` (the history of the last 35 days) for ``period``."""
    plans = _plans(entries)
    in_period = [entry for entry in entries if period.holds(entry.at)]
    started = [entry for entry in in_period if entry.event == STARTED]
    completed = [entry for entry in in_period if entry.event == COMPLETED]
    ended = {entry.checkpoint_id for entry in entries if entry.event == COMPLETED}
    expired = _expiries([entry for entry in in_period if entry.event == EXPIRED])
    totals: dict[str, Any] = {
        "started": len({entry.checkpoint_id for entry in started if entry.outcome == SUCCEEDED}),
        "succeeded": sum(entry.outcome == SUCCEEDED for entry in completed),
        "failed": sum(entry.outcome == FAILED for entry in completed),
        "timed_out": sum(entry.outcome == TIMED_OUT for entry in completed),
        "failed_to_start": sum(entry.outcome != SUCCEEDED for entry in started),
        "running": sum(
            entry.event == STARTED and entry.outcome == SUCCEEDED and entry.at >= running_since
            and entry.checkpoint_id not in ended for entry in entries
        ),
        "expired": expired,
    }  # fmt: skip
    judged = []
    for plan in plans:
        last_success = plan.last_success_at()
        line = _plan_line(plan, period, last_success)
        breach = _breach(plan, period.end, rpo_seconds, last_success)
        needs_attention = breach is not None or bool(line["failures"])
        judged.append((not needs_attention, plan.name or "", plan.target_id, line, breach))
    breaches = [breach for *_, breach in judged if breach is not None]
    judged.sort(key=lambda judgement: judgement[:3])  # what needs attention first, then by name
    lines = [line for *_, line, _ in judged]
    attention = sum(not calm for calm, *_ in judged)
    unread = sum(entry.target_id is None for entry in started if entry.outcome != SUCCEEDED)
    failed = (totals["failed"] + totals["timed_out"] + totals["failed_to_start"]
              + expired["failed"])  # fmt: skip
    outcome = OK if not failed and not breaches else ATTENTION
    message: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "event": EVENT_DIGEST,
        "outcome": outcome,
        "period": period.to_dict(),
        "rpo_seconds": int(rpo_seconds) if float(rpo_seconds).is_integer() else rpo_seconds,
        "totals": totals,
        "plans_seen": len(lines),
        "plans_protected": len(lines) - len(breaches),
        "plans_needing_attention": attention,
        "plans_breaching_rpo": len(breaches),
        "failed_unread_plans": unread,  # plans that failed before naming a plan or vault
        "plans": lines,
        "plans_omitted": 0,
        "rpo_breaches": breaches,
        "rpo_breaches_omitted": 0,
        "invocation_id": invocation_id,
        "published_at": iso_time(),
    }

    def keeping(count: int) -> dict[str, Any]:
        kept_plans, kept_breaches = lines[:count], breaches[:count]
        return {**message, "plans": kept_plans, "plans_omitted": len(lines) - len(kept_plans),
                "rpo_breaches": kept_breaches,
                "rpo_breaches_omitted": len(breaches) - len(kept_breaches)}  # fmt: skip

    text = fit(message, Redactor(), entries=max(len(lines), len(breaches)), keeping=keeping,
               limit=MAX_DIGEST_BYTES)  # fmt: skip
    return Notification(
        subject=_subject(len(lines), len(breaches), attention, ran=bool(started)),
        message=text,
        attributes={"event": EVENT_DIGEST, "outcome": outcome},
    )


def _plans(entries: list[Entry]) -> list[_Plan]:
    """The plans the entries name, each with its runs oldest first: one run per checkpoint
    (its completion joins it) and one per plan that failed to start."""
    plans: dict[tuple[str, str, str], _Plan] = {}
    runs: dict[tuple[tuple[str, str, str], str | None], _Run] = {}
    for entry in sorted(entries, key=lambda entry: (entry.at, entry.event != STARTED)):
        if entry.target_id is None:
            continue
        plan = plans.get(entry.plan)
        if plan is None:
            plan = plans[entry.plan] = _Plan(entry.backend, entry.target_id)
        plan.project_id = entry.project_id or plan.project_id
        plan.name = entry.name or plan.name
        if entry.event == EXPIRED:
            plan.expiries.append(entry)
            continue
        run = runs.get((entry.plan, entry.checkpoint_id))  # only checkpoints' runs are kept
        if run is not None:  # its completion; or its start told again (one batch naming it twice)
            if entry.event == COMPLETED:
                run.completed = entry
            continue
        run = _Run(entry) if entry.event == STARTED else _Run(None, entry)
        plan.runs.append(run)
        if entry.checkpoint_id:
            runs[(entry.plan, entry.checkpoint_id)] = run
    return list(plans.values())


def _plan_line(plan: _Plan, period: Period, last_success: float | None) -> dict[str, Any]:
    failures = plan.failures(period)
    line: dict[str, Any] = {
        **_named(plan),
        "runs": sum(run.started is not None and period.holds(run.at) for run in plan.runs),
        "last_outcome": max(plan.runs, key=lambda run: run.at).outcome,
        "last_success_at": iso_time(last_success) if last_success is not None else None,
        "failures": [
            {"time": iso_time(entry.at), "category": entry.category, "message": entry.message}
            for entry in failures[:MAX_FAILURES_PER_PLAN]
        ],
    }
    if len(failures) > MAX_FAILURES_PER_PLAN:
        line["failures_omitted"] = len(failures) - MAX_FAILURES_PER_PLAN
    expiries = _expiries([entry for entry in plan.expiries if period.holds(entry.at)])
    if expiries["due"] or expiries["failed"]:
        line["expired"] = expiries
    return line


def _expiries(entries: list[Entry]) -> dict[str, int]:
    """What became of expired backups, each backup counted once by its latest entry: deleted,
    failed to delete, kept as a server's last good backup, or due (report mode)."""
    latest: dict[str | None, Entry] = {}
    # In one second, a deletion (or its refusal) comes after the sweep found the backup due.
    for entry in sorted(
        entries, key=lambda entry: (entry.at, entry.outcome in ("deleted", "failed"))
    ):
        latest[entry.checkpoint_id] = entry
    outcomes = Counter(entry.outcome for entry in latest.values())
    return {"deleted": outcomes["deleted"], "failed": outcomes["failed"],
            "kept_as_last_good": outcomes["kept"], "due": outcomes["due"]}  # fmt: skip


def _breach(
    plan: _Plan, now: float, rpo_seconds: float, last_success: float | None
) -> dict[str, Any] | None:
    """The plan's recovery-point breach, if its last success is older than the RPO."""
    if last_success is not None and now - last_success <= rpo_seconds:
        return None
    breach: dict[str, Any] = {
        **_named(plan),
        "last_success_at": None,
        "age_s": None,
        "reason": "no successful backup in the last 35 days",
    }
    if last_success is not None:
        age = round(now - last_success)
        breach.update(last_success_at=iso_time(last_success), age_s=age,
                      reason=f"the last successful backup is {duration_text(age)} old")  # fmt: skip
    return breach


def _named(plan: _Plan) -> dict[str, Any]:
    """How the digest names a plan: its backend, plan or vault id, project and name."""
    backend = BACKENDS[plan.backend]
    return {"backend": plan.backend, backend.target_key: plan.target_id,
            "project_id": plan.project_id, "name": plan.name}  # fmt: skip


def _subject(seen: int, breaching: int, attention: int, *, ran: bool) -> str:
    head = "CSBS/CBR digest: " + ("" if ran else "no backups ran; ")
    if not seen:
        return head + "no plans seen in 35 days"
    need = "needs" if attention == 1 else "need"
    return f"{head}{seen - breaching} of {seen} plans protected, {attention} {need} attention"

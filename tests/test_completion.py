"""Judging a checkpoint from its items, and the completion notification: pure, no wire."""

from __future__ import annotations

import json

import pytest

from csbs_trigger.aws.tracking import Registration, Tracked
from csbs_trigger.cloud.checkpoint_items import CheckpointItem
from csbs_trigger.completion import build_completion, judge, summary
from csbs_trigger.errors import Category, TriggerError, UpstreamError
from csbs_trigger.notify import MAX_MESSAGE_BYTES, Redactor

NOW, DEADLINE = 1_800_000_000.0, 1_800_003_600.0


def item(status: str | None, number: int = 0, **extra: object) -> CheckpointItem:
    fields: dict[str, object] = {
        "id": f"item-{number}", "checkpoint_id": "cp", "resource_id": f"server-{number}",
        "resource_name": f"app-{number}", "status": status, "progress": 100.0, "size_mb": 1.0,
        "finished_at": None, "fail_code": None, "fail_reason": None, **extra,
    }  # fmt: skip
    return CheckpointItem(**fields)  # type: ignore[arg-type]


def verdict(items: list[CheckpointItem] | None, **options: object) -> str | None:
    settings: dict[str, object] = {"expected_items": None, "now": NOW, "deadline_at": DEADLINE}
    found = judge(items, **{**settings, **options})  # type: ignore[arg-type]
    return None if found is None else found.outcome


@pytest.mark.parametrize(
    ("statuses", "outcome"),
    [
        ([], None),  # no items yet: normal for a while
        (["protecting", "available"], None),
        (["waiting_protect"], None),
        (["available", "available"], "succeeded"),
        (["available", "error"], "failed"),
        (["deleting"], "failed"),
        (["deleted", "available"], "failed"),
        ([None], None),  # no status: not terminal
    ],
)
def test_a_checkpoint_ends_when_every_item_is_terminal(
    statuses: list[str | None], outcome: str | None
) -> None:
    assert verdict([item(s, n) for n, s in enumerate(statuses)]) == outcome


def test_fewer_items_than_servers_asked_for_is_not_the_end() -> None:
    listed = [item("available", 0), item("available", 1)]

    assert verdict(listed, expected_items=3) is None
    assert verdict(listed, expected_items=2) == "succeeded"
    timed_out = judge(listed, expected_items=3, now=DEADLINE, deadline_at=DEADLINE)
    assert timed_out is not None
    assert timed_out.error is not None
    assert "2 of 3 servers finished" in timed_out.error.message


def test_the_deadline_counts_only_while_it_is_not_finished() -> None:
    assert verdict([item("protecting")], now=DEADLINE) == "timed_out"
    assert verdict([], now=DEADLINE) == "timed_out"
    assert verdict([item("protecting")], now=DEADLINE - 1) is None
    assert verdict([item("available")], now=DEADLINE + 1) == "succeeded"


@pytest.mark.parametrize("category", list(Category))
def test_no_single_failed_poll_ends_a_backup(category: Category) -> None:
    """A 404, a 400, a 403, nonsense: one poll may meet any of them for a moment."""
    failure = UpstreamError("CSBS said no", category=category)

    found = judge(None, expected_items=1, now=NOW, deadline_at=DEADLINE, failure=failure, misses=1)

    assert found is None


@pytest.mark.parametrize(("misses", "ends"), [(0, False), (1, False), (2, True), (3, True)])
def test_a_checkpoint_is_gone_when_two_polls_in_a_row_find_it_gone(misses: int, ends: bool) -> None:
    failure = UpstreamError("CSBS answered HTTP 404", category=Category.NOT_FOUND)

    found = judge(None, expected_items=1, now=NOW, deadline_at=DEADLINE, failure=failure,
                  misses=misses)  # fmt: skip

    assert (found is not None) is ends
    if found is not None:
        assert (found.outcome, found.error) == ("failed", failure)


@pytest.mark.parametrize("category", [c for c in Category if c is not Category.NOT_FOUND])
def test_only_not_found_counts_towards_gone(category: Category) -> None:
    failure = UpstreamError("CSBS said no", category=category)

    assert judge(None, expected_items=1, now=NOW, deadline_at=DEADLINE, failure=failure,
                 misses=5) is None  # fmt: skip


def test_a_failed_poll_past_the_deadline_times_out_and_says_why() -> None:
    failure = UpstreamError("CSBS answered HTTP 403: no rights", category=Category.FORBIDDEN)

    found = judge(None, expected_items=2, now=DEADLINE, deadline_at=DEADLINE, failure=failure)

    assert found is not None
    assert found.outcome == "timed_out"
    assert found.error is not None
    assert found.error.category is Category.TIMEOUT
    assert found.error.message == (
        "not finished before the tracking deadline: 0 of 2 servers finished; "
        "the last poll failed (forbidden: CSBS answered HTTP 403: no rights)"
    )


def tracked(expected_items: int | None = None) -> Tracked:
    registration = Registration(
        checkpoint_id="cp-1", backend="csbs", target_id="plan-1", plan_name="nightly",
        project_id="p",
        expected_items=expected_items, registered_at=NOW - 2460, deadline_at=DEADLINE,
        started={"trigger": {"source": "schedule", "id": "s", "sender": None, "reference": None},
                 "request": {"plan_id": "plan-1", "resources": None, "auto_trigger": None},
                 "invocation_id": "i", "idempotency_key": "k"},
    )  # fmt: skip
    return Tracked(registration, "pending", NOW, 3, None, None)


def test_a_checkpoint_of_thousands_of_servers_keeps_the_items_that_fit() -> None:
    items = [item("available", n, resource_name="x" * 250, fail_reason="y" * 250)
             for n in range(3000)]  # fmt: skip
    found = judge(items, expected_items=None, now=NOW, deadline_at=DEADLINE)
    assert found is not None

    notification = build_completion(tracked(), found, items, now=NOW, invocation_id="r",
                                    last_summary=None, redact=Redactor())  # fmt: skip

    assert len(notification.message.encode()) <= MAX_MESSAGE_BYTES
    message = json.loads(notification.message)
    assert 0 < len(message["items"]) < 3000
    assert message["items_omitted"] == 3000 - len(message["items"])
    assert message["summary"]["servers"] == 3000
    assert notification.subject == "CSBS backup completed for plan nightly (3000 servers, 41 min)"


def test_secrets_echoed_in_a_fail_reason_never_reach_the_completion() -> None:
    items = [item("error", 0, fail_reason="login with S3cr3t-Passw0rd failed")]
    found = judge(items, expected_items=None, now=NOW, deadline_at=DEADLINE)
    assert found is not None

    notification = build_completion(
        tracked(), found, items, now=NOW, invocation_id="r", last_summary=None,
        redact=Redactor(["S3cr3t-Passw0rd"]),
    )  # fmt: skip

    assert "S3cr3t" not in notification.message
    assert "[redacted]" in json.loads(notification.message)["error"]["message"]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0 s"), (59, "59 s"), (119, "119 s"), (120, "2 min"), (2460, "41 min"),
     (7199, "120 min"), (7200, "2.0 h"), (30600, "8.5 h"), (597_816, "166.1 h")],
)  # fmt: skip
def test_durations_read_as_an_operator_says_them(seconds: int, shown: str) -> None:
    items = [item("available")]
    found = judge(items, expected_items=None, now=NOW, deadline_at=DEADLINE)
    assert found is not None
    record = tracked()
    registration = record.registration
    moved = Registration(**{**registration.__dict__, "registered_at": NOW - seconds})

    notification = build_completion(
        Tracked(moved, "pending", NOW, 0, None, None), found, items, now=NOW,
        invocation_id=None, last_summary=None, redact=Redactor(),
    )  # fmt: skip

    assert notification.subject == f"CSBS backup completed for plan nightly (1 server, {shown})"
    assert json.loads(notification.message)["duration_s"] == seconds


def test_a_failure_names_how_many_of_how_many() -> None:
    items = [item("available", 0), item("error", 1, fail_code="2001", fail_reason="stopped"),
             item("error", 2)]  # fmt: skip
    found = judge(items, expected_items=3, now=NOW, deadline_at=DEADLINE)
    assert found is not None
    assert isinstance(found.error, TriggerError)

    notification = build_completion(tracked(3), found, items, now=NOW, invocation_id=None,
                                    last_summary=None, redact=Redactor())  # fmt: skip

    assert found.error.message == "2 of 3 servers failed (app-1: stopped)"
    assert found.error.code == "2001"
    assert notification.subject == "CSBS backup failed for plan nightly (2 of 3 servers)"
    assert notification.attributes == {
        "event": "completed", "outcome": "failed", "backend": "csbs", "plan_id": "plan-1",
        "error_category": "item_error",
    }  # fmt: skip


def test_a_completion_whose_last_poll_failed_reports_the_last_summary_a_poll_saw() -> None:
    failure = UpstreamError("CSBS answered HTTP 503", category=Category.UNAVAILABLE)
    found = judge(None, expected_items=2, now=DEADLINE, deadline_at=DEADLINE, failure=failure)
    assert found is not None
    seen = {"servers": 2, "available": 1, "failed": 0, "running": 1}

    def summary_of(last_summary: dict[str, int] | None) -> object:
        notification = build_completion(tracked(2), found, None, now=DEADLINE, invocation_id=None,
                                        last_summary=last_summary, redact=Redactor())  # fmt: skip
        return json.loads(notification.message)["summary"]

    assert summary_of(seen) == seen
    assert summary_of(None) == {"servers": 2, "available": 0, "failed": 0, "running": 2}


def test_a_timed_out_backup_ends_when_it_was_given_up_not_when_a_server_finished() -> None:
    items = [item("available", 0, finished=NOW - 600), item("protecting", 1)]
    found = judge(items, expected_items=2, now=DEADLINE, deadline_at=DEADLINE)
    assert found is not None
    assert found.outcome == "timed_out"

    notification = build_completion(tracked(2), found, items, now=DEADLINE, invocation_id=None,
                                    last_summary=None, redact=Redactor())  # fmt: skip

    message = json.loads(notification.message)
    assert message["finished_at"] == "2027-01-15T09:00:00+00:00"
    assert message["duration_s"] == DEADLINE - (NOW - 2460)


def test_a_finish_before_the_start_is_no_negative_duration() -> None:
    """Clocks differ: CSBS's finish may lie before the moment the tracker registered the start."""
    items = [item("available", 0, finished=NOW - 5000)]
    found = judge(items, expected_items=1, now=NOW, deadline_at=DEADLINE)
    assert found is not None

    notification = build_completion(tracked(1), found, items, now=NOW, invocation_id=None,
                                    last_summary=None, redact=Redactor())  # fmt: skip

    message = json.loads(notification.message)
    assert (message["duration_s"], message["finished_at"]) == (0, "2027-01-15T06:36:40+00:00")


@pytest.mark.parametrize(
    ("statuses", "expected_items", "finished"),
    [(["error", "protecting"], 2, "1 of 2 servers finished"),
     (["available", "error", "protecting"], 3, "2 of 3 servers finished"),
     (["available"], 2, "1 of 2 servers finished"),
     ([], None, "no servers finished")],
)  # fmt: skip
def test_a_timed_out_backup_says_how_many_servers_finished(
    statuses: list[str], expected_items: int | None, finished: str
) -> None:
    items = [item(status, n) for n, status in enumerate(statuses)]
    found = judge(items, expected_items=expected_items, now=DEADLINE, deadline_at=DEADLINE)
    assert found is not None
    assert found.error is not None

    notification = build_completion(
        tracked(expected_items), found, items, now=DEADLINE, invocation_id=None,
        last_summary=None, redact=Redactor(),
    )  # fmt: skip

    assert found.error.message == f"not finished before the tracking deadline: {finished}"
    listed = f"({finished})" if statuses else "(no servers listed)"
    assert notification.subject == f"CSBS backup timed out for plan nightly {listed}"


@pytest.mark.parametrize(
    ("statuses", "expected_items", "counts"),
    [([], None, (0, 0, 0, 0)), ([], 2, (2, 0, 0, 2)),
     (["available", "error", "protecting"], None, (3, 1, 1, 1)),
     (["error", "deleted"], 4, (4, 0, 2, 2))],
)  # fmt: skip
def test_a_summary_counts_every_server_once(
    statuses: list[str], expected_items: int | None, counts: tuple[int, int, int, int]
) -> None:
    items = [item(status, n) for n, status in enumerate(statuses)]

    found = summary(items, expected_items)

    assert tuple(found[key] for key in ("servers", "available", "failed", "running")) == counts

"""Timeouts that never outlive the Lambda invocation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from csbs_trigger.errors import Category, UpstreamError

# Kept free at the end of an invocation so the notification can still be published.
PUBLISH_RESERVE_SECONDS = 3.0
MIN_CALL_SECONDS = 0.5


@dataclass
class Deadline:
    """Connect and read timeouts for the next call, within the invocation's remaining time."""

    remaining_seconds: Callable[[], float]
    connect_seconds: float
    read_seconds: float
    reserve_seconds: float = PUBLISH_RESERVE_SECONDS

    @classmethod
    def from_context(cls, context: object, connect_seconds: float, read_seconds: float) -> Deadline:
        remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
        if callable(remaining_ms):
            return cls(lambda: remaining_ms() / 1000.0, connect_seconds, read_seconds)
        # No Lambda context (a plain script): fall back to the configured timeouts alone.
        return cls(lambda: float("inf"), connect_seconds, read_seconds, reserve_seconds=0.0)

    def timeouts(self, what: str) -> tuple[float, float]:
        budget = self.remaining_seconds() - self.reserve_seconds
        if budget < MIN_CALL_SECONDS:
            raise UpstreamError(
                f"{what} was not called: too little of the invocation's time is left",
                category=Category.TIMEOUT,
            )
        return min(self.connect_seconds, budget), min(self.read_seconds, budget)

    def can_wait(self, seconds: float) -> bool:
        """Whether a pause of ``seconds`` still leaves time for one more call and the publish."""
        return self.remaining_seconds() - self.reserve_seconds - seconds >= MIN_CALL_SECONDS

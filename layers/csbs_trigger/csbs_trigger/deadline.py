"""Timeouts that never outlive the Lambda invocation."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from csbs_trigger.errors import Category, UpstreamError
from csbs_trigger.values import frozen

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

# Kept free at the end of an invocation so the notification can still be published.
PUBLISH_RESERVE_SECONDS = 3.0
MIN_CALL_SECONDS = 0.5


@frozen
class Deadline:
    """Connect and read timeouts for the next call, within the invocation's remaining time."""

    remaining_seconds: Callable[[], float]
    connect_seconds: float
    read_seconds: float
    reserve_seconds: float = PUBLISH_RESERVE_SECONDS

    @classmethod
    def from_context(
        cls, context: LambdaContext, connect_seconds: float, read_seconds: float
    ) -> Deadline:
        remaining_ms = context.get_remaining_time_in_millis
        return cls(lambda: remaining_ms() / 1000.0, connect_seconds, read_seconds)

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

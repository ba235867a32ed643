"""CloudWatch metrics in the embedded metric format (EMF), through Powertools.

Each metric is written as its own EMF line at once: one with the service dimension only (what
the alarms watch) and, for each dimension given, one more with it (what a dashboard splits by:
the backend, the error category). ``POWERTOOLS_METRICS_DISABLED`` turns them off as it does
Powertools' own (local runs).
A metric that cannot be written is logged, never allowed to fail a backup.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from csbs_trigger.log import logger


class Metrics:
    def __init__(self, namespace: str) -> None:
        self._namespace = namespace

    def count(self, name: str, **dimension: str) -> None:
        self._emit(name, MetricUnit.Count, 1, dimension)

    def value(self, name: str, value: float, **dimension: str) -> None:
        """A count measured rather than counted up (plans breaching their RPO now)."""
        self._emit(name, MetricUnit.Count, value, dimension)

    def seconds(self, name: str, value: float, **dimension: str) -> None:
        self._emit(name, MetricUnit.Seconds, value, dimension)

    def _emit(self, name: str, unit: MetricUnit, value: float, dimension: dict[str, str]) -> None:
        if is_metrics_disabled():
            return
        try:
            for dimensions in ({}, *({key: text} for key, text in dimension.items())):
                with single_metric(name, unit, value, namespace=self._namespace) as metric:
                    for key, text in dimensions.items():
                        metric.add_dimension(key, text)
        except Exception as exc:
            logger.warning("metric not written", extra={"metric": name,
                                                        "reason": type(exc).__name__})  # fmt: skip

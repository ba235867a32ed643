"""The package's one structured logger (Powertools Logger: JSON lines, Lambda context keys)."""

from __future__ import annotations

from aws_lambda_powertools import Logger

logger = Logger(service="csbs-trigger")

"""Text from outside: what may be carried on, and how it is made safe to encode.

Python strings can hold lone surrogates (JSON and Lambda's event decoder let them through);
UTF-8 cannot encode them, so SNS, DynamoDB and the log would all refuse a value holding one.
"""

from __future__ import annotations

import re
from typing import Any

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f]")
REPLACEMENT = "\ufffd"


def encodable(text: str) -> bool:
    """Whether ``text`` encodes to UTF-8 (it holds no lone surrogate)."""
    return _LONE_SURROGATE.search(text) is None


def printable(text: str) -> bool:
    """Encodable and free of control characters: fit for a header, a URL or an id."""
    return encodable(text) and _CONTROL.search(text) is None


def scrub(value: Any) -> Any:
    """``value`` (decoded JSON) with every lone surrogate replaced by U+FFFD."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub(REPLACEMENT, value)
    if isinstance(value, list):
        return [scrub(item) for item in value]
    if isinstance(value, dict):
        return {scrub(key): scrub(item) for key, item in value.items()}
    return value

"""``json.loads`` for text from outside: too deep a nesting is a ValueError like any bad JSON.

The stdlib parser raises RecursionError for nesting deeper than about a thousand levels; every
caller here already turns ValueError into a classified error, so this keeps that one path.
"""

from __future__ import annotations

import json
from typing import Any


def loads(text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None

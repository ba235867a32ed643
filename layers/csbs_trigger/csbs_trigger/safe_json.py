"""``json.loads`` for text from outside: whatever it returns can be encoded and sent on.

* Too deep a nesting is a ValueError like any bad JSON (the stdlib parser would raise
  RecursionError past about a thousand levels); every caller turns ValueError into a classified
  error.
* Python reads ``NaN``, ``Infinity`` and numbers beyond a float's range, which no JSON
  encoder may write back: they become null, so every number carried on is finite.
* JSON may spell lone UTF-16 surrogates (``"\\ud800"``), which no UTF-8 encoder accepts: a
  notification carrying one could never be published. They become U+FFFD, so a CSBS answer, a
  ticket reference or a delivery id is carried safely whatever it holds.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from csbs_trigger.text import scrub

# Only a document that spells a surrogate escape can hold one: skip the walk for all others.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


def loads(text: str | bytes) -> Any:
    try:
        document = json.loads(text, parse_constant=_no_number, parse_float=_finite)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return scrub(document) if _SURROGATE_ESCAPE.search(raw) else document


def _no_number(constant: str) -> None:
    """``NaN``, ``Infinity`` and ``-Infinity`` (which Python reads, but JSON has not): null."""
    return None


def _finite(literal: str) -> float | None:
    """A number too large for a float (``1e400``) is as unusable as Infinity: null."""
    number = float(literal)
    return number if math.isfinite(number) else None

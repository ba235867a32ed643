"""Text from outside: what may be carried on, how it is made safe to encode, and how it is
shown (without control characters; as a subject SNS accepts).

Python strings can hold lone surrogates (JSON and Lambda's event decoder let them through);
UTF-8 cannot encode them, so SNS, DynamoDB and the log would all refuse a value holding one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f]")
# What a terminal or a mail client may act on: C0 controls but tab and newline, DEL, C1.
_UNSHOWN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
REPLACEMENT = "\ufffd"
# SNS takes a subject of ASCII letters, digits, punctuation and spaces, under 100 characters.
MAX_SUBJECT_LENGTH = 99
_SUBJECT_CUT_MARK = "..."
# German spells its umlauts out where they cannot be written; other accents are dropped.
_TRANSLITERATION = str.maketrans(
    {"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "ß": "ss", "ẞ": "SS"}
)
# Times a server may plausibly name: anything else is a placeholder or garbage.
_EARLIEST, _LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)


def encodable(text: str) -> bool:
    """Whether ``text`` encodes to UTF-8 (it holds no lone surrogate)."""
    return _LONE_SURROGATE.search(text) is None


def printable(text: str) -> bool:
    """Encodable and free of control characters: fit for a header, a URL or an id."""
    return encodable(text) and _CONTROL.search(text) is None


def scrub(value: Any) -> Any:
    """``value`` (decoded JSON) with every lone surrogate replaced by U+FFFD."""
    return _each_text(value, lambda text: _LONE_SURROGATE.sub(REPLACEMENT, text))


def shown(value: Any) -> Any:
    """``value`` (decoded JSON) as it may be shown to a person: without control characters (a
    service's NUL or terminal escape sequence) and with every lone surrogate replaced by
    U+FFFD, so that it always encodes."""
    return _each_text(value, _shown_text)


def _shown_text(text: str) -> str:
    if text.isascii() and text.isprintable():  # most text: nothing to take out
        return text
    return _UNSHOWN.sub("", _LONE_SURROGATE.sub(REPLACEMENT, text))


def _each_text(value: Any, change: Callable[[str], str]) -> Any:
    """``value`` (decoded JSON) with ``change`` made to every string in it, keys included."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, list):
        return [_each_text(item, change) for item in value]
    if isinstance(value, dict):
        return {_each_text(key, change): _each_text(item, change) for key, item in value.items()}
    return value


def sns_subject(text: str) -> str:
    """``text`` as a subject SNS accepts: umlauts spelled out (Täglich: Taeglich), accents
    dropped (café: cafe), whitespace folded into single spaces, any other character that is not
    printable ASCII a ``?``, and cut below 100 characters."""
    if text.isascii() and text.isprintable():  # most subjects: only spaces to fold
        kept = text
    else:
        decomposed = unicodedata.normalize("NFKD", text.translate(_TRANSLITERATION))
        kept = "".join(
            " " if char.isspace() else char if " " <= char <= "~" else "?"
            for char in decomposed
            if not unicodedata.combining(char)
        )
    subject = " ".join(kept.split())
    if len(subject) > MAX_SUBJECT_LENGTH:
        subject = subject[: MAX_SUBJECT_LENGTH - len(_SUBJECT_CUT_MARK)] + _SUBJECT_CUT_MARK
    return subject


def plausible_time(text: str | None) -> datetime | None:
    """An ISO 8601 time from outside (UTC where it names no offset), if it names a moment
    between 2000 and 2200: a year-1 placeholder, or one beyond any calendar, is no time."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)  # "Z" included, since Python 3.11
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return moment if _EARLIEST <= moment < _LATEST else None
    except (ValueError, OverflowError):  # year 1 at +01:00 lies before year 1 in UTC
        return None

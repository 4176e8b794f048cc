"""Secret values that never reach a log, the journal, a followup or --json."""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[redacted]"
_known: set[str] = set()


class Secret:
    """A secret string: its repr and str never show the value; `.reveal()` does."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        if value:
            _known.add(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED})"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """Replace every known secret value (longest first) in `text`."""
    values = sorted({*_known, *(v for v in extra if v)}, key=len, reverse=True)
    if not values or not text:
        return text
    pattern = re.compile("|".join(re.escape(v) for v in values))
    return pattern.sub(REDACTED, text)


def redact_data(data: object) -> object:
    """Redact every string inside a JSON-like structure; Secrets become the marker."""
    if isinstance(data, Secret):
        return REDACTED
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, dict):
        return {k: redact_data(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [redact_data(v) for v in data]
    return data

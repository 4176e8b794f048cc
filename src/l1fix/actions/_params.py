"""Parameter checks shared by several fixes (this module holds no action)."""

from __future__ import annotations


def login(value: str) -> None:
    """A user's login (user, or DOMAIN\\user on Windows).

    Anything printable is allowed and travels as data: the scripts compare it with the
    computer's users and sessions, never run it.
    """
    if not value or len(value) > 256 or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("not a login (user, or DOMAIN\\user on Windows)")

"""Temporary passwords a person can read over the phone: random (`secrets`), policy-compliant.

A password is groups of four characters joined by dashes (`Kx7m-Tq4R-Zp9W`): what is shown
is exactly what is typed, and the dash is the symbol class. The alphabet has no look-alikes
(no 0/O/o, 1/l/I, |). `read_back` spells it with the NATO alphabet, "capital"/"small"
marks and digits as words.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterable

UPPER = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I, O
LOWER = "abcdefghijkmnpqrstuvwxyz"  # no l, o
DIGITS = "23456789"  # no 0, 1
ALPHABET = UPPER + LOWER + DIGITS
SEPARATOR = "-"
GROUP = 4
MIN_LENGTH = 12  # never shorter, whatever the domain allows
MAX_LENGTH = 127  # AD's limit for unicodePwd

NATO = {
    "a": "Alfa", "b": "Bravo", "c": "Charlie", "d": "Delta", "e": "Echo", "f": "Foxtrot", "g": "Golf",
    "h": "Hotel", "i": "India", "j": "Juliett", "k": "Kilo", "l": "Lima", "m": "Mike", "n": "November",
    "o": "Oscar", "p": "Papa", "q": "Quebec", "r": "Romeo", "s": "Sierra", "t": "Tango", "u": "Uniform",
    "v": "Victor", "w": "Whiskey", "x": "X-ray", "y": "Yankee", "z": "Zulu",
}  # fmt: skip
DIGIT_WORDS = {
    "0": "zero", "1": "one", "2": "two", "3": "three", "4": "four",
    "5": "five", "6": "six", "7": "seven", "8": "eight", "9": "nine",
}  # fmt: skip
SYMBOL_WORDS = {"-": "dash"}


def character_classes(password: str) -> int:
    """How many of AD's four classes (upper, lower, digit, other) the password uses."""
    return sum(
        (
            any(c.isupper() for c in password),
            any(c.islower() for c in password),
            any(c.isdigit() for c in password),
            any(not c.isalnum() for c in password),
        )
    )


def generate(min_length: int = MIN_LENGTH, *, avoid: Iterable[str] = ()) -> str:
    """A random password of at least max(min_length, 12) characters, using all four classes.

    `avoid`: names (account name, parts of the display name) that AD's complexity rule
    forbids inside a password; those of three or more characters are never contained.
    """
    length = max(min_length, MIN_LENGTH)
    if length > MAX_LENGTH:
        raise ValueError(f"a password of {length} characters is longer than AD allows ({MAX_LENGTH})")
    groups = max(2, math.ceil((length + 1) / (GROUP + 1)))  # n groups are 5n-1 characters long
    forbidden = [a.lower() for a in avoid if a and len(a) >= 3]
    while True:  # rejection sampling keeps every accepted password equally likely
        chars = "".join(secrets.choice(ALPHABET) for _ in range(groups * GROUP))
        password = SEPARATOR.join(chars[i : i + GROUP] for i in range(0, len(chars), GROUP))
        if character_classes(password) == 4 and not any(f in password.lower() for f in forbidden):
            return password


def groups(password: str) -> list[str]:
    """The password's groups as shown (`Kx7m-Tq4R` → ["Kx7m", "Tq4R"])."""
    return password.split(SEPARATOR)


def spell(char: str) -> str:
    """One character for the phone: "capital Kilo", "small x-ray", "seven", "dash"."""
    if char.isalpha() and char.lower() in NATO:
        word = NATO[char.lower()]
        return f"capital {word}" if char.isupper() else f"small {word.lower()}"
    if char in DIGIT_WORDS:
        return DIGIT_WORDS[char]
    return SYMBOL_WORDS.get(char, f"the character {char!r}")


def read_back(password: str) -> str:
    """The whole password spelled group by group: `capital Kilo, small x-ray, seven, small mike / dash / …`."""
    parts = [", ".join(spell(c) for c in group) for group in groups(password)]
    return f" / {spell(SEPARATOR)} / ".join(parts)


def refuse_no_must_change(target: str, *, must_change: bool, allowed: bool, setting: str) -> None:
    """Refused unless the profile allows leaving a password the technician knows valid (`setting`)."""
    from l1fix.errors import Refused

    if not must_change and not allowed:
        raise Refused(
            "--no-must-change would leave a password the technician knows valid; this profile does not allow it",
            target=target,
            hint=f"keep must-change (the default), or set {setting} = true in config.toml",
        )

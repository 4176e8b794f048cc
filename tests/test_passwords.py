"""passwords.py: generated temporary passwords and their phonetic read-back (property loops, no hypothesis)."""

from __future__ import annotations

import random
import re

import pytest

from l1fix import passwords
from l1fix.passwords import ALPHABET, character_classes, generate, groups, read_back, spell

LOOK_ALIKES = set("0Oo1lI|")
SHAPE = re.compile(r"[A-Za-z2-9]{4}(-[A-Za-z2-9]{4})+")


def test_alphabet_has_no_look_alikes():
    assert not LOOK_ALIKES & set(ALPHABET)
    assert len(set(ALPHABET)) == len(ALPHABET) == 24 + 24 + 8


@pytest.mark.parametrize("min_length", [0, 1, 7, 12, 13, 14, 15, 19, 20, 24, 64, 127])
def test_length_shape_and_classes_for_any_policy(min_length):
    for _ in range(200):
        pw = generate(min_length)
        assert len(pw) >= max(min_length, 12)
        assert len(pw) <= max(min_length, 12) + 4  # never a whole group longer than needed
        assert SHAPE.fullmatch(pw), pw
        assert character_classes(pw) == 4  # upper, lower, digit, dash: AD's 3-of-4 with room
        assert not LOOK_ALIKES & set(pw)


def test_too_long_for_ad_is_refused():
    with pytest.raises(ValueError, match="longer than AD allows"):
        generate(128)


def test_names_are_never_inside_the_password():
    avoid = ["jdupont", "Jean", "Dupont", "ab", "Kx7"]
    for _ in range(3000):
        pw = generate(12, avoid=avoid).lower()
        assert not any(a.lower() in pw for a in avoid if len(a) >= 3)


def test_avoid_rejects_exactly_what_it_must(monkeypatch):
    # A deterministic source: the first draw contains the name, the second does not.
    draws = iter("abcdKx7mTq4R" + "Wx7mTq4RZp9W")
    monkeypatch.setattr(passwords.secrets, "choice", lambda seq: next(draws))
    assert generate(12, avoid=["KX7M"]) == "Wx7m-Tq4R-Zp9W"  # case-insensitive; the first draw was rejected


def test_every_character_is_used_and_draws_are_uniformish():
    counts = dict.fromkeys(ALPHABET, 0)
    for _ in range(3000):
        for c in generate(12).replace("-", ""):
            counts[c] += 1
    assert all(counts.values())
    mean = sum(counts.values()) / len(counts)
    assert max(counts.values()) < 1.6 * mean and min(counts.values()) > 0.5 * mean


def test_passwords_do_not_repeat():
    seen = {generate(12) for _ in range(5000)}
    assert len(seen) == 5000


def test_character_classes():
    assert character_classes("abc") == 1
    assert character_classes("aB3") == 3
    assert character_classes("aB3-") == 4
    assert character_classes("Ünïcode9") == 3


def test_spell_marks_case_and_reads_digits_as_words():
    assert spell("K") == "capital Kilo"
    assert spell("x") == "small x-ray"
    assert spell("7") == "seven"
    assert spell("-") == "dash"
    assert spell("?") == "the character '?'"


def test_read_back_example():
    assert read_back("Kx7m-Tq4R") == (
        "capital Kilo, small x-ray, seven, small mike / dash / capital Tango, small quebec, four, capital Romeo"
    )


def test_read_back_round_trips_for_random_passwords():
    words_to_char: dict[str, str] = {}
    for c in ALPHABET + "-":
        words_to_char[spell(c)] = c
    assert len(words_to_char) == len(ALPHABET) + 1  # one spelling, one character
    rng = random.Random(4)
    for _ in range(300):
        pw = generate(rng.choice([7, 12, 14, 20]))
        spoken = read_back(pw)
        back = "-".join("".join(words_to_char[w] for w in group.split(", ")) for group in spoken.split(" / dash / "))
        assert back == pw
        assert groups(pw) == pw.split("-")

"""m365-password-reset: set a temporary Microsoft 365 password (shown once), to change at next sign-in.

PATCH /users/{id} with passwordProfile {forceChangePasswordNextSignIn, password}. The password is
generated (l1fix.passwords) unless one comes on stdin (`--password-stdin`), and checked first
against Entra ID's rules for cloud accounts: 8 to 256 characters, 3 of the 4 classes (lower,
upper, digit, symbol), symbols from Entra's list only; Entra has the last word (banned and
recent passwords). It is revealed to the technician only, with its phonetic read-back, and
never enters the run's result. Accounts holding admin roles and accounts synchronized from
on-premises AD are refused before anything is sent.
"""

from __future__ import annotations

import time
from typing import Any

from l1fix import passwords
from l1fix.action import Action, Observation, Param, Risk, RunContext
from l1fix.actions.m365_status import M365_USER, find_user, graph, refuse_privileged, refuse_synced
from l1fix.errors import PasswordRejected
from l1fix.secrets import Secret

MUST_CHANGE = "must-change"
ENTRA_MIN_LENGTH = 8
ENTRA_MAX_LENGTH = 256
ENTRA_SYMBOLS = frozenset("@#$%^&*-_!+=[]{}|\\:',.?/`~\"();<> ")
VERIFY_READS = 3  # Graph is eventually consistent: a read right after the change may not show it yet
VERIFY_DELAY_S = 1.0


def entra_password_problems(password: str) -> list[str]:
    """What breaks Entra ID's password rules for cloud accounts (never the password itself)."""
    problems = []
    if not ENTRA_MIN_LENGTH <= len(password) <= ENTRA_MAX_LENGTH:
        problems.append(f"{ENTRA_MIN_LENGTH} to {ENTRA_MAX_LENGTH} characters")
    if any(not (c.isascii() and (c.isalnum() or c in ENTRA_SYMBOLS)) for c in password):
        problems.append("letters A-Z a-z, digits and Entra's symbols only (no accents, no Unicode)")
    classes = (
        any(c.islower() for c in password),
        any(c.isupper() for c in password),
        any(c.isdigit() for c in password),
        any(c in ENTRA_SYMBOLS for c in password),
    )
    if sum(classes) < 3:
        problems.append("3 of 4 character classes (lower, upper, digit, symbol)")
    return problems


class M365PasswordReset(Action):
    name = "m365-password-reset"
    summary = "Reset a Microsoft 365 password to a temporary one shown once, to change at next sign-in"
    target_kinds = M365_USER
    risk = Risk.SAFE
    params = (
        Param("password", "the new password (else one is generated)", type=Secret, default=None),
        Param(MUST_CHANGE, "the user must change the password at next sign-in", type=bool, default=True),
    )

    def check(self, ctx: RunContext) -> Observation:
        passwords.refuse_no_must_change(
            ctx.target.name,
            must_change=ctx.params[MUST_CHANGE],
            allowed=ctx.config.graph.allow_no_must_change,
            setting="graph.allow_no_must_change",
        )
        supplied: Secret | None = ctx.params.get("password")
        if supplied:
            problems = entra_password_problems(supplied.reveal())
            if problems:
                raise PasswordRejected(
                    "the supplied password does not meet Entra ID's password rules: " + "; ".join(problems),
                    target=ctx.target.name,
                )
        user = find_user(ctx)
        refuse_synced(ctx, user, "reset the password of", "ad-password-reset")
        refuse_privileged(ctx, user, "reset the password of")
        extra = "" if user.enabled else " (the account is DISABLED: see m365-enable)"
        return Observation(False, user.state(), f"{user.summary()}; password reset requested{extra}")

    def fix(self, ctx: RunContext, before: Observation) -> dict[str, Any]:
        g = graph(ctx)
        user = g.known(before.state["id"])
        supplied: Secret | None = ctx.params.get("password")
        must_change = bool(ctx.params[MUST_CHANGE])
        if supplied:
            password = supplied
        else:
            avoid = [user.upn.split("@")[0], *(user.display_name or "").split()]
            password = Secret(passwords.generate(ENTRA_MIN_LENGTH, avoid=avoid))
            assert not entra_password_problems(password.reveal())
        g.reset_password(user, password, must_change=must_change)
        if not supplied:
            ctx.reveal("temporary password", password)
            ctx.reveal("read back", Secret(passwords.read_back(password.reveal())))
        done = ["password reset (" + ("supplied" if supplied else "generated, shown to the technician") + ")"]
        done.append("must change at next sign-in" if must_change else "no change required at next sign-in")
        return {
            "summary": ", ".join(done),
            "password": "supplied" if supplied else "generated",
            "must_change": must_change,
        }

    def verify(self, ctx: RunContext, before: Observation) -> Observation:
        g = graph(ctx)
        old = before.state["last_password_change"]
        for attempt in range(VERIFY_READS):
            user = g.read(before.state["id"])
            if user.last_password_change and user.last_password_change != old:
                break
            if attempt + 1 < VERIFY_READS:
                time.sleep(VERIFY_DELAY_S)
        problems = []
        if not user.last_password_change or user.last_password_change == old:
            problems.append("lastPasswordChangeDateTime did not change")
        if ctx.params[MUST_CHANGE] and user.must_change is False:
            problems.append("forceChangePasswordNextSignIn is not set")
        verdict = "password reset verified" if not problems else f"{', '.join(problems)}: escalate"
        return Observation(not problems, user.state(), f"{verdict} — {user.summary()}")

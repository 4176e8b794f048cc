"""m365-revoke-sessions: sign a Microsoft 365 user out everywhere (POST revokeSignInSessions).

Every refresh token and browser session cookie issued before now becomes invalid: the user
signs in again on every device (a lost phone, a suspected compromise, after a password reset).
Entra may take a few minutes to enforce it; verify reads signInSessionsValidFromDateTime.
"""

from __future__ import annotations

from typing import Any

from l1fix.action import Action, Observation, Risk, RunContext
from l1fix.actions.m365_status import M365_USER, find_user, graph


class M365RevokeSessions(Action):
    name = "m365-revoke-sessions"
    summary = "Sign a Microsoft 365 user out of every device and app (revoke refresh tokens and sessions)"
    target_kinds = M365_USER
    risk = Risk.SAFE

    def check(self, ctx: RunContext) -> Observation:
        user = find_user(ctx)
        return Observation(False, user.state(), f"{user.summary()}; sign-out everywhere requested")

    def fix(self, ctx: RunContext, before: Observation) -> dict[str, Any]:
        g = graph(ctx)
        accepted = g.revoke_sessions(g.known(before.state["id"]))
        return {
            "summary": "sign-in sessions revoked" if accepted else "Graph did not confirm the revocation",
            "revoked": accepted,
        }

    def verify(self, ctx: RunContext, before: Observation) -> Observation:
        user = graph(ctx).read(before.state["id"])
        old = before.state["sessions_valid_from"]
        moved = bool(user.sessions_valid_from) and user.sessions_valid_from != old
        verdict = (
            f"sessions valid only from {user.sessions_valid_from}: the user must sign in again "
            "(enforced within minutes)"
            if moved
            else "signInSessionsValidFromDateTime did not change: escalate"
        )
        return Observation(moved, user.state(), f"{verdict} — {user.summary()}")

"""m365-enable: re-enable a disabled Microsoft 365 account (accountEnabled), after confirmation."""

from __future__ import annotations

from typing import Any

from l1fix.action import Action, Observation, Risk, RunContext
from l1fix.actions.m365_status import M365_USER, find_user, graph, refuse_privileged, refuse_synced


class M365Enable(Action):
    name = "m365-enable"
    summary = "Re-enable a disabled Microsoft 365 account (accountEnabled), verify it is enabled"
    target_kinds = M365_USER
    risk = Risk.CONFIRM

    def check(self, ctx: RunContext) -> Observation:
        user = find_user(ctx)
        if not user.enabled:
            refuse_synced(ctx, user, "enable", "ad-enable")
            refuse_privileged(ctx, user, "enable")
        return Observation(user.enabled, user.state(), user.summary())

    def fix(self, ctx: RunContext, before: Observation) -> dict[str, Any]:
        g = graph(ctx)
        g.enable(g.known(before.state["id"]))
        return {"summary": "account enabled (accountEnabled = true)", "enabled": True}

    def verify(self, ctx: RunContext, before: Observation) -> Observation:
        user = graph(ctx).read(before.state["id"])
        verdict = "enabled" if user.enabled else "STILL DISABLED: escalate"
        return Observation(user.enabled, user.state(), f"{verdict} — {user.summary()}")

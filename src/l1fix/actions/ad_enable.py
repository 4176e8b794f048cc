"""ad-enable: re-enable a disabled AD account (userAccountControl), after confirmation."""

from __future__ import annotations

from typing import Any

from l1fix.action import Action, Observation, Risk, RunContext
from l1fix.actions.ad_status import AD_USER, directory, find_account, refuse_protected


class AdEnable(Action):
    name = "ad-enable"
    summary = "Re-enable a disabled AD account (clears ACCOUNTDISABLE), verify it is enabled"
    target_kinds = AD_USER
    risk = Risk.CONFIRM

    def check(self, ctx: RunContext) -> Observation:
        account = find_account(ctx)
        if not account.enabled:
            refuse_protected(ctx, account, "enable")
        return Observation(account.enabled, account.state(), account.summary())

    def fix(self, ctx: RunContext, before: Observation) -> dict[str, Any]:
        d = directory(ctx)
        d.enable(d.read(before.state["dn"]))
        return {"summary": "account enabled (ACCOUNTDISABLE cleared)", "enabled": True}

    def verify(self, ctx: RunContext, before: Observation) -> Observation:
        account = directory(ctx).read(before.state["dn"])
        verdict = "enabled" if account.enabled else "STILL DISABLED: escalate"
        return Observation(account.enabled, account.state(), f"{verdict} — {account.summary()}")

"""ad-unlock: clear an AD account's lockout (lockoutTime=0), verified with the computed lockout flag.

Protected accounts may be unlocked: it gives no one a new credential.
"""

from __future__ import annotations

from typing import Any

from l1fix.action import Action, Observation, Risk, RunContext
from l1fix.actions.ad_status import AD_USER, directory, find_account


class AdUnlock(Action):
    name = "ad-unlock"
    summary = "Unlock a locked-out AD account, verify with msDS-User-Account-Control-Computed"
    target_kinds = AD_USER
    risk = Risk.SAFE

    def check(self, ctx: RunContext) -> Observation:
        account = find_account(ctx)
        return Observation(not account.locked, account.state(), account.summary())

    def fix(self, ctx: RunContext, before: Observation) -> dict[str, Any]:
        d = directory(ctx)
        d.unlock(d.read(before.state["dn"]))
        return {"summary": "lockout cleared (lockoutTime=0)", "unlocked": True}

    def verify(self, ctx: RunContext, before: Observation) -> Observation:
        account = directory(ctx).read(before.state["dn"])
        verdict = "unlocked" if not account.locked else "STILL LOCKED: escalate"
        return Observation(not account.locked, account.state(), f"{verdict} — {account.summary()}")

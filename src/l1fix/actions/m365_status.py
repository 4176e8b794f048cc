"""m365-user-status: read a Microsoft 365 (Entra ID) account's state; changes nothing.

Also the helpers the other M365 fixes share: the Graph connection of a run and the
privileged-account rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from l1fix.action import Action, Observation, Risk, RunContext
from l1fix.errors import Refused

if TYPE_CHECKING:
    from l1fix.targets.graph import Graph, M365User

M365_USER = frozenset({"m365-user"})


def graph(ctx: RunContext) -> Graph:
    """The run's Graph connection (l1fix.targets.graph, opened on first use)."""
    return ctx.connection  # type: ignore[return-value]


def find_user(ctx: RunContext, *, sign_in: bool = False) -> M365User:
    """The account the technician named (UPN, mail or object id); BadInput with candidates if unknown."""
    return graph(ctx).find_user(ctx.target.name, sign_in=sign_in)


def refuse_privileged(ctx: RunContext, user: M365User, doing: str) -> None:
    """Accounts holding admin roles are for L2, unless the profile sets graph.allow_privileged."""
    if user.privileged and not ctx.config.graph.allow_privileged:
        raise Refused(
            f"l1fix does not {doing} {user.upn}: a privileged account ({'; '.join(user.privileged_by)})",
            target=ctx.target.name,
            hint="escalate to L2 (an administrator); or set graph.allow_privileged = true in config.toml",
        )


def refuse_synced(ctx: RunContext, user: M365User, doing: str, ad_action: str) -> None:
    """An account synchronized from on-premises AD is changed in AD: Entra would refuse, the sync undo it."""
    if user.synced:
        raise Refused(
            f"{user.upn} is synchronized from on-premises Active Directory: l1fix does not {doing} it in Entra ID",
            target=ctx.target.name,
            hint=f"use l1fix {ad_action} on the AD account; the sync carries it to Microsoft 365",
        )


class M365UserStatus(Action):
    """Read-only: always `already-ok`, the state is in `before`."""

    name = "m365-user-status"
    summary = "Show a Microsoft 365 account: enabled, password last set, sign-in activity, admin roles"
    target_kinds = M365_USER
    risk = Risk.SAFE

    def check(self, ctx: RunContext) -> Observation:
        user = find_user(ctx, sign_in=True)
        return Observation(True, user.state(), user.summary())

    def fix(self, ctx: RunContext, before: Observation) -> dict[str, Any]:
        return {"summary": "nothing to change: m365-user-status only reads"}

    def verify(self, ctx: RunContext, before: Observation) -> Observation:
        return self.check(ctx)

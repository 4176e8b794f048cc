"""ad-user-status: read an AD account's state (enabled, locked, password, protected); changes nothing.

Also the helpers the other AD fixes share: the directory of a run and the protected-account rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from l1fix.action import Action, Observation, Risk, RunContext
from l1fix.errors import Refused

if TYPE_CHECKING:
    from l1fix.targets.ldap import Account, Directory

AD_USER = frozenset({"ad-user"})


def directory(ctx: RunContext) -> Directory:
    """The run's LDAP connection (l1fix.targets.ldap, opened on first use)."""
    return ctx.connection  # type: ignore[return-value]


def find_account(ctx: RunContext) -> Account:
    """The account the technician named (sAMAccountName or UPN); BadInput with candidates if unknown."""
    return directory(ctx).find_user(ctx.target.name)


def refuse_protected(ctx: RunContext, account: Account, doing: str) -> None:
    """Protected (admin) accounts are for L2, unless the profile sets ldap.allow_protected."""
    if account.protected and not ctx.config.ldap.allow_protected:
        raise Refused(
            f"l1fix does not {doing} {account.sam}: a protected account ({'; '.join(account.protected_by)})",
            target=ctx.target.name,
            hint="escalate to L2 (an administrator); or set ldap.allow_protected = true in config.toml",
        )


class AdUserStatus(Action):
    """Read-only: always `already-ok`, the state is in `before`."""

    name = "ad-user-status"
    summary = "Show an AD account: enabled, locked out, password expired or to change, last logon, protected"
    target_kinds = AD_USER
    risk = Risk.SAFE

    def check(self, ctx: RunContext) -> Observation:
        account = find_account(ctx)
        return Observation(True, account.state(), account.summary())

    def fix(self, ctx: RunContext, before: Observation) -> dict[str, Any]:
        return {"summary": "nothing to change: ad-user-status only reads"}

    def verify(self, ctx: RunContext, before: Observation) -> Observation:
        return self.check(ctx)

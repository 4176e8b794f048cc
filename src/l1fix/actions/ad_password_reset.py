"""ad-password-reset: set a temporary AD password (shown once), must change at next logon, unlock.

The password is generated to the account's policy (l1fix.passwords) unless one comes on
stdin (`--password-stdin`); the DC has the last word on policy. It is revealed to the
technician only, with its phonetic read-back, and never enters the run's result.

`--no-must-change` leaves a password the technician knows valid: a policy decision, so the
profile must allow it (`ldap.allow_no_must_change = true`); the runner asks confirmations
from an action's fixed risk, before it knows the parameters, so it cannot ask for this one.
"""

from __future__ import annotations

from typing import Any

from l1fix import passwords
from l1fix.action import Action, Observation, Param, Risk, RunContext
from l1fix.actions.ad_status import AD_USER, directory, find_account, refuse_protected
from l1fix.secrets import Secret

MUST_CHANGE = "must-change"


class AdPasswordReset(Action):
    name = "ad-password-reset"
    summary = "Reset an AD password to a temporary one shown once, must change at next logon, unlock if locked"
    target_kinds = AD_USER
    risk = Risk.SAFE
    params = (
        Param("password", "the new password (else one is generated)", type=Secret, default=None),
        Param(MUST_CHANGE, "the user must change the password at next logon", type=bool, default=True),
    )

    def check(self, ctx: RunContext) -> Observation:
        passwords.refuse_no_must_change(
            ctx.target.name,
            must_change=ctx.params[MUST_CHANGE],
            allowed=ctx.config.ldap.allow_no_must_change,
            setting="ldap.allow_no_must_change",
        )
        account = find_account(ctx)
        refuse_protected(ctx, account, "reset the password of")
        extra = "" if account.enabled else " (the account is DISABLED: see ad-enable)"
        return Observation(False, account.state(), f"{account.summary()}; password reset requested{extra}")

    def fix(self, ctx: RunContext, before: Observation) -> dict[str, Any]:
        d = directory(ctx)
        account = d.read(before.state["dn"])
        supplied: Secret | None = ctx.params.get("password")
        must_change = bool(ctx.params[MUST_CHANGE])
        if supplied:
            password = supplied
        else:
            policy = d.password_policy(account)
            password = Secret(passwords.generate(policy.min_length, avoid=account.name_parts()))
        d.reset_password(account, password, must_change=must_change, unlock=account.locked)
        if not supplied:
            ctx.reveal("temporary password", password)
            ctx.reveal("read back", Secret(passwords.read_back(password.reveal())))
        done = ["password reset (" + ("supplied" if supplied else "generated, shown to the technician") + ")"]
        done.append("must change at next logon" if must_change else "no change required at next logon")
        if account.locked:
            done.append("unlocked")
        return {
            "summary": ", ".join(done),
            "password": "supplied" if supplied else "generated",
            "must_change": must_change,
            "unlocked": account.locked,
        }

    def verify(self, ctx: RunContext, before: Observation) -> Observation:
        account = directory(ctx).read(before.state["dn"])
        old_set, old_usn = int(before.state["pwd_last_set_raw"]), int(before.state["usn_changed"])
        if ctx.params[MUST_CHANGE]:
            # pwdLastSet=0 may have been 0 already: the object's USN shows the write happened.
            written = account.pwd_last_set == 0 and (old_set != 0 or account.usn_changed > old_usn)
        else:
            written = account.pwd_last_set > max(old_set, 0)
        problems = [] if written else ["pwdLastSet did not change"]
        if account.locked:
            problems.append("STILL LOCKED")
        verdict = "password reset verified" if not problems else f"{', '.join(problems)}: escalate"
        return Observation(not problems, account.state(), f"{verdict} — {account.summary()}")

"""gpupdate: refresh Group Policy on a PC; a user's policy is refreshed as that user, in their session."""

from __future__ import annotations

from l1fix.action import Param, Risk, ScriptAction
from l1fix.actions._params import login


class GpUpdate(ScriptAction):
    """Computer policy with `gpupdate /target:computer /force`; with --user, also that user's policy.

    WinRM runs as the technician: a user-policy refresh runs through a one-shot scheduled task in
    the logged-on user's session (interactive logon), and is refused when the user is not logged on.
    Check reports the last refresh times and is never "ok": a refresh is asked for on purpose.
    Verify: gpupdate exited with 0 and the refresh time moved forward.
    """

    name = "gpupdate"
    summary = "Refresh Group Policy (computer, and a logged-on user's as that user), verify it ran"
    params = (Param("user", "login of a logged-on user whose policy to refresh too", default=None, validate=login),)
    risk = Risk.SAFE
    script = "gpupdate"
    timeout_s = 330.0  # two bounded gpupdate runs (120 s each by default) and the task's start

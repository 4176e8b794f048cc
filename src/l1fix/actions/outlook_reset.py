"""outlook-reset: reset a user's Outlook profile and OST cache, reversibly (`--undo` restores the backup)."""

from __future__ import annotations

from l1fix.action import Param, Risk, ScriptAction
from l1fix.actions._params import login


class OutlookReset(ScriptAction):
    """Remove the user's Outlook profile key (Outlook recreates it) and set the OST aside, after a backup.

    Works in the user's registry hive (loaded from NTUSER.DAT, then unloaded, when they are logged
    off). Refused while Outlook runs as the user, unless --close-outlook. The backup (reg export,
    manifest, OSTs renamed to *.l1fix-<time>.bak) is written before anything is removed; PST files
    are listed, never touched. `--undo` restores the latest backup.

    Risk is confirm for the whole action: the runner reads a class's risk before any parameter
    is known, and every reset removes the user's profile (and --close-outlook ends their Outlook).
    """

    name = "outlook-reset"
    summary = "Reset a user's Outlook profile and OST (backed up first, PSTs untouched); --undo restores"
    params = (
        Param("user", "login of the user whose Outlook profile to reset (user or DOMAIN\\user)", validate=login),
        Param("keep-ost", "leave the OST files in place", type=bool, default=False),
        Param("close-outlook", "close the user's Outlook if it is running (unsaved drafts are lost)", type=bool,
              default=False),
        Param("undo", "restore the latest backup instead of resetting", type=bool, default=False),
    )  # fmt: skip
    risk = Risk.CONFIRM
    script = "outlook_reset"
    timeout_s = 180.0  # reg load/export/import and OST renames; Outlook closing takes up to 30 s

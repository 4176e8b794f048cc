"""temp-clean: delete old temporary files (per-user Temp folders and C:\\Windows\\Temp) on a PC."""

from __future__ import annotations

from l1fix.action import Param, Risk, ScriptAction
from l1fix.actions.gpupdate import _login


def _days(value: int) -> None:
    if not 0 <= value <= 3650:
        raise ValueError("expected a number of days from 0 to 3650")


class TempClean(ScriptAction):
    """Delete files older than N days from the users' AppData\\Local\\Temp and C:\\Windows\\Temp.

    Reparse points (junctions, symbolic links) are never followed; files in use are counted, not
    fatal. Reports the bytes freed and the free disk space before and after.
    """

    name = "temp-clean"
    summary = "Delete temporary files older than N days (users' Temp, Windows Temp), report space freed"
    params = (
        Param("user", "login of the one user whose Temp folder to clean (default: every profile)", default=None,
              validate=_login),
        Param("older-than-days", "only files not written for this many days", type=int, default=1, validate=_days),
    )  # fmt: skip
    risk = Risk.SAFE
    script = "temp_clean"
    timeout_s = 600.0  # a Temp folder may hold hundreds of thousands of files

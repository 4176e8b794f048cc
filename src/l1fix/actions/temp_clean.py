"""temp-clean: delete old temporary files (Windows: users' Temp, C:\\Windows\\Temp; Linux/macOS: /tmp, /var/tmp)."""

from __future__ import annotations

from l1fix.action import Param, Risk, ScriptAction
from l1fix.actions._params import login


def _days(value: int) -> None:
    if not 0 <= value <= 3650:
        raise ValueError("expected a number of days from 0 to 3650")


class TempClean(ScriptAction):
    """Delete files older than N days: Windows, the users' AppData\\Local\\Temp and C:\\Windows\\Temp;
    Linux and macOS, /tmp and /var/tmp (temp_clean.sh says which files count as old there).

    Links (junctions, symbolic links) are never followed; files in use are counted and kept. Reports
    the bytes freed and the free disk space before and after.
    """

    name = "temp-clean"
    summary = "Delete temporary files older than N days (users' Temp, Windows Temp; /tmp, /var/tmp), report space freed"
    params = (
        Param("user", "only this user's temporary files: their Temp folder on Windows, the files they own in /tmp "
              "and /var/tmp on Linux/macOS (default: everybody's)", default=None, validate=login),
        Param("older-than-days", "only files not written (Linux/macOS: nor read) for this many days", type=int,
              default=1, validate=_days),
    )  # fmt: skip
    target_kinds = frozenset({"windows", "linux", "macos"})
    risk = Risk.SAFE
    script = "temp_clean"
    timeout_s = 600.0  # a Temp folder may hold hundreds of thousands of files

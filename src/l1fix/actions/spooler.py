"""spooler-restart: restart a stuck print spooler and purge its stuck jobs."""

from __future__ import annotations

from l1fix.action import Risk, ScriptAction


class SpoolerRestart(ScriptAction):
    """Check the Spooler and its queue; restart it with its dependents and purge stuck jobs."""

    name = "spooler-restart"
    summary = "Restart the print spooler, purge stuck print jobs, verify it runs"
    target_kinds = frozenset({"windows", "linux", "macos"})
    risk = Risk.SAFE
    script = "spooler"

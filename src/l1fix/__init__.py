"""l1fix: safe, journaled level-1 helpdesk fixes.

Python API::

    from l1fix import run
    result = run("spooler-restart", "PC042", ticket=1234)
    result.status, result.before, result.after, result.to_json()
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from l1fix.result import RunResult

__all__ = ["run"]
__version__ = "0.1.0"


def run(
    action: str,
    target: str,
    *,
    ticket: int | None = None,
    dry_run: bool = False,
    yes: bool = False,
    config_path: Path | None = None,
    profile: str | None = None,
    **params: Any,
) -> RunResult:
    """Run one action on one target, journaled, exactly as the CLI does.

    A fix whose risk is `confirm` runs only with `yes=True`; without it the run ends
    with status `error` (kind `refused`) and nothing changed.
    """
    from l1fix.config import load_config
    from l1fix.errors import Refused
    from l1fix.runner import execute_journaled

    def refuse(_question: str) -> bool:
        raise Refused("this fix needs confirmation", hint="pass yes=True")

    config = load_config(config_path, profile)
    return execute_journaled(
        action, target, params, config=config, ticket=ticket, dry_run=dry_run, confirm=None if yes else refuse
    )

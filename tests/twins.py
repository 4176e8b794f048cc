"""Run an l1fix script's lab twin directly, as the simulated powershell.exe answers it (no WinRM).

Import into a test module with `from twins import HOSTILE_LOGINS, run_twin`.
"""

from __future__ import annotations

import json
from typing import Any

from l1fix.lab.windows import LabSimulator, WindowsHost, packaged_scripts
from l1fix.targets.powershell import ARGUMENTS, COMMAND, build_stdin

ALL_STEPS = ["check", "fix", "verify"]
# Logins a technician could mistype or an attacker could craft: each must reach the script as data.
HOSTILE_LOGINS = [
    "it's",
    'say "hi"',
    "$(Remove-Item C:\\ -Recurse)",
    "`$env:PATH`",
    "a; Stop-Computer -Force",
    "CORP\\' + (iex 'calc') + '",
    "..\\..\\Windows",
    "ünïcødé [x]*?",
]


def run_twin(
    where: WindowsHost | tuple[LabSimulator, str],
    script: str,
    params: dict[str, Any] | None = None,
    steps: list[str] | None = None,
) -> dict[str, Any]:
    """The JSON `script` prints on a simulated host (alone, or a host of a simulator): every step by default."""
    sim, name = where if isinstance(where, tuple) else (LabSimulator({where.name: where}), where.name)
    payload = {"action": "test", "steps": ALL_STEPS if steps is None else steps, "params": params or {}, "before": None}
    outcome = sim.run_command(name, COMMAND, list(ARGUMENTS), build_stdin(packaged_scripts()[script], payload))
    return json.loads(outcome.stdout)

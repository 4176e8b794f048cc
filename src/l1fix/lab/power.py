"""Restarts with a notice (lab only): SIMULATED Windows state, NOT a real computer.

Python twin of l1fix's `reboot.ps1`, run by `l1fix.lab.windows.LabSimulator` (see the
`l1fix.lab.scripts` docstring for the rules every twin follows). Problem hosts: PC043–PC047.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from l1fix.lab.scripts import Twin

if TYPE_CHECKING:
    from collections.abc import Callable

    from l1fix.lab.windows import WindowsHost


@dataclass
class PowerState:
    """A PC's restart state: (to be built)"""


TWINS: dict[str, Twin] = {}
PROBLEMS: dict[str, Callable[[WindowsHost], None]] = {}

"""What every connection shares: the Target it reaches and the Connection contract."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from l1fix.config import Config

# connection name -> module in l1fix.targets; imported only when used (fast start).
CONNECTION_MODULES = {"winrm": "l1fix.targets.winrm"}


@dataclass(frozen=True)
class Target:
    """A computer or account a fix runs against, as the inventory resolved it."""

    name: str
    address: str
    os: str = "windows"  # windows | linux | macos
    connection: str = "winrm"
    port: int | None = None
    settings: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def kind(self) -> str:
        return self.os


@dataclass
class ScriptResult:
    """A remote script's final JSON document and its readable output."""

    data: dict[str, Any]
    stdout: str
    stderr: str
    exit_code: int


class Connection(Protocol):
    """A way to run l1fix's scripts on a target. One per run; reused by its steps."""

    script_suffix: str  # ".ps1" or ".sh": which script file of an action to send

    def run_script(self, script: Path, payload: dict[str, Any], *, timeout: float) -> ScriptResult: ...

    def close(self) -> None: ...


def connect(target: Target, config: Config) -> Connection:
    """Open the connection the target declares, importing only that connection's module."""
    module = importlib.import_module(CONNECTION_MODULES[target.connection])
    return module.open_connection(target, config)

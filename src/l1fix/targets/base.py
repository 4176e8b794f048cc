"""What every connection shares: the Target it reaches and the Connection contract."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from l1fix.errors import L1fixError

if TYPE_CHECKING:
    from l1fix.config import Config

# connection name -> module in l1fix.targets; imported only when used (fast start).
CONNECTION_MODULES = {
    "winrm": "l1fix.targets.winrm",
    "ldap": "l1fix.targets.ldap",
    "ssh": "l1fix.targets.ssh",
    "graph": "l1fix.targets.graph",
}
# kinds of target that are accounts in a directory, not computers: the connection that finds them.
ACCOUNT_KINDS = {"ad-user": "ldap", "m365-user": "graph"}


@dataclass(frozen=True)
class Target:
    """A computer (as the inventory resolved it) or an account in a directory."""

    name: str
    address: str
    os: str = "windows"  # windows | linux | macos
    connection: str = "winrm"
    port: int | None = None
    settings: dict[str, Any] = field(default_factory=dict, hash=False)
    account_kind: str | None = None  # "ad-user" for an account; None for a computer

    @property
    def kind(self) -> str:
        """What actions declare in target_kinds: the account kind, else the computer's OS."""
        return self.account_kind or self.os

    @classmethod
    def account(cls, name: str, kind: str) -> Target:
        """An account target: the directory connection resolves the name, not the inventory."""
        return cls(name=name, address="", os="", connection=ACCOUNT_KINDS[kind], account_kind=kind)


@dataclass
class ScriptResult:
    """A remote script's final JSON document and its readable output."""

    data: dict[str, Any]
    stdout: str
    stderr: str
    exit_code: int


class Connection(Protocol):
    """How l1fix reaches a target. One per run, reused by its steps, closed at the end."""

    def close(self) -> None: ...


class ScriptConnection(Connection, Protocol):
    """A connection that runs l1fix's script files on a computer (WinRM, SSH)."""

    script_suffix: str  # ".ps1" or ".sh": which script file of an action to send

    def run_script(self, script: Path, payload: dict[str, Any], *, timeout: float) -> ScriptResult: ...


class ErrorMapper:
    """`with mapper:` turns a library's exceptions into one-line L1fixErrors (see `map`).

    Subclasses implement `map(exc)`, returning the error to raise instead, or None to let
    the exception through. The original is never chained: it may carry a password.
    """

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        if exc is None or isinstance(exc, L1fixError):
            return False
        mapped = self.map(exc)
        if mapped is None:
            return False
        raise mapped from None

    def map(self, exc: BaseException) -> L1fixError | None:
        raise NotImplementedError


def connect(target: Target, config: Config) -> Connection:
    """Open the connection the target declares, importing only that connection's module."""
    module = importlib.import_module(CONNECTION_MODULES[target.connection])
    return module.open_connection(target, config)

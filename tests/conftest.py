"""Shared fixtures: an isolated l1fix home, the lab on loopback, the CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REQUIRE_INTEGRATION = os.environ.get("L1FIX_REQUIRE_INTEGRATION") == "1"


def need_service(available: bool, reason: str) -> None:
    """Skip on a laptop without the service; fail in CI (L1FIX_REQUIRE_INTEGRATION=1)."""
    if available:
        return
    if REQUIRE_INTEGRATION:
        pytest.fail(f"integration service missing in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh L1FIX_HOME for this test."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("L1FIX_HOME", str(path))
    return path


@pytest.fixture
def lab(home: Path) -> Iterator[LabHandle]:
    """The lab (50 simulated PCs, default faults, a GLPI stand-in) on loopback, its profile in `home`."""
    from l1fix.config import load_config
    from l1fix.lab.profile import PROFILE, start_lab

    lab = start_lab(home, hosts=50, port=0, http_port=0)
    try:
        yield LabHandle(lab.wsman, lab.simulator, lab.glpi, home, load_config(None, PROFILE))
    finally:
        lab.stop()


@dataclass
class LabHandle:
    server: object  # the WS-Man endpoint
    simulator: object  # the simulated PCs
    glpi: object  # the GLPI stand-in, with lab ticket 1234
    home: Path
    config: object


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> dict:
        return json.loads(self.stdout)


def run_cli(*args: str, home: Path, stdin: str = "") -> CliResult:
    """Run the real `l1fix` command in a subprocess, as another tool would."""
    env = {**os.environ, "L1FIX_HOME": str(home)}
    proc = subprocess.run(
        [sys.executable, "-m", "l1fix", *args], capture_output=True, text=True, env=env, input=stdin, timeout=120
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)

"""Third-party actions: a plugin distribution installed into this environment appears in the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli

PLUGIN = Path(__file__).parent / "fixtures" / "plugin"


def pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def installed_plugin(tmp_path):
    # Build from a copy so the fixture folder stays clean (no build/ or egg-info left behind).
    import shutil

    src = tmp_path / "plugin"
    shutil.copytree(PLUGIN, src)
    done = pip("install", "--no-deps", "--no-build-isolation", "--no-index", str(src))
    assert done.returncode == 0, done.stderr
    yield
    pip("uninstall", "-y", "l1fix-hello-plugin")


def test_plugin_action_appears_with_its_parameters(installed_plugin, home):
    listed = run_cli("actions", "--json", home=home)
    actions = {a["name"]: a for a in json.loads(listed.stdout)}
    assert "hello-check" in actions
    assert [p["name"] for p in actions["hello-check"]["params"]] == ["greeting", "times"]
    assert actions["hello-check"]["params"][1]["type"] == "int"

    helped = run_cli("hello-check", "--help", home=home)
    assert helped.code == 0
    assert "--greeting" in helped.stdout and "--times" in helped.stdout and "--dry-run" in helped.stdout


def test_plugin_action_runs_through_the_runner(installed_plugin, home):
    (home / "inventory.yml").write_text("hosts:\n  PC001: {address: 127.0.0.1}\n")
    out = run_cli("hello-check", "PC001", "--greeting", "salut", "--times", "2", "--json", home=home)
    assert out.code == 0, out.stderr
    assert out.json()["status"] == "already-ok"
    assert out.json()["before"] == {"said": ["salut", "salut"]}


def test_without_the_plugin_the_command_does_not_exist(home):
    out = run_cli("hello-check", "--help", home=home)
    assert out.code == 2

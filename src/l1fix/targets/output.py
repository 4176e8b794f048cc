"""What every script connection does with a script's output: find its one JSON document.

A script prints one JSON object as its last line (`{"check": …}` or `{"error": …}`); anything
before it is kept as readable output. Shared by the WinRM and SSH connections.
"""

from __future__ import annotations

import json
from typing import Any

from l1fix.errors import BadOutput, RemoteError
from l1fix.secrets import redact
from l1fix.targets.base import ScriptResult


def last_json(stdout: str) -> dict[str, Any] | None:
    """The JSON object on the last non-empty line of `stdout`, or None."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line:
            try:
                data = json.loads(line)
            except ValueError:
                return None
            return data if isinstance(data, dict) else None
    return None


def script_result(name: str, target: str, stdout: str, stderr: str, code: int) -> ScriptResult:
    """The script's result; BadOutput without a JSON document, RemoteError for `{"error": …}`."""
    data = last_json(stdout)
    if data is None:
        detail = (stderr or stdout).strip().splitlines()
        tail = redact(detail[-1])[:200] if detail else "no output"
        raise BadOutput(
            f"{name} did not return a JSON result (exit code {code}: {tail})",
            target=target,
            hint="run again with --debug; if it persists, escalate",
        )
    if "error" in data:
        raise RemoteError(f"{name}: {redact(str(data['error']))}", target=target)
    return ScriptResult(data=data, stdout=stdout, stderr=stderr, exit_code=code)

"""How a PowerShell script file and its data travel to powershell.exe over stdin.

The command line is fixed (`powershell.exe -NoProfile -NonInteractive -Command -`), so
there is no 8191-character limit. Stdin carries one bootstrap line, then the script file
unchanged. The bootstrap reads the rest of stdin as one script block (so multi-line
statements work) and passes the data as a base64-encoded JSON argument: the data can
never change the script text.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

COMMAND = "powershell.exe"
ARGUMENTS = ("-NoProfile", "-NonInteractive", "-Command", "-")

BOOTSTRAP = (
    "$ErrorActionPreference='Stop';$ProgressPreference='SilentlyContinue';"
    "[Console]::OutputEncoding=[Text.UTF8Encoding]::new($false);"
    "$l1fixScript=[Console]::In.ReadToEnd();"
    "& ([ScriptBlock]::Create($l1fixScript)) -InputB64 '{data}'"
)
BOOTSTRAP_PATTERN = re.compile(re.escape(BOOTSTRAP).replace(re.escape("{data}"), "(?P<data>[A-Za-z0-9+/=]*)"))


def encode_data(payload: dict[str, Any]) -> str:
    """JSON, UTF-8, base64: an alphabet that cannot leave a single-quoted string."""
    return base64.b64encode(json.dumps(payload, ensure_ascii=False).encode("utf-8")).decode("ascii")


def build_stdin(script_text: str, payload: dict[str, Any]) -> bytes:
    """The bytes sent to powershell.exe's stdin: bootstrap line, then the script file."""
    return (BOOTSTRAP.replace("{data}", encode_data(payload)) + "\n" + script_text).encode("utf-8")


def split_stdin(stdin: bytes) -> tuple[str, dict[str, Any]]:
    """The inverse of build_stdin, used by the lab: (script text, payload)."""
    text = stdin.decode("utf-8")
    first, _, script_text = text.partition("\n")
    match = BOOTSTRAP_PATTERN.fullmatch(first.rstrip("\r"))
    if not match:
        raise ValueError("stdin does not start with l1fix's bootstrap line")
    payload = json.loads(base64.b64decode(match["data"]).decode("utf-8"))
    return script_text, payload

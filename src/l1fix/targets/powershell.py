"""How a PowerShell script file and its data travel to powershell.exe over stdin.

The command line is fixed (`powershell.exe -NoProfile -NonInteractive -Command -`), so
there is no 8191-character limit. Stdin carries, in this order:

1. one bootstrap line, the only line powershell.exe runs as a command;
2. the shared library `l1fix/actions/_common.ps1` (settings and functions every script uses);
3. the separator line `# <l1fix-script>`;
4. the script file, unchanged.

The bootstrap reads the rest of stdin, splits it at the first separator line (which may end
in `\\r\\n`), dot-sources the library as one script block at the top level (so its functions
and settings are visible to the script), then runs the script as one script block (so
multi-line statements work), passing the data as a base64-encoded JSON argument. The data
lives only in the bootstrap line, in an alphabet that can neither leave its single-quoted
string nor contain a line break: it can never change the library, the script, or where one
ends and the other begins.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from pathlib import Path
from typing import Any

import l1fix.actions

COMMAND = "powershell.exe"
ARGUMENTS = ("-NoProfile", "-NonInteractive", "-Command", "-")

LIBRARY_NAME = "_common.ps1"
LIBRARY_PATH = Path(l1fix.actions.__file__).with_name(LIBRARY_NAME)
SEPARATOR = "# <l1fix-script>"
# The separator as a whole line; the same pattern in Python's re and .NET's Regex.
SEPARATOR_LINE = r"(?m)^# <l1fix-script>\r?\n"
SEPARATOR_PATTERN = re.compile(SEPARATOR_LINE)

BOOTSTRAP = (
    "$ErrorActionPreference='Stop';$ProgressPreference='SilentlyContinue';"
    "[Console]::OutputEncoding=[Text.UTF8Encoding]::new($false);"
    f"$l1fixParts=([regex]'{SEPARATOR_LINE}').Split([Console]::In.ReadToEnd(),2);"
    ". ([ScriptBlock]::Create($l1fixParts[0]));"
    "& ([ScriptBlock]::Create($l1fixParts[1])) -Request '{data}'"
)
BOOTSTRAP_PATTERN = re.compile(re.escape(BOOTSTRAP).replace(re.escape("{data}"), "(?P<data>[A-Za-z0-9+/=]*)"))


@functools.cache
def read_library() -> str:
    """The text of the packaged `_common.ps1`, read once."""
    return LIBRARY_PATH.read_text(encoding="utf-8")


def encode_data(payload: dict[str, Any]) -> str:
    """JSON, UTF-8, base64: an alphabet that cannot leave a single-quoted string."""
    return base64.b64encode(json.dumps(payload, ensure_ascii=False).encode("utf-8")).decode("ascii")


def build_stdin(script_text: str, payload: dict[str, Any], library_text: str | None = None) -> bytes:
    """The bytes sent to powershell.exe's stdin: bootstrap line, library, separator line, script.

    `library_text` defaults to the packaged `_common.ps1`; a newline is added if it lacks one,
    so that the separator stands on its own line.
    """
    library = read_library() if library_text is None else library_text
    if library and not library.endswith("\n"):
        library += "\n"
    if SEPARATOR_PATTERN.search(library):
        raise ValueError(f"the library contains the separator line {SEPARATOR!r}")
    bootstrap = BOOTSTRAP.replace("{data}", encode_data(payload))
    return f"{bootstrap}\n{library}{SEPARATOR}\n{script_text}".encode()


def split_stdin(stdin: bytes) -> tuple[str, str, dict[str, Any]]:
    """The inverse of build_stdin, used by the lab: (library text, script text, payload).

    Splits as the bootstrap does: the first line, then at the first separator line.
    """
    text = stdin.decode("utf-8")
    first, _, rest = text.partition("\n")
    match = BOOTSTRAP_PATTERN.fullmatch(first.rstrip("\r"))
    if not match:
        raise ValueError("stdin does not start with l1fix's bootstrap line")
    separator = SEPARATOR_PATTERN.search(rest)
    if separator is None:
        raise ValueError(f"stdin has no separator line {SEPARATOR!r} between the library and the script")
    payload = json.loads(base64.b64decode(match["data"]).decode("utf-8"))
    return rest[: separator.start()], rest[separator.end() :], payload

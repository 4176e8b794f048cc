"""How a shell script file and its data travel to `/bin/sh -s` over stdin (SSH targets).

The command line is fixed (`/bin/sh -s`, or `sudo -n -- /bin/sh -s`): nothing in it comes
from a request. Stdin carries, in this order:

1. one data line, `L1FIX_REQUEST='<base64>' L1FIX_TIMEOUT=<seconds>`: the request as base64
   of UTF-8 JSON (an alphabet that can neither leave the single quotes nor hold a line break)
   and the whole seconds after which the script's own watchdog ends it;
2. the line `{`;
3. the shared library `l1fix/actions/_common.sh` (the step frame and the request decoder);
4. the separator line `# <l1fix-script>`;
5. the script file, unchanged;
6. the line `} </dev/null`.

The library and the script form one brace group: sh reads and parses all of it before it
runs any of it, so a stdin cut short runs nothing, and a command that reads its stdin finds
/dev/null, never the rest of the script. The data lives only in the first line and reaches
the script as a shell variable, never in its environment or its text.

The watchdog kills the script's whole process group: sh must lead a process group of its own
(an sshd session does; a local run needs `start_new_session=True`).
"""

from __future__ import annotations

import base64
import functools
import json
import math
import re
from pathlib import Path
from typing import Any

import l1fix.actions

COMMAND = "/bin/sh -s"
SUDO_COMMAND = "sudo -n -- /bin/sh -s"

LIBRARY_NAME = "_common.sh"
LIBRARY_PATH = Path(l1fix.actions.__file__).with_name(LIBRARY_NAME)
SEPARATOR = "# <l1fix-script>"
SEPARATOR_PATTERN = re.compile(r"(?m)^# <l1fix-script>\n")
OPEN = "{\n"
CLOSE = "} </dev/null\n"
DATA_LINE = "L1FIX_REQUEST='{data}' L1FIX_TIMEOUT={timeout}"
DATA_PATTERN = re.compile(r"L1FIX_REQUEST='(?P<data>[A-Za-z0-9+/=]*)' L1FIX_TIMEOUT=(?P<timeout>[0-9]+)")


@functools.cache
def read_library() -> str:
    """The text of the packaged `_common.sh`, read once."""
    return LIBRARY_PATH.read_text(encoding="utf-8")


def encode_data(payload: dict[str, Any]) -> str:
    """JSON, UTF-8, base64: an alphabet that cannot leave a single-quoted string."""
    return base64.b64encode(json.dumps(payload, ensure_ascii=False).encode("utf-8")).decode("ascii")


def watchdog_seconds(timeout: float) -> int:
    """The script's own limit: a second more than the connection waits, so the connection's
    Timeout is what the technician sees, and the script still ends if nobody is left to kill it."""
    return max(1, math.ceil(timeout)) + 1


def build_stdin(script_text: str, payload: dict[str, Any], *, timeout: float, library_text: str | None = None) -> bytes:
    """The bytes sent to `/bin/sh -s`: data line, `{`, library, separator, script, `} </dev/null`."""
    library = read_library() if library_text is None else library_text
    if SEPARATOR_PATTERN.search(library):
        raise ValueError(f"the library contains the separator line {SEPARATOR!r}")
    parts = [DATA_LINE.format(data=encode_data(payload), timeout=watchdog_seconds(timeout)) + "\n", OPEN]
    for text in (library, SEPARATOR + "\n", script_text):
        parts.append(text if not text or text.endswith("\n") else text + "\n")
    parts.append(CLOSE)
    return "".join(parts).encode("utf-8")


def split_stdin(stdin: bytes) -> tuple[str, str, dict[str, Any], int]:
    """The inverse of build_stdin, for tests: (library text, script text, payload, watchdog seconds)."""
    text = stdin.decode("utf-8")
    first, _, rest = text.partition("\n")
    match = DATA_PATTERN.fullmatch(first)
    if not match:
        raise ValueError("stdin does not start with l1fix's data line")
    if not rest.startswith(OPEN) or not rest.endswith("\n" + CLOSE):
        raise ValueError("the library and the script are not one brace group reading /dev/null")
    body = rest[len(OPEN) : -len(CLOSE)]
    separator = SEPARATOR_PATTERN.search(body)
    if separator is None:
        raise ValueError(f"stdin has no separator line {SEPARATOR!r} between the library and the script")
    payload = json.loads(base64.b64decode(match["data"]).decode("utf-8"))
    return body[: separator.start()], body[separator.end() :], payload, int(match["timeout"])

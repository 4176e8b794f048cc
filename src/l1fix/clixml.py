"""Decode PowerShell CLIXML (what powershell.exe writes to stderr over WinRM) into text.

Progress records are dropped: they appear on successful runs too and are not errors.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

HEADER = "#< CLIXML"
_NS = "{http://schemas.microsoft.com/powershell/2004/04}"
_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")
_STREAMS = {"Error": "", "Warning": "WARNING: ", "Verbose": "VERBOSE: ", "Information": ""}


def _unescape(text: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


def to_text(stderr: str) -> str:
    """Readable text of a stderr that may hold one or more CLIXML blocks; plain text passes through."""
    if HEADER not in stderr:
        return stderr
    lines: list[str] = []
    for block in stderr.split(HEADER):
        block = block.strip()
        if not block:
            continue
        if not block.startswith("<Objs"):
            lines.append(block)
            continue
        try:
            root = ET.fromstring(block)
        except ET.ParseError:
            lines.append(block)
            continue
        for node in root.iter(f"{_NS}S"):
            stream = node.get("S")
            if stream in _STREAMS and node.text:
                lines.append(_STREAMS[stream] + _unescape(node.text))
    return "".join(lines).rstrip("\r\n") if lines else ""

"""Every PowerShell script l1fix ships parses cleanly and never evaluates text as code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tree_sitter_powershell
from tree_sitter import Language, Node, Parser

import l1fix.actions

ACTIONS = Path(l1fix.actions.__file__).parent
SCRIPTS = sorted(ACTIONS.glob("*.ps1"))
PARSER = Parser(Language(tree_sitter_powershell.language()))
# Ways to run text as code, or to hide code from review.
FORBIDDEN = re.compile(
    r"Invoke-Expression|\biex\b|-EncodedCommand|\[ScriptBlock\]::Create|NewScriptBlock|Add-Type\s+-TypeDefinition",
    re.IGNORECASE,
)
PARAM_BLOCK = "param([Parameter(Mandatory = $true)][string]$InputB64)"


def syntax_errors(source: bytes) -> list[str]:
    """Every ERROR or MISSING node of the parse tree, as 'line:column kind text'."""
    found: list[str] = []

    def walk(node: Node) -> None:
        if node.is_error or node.is_missing:
            line, column = node.start_point
            text = source[node.start_byte : node.end_byte][:60].decode("utf-8", "replace")
            kind = "MISSING" if node.is_missing else "ERROR"
            found.append(f"{line + 1}:{column + 1} {kind} {node.type} {text!r}")
        for child in node.children:
            walk(child)

    walk(PARSER.parse(source).root_node)
    return found


def test_the_actions_ship_their_scripts() -> None:
    assert {"spooler.ps1", "service.ps1"} <= {p.name for p in SCRIPTS}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_parses_without_errors(script: Path) -> None:
    assert syntax_errors(script.read_bytes()) == []


@pytest.mark.parametrize(
    "broken",
    [
        "function Get-X {\n    param($a)\n    if ($a) { 'x'\n}\n",  # unclosed brace
        "$x = @(1, 2\n",  # unclosed parenthesis
        '$s = "unterminated\n',  # unterminated string
        "if ($a -eq) { 1 }\n",  # operator without its operand
    ],
)
def test_a_broken_script_is_detected(broken: str) -> None:
    assert syntax_errors(broken.encode()) != []


def test_a_shipped_script_with_one_brace_removed_is_detected() -> None:
    text = (ACTIONS / "spooler.ps1").read_text(encoding="utf-8")
    cut = text.rindex("}")
    assert syntax_errors((text[:cut] + text[cut + 1 :]).encode()) != []


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_never_evaluates_text_as_code(script: Path) -> None:
    assert FORBIDDEN.findall(script.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("snippet", ["iex $cmd", "Invoke-Expression $x", "powershell -EncodedCommand abc"])
def test_code_evaluation_is_detected(snippet: str) -> None:
    assert FORBIDDEN.search(snippet)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_takes_its_data_as_one_base64_parameter(script: Path) -> None:
    text = script.read_text(encoding="utf-8")
    assert PARAM_BLOCK in text
    assert "ConvertTo-Json" in text and "-Compress" in text


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_is_ascii(script: Path) -> None:
    # Windows PowerShell 5.1 reads a file without BOM as ANSI: keep scripts portable.
    script.read_bytes().decode("ascii")

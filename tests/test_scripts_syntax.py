"""Every PowerShell script l1fix ships parses cleanly and never evaluates text as code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tree_sitter_powershell
from tree_sitter import Language, Node, Parser

import l1fix.actions

ACTIONS = Path(l1fix.actions.__file__).parent
LIBRARY = ACTIONS / "_common.ps1"  # shared functions, sent ahead of every script
ALL_PS1 = sorted(ACTIONS.glob("*.ps1"))  # the scripts and the library
SCRIPTS = [p for p in ALL_PS1 if p != LIBRARY]
PARSER = Parser(Language(tree_sitter_powershell.language()))
# Ways to run text as code, or to hide code from review.
FORBIDDEN = re.compile(
    r"Invoke-Expression|\biex\b|-EncodedCommand|\[ScriptBlock\]::Create|NewScriptBlock|Add-Type\s+-TypeDefinition",
    re.IGNORECASE,
)
PARAM_BLOCK = "param([Parameter(Mandatory = $true)][string]$Request)"


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


def test_the_actions_ship_their_scripts_and_the_library() -> None:
    assert {"spooler.ps1", "service.ps1"} <= {p.name for p in SCRIPTS}
    assert LIBRARY in ALL_PS1 and LIBRARY not in SCRIPTS


@pytest.mark.parametrize("script", ALL_PS1, ids=lambda p: p.name)
def test_script_parses_without_errors(script: Path) -> None:
    assert syntax_errors(script.read_bytes()) == []


def function_names(source: bytes) -> list[str]:
    """The names of the functions a PowerShell file defines (at any depth), from its parse tree."""
    names: list[str] = []

    def walk(node: Node) -> None:
        if node.type == "function_statement":
            name = next(c for c in node.children if c.type == "function_name")
            names.append(source[name.start_byte : name.end_byte].decode().casefold())
        for child in node.children:
            walk(child)

    walk(PARSER.parse(source).root_node)
    return names


LIBRARY_FUNCTIONS = function_names(LIBRARY.read_bytes())


def test_the_library_defines_the_shared_functions() -> None:
    expected = ["Invoke-L1fixSteps", "Get-Param", "Get-ServiceByName", "Stop-ServiceTree", "Start-ServiceAndWait"]
    assert {name.casefold() for name in expected} <= set(LIBRARY_FUNCTIONS)
    assert len(LIBRARY_FUNCTIONS) == len(set(LIBRARY_FUNCTIONS))


def test_function_names_are_found() -> None:
    source = b"function Get-A { 1 }\nfunction global:Get-B {\n    param($x)\n    function Get-C { 2 }\n}\n"
    assert function_names(source) == ["get-a", "global:get-b", "get-c"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_no_script_redefines_a_library_function(script: Path) -> None:
    # Copies are what _common.ps1 removes; a redefinition would also silently shadow it.
    assert set(function_names(script.read_bytes())) & set(LIBRARY_FUNCTIONS) == set()


# What the library may do at its top level besides defining functions: settings and constants.
LIBRARY_STATEMENT = re.compile(r"\$\w+ = |Remove-TypeData -TypeName System\.Array |Add-Type -AssemblyName [\w.]+$")


def top_level_statements(source: bytes) -> list[tuple[str, str]]:
    """(node type, text) of each top-level statement of a PowerShell file, comments left out."""
    nodes: list[Node] = []
    for child in PARSER.parse(source).root_node.children:
        nodes.extend(child.children if child.type == "statement_list" else [child])
    return [(n.type, source[n.start_byte : n.end_byte].decode()) for n in nodes if n.type != "comment"]


def only_definitions(source: bytes) -> bool:
    return all(
        kind == "function_statement" or (kind == "pipeline" and LIBRARY_STATEMENT.match(text) is not None)
        for kind, text in top_level_statements(source)
    )


def test_the_library_holds_only_definitions() -> None:
    """Settings, constants and functions: no param block, no output, nothing run."""
    assert only_definitions(LIBRARY.read_bytes())


@pytest.mark.parametrize(
    "extra",
    [
        "Write-Output 'hi'\n",
        "'a string is output'\n",
        "Get-Service\n",
        "param($x)\n",
        "Invoke-L1fixSteps -EncodedRequest x\n",
    ],
)
def test_a_library_that_does_more_than_define_is_detected(extra: str) -> None:
    text = LIBRARY.read_text(encoding="utf-8")
    head, _, rest = text.partition("#>\n")  # after the opening comment block
    source = (head + "#>\n" + extra + rest).encode()
    assert not only_definitions(source)


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


@pytest.mark.parametrize("script", ALL_PS1, ids=lambda p: p.name)
def test_script_never_evaluates_text_as_code(script: Path) -> None:
    assert FORBIDDEN.findall(script.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("snippet", ["iex $cmd", "Invoke-Expression $x", "powershell -EncodedCommand abc"])
def test_code_evaluation_is_detected(snippet: str) -> None:
    assert FORBIDDEN.search(snippet)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_takes_its_data_as_one_base64_parameter(script: Path) -> None:
    text = script.read_text(encoding="utf-8")
    code = re.sub(r"<#.*?#>", "", text, flags=re.DOTALL)  # after its comment block
    assert code.lstrip().startswith(PARAM_BLOCK)
    # The library's frame decodes the data and writes the one JSON document.
    assert "Invoke-L1fixSteps -EncodedRequest $Request" in text
    assert "_common.ps1" in text  # says where its other functions come from
    library = LIBRARY.read_text(encoding="utf-8")
    assert "ConvertTo-Json" in library and "-Compress" in library


@pytest.mark.parametrize("script", ALL_PS1, ids=lambda p: p.name)
def test_script_is_ascii(script: Path) -> None:
    # Windows PowerShell 5.1 reads a file without BOM as ANSI: keep scripts portable.
    script.read_bytes().decode("ascii")


def test_the_bootstrap_line_parses() -> None:
    from l1fix.targets.powershell import BOOTSTRAP, encode_data

    line = BOOTSTRAP.replace("{data}", encode_data({"params": {"x": "it's"}}))
    assert "\n" not in line and FORBIDDEN.findall(line) == ["[ScriptBlock]::Create"] * 2  # the only two
    assert syntax_errors(line.encode()) == []

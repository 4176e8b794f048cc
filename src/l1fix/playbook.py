"""Playbooks: a team's procedure for a common call, as YAML a technician can read and run.

A playbook names its steps (actions with parameters), conditions (`when:`), what to do
when a step fails (`on_failure: stop | continue | escalate`) and, for a read-only step (a
diagnosis), what its findings do (`on_findings: continue | stop | escalate`). It is checked
before anything runs — against a JSON Schema (`playbook_schema()`) and against the action
registry — and every error names `file:line:column`. Values and conditions are Jinja2
expressions evaluated in a sandbox: a playbook reads its parameters and earlier steps'
results, never runs Python.

`run_playbook` runs the steps of one target in order over one shared connection, the
targets in parallel (bounded), each within a time limit. Every step is a journaled run;
a ticket receives one followup for the whole playbook run.

A target's status is the worst of its steps': error, failed, findings, fixed, skipped (a dry
run's would-be fix), already-ok. A diagnosis's `findings` stands unless a later step runs the
same read-only action again (a re-check after the fixes): the latest reading decides. So
diagnose → fix → diagnose again ends `fixed` when the re-check is clean, `findings` (exit 6)
when something is left; without a re-check the findings stand, since no fix says it covered
them all (an escalation never is).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import math
import re
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, Undefined, meta, nodes
from jinja2.exceptions import SecurityError, TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing

from l1fix.action import Action, Risk, registry
from l1fix.config import Config
from l1fix.errors import (
    EXIT_FAILED,
    EXIT_FINDINGS,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_TIMEOUT,
    BadInput,
    L1fixError,
    Timeout,
)
from l1fix.inventory import OS_KINDS
from l1fix.journal import Journal
from l1fix.result import ErrorInfo, RunResult, Status
from l1fix.runner import RunObserver, execute
from l1fix.targets.base import ACCOUNT_KINDS, Connection, Target, connect

TARGET_KINDS = (*OS_KINDS, *ACCOUNT_KINDS)  # computers by OS, accounts by directory
PARAM_TYPES: dict[str, type] = {"string": str, "integer": int, "number": float, "boolean": bool}
ON_FAILURE = ("stop", "continue", "escalate")
ON_FINDINGS = ("continue", "stop", "escalate")
STEP_FIELDS = ("id", "action", "status", "summary", "before", "after", "done", "error", "run_id", "changed")
TEMPLATE_NAMES = ("params", "steps", "target")
# Names a template could not reach as keys: a dict's own methods answer first.
RESERVED = frozenset(name for name in dir(dict) if not name.startswith("_"))

DEFAULT_CONCURRENCY = 10
MAX_CONCURRENCY = 256
DEFAULT_TIMEOUT_S = 600.0
GRACE_S = 5.0  # after Ctrl-C or a time limit, how long running steps get to finish
EXIT_INTERRUPTED = 130  # cancelled with Ctrl-C, as shells report it
POLL_S = 0.05

_NAME = "^[a-z][a-z0-9_]{0,63}$"
_ACTION = "^[a-z0-9][a-z0-9-]{0,63}$"
_PATTERN_WORDS = {
    _NAME: "a name of lower-case letters, digits and _, starting with a letter",
    _ACTION: "an action name such as spooler-restart (see `l1fix actions`)",
}
_TYPE_WORDS = {
    str: "text",
    int: "a whole number",
    float: "a number",
    bool: "true or false",
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping (key: value)",
    "array": "a list",
    "null": "nothing",
}
MAX_NODES = 20_000
MAX_DEPTH = 40
_CONNECTION_ERRORS = frozenset({"unreachable", "tls", "auth", "timeout", "bad-output", "internal"})


# -- the format ------------------------------------------------------------------------------


def playbook_schema() -> dict[str, Any]:
    """The JSON Schema of a playbook file (`l1fix playbook schema`), for validation and editors."""
    scalar = {"type": ["string", "integer", "number", "boolean"]}
    param = {
        "type": "object",
        "description": "A value the technician may give with --param NAME=VALUE; `params.NAME` in templates.",
        "required": ["type"],
        "additionalProperties": False,
        "properties": {
            "type": {"enum": list(PARAM_TYPES)},
            "description": {"type": "string"},
            "default": scalar,
            "choices": {"type": "array", "items": scalar, "minItems": 1},
        },
    }
    step = {
        "type": "object",
        "required": ["action"],
        "additionalProperties": False,
        "properties": {
            "id": {
                "type": "string",
                "pattern": _NAME,
                "description": "How later steps refer to this one (steps.ID.status); default: the action name "
                "with _ for -.",
            },
            "name": {"type": "string", "description": "What the step does, for people."},
            "action": {"type": "string", "pattern": _ACTION, "description": "The fix to run: see `l1fix actions`."},
            "with": {
                "type": "object",
                "description": "The action's parameters; strings may be templates: {{ params.x }}, "
                "{{ steps.ID.after.key }}.",
                "additionalProperties": scalar,
            },
            "when": {
                "type": "string",
                "minLength": 1,
                "description": "Run the step only if this expression is true, e.g. steps.status.before.locked.",
            },
            "on_failure": {
                "enum": list(ON_FAILURE),
                "default": "stop",
                "description": "When the step fails or cannot run: stop the target's steps (default), continue, "
                "or stop and escalate the ticket.",
            },
            "on_findings": {
                "enum": list(ON_FINDINGS),
                "default": "continue",
                "description": "Read-only steps (diagnose) only: when the step has findings, go on (default), stop "
                "the target's steps, or stop and escalate the ticket.",
            },
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "l1fix playbook",
        "type": "object",
        "required": ["name", "steps"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 100},
            "description": {"type": "string", "description": "Markdown, for the technician and the knowledge base."},
            "applies_to": {
                "type": "array",
                "items": {"enum": list(TARGET_KINDS)},
                "minItems": 1,
                "uniqueItems": True,
                "description": "Kinds of target; default: what every step's action supports.",
            },
            "params": {"type": "object", "propertyNames": {"pattern": _NAME}, "additionalProperties": param},
            "targets": {
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "minItems": 1,
                "description": "Default targets when none is given on the command line.",
            },
            "steps": {"type": "array", "items": step, "minItems": 1},
            "escalate": {
                "type": "object",
                "description": "Who gets the ticket when a step with on_failure: escalate fails.",
                "additionalProperties": False,
                "properties": {"group": {"type": "string"}, "user": {"type": "string"}, "note": {"type": "string"}},
                "oneOf": [
                    {"required": ["group"], "not": {"required": ["user"]}},
                    {"required": ["user"], "not": {"required": ["group"]}},
                ],
            },
        },
    }


@dataclass(frozen=True)
class Where:
    """A place in a playbook file, 1-based, as editors show it."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"

    def error(self, what: str, hint: str | None = None) -> BadInput:
        return BadInput(f"{self}: {what}", hint=hint)


_REQUIRED = object()


@dataclass(frozen=True)
class PlaybookParam:
    name: str
    type: str  # a key of PARAM_TYPES
    default: Any = _REQUIRED
    description: str = ""
    choices: tuple[Any, ...] | None = None

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def convert(self, raw: Any) -> Any:
        """A value from --param (text) or Python, checked against the declared type and choices."""
        kind = PARAM_TYPES[self.type]
        value: Any = raw
        if isinstance(raw, str) and kind is not str:
            text = raw.strip().lower()
            try:
                if kind is bool:
                    if text not in ("true", "false", "yes", "no", "1", "0"):
                        raise ValueError
                    value = text in ("true", "yes", "1")
                else:
                    value = kind(text)
            except ValueError:
                value = None
        if not _fits(value, kind):
            raise BadInput(f"parameter {self.name}={raw!r}: expected {_TYPE_WORDS[kind]}")
        value = float(value) if kind is float else value
        if self.choices and value not in self.choices:
            shown = ", ".join(map(str, self.choices))
            raise BadInput(f"parameter {self.name}={raw!r}: expected one of {shown}")
        return value


@dataclass(frozen=True)
class Step:
    id: str
    action: str
    with_: dict[str, Any]
    when: str | None
    on_failure: str
    name: str
    where: dict[str, Where]  # "step", "when", "with.KEY" → its place in the file
    on_findings: str = "continue"  # read-only steps: what their findings do

    @property
    def expression(self) -> str | None:
        """The `when:` condition as an expression (a surrounding {{ }} is optional)."""
        if self.when is None:
            return None
        whole = _WHOLE.fullmatch(self.when)
        return whole["expr"].strip() if whole else self.when.strip()


@dataclass(frozen=True)
class Escalation:
    group: str | None
    user: str | None
    note: str

    @property
    def to(self) -> str:
        return self.group or self.user or ""


@dataclass
class Playbook:
    name: str
    description: str
    applies_to: tuple[str, ...]
    params: dict[str, PlaybookParam]
    steps: list[Step]
    targets: list[str]
    escalate: Escalation | None
    file: str

    def resolve_params(self, raw: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Given values (--param) over the defaults; unknown names get the closest known name."""
        raw = dict(raw or {})
        for name in raw:
            if name not in self.params:
                close = difflib.get_close_matches(name, list(self.params), n=1)
                known = ", ".join(self.params) or "none"
                hint = f"did you mean {close[0]}?" if close else f"parameters: {known}"
                raise BadInput(f"playbook {self.name} has no parameter {name!r}", hint=hint)
        values = {}
        for name, param in self.params.items():
            if name in raw:
                values[name] = param.convert(raw[name])
            elif param.required:
                raise BadInput(f"playbook {self.name} needs --param {name}=… ({param.description or param.type})")
            else:
                values[name] = param.default
        return values

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "file": self.file,
            "description": self.description,
            "applies_to": list(self.applies_to),
            "params": {
                p.name: {"type": p.type, "default": None if p.required else p.default, "required": p.required}
                for p in self.params.values()
            },
            "steps": [
                {
                    "id": s.id,
                    "action": s.action,
                    "when": s.when,
                    "on_failure": s.on_failure,
                    "on_findings": s.on_findings,
                }
                for s in self.steps
            ],
            "escalate": dataclasses.asdict(self.escalate) if self.escalate else None,
            "targets": list(self.targets),
        }


def load_playbook(path: Path | str, *, actions: Mapping[str, type[Action]] | None = None) -> Playbook:
    """Read and validate a playbook file. Raises BadInput (`file:line:column: …`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"playbook {path} does not exist") from None
    except UnicodeDecodeError:
        raise BadInput(f"playbook {path} is not UTF-8 text") from None
    except OSError as exc:
        raise BadInput(f"cannot read playbook {path}: {exc.strerror}") from None
    return parse_playbook(text, str(path), actions=actions)


def parse_playbook(
    text: str, file: str = "<playbook>", *, actions: Mapping[str, type[Action]] | None = None
) -> Playbook:
    """Validate playbook text against the schema, then the actions (default: the registry)."""
    data, marks = _load_yaml(text, file)
    _check_schema(data, marks)
    return _Builder(data, marks, registry() if actions is None else actions).build()


# -- YAML with places ------------------------------------------------------------------------


class _Marks:
    """Where each key and value of a loaded document starts, by path (keys and list indexes)."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.values: dict[tuple, yaml.Mark] = {}
        self.keys: dict[tuple, yaml.Mark] = {}

    def at(self, path: tuple, *, key: bool = False) -> Where:
        mark = self.keys.get(path) if key else None
        while mark is None:
            mark = self.values.get(path)
            if not path:
                break
            path = path[:-1]
        return self.where(mark)

    def where(self, mark: yaml.Mark | None) -> Where:
        return Where(self.file, mark.line + 1, mark.column + 1) if mark else Where(self.file, 1, 1)


def _load_yaml(text: str, file: str) -> tuple[Any, _Marks]:
    marks = _Marks(file)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise Where(file, 1, 1).error("the file is empty: expected a playbook (name, steps, …)")
        return _build(loader, node, (), marks, [0]), marks
    except yaml.MarkedYAMLError as exc:
        where = marks.where(exc.problem_mark or exc.context_mark)
        raise where.error(f"malformed YAML: {exc.problem or exc.context or 'not valid YAML'}") from None
    except yaml.YAMLError as exc:
        raise Where(file, 1, 1).error(f"malformed YAML: {exc}") from None
    finally:
        loader.dispose()


def _build(loader: yaml.SafeLoader, node: yaml.Node, path: tuple, marks: _Marks, count: list[int]) -> Any:
    """Python values from YAML nodes, recording each one's place."""
    count[0] += 1
    if count[0] > MAX_NODES or len(path) > MAX_DEPTH:
        raise marks.where(node.start_mark).error("the document is too large or too deeply nested (aliases?)")
    marks.values[path] = node.start_mark
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            where = marks.where(key_node.start_mark)
            if not isinstance(key, str):
                raise where.error(f"{_dotted(path) or 'the playbook'}: key {key!r} must be a name (text)")
            if key in out:
                raise where.error(f"{_dotted((*path, key))}: duplicate key {key!r}")
            marks.keys[(*path, key)] = key_node.start_mark
            out[key] = _build(loader, value_node, (*path, key), marks, count)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, (*path, i), marks, count) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def _dotted(path: Sequence[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


# -- validation ------------------------------------------------------------------------------


def _check_schema(data: Any, marks: _Marks) -> None:
    try:
        import jsonschema
    except ImportError:
        raise L1fixError("validating a playbook needs the jsonschema package", hint="pip install jsonschema") from None
    validator = jsonschema.Draft202012Validator(playbook_schema())
    errors = list(validator.iter_errors(data))
    if errors:  # the first in the file: what a person reading it from the top meets first
        raise min((_schema_error(e, marks) for e in errors), key=lambda found: found[1])[0]


_RANK = {"additionalProperties": 0, "required": 2}  # a misspelt key explains the "missing" one


def _schema_error(error: Any, marks: _Marks) -> tuple[BadInput, tuple[int, int, int]]:
    """The error for a technician, and where it sorts (line, column, rank)."""
    where, what, hint = _schema_message(error, marks)
    return where.error(what, hint), (where.line, where.column, _RANK.get(error.validator, 1))


def _schema_message(error: Any, marks: _Marks) -> tuple[Where, str, str | None]:
    path = tuple(error.absolute_path)
    label = _dotted(path) or "the playbook"
    where = marks.at(path)
    rule, value, instance = error.validator, error.validator_value, error.instance
    if rule == "additionalProperties" and isinstance(instance, dict):
        allowed = list(error.schema.get("properties", {}))
        key = next(k for k in instance if k not in allowed)
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"expected one of: {', '.join(allowed)}"
        return marks.at((*path, key), key=True), f"{_dotted((*path, key))}: unknown key {key!r}", hint
    if rule == "required":
        missing = next(k for k in value if k not in instance)
        return where, f"{label}: {missing!r} is missing", None
    if rule == "type":
        kinds = value if isinstance(value, list) else [value]
        expected = " or ".join(_TYPE_WORDS.get(k, k) for k in kinds)
        return where, f"{label}: expected {expected}, not {_json_kind(instance)}", None
    if rule == "enum":
        return where, f"{label}: expected one of {', '.join(map(str, value))}, not {instance!r}", None
    if rule == "pattern":
        return where, f"{label}: {instance!r} is not valid: expected {_PATTERN_WORDS.get(value, value)}", None
    if rule == "oneOf" and path == ("escalate",):
        return where, "escalate: give exactly one of group or user (and a note)", None
    if rule in ("minItems", "minLength"):
        return where, f"{label}: must not be empty", None
    if rule == "uniqueItems":
        return where, f"{label}: lists an item twice", None
    return where, f"{label}: {error.message}", None


def _json_kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"{value!r}".lower()
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _fits(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)


# A template that is one expression gives its value as is (true, 3), not as text.
_WHOLE = re.compile(r"\s*\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\s*", re.DOTALL)
_PARAM_REF = re.compile(r"\s*params\.(?P<name>[a-z][a-z0-9_]*)\s*")


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and any(mark in value for mark in ("{{", "{%", "{#"))


class _Builder:
    """Turns validated YAML data into a Playbook, checking it against the actions."""

    def __init__(self, data: dict[str, Any], marks: _Marks, actions: Mapping[str, type[Action]]) -> None:
        self.data, self.marks, self.actions = data, marks, actions

    def build(self) -> Playbook:
        params = self._params()
        ids, classes = self._ids_and_actions()
        steps = [self._step(i, ids, classes[i], params) for i in range(len(ids))]
        return Playbook(
            name=self.data["name"],
            description=self.data.get("description", "").strip(),
            applies_to=self._applies_to(steps, classes),
            params=params,
            steps=steps,
            targets=list(self.data.get("targets") or []),
            escalate=self._escalation(steps),
            file=self.marks.file,
        )

    def _params(self) -> dict[str, PlaybookParam]:
        params = {}
        for name, spec in (self.data.get("params") or {}).items():
            if name in RESERVED:
                raise self.marks.at(("params", name), key=True).error(f"params.{name}: {name!r} is a reserved name")
            choices = tuple(spec["choices"]) if "choices" in spec else None
            param = PlaybookParam(
                name, spec["type"], spec.get("default", _REQUIRED), spec.get("description", ""), choices
            )
            kind = PARAM_TYPES[param.type]
            for i, choice in enumerate(choices or ()):
                if not _fits(choice, kind):
                    where = self.marks.at(("params", name, "choices", i))
                    raise where.error(f"params.{name}.choices[{i}]: expected {_TYPE_WORDS[kind]}, not {choice!r}")
            if not param.required:
                where = self.marks.at(("params", name, "default"))
                if not _fits(param.default, kind):
                    expected = _TYPE_WORDS[kind]
                    raise where.error(f"params.{name}.default: expected {expected}, not {_json_kind(param.default)}")
                if choices and param.default not in choices:
                    raise where.error(f"params.{name}.default: expected one of {', '.join(map(str, choices))}")
            params[name] = param
        return params

    def _ids_and_actions(self) -> tuple[list[str], list[type[Action]]]:
        ids: list[str] = []
        classes: list[type[Action]] = []
        for i, raw in enumerate(self.data["steps"]):
            name = raw["action"]
            action_cls = self.actions.get(name)
            if action_cls is None:
                close = difflib.get_close_matches(name, list(self.actions), n=1)
                hint = f"did you mean {close[0]}?" if close else "see `l1fix actions`"
                where = self.marks.at(("steps", i, "action"))
                raise where.error(f"steps[{i}].action: unknown action {name!r}", hint)
            step_id = raw.get("id") or name.replace("-", "_")
            where = self.marks.at(("steps", i, "id") if "id" in raw else ("steps", i))
            if step_id in ids:
                first = ids.index(step_id)
                raise where.error(
                    f"steps[{i}]: two steps are called {step_id!r} (steps[{first}] and steps[{i}])",
                    hint="give each step its own id",
                )
            if step_id in RESERVED:
                raise where.error(f"steps[{i}].id: {step_id!r} is a reserved name")
            ids.append(step_id)
            classes.append(action_cls)
        return ids, classes

    def _step(self, i: int, ids: list[str], action_cls: type[Action], params: dict[str, PlaybookParam]) -> Step:
        raw = self.data["steps"][i]
        path = ("steps", i)
        where = {"step": self.marks.at(path)}
        with_ = dict(raw.get("with") or {})
        known = {p.name: p for p in action_cls.params}
        for key, value in with_.items():
            label = f"steps[{i}].with.{key}"
            where[f"with.{key}"] = self.marks.at((*path, "with", key))
            param = known.get(key)
            if param is None:
                close = difflib.get_close_matches(key, list(known), n=1)
                if close:
                    hint = f"did you mean {close[0]!r} ({_TYPE_WORDS.get(known[close[0]].type, 'text')})?"
                else:
                    hint = f"its parameters: {', '.join(known)}" if known else "it takes no parameters"
                at = self.marks.at((*path, "with", key), key=True)
                raise at.error(f"{label}: {action_cls.name} has no parameter {key!r}", hint)
            if param.secret:
                raise self.marks.at((*path, "with", key), key=True).error(
                    f"{label}: {key} is a secret and never written in a playbook",
                    hint=f"leave it out: {action_cls.name} makes one and shows it once to the technician",
                )
            if _is_template(value):
                self._check_template(value, where[f"with.{key}"], label, i, ids, params)
                self._check_param_type(value, param, params, where[f"with.{key}"], label)
                continue
            if not _fits(value, param.type):
                words = _TYPE_WORDS.get(param.type, "text")
                raise where[f"with.{key}"].error(f"{label}: {action_cls.name} expects {words}, not {_json_kind(value)}")
            try:
                param.convert(value)
            except BadInput as exc:
                raise where[f"with.{key}"].error(f"{label}: {exc.message}") from None
        missing = [p for p in action_cls.params if p.required and p.name not in with_]
        if missing:
            p = missing[0]
            raise where["step"].error(
                f"steps[{i}] ({ids[i]}): {action_cls.name} needs `with: {{{p.name}: …}}` ({p.help})"
            )
        when = raw.get("when")
        if when is not None:
            where["when"] = self.marks.at((*path, "when"))
            whole = _WHOLE.fullmatch(when)
            self._check_template(
                when if whole else "{{ " + when + " }}", where["when"], f"steps[{i}].when", i, ids, params, expr=True
            )
        if "on_findings" in raw and not action_cls.read_only:
            raise self.marks.at((*path, "on_findings"), key=True).error(
                f"steps[{i}].on_findings: {action_cls.name} changes things and never has findings",
                hint="on_findings is for read-only steps such as diagnose; use on_failure",
            )
        return Step(
            id=ids[i],
            action=action_cls.name,
            with_=with_,
            when=when,
            on_failure=raw.get("on_failure", "stop"),
            name=raw.get("name", ""),
            where=where,
            on_findings=raw.get("on_findings", "continue"),
        )

    def _check_template(
        self,
        text: str,
        where: Where,
        label: str,
        index: int,
        ids: list[str],
        params: dict[str, PlaybookParam],
        *,
        expr: bool = False,
    ) -> None:
        """Syntax, and every name it reads: declared params, earlier steps, their fields; nothing private."""
        try:
            if expr:
                whole = _WHOLE.fullmatch(text)
                _engine().compile_expression(whole["expr"] if whole else text)
            tree = _engine().parse(text)
        except TemplateSyntaxError as exc:
            line = f" (line {exc.lineno} of the template)" if exc.lineno and exc.lineno > 1 else ""
            raise where.error(f"{label}: template error: {exc.message}{line}") from None
        unknown = sorted(meta.find_undeclared_variables(tree) - set(TEMPLATE_NAMES))
        if unknown:
            close = difflib.get_close_matches(unknown[0], TEMPLATE_NAMES, n=1)
            hint = f"did you mean {close[0]}?" if close else "a template reads params, steps and target"
            raise where.error(f"{label}: unknown name {unknown[0]!r}", hint)
        for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
            key = _static_key(node)
            if key is None:
                continue
            if key.startswith("_"):
                raise where.error(f"{label}: {key!r}: names starting with _ are out of a playbook's reach")
            base = node.node
            if _is_name(base, "params") and key not in params:
                close = difflib.get_close_matches(key, list(params), n=1)
                hint = f"did you mean params.{close[0]}?" if close else "declare it under `params:`"
                raise where.error(f"{label}: the playbook has no parameter {key!r}", hint)
            if _is_name(base, "steps"):
                self._check_step_ref(key, label, where, index, ids)
            under_step = isinstance(base, nodes.Getattr | nodes.Getitem) and _is_name(base.node, "steps")
            if under_step and key not in STEP_FIELDS:
                close = difflib.get_close_matches(key, STEP_FIELDS, n=1)
                hint = f"did you mean {close[0]}?" if close else f"a step has {', '.join(STEP_FIELDS)}"
                raise where.error(f"{label}: a step result has no {key!r}", hint)

    @staticmethod
    def _check_step_ref(key: str, label: str, where: Where, index: int, ids: list[str]) -> None:
        if key == ids[index]:
            raise where.error(f"{label}: step {key!r} refers to itself")
        if key in ids[index + 1 :]:
            raise where.error(f"{label}: step {key!r} runs after step {ids[index]!r}: its result is not known yet")
        if key not in ids:
            close = difflib.get_close_matches(key, ids[:index], n=1)
            hint = f"did you mean {close[0]}?" if close else f"earlier steps: {', '.join(ids[:index]) or 'none'}"
            raise where.error(f"{label}: there is no step {key!r}", hint)

    @staticmethod
    def _check_param_type(value: str, param: Any, params: dict[str, PlaybookParam], where: Where, label: str) -> None:
        """`{{ params.x }}` alone: its declared type must suit the action's parameter."""
        whole = _WHOLE.fullmatch(value)
        ref = _PARAM_REF.fullmatch(whole["expr"]) if whole else None
        if ref is None or ref["name"] not in params or param.type is str:
            return
        declared = PARAM_TYPES[params[ref["name"]].type]
        if declared is not param.type and not (param.type is float and declared is int):
            raise where.error(
                f"{label}: params.{ref['name']} is {_TYPE_WORDS[declared]}, the action expects "
                f"{_TYPE_WORDS.get(param.type, 'text')}"
            )

    def _applies_to(self, steps: list[Step], classes: list[type[Action]]) -> tuple[str, ...]:
        kinds = self.data.get("applies_to")
        if kinds:
            for i, action_cls in enumerate(classes):
                missing = sorted(set(kinds) - action_cls.target_kinds)
                if missing:
                    supported = ", ".join(sorted(action_cls.target_kinds))
                    raise self.marks.at(("steps", i, "action")).error(
                        f"steps[{i}].action: {action_cls.name} runs on {supported} targets, "
                        f"but the playbook applies to {', '.join(missing)}"
                    )
            return tuple(kinds)
        common = set(TARGET_KINDS)
        for action_cls in classes:
            common &= action_cls.target_kinds
        if not common:
            kinds_of = "; ".join(f"{c.name}: {', '.join(sorted(c.target_kinds))}" for c in classes)
            raise self.marks.at(("steps",)).error(f"steps: the actions run on different kinds of target ({kinds_of})")
        return tuple(sorted(common))

    def _escalation(self, steps: list[Step]) -> Escalation | None:
        block = self.data.get("escalate")
        for i, step in enumerate(steps):
            for key in ("on_failure", "on_findings"):
                if getattr(step, key) == "escalate" and not block:
                    raise self.marks.at(("steps", i, key)).error(
                        f"steps[{i}].{key}: escalate needs an `escalate:` block (group or user, and a note)"
                    )
        if not block:
            return None
        return Escalation(block.get("group"), block.get("user"), block.get("note", ""))


def _static_key(node: nodes.Getattr | nodes.Getitem) -> str | None:
    if isinstance(node, nodes.Getattr):
        return node.attr
    return node.arg.value if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str) else None


def _is_name(node: nodes.Node, name: str) -> bool:
    return isinstance(node, nodes.Name) and node.name == name


# -- templates in a sandbox ------------------------------------------------------------------


class _Named(dict):
    """A mapping a template reads; a missing key says where it was looked for."""

    def __init__(self, data: Mapping[str, Any], label: str, note: str = "") -> None:
        super().__init__(data)
        self.label = label
        self.note = note


class _Undefined(StrictUndefined):
    """StrictUndefined whose message names the step and key that were missing."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        obj = self._undefined_obj
        if self._undefined_hint is None and isinstance(obj, _Named):
            extra = obj.note or f"it has: {', '.join(sorted(map(str, obj))) or 'nothing'}"
            return f"{obj.label} has no {self._undefined_name!r} ({extra})"
        return super()._undefined_message

    def __init__(self, hint: str | None = None, obj: Any = missing, name: str | None = None, exc: Any = None) -> None:
        if hint is None and isinstance(obj, Undefined):  # what was undefined first says why (the sandbox)
            hint, exc = obj._undefined_message, obj._undefined_exception
        super().__init__(hint, obj, name, exc or UndefinedError)


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja2's sandbox, immutable, without globals, and with no huge strings or powers."""

    intercepted_binops = frozenset({"*", "**"})
    MAX_SIZE = 100_000

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > 64:
            raise SecurityError("exponent too large")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int) and len(seq) * times > self.MAX_SIZE:
                    raise SecurityError("result too large")
        return super().call_binop(context, operator, left, right)


@functools.cache
def _engine() -> _Sandbox:
    env = _Sandbox(undefined=_Undefined, autoescape=False)
    env.globals.clear()  # range, lipsum, cycler…: a playbook needs none of them
    return env


def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    """A `with:` value: templates rendered in the sandbox; `{{ expr }}` alone keeps its type.

    Raises jinja2 errors (UndefinedError, SecurityError, …): see `_template_failure`.
    """
    if not _is_template(value):
        return value
    whole = _WHOLE.fullmatch(value)
    if whole:
        return evaluate(whole["expr"], context)
    return _compiled_template(value).render(context)


def evaluate(expression: str, context: Mapping[str, Any]) -> Any:
    """One expression (a `when:` condition) evaluated in the sandbox."""
    value = _compiled_expression(expression)(**context)
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    return value


@functools.lru_cache(maxsize=1024)
def _compiled_expression(text: str) -> Any:
    return _engine().compile_expression(text, undefined_to_none=False)


@functools.lru_cache(maxsize=1024)
def _compiled_template(text: str) -> Any:
    return _engine().from_string(text)


def _template_failure(exc: Exception) -> str:
    if isinstance(exc, SecurityError):
        return f"refused by the sandbox: {exc}"
    if isinstance(exc, UndefinedError | TemplateError):
        return exc.message or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


def _wrap(value: Any, label: str, note: str = "") -> Any:
    if isinstance(value, Mapping):
        return _Named({k: _wrap(v, f"{label}.{k}") for k, v in value.items()}, label, note)
    return value


# -- outcomes --------------------------------------------------------------------------------


@dataclass
class StepOutcome:
    """One step on one target: the run it made, or why it did not run."""

    id: str
    action: str
    status: str  # a Status value, or "not-run"
    reason: str = ""  # why it was skipped or not run
    result: RunResult | None = None
    error: ErrorInfo | None = None

    @property
    def counted(self) -> bool:
        """Did this step try to run (not a false `when`, not left out)?"""
        return self.status != "not-run" and not (self.status == Status.SKIPPED and self.result is None)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "action": self.action,
            "status": self.status,
            "reason": self.reason or None,
            "run_id": self.result.run_id if self.result else None,
            "summary": self.result.summary if self.result else "",
            "error": {"kind": self.error.kind, "message": self.error.message} if self.error else None,
        }


@dataclass
class TargetOutcome:
    """A playbook run on one target."""

    play_id: str
    playbook: str
    target: str
    status: Status
    steps: list[StepOutcome]
    started_at: str
    duration_s: float
    error: ErrorInfo | None = None
    escalate: bool = False  # a step with on_failure: escalate failed
    escalation: dict[str, Any] | None = None  # what became of it, once the run is over
    followup: dict[str, Any] | None = None

    @property
    def exit_code(self) -> int:
        if self.status in (Status.FIXED, Status.ALREADY_OK, Status.SKIPPED):
            return EXIT_OK
        if self.status == Status.FAILED:
            return EXIT_FAILED
        if self.status == Status.FINDINGS:
            return EXIT_FINDINGS
        if self.status == Status.INTERRUPTED:
            return EXIT_INTERRUPTED
        return self.error.exit_code if self.error else EXIT_INTERNAL

    @property
    def counts(self) -> dict[str, int]:
        done = [s.status for s in self.steps if s.counted]
        return {
            "fixed": done.count(Status.FIXED),
            "already-ok": done.count(Status.ALREADY_OK),
            "failed": done.count(Status.FAILED) + done.count(Status.ERROR),
        }

    @property
    def headline(self) -> str:
        """One line: which step decided the status, and why (findings: what the diagnosis suggests)."""
        if self.error is not None:
            return self.error.message
        deciding = next((s for s in standing(self.steps) if s.status == self.status), None)
        if deciding is None:
            return "no step applied" if self.status == Status.ALREADY_OK else ""
        summary = deciding.result.summary if deciding.result else deciding.reason
        if self.status == Status.FINDINGS:
            summary = "; ".join(_suggestion_text(s) for s in self.suggestions) or summary
        return f"{deciding.id}: {summary}" if summary else deciding.id

    @property
    def suggestions(self) -> list[dict[str, Any]]:
        """What the latest standing diagnosis suggests (its `before.suggestions`), when the target has findings."""
        found = [s.result for s in standing(self.steps) if s.status == Status.FINDINGS and s.result is not None]
        suggestions = (found[-1].before or {}).get("suggestions") if found else None
        return list(suggestions) if isinstance(suggestions, list) else []

    @property
    def revealed(self) -> list[tuple[str, Any]]:
        """Secrets for the technician's eyes (a temporary password), from every step."""
        return [item for s in self.steps if s.result for item in s.result.revealed]

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "target",
            "play_id": self.play_id,
            "playbook": self.playbook,
            "target": self.target,
            "status": str(self.status),
            "exit_code": self.exit_code,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 3),
            "counts": self.counts,
            "error": {"kind": self.error.kind, "message": self.error.message} if self.error else None,
            "steps": [s.to_json() for s in self.steps],
            "suggestions": self.suggestions,
            "escalate": self.escalate,  # streamed lines come before the escalation: the summary says how it went
            "escalation": self.escalation,
            "followup": self.followup,
        }


@dataclass(frozen=True)
class Progress:
    """What `on_progress` hears, from the worker threads: a target or a step started or finished."""

    event: str  # target-started | step-started | step-finished | target-finished
    target: str
    index: int  # 1-based place of the target in the run
    total: int
    step: str | None = None
    step_outcome: StepOutcome | None = None
    outcome: TargetOutcome | None = None


# -- running ---------------------------------------------------------------------------------


def run_playbook(
    playbook: Playbook,
    targets: Sequence[str],
    *,
    config: Config,
    params: Mapping[str, Any] | None = None,
    ticket: int | None = None,
    dry_run: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    observers: Sequence[RunObserver] = (),
    on_progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
    yes: bool = False,
    grace_s: float = GRACE_S,
) -> list[TargetOutcome]:
    """Run the playbook on every target; one outcome per target, in the order given.

    Targets run in parallel, at most `concurrency` at a time, each within `timeout_s`. A
    target's failure never stops the others. Setting `cancel` (or Ctrl-C) starts no new
    target and gives running steps `grace_s` to finish; everything is journaled either way.
    With a ticket, one followup for the whole run (and the escalation a step asked for).
    Raises BadInput before anything runs: no targets, bad parameters, a risky step without `yes`.
    """
    names: list[str] = []
    for name in (t.strip() for t in targets if t):
        if name and name.lower() not in {n.lower() for n in names}:
            names.append(name)
    if not names:
        raise BadInput("no targets", hint="give --target, --group or --targets-file (or targets: in the playbook)")
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise BadInput(f"concurrency must be between 1 and {MAX_CONCURRENCY}, not {concurrency}")
    if timeout_s <= 0:
        raise BadInput("the per-target timeout must be a number of seconds > 0")
    values = playbook.resolve_params(params)
    risky = [] if dry_run or yes else steps_to_confirm(playbook, values)
    if risky:
        raise BadInput(
            f"step {risky[0].id} runs {risky[0].action}, which needs confirmation", hint="run the playbook with --yes"
        )
    fleet = _Fleet(
        playbook,
        names,
        config=config,
        params=values,
        ticket=ticket,
        dry_run=dry_run,
        concurrency=concurrency,
        timeout_s=timeout_s,
        observers=observers,
        on_progress=on_progress,
        cancel=cancel or threading.Event(),
        grace_s=grace_s,
    )
    outcomes = fleet.run()
    if ticket is not None:
        fleet.report_to_ticket(outcomes)
    else:
        for outcome in outcomes:
            if outcome.escalate and playbook.escalate:
                outcome.escalation = {"to": playbook.escalate.to, "state": "no-ticket", "note": playbook.escalate.note}
    return outcomes


def steps_to_confirm(playbook: Playbook, params: dict[str, Any]) -> list[Step]:
    """The steps that run a risky action (Risk.CONFIRM) and may run with these parameters."""
    actions = registry()
    return [
        step
        for step in playbook.steps
        if step.action in actions and actions[step.action].risk is Risk.CONFIRM and _may_run(step, params)
    ]


def _may_run(step: Step, params: dict[str, Any]) -> bool:
    """False only when the step's `when:` is false from the parameters alone (a risky step the
    technician did not ask for, e.g. `params.reboot_notice_minutes > 0 and …` with 0): it needs no --yes."""
    if step.expression is None:
        return True
    try:  # no step has run and no target is known: reading either fails, and only running tells
        return bool(evaluate(step.expression, {"params": _Named(params, "params"), "steps": _Named({}, "steps")}))
    except Exception:  # noqa: BLE001 - any doubt: the step may run
        return True


def exit_code(outcomes: Sequence[TargetOutcome]) -> int:
    """0 when every target ended fixed, already-ok or skipped; else the worst code.

    Findings (6) rank just above 0: a failure, an error or a cancel on another target says more.
    """
    return max((o.exit_code for o in outcomes), key=_severity, default=EXIT_OK)


def _severity(code: int) -> tuple[bool, bool, int]:
    return code != EXIT_OK, code != EXIT_FINDINGS, code


def standing(steps: Sequence[StepOutcome]) -> list[StepOutcome]:
    """The steps that count for a target's status: a read-only step's findings give way to a later
    run of the same action (the re-check after the fixes)."""
    counted = [s for s in steps if s.counted]
    return [
        s
        for i, s in enumerate(counted)
        if s.status != Status.FINDINGS or not any(later.action == s.action for later in counted[i + 1 :])
    ]


def _suggestion_text(suggestion: Mapping[str, Any]) -> str:
    if suggestion.get("kind") == "fix" and suggestion.get("command"):
        return f"run {suggestion['command']}"
    return f"escalate: {suggestion.get('reason', '')}"


@dataclass
class _TargetRun:
    """One target's progress, shared between its worker and the coordinator (under the fleet lock)."""

    name: str
    index: int
    started: float | None = None  # monotonic
    started_at: str = ""
    deadline: float = math.inf
    steps: list[StepOutcome] = field(default_factory=list)
    current: RunResult | None = None  # the journaled run in flight
    current_step: Step | None = None
    escalate: bool = False
    outcome: TargetOutcome | None = None
    reported: bool = False  # its outcome was set and told to on_progress


class _Tracker:
    """Tells the coordinator which run is in flight: set after the journal recorded its start,
    cleared before the journal records its end (so an abandoned run's record is never overwritten
    by a late "abandoned" one)."""

    def __init__(self, fleet: _Fleet, run: _TargetRun, *, side: str) -> None:
        self.fleet, self.run, self.side = fleet, run, side

    def run_started(self, result: RunResult) -> None:
        if self.side == "start":
            with self.fleet.lock:
                self.run.current = result

    def run_finished(self, result: RunResult) -> None:
        if self.side == "finish":
            with self.fleet.lock:
                self.run.current = None


class _SharedConnections:
    """A target's connections: opened on the first step that needs one, reused, closed at the end."""

    def __init__(self, deadline: Callable[[], float]) -> None:
        self.deadline = deadline
        self.open: dict[tuple[str, str, str], _Bounded] = {}

    def __call__(self, target: Target, config: Config) -> Connection:
        key = (target.connection, target.name.lower(), target.address)
        if key not in self.open:
            self.open[key] = _Bounded(connect(target, config), target.name, self.deadline)
        return self.open[key]

    def close(self) -> None:
        """Close them all (quietly: closing never hides a step's result); the next step reconnects."""
        for conn in self.open.values():
            with contextlib.suppress(Exception):
                conn.close()
        self.open.clear()


class _Bounded:
    """A connection whose scripts never run past the target's deadline; everything else passes through."""

    def __init__(self, inner: Connection, target: str, deadline: Callable[[], float]) -> None:
        self._inner, self._target, self._deadline = inner, target, deadline

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def run_script(self, script: Path, payload: dict[str, Any], *, timeout: float) -> Any:
        left = self._deadline() - time.monotonic()
        if left <= 0:
            raise Timeout("the playbook's time for this target is up", target=self._target)
        return self._inner.run_script(script, payload, timeout=min(timeout, left) if timeout else left)  # type: ignore[attr-defined]

    def close(self) -> None:
        self._inner.close()


class _Fleet:
    """Runs one playbook on many targets: `concurrency` worker threads, the caller's thread watching."""

    def __init__(
        self,
        playbook: Playbook,
        names: list[str],
        *,
        config: Config,
        params: dict[str, Any],
        ticket: int | None,
        dry_run: bool,
        concurrency: int,
        timeout_s: float,
        observers: Sequence[RunObserver],
        on_progress: Callable[[Progress], None] | None,
        cancel: threading.Event,
        grace_s: float,
    ) -> None:
        self.playbook, self.config, self.params, self.ticket = playbook, config, params, ticket
        self.dry_run, self.concurrency, self.timeout_s, self.grace_s = dry_run, concurrency, timeout_s, grace_s
        self.observers, self.on_progress, self.cancel = list(observers), on_progress, cancel
        self.play_id = uuid.uuid4().hex
        self.journal = Journal(config.journal_path)
        self.runs = [_TargetRun(name, i + 1) for i, name in enumerate(names)]
        self.queue = deque(self.runs)
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.cancelled_at: float | None = None
        self.hurry = False  # a second Ctrl-C: stop waiting for running steps
        self.progress_error: Exception | None = None
        self.started = time.monotonic()
        self.started_at = _now()

    # -- the watching thread

    def run(self) -> list[TargetOutcome]:
        workers = [
            threading.Thread(target=self._work, name=f"l1fix-play-{i + 1}", daemon=True)
            for i in range(min(self.concurrency, len(self.runs)))
        ]
        with _ctrl_c_cancels(self._interrupt):
            for worker in workers:
                worker.start()
            while True:
                try:
                    with self.changed:
                        if all(run.reported for run in self.runs):
                            break
                        self.changed.wait(POLL_S)
                    self._police()
                except KeyboardInterrupt:
                    self._interrupt()
        if self.progress_error is not None:
            raise self.progress_error
        return [run.outcome for run in self.runs if run.outcome is not None]

    def _interrupt(self) -> None:
        """Ctrl-C: the first stops new targets, a second stops waiting for running steps."""
        if self.cancel.is_set():
            self.hurry = True
        self.cancel.set()

    def _police(self) -> None:
        """Cancelled: targets not started end now. Past a deadline and its grace: stop waiting."""
        now = time.monotonic()
        not_started: list[_TargetRun] = []
        late: list[_TargetRun] = []
        with self.lock:
            if self.cancel.is_set():
                if self.cancelled_at is None:
                    self.cancelled_at = now
                not_started = list(self.queue)
                self.queue.clear()
            for run in self.runs:
                if run.outcome is not None or run.started is None:
                    continue
                limit = run.deadline + self.grace_s
                if self.cancelled_at is not None:
                    limit = min(limit, self.cancelled_at + self.grace_s)
                if self.hurry or now >= limit:
                    late.append(run)
        for run in not_started:
            self._finish(run, self._not_started(run))
        for run in late:
            self._abandon(run)

    def _abandon(self, run: _TargetRun) -> None:
        """Report a target whose step did not end in time; its journal record says so until the step ends."""
        timed_out = time.monotonic() >= run.deadline
        cut = "timeout" if timed_out else "cancelled"
        status = Status.ERROR if timed_out else Status.INTERRUPTED
        if timed_out:
            error = ErrorInfo("timeout", f"no result within the time limit of {self.timeout_s:g} s", EXIT_TIMEOUT)
        else:
            error = ErrorInfo("interrupted", "cancelled (Ctrl-C) while this step ran", EXIT_INTERRUPTED)
        with self.lock:
            if run.outcome is not None:
                return
            current, step, steps = run.current, run.current_step, list(run.steps)
            if current is not None:  # the worker's own end, if it comes, replaces this record
                late = dataclasses.replace(
                    current,
                    status=status,
                    error=dataclasses.replace(error, message=error.message + "; the host may still complete it"),
                    duration_s=time.monotonic() - (run.started or self.started),
                )
                with contextlib.suppress(L1fixError):
                    self.journal.finish(late)
        if step is not None:
            steps.append(StepOutcome(step.id, step.action, str(status), error.message, current, error))
        done = {s.id for s in steps}
        steps += [StepOutcome(s.id, s.action, "not-run", cut) for s in self.playbook.steps if s.id not in done]
        outcome = self._outcome(run, steps, cut=cut)
        if step is not None:
            outcome.error = dataclasses.replace(error, message=f"step {step.id}: {error.message}")
        self._finish(run, outcome)

    # -- the worker threads

    def _work(self) -> None:
        try:
            self._work_on_queue()
        finally:
            self.journal.close()  # this worker thread's connection

    def _work_on_queue(self) -> None:
        while True:
            with self.lock:
                if self.cancel.is_set() or not self.queue:
                    return
                run = self.queue.popleft()
                run.started = time.monotonic()
                run.started_at = _now()
                run.deadline = run.started + self.timeout_s
            self._emit("target-started", run)
            try:
                outcome = self._run_target(run)
            except Exception as exc:  # noqa: BLE001 - a bug ends this target as an error, never the fleet
                outcome = self._outcome(run, list(run.steps), cut=None, error=ErrorInfo.from_exception(exc))
            self._finish(run, outcome)

    def _run_target(self, run: _TargetRun) -> TargetOutcome:
        connections = _SharedConnections(lambda: self._deadline(run))
        cut = None
        try:
            for position, step in enumerate(self.playbook.steps):
                cut = self._stop_reason(run)
                if cut:
                    self._leave_out(run, position, cut)
                    break
                outcome = self._run_step(run, step, connections)
                with self.lock:
                    run.steps.append(outcome)
                    run.current_step = None
                self._emit("step-finished", run, step=step.id, step_outcome=outcome)
                if outcome.error is not None and outcome.error.kind in _CONNECTION_ERRORS:
                    connections.close()  # a broken or timed-out connection is not reused
                if outcome.status in (Status.FAILED, Status.ERROR) and step.on_failure != "continue":
                    run.escalate = step.on_failure == "escalate"
                    self._leave_out(
                        run, position + 1, f"step {step.id} {outcome.status} (on_failure: {step.on_failure})"
                    )
                    break
                if outcome.status == Status.FINDINGS and step.on_findings != "continue":
                    run.escalate = step.on_findings == "escalate"
                    self._leave_out(run, position + 1, f"step {step.id} has findings (on_findings: {step.on_findings})")
                    break
        finally:
            connections.close()
        return self._outcome(run, list(run.steps), cut=cut)

    def _run_step(self, run: _TargetRun, step: Step, connections: _SharedConnections) -> StepOutcome:
        with self.lock:
            run.current_step = step
        self._emit("step-started", run, step=step.id)
        context = self._context(run)
        try:
            if step.when is not None:
                expression = step.expression or ""
                if not self._templated(step, "when", lambda: bool(evaluate(expression, context))):
                    return StepOutcome(step.id, step.action, str(Status.SKIPPED), f"when: {step.when} is false")
            values = {
                k: self._templated(step, f"with.{k}", functools.partial(render_value, v, context))
                for k, v in step.with_.items()
            }
        except BadInput as exc:
            error = ErrorInfo.from_exception(exc)
            return StepOutcome(step.id, step.action, str(Status.ERROR), error.message, None, error)
        result = execute(
            step.action,
            run.name,
            values,
            config=self.config,
            ticket=self.ticket,
            dry_run=self.dry_run,
            confirm=None,  # risky steps were confirmed up front (--yes)
            observers=[
                _Tracker(self, run, side="finish"),
                self.journal,
                _Tracker(self, run, side="start"),
                *self.observers,
            ],
            shared_connection=connections,
        )
        return StepOutcome(step.id, step.action, str(result.status), "", result, result.error)

    def _templated(self, step: Step, key: str, work: Callable[[], Any]) -> Any:
        """Run template `work` for `key` of `step`; any failure is that step's bad input, with its place."""
        try:
            return work()
        except Exception as exc:  # noqa: BLE001 - whatever the template did, it is this step's bad input
            where = step.where.get(key, step.where["step"])
            raise BadInput(f"{where}: step {step.id}: {key}: {_template_failure(exc)}") from None

    def _context(self, run: _TargetRun) -> dict[str, Any]:
        with self.lock:
            done = list(run.steps)
        views = {s.id: _step_view(s) for s in done}
        return {
            "params": _Named(self.params, "params"),
            "steps": _Named(views, "steps", note=f"steps run so far: {', '.join(views) or 'none'}"),
            "target": run.name,
        }

    def _leave_out(self, run: _TargetRun, position: int, reason: str) -> None:
        with self.lock:
            run.steps += [StepOutcome(s.id, s.action, "not-run", reason) for s in self.playbook.steps[position:]]

    def _stop_reason(self, run: _TargetRun) -> str | None:
        if self.cancel.is_set():
            return "cancelled"
        if time.monotonic() >= run.deadline:
            return "timeout"
        return None

    def _deadline(self, run: _TargetRun) -> float:
        if self.cancelled_at is not None:
            return min(run.deadline, self.cancelled_at + self.grace_s)
        return run.deadline

    # -- outcomes

    def _outcome(
        self, run: _TargetRun, steps: list[StepOutcome], *, cut: str | None, error: ErrorInfo | None = None
    ) -> TargetOutcome:
        counted = standing(steps)
        statuses = {s.status for s in counted}
        first_left = next((s.id for s in steps if s.status == "not-run"), None)
        before = f" before step {first_left}" if first_left else ""
        if error is not None:
            status = Status.ERROR
        elif cut == "cancelled":
            status = Status.INTERRUPTED
            error = ErrorInfo("interrupted", f"cancelled (Ctrl-C){before}", EXIT_INTERRUPTED)
        elif cut == "timeout":
            status = Status.ERROR
            error = ErrorInfo("timeout", f"time limit of {self.timeout_s:g} s reached{before}", EXIT_TIMEOUT)
        elif Status.ERROR in statuses:
            status = Status.ERROR
            error = next(s.error for s in counted if s.status == Status.ERROR)
        elif Status.FAILED in statuses:
            status = Status.FAILED
        elif Status.FINDINGS in statuses:
            status = Status.FINDINGS
        elif Status.FIXED in statuses:
            status = Status.FIXED
        elif Status.SKIPPED in statuses:
            status = Status.SKIPPED  # a dry run that would have changed something
        else:
            status = Status.ALREADY_OK
        return TargetOutcome(
            play_id=self.play_id,
            playbook=self.playbook.name,
            target=run.name,
            status=status,
            steps=steps,
            started_at=run.started_at or _now(),
            duration_s=time.monotonic() - run.started if run.started else 0.0,
            error=error,
            escalate=run.escalate,
        )

    def _not_started(self, run: _TargetRun) -> TargetOutcome:
        reason = "cancelled before this target started"
        steps = [StepOutcome(s.id, s.action, "not-run", reason) for s in self.playbook.steps]
        outcome = self._outcome(run, steps, cut="cancelled")
        outcome.error = ErrorInfo("interrupted", "cancelled (Ctrl-C) before it started", EXIT_INTERRUPTED)
        return outcome

    def _finish(self, run: _TargetRun, outcome: TargetOutcome) -> None:
        with self.lock:
            if run.outcome is not None:  # already reported (abandoned): the late one is only journaled
                return
            run.outcome = outcome
        try:
            self._emit("target-finished", run, outcome=outcome)
        finally:  # the watching thread returns only once every target's end was told
            with self.changed:
                run.reported = True
                self.changed.notify_all()

    def _emit(self, event: str, run: _TargetRun, **extra: Any) -> None:
        """Tell on_progress; if it fails, the fleet still runs to its end, then the error is raised."""
        if self.on_progress is None:
            return
        try:
            self.on_progress(Progress(event, run.name, run.index, len(self.runs), **extra))
        except Exception as exc:  # noqa: BLE001 - kept and raised by run(), after everything is journaled
            self.progress_error = self.progress_error or exc

    # -- the ticket

    def report_to_ticket(self, outcomes: list[TargetOutcome]) -> None:
        """One followup for the whole run (journal outbox first), and the escalation a step asked for."""
        from l1fix.tickets.delivery import NO_TICKET_SYSTEM, deliver
        from l1fix.tickets.playbook_followup import render_playbook

        assert self.ticket is not None
        escalation = self._escalate() if any(o.escalate for o in outcomes) else None
        key = f"play-{self.play_id}"
        followup = render_playbook(
            self.playbook,
            outcomes,
            technician=self.config.technician,
            started_at=self.started_at,
            duration_s=time.monotonic() - self.started,
            dry_run=self.dry_run,
            escalation=escalation,
            marker_text=f"l1fix-{key}",
            language=self.config.glpi.language,
        )
        self.journal.enqueue_followup(key, self.ticket, followup.payload(private=self.config.glpi.followup_private))
        if not self.config.glpi.url:
            state: dict[str, Any] = {"ticket": self.ticket, "state": "queued", "error": NO_TICKET_SYSTEM}
        else:
            report = deliver(self.journal, self.config)
            sent = next((fid for rid, fid in report.sent if rid == key), None)
            why = next((reason for rid, reason in report.queued if rid == key), "claimed by another sync")
            state = {"ticket": self.ticket, "state": "sent", "followup_id": sent}
            if sent is None:
                state = {"ticket": self.ticket, "state": "queued", "error": why}
        for outcome in outcomes:
            outcome.followup = state
            if outcome.escalate:
                outcome.escalation = escalation

    def _escalate(self) -> dict[str, Any]:
        from l1fix.tickets.delivery import open_ticket_system

        block = self.playbook.escalate
        assert block is not None and self.ticket is not None
        state = {"to": block.to, "note": block.note, "state": "dry-run"}
        if self.dry_run:
            return state
        try:
            with open_ticket_system(self.config) as system:
                me = self.config.glpi.login or self.config.technician
                system.escalate(self.ticket, to_group=block.group, to_user=block.user, remove_assigned_user=me)
        except L1fixError as exc:
            return {**state, "state": "failed", "error": exc.one_line()}
        return {**state, "state": "escalated"}


def _step_view(step: StepOutcome) -> _Named:
    """What templates see of an earlier step: `steps.ID.status`, `.before`, `.after`, …"""
    label = f"steps.{step.id}"
    result = step.result
    why = step.reason or (step.error.message if step.error else "")
    empty = f"step {step.id} was {step.status}" + (f": {why}" if why else "")
    error = {"kind": step.error.kind, "message": step.error.message} if step.error else None

    def part(name: str, value: Any) -> Any:
        return _wrap(value if value is not None else {}, f"{label}.{name}", "" if value is not None else empty)

    return _Named(
        {
            "id": step.id,
            "action": step.action,
            "status": step.status,
            "summary": result.summary if result else step.reason,
            "before": part("before", result.before if result else None),
            "after": part("after", result.after if result else None),
            "done": part("done", result.done if result else None),
            "error": part("error", error),
            "run_id": result.run_id if result else None,
            "changed": step.status == Status.FIXED,
        },
        label,
    )


@contextlib.contextmanager
def _ctrl_c_cancels(handler: Callable[[], None]) -> Iterator[None]:
    """While a fleet runs on the main thread, Ctrl-C calls `handler` instead of raising."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, lambda *_: handler())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")

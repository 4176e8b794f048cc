"""The Action contract (check → fix → verify) and the registry of actions."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar

from l1fix.errors import BadInput

if TYPE_CHECKING:
    from l1fix.config import Config
    from l1fix.secrets import Secret
    from l1fix.targets.base import Connection, ScriptConnection, Target

ENTRY_POINT_GROUP = "l1fix.actions"
ACTIONS_PACKAGE = "l1fix.actions"

_REQUIRED = object()


class Risk(StrEnum):
    SAFE = "safe"
    CONFIRM = "confirm"


@dataclass(frozen=True)
class Param:
    """A typed action parameter; `validate` raises ValueError with a short reason."""

    name: str
    help: str
    type: type = str
    default: Any = _REQUIRED
    choices: tuple[str, ...] | None = None
    validate: Callable[[Any], None] | None = None

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    @property
    def secret(self) -> bool:
        """A secret parameter (type Secret) is never taken on the command line: the CLI reads it from stdin."""
        from l1fix.secrets import Secret

        return self.type is Secret

    def convert(self, raw: Any) -> Any:
        """Turn a raw value (often a string from the command line) into the declared type."""
        if self.secret:
            from l1fix.secrets import Secret

            return raw if isinstance(raw, Secret) else Secret(str(raw))
        try:
            if self.type is bool and isinstance(raw, str):
                if raw.lower() not in ("true", "false", "yes", "no", "1", "0"):
                    raise ValueError("expected true or false")
                value: Any = raw.lower() in ("true", "yes", "1")
            else:
                value = self.type(raw)
            if self.choices and value not in self.choices:
                raise ValueError(f"expected one of {', '.join(self.choices)}")
            if self.validate:
                self.validate(value)
        except (TypeError, ValueError) as exc:
            raise BadInput(f"parameter {self.name}={raw!r} is invalid: {exc}") from None
        return value

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": "secret" if self.secret else self.type.__name__,
            "help": self.help,
            "required": self.required,
            "default": None if self.required else self.default,
            "choices": list(self.choices) if self.choices else None,
        }


@dataclass
class Observation:
    """What a check or a verify read: is it fine, the state, a sentence for a person."""

    ok: bool
    state: dict[str, Any] = field(default_factory=dict)
    summary: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Observation:
        return cls(bool(data["ok"]), dict(data.get("state") or {}), str(data.get("summary", "")))


@dataclass
class RunContext:
    """What a step needs: the target, validated parameters and a lazily opened connection."""

    target: Target
    params: dict[str, Any]
    connect: Callable[[], Connection]
    config: Config
    outputs: list[str] = field(default_factory=list)
    revealed: list[tuple[str, Secret]] = field(default_factory=list)
    _connection: Connection | None = None

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            self._connection = self.connect()
        return self._connection

    def reveal(self, label: str, secret: Secret) -> None:
        """Hand a secret (a temporary password) to the technician, once, on the terminal only."""
        self.revealed.append((label, secret))

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class Action:
    """One fix. Subclasses set the class attributes and implement the three steps."""

    name: ClassVar[str]
    summary: ClassVar[str]
    params: ClassVar[tuple[Param, ...]] = ()
    target_kinds: ClassVar[frozenset[str]] = frozenset({"windows"})
    risk: ClassVar[Risk] = Risk.SAFE
    # A read-only action (a diagnosis): check is the whole run, never a fix. The runner ends it
    # `already-ok` when check says ok, else `findings` (exit code 6); fix and verify never run.
    read_only: ClassVar[bool] = False

    def check(self, ctx: RunContext) -> Observation:
        raise NotImplementedError

    def fix(self, ctx: RunContext, before: Observation) -> dict[str, Any]:
        raise NotImplementedError

    def verify(self, ctx: RunContext, before: Observation) -> Observation:
        raise NotImplementedError

    def check_fix_verify(self, ctx: RunContext) -> tuple[Observation, dict[str, Any] | None, Observation | None]:
        """All three steps in one go; fix and verify only when check found a problem.

        The runner uses this when no confirmation is needed and it is not a dry run,
        so an action may override it to save round trips (see ScriptAction).
        """
        before = self.check(ctx)
        if before.ok:
            return before, None, None
        done = self.fix(ctx, before)
        return before, done, self.verify(ctx, before)

    @classmethod
    def validate_params(cls, raw: dict[str, Any]) -> dict[str, Any]:
        """Check names and convert values; unknown names get the closest known name."""
        known = {p.name: p for p in cls.params}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            hint = ", ".join(known) or "none"
            raise BadInput(f"{cls.name}: unknown parameter {unknown[0]!r} (parameters: {hint})")
        values: dict[str, Any] = {}
        for p in cls.params:
            if p.name in raw and raw[p.name] is not None:
                values[p.name] = p.convert(raw[p.name])
            elif p.required:
                raise BadInput(f"{cls.name}: parameter {p.name!r} is required ({p.help})")
            else:
                values[p.name] = p.default
        return values

    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {
            "name": cls.name,
            "summary": cls.summary,
            "target_kinds": sorted(cls.target_kinds),
            "risk": str(cls.risk),
            "params": [p.describe() for p in cls.params],
        }


def _actions_in(module_name: str) -> list[type[Action]]:
    module = importlib.import_module(module_name)
    return [obj for obj in vars(module).values() if _is_action(obj) and obj.__module__ == module_name]


def _is_action(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, Action) and "name" in vars(obj)


def builtin_modules() -> list[str]:
    """The modules of l1fix.actions, one per fix (names starting with `_` are helpers)."""
    import pkgutil

    package = importlib.import_module(ACTIONS_PACKAGE)
    return sorted(
        f"{ACTIONS_PACKAGE}.{info.name}"
        for info in pkgutil.iter_modules(package.__path__)
        if not info.name.startswith("_")
    )


@cache
def registry() -> dict[str, type[Action]]:
    """Built-in actions plus those that installed packages declare under `l1fix.actions`."""
    found: dict[str, type[Action]] = {}
    for module_name in builtin_modules():
        for cls in _actions_in(module_name):
            found[cls.name] = cls
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        obj = ep.load()
        classes = _actions_in(obj.__name__) if isinstance(obj, type(importlib)) else [obj]
        for cls in classes:
            if _is_action(cls) and cls.name not in found:
                found[cls.name] = cls
    return dict(sorted(found.items()))


def get_action(name: str) -> type[Action]:
    actions = registry()
    if name not in actions:
        close = _closest(name, actions)
        hint = f"did you mean {close}?" if close else "see `l1fix actions`"
        raise BadInput(f"unknown action {name!r}", hint=hint)
    return actions[name]


def _closest(name: str, choices: Any) -> str | None:
    import difflib

    matches = difflib.get_close_matches(name, list(choices), n=1)
    return matches[0] if matches else None


class ScriptAction(Action):
    """An action whose steps run as one remote script file beside its module.

    The script receives `{"action", "steps", "params", "before"}` as data and prints one JSON
    document with a key per step it ran: `check` and `verify` are observations
    (`ok`, `state`, `summary`), `fix` is what was done. When it runs check and finds
    nothing wrong, it stops there. See README "Adding a fix".
    """

    script: ClassVar[str]  # file stem, e.g. "spooler" → spooler.ps1 for WinRM
    timeout_s: ClassVar[float] = 120.0

    def _run(self, ctx: RunContext, steps: list[str], before: Observation | None = None) -> dict[str, Any]:
        import inspect
        from pathlib import Path

        conn: ScriptConnection = ctx.connection  # type: ignore[assignment]
        path = Path(inspect.getfile(type(self))).with_name(self.script + conn.script_suffix)
        payload = {
            "action": self.name,
            "steps": steps,
            "params": ctx.params,
            "before": before.state if before else None,
        }
        result = conn.run_script(path, payload, timeout=self.timeout_s)
        ctx.outputs.append(result.stdout)
        return result.data

    def check(self, ctx: RunContext) -> Observation:
        return _observation(self._run(ctx, ["check"]), "check")

    def fix(self, ctx: RunContext, before: Observation) -> dict[str, Any]:
        return dict(self._run(ctx, ["fix"], before)["fix"])

    def verify(self, ctx: RunContext, before: Observation) -> Observation:
        return _observation(self._run(ctx, ["verify"], before), "verify")

    def check_fix_verify(self, ctx: RunContext) -> tuple[Observation, dict[str, Any] | None, Observation | None]:
        data = self._run(ctx, ["check", "fix", "verify"])
        before = _observation(data, "check")
        if before.ok:
            return before, None, None
        return before, dict(data["fix"]), _observation(data, "verify")


def _observation(data: dict[str, Any], step: str) -> Observation:
    from l1fix.errors import BadOutput

    try:
        return Observation.from_json(data[step])
    except (KeyError, TypeError) as exc:
        raise BadOutput(f"the {step} step returned no observation ({exc})") from None

"""Runs one action on one target: journal first, check → fix → verify, observers told."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from l1fix.action import Action, Observation, Risk, RunContext, get_action
from l1fix.config import Config
from l1fix.errors import BadInput, L1fixError
from l1fix.result import ErrorInfo, RunResult, Status
from l1fix.secrets import redact, redact_data
from l1fix.targets.base import ACCOUNT_KINDS, Connection, Target, connect

OUTPUT_KEPT_CHARS = 1_000_000  # a run's output kept for its followup attachment

Confirm = Callable[[str], bool]


class RunObserver(Protocol):
    """Watches runs (journal, progress, ticket followups): not code inside the runner."""

    def run_started(self, result: RunResult) -> None: ...

    def run_finished(self, result: RunResult) -> None: ...


def execute(
    action_name: str,
    target_name: str,
    raw_params: dict[str, Any] | None = None,
    *,
    config: Config,
    ticket: int | None = None,
    dry_run: bool = False,
    confirm: Confirm | None = None,
    observers: Sequence[RunObserver] = (),
    shared_connection: Callable[[Target, Config], Connection] | None = None,
) -> RunResult:
    """Run `action_name` on `target_name`. Never raises for a run's own failures: see result.status.

    `confirm` is asked before a risky fix; None means the caller already confirmed (--yes).
    `shared_connection`, when given, hands out the connection to the resolved target instead of
    opening a new one: the caller owns it (a playbook reuses one across a target's steps), and
    the runner does not close it.
    """
    result = RunResult(
        run_id=uuid.uuid4().hex,
        action=action_name,
        target=target_name,
        status=Status.RUNNING,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        technician=config.technician,
        ticket=ticket,
        params=redact_data(dict(raw_params or {})),  # type: ignore[arg-type]
        dry_run=dry_run,
    )
    for observer in observers:
        observer.run_started(result)
    started = time.perf_counter()
    ctx: RunContext | None = None
    try:
        action_cls = get_action(action_name)
        params = action_cls.validate_params(dict(raw_params or {}))
        result.params = redact_data(params)  # type: ignore[assignment]
        target = resolve_target(config, target_name, action_cls)
        result.target = target.name
        opener = shared_connection or connect
        ctx = RunContext(target=target, params=params, connect=lambda: opener(target, config), config=config)
        _run_steps(action_cls(), ctx, result, dry_run=dry_run, confirm=confirm)
    except L1fixError as exc:
        result.status = Status.ERROR
        if exc.target is None:
            exc.target = result.target
            exc.args = (exc.one_line(),)
        result.error = ErrorInfo.from_exception(exc)
        result.exception = exc
    except Exception as exc:  # noqa: BLE001 - any bug becomes an "error" run, never a lost one
        result.status = Status.ERROR
        result.error = ErrorInfo.from_exception(exc)
        result.exception = exc
    finally:
        if ctx is not None:
            result.revealed = ctx.revealed
            result.output = redact("\n".join(ctx.outputs))[-OUTPUT_KEPT_CHARS:]
            if shared_connection is None:
                _close_quietly(ctx)
        result.duration_s = time.perf_counter() - started
        if result.error is not None:
            result.error.message = redact(result.error.message)
        for observer in observers:
            observer.run_finished(result)
    return result


def execute_journaled(
    action_name: str, target_name: str, raw_params: dict[str, Any] | None = None, *, config: Config, **options: Any
) -> RunResult:
    """execute() as the CLI and the API run it: journaled first, then the ticket followup."""
    from l1fix.journal import Journal
    from l1fix.tickets.delivery import FollowupObserver

    journal = Journal(config.journal_path)
    observers = [journal, FollowupObserver(journal, config), *options.pop("observers", ())]
    return execute(action_name, target_name, raw_params, config=config, observers=observers, **options)


def resolve_target(config: Config, name: str, action_cls: type[Action]) -> Target:
    """The target an action runs on: an account for account kinds, else a computer (inventory, GLPI, DNS)."""
    account_kinds = sorted(action_cls.target_kinds & ACCOUNT_KINDS.keys())
    if account_kinds:
        if not name or len(name) > 256 or any(ord(c) < 32 for c in name):
            raise BadInput(f"{name!r} is not an account name")
        return Target.account(name, account_kinds[0])
    from l1fix.inventory import load_inventory

    external = None
    if config.glpi.inventory_lookup and config.glpi.url:
        from l1fix.tickets.glpi_inventory import computer_address

        def external(computer: str) -> str | None:
            return computer_address(config, computer)

    target = load_inventory(config.inventory_path).resolve(name, external)
    if target.kind not in action_cls.target_kinds:
        kinds = ", ".join(sorted(action_cls.target_kinds))
        raise BadInput(f"{action_cls.name} runs on {kinds} targets, not {target.kind}", target=target.name)
    return target


def _run_steps(action: Action, ctx: RunContext, result: RunResult, *, dry_run: bool, confirm: Confirm | None) -> None:
    """check → fix → verify. Dry-run is enforced here, not left to each action."""
    if action.read_only:  # a diagnosis: the same check-only run, dry or not
        before = action.check(ctx)
        _record(result, before, None, None)
        result.status = Status.ALREADY_OK if before.ok else Status.FINDINGS
        return
    if dry_run:
        before = action.check(ctx)
        _record(result, before, None, None)
        result.status = Status.ALREADY_OK if before.ok else Status.SKIPPED
        if not before.ok:
            result.summary = f"{before.summary} (dry run: nothing changed)"
        return
    if action.risk is Risk.CONFIRM and confirm is not None:
        before = action.check(ctx)
        if before.ok:
            _record(result, before, None, None)
            result.status = Status.ALREADY_OK
            return
        if not confirm(f"{before.summary}\nRun {action.name} on {ctx.target.name}?"):
            _record(result, before, None, None)
            result.status = Status.SKIPPED
            result.summary = "declined by the technician; nothing changed"
            return
        done = action.fix(ctx, before)
        after: Observation | None = action.verify(ctx, before)
    else:
        before, done, after = action.check_fix_verify(ctx)
    _record(result, before, done, after)
    if after is None:
        result.status = Status.ALREADY_OK
    else:
        result.status = Status.FIXED if after.ok else Status.FAILED


def _record(result: RunResult, before: Observation, done: dict[str, Any] | None, after: Observation | None) -> None:
    result.before = redact_data(before.state)  # type: ignore[assignment]
    result.done = redact_data(done) if done is not None else None  # type: ignore[assignment]
    result.after = redact_data(after.state) if after is not None else None  # type: ignore[assignment]
    steps = {"check": before.summary}
    if done is not None:
        steps["fix"] = str(done.get("summary", ""))
    if after is not None:
        steps["verify"] = after.summary
    result.steps = {step: redact(text) for step, text in steps.items() if text}
    result.summary = " → ".join(result.steps.values())


def _close_quietly(ctx: RunContext) -> None:
    # Closing must never hide the run's own result.
    with contextlib.suppress(Exception):
        ctx.close()

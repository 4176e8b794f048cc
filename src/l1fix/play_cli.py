"""`l1fix play FILE …` and `l1fix playbook schema`: playbooks from the command line.

At start-up this imports only typer and the standard library (`l1fix --help` stays fast):
the playbook engine, YAML, Jinja2 and rich load when a playbook is read or run.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from l1fix.config import Config
    from l1fix.playbook import Playbook, Progress, TargetOutcome

DEFAULT_CONCURRENCY = 10  # l1fix.playbook.DEFAULT_CONCURRENCY, not imported: start-up time
DEFAULT_TIMEOUT_S = 600.0  # l1fix.playbook.DEFAULT_TIMEOUT_S

playbook_app = typer.Typer(help="Playbooks: the format's JSON Schema.", no_args_is_help=True, rich_markup_mode=None)


@playbook_app.command("schema")
def schema_command() -> None:
    """Print the playbook JSON Schema (for editors and other tools)."""
    from l1fix.playbook import playbook_schema

    typer.echo(json.dumps(playbook_schema(), indent=2, ensure_ascii=False))


def play_command(
    file: Annotated[Path, typer.Argument(help="Playbook file (YAML), e.g. playbooks/printer-stuck.yml.")],
    target: Annotated[
        list[str] | None, typer.Option("--target", "-t", help="Computer or account (repeatable).")
    ] = None,
    group: Annotated[list[str] | None, typer.Option("--group", help="Inventory group (repeatable).")] = None,
    targets_file: Annotated[
        Path | None, typer.Option("--targets-file", help="File with one target per line (# comments).")
    ] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="Playbook parameter NAME=VALUE.")] = None,
    ticket: Annotated[int | None, typer.Option("--ticket", help="Ticket id: one followup for the run.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check only; change nothing.")] = False,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=256, help="Targets run at the same time.")
    ] = DEFAULT_CONCURRENCY,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds allowed per target.")
    ] = DEFAULT_TIMEOUT_S,
    check: Annotated[bool, typer.Option("--check", help="Validate and resolve the targets; run nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per target, then a summary line.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Run steps that need confirmation.")] = False,
) -> None:
    """Run a playbook: its steps in order on each target, the targets in parallel. Ctrl-C stops cleanly.

    Exit code: 0 when every target ended fixed, already-ok or skipped, else the worst
    (1 failed, 2 bad input, 3 unreachable, 4 timeout, 5 internal, 130 cancelled); 6 when the
    worst is a diagnosis's findings (something to fix or escalate, nothing failed).
    """
    from l1fix.cli import cli_config, fail
    from l1fix.errors import L1fixError
    from l1fix.playbook import exit_code, load_playbook, run_playbook

    try:
        playbook = load_playbook(file)
        values = _parse_params(param or [])
        playbook.resolve_params(values)  # bad parameters fail before anything is resolved
        config = cli_config()
        names = _targets(playbook, config, target or [], group or [], targets_file)
        if check:
            raise typer.Exit(_check(playbook, config, names, as_json=as_json))
        display = _Display(len(names), as_json=as_json)
        started = time.monotonic()
        try:
            outcomes = run_playbook(
                playbook,
                names,
                config=config,
                params=values,
                ticket=ticket,
                dry_run=dry_run,
                concurrency=concurrency,
                timeout_s=timeout,
                on_progress=display,
                yes=yes,
            )
        finally:
            display.close()
    except L1fixError as exc:
        raise fail(exc) from None
    code = exit_code(outcomes)
    if as_json:
        typer.echo(json.dumps(_summary_json(outcomes, code, time.monotonic() - started), ensure_ascii=False))
    else:
        _print_table(outcomes, time.monotonic() - started)
    _print_ticket_news(outcomes, ticket, playbook)
    _show_revealed(outcomes, to_stderr=as_json)
    _debug_tracebacks(outcomes)
    raise typer.Exit(code)


def _parse_params(items: list[str]) -> dict[str, str]:
    from l1fix.errors import BadInput

    values: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"--param {item!r} is not NAME=VALUE")
        values[key.strip()] = value
    return values


def _targets(
    playbook: Playbook, config: Config, targets: list[str], groups: list[str], targets_file: Path | None
) -> list[str]:
    """--target, --group and --targets-file together, in that order; else the playbook's default targets."""
    from l1fix.errors import BadInput

    names = list(targets)
    if groups:
        from l1fix.inventory import load_inventory

        inventory = load_inventory(config.inventory_path)
        for group in groups:
            names += inventory.group(group)
    if targets_file is not None:
        try:
            lines = targets_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(
                f"cannot read targets file {targets_file}: {getattr(exc, 'strerror', None) or exc}"
            ) from None
        listed = [line.split("#", 1)[0].strip() for line in lines]
        if not any(listed):
            raise BadInput(f"targets file {targets_file} lists no target")
        names += [name for name in listed if name]
    return names or list(playbook.targets)


def _check(playbook: Playbook, config: Config, names: list[str], *, as_json: bool) -> int:
    """--check: the playbook is valid (it was loaded); resolve each target as its first step would."""
    from l1fix.action import get_action
    from l1fix.errors import EXIT_BAD_INPUT, L1fixError
    from l1fix.runner import resolve_target

    first = get_action(playbook.steps[0].action)
    resolved, problems = [], []
    for name in dict.fromkeys(names):
        try:
            found = resolve_target(config, name, first)
        except L1fixError as exc:
            problems.append({"name": name, "error": exc.one_line()})
            continue
        resolved.append({"name": found.name, "address": found.address, "kind": found.kind, "via": found.connection})
    if as_json:
        data = {"valid": True, "playbook": playbook.describe(), "targets": resolved, "unresolved": problems}
        typer.echo(json.dumps(data, ensure_ascii=False))
    else:
        if playbook.description:
            typer.echo(playbook.description + "\n")
        steps = ", ".join(f"{s.id} ({s.action}{', when ' + s.when if s.when else ''})" for s in playbook.steps)
        typer.echo(f"{playbook.name}: valid — applies to {', '.join(playbook.applies_to)}; steps: {steps}")
        for p in playbook.params.values():
            default = "required" if p.required else f"default {p.default!r}"
            typer.echo(f"  --param {p.name}=… ({p.type}, {default}) {p.description}".rstrip())
        for t in resolved:
            typer.echo(
                f"  target {t['name']}: {t['kind']} via {t['via']}" + (f" at {t['address']}" if t["address"] else "")
            )
        if not names:
            typer.echo("  no targets given (--target, --group, --targets-file)")
        for problem in problems:
            typer.echo(f"l1fix: {problem['error']}", err=True)
    return EXIT_BAD_INPUT if problems else 0


class _Display:
    """Progress: a rich bar on a terminal when rich is installed, plain lines otherwise, JSON lines with --json."""

    def __init__(self, total: int, *, as_json: bool) -> None:
        self.total, self.as_json = total, as_json
        self.done = self.failed = 0
        self.running: dict[str, str] = {}  # target → its current step
        self.lock = threading.Lock()
        self.bar: Any = None
        if not as_json and sys.stdout.isatty():
            self.bar = _rich_progress(total)

    def __call__(self, event: Progress) -> None:
        with self.lock:
            if event.event == "target-started":
                self.running[event.target] = ""
            elif event.event == "step-started":
                self.running[event.target] = event.step or ""
            elif event.event == "target-finished" and event.outcome is not None:
                self.running.pop(event.target, None)
                self.done += 1
                self.failed += event.outcome.exit_code != 0
                self._finished(event.outcome)
            if self.bar is not None:
                self._refresh()

    def _finished(self, outcome: TargetOutcome) -> None:
        if self.as_json:
            typer.echo(json.dumps(outcome.to_json(), ensure_ascii=False))
            return
        line = f"[{self.done}/{self.total}] {outcome.target} {outcome.status}"
        detail = _detail(outcome)
        line += f" ({detail})" if detail else ""
        if self.bar is not None:
            self.bar[0].console.print(line, markup=False, highlight=False)
        else:
            typer.echo(line)

    def _refresh(self) -> None:
        progress, task = self.bar
        status = f"{self.failed} failed, {len(self.running)} running"
        current = [f"{t} {s}".strip() for t, s in list(self.running.items())[:2]]
        if current:
            status += ": " + ", ".join(current) + (" …" if len(self.running) > 2 else "")
        progress.update(task, completed=self.done, status=status)

    def close(self) -> None:
        if self.bar is not None:
            self.bar[0].stop()
            self.bar = None


def _rich_progress(total: int) -> tuple[Any, Any] | None:
    """A started rich progress bar and its task; None when rich is not installed."""
    try:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        from rich.table import Column
    except ImportError:
        return None
    progress = Progress(
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}", table_column=Column(no_wrap=True, overflow="ellipsis")),
    )
    task = progress.add_task("play", total=total, status="")
    progress.start()
    return progress, task


def _detail(outcome: TargetOutcome) -> str:
    """What to say after the status: the fixes made, or what went wrong."""
    if outcome.exit_code != 0:
        text = outcome.headline
        return text if len(text) <= 200 else text[:199] + "…"
    changed = [s.action for s in outcome.steps if s.status in ("fixed", "skipped") and s.result is not None]
    return ", ".join(changed)


def _print_table(outcomes: list[TargetOutcome], elapsed: float) -> None:
    from collections import Counter

    header = ("target", "status", "fixed", "already-ok", "failed", "duration")
    rows = [
        (
            o.target,
            str(o.status),
            str(o.counts["fixed"]),
            str(o.counts["already-ok"]),
            str(o.counts["failed"]),
            f"{o.duration_s:.1f} s",
        )
        for o in outcomes
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    typer.echo("")
    for row in [header, *rows]:
        cells = [
            row[0].ljust(widths[0]),
            row[1].ljust(widths[1]),
            *(c.rjust(w) for c, w in zip(row[2:], widths[2:], strict=True)),
        ]
        typer.echo("  ".join(cells))
    tally = Counter(str(o.status) for o in outcomes)
    parts = ", ".join(f"{n} {status}" for status, n in sorted(tally.items(), key=lambda kv: -kv[1]))
    play = f" (play {outcomes[0].play_id[:8]})" if outcomes else ""
    typer.echo(f"{len(outcomes)} target(s): {parts} — {elapsed:.1f} s{play}")


def _summary_json(outcomes: list[TargetOutcome], code: int, elapsed: float) -> dict[str, Any]:
    from collections import Counter

    first = outcomes[0] if outcomes else None
    escalation = next((o.escalation for o in outcomes if o.escalation), None)
    return {
        "type": "summary",
        "play_id": first.play_id if first else None,
        "playbook": first.playbook if first else None,
        "targets": len(outcomes),
        "statuses": dict(Counter(str(o.status) for o in outcomes)),
        "exit_code": code,
        "duration_s": round(elapsed, 3),
        "followup": first.followup if first else None,
        "escalation": escalation,
    }


def _print_ticket_news(outcomes: list[TargetOutcome], ticket: int | None, playbook: Playbook) -> None:
    """The followup's delivery and the escalation: warnings on stderr when something is left to do."""
    followup = outcomes[0].followup if outcomes else None
    if followup and followup.get("state") == "queued":
        typer.echo(
            f"l1fix: warning: the followup for ticket {ticket} is queued ({followup.get('error')}); "
            "`l1fix sync` will deliver it",
            err=True,
        )
    escalation = next((o.escalation for o in outcomes if o.escalation), None)
    if escalation is None:
        return
    state, to = escalation.get("state"), escalation.get("to")
    option = "--to-group" if playbook.escalate and playbook.escalate.group else "--to-user"
    if state == "escalated":
        typer.echo(f"ticket {ticket} escalated to {to}", err=True)
    elif state == "failed":
        typer.echo(
            f"l1fix: warning: ticket {ticket} was not escalated ({escalation.get('error')}); "
            f'run: l1fix ticket escalate {ticket} {option} "{to}"',
            err=True,
        )
    elif state == "no-ticket":
        typer.echo(f"l1fix: escalate to {to}: {escalation.get('note') or ''}".rstrip(), err=True)


def _show_revealed(outcomes: list[TargetOutcome], *, to_stderr: bool) -> None:
    """Secrets for the technician (a temporary password): the terminal only, once, never --json."""
    for outcome in outcomes:
        for label, secret in outcome.revealed:
            typer.echo(f"{outcome.target}: {label}: {secret.reveal()}", err=to_stderr)


def _debug_tracebacks(outcomes: list[TargetOutcome]) -> None:
    from l1fix.cli import Options

    if not Options.debug:
        return
    import traceback

    for outcome in outcomes:
        for step in outcome.steps:
            if step.result is not None and step.result.exception is not None:
                typer.echo(f"--- {outcome.target} step {step.id}", err=True)
                traceback.print_exception(step.result.exception, file=sys.stderr)

"""The l1fix command line: one sub-command per action, plus run, actions, journal and lab."""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from l1fix.action import Action, Param, registry
from l1fix.errors import EXIT_INTERNAL, EXIT_UNREACHABLE, BadInput, L1fixError, Refused
from l1fix.kb import kb_app
from l1fix.play_cli import play_command, playbook_app

app = typer.Typer(
    help="Safe, journaled level-1 helpdesk fixes. Exit codes: 0 fixed/already-ok/skipped, 1 failed, "
    "2 bad input, 3 unreachable or auth refused, 4 timeout, 5 internal error, 6 diagnosis findings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: importing rich would cost ~70 ms on every start
)
journal_app = typer.Typer(help="Read the local journal of runs.", invoke_without_command=True, rich_markup_mode=None)
app.add_typer(journal_app, name="journal")
ticket_app = typer.Typer(help="The ticket lifecycle in GLPI: new, show, escalate, solve, close.", rich_markup_mode=None)
app.add_typer(ticket_app, name="ticket")
lab_app = typer.Typer(help="The lab: SIMULATED Windows PCs on loopback, for training and tests.", rich_markup_mode=None)
app.add_typer(lab_app, name="lab")
app.command("play")(play_command)
app.add_typer(playbook_app, name="playbook")
app.add_typer(kb_app, name="kb")


class Options:
    """Global options, set by the callback."""

    debug = False
    config_path: Path | None = None
    profile: str | None = None
    trust_new_host = False


@app.callback()
def _global(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    config: Annotated[Path | None, typer.Option("--config", help="config.toml to use.")] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="Profile in config.toml.")] = None,
    trust_new_host: Annotated[
        bool, typer.Option("--trust-new-host", help="SSH: record the key of a host seen for the first time.")
    ] = False,
) -> None:
    Options.debug, Options.config_path, Options.profile = debug, config, profile
    Options.trust_new_host = trust_new_host


def cli_config() -> Any:
    """The configuration this command runs with: --config, --profile and --trust-new-host applied."""
    from dataclasses import replace

    from l1fix.config import load_config

    config = load_config(Options.config_path, Options.profile)
    if Options.trust_new_host:  # a changed host key stays refused: only unknown ones are recorded
        config = replace(config, ssh=replace(config.ssh, trust_new_host=True))
    return config


def fail(exc: L1fixError) -> typer.Exit:
    typer.echo(f"l1fix: {exc.one_line()}", err=True)
    return typer.Exit(exc.exit_code)


# -- running actions ------------------------------------------------------------------------


def run_and_report(
    action: str,
    target: str,
    params: dict[str, Any],
    *,
    ticket: int | None,
    dry_run: bool,
    as_json: bool,
    yes: bool,
) -> None:
    """Run one action through the runner, print one line (or one JSON object), exit with its code."""
    from l1fix.runner import execute_journaled

    try:
        config = cli_config()
    except L1fixError as exc:
        raise fail(exc) from None
    result = execute_journaled(
        action, target, params, config=config, ticket=ticket, dry_run=dry_run, confirm=None if yes else _ask
    )
    if as_json:
        typer.echo(json.dumps(result.to_json(), ensure_ascii=False))
    else:
        _print_human(result)
    _show_revealed(result, to_stderr=as_json)
    _warn_if_queued(result)
    if Options.debug and result.exception is not None:
        import traceback

        traceback.print_exception(result.exception, file=sys.stderr)
    raise typer.Exit(result.exit_code)


def _ask(question: str) -> bool:
    if not sys.stdin.isatty():
        raise Refused("this fix needs confirmation", hint="run it again with --yes")
    return typer.confirm(question, default=False, err=True)


def _print_human(result: Any) -> None:
    line = f"{result.target}: {result.status}"
    if result.summary:
        line += f" — {result.summary}"
    typer.echo(f"{line} (run {result.run_id[:8]})")
    if result.error is not None:
        typer.echo(f"l1fix: {result.error.message}", err=True)


def _warn_if_queued(result: Any) -> None:
    followup = result.followup or {}
    if followup.get("state") == "queued":
        typer.echo(
            f"l1fix: warning: the followup for ticket {followup['ticket']} is queued ({followup.get('error')}); "
            "`l1fix sync` will deliver it",
            err=True,
        )


def _show_revealed(result: Any, *, to_stderr: bool) -> None:
    """Secrets for the technician (a temporary password): the terminal only, once, never --json."""
    for label, secret in result.revealed:
        typer.echo(f"{label}: {secret.reveal()}", err=to_stderr)


def _param_option(p: Param) -> inspect.Parameter:
    if p.secret:  # never on the command line: a flag that reads the value from stdin
        option = typer.Option(f"--{p.name}-stdin", help=f"Read {p.help} from stdin (one line).")
        return inspect.Parameter(
            _option_key(p), inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[bool, option], default=False
        )
    kind = p.type if p.type in (str, int, bool, float) else str
    default = None if p.required else p.default
    if p.type is bool:
        option = typer.Option(f"--{p.name}/--no-{p.name}", help=p.help)
    else:
        option = typer.Option(f"--{p.name}", help=p.help + (" [required]" if p.required else ""))
    annotation = Annotated[kind, option] if p.type is bool else Annotated[kind | None, option]
    return inspect.Parameter(_option_key(p), inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)


def _read_secret_stdin(p: Param) -> Any:
    from l1fix.secrets import Secret

    value = sys.stdin.readline().rstrip("\r\n")
    if not value:
        raise fail(BadInput(f"--{p.name}-stdin: nothing was read from stdin"))
    return Secret(value)


def _option_key(p: Param) -> str:
    return "p_" + p.name.replace("-", "_")


def _command_for(action_cls: type[Action]) -> Any:
    """A typer command whose options are the action's parameters."""

    def command(**kwargs: Any) -> None:
        params = {p.name: kwargs[_option_key(p)] for p in action_cls.params}
        for p in action_cls.params:
            if p.secret:
                params[p.name] = _read_secret_stdin(p) if params[p.name] else None
        run_and_report(
            action_cls.name,
            kwargs["target"],
            {k: v for k, v in params.items() if v is not None},
            ticket=kwargs["ticket"],
            dry_run=kwargs["dry_run"],
            as_json=kwargs["as_json"],
            yes=kwargs["yes"],
        )

    kw = inspect.Parameter.KEYWORD_ONLY
    common = [
        inspect.Parameter("target", kw, annotation=Annotated[str, typer.Argument(help="Computer or account.")]),
        *(_param_option(p) for p in action_cls.params),
        inspect.Parameter(
            "ticket",
            kw,
            default=None,
            annotation=Annotated[int | None, typer.Option("--ticket", help="Ticket id.")],
        ),
        inspect.Parameter(
            "dry_run",
            kw,
            default=False,
            annotation=Annotated[bool, typer.Option("--dry-run", help="Check only; change nothing.")],
        ),
        inspect.Parameter(
            "as_json",
            kw,
            default=False,
            annotation=Annotated[bool, typer.Option("--json", help="Print one JSON object.")],
        ),
        inspect.Parameter(
            "yes",
            kw,
            default=False,
            annotation=Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")],
        ),
    ]
    command.__signature__ = inspect.Signature(common)  # type: ignore[attr-defined]
    kinds = ", ".join(sorted(action_cls.target_kinds))
    command.__doc__ = f"{action_cls.summary}. Risk: {action_cls.risk}; targets: {kinds}."
    return command


def _register_actions() -> None:
    for name, action_cls in registry().items():
        command = _command_for(action_cls)
        app.command(name, help=command.__doc__)(command)


@app.command("run")
def run_generic(
    action: Annotated[str, typer.Argument(help="Action name, see `l1fix actions`.")],
    target: Annotated[str, typer.Argument(help="Computer or account.")],
    params: Annotated[list[str] | None, typer.Argument(help="Parameters as key=value.")] = None,
    ticket: Annotated[int | None, typer.Option("--ticket", help="Ticket id.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check only; change nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Run any action: the generic form for scripts (l1fix run spooler-restart PC042 --json)."""
    values: dict[str, str] = {}
    for item in params or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise fail(BadInput(f"parameter {item!r} is not key=value"))
        if _is_secret_param(action, key):
            raise fail(
                BadInput(f"{key} is a secret: never on the command line", hint=f"use l1fix {action} --{key}-stdin")
            )
        values[key] = value
    run_and_report(action, target, values, ticket=ticket, dry_run=dry_run, as_json=as_json, yes=yes)


def _is_secret_param(action: str, key: str) -> bool:
    action_cls = registry().get(action)
    return action_cls is not None and any(p.name == key and p.secret for p in action_cls.params)


@app.command("actions")
def list_actions(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the available actions with their targets, risk and parameters."""
    described = [cls.describe() for cls in registry().values()]
    if as_json:
        typer.echo(json.dumps(described, ensure_ascii=False, indent=2))
        return
    for d in described:
        params = " ".join(f"--{p['name']}" for p in d["params"])
        typer.echo(f"{d['name']:<20} {d['summary']}  [{d['risk']}; {', '.join(d['target_kinds'])}] {params}".rstrip())


@app.command("sync")
def sync(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Deliver the ticket followups still queued in the journal's outbox."""
    from l1fix.journal import Journal
    from l1fix.tickets.delivery import deliver

    try:
        config = cli_config()
        report = deliver(Journal(config.journal_path), config)
    except L1fixError as exc:
        raise fail(exc) from None
    if as_json:
        typer.echo(json.dumps({"sent": report.sent, "queued": report.queued}))
    else:
        typer.echo(f"{len(report.sent)} followup(s) delivered, {len(report.queued)} still queued")
        for run_id, why in report.queued:
            typer.echo(f"l1fix: run {run_id[:8]}: {why}", err=True)
    raise typer.Exit(0 if report.complete else EXIT_UNREACHABLE)


# -- journal --------------------------------------------------------------------------------


@journal_app.callback()
def journal_list(
    ctx: typer.Context,
    target: Annotated[str | None, typer.Option("--target", help="Only this target.")] = None,
    ticket: Annotated[int | None, typer.Option("--ticket", help="Only this ticket.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="30m, 2h, 7d or a date.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many runs.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """List recent runs, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    from l1fix.journal import Journal, parse_since

    try:
        config = cli_config()
        rows = Journal(config.journal_path).list(
            target=target, ticket=ticket, since=parse_since(since) if since else None, limit=limit
        )
    except L1fixError as exc:
        raise fail(exc) from None
    for row in rows:
        if as_json:
            typer.echo(json.dumps(row, ensure_ascii=False))
        else:
            ticket_txt = f" #{row['ticket']}" if row.get("ticket") else ""
            if row.get("followup"):
                ticket_txt += f" (followup {row['followup']['state']})"
            typer.echo(
                f"{row['run_id'][:8]}  {row['started_at']}  {row['action']:<16} {row['target']:<10} "
                f"{row['status']:<11}{ticket_txt}  {row.get('summary') or ''}".rstrip()
            )


@journal_app.command("show")
def journal_show(
    run_id: Annotated[str, typer.Argument(help="Run id or a unique prefix (6+ characters).")],
) -> None:
    """Show one run in full, as JSON."""
    from l1fix.journal import Journal

    try:
        row = Journal(cli_config().journal_path).get(run_id)
    except L1fixError as exc:
        raise fail(exc) from None
    if row is None:
        raise fail(BadInput(f"no run {run_id!r} in the journal", hint="see `l1fix journal`"))
    typer.echo(json.dumps(row, ensure_ascii=False, indent=2))


# -- tickets --------------------------------------------------------------------------------


def _with_tickets(work: Any) -> Any:
    """Run `work(system, config)` with the configured ticket system; errors become one line."""
    from l1fix.tickets.delivery import open_ticket_system

    try:
        config = cli_config()
        with open_ticket_system(config) as system:
            return work(system, config)
    except L1fixError as exc:
        raise fail(exc) from None


def _technician_login(config: Any) -> str:
    return config.glpi.login or config.technician


@ticket_app.command("new")
def ticket_new(
    requester: Annotated[str, typer.Option("--requester", help="Login of the user who called.")],
    title: Annotated[str, typer.Option("--title", help="Short title.")],
    description: Annotated[str, typer.Option("--description", help="What the user reports.")],
    category: Annotated[str | None, typer.Option("--category", help="ITIL category, by name.")] = None,
    urgency: Annotated[int, typer.Option("--urgency", min=1, max=5, help="1 very low … 5 very high.")] = 3,
    type_: Annotated[str, typer.Option("--type", help="incident or request.")] = "incident",
    attach: Annotated[list[Path] | None, typer.Option("--attach", help="File to attach (repeatable).")] = None,
    assign_me: Annotated[bool, typer.Option("--assign-me", help="Assign it to me.")] = False,
    assign: Annotated[str | None, typer.Option("--assign", help="Assign it to this login.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Open a ticket for a caller; prints its id."""
    files = [(path.name, _read_file(path)) for path in attach or []]

    def work(system: Any, config: Any) -> int:
        assignee = _technician_login(config) if assign_me else assign
        ticket_id = system.create_ticket(
            title=title,
            description=description,
            requester=requester,
            category=category,
            urgency=urgency,
            type_=type_,
            assign_user=assignee,
        )
        for name, data in files:
            system.attach_document(ticket_id, name, data)
        return ticket_id

    ticket_id = _with_tickets(work)
    typer.echo(json.dumps({"id": ticket_id}) if as_json else str(ticket_id))


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise fail(BadInput(f"cannot read {path}: {exc.strerror}")) from None


@ticket_app.command("show")
def ticket_show(
    ticket: Annotated[int, typer.Argument(help="Ticket id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Status, requester, assignees and followups of a ticket."""
    import dataclasses

    view = _with_tickets(lambda system, _config: system.get_ticket(ticket))
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(view), ensure_ascii=False))
        return
    typer.echo(f"#{view.id} {view.title} — {view.status_name}")
    typer.echo(f"requester: {', '.join(view.requesters) or '-'}")
    typer.echo(f"assigned: {', '.join([*view.assigned_users, *view.assigned_groups]) or '-'}")
    for f in view.followups:
        private = " (private)" if f.private else ""
        typer.echo(f"--- {f.date} {f.author}{private}\n{f.content_text}")


@ticket_app.command("escalate")
def ticket_escalate(
    ticket: Annotated[int, typer.Argument(help="Ticket id.")],
    to_group: Annotated[str | None, typer.Option("--to-group", help="Level-2 group, by name.")] = None,
    to_user: Annotated[str | None, typer.Option("--to-user", help="Level-2 technician login.")] = None,
    note: Annotated[str | None, typer.Option("--note", help="A word for level 2.")] = None,
) -> None:
    """Hand the ticket to level 2 with a followup listing every l1fix run made for it."""
    import uuid

    from l1fix.journal import Journal
    from l1fix.tickets.delivery import deliver
    from l1fix.tickets.followup import render_escalation

    if bool(to_group) == bool(to_user):
        raise fail(BadInput("give exactly one of --to-group or --to-user"))

    def work(system: Any, config: Any) -> Any:
        me = _technician_login(config)
        system.escalate(ticket, to_group=to_group, to_user=to_user, remove_assigned_user=me)
        journal = Journal(config.journal_path)
        key = f"escalation-{uuid.uuid4().hex}"
        followup = render_escalation(
            journal.list(ticket=ticket, limit=500),
            to=to_group or to_user or "",
            technician=config.technician,
            note=note,
            marker_text=f"l1fix-{key}",
            language=config.glpi.language,
        )
        journal.enqueue_followup(key, ticket, followup.payload(private=config.glpi.followup_private))
        return deliver(journal, config, run_id=key)

    report = _with_tickets(work)
    typer.echo(f"ticket {ticket} escalated to {to_group or to_user}")
    for _, why in report.queued:
        typer.echo(f"l1fix: warning: the escalation followup is queued ({why}); `l1fix sync` will deliver it", err=True)


@ticket_app.command("solve")
def ticket_solve(
    ticket: Annotated[int, typer.Argument(help="Ticket id.")],
    solution: Annotated[str, typer.Option("--solution", help="What solved it, for the user and the KB.")],
) -> None:
    """Mark the ticket solved with a solution."""
    import html

    _with_tickets(lambda system, _c: system.solve(ticket, f"<p>{html.escape(solution, quote=False)}</p>"))
    typer.echo(f"ticket {ticket} solved")


@ticket_app.command("close")
def ticket_close(ticket: Annotated[int, typer.Argument(help="Ticket id.")]) -> None:
    """Close a solved ticket."""
    _with_tickets(lambda system, _c: system.close(ticket))
    typer.echo(f"ticket {ticket} closed")


# -- lab ------------------------------------------------------------------------------------


@lab_app.command("start")
def lab_start(
    hosts: Annotated[int, typer.Option("--hosts", min=1, max=2000, help="How many simulated PCs.")] = 50,
    port: Annotated[int, typer.Option("--port", help="HTTPS port (0: any free port).")] = 5986,
    http_port: Annotated[int, typer.Option("--http-port", help="HTTP port (0: any free port).")] = 5985,
    glpi_port: Annotated[int, typer.Option("--glpi-port", help="GLPI stand-in port (0: any free port).")] = 0,
    latency_ms: Annotated[float, typer.Option("--latency-ms", help="Added to every answer.")] = 0.0,
) -> None:
    """Run the lab in the foreground and write the `lab` profile (use it with --profile lab)."""
    import signal
    import threading

    from l1fix.config import home_dir
    from l1fix.lab.profile import start_lab

    lab = start_lab(home_dir(), hosts=hosts, port=port, http_port=http_port, glpi_port=glpi_port, latency_ms=latency_ms)
    typer.echo(
        f"l1fix lab: {hosts} SIMULATED Windows PCs (PC001…) on {lab.wsman.address_of('PC001')}… "
        f"https port {lab.wsman.port}, http port {lab.wsman.http_port}; GLPI stand-in at {lab.glpi.url}. "
        f"Profile `lab` written to {home_dir()}. Ctrl-C stops it."
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        lab.stop()


@lab_app.command("demo")
def lab_demo(
    target: Annotated[str, typer.Argument(help="Simulated PC to fix.")] = "PC042",
) -> None:
    """Start the lab, fix a simulated PC over WinRM for lab ticket 1234, show the journal and the followup."""
    from l1fix.config import home_dir, load_config
    from l1fix.journal import Journal
    from l1fix.lab.profile import DEMO_TICKET, PROFILE, start_lab
    from l1fix.runner import execute_journaled
    from l1fix.tickets.delivery import open_ticket_system

    lab = start_lab(home_dir())
    try:
        typer.echo(
            f"l1fix lab: SIMULATED Windows PCs on loopback ({lab.wsman.address_of('PC001')}…, "
            f"port {lab.wsman.port}), GLPI stand-in at {lab.glpi.url}"
        )
        config = load_config(Options.config_path, PROFILE)
        typer.echo(f"\n$ l1fix --profile lab spooler-restart {target} --ticket {DEMO_TICKET}")
        result = execute_journaled("spooler-restart", target, config=config, ticket=DEMO_TICKET)
        _print_human(result)
        _warn_if_queued(result)
        typer.echo(f"\n$ l1fix --profile lab journal show {result.run_id[:8]}")
        typer.echo(json.dumps(Journal(config.journal_path).get(result.run_id), ensure_ascii=False, indent=2))
        typer.echo(f"\n$ l1fix --profile lab ticket show {DEMO_TICKET}   # on the GLPI stand-in")
        with open_ticket_system(config) as system:
            view = system.get_ticket(DEMO_TICKET)
        typer.echo(f"#{view.id} {view.title} — {view.status_name}")
        for followup in view.followups:
            typer.echo(f"--- {followup.date} {followup.author}\n{followup.content_text}")
    finally:
        lab.stop()
    raise typer.Exit(result.exit_code)


def main() -> None:
    """Console entry point: build the action commands, run, map surprises to exit code 5."""
    _register_actions()
    try:
        app()
    except L1fixError as exc:
        typer.echo(f"l1fix: {exc.one_line()}", err=True)
        sys.exit(exc.exit_code)
    except Exception as exc:
        if Options.debug:
            raise
        typer.echo(f"l1fix: internal error: {type(exc).__name__}: {exc} (run with --debug)", err=True)
        sys.exit(EXIT_INTERNAL)

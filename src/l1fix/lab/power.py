"""Restarts with a notice (lab only): SIMULATED Windows state, NOT a real computer.

Python twin of l1fix's `reboot.ps1`, run by `l1fix.lab.windows.LabSimulator` (see the
`l1fix.lab.scripts` docstring for the rules every twin follows). A PC's power state is its last
boot time, the User32 events 1074 (restart or shutdown initiated) and 1075 (aborted) of its
System log, and the deadline of a pending shutdown, which Windows keeps to itself: the script
never reads it. shutdown.exe gets its command line as `Invoke-Native` builds it and parses it
back as the C runtime does, so a hostile message that broke out of its quotes would show.
Logged-on users are `host.sessions`.

Problem hosts:

- PC043: up 41 days, nobody logged on; its System log still holds the 1074 of the restart
  before the last boot, which must not count as pending.
- PC044: a restart already scheduled by Windows Update (event 1074 by NT AUTHORITY\\SYSTEM):
  reboot is already-ok, reboot --cancel aborts it.
- PC045: shutdown.exe is refused (error 5, access denied: the technician's account lacks the
  right to shut the PC down).
- PC046: a power off already scheduled by CORP\\mleroy: a restart is refused with error 1190.
- PC047: a restart was scheduled then aborted (1074 then 1075 since the boot): nothing is pending.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from l1fix.lab.scripts import Clock, ScriptError, Twin, as_int, as_string, count, param, run_steps

if TYPE_CHECKING:
    from collections.abc import Callable

    from l1fix.lab.windows import WindowsHost

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
MAX_NOTICE_MINUTES = 1440
MAX_MESSAGE = 512
TECHNICIAN = "LAB\\technician"  # the account WinRM runs as in the lab
PLANNED_OTHER = "0x80000000"  # /d p:0:0: SHTDN_REASON_FLAG_PLANNED, major and minor 0
# What shutdown.exe prints for the errors it reports (its exit code is the Win32 error).
SHUTDOWN_ERRORS = {
    5: "Access is denied.(5)",
    1115: "A system shutdown is in progress.(1115)",
    1116: "Unable to abort the system shutdown because no shutdown was in progress.(1116)",
    1190: "A system shutdown has already been scheduled.(1190)",
}


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class ShutdownEvent:
    """A User32 event of the System log: 1074 (initiated) or 1075 (aborted)."""

    id: int
    time: datetime
    user: str
    process: str = "C:\\Windows\\system32\\shutdown.exe"
    type: str = "restart"  # 1074's shutdown type: restart | power off
    comment: str = ""
    reason_code: str = PLANNED_OTHER


@dataclass
class PowerState:
    """A PC's restart state: last boot, the shutdown events, the pending deadline, refusals."""

    last_boot: datetime = field(default_factory=lambda: _now() - timedelta(hours=26))
    events: list[ShutdownEvent] = field(default_factory=list)
    deadline: datetime | None = None  # when a pending shutdown happens (no API reads it)
    refuse_error: int | None = None  # shutdown.exe fails with this Win32 error (5, 1115…)
    command_lines: list[str] = field(default_factory=list)  # every shutdown.exe command line received


# --------------------------------------------------------------------------- shutdown.exe


def native_argument(value: str) -> str:
    """ConvertTo-NativeArgument (_common.ps1): quoted for CommandLineToArgvW."""
    if value != "" and not re.search(r'[\s"]', value):
        return value
    escaped = re.sub(r'(\\*)"', r'\1\1\\"', value)
    escaped = re.sub(r"(\\+)$", r"\1\1", escaped)
    return f'"{escaped}"'


def split_command_line(text: str) -> list[str]:
    """The arguments a C runtime program reads from its command line (CommandLineToArgvW rules)."""
    args: list[str] = []
    current, quoted, started, i = "", False, False, 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            run = len(text[i:]) - len(text[i:].lstrip("\\"))
            if text[i + run : i + run + 1] == '"':
                current += "\\" * (run // 2) + ('"' if run % 2 else "")
                i += run + (1 if run % 2 else 0)
            else:
                current += "\\" * run
                i += run
            started = True
            continue
        if char == '"':
            quoted, started = not quoted, True
        elif char in " \t" and not quoted:
            if started:
                args.append(current)
            current, started = "", False
        else:
            current += char
            started = True
        i += 1
    if started:
        args.append(current)
    return args


def pending_event(host: WindowsHost) -> ShutdownEvent | None:
    """Get-PendingShutdown: the latest 1074/1075 since the last boot, when it is a 1074."""
    since = [e for e in host.power.events if e.time >= host.power.last_boot]
    latest = sorted(since, key=lambda e: e.time)[-1] if since else None  # same second: the later record
    return latest if latest is not None and latest.id == 1074 else None


def shutdown_exe(host: WindowsHost, arguments: list[str]) -> dict[str, Any]:
    """shutdown.exe /r /t S /c C /d p:0:0, or /a: exit code and output, as Invoke-Native returns them."""
    power = host.power
    command_line = " ".join(native_argument(a) for a in arguments)
    power.command_lines.append(command_line)
    argv = split_command_line(command_line)
    pending = pending_event(host)
    if power.refuse_error is not None:
        code = power.refuse_error
    elif argv == ["/a"]:
        code = 1116 if pending is None else 0
        if pending is not None:
            power.events.append(ShutdownEvent(1075, _now(), TECHNICIAN))
            power.deadline = None
    elif pending is not None:
        code = 1190
    else:
        options = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i] in ("/t", "/c", "/d")}
        power.events.append(ShutdownEvent(1074, _now(), TECHNICIAN, comment=options["/c"]))
        power.deadline = _now() + timedelta(seconds=int(options["/t"]))
        code = 0
    return {"exit_code": code, "output": SHUTDOWN_ERRORS.get(code, "")}


# --------------------------------------------------------------------------- reboot.ps1


def run_reboot(host: WindowsHost, request: dict[str, Any], clock: Clock) -> dict[str, Any]:
    """reboot.ps1."""
    mode = "cancel" if bool(param(request, "cancel", False)) else "restart"
    minutes = as_int(param(request, "notice-minutes", 0))
    message = as_string(param(request, "message", ""))
    if mode == "restart":
        if not 1 <= minutes <= MAX_NOTICE_MINUTES:
            raise ScriptError(
                f"The parameter 'notice-minutes' must be 1 to {MAX_NOTICE_MINUTES} (got {minutes}): l1fix never "
                "restarts a PC without notice."
            )
        length = len(message.encode("utf-16-le")) // 2
        if message.strip() == "" or length > MAX_MESSAGE:
            raise ScriptError(f"The parameter 'message' must be 1 to {MAX_MESSAGE} characters (got {length}).")
    settings = {"mode": mode, "minutes": minutes, "message": message}

    def fix() -> dict[str, Any]:
        clock.seconds += 0.1
        return cancel_fix(host) if mode == "cancel" else restart_fix(host, settings)

    return run_steps(
        request,
        check=lambda: reboot_check(power_state(host, mode), mode),
        fix=fix,
        verify=lambda: reboot_verify(power_state(host, mode), settings),
    )


def _time(when: datetime) -> str:
    return when.strftime(TIME_FORMAT)


def interactive_users(host: WindowsHost) -> list[str]:
    """Get-LoggedOnUsers (_common.ps1): each login once."""
    return list(dict.fromkeys(s.login for s in host.sessions))


def power_state(host: WindowsHost, mode: str) -> dict[str, Any]:
    """Get-PowerState."""
    event = pending_event(host)
    pending = None
    if event is not None:
        pending = {
            "type": event.type,
            "initiated": _time(event.time),
            "by": event.user,
            "process": event.process,
            "comment": event.comment,
            "reason_code": event.reason_code,
        }
    boot = host.power.last_boot
    return {
        "mode": mode,
        "last_boot": _time(boot),
        "uptime_hours": round((datetime.now(UTC) - boot).total_seconds() / 3600, 1),
        "logged_on_users": interactive_users(host),
        "pending": pending,
        "restart_pending": pending is not None and pending["type"] == "restart",
    }


def format_pending(pending: dict[str, Any]) -> str:
    return (
        f"a {pending['type']} initiated at {pending['initiated']} by {pending['by']} ({pending['process']}), "
        f"comment '{pending['comment']}'"
    )


def format_users(users: list[str]) -> str:
    return f"logged on: {', '.join(users)}" if users else "nobody is logged on"


def reboot_check(state: dict[str, Any], mode: str) -> dict[str, Any]:
    uptime = f"Up {state['uptime_hours']} h since {state['last_boot']}; {format_users(state['logged_on_users'])}"
    pending = state["pending"]
    if mode == "cancel":
        ok = pending is None
        if ok:
            summary = f"{uptime}; no restart or shutdown is scheduled: nothing to cancel."
        else:
            summary = f"{uptime}; scheduled: {format_pending(pending)}."
    else:
        ok = state["restart_pending"]
        if ok:
            summary = (
                f"{uptime}; a restart is already scheduled: {format_pending(pending)}. Nothing done "
                "(reboot --cancel cancels it)."
            )
        elif pending is not None:
            summary = (
                f"{uptime}; already scheduled: {format_pending(pending)}; a restart cannot be scheduled before it is "
                "cancelled (reboot --cancel)."
            )
        else:
            summary = f"{uptime}; no restart scheduled."
    return {"ok": ok, "state": state, "summary": summary}


def restart_fix(host: WindowsHost, settings: dict[str, Any]) -> dict[str, Any]:
    """Invoke-RestartFix."""
    users = interactive_users(host)
    seconds = settings["minutes"] * 60
    restart_at = _now() + timedelta(seconds=seconds)
    run = shutdown_exe(host, ["/r", "/t", str(seconds), "/c", settings["message"], "/d", "p:0:0"])
    fix: dict[str, Any] = {
        "summary": "",
        "scheduled": run["exit_code"] == 0,
        "exit_code": run["exit_code"],
        "error": None,
        "restart_at": None,
        "notice_minutes": settings["minutes"],
        "notified": [],
    }
    if fix["scheduled"]:
        fix["restart_at"] = _time(restart_at)
        fix["notified"] = users
        who = "nobody is logged on to see the notice"
        if users:
            who = (
                f"{count(len(users), 'logged-on user')} ({', '.join(users)}) got the notice '{settings['message']}' "
                "with a countdown"
            )
        fix["summary"] = (
            f"Scheduled a planned restart at {fix['restart_at']} (in {count(settings['minutes'], 'minute')}); {who}."
        )
    else:
        fix["error"] = run["output"]
        fix["summary"] = (
            f"shutdown.exe refused the restart (exit code {run['exit_code']}: {run['output']}); nothing is scheduled."
        )
    return fix


def cancel_fix(host: WindowsHost) -> dict[str, Any]:
    """Invoke-CancelFix."""
    run = shutdown_exe(host, ["/a"])
    fix: dict[str, Any] = {
        "summary": "",
        "cancelled": run["exit_code"] == 0,
        "exit_code": run["exit_code"],
        "error": None,
    }
    if fix["cancelled"]:
        fix["summary"] = (
            "Cancelled the scheduled restart or shutdown (shutdown /a); the logged-on users are told it is off."
        )
    else:
        fix["error"] = run["output"]
        fix["summary"] = f"shutdown.exe /a failed (exit code {run['exit_code']}: {run['output']})."
    return fix


def reboot_verify(state: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    pending = state["pending"]
    if settings["mode"] == "cancel":
        ok = pending is None
        summary = (
            "No restart or shutdown is scheduled any more." if ok else f"Still scheduled: {format_pending(pending)}."
        )
        return {"ok": ok, "state": state, "summary": summary}
    ok = state["restart_pending"] and pending["comment"] == settings["message"]
    if ok:
        summary = (
            f"A restart is scheduled (event 1074 at {pending['initiated']} by {pending['by']}) with the notice given; "
            f"{format_users(state['logged_on_users'])}."
        )
    elif pending is not None:
        summary = f"No restart with this notice is scheduled; what is: {format_pending(pending)}."
    else:
        summary = "No restart is scheduled."
    return {"ok": ok, "state": state, "summary": summary}


# --------------------------------------------------------------------------- problem hosts


def _pc043(host: WindowsHost) -> None:
    power = host.power
    power.last_boot = _now() - timedelta(days=41)
    power.events.append(ShutdownEvent(1074, power.last_boot - timedelta(minutes=3), "CORP\\jdupont",
                                      "C:\\Windows\\Explorer.EXE", comment=""))  # fmt: skip


def _pc044(host: WindowsHost) -> None:
    power = host.power
    power.events.append(
        ShutdownEvent(1074, _now() - timedelta(minutes=5), "NT AUTHORITY\\SYSTEM",
                      "C:\\Windows\\System32\\MoUsoCoreWorker.exe", reason_code="0x80020010")
    )  # fmt: skip
    power.deadline = _now() + timedelta(minutes=55)


def _pc045(host: WindowsHost) -> None:
    host.power.refuse_error = 5


def _pc046(host: WindowsHost) -> None:
    power = host.power
    power.events.append(
        ShutdownEvent(1074, _now() - timedelta(minutes=10), "CORP\\mleroy", type="power off", comment="fin de journée")
    )
    power.deadline = _now() + timedelta(minutes=50)


def _pc047(host: WindowsHost) -> None:
    power = host.power
    power.events.append(ShutdownEvent(1074, _now() - timedelta(hours=2), TECHNICIAN, comment="Maintenance"))
    power.events.append(ShutdownEvent(1075, _now() - timedelta(hours=2) + timedelta(minutes=1), TECHNICIAN))


TWINS: dict[str, Twin] = {"reboot": run_reboot}
PROBLEMS: dict[str, Callable[[WindowsHost], None]] = {
    "PC043": _pc043,
    "PC044": _pc044,
    "PC045": _pc045,
    "PC046": _pc046,
    "PC047": _pc047,
}

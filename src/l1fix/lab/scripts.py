"""Python twins of l1fix's PowerShell scripts, run against SIMULATED Windows hosts (lab only).

Each twin follows its script in `l1fix/actions/*.ps1` step by step: same JSON shapes, same
state keys, same ok rules, same sentences. It changes the simulated host the way the real
script changes a PC: a restart leaves a service Running, a purge empties the spool folder,
a service that refuses to start stays Stopped. Change a script, change its twin.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from l1fix.lab.windows import PrintJob, Service, WindowsHost

SPOOLER = "Spooler"
DEFAULT_STUCK_MINUTES = 30
DEFAULT_TIMEOUT_S = 60
SERVICE_CHANGE_S = 0.1  # simulated time one service stop or start takes
# Win32_PrintJob.StatusMask names, in bit order, as spooler.ps1 names them.
JOB_STATUS_ORDER = (
    "Paused", "Error", "Deleting", "Spooling", "Printing", "Offline",
    "PaperOut", "Printed", "Deleted", "Blocked", "UserIntervention", "Restart",
)  # fmt: skip
STUCK_STATUSES = frozenset({"Paused", "Error", "Deleting", "Blocked"})
# Win32 error texts the .NET ServiceController reports for a failed start.
ERROR_1053 = "The service did not respond to the start or control request in a timely fashion"
ERROR_1058 = (
    "The service cannot be started, either because it is disabled or because it has no enabled "
    "devices associated with it"
)
ERROR_1068 = "The dependency service or group failed to start"
ERROR_1075 = "The dependency service does not exist or has been marked for deletion"


class ScriptError(Exception):
    """What a script's top-level catch prints as {"error": message}, with exit code 1."""


@dataclass
class Clock:
    """Simulated time a script run takes (service stops and starts are not instantaneous)."""

    seconds: float = 0.0


Twin = Callable[["WindowsHost", dict[str, Any], Clock], dict[str, Any]]
Step = Callable[[], dict[str, Any]]


# --------------------------------------------------------------------------- shared by both


def run_steps(request: dict[str, Any], check: Step, fix: Step, verify: Step) -> dict[str, Any]:
    """The main loop of both scripts: a key per step; stop after a check that says ok."""
    steps = request.get("steps")
    if not isinstance(steps, list):
        steps = [] if steps is None else [steps]
    result: dict[str, Any] = {}
    for step in steps:
        kind = step.lower() if isinstance(step, str) else step
        if kind == "check":
            result["check"] = check()
            if result["check"]["ok"]:
                break  # nothing wrong: no fix, no verify
        elif kind == "fix":
            result["fix"] = fix()
        elif kind == "verify":
            result["verify"] = verify()
        else:
            raise ScriptError(f"Unknown step '{step}' (expected check, fix or verify).")
    return result


def param(request: dict[str, Any], name: str, default: Any) -> Any:
    """Get-Param: an optional parameter, or its default when absent or null."""
    params = request.get("params")
    if not isinstance(params, dict) or params.get(name) is None:
        return default
    return params[name]


def required_param(request: dict[str, Any], name: str, what: str) -> str:
    """Get-RequiredParam: a parameter the script cannot run without, as a string."""
    value = as_string(param(request, name, ""))
    if value == "":
        raise ScriptError(f"The parameter '{name}' ({what}) is missing.")
    return value


def as_int(value: Any) -> int:
    """PowerShell's [int] cast (rounds half to even, like .NET)."""
    try:
        return round(float(value))
    except (TypeError, ValueError, OverflowError):
        raise ScriptError(f'Cannot convert value "{value}" to type "System.Int32".') from None


def as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ScriptError(f'Cannot convert value "{value}" to type "System.Double".') from None


def as_string(value: Any) -> str:
    """PowerShell's [string] cast, for the values JSON can carry."""
    if isinstance(value, list):
        return " ".join(as_string(v) for v in value)
    return str(value)


def count(n: int, noun: str) -> str:
    """Format-Count: '1 job', '3 jobs'."""
    return f"1 {noun}" if n == 1 else f"{n} {noun}s"


def service_state(host: WindowsHost, svc: Service) -> dict[str, Any]:
    """Get-ServiceState."""
    dependents = [{"name": d.name, "status": d.state} for d in host.dependents_of(svc.name)]
    return {
        "service": svc.name,
        "display_name": svc.display_name,
        "status": svc.state,
        "start_type": svc.start_type,
        "dependents": dependents,
        "dependents_running": [d["name"] for d in dependents if d["status"] == "Running"],
    }


def stop_tree(host: WindowsHost, svc: Service, clock: Clock) -> None:
    """Stop-ServiceTree: dependents first (deepest first), then the service."""
    for dependent in host.dependents_of(svc.name):
        if dependent.state != "Stopped":
            _stop(dependent, clock)
    if svc.state != "Stopped":
        _stop(svc, clock)


def _stop(svc: Service, clock: Clock) -> None:
    if not svc.can_stop:
        raise ScriptError(
            f'Exception calling "Stop" with "0" argument(s): "Cannot stop {svc.name} service on computer \'.\'."'
        )
    clock.seconds += SERVICE_CHANGE_S
    svc.state = "Stopped"


def start_and_wait(host: WindowsHost, svc: Service, clock: Clock) -> str | None:
    """Start-ServiceAndWait: None once Running, else why it is not running."""
    if svc.state == "Running":
        return None
    return _start(host, svc, clock)


def _start(host: WindowsHost, svc: Service, clock: Clock) -> str | None:
    """Like the SCM: start what the service depends on first; the Win32 reason of a failure."""
    if svc.state == "Running":
        return None
    if svc.start_type == "Disabled":
        return ERROR_1058
    for name in svc.depends_on:
        dependency = host.service(name)
        if dependency is None:
            return ERROR_1075
        if _start(host, dependency, clock) is not None:
            return ERROR_1068
    clock.seconds += SERVICE_CHANGE_S
    if svc.refuses_start:
        return ERROR_1053
    svc.state = "Running"
    return None


def restart_dependents(host: WindowsHost, running: list[Service], started: bool, clock: Clock) -> dict[str, Any]:
    """Start again the dependents that were running, in start order (the reverse of stop order)."""
    restarted: list[str] = []
    not_restarted: list[str] = []
    if not started:
        return {"dependents_restarted": restarted, "dependents_not_restarted": [d.name for d in running]}
    for dependent in reversed(running):
        if start_and_wait(host, dependent, clock) is None:
            restarted.append(dependent.name)
        else:
            not_restarted.append(dependent.name)
    return {"dependents_restarted": restarted, "dependents_not_restarted": not_restarted}


def dependents_text(fix: dict[str, Any]) -> str:
    text = ""
    if fix["dependents_restarted"]:
        text += f" Dependents started again: {', '.join(fix['dependents_restarted'])}."
    if fix["dependents_not_restarted"]:
        text += f" Dependents not running again: {', '.join(fix['dependents_not_restarted'])}."
    return text


# --------------------------------------------------------------------------- spooler.ps1


def run_spooler(host: WindowsHost, request: dict[str, Any], clock: Clock) -> dict[str, Any]:
    """spooler.ps1: the Print Spooler, its queue and its spool folder."""
    stuck_minutes = as_int(param(request, "stuck_minutes", DEFAULT_STUCK_MINUTES))
    as_float(param(request, "timeout_s", DEFAULT_TIMEOUT_S))  # the simulation never waits that long
    return run_steps(
        request,
        check=lambda: spooler_check(spooler_state(host, stuck_minutes)),
        fix=lambda: spooler_fix(host, clock),
        verify=lambda: spooler_verify(spooler_state(host, stuck_minutes)),
    )


def _spooler(host: WindowsHost) -> Service:
    svc = host.service(SPOOLER)
    if svc is None:
        raise ScriptError("The Print Spooler service (Spooler) is not installed on this computer.")
    return svc


def _spool_files(host: WindowsHost) -> list[str]:
    return [f for f in host.spool_files if f.lower().endswith((".spl", ".shd"))]


def _base_name(file_name: str) -> str:
    return file_name.rpartition(".")[0]


def _job_state(job: PrintJob, stuck_minutes: int) -> dict[str, Any]:
    flags = {f.strip() for f in job.status.split(",")}
    known = [f for f in JOB_STATUS_ORDER if f in flags]
    stuck_by_age = stuck_minutes > 0 and job.age_minutes >= stuck_minutes
    return {
        "id": job.id,
        "printer": job.printer,
        "document": job.document,
        "owner": job.owner,
        "status": ", ".join(known) or "Queued",
        "age_minutes": job.age_minutes,
        "stuck": bool(flags & STUCK_STATUSES) or stuck_by_age,
    }


def spooler_state(host: WindowsHost, stuck_minutes: int) -> dict[str, Any]:
    """Get-SpoolerState: only a running Spooler lists its jobs; the files are always there."""
    svc = _spooler(host)
    state = service_state(host, svc)
    jobs = [_job_state(j, stuck_minutes) for j in host.jobs] if svc.state == "Running" else []
    files = _spool_files(host)
    job_ids = {j["id"] for j in jobs}
    orphans = [f for f in files if (m := re.search(r"(\d+)$", _base_name(f))) is None or int(m[1]) not in job_ids]
    state["jobs"] = jobs
    stuck_ids = [j["id"] for j in jobs if j["stuck"]]
    state["stuck_jobs"] = len(stuck_ids)
    state["stuck_job_ids"] = stuck_ids
    state["stuck_minutes"] = stuck_minutes
    state["spool_folder"] = host.spool_folder
    state["spool_files"] = len(files)
    state["orphan_spool_files"] = len(orphans)
    return state


def spooler_check(state: dict[str, Any]) -> dict[str, Any]:
    stuck, orphans = state["stuck_jobs"], state["orphan_spool_files"]
    ok = state["status"] == "Running" and stuck == 0 and orphans == 0
    if ok:
        summary = f"The Print Spooler is running with no stuck print job ({len(state['jobs'])} in the queue)."
    elif state["start_type"] == "Disabled":
        summary = f"The Print Spooler is Disabled ({state['status']}); l1fix will not re-enable it: escalate to L2."
    elif state["status"] != "Running":
        summary = (
            f"The Print Spooler is {state['status']} with {count(state['spool_files'], 'spool file')} "
            f"in {state['spool_folder']}."
        )
    elif stuck:
        summary = (
            f"The Print Spooler is running but has {count(stuck, 'stuck print job')} "
            f"({len(state['jobs'])} in the queue)."
        )
    else:
        summary = (
            f"The Print Spooler is running but its spool folder {state['spool_folder']} holds "
            f"{count(orphans, 'orphan spool file')}."
        )
    return {"ok": ok, "state": state, "summary": summary}


def spooler_verify(state: dict[str, Any]) -> dict[str, Any]:
    jobs, orphans = len(state["jobs"]), state["orphan_spool_files"]
    ok = state["status"] == "Running" and jobs == 0 and orphans == 0
    if ok:
        summary = "The Print Spooler is running and its queue is empty."
    elif state["status"] != "Running":
        summary = f"The Print Spooler is still not running ({state['status']}, start type {state['start_type']})."
    else:
        summary = (
            f"The Print Spooler is running but its queue is not empty ({count(jobs, 'job')}, "
            f"{count(orphans, 'orphan spool file')})."
        )
    return {"ok": ok, "state": state, "summary": summary}


def spooler_fix(host: WindowsHost, clock: Clock) -> dict[str, Any]:
    """Invoke-SpoolerFix: stop with dependents, delete the spool files, start, dependents again."""
    svc = _spooler(host)
    folder = host.spool_folder
    fix: dict[str, Any] = {
        "summary": "",
        "disabled": False,
        "spool_folder": folder,
        "jobs_purged": 0,
        "files_deleted": 0,
        "files_not_deleted": 0,
        "started": False,
        "start_error": None,
        "dependents_restarted": [],
        "dependents_not_restarted": [],
    }
    if svc.start_type == "Disabled":
        fix["disabled"] = True
        fix["summary"] = (
            "The Print Spooler is Disabled: l1fix never re-enables a disabled service, "
            "nothing was changed; escalate to L2."
        )
        return fix

    running = [d for d in host.dependents_of(svc.name) if d.state == "Running"]
    was_running = svc.state != "Stopped"
    stop_tree(host, svc, clock)

    purged: set[str] = set()
    for file_name in _spool_files(host):
        host.spool_files.remove(file_name)
        fix["files_deleted"] += 1
        purged.add(_base_name(file_name).casefold())
    fix["jobs_purged"] = len(purged)
    # A starting Spooler loads its jobs from the .SHD files: no file, no job.
    host.jobs = [j for j in host.jobs if j.spool_files[1] in host.spool_files]

    fix["start_error"] = start_and_wait(host, svc, clock)
    fix["started"] = fix["start_error"] is None
    fix.update(restart_dependents(host, running, fix["started"], clock))

    verb = "Restarted" if was_running else "Started"
    purged_text = (
        f"{count(fix['jobs_purged'], 'job')} purged ({count(fix['files_deleted'], 'spool file')} deleted from {folder})"
    )
    if fix["started"]:
        summary = f"{verb} the Print Spooler; {purged_text}."
    else:
        summary = f"Stopped the Print Spooler; {purged_text}; but it did not start again: {fix['start_error']}."
    summary += dependents_text(fix)
    if fix["files_not_deleted"]:
        summary += f" {count(fix['files_not_deleted'], 'spool file')} could not be deleted."
    fix["summary"] = summary
    return fix


# --------------------------------------------------------------------------- service.ps1


def run_service(host: WindowsHost, request: dict[str, Any], clock: Clock) -> dict[str, Any]:
    """service.ps1: one service, by exact name."""
    name = required_param(request, "service", "a service name")
    as_float(param(request, "timeout_s", DEFAULT_TIMEOUT_S))  # the simulation never waits that long
    return run_steps(
        request,
        check=lambda: service_observation(service_state(host, find_service(host, name)), "check"),
        fix=lambda: service_fix(host, name, clock),
        verify=lambda: service_observation(service_state(host, find_service(host, name)), "verify"),
    )


def find_service(host: WindowsHost, name: str) -> Service:
    svc = host.service(name)
    if svc is None:
        raise ScriptError(
            f"Service '{name}' was not found on this computer "
            "(give the service name, e.g. 'Spooler', not the display name)."
        )
    return svc


def service_observation(state: dict[str, Any], step: str) -> dict[str, Any]:
    ok = state["status"] == "Running"
    label = f"Service '{state['service']}' ({state['display_name']})"
    if ok:
        summary = f"{label} is running."
    elif state["start_type"] == "Disabled":
        summary = f"{label} is Disabled and {state['status']}; l1fix will not re-enable it: escalate to L2."
    elif step == "verify":
        summary = f"{label} is still not running ({state['status']}, start type {state['start_type']})."
    else:
        summary = f"{label} is {state['status']} (start type {state['start_type']})."
    return {"ok": ok, "state": state, "summary": summary}


def service_fix(host: WindowsHost, name: str, clock: Clock) -> dict[str, Any]:
    """Invoke-ServiceFix: restart (or start) with dependents; never enable a Disabled service."""
    svc = find_service(host, name)
    fix: dict[str, Any] = {
        "summary": "",
        "service": svc.name,
        "disabled": False,
        "action": "none",
        "start_error": None,
        "dependents_restarted": [],
        "dependents_not_restarted": [],
        "status": svc.state,
    }
    if svc.start_type == "Disabled":
        fix["disabled"] = True
        fix["summary"] = (
            f"Service '{svc.name}' is Disabled: l1fix never re-enables a disabled service, "
            "nothing was changed; escalate to L2."
        )
        return fix

    running = [d for d in host.dependents_of(svc.name) if d.state == "Running"]
    fix["action"] = "started"
    if svc.state != "Stopped":
        fix["action"] = "restarted"
        stop_tree(host, svc, clock)
    fix["start_error"] = start_and_wait(host, svc, clock)
    fix.update(restart_dependents(host, running, fix["start_error"] is None, clock))
    fix["status"] = svc.state

    if fix["start_error"] is None:
        verb = "Restarted" if fix["action"] == "restarted" else "Started"
        summary = f"{verb} service '{svc.name}'."
    else:
        summary = f"Tried to start service '{svc.name}' but it is not running: {fix['start_error']}."
    fix["summary"] = summary + dependents_text(fix)
    return fix


# --------------------------------------------------------------------------- dns_flush.ps1

DNSCACHE = "Dnscache"


def run_dns_flush(host: WindowsHost, request: dict[str, Any], clock: Clock) -> dict[str, Any]:
    """dns_flush.ps1: the DNS Client service and its cache."""
    before = request.get("before")
    settings: dict[str, Any] = {"before": None}
    if isinstance(before, dict) and before.get("cache_entries") is not None:
        settings["before"] = as_int(before["cache_entries"])

    def check() -> dict[str, Any]:
        state = dns_state(host)
        settings["before"] = state["cache_entries"]
        return dns_check(state)

    def fix() -> dict[str, Any]:
        return dns_fix(host, settings)

    return run_steps(request, check=check, fix=fix, verify=lambda: dns_verify(dns_state(host), settings["before"]))


def dns_state(host: WindowsHost) -> dict[str, Any]:
    """Get-DnsState: a stopped DNS Client has no cache to read; hosts file names counted apart."""
    svc = host.service(DNSCACHE)
    if svc is None:
        raise ScriptError("The DNS Client service (Dnscache) is not installed on this computer.")
    names = sorted({n.lower() for n in host.dns_cache}) if svc.state == "Running" else []
    hosts_names = {n.lower() for n in host.hosts_file}
    cached = [n for n in names if n not in hosts_names]
    return {
        "service": DNSCACHE,
        "status": svc.state,
        "start_type": svc.start_type,
        "cache_entries": len(cached),
        "hosts_file_entries": len(names) - len(cached),
        "sample_entries": cached[:10],
    }


def dns_check(state: dict[str, Any]) -> dict[str, Any]:
    ok = state["status"] == "Running" and state["cache_entries"] == 0
    if state["status"] != "Running":
        summary = (
            f"The DNS Client (Dnscache) is {state['status']} (start type {state['start_type']}): there is no "
            "cache to flush; restart it with service-restart --service Dnscache or escalate."
        )
    elif ok:
        summary = "The DNS client cache is already empty and the DNS Client is running."
    else:
        summary = f"The DNS client cache holds {count(state['cache_entries'], 'name')}."
    return {"ok": ok, "state": state, "summary": summary}


def dns_fix(host: WindowsHost, settings: dict[str, Any]) -> dict[str, Any]:
    """Invoke-DnsFlush: Clear-DnsClientCache; the hosts file names come back at once, as on Windows."""
    state = dns_state(host)
    fix: dict[str, Any] = {
        "summary": "",
        "flushed": False,
        "entries_before": state["cache_entries"],
        "flush_error": None,
    }
    if settings["before"] is None:
        settings["before"] = state["cache_entries"]
    if state["status"] != "Running":
        fix["summary"] = f"The DNS Client (Dnscache) is {state['status']}: nothing to flush, nothing was changed."
        return fix
    host.dns_cache = list(dict.fromkeys([*host.hosts_file, *host.dns_relookups]))
    fix["flushed"] = True
    fix["summary"] = f"Flushed the DNS client cache ({count(state['cache_entries'], 'name')})."
    return fix


def dns_verify(state: dict[str, Any], before: int | None) -> dict[str, Any]:
    state["entries_before"] = before
    entries = state["cache_entries"]
    fewer = before is not None and entries < before
    ok = state["status"] == "Running" and (entries == 0 or fewer)
    if state["status"] != "Running":
        summary = (
            f"The DNS Client (Dnscache) is still not running ({state['status']}, start type {state['start_type']})."
        )
    elif entries == 0:
        summary = "The DNS client cache is empty and the DNS Client is running."
    elif ok:
        summary = f"The DNS client cache was emptied: {count(entries, 'name')} looked up again since, {before} before."
    else:
        summary = f"The DNS client cache was not emptied: {count(entries, 'name')} (before: {before})."
    return {"ok": ok, "state": state, "summary": summary}


# --------------------------------------------------------------------------- gpupdate.ps1

GP_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
GP_SESSION_NEEDED = (
    "a user policy refresh runs in the user's own session. Ask the user to log on, or refresh the computer "
    "policy only (without --user)."
)
DEFAULT_GP_TIMEOUT_S = 120


def run_gpupdate(host: WindowsHost, request: dict[str, Any], clock: Clock) -> dict[str, Any]:
    """gpupdate.ps1: Group Policy refresh times; the user's refresh runs as the user, in their session."""
    before = request.get("before") if isinstance(request.get("before"), dict) else {}
    settings: dict[str, Any] = {
        "user": as_string(param(request, "user", "")),
        "timeout_s": as_int(param(request, "timeout_s", DEFAULT_GP_TIMEOUT_S)),
        "computer_before": before.get("computer_last_refresh"),
        "user_before": before.get("user_last_refresh"),
        "computer_exit_code": None,
        "user_exit_code": None,
        "fix_ran": False,
    }

    def check() -> dict[str, Any]:
        state = gp_state(host, settings)
        settings["computer_before"] = state["computer_last_refresh"]
        settings["user_before"] = state["user_last_refresh"]
        return gp_check(state)

    def fix() -> dict[str, Any]:
        settings["fix_ran"] = True
        return gp_fix(host, settings, clock)

    return run_steps(request, check=check, fix=fix, verify=lambda: gp_verify(gp_state(host, settings), settings))


def _gp_time(host: WindowsHost, scope: str) -> str | None:
    when = host.gp_last_refresh.get(scope)
    return when.strftime(GP_TIME_FORMAT) if when is not None else None


def find_session(host: WindowsHost, login: str, why: str) -> Any:
    """Find-Session: by DOMAIN\\user, or by user name alone; an error (ending with `why`) when not logged on."""
    sessions = host.sessions
    if "\\" in login:
        found = [s for s in sessions if s.login.casefold() == login.casefold()]
    else:
        found = [s for s in sessions if s.login.partition("\\")[2].casefold() == login.casefold()]
    names = ", ".join(s.login for s in sessions) or "nobody"
    if not found:
        raise ScriptError(f"User '{login}' is not logged on to this computer (logged on: {names}): {why}")
    if len(found) > 1:
        raise ScriptError(f"User '{login}' matches several logged-on users ({names}): give it as DOMAIN\\user.")
    return found[0]


def gp_state(host: WindowsHost, settings: dict[str, Any]) -> dict[str, Any]:
    """Get-GpState."""
    state: dict[str, Any] = {
        "scope": "computer",
        "user": None,
        "user_sid": None,
        "session_id": None,
        "logged_on_users": [s.login for s in host.sessions],
        "computer_last_refresh": _gp_time(host, "Machine"),
        "user_last_refresh": None,
    }
    if settings["user"] != "":
        session = find_session(host, settings["user"], GP_SESSION_NEEDED)
        state["scope"] = "computer and user"
        state["user"] = session.login
        state["session_id"] = session.session_id
        state["user_sid"] = session.sid
        state["user_last_refresh"] = _gp_time(host, session.sid)
    return state


def _refresh_text(time: str | None) -> str:
    return "never" if time is None else time


def gp_check(state: dict[str, Any]) -> dict[str, Any]:
    summary = f"Computer policy last refreshed: {_refresh_text(state['computer_last_refresh'])}"
    if state["user"] is not None:
        summary += (
            f"; {state['user']}'s user policy (session {state['session_id']}): "
            f"{_refresh_text(state['user_last_refresh'])}"
        )
    return {"ok": False, "state": state, "summary": summary + "."}


def _gpupdate(host: WindowsHost, scope: str, clock: Clock) -> int:
    """One gpupdate run: with exit code 0 the scope's end time moves to now."""
    from datetime import UTC, datetime, timedelta

    clock.seconds += SERVICE_CHANGE_S
    code = host.gpupdate_exit_code
    if code == 0:
        now = datetime.now(UTC).replace(microsecond=0)
        last = host.gp_last_refresh.get(scope)
        host.gp_last_refresh[scope] = max(now, last + timedelta(seconds=1)) if last is not None else now
    return code


def _gp_outcome(what: str, code: int | None, timed_out: bool, timeout_s: int) -> str:
    if timed_out:
        return f"{what} did not finish within {timeout_s} s"
    if code == 0:
        return f"{what} completed"
    return f"{what} failed (gpupdate exit code {code})"


def gp_fix(host: WindowsHost, settings: dict[str, Any], clock: Clock) -> dict[str, Any]:
    """Invoke-GpFix: computer policy here; the user's through a one-shot task in their session."""
    import uuid

    state = gp_state(host, settings)
    code = _gpupdate(host, "Machine", clock)
    settings["computer_exit_code"] = code
    output = (
        "Updating policy... Computer Policy update has completed successfully."
        if code == 0
        else "Updating policy... Computer policy could not be updated successfully. The following errors were "
        "encountered: The processing of Group Policy failed."
    )
    fix: dict[str, Any] = {
        "summary": "",
        "computer_exit_code": code,
        "computer_timed_out": False,
        "computer_output": output,
        "user": state["user"],
        "user_task": None,
        "user_exit_code": None,
        "user_timed_out": False,
    }
    summary = _gp_outcome("Computer policy refresh", code, False, settings["timeout_s"])
    if state["user"] is not None:
        user_code = _gpupdate(host, state["user_sid"], clock)
        settings["user_exit_code"] = user_code
        fix["user_task"] = f"\\l1fix\\gpupdate-{uuid.uuid4().hex}"
        fix["user_exit_code"] = user_code
        what = f"{state['user']}'s user policy refresh (as the user, in session {state['session_id']})"
        summary += "; " + _gp_outcome(what, user_code, False, settings["timeout_s"])
    fix["summary"] = summary + "."
    return fix


def _moved_forward(before: Any, after: str | None) -> bool:
    return after is not None and (before is None or after > as_string(before))


def gp_verify(state: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    def refreshed(before: Any, after: str | None, code: int | None) -> bool:
        return _moved_forward(before, after) and ((code is None and not settings["fix_ran"]) or code == 0)

    computer_ok = refreshed(settings["computer_before"], state["computer_last_refresh"], settings["computer_exit_code"])
    state["computer_refreshed"] = computer_ok
    state["user_refreshed"] = None
    ok = computer_ok
    if computer_ok:
        parts = [f"computer policy refreshed at {state['computer_last_refresh']}"]
    else:
        parts = [
            f"computer policy not refreshed (last: {_refresh_text(state['computer_last_refresh'])}, "
            f"gpupdate exit code {_ps(settings['computer_exit_code'])})"
        ]
    if state["user"] is not None:
        user_ok = refreshed(settings["user_before"], state["user_last_refresh"], settings["user_exit_code"])
        state["user_refreshed"] = user_ok
        ok = ok and user_ok
        if user_ok:
            parts.append(f"{state['user']}'s user policy refreshed at {state['user_last_refresh']}")
        else:
            parts.append(
                f"{state['user']}'s user policy not refreshed (last: {_refresh_text(state['user_last_refresh'])}, "
                f"exit code {_ps(settings['user_exit_code'])})"
            )
    return {"ok": ok, "state": state, "summary": "Group Policy: " + "; ".join(parts) + "."}


def _ps(value: Any) -> str:
    """A value in a PowerShell string: $null is empty."""
    return "" if value is None else str(value)


# --------------------------------------------------------------------------- temp_clean.ps1

SYSTEM_DRIVE = "C:"
WINDOWS_TEMP = "C:\\Windows\\Temp"


def run_temp_clean(host: WindowsHost, request: dict[str, Any], clock: Clock) -> dict[str, Any]:
    """temp_clean.ps1: old files in the Temp folders, never through a reparse point."""
    days = as_int(param(request, "older-than-days", 1))
    if days < 0:
        raise ScriptError(f"The parameter 'older-than-days' must be 0 or more (got {days}).")
    settings: dict[str, Any] = {
        "user": as_string(param(request, "user", "")),
        "days": days,
        "old_files": [],
        "files_in_use": 0,
        "files_deleted": None,
    }
    return run_steps(
        request,
        check=lambda: temp_check(temp_state(host, settings)),
        fix=lambda: temp_fix(host, settings, clock),
        verify=lambda: temp_verify(temp_state(host, settings), settings),
    )


def _under(path: str, folder: str) -> bool:
    return path.casefold().startswith(folder.casefold().rstrip("\\") + "\\")


def temp_folders(host: WindowsHost, user: str) -> list[dict[str, Any]]:
    """Get-TempFolders: every non-special profile's Temp, or one user's; then C:\\Windows\\Temp."""
    profiles = [p for p in host.profiles if not p.special]
    if user != "":
        if "\\" in user:
            profiles = [p for p in profiles if p.login.casefold() == user.casefold()]
        else:
            profiles = [
                p
                for p in profiles
                if p.login.rpartition("\\")[2].casefold() == user.casefold()
                or p.local_path.rpartition("\\")[2].casefold() == user.casefold()
            ]
        if not profiles:
            raise ScriptError(
                f"User '{user}' has no profile on this computer: nothing of theirs to clean "
                "(check the login, or clean without --user)."
            )
    folders = [{"path": p.local_path + "\\AppData\\Local\\Temp", "user": p.login} for p in profiles]
    folders.append({"path": WINDOWS_TEMP, "user": None})
    return folders


def _walk(host: WindowsHost, folder: str, days: int) -> dict[str, Any]:
    """Get-OldFiles: files below the folder, none behind a reparse point (those are counted)."""
    inside = [r for r in host.reparse_points if _under(r, folder)]
    reachable = [r for r in inside if not any(_under(r, other) for other in inside if other != r)]
    files = [f for f in host.files if _under(f.path, folder) and not any(_under(f.path, r) for r in inside)]
    old = [f for f in files if f.age_days > days]
    return {"files": len(files), "old": old, "old_bytes": sum(f.size for f in old), "reparse_points": len(reachable)}


def temp_state(host: WindowsHost, settings: dict[str, Any]) -> dict[str, Any]:
    """Get-TempState."""
    state: dict[str, Any] = {
        "older_than_days": settings["days"],
        "user": settings["user"] or None,
        "folders": [],
        "files": 0,
        "old_files": 0,
        "old_bytes": 0,
        "reparse_points_skipped": 0,
        "drive": SYSTEM_DRIVE,
        "free_bytes": host.free_bytes,
    }
    old_files: list[Any] = []
    for folder in temp_folders(host, settings["user"]):
        found = _walk(host, folder["path"], settings["days"])
        state["folders"].append(
            {
                "path": folder["path"],
                "user": folder["user"],
                "files": found["files"],
                "old_files": len(found["old"]),
                "old_bytes": found["old_bytes"],
                "reparse_points_skipped": found["reparse_points"],
            }
        )
        state["files"] += found["files"]
        state["old_files"] += len(found["old"])
        state["old_bytes"] += found["old_bytes"]
        state["reparse_points_skipped"] += found["reparse_points"]
        old_files += found["old"]
    settings["old_files"] = old_files
    return state


def format_bytes(n: int) -> str:
    """Format-Bytes: invariant culture, one decimal."""
    for unit, size in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n} bytes"


def temp_check(state: dict[str, Any]) -> dict[str, Any]:
    ok = state["old_files"] == 0
    where = count(len(state["folders"]), "Temp folder")
    days, free = state["older_than_days"], format_bytes(state["free_bytes"])
    if ok:
        summary = f"No temporary file older than {count(days, 'day')} in {where} ({free} free on {state['drive']})."
    else:
        summary = (
            f"{count(state['old_files'], 'temporary file')} older than {count(days, 'day')} "
            f"({format_bytes(state['old_bytes'])}) in {where}; {free} free on {state['drive']}."
        )
    return {"ok": ok, "state": state, "summary": summary}


def temp_fix(host: WindowsHost, settings: dict[str, Any], clock: Clock) -> dict[str, Any]:
    """Invoke-TempClean: delete the old files; one in use is counted and left alone."""
    temp_state(host, settings)
    fix: dict[str, Any] = {
        "summary": "",
        "files_deleted": 0,
        "bytes_freed": 0,
        "files_in_use": 0,
        "files_not_deleted": 0,
        "free_bytes_before": host.free_bytes,
        "free_bytes_after": None,
    }
    for file in settings["old_files"]:
        clock.seconds += 0.001
        if file.locked:
            fix["files_in_use"] += 1
            continue
        host.files.remove(file)
        host.free_bytes += file.size
        fix["files_deleted"] += 1
        fix["bytes_freed"] += file.size
    fix["free_bytes_after"] = host.free_bytes
    settings["files_in_use"] = fix["files_in_use"]
    settings["files_deleted"] = fix["files_deleted"]
    summary = (
        f"Deleted {count(fix['files_deleted'], 'file')} ({format_bytes(fix['bytes_freed'])} freed); free space "
        f"{format_bytes(fix['free_bytes_before'])} -> {format_bytes(fix['free_bytes_after'])}."
    )
    if fix["files_in_use"]:
        summary += f" {count(fix['files_in_use'], 'file')} in use left alone."
    if fix["files_not_deleted"]:
        summary += f" {count(fix['files_not_deleted'], 'file')} could not be deleted (access denied)."
    fix["summary"] = summary
    return fix


def temp_verify(state: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    deleted = settings["files_deleted"]
    in_use = settings["files_in_use"] if deleted is not None else 0
    state["files_in_use"] = in_use
    old = state["old_files"]
    ok = old <= in_use and (old == 0 or (deleted or 0) > 0)
    free = f"{format_bytes(state['free_bytes'])} free on {state['drive']}"
    if old == 0:
        summary = f"No temporary file older than {count(state['older_than_days'], 'day')} is left; {free}."
    elif ok:
        summary = f"Only {count(old, 'file')} in use is left; {free}."
    elif old <= in_use:
        summary = (
            f"Nothing was deleted: every old temporary file ({old}) is in use; ask the user to close their "
            "programs or restart, then run again."
        )
    else:
        summary = (
            f"{count(old, 'temporary file')} older than {count(state['older_than_days'], 'day')} still there "
            f"({format_bytes(state['old_bytes'])})."
        )
    return {"ok": ok, "state": state, "summary": summary}


TWINS: dict[str, Twin] = {
    "spooler": run_spooler,
    "service": run_service,
    "dns_flush": run_dns_flush,
    "gpupdate": run_gpupdate,
    "temp_clean": run_temp_clean,
}

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
    name = as_string(param(request, "service", ""))
    if name == "":
        raise ScriptError("The parameter 'service' (a service name) is missing.")
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


TWINS: dict[str, Twin] = {"spooler": run_spooler, "service": run_service}

"""Simulated Windows hosts for the l1fix lab: NOT real computers, only their state in memory.

`LabSimulator` is what the lab's WS-Management server (`l1fix.lab.wsman`) asks to run a
command. It accepts only what l1fix sends — `powershell.exe -NoProfile -NonInteractive
-Command -` with l1fix's shared library `_common.ps1` and one of l1fix's own scripts on
stdin, both byte for byte — and runs the Python twin of that script (`l1fix.lab.scripts`)
against the simulated host's state.

`default_fleet()` builds PC001…PCnnn, healthy except for these deterministic problems:

- PC007: Print Spooler Stopped, 4 orphan spool files (2 jobs) left in the spool folder.
- PC013: Print Spooler Disabled (and Stopped): l1fix must refuse to re-enable it.
- PC021: BITS Stopped and refuses to start: a restart fails and verify says so.
- PC030: spool folder moved to D:\\Spool (registry DefaultSpoolDirectory); 2 stuck jobs
  there (one Paused, one Deleting).
- PC042: Print Spooler Running with 3 stuck jobs: one in Error, two queued behind it for
  over an hour.

No faults by default; the lab CLI adds some (unreachable, access-denied, slow).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from l1fix.lab import scripts
from l1fix.lab.wsman import CommandOutcome
from l1fix.targets import powershell

DEFAULT_SPOOL_FOLDER = "C:\\Windows\\System32\\spool\\PRINTERS"
LAB_TAG = " [l1fix lab: simulated host]"
CLIXML_HEADER = "#< CLIXML\r\n"
CLIXML_OBJS = '<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
# What powershell.exe writes to stderr when it loads a module (CimCmdlets here), exit code 0.
PROGRESS_RECORD = (
    '<Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject</T>'
    '<T>System.Object</T></TN><MS><I64 N="SourceId">1</I64><PR N="Record"><AV>Preparing modules for '
    "first use.</AV><AI>0</AI><Nil /><PI>-1</PI><PC>-1</PC><T>Completed</T><SR>-1</SR><SD> </SD></PR>"
    "</MS></Obj>"
)
# Simulated run time of a script (seconds), plus what its service changes take (scripts.Clock).
QUERY_S = 0.05


@dataclass
class Service:
    """A simulated Windows service."""

    name: str
    display_name: str
    state: str = "Running"  # Running | Stopped (what Windows calls Status)
    start_type: str = "Automatic"  # Automatic | Manual | Disabled
    depends_on: tuple[str, ...] = ()
    refuses_start: bool = False  # a start request fails (as with error 1053)
    can_stop: bool = True  # False for services Windows does not let you stop (RpcSs)


@dataclass
class PrintJob:
    """A simulated print job; its spool files are 000NN.SPL/.SHD in the host's spool folder."""

    id: int
    document: str
    owner: str
    printer: str
    status: str = "Queued"  # Win32_PrintJob.StatusMask names joined by ", " (e.g. "Error, Printing")
    age_minutes: int = 0

    @property
    def spool_files(self) -> tuple[str, str]:
        return (f"{self.id:05d}.SPL", f"{self.id:05d}.SHD")


@dataclass
class WindowsHost:
    """One simulated Windows PC: services, print queue, spool folder, and what it received."""

    name: str
    services: dict[str, Service] = field(default_factory=dict)
    jobs: list[PrintJob] = field(default_factory=list)
    spool_folder: str = DEFAULT_SPOOL_FOLDER  # registry ...\Control\Print\Printers DefaultSpoolDirectory
    spool_files: list[str] = field(default_factory=list)  # file names in the spool folder
    received: list[dict[str, Any]] = field(default_factory=list)  # every payload, as decoded
    scripts_run: list[str] = field(default_factory=list)  # which l1fix script each command carried
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add_service(self, service: Service) -> None:
        self.services[service.name] = service

    def service(self, name: str) -> Service | None:
        """Exact, case-insensitive name lookup (no wildcards), like the scripts do."""
        wanted = name.casefold()
        return next((s for s in self.services.values() if s.name.casefold() == wanted), None)

    def dependents_of(self, name: str) -> list[Service]:
        """Direct and indirect dependents, in the order they must stop (deepest first)."""
        seen: set[str] = set()
        order: list[Service] = []

        def visit(target: str) -> None:
            for svc in self.services.values():
                depends = {d.casefold() for d in svc.depends_on}
                if target.casefold() in depends and svc.name not in seen:
                    seen.add(svc.name)
                    visit(svc.name)  # its own dependents stop before it
                    order.append(svc)

        visit(name)
        return order

    def add_job(self, job: PrintJob) -> None:
        """Queue a job and write its spool files."""
        self.jobs.append(job)
        self.spool_files.extend(job.spool_files)


class LabSimulator:
    """Runs l1fix's scripts against simulated Windows hosts (implements wsman.Simulator)."""

    def __init__(self, hosts: dict[str, WindowsHost], faults: dict[str, str] | None = None) -> None:
        self.hosts = hosts
        self.faults = dict(faults or {})

    def host_names(self) -> list[str]:
        return list(self.hosts)

    def fault(self, host: str) -> str | None:
        return self.faults.get(host)

    def run_command(self, host: str, command: str, arguments: list[str], stdin: bytes) -> CommandOutcome:
        """Run one command on a simulated host, as powershell.exe would answer it."""
        machine = self.hosts.get(host)
        if machine is None:
            return _failure(f"lab: there is no simulated host named {host!r}")
        if command.casefold() not in ("powershell.exe", "powershell"):
            return _failure(
                f"{command} : The term '{command}' is not recognized as the name of a cmdlet, function, "
                "script file, or operable program. (l1fix lab: this simulated host only runs "
                "powershell.exe with l1fix's scripts)"
            )
        if list(arguments) != list(powershell.ARGUMENTS):
            expected = " ".join(powershell.ARGUMENTS)
            return _failure(f"lab: this simulated host only runs `powershell.exe {expected}`")
        try:
            library_text, script_text, payload = powershell.split_stdin(stdin)
        except (ValueError, UnicodeDecodeError) as exc:
            return _failure(f"lab: unreadable stdin for the simulated powershell.exe: {exc}")
        with machine.lock:
            machine.received.append(payload)
            if library_text != packaged_library():
                return _failure(
                    f"lab: this library is not l1fix's {powershell.LIBRARY_NAME}; "
                    "the lab only simulates l1fix's own scripts"
                )
            name = _script_name(script_text)
            if name is None:
                return _failure(
                    "lab: this script is not one of l1fix's scripts; the lab only simulates l1fix's own scripts"
                )
            if name not in scripts.TWINS:
                return _failure(f"lab: the lab has no simulation of l1fix's {name}.ps1 yet")
            machine.scripts_run.append(name)
            clock = scripts.Clock()
            try:
                request = payload if isinstance(payload, dict) else {}  # like ConvertFrom-Json: no steps
                data = scripts.TWINS[name](machine, request, clock)
                code, errors = 0, ""
            except scripts.ScriptError as exc:
                data = {"error": str(exc)}
                code, errors = 1, _error_record(str(exc) + LAB_TAG)
        _tag(data, machine.name)
        stdout = json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\r\n"
        progress = PROGRESS_RECORD if name == "spooler" else ""  # Get-CimInstance loads CimCmdlets
        stderr = CLIXML_HEADER + CLIXML_OBJS + progress + errors + "</Objs>" if progress or errors else ""
        return CommandOutcome(stdout.encode("utf-8"), stderr.encode("utf-8"), code, QUERY_S + clock.seconds)


def packaged_scripts() -> dict[str, str]:
    """The PowerShell scripts shipped in l1fix.actions, by stem, read as the connection reads them.

    The shared library `_common.ps1` is not a script: see packaged_library().
    """
    folder = resources.files("l1fix.actions")
    return {
        item.name.removesuffix(".ps1"): item.read_text(encoding="utf-8")
        for item in folder.iterdir()
        if item.name.endswith(".ps1") and item.name != powershell.LIBRARY_NAME
    }


def packaged_library() -> str:
    """The shared library `_common.ps1` shipped in l1fix.actions, read as the connection reads it."""
    return (resources.files("l1fix.actions") / powershell.LIBRARY_NAME).read_text(encoding="utf-8")


def _script_name(script_text: str) -> str | None:
    return next((stem for stem, text in packaged_scripts().items() if text == script_text), None)


def _tag(data: dict[str, Any], host: str) -> None:
    """Mark every answer, and the first sentence a technician reads, as coming from a simulation."""
    data["lab"] = f"simulated Windows host {host} (l1fix lab), not a real computer"
    # One tag per answer is enough: the runner joins the steps' summaries into one line.
    first = next((data[k] for k in ("check", "fix", "verify") if isinstance(data.get(k), dict)), None)
    if first is not None and isinstance(first.get("summary"), str):
        first["summary"] += LAB_TAG
    if isinstance(data.get("error"), str):
        data["error"] += LAB_TAG


def _failure(message: str) -> CommandOutcome:
    """A command the simulated powershell.exe refuses: an error record on stderr, exit code 1."""
    stderr = CLIXML_HEADER + CLIXML_OBJS + _error_record(message) + "</Objs>"
    return CommandOutcome(b"", stderr.encode("utf-8"), 1)


def _error_record(message: str) -> str:
    """One error line in CLIXML: XML-escaped, `_x` and line ends encoded as PowerShell does."""
    text = message.replace("_x", "_x005F_x") + "\r\n"
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("\r", "_x000D_").replace("\n", "_x000A_")
    return f'<S S="Error">{text}</S>'


# --------------------------------------------------------------------------- the default fleet


def standard_services() -> list[Service]:
    """A small, realistic set of Windows 10/11 services, all healthy."""
    return [
        Service("RpcSs", "Remote Procedure Call (RPC)", can_stop=False),
        Service("Spooler", "Print Spooler", depends_on=("RpcSs",)),
        Service("Fax", "Fax", "Stopped", "Manual", depends_on=("Spooler", "RpcSs")),
        Service("BITS", "Background Intelligent Transfer Service", depends_on=("RpcSs",)),
        Service("wuauserv", "Windows Update", start_type="Manual", depends_on=("RpcSs",)),
        Service("nsi", "Network Store Interface Service", depends_on=("RpcSs",)),
        Service("Dnscache", "DNS Client", depends_on=("nsi",)),
        Service("WSearch", "Windows Search", depends_on=("RpcSs",)),
        Service("AudioEndpointBuilder", "Windows Audio Endpoint Builder"),
        Service("Audiosrv", "Windows Audio", depends_on=("AudioEndpointBuilder", "RpcSs")),
        Service("W32Time", "Windows Time", "Stopped", "Manual"),
    ]


def healthy_host(name: str) -> WindowsHost:
    """A simulated PC with every service as Windows ships it and an empty print queue."""
    host = WindowsHost(name)
    for service in standard_services():
        host.add_service(service)
    return host


def default_fleet(count: int = 50) -> dict[str, WindowsHost]:
    """PC001…PC{count}: simulated PCs, healthy but for the problems in the module docstring."""
    fleet = {f"PC{i:03d}": healthy_host(f"PC{i:03d}") for i in range(1, count + 1)}
    problems = {"PC007": _pc007, "PC013": _pc013, "PC021": _pc021, "PC030": _pc030, "PC042": _pc042}
    for name, make_problem in problems.items():
        if name in fleet:
            make_problem(fleet[name])
    return fleet


def _pc007(host: WindowsHost) -> None:
    # The Spooler crashed: its jobs are only files now, which a plain start would load again.
    host.services["Spooler"].state = "Stopped"
    host.spool_files.extend(["00003.SPL", "00003.SHD", "00004.SPL", "00004.SHD"])


def _pc013(host: WindowsHost) -> None:
    host.services["Spooler"].state = "Stopped"
    host.services["Spooler"].start_type = "Disabled"


def _pc021(host: WindowsHost) -> None:
    host.services["BITS"].state = "Stopped"
    host.services["BITS"].refuses_start = True


def _pc030(host: WindowsHost) -> None:
    host.spool_folder = "D:\\Spool"
    host.add_job(PrintJob(5, "Badge request.docx", "amartin", "Canon iR-ADV C5535", "Paused", 40))
    host.add_job(PrintJob(6, "Timesheet March.xlsx", "amartin", "Canon iR-ADV C5535", "Deleting", 38))


def _pc042(host: WindowsHost) -> None:
    printer = "HP LaserJet M507 (3rd floor)"
    host.add_job(PrintJob(12, "Q3 report.xlsx", "jdupont", printer, "Error, Printing", 95))
    host.add_job(PrintJob(13, "Invoice 2291.pdf", "mleroy", printer, "Queued", 80))
    host.add_job(PrintJob(14, "Boarding pass.pdf", "jdupont", printer, "Queued", 62))

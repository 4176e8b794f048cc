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
- PC011: a DNS client cache of 6 entries, plus one name from the hosts file.
- PC012: DNS Client (Dnscache) Stopped, its cache unreadable: dns-flush fails verify.
- PC016: jdupont (CORP\\jdupont) logged on; its policy refresh is an hour old.
- PC017: gpupdate exits with code 1 (a policy cannot be read): the refresh time does not move.
- PC019: old temporary files in jdupont's and amartin's Temp and in C:\\Windows\\Temp (one of them
  in use), a fresh one, and a junction in jdupont's Temp to his Documents, which must not be followed.
- PC023: its only old temporary files are in use: temp-clean frees nothing and fails verify.

More problem hosts come from the simulations beside this module, each listed in its docstring:
`outlook` (PC024–PC029), `printers` (PC031–PC035), `diagnostics` (PC036–PC041), `power` (PC043–PC047).

No faults by default; the lab CLI adds some (unreachable, access-denied, slow).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

from l1fix.lab import diagnostics as diagnostics_sim
from l1fix.lab import outlook as outlook_sim
from l1fix.lab import power as power_sim
from l1fix.lab import printers as printers_sim
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
# The simulations beside this module: each brings twins of its scripts and problem hosts.
SIMULATIONS = (outlook_sim, printers_sim, diagnostics_sim, power_sim)
TWINS: dict[str, scripts.Twin] = {**scripts.TWINS, **{k: v for m in SIMULATIONS for k, v in m.TWINS.items()}}
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
class Session:
    """A user logged on interactively (console or RDP): explorer.exe runs as them."""

    login: str  # DOMAIN\\user
    sid: str
    session_id: int = 1


@dataclass
class UserProfile:
    """A Win32_UserProfile: the account and its folder (C:\\Users\\<name>)."""

    login: str  # DOMAIN\\user, as the SID translates
    sid: str
    local_path: str
    special: bool = False  # system profiles (LocalSystem, services) are left out


@dataclass
class TempFile:
    """A file on the simulated disk, by full path."""

    path: str
    size: int
    age_days: float  # since its last write
    locked: bool = False  # opened by a running program: a delete fails with an IOException


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
    # DNS Client: the names in its cache (hosts file names included, as Windows preloads them),
    # the names in the hosts file, and the names the PC looks up again right after a flush.
    dns_cache: list[str] = field(default_factory=list)
    hosts_file: list[str] = field(default_factory=list)
    dns_relookups: list[str] = field(default_factory=list)
    # Group Policy: last refresh end time by scope ("Machine" or a user's SID), the users with
    # an interactive session, and the exit code gpupdate.exe gives.
    gp_last_refresh: dict[str, datetime] = field(default_factory=dict)
    sessions: list[Session] = field(default_factory=list)
    gpupdate_exit_code: int = 0
    # Disk: user profiles, files (temporary ones and others), directory junctions / symbolic
    # links (by path), and free space on the system drive C:.
    profiles: list[UserProfile] = field(default_factory=list)
    files: list[TempFile] = field(default_factory=list)
    reparse_points: list[str] = field(default_factory=list)
    free_bytes: int = 80 * 1024**3
    # State owned by the simulations beside this module (one field each).
    outlook: outlook_sim.OutlookState = field(default_factory=outlook_sim.OutlookState)
    printers: printers_sim.PrinterState = field(default_factory=printers_sim.PrinterState)
    diagnostics: diagnostics_sim.DiagnosticsState = field(default_factory=diagnostics_sim.DiagnosticsState)
    power: power_sim.PowerState = field(default_factory=power_sim.PowerState)
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
            if name not in TWINS:
                return _failure(f"lab: the lab has no simulation of l1fix's {name}.ps1 yet")
            machine.scripts_run.append(name)
            clock = scripts.Clock()
            try:
                request = payload if isinstance(payload, dict) else {}  # like ConvertFrom-Json: no steps
                data = TWINS[name](machine, request, clock)
                code, errors = 0, ""
            except scripts.ScriptError as exc:
                data = {"error": str(exc)}
                code, errors = 1, _error_record(str(exc) + LAB_TAG)
        _tag(data, machine.name)
        stdout = json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\r\n"
        # Loading a module (CimCmdlets, DnsClient…) writes a progress record; service.ps1 loads none.
        progress = "" if name == "service" else PROGRESS_RECORD
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
    host.gp_last_refresh["Machine"] = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=45)
    return host


def default_fleet(count: int = 50) -> dict[str, WindowsHost]:
    """PC001…PC{count}: simulated PCs, healthy but for the problems in the module docstring."""
    fleet = {f"PC{i:03d}": healthy_host(f"PC{i:03d}") for i in range(1, count + 1)}
    problems = {
        "PC007": _pc007,
        "PC011": _pc011,
        "PC012": _pc012,
        "PC013": _pc013,
        "PC016": _pc016,
        "PC017": _pc017,
        "PC019": _pc019,
        "PC023": _pc023,
        "PC021": _pc021,
        "PC030": _pc030,
        "PC042": _pc042,
    }
    for simulation in SIMULATIONS:
        problems.update(simulation.PROBLEMS)
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


def _pc011(host: WindowsHost) -> None:
    host.hosts_file.append("intranet.corp.local")
    host.dns_cache.extend(
        ["intranet.corp.local", "mail.corp.com", "glpi.corp.local", "www.bing.com", "login.microsoftonline.com",
         "fileserver.corp.local", "print01.corp.local"]
    )  # fmt: skip
    host.dns_relookups.append("login.microsoftonline.com")  # Outlook asks again within a second


def _pc012(host: WindowsHost) -> None:
    host.services["Dnscache"].state = "Stopped"
    host.dns_cache.extend(["mail.corp.com", "fileserver.corp.local"])


JDUPONT_SID = "S-1-5-21-3623811015-3361044348-30300820-1013"


def _pc016(host: WindowsHost) -> None:
    host.sessions.append(Session("CORP\\jdupont", JDUPONT_SID, 2))
    host.gp_last_refresh[JDUPONT_SID] = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=60)


def _pc017(host: WindowsHost) -> None:
    host.gpupdate_exit_code = 1
    host.sessions.append(Session("CORP\\mleroy", "S-1-5-21-3623811015-3361044348-30300820-1022", 1))


MB = 1024**2


def _pc019(host: WindowsHost) -> None:
    host.free_bytes = 3 * 1024**3  # 3 GB: the call was "my PC is slow, the disk is full"
    host.profiles += [
        UserProfile("CORP\\jdupont", JDUPONT_SID, "C:\\Users\\jdupont"),
        UserProfile("CORP\\amartin", "S-1-5-21-3623811015-3361044348-30300820-1031", "C:\\Users\\amartin"),
        UserProfile("NT AUTHORITY\\SYSTEM", "S-1-5-18", "C:\\Windows\\system32\\config\\systemprofile", special=True),
    ]
    jd = "C:\\Users\\jdupont\\AppData\\Local\\Temp"
    am = "C:\\Users\\amartin\\AppData\\Local\\Temp"
    host.files += [
        TempFile(jd + "\\setup_2291.exe", 180 * MB, 12),
        TempFile(jd + "\\Outlook Logging\\OUTLOOK.etl", 40 * MB, 3),
        TempFile(jd + "\\~DF1A2B.tmp", 2 * MB, 2, locked=True),
        TempFile(jd + "\\fresh.tmp", 5 * MB, 0.2),
        TempFile(am + "\\chrome_installer.log", 1 * MB, 30),
        TempFile("C:\\Windows\\Temp\\MpCmdRun.log", 3 * MB, 9),
        TempFile("C:\\Users\\jdupont\\Documents\\Thesis.docx", 4 * MB, 200),  # behind the junction
        TempFile("C:\\Windows\\System32\\ntoskrnl.exe", 11 * MB, 400),  # not in a Temp folder
    ]
    host.reparse_points.append(jd + "\\Documents link")
    host.files.append(TempFile(jd + "\\Documents link\\Thesis.docx", 4 * MB, 200))  # what the junction shows


def _pc023(host: WindowsHost) -> None:
    host.profiles.append(
        UserProfile("CORP\\mleroy", "S-1-5-21-3623811015-3361044348-30300820-1022", "C:\\Users\\mleroy")
    )
    temp = "C:\\Users\\mleroy\\AppData\\Local\\Temp"
    host.files += [
        TempFile(temp + "\\Teams.tmp", 20 * MB, 5, locked=True),
        TempFile(temp + "\\x.lock", 1024, 4, locked=True),
    ]

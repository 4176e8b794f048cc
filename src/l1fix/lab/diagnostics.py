"""What `diagnose` reads (lab only): SIMULATED Windows state, NOT a real computer.

Python twin of l1fix's `diagnose.ps1`, run by `l1fix.lab.windows.LabSimulator` (see the
`l1fix.lab.scripts` docstring for the rules every twin follows). It reads the host's existing
state (services, sessions, free space of C:, last boot from the power simulation) and the
readings below; the print queue and the policy age come from the spooler and gpupdate twins, as
diagnose asks those scripts.

Every PC is up 26 h (the power simulation's default), on 10.1.2.<n>/24 (gateway 10.1.2.1, DNS
10.0.0.5 and 10.0.0.6, all answering), in the domain corp.example.com, its clock on time, C: 237 GB,
nothing pending, no event. Problem hosts:

- PC036: C: nearly full (5 GB free, 2.1 %) → temp-clean; D: (data) has room. 8 GB of it are old
  temporary files (lbernard's Temp, C:\\Windows\\Temp) and a fresh one: temp-clean frees them and
  brings C: to 13 GB (5.5 %), which diagnose then finds fine.
- PC037: reboot pending (Windows Update, PendingFileRenameOperations) and up 45 days → reboot.
- PC038: disk failure events this week (disk 7 bad blocks ×4, disk 153 ×2, Ntfs 55) and one
  critical event → escalate (failing disk).
- PC039: the gateway 10.1.2.1 and the DNS servers behind it do not answer, the domain does not
  resolve → escalate (network), and no dns-flush: no DNS server answers.
- PC040: clock 7 min 30 s ahead of the technician's → escalate (time sync).
- PC041: several at once: C: 3 % free → temp-clean; WSearch stopped (exit code 1067) →
  service-restart --service WSearch; CorpAgent (not on the allow-list) stopped → escalate; policy
  3 days old → gpupdate; the domain does not resolve although DNS answers (a stale negative answer
  in the DNS Client cache: dns-flush makes it resolve) → dns-flush; 3 critical
  events (Kernel-Power 41) → escalate. (No session and no print job: the other simulations' fleet
  checks count those.)

Existing hosts give theirs too: PC042 (stuck jobs) → spooler-restart, PC021 (BITS stopped) →
service-restart --service BITS, PC019 (3 GB free) → temp-clean, PC007 → spooler-restart,
PC012 (Dnscache stopped) → service-restart --service Dnscache, PC043 (up 41 days) → reboot;
PC016 shows jdupont's session.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from l1fix.lab.scripts import Clock, ScriptError, Twin, as_string, param, run_steps

if TYPE_CHECKING:
    from collections.abc import Callable

    from l1fix.lab.windows import WindowsHost

GB = 1024**3
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
CRITICAL_HOURS = 24
DISK_EVENT_DAYS = 7
DISK_EVENT_IDS = {"disk": (7, 9, 11, 51, 153), "Ntfs": (55,)}  # as diagnose.ps1 names them


@dataclass
class Volume:
    """A local fixed disk other than C: (C:'s free space is the host's free_bytes)."""

    name: str
    size_bytes: int
    free_bytes: int


@dataclass
class Event:
    """An event log entry: its provider, id, level (1 = Critical) and age."""

    provider: str
    id: int
    level: int
    hours_ago: float
    message: str
    log: str = "System"


@dataclass
class DiagnosticsState:
    """A PC's health readings beyond what other simulations hold (services, sessions, free space)."""

    os: str = "Microsoft Windows 11 Pro"
    system_size_bytes: int = 237 * GB
    other_volumes: list[Volume] = field(default_factory=list)
    session_states: dict[str, str] = field(default_factory=dict)  # login → quser state (default Active)
    service_exit_codes: dict[str, int] = field(default_factory=dict)  # Win32_Service.ExitCode (default 0)
    pending_reboot: list[str] = field(default_factory=list)  # reasons, as diagnose.ps1 names them
    gateway: str = "10.1.2.1"
    dns_servers: list[str] = field(default_factory=lambda: ["10.0.0.5", "10.0.0.6"])
    unreachable: list[str] = field(default_factory=list)  # addresses that do not answer a ping
    domain: str = "corp.example.com"
    domain_resolves: bool = True  # False: the DNS servers do not answer for it
    # Names the DNS Client cache holds a stale (negative) answer for: they do not resolve while
    # they are in host.dns_cache, so dns-flush (which empties it) makes them resolve again.
    stale_names: list[str] = field(default_factory=list)
    clock_offset_s: float = 0.0  # the PC's clock minus true time
    events: list[Event] = field(default_factory=list)


def run_diagnose(host: WindowsHost, request: dict[str, Any], clock: Clock) -> dict[str, Any]:
    """diagnose.ps1: the readings; never a fix."""
    probe = bool(param(request, "network-probe", True))
    technician = as_string(param(request, "technician_utc", ""))

    def refuse(step: str) -> dict[str, Any]:
        raise ScriptError(f"diagnose only reads: it has no {step} step.")

    return run_steps(
        request,
        check=lambda: readings(host, probe, technician),
        fix=lambda: refuse("fix"),
        verify=lambda: refuse("verify"),
    )


def readings(host: WindowsHost, probe: bool, technician_utc: str) -> dict[str, Any]:
    """Get-Readings."""
    sim = host.diagnostics
    now = datetime.now(UTC)
    uptime = now - host.power.last_boot
    state = {
        "computer": host.name,
        "os": sim.os,
        "last_boot": _utc(host.power.last_boot),
        "uptime_s": int(uptime.total_seconds()),
        "sessions": [_session(s.login, s.session_id, sim.session_states.get(s.login, "Active")) for s in host.sessions],
        "volumes": _volumes(host),
        "services_not_running": [
            {
                "name": s.name,
                "display_name": s.display_name,
                "start_type": "Automatic",
                "status": s.state,
                "exit_code": sim.service_exit_codes.get(s.name, 0),
            }
            for s in host.services.values()
            if s.start_type == "Automatic" and s.state != "Running"
        ],
        "pending_reboot": list(sim.pending_reboot),
        "network": _network(host, probe),
        "clock": _clock(now + timedelta(seconds=sim.clock_offset_s), technician_utc),
        "critical_events": _critical(sim.events),
        "disk_events": _disk(sim.events),
    }
    return {"ok": True, "state": state, "summary": f"Health of {host.name} read"}


def _utc(when: datetime) -> str:
    return when.strftime(TIME_FORMAT)


def _session(login: str, session_id: int, state: str) -> dict[str, Any]:
    """A quser line: the user name without its domain; a disconnected session has no session name."""
    name = "" if state == "Disc" else ("console" if session_id == 1 else f"rdp-tcp#{session_id - 2}")
    return {"user": login.rpartition("\\")[2], "session": name, "id": session_id, "state": state}


def _volume(name: str, size: int, free: int, system: bool) -> dict[str, Any]:
    return {
        "name": name,
        "size_bytes": size,
        "free_bytes": free,
        "free_percent": round(100.0 * free / size, 1) if size > 0 else None,
        "system": system,
    }


def _volumes(host: WindowsHost) -> list[dict[str, Any]]:
    sim = host.diagnostics
    system = _volume("C:", sim.system_size_bytes, host.free_bytes, True)
    return [system, *(_volume(v.name, v.size_bytes, v.free_bytes, False) for v in sim.other_volumes)]


def _network(host: WindowsHost, probe: bool) -> dict[str, Any]:
    sim = host.diagnostics
    number = int(re.sub(r"\D", "", host.name) or 0) % 254 + 1
    adapter = {
        "name": "Intel(R) Ethernet Connection (7) I219-LM",
        "addresses": [f"10.1.2.{number}/255.255.255.0"],
        "gateways": [sim.gateway],
        "dns_servers": list(sim.dns_servers),
        "dhcp": True,
    }
    network: dict[str, Any] = {
        "adapters": [adapter],
        "gateways": [sim.gateway],
        "dns_servers": list(sim.dns_servers),
        "probed": probe,
        "reachable": [],
        "name_resolution": None,
    }
    if not probe:
        return network
    roles = [(sim.gateway, "gateway"), *((a, "dns") for a in sim.dns_servers)]
    network["reachable"] = [{"address": a, "role": role, "reachable": a not in sim.unreachable} for a, role in roles]
    cached_stale = {n.casefold() for n in sim.stale_names} & {n.casefold() for n in host.dns_cache}
    resolves = sim.domain_resolves and sim.domain.casefold() not in cached_stale
    lookup: dict[str, Any] = {"name": sim.domain, "ok": resolves, "error": None}
    if not resolves:
        lookup["error"] = "No such host is known"
    network["name_resolution"] = lookup
    return network


def _clock(host_now: datetime, technician_utc: str) -> dict[str, Any]:
    """Get-Clock: the skew only when the technician's time parses."""
    clock: dict[str, Any] = {"host_utc": _utc(host_now), "technician_utc": None, "skew_s": None}
    try:
        technician = datetime.strptime(technician_utc, TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return clock
    clock["technician_utc"] = _utc(technician)
    clock["skew_s"] = round((host_now - technician).total_seconds(), 1)
    return clock


def _critical(events: list[Event]) -> dict[str, Any]:
    found = [e for e in events if e.level == 1 and e.hours_ago < CRITICAL_HOURS and e.log in ("System", "Application")]
    return {
        "hours": CRITICAL_HOURS,
        "count": len(found),
        "sources": sorted({f"{e.provider} {e.id}" for e in found}, key=str.casefold),
    }


def _disk(events: list[Event]) -> dict[str, Any]:
    now = datetime.now(UTC)
    found = [
        e
        for e in events
        if e.log == "System" and e.id in DISK_EVENT_IDS.get(e.provider, ()) and e.hours_ago < DISK_EVENT_DAYS * 24
    ]
    return {
        "days": DISK_EVENT_DAYS,
        "count": len(found),
        "events": [
            {"provider": e.provider, "id": e.id, "time": _utc(now - timedelta(hours=e.hours_ago)), "message": e.message}
            for e in found[:10]
        ],
    }


# --------------------------------------------------------------------------- problem hosts


def _pc036(host: WindowsHost) -> None:
    from l1fix.lab.windows import MB, TempFile, UserProfile

    host.free_bytes = 5 * GB
    host.diagnostics.other_volumes.append(Volume("D:", 931 * GB, 402 * GB))
    host.profiles.append(
        UserProfile("CORP\\lbernard", "S-1-5-21-3623811015-3361044348-30300820-1044", "C:\\Users\\lbernard")
    )
    temp = "C:\\Users\\lbernard\\AppData\\Local\\Temp"
    host.files += [
        TempFile(temp + "\\vs_setup\\vs_installer.opc", 2355 * MB, 20),
        TempFile(temp + "\\Diagnostics\\EXCEL\\App1712.etl", 1126 * MB, 9),
        TempFile(temp + "\\CrashDumps\\chrome.exe.8812.dmp", 614 * MB, 4),
        TempFile(temp + "\\ZoomInstallerFull.exe", 90 * MB, 40),
        TempFile(temp + "\\fresh-download.tmp", 200 * MB, 0.1),  # today's: kept
        TempFile("C:\\Windows\\Temp\\MsiCache\\office_x64.cab", 4096 * MB, 30),
    ]


def _pc037(host: WindowsHost) -> None:
    host.power.last_boot = datetime.now(UTC).replace(microsecond=0) - timedelta(days=45, hours=3)
    host.diagnostics.pending_reboot = ["Windows Update", "PendingFileRenameOperations"]


BAD_BLOCK = "The device, \\Device\\Harddisk0\\DR0, has a bad block."
RETRIED = "The IO operation at logical block address 0x1d2f3a0 for Disk 0 (PDO name: \\Device\\00000031) was retried."


def _pc038(host: WindowsHost) -> None:
    host.diagnostics.events += [
        *(Event("disk", 7, 3, hours, BAD_BLOCK) for hours in (3, 20, 50, 120)),
        *(Event("disk", 153, 3, hours, RETRIED) for hours in (2, 30)),
        Event("Ntfs", 55, 2, 26, "A corruption was discovered in the file system structure on volume C:."),
        Event("disk", 7, 3, 400, BAD_BLOCK),  # older than a week: not counted
        Event(
            "Microsoft-Windows-Kernel-Power", 41, 1, 5, "The system has rebooted without cleanly shutting down first."
        ),
    ]


def _pc039(host: WindowsHost) -> None:
    sim = host.diagnostics
    sim.unreachable = [sim.gateway, *sim.dns_servers]
    sim.domain_resolves = False


def _pc040(host: WindowsHost) -> None:
    host.diagnostics.clock_offset_s = 450.0


def _pc041(host: WindowsHost) -> None:
    from l1fix.lab.windows import Service

    sim = host.diagnostics
    host.free_bytes = 7 * GB  # 3 % of 237 GB
    host.services["WSearch"].state = "Stopped"
    sim.service_exit_codes["WSearch"] = 1067
    host.add_service(Service("CorpAgent", "Corp inventory agent", "Stopped"))
    sim.service_exit_codes["CorpAgent"] = 1
    host.gp_last_refresh["Machine"] = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    sim.stale_names.append(sim.domain)  # a negative answer cached while a DNS server was down
    host.dns_cache.append(sim.domain)
    sim.events += [
        Event(
            "Microsoft-Windows-Kernel-Power", 41, 1, h, "The system has rebooted without cleanly shutting down first."
        )
        for h in (1, 6, 19)
    ]


TWINS: dict[str, Twin] = {"diagnose": run_diagnose}
PROBLEMS: dict[str, Callable[[WindowsHost], None]] = {
    "PC036": _pc036,
    "PC037": _pc037,
    "PC038": _pc038,
    "PC039": _pc039,
    "PC040": _pc040,
    "PC041": _pc041,
}

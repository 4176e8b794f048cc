"""Printer connections (lab only): SIMULATED Windows state, NOT a real computer.

Python twin of l1fix's `printer_reconnect.ps1`, run by `l1fix.lab.windows.LabSimulator` (see the
`l1fix.lab.scripts` docstring for the rules every twin follows).

Every simulated PC sees the print servers `print01` (alias `print01.corp.local`: queues
`HP-3rd-floor`, `Canon-2nd`, `Xerox-4th`) and `print02` (queue `Accounting`), has the HP and
Canon drivers installed (not the Xerox one), the Point and Print restriction of KB5005652 on,
and the per-machine connection `\\\\print01\\HP-3rd-floor` (Normal). Problem hosts:

- PC031: the users' network printer vanished: no per-machine connection to
  `\\\\print01\\HP-3rd-floor`; jdupont (not logged on) had his own connection to it.
- PC032: the per-machine connection `\\\\print01\\Canon-2nd` is Offline on this PC (a stale
  connection) while the server's queue is Normal: re-adding it fixes it.
- PC033: the per-machine connection `\\\\print02\\Accounting`, whose server does not answer
  on TCP 445: an error, and the connection is left in place.
- PC034: the per-machine connection `\\\\print01\\Xerox-4th` shows an Error: its driver is not
  installed (as on every PC) and Point and Print may not install it
  (RestrictDriverInstallationToAdministrators=1): nothing is changed, L2 must install the driver.
- PC035: TCP/IP printer `Zebra ZD421` still prints to port IP_10.20.30.40 (the old address);
  the printer now answers at 10.20.30.41 (its driver is installed).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from l1fix.lab.scripts import (
    SPOOLER,
    Clock,
    ScriptError,
    Twin,
    as_int,
    as_string,
    find_session,
    param,
    required_param,
    restart_dependents,
    run_steps,
    start_and_wait,
    stop_tree,
)

if TYPE_CHECKING:
    from l1fix.lab.windows import WindowsHost

SMB_PORT = 445
DEFAULT_TIMEOUT_S = 120
MACHINE = "machine"
HP_DRIVER = "HP Universal Printing PCL 6"
CANON_DRIVER = "Canon Generic Plus PCL6"
XEROX_DRIVER = "Xerox Global Print Driver PCL6"
ZEBRA_DRIVER = "ZDesigner ZD421-203dpi ZPL"
SESSION_NEEDED = (
    "a printer connection for one user is added in the user's own session. Ask the user to log on, or "
    "connect the printer for every user of this PC (without --user)."
)
JDUPONT_SID = "S-1-5-21-3623811015-3361044348-30300820-1013"


@dataclass
class ServerQueue:
    """A printer a print server shares: its share name, driver and status as the server sees it."""

    share: str
    driver: str
    status: str = "Normal"  # Get-Printer PrinterStatus: Normal | Offline | Error | PaperJam…


@dataclass
class PrintServer:
    name: str
    queues: list[ServerQueue]
    reachable: bool = True  # answers on TCP 445 (SMB) from the PC


@dataclass
class Connection:
    """A printer connection `\\\\server\\queue`, per-machine (scope "machine") or a user's (scope = SID)."""

    path: str
    scope: str = MACHINE
    local_status: str | None = None  # how this PC sees it when not as the server does (a stale Offline)


@dataclass
class TcpPrinter:
    """A local printer on a Standard TCP/IP port."""

    name: str
    driver: str
    port: str


@dataclass
class PrinterState:
    """A PC's printers: connections (per-machine and per user), TCP/IP printers, their ports and
    drivers; the print servers and TCP/IP devices as seen from the PC; the Point and Print policy."""

    servers: dict[str, PrintServer] = field(default_factory=lambda: standard_servers())  # by lower-case name
    connections: list[Connection] = field(default_factory=lambda: [Connection("\\\\print01\\HP-3rd-floor")])
    printers: list[TcpPrinter] = field(default_factory=list)
    ports: dict[str, str] = field(default_factory=dict)  # Standard TCP/IP port name -> printer host address
    drivers: set[str] = field(default_factory=lambda: {HP_DRIVER, CANON_DRIVER, "Microsoft IPP Class Driver"})
    driver_store: set[str] = field(default_factory=lambda: {HP_DRIVER, CANON_DRIVER, ZEBRA_DRIVER})  # installable
    devices: dict[str, str] = field(default_factory=dict)  # TCP/IP printer address -> status ("Normal")
    restrict_driver_installation: bool = True  # RestrictDriverInstallationToAdministrators (absent = 1)


def standard_servers() -> dict[str, PrintServer]:
    print01 = PrintServer(
        "print01",
        [ServerQueue("HP-3rd-floor", HP_DRIVER), ServerQueue("Canon-2nd", CANON_DRIVER),
         ServerQueue("Xerox-4th", XEROX_DRIVER)],
    )  # fmt: skip
    print02 = PrintServer("print02", [ServerQueue("Accounting", HP_DRIVER)])
    return {"print01": print01, "print01.corp.local": print01, "print02": print02}


# --------------------------------------------------------------------------- printer_reconnect.ps1


def run_printer_reconnect(host: WindowsHost, request: dict[str, Any], clock: Clock) -> dict[str, Any]:
    """printer_reconnect.ps1: a print server's queue (machine-wide or one user's), or a TCP/IP printer."""
    printer = required_param(request, "printer", "\\\\server\\queue, or a TCP/IP printer's address")
    driver = as_string(param(request, "driver", ""))
    path = _split(printer)
    if path is None and driver == "":
        raise ScriptError("The parameter 'driver' is missing: a TCP/IP printer is added with its driver's name.")
    settings = {
        "printer": printer,
        "path": path,
        "user": as_string(param(request, "user", "")),
        "driver": driver,
        "name": as_string(param(request, "name", printer)),
        "timeout_s": as_int(param(request, "timeout_s", DEFAULT_TIMEOUT_S)),
    }

    def fix() -> dict[str, Any]:
        return _tcp_fix(host, settings) if path is None else _connection_fix(host, settings, clock)

    return run_steps(
        request,
        check=lambda: _observation(_state(host, settings), "check"),
        fix=fix,
        verify=lambda: _observation(_state(host, settings), "verify"),
    )


def _split(printer: str) -> tuple[str, str] | None:
    """Split-PrinterPath."""
    if not printer.startswith("\\"):
        return None
    match = re.fullmatch(r'\\\\([A-Za-z0-9.-]+)\\([^"/\\\[\]:|<>+=;,?*\x00-\x1f]+)', printer)
    if match is None:
        raise ScriptError(f"'{printer}' is not a printer path of the form \\\\server\\queue.")
    return match[1], match[2]


def _spooler_running(host: WindowsHost) -> None:
    svc = host.service(SPOOLER)
    if svc is None or svc.state != "Running":
        status = "not installed" if svc is None else svc.state
        raise ScriptError(
            f"The Print Spooler is not running ({status}): run spooler-restart first, then printer-reconnect."
        )


def _connection(pc: PrinterState, path: str, scope: str) -> Connection | None:
    return next((c for c in pc.connections if c.path.casefold() == path.casefold() and c.scope == scope), None)


def _state(host: WindowsHost, settings: dict[str, Any]) -> dict[str, Any]:
    return _tcp_state(host, settings) if settings["path"] is None else _connection_state(host, settings)


def _connection_state(host: WindowsHost, settings: dict[str, Any]) -> dict[str, Any]:
    """Get-ConnectionState."""
    _spooler_running(host)
    pc = host.printers
    server, queue = settings["path"]
    state: dict[str, Any] = {
        "printer": settings["printer"],
        "kind": "connection",
        "server": server,
        "queue": queue,
        "scope": MACHINE,
        "user": None,
        "user_sid": None,
        "session_id": None,
        "server_status": None,
        "driver": None,
        "driver_installed": False,
        "point_and_print_restricted": pc.restrict_driver_installation,
        "machine_connection": False,
        "user_connection": None,
        "present": False,
        "status": "Missing",
    }
    if settings["user"] != "":
        session = find_session(host, settings["user"], SESSION_NEEDED)
        state.update(scope="user", user=session.login, session_id=session.session_id, user_sid=session.sid)
    found_server = pc.servers.get(server.casefold())
    if found_server is None or not found_server.reachable:
        raise ScriptError(
            f"Print server '{server}' does not answer on TCP port {SMB_PORT} (SMB) from this computer: nothing was "
            "changed. Check that the server is up and reachable from this PC, or escalate."
        )
    found = next((q for q in found_server.queues if q.share.casefold() == queue.casefold()), None)
    if found is None:
        names = ", ".join(q.share for q in found_server.queues) or "none"
        raise ScriptError(
            f"Print server '{server}' shares no printer named '{queue}' (it shares: {names}): check the path with "
            "the user, nothing was changed."
        )
    state["server_status"] = found.status
    state["driver"] = found.driver
    state["driver_installed"] = found.driver in pc.drivers
    machine = _connection(pc, settings["printer"], MACHINE)
    state["machine_connection"] = machine is not None
    if state["scope"] == "user":
        state["user_connection"] = _connection(pc, settings["printer"], state["user_sid"]) is not None
        state["present"] = state["user_connection"]
        if state["present"]:
            state["status"] = found.status
    else:
        state["present"] = machine is not None
        if machine is not None:
            state["status"] = machine.local_status or found.status
    return state


def _tcp_state(host: WindowsHost, settings: dict[str, Any]) -> dict[str, Any]:
    """Get-TcpState."""
    _spooler_running(host)
    pc = host.printers
    state: dict[str, Any] = {
        "printer": settings["printer"],
        "kind": "tcpip",
        "name": settings["name"],
        "driver": settings["driver"],
        "driver_installed": settings["driver"] in pc.drivers,
        "port": f"IP_{settings['printer']}",
        "printer_port": None,
        "port_address": None,
        "present": False,
        "status": "Missing",
    }
    printer = _tcp_printer(pc, settings["name"])
    if printer is not None:
        state["printer_port"] = printer.port
        address = pc.ports.get(printer.port)
        state["port_address"] = address
        state["status"] = "Error" if address is None else pc.devices.get(address, "Offline")
        state["present"] = address is not None and address.casefold() == settings["printer"].casefold()
    return state


def _tcp_printer(pc: PrinterState, name: str) -> TcpPrinter | None:
    return next((p for p in pc.printers if p.name.casefold() == name.casefold()), None)


def _where(state: dict[str, Any]) -> str:
    if state["kind"] == "tcpip":
        return f"on port {state['port']}"
    if state["scope"] == "user":
        return f"for {state['user']} (session {state['session_id']})"
    return "for every user of this computer"


def _observation(state: dict[str, Any], step: str) -> dict[str, Any]:
    """Get-Observation."""
    ok = state["present"] and state["status"] == "Normal"
    what = f"Printer {state['printer']}"
    if state["kind"] == "tcpip":
        what = f"TCP/IP printer '{state['name']}' ({state['printer']})"
    still = "still " if step == "verify" else ""
    if ok:
        summary = f"{what} is connected {_where(state)} and ready (Normal)."
    elif not state["present"] and state["kind"] == "tcpip" and state["printer_port"] is not None:
        address = state["port_address"] if state["port_address"] is not None else "a port that does not exist"
        summary = f"{what} {still}prints to port {state['printer_port']} ({address}), not to {state['printer']}."
    elif not state["present"]:
        summary = f"{what} is {still}not connected {_where(state)}."
    else:
        summary = f"{what} is connected {_where(state)} but its status is {still}{state['status']}."
    return {"ok": ok, "state": state, "summary": summary}


def _new_fix() -> dict[str, Any]:
    return {
        "summary": "",
        "removed": False,
        "added": False,
        "method": None,
        "task": None,
        "task_exit_code": None,
        "spooler_restarted": False,
        "spooler_error": None,
        "driver_installed_now": False,
        "point_and_print_blocked": False,
        "port_added": None,
    }


def _connection_fix(host: WindowsHost, settings: dict[str, Any], clock: Clock) -> dict[str, Any]:
    """Invoke-ConnectionFix."""
    state = _connection_state(host, settings)
    pc = host.printers
    fix = _new_fix()
    if not state["driver_installed"] and state["point_and_print_restricted"]:
        fix["point_and_print_blocked"] = True
        fix["summary"] = (
            f"Point and Print: driver '{state['driver']}' of {state['printer']} is not installed on this computer and "
            "the policy RestrictDriverInstallationToAdministrators (KB5005652) lets only administrators install "
            "printer drivers: nothing was changed; L2 must install that driver on this PC (from the print server's "
            "driver package), then run printer-reconnect again."
        )
        return fix
    if state["scope"] == "user":
        clock.seconds += 1.0  # the task polls once a second
        scope = state["user_sid"]
        pc.connections = [c for c in pc.connections if not (c.path.casefold() == state["printer"].casefold()
                                                               and c.scope == scope)]  # fmt: skip
        pc.connections.append(Connection(state["printer"], scope))
        pc.drivers.add(state["driver"])
        fix.update(
            method="user task",
            task=f"\\l1fix\\printer-{uuid.uuid4().hex}",
            task_exit_code=0,
            removed=state["user_connection"],
            added=True,
        )
        fix["summary"] = (
            f"Re-added {state['printer']} for {state['user']} in session {state['session_id']}, as the user: done."
        )
        return fix
    fix["method"] = "printui per-machine"
    if state["machine_connection"]:
        pc.connections.remove(_connection(pc, state["printer"], MACHINE))  # type: ignore[arg-type]
        fix["removed"] = True
    pc.connections.append(Connection(state["printer"], MACHINE))
    pc.drivers.add(state["driver"])
    fix["added"] = True
    svc = host.service(SPOOLER)
    assert svc is not None  # the state above needs it running
    running = [d for d in host.dependents_of(svc.name) if d.state == "Running"]
    stop_tree(host, svc, clock)
    fix["spooler_error"] = start_and_wait(host, svc, clock)
    fix["spooler_restarted"] = fix["spooler_error"] is None
    restart_dependents(host, running, fix["spooler_restarted"], clock)
    verb = "Removed and re-added" if fix["removed"] else "Added"
    summary = f"{verb} the per-machine connection to {state['printer']} (printui /ga)"
    if fix["spooler_restarted"]:
        summary += "; restarted the Print Spooler so every user gets it now."
    else:
        summary += f"; the Print Spooler did not start again: {fix['spooler_error']}."
    fix["summary"] = summary
    return fix


def _tcp_fix(host: WindowsHost, settings: dict[str, Any]) -> dict[str, Any]:
    """Invoke-TcpFix."""
    state = _tcp_state(host, settings)
    pc = host.printers
    fix = _new_fix()
    fix["method"] = "Standard TCP/IP port"
    if not state["driver_installed"]:
        if state["driver"] not in pc.driver_store:
            fix["summary"] = (
                f"Driver '{state['driver']}' is not installed and could not be installed from the driver store "
                f"(The specified driver does not exist in the driver store.): nothing was changed; L2 must install "
                "the driver on this PC, then run printer-reconnect again."
            )
            return fix
        pc.drivers.add(state["driver"])
        fix["driver_installed_now"] = True
    fix["port_added"] = False
    if state["port"] not in pc.ports:
        pc.ports[state["port"]] = state["printer"]
        fix["port_added"] = True
    existing = _tcp_printer(pc, state["name"])
    if existing is not None:
        pc.printers.remove(existing)
        fix["removed"] = True
    pc.printers.append(TcpPrinter(state["name"], state["driver"], state["port"]))
    fix["added"] = True
    what = f"TCP/IP printer '{state['name']}' on port {state['port']} ({state['printer']})"
    what += f" with driver '{state['driver']}'"
    summary = f"Removed and re-added {what}" if fix["removed"] else f"Added {what}"
    if fix["port_added"]:
        summary += "; created the port"
    if fix["driver_installed_now"]:
        summary += "; installed the driver from the driver store"
    fix["summary"] = summary + "."
    return fix


# --------------------------------------------------------------------------- problem hosts


def _pc031(host: WindowsHost) -> None:
    pc = host.printers
    pc.connections = [Connection("\\\\print01\\HP-3rd-floor", JDUPONT_SID)]


def _pc032(host: WindowsHost) -> None:
    host.printers.connections.append(Connection("\\\\print01\\Canon-2nd", local_status="Offline"))


def _pc033(host: WindowsHost) -> None:
    host.printers.servers["print02"].reachable = False
    host.printers.connections.append(Connection("\\\\print02\\Accounting"))


def _pc034(host: WindowsHost) -> None:
    # Its driver was removed (a clean-up): the connection shows an error; the restriction is on.
    host.printers.connections.append(Connection("\\\\print01\\Xerox-4th", local_status="Error"))


def _pc035(host: WindowsHost) -> None:
    pc = host.printers
    pc.drivers.add(ZEBRA_DRIVER)
    pc.ports["IP_10.20.30.40"] = "10.20.30.40"
    pc.printers.append(TcpPrinter("Zebra ZD421", ZEBRA_DRIVER, "IP_10.20.30.40"))
    pc.devices["10.20.30.41"] = "Normal"


TWINS: dict[str, Twin] = {"printer_reconnect": run_printer_reconnect}
PROBLEMS: dict[str, Callable[[WindowsHost], None]] = {
    "PC031": _pc031,
    "PC032": _pc032,
    "PC033": _pc033,
    "PC034": _pc034,
    "PC035": _pc035,
}

"""printer-reconnect: on Windows against the lab (simulated PCs over real WinRM), on Linux against
a real CUPS scheduler reached through a real OpenSSH server (tests/sshd.py, tests/cups.py).

Device URIs in the CUPS tests point to this machine only (file:///dev/null, socket://127.0.0.1:9).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from conftest import run_cli
from cups import Cupsd, cupsd  # noqa: F401
from l1fix.config import load_config
from l1fix.lab.printers import Connection, ServerQueue
from l1fix.lab.windows import Session, healthy_host, packaged_library, packaged_scripts
from l1fix.runner import execute
from sshd import Sshd, sshd  # noqa: F401
from test_ssh import HOST as LINUX_HOST
from test_ssh import write_home
from twins import HOSTILE_LOGINS, run_twin

HP = "\\\\print01\\HP-3rd-floor"
CANON = "\\\\print01\\Canon-2nd"
XEROX = "\\\\print01\\Xerox-4th"
ACCOUNTING = "\\\\print02\\Accounting"
JDUPONT_SID = "S-1-5-21-3623811015-3361044348-30300820-1013"
ZEBRA = {"printer": "10.20.30.41", "driver": "ZDesigner ZD421-203dpi ZPL", "name": "Zebra ZD421"}
HOSTILE_QUEUES = ["it's", "$(Stop-Computer -Force)", "`whoami`", "ünïcødé € 中文", "a & b (2)", "%PATH% 'x'"]


def run(lab: Any, target: str, **params: Any):
    return execute("printer-reconnect", target, params, config=lab.config)


def pc(lab: Any, name: str):
    return lab.simulator.hosts[name]


def connections(lab: Any, name: str) -> list[tuple[str, str, str | None]]:
    return [(c.path, c.scope, c.local_status) for c in pc(lab, name).printers.connections]


# --------------------------------------------------------------------------- Windows: connections


def test_a_vanished_printer_is_connected_for_every_user(lab: Any) -> None:
    result = run(lab, "PC031", printer=HP)
    assert result.status == "fixed", result.summary
    assert result.before["present"] is False and result.before["status"] == "Missing"
    assert result.before["scope"] == "machine" and result.before["server_status"] == "Normal"
    assert result.done["removed"] is False and result.done["added"] is True
    assert result.done["method"] == "printui per-machine" and result.done["spooler_restarted"] is True
    assert result.after["present"] is True and result.after["status"] == "Normal"
    assert result.steps["check"].startswith(f"Printer {HP} is not connected for every user of this computer.")
    assert "restarted the Print Spooler so every user gets it now" in result.steps["fix"]
    assert (HP, "machine", None) in connections(lab, "PC031")
    assert pc(lab, "PC031").services["Spooler"].state == "Running"


def test_a_connected_ready_printer_is_already_ok(lab: Any) -> None:
    result = run(lab, "PC001", printer=HP)
    assert result.status == "already-ok" and result.done is None and result.after is None
    assert "is connected for every user of this computer and ready (Normal)" in result.summary
    assert connections(lab, "PC001") == [(HP, "machine", None)]


def test_an_offline_connection_is_removed_and_added_again(lab: Any) -> None:
    result = run(lab, "PC032", printer=CANON)
    assert result.status == "fixed", result.summary
    assert result.before["status"] == "Offline" and result.before["server_status"] == "Normal"
    assert result.done["removed"] is True and result.done["added"] is True
    assert "but its status is Offline" in result.steps["check"]
    assert result.steps["fix"].startswith(f"Removed and re-added the per-machine connection to {CANON}")
    assert (CANON, "machine", None) in connections(lab, "PC032")


def test_a_printer_offline_on_its_server_stays_offline_and_fails(lab: Any) -> None:
    queue = next(q for q in pc(lab, "PC005").printers.servers["print01"].queues if q.share == "HP-3rd-floor")
    queue.status = "Offline"  # the device itself is off: re-adding the connection cannot help
    result = run(lab, "PC005", printer=HP)
    assert result.status == "failed" and result.exit_code == 1
    assert result.done["added"] is True
    assert result.steps["verify"].endswith("but its status is still Offline.")


def test_an_unreachable_print_server_is_an_error_and_nothing_is_removed(lab: Any) -> None:
    before = connections(lab, "PC033")
    result = run(lab, "PC033", printer=ACCOUNTING)
    assert result.status == "error" and result.exit_code == 1 and result.error.kind == "remote-error"
    message = result.error.message
    assert "Print server 'print02' does not answer on TCP port 445 (SMB)" in message
    assert "nothing was changed" in message and "PC033" in message
    assert connections(lab, "PC033") == before and (ACCOUNTING, "machine", None) in before
    assert pc(lab, "PC033").services["Spooler"].state == "Running"


def test_a_queue_the_server_does_not_share_is_an_error(lab: Any) -> None:
    result = run(lab, "PC002", printer="\\\\print01\\Plotter")
    assert result.status == "error" and result.error.kind == "remote-error"
    assert "shares no printer named 'Plotter' (it shares: HP-3rd-floor, Canon-2nd, Xerox-4th)" in result.error.message
    assert connections(lab, "PC002") == [(HP, "machine", None)]


def test_point_and_print_says_what_l2_must_do_and_changes_nothing(lab: Any) -> None:
    before = connections(lab, "PC034")
    result = run(lab, "PC034", printer=XEROX)
    assert result.status == "failed" and result.exit_code == 1
    assert result.before["driver"] == "Xerox Global Print Driver PCL6" and result.before["driver_installed"] is False
    assert result.before["point_and_print_restricted"] is True
    assert result.done["point_and_print_blocked"] is True and result.done["removed"] is False
    line = result.steps["fix"]
    assert "\n" not in line and "RestrictDriverInstallationToAdministrators (KB5005652)" in line
    assert "L2 must install that driver on this PC" in line and "nothing was changed" in line
    assert connections(lab, "PC034") == before  # the connection was not removed


def test_without_the_point_and_print_restriction_the_driver_comes_with_the_connection(lab: Any) -> None:
    pc(lab, "PC034").printers.restrict_driver_installation = False
    result = run(lab, "PC034", printer=XEROX)
    assert result.status == "fixed", result.summary
    assert "Xerox Global Print Driver PCL6" in pc(lab, "PC034").printers.drivers


def test_with_the_spooler_stopped_it_says_to_restart_it_first(lab: Any) -> None:
    result = run(lab, "PC007", printer=HP)
    assert result.status == "error" and "The Print Spooler is not running (Stopped): run spooler-restart first" in (
        result.error.message
    )


def test_dry_run_changes_nothing(lab: Any) -> None:
    result = execute("printer-reconnect", "PC031", {"printer": HP}, config=lab.config, dry_run=True)
    assert result.status == "skipped" and result.summary.endswith("(dry run: nothing changed)")
    assert connections(lab, "PC031") == [(HP, JDUPONT_SID, None)]


# --------------------------------------------------------------------------- Windows: one user


def test_for_a_logged_on_user_it_runs_in_their_session(lab: Any) -> None:
    host = pc(lab, "PC031")
    host.sessions.append(Session("CORP\\jdupont", JDUPONT_SID, 2))
    host.printers.connections.clear()  # his own connection vanished too
    result = run(lab, "PC031", printer=HP, user="jdupont")
    assert result.status == "fixed", result.summary
    assert result.before["scope"] == "user" and result.before["user_sid"] == JDUPONT_SID
    assert result.before["user_connection"] is False and result.before["session_id"] == 2
    assert result.done["method"] == "user task" and result.done["task_exit_code"] == 0
    assert re.fullmatch(r"\\l1fix\\printer-[0-9a-f]{32}", result.done["task"])
    assert result.after["user_connection"] is True and result.after["status"] == "Normal"
    assert "for CORP\\jdupont in session 2, as the user" in result.summary
    assert connections(lab, "PC031") == [(HP, JDUPONT_SID, None)]  # his, not every user's
    assert run(lab, "PC031", printer=HP, user="CORP\\jdupont").status == "already-ok"


def test_for_a_user_who_is_not_logged_on_it_is_an_error(lab: Any) -> None:
    result = run(lab, "PC031", printer=HP, user="jdupont")
    assert result.status == "error" and result.exit_code == 1
    assert "User 'jdupont' is not logged on to this computer (logged on: nobody)" in result.error.message
    assert "connect the printer for every user of this PC (without --user)" in result.error.message
    assert connections(lab, "PC031") == [(HP, JDUPONT_SID, None)]


@pytest.mark.parametrize("login", HOSTILE_LOGINS)
def test_hostile_logins_reach_the_host_unchanged(lab: Any, login: str) -> None:
    result = run(lab, "PC031", printer=HP, user=login)
    assert result.status == "error" and f"User '{login}' is not logged on" in result.error.message
    assert [p["params"]["user"] for p in pc(lab, "PC031").received] == [login]


# --------------------------------------------------------------------------- Windows: TCP/IP


def test_a_tcpip_printer_on_a_wrong_port_is_moved_to_its_address(lab: Any) -> None:
    result = run(lab, "PC035", **ZEBRA)
    assert result.status == "fixed", result.summary
    assert result.before["printer_port"] == "IP_10.20.30.40" and result.before["port_address"] == "10.20.30.40"
    assert "prints to port IP_10.20.30.40 (10.20.30.40), not to 10.20.30.41" in result.steps["check"]
    assert result.done["port_added"] is True and result.done["removed"] is True
    assert result.after["printer_port"] == "IP_10.20.30.41" and result.after["status"] == "Normal"
    printers = pc(lab, "PC035").printers
    assert [(p.name, p.port) for p in printers.printers] == [("Zebra ZD421", "IP_10.20.30.41")]
    assert printers.ports["IP_10.20.30.41"] == "10.20.30.41"
    assert run(lab, "PC035", **ZEBRA).status == "already-ok"


def test_a_tcpip_printer_whose_driver_is_nowhere_changes_nothing(lab: Any) -> None:
    result = run(lab, "PC035", printer="10.20.30.41", driver="Acme Label 9000", name="Zebra ZD421")
    assert result.status == "failed"
    assert "could not be installed from the driver store" in result.steps["fix"]
    assert [p.port for p in pc(lab, "PC035").printers.printers] == ["IP_10.20.30.40"]


def test_a_missing_tcpip_printer_is_added_with_its_driver_from_the_store(lab: Any) -> None:
    pc(lab, "PC003").printers.devices["labels.corp.local"] = "Normal"
    result = run(lab, "PC003", printer="labels.corp.local", driver="ZDesigner ZD421-203dpi ZPL")
    assert result.status == "fixed", result.summary
    assert result.done["driver_installed_now"] is True and result.done["removed"] is False
    assert result.after["name"] == "labels.corp.local"  # the address, when no --name


@pytest.mark.parametrize("name", HOSTILE_QUEUES + ['say "hi"', "x" * 200])
def test_hostile_tcpip_printer_names_and_drivers_are_data(lab: Any, name: str) -> None:
    host = pc(lab, "PC006")
    host.printers.devices["10.9.8.7"] = "Normal"
    host.printers.driver_store.add(name)
    result = run(lab, "PC006", printer="10.9.8.7", driver=name, name=name)
    assert result.status == "fixed", result.summary
    assert [(p.name, p.driver, p.port) for p in host.printers.printers] == [(name, name, "IP_10.9.8.7")]


# --------------------------------------------------------------------------- Windows: bad input


@pytest.mark.parametrize(
    "printer",
    [
        "\\\\print01",
        "\\\\print01\\",
        "\\\\print 01\\HP",
        "\\\\print01\\HP\\extra",
        "\\\\print01\\HP;calc",
        '\\\\print01\\HP"x',
        "\\\\-print01\\HP",
        "\\\\print01\\" + "x" * 81,
        "//print01/HP",
        "\\\\print01\\HP\n",
        "300.1.2.3",
        "printer one",
    ],
)
def test_a_malformed_printer_is_bad_input_and_nothing_is_sent(lab: Any, printer: str) -> None:
    result = run(lab, "PC031", printer=printer, driver="X")
    assert result.status == "error" and result.error.kind == "bad-input" and result.exit_code == 2
    assert "\n" not in result.error.message
    assert pc(lab, "PC031").received == []


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"printer": "10.1.2.3"}, "--driver is required for a TCP/IP printer"),
        ({"printer": "10.1.2.3", "driver": "X", "user": "jdupont"}, "--user applies to \\\\server\\queue"),
        ({"printer": HP, "driver": "X"}, "--driver and --name apply to TCP/IP printers only"),
        ({"printer": HP, "uri": "file:///dev/null"}, "--uri applies to CUPS queues"),
    ],
)
def test_parameters_that_do_not_fit_are_bad_input(lab: Any, params: dict[str, str], says: str) -> None:
    result = run(lab, "PC031", **params)
    assert result.error.kind == "bad-input" and says in result.error.message
    assert pc(lab, "PC031").received == []


@pytest.mark.parametrize("queue", HOSTILE_QUEUES)
def test_hostile_queue_names_reach_the_host_as_data(lab: Any, queue: str) -> None:
    result = run(lab, "PC031", printer=f"\\\\print01\\{queue}")
    assert result.status == "error" and f"shares no printer named '{queue}'" in result.error.message
    host = pc(lab, "PC031")
    assert [p["params"]["printer"] for p in host.received] == [f"\\\\print01\\{queue}"]
    assert host.scripts_run == ["printer_reconnect"]  # identified by exact match: the script text was untouched


@pytest.mark.parametrize("queue", HOSTILE_QUEUES)
def test_a_hostile_but_shared_queue_is_connected_by_its_exact_name(lab: Any, queue: str) -> None:
    host = pc(lab, "PC004")
    host.printers.servers["print01"].queues.append(ServerQueue(queue, "HP Universal Printing PCL 6"))
    result = run(lab, "PC004", printer=f"\\\\print01\\{queue}")
    assert result.status == "fixed", result.summary
    assert (f"\\\\print01\\{queue}", "machine", None) in connections(lab, "PC004")


# --------------------------------------------------------------------------- Windows: CLI, fleet, twin


def test_through_the_cli(lab: Any) -> None:
    out = run_cli("--profile", "lab", "printer-reconnect", "PC031", "--printer", HP, "--json", home=lab.home)
    assert out.code == 0, out.stderr
    assert out.json()["status"] == "fixed" and out.json()["params"]["printer"] == HP

    out = run_cli("--profile", "lab", "printer-reconnect", "PC031", "--printer", "\\\\print01", home=lab.home)
    lines = out.stderr.strip().splitlines()
    assert out.code == 2 and len(lines) == 1, out.stderr
    assert "expected \\\\server\\queue" in lines[0]

    out = run_cli("--profile", "lab", "printer-reconnect", "PC033", "--printer", ACCOUNTING, home=lab.home)
    assert out.code == 1 and "does not answer on TCP port 445" in out.stderr


def test_problem_hosts_leave_the_others_healthy(lab: Any) -> None:
    sim = lab.simulator
    not_ok = []
    errors = []
    for name in sim.hosts:
        data = run_twin((sim, name), "printer_reconnect", {"printer": HP}, ["check"])
        if "error" in data:
            errors.append(name)
        elif not data["check"]["ok"]:
            not_ok.append(name)
    assert not_ok == ["PC031"]
    assert errors == ["PC007", "PC013"]  # their Spooler is stopped


@pytest.mark.parametrize(
    "params",
    [{"printer": CANON}, {"printer": HP, "user": "jdupont"}, ZEBRA],
    ids=["machine", "user", "tcpip"],
)
def test_twin_keys_appear_in_the_powershell_script(params: dict[str, str]) -> None:
    """A cheap guard against drift: every key the twin returns is written in the .ps1."""
    host = healthy_host("PC100")
    host.sessions.append(Session("CORP\\jdupont", JDUPONT_SID, 2))
    host.printers.connections.append(Connection(CANON, local_status="Offline"))
    data = run_twin(host, "printer_reconnect", params)
    keys = set(data["check"]) | set(data["check"]["state"]) | set(data["fix"]) | set(data["verify"]["state"])
    text = packaged_scripts()["printer_reconnect"] + packaged_library()
    missing = [k for k in sorted(keys) if not re.search(rf"\b{k}\b\s*=|\['{k}'\]", text)]
    assert missing == []


# --------------------------------------------------------------------------- Linux: CUPS over SSH


@pytest.fixture
def cups_host(sshd: Sshd, cupsd: Cupsd, home: Path) -> Cupsd:  # noqa: F811
    """An empty test scheduler, and LNX01 in the inventory: the test sshd, whose sessions reach it."""
    cupsd.reset()
    write_home(home, sshd)
    return cupsd


def device_of(cups: Cupsd, queue: str) -> str:
    """The queue's device URI as lpstat -v shows it ("///dev/null" for file:///dev/null)."""
    shown = cups.run("lpstat", "-v", queue).stdout.strip().split(": ", 1)[1]
    return "file:" + shown if shown.startswith("/") else shown


def run_linux(**params: Any):
    return execute("printer-reconnect", LINUX_HOST, params, config=load_config())


def test_a_deleted_queue_is_restored(cups_host: Cupsd) -> None:
    cups_host.add_queue("office")
    cups_host.run("lpadmin", "-x", "office")
    assert cups_host.queues() == {}
    result = run_linux(printer="office", uri="file:///dev/null")
    assert result.status == "fixed", (result.error, result.summary)
    assert result.before["exists"] is False and result.before["server"] == cups_host.server
    assert result.done["set"] is True and result.done["existed"] is False
    assert result.steps["fix"].startswith("Added CUPS queue office with file:///dev/null, without a driver")
    assert result.after == {**result.after, "exists": True, "uri": "file:///dev/null", "enabled": True}
    assert result.steps["check"] == "CUPS queue office does not exist."
    assert result.steps["verify"] == "CUPS queue office (file:///dev/null) is enabled and accepts jobs."
    assert cups_host.queues() == {"office": {"enabled": True, "accepting": True}}


def test_a_paused_queue_is_set_right_in_place_keeping_its_jobs(cups_host: Cupsd) -> None:
    cups_host.add_queue("office", enabled=False, reason="Paper jam")
    cups_host.submit("office", hold=True)
    cups_host.run("cupsreject", "office")
    result = run_linux(printer="office")
    assert result.status == "fixed", (result.error, result.summary)
    assert result.before["enabled"] is False and result.before["accepting"] is False
    assert result.before["pending_jobs"] == 1
    assert result.steps["check"] == "CUPS queue office (file:///dev/null) is disabled, does not accept jobs."
    assert result.done["existed"] is True and result.done["uri"] == "file:///dev/null"
    assert result.steps["fix"] == (
        "CUPS queue office keeps file:///dev/null, its driver and its jobs. Enabled it and made it accept jobs."
    )
    assert cups_host.queues() == {"office": {"enabled": True, "accepting": True}}
    assert len(cups_host.jobs()) == 1  # the held job is still there, for its owner to release or cancel


def test_a_healthy_queue_is_already_ok(cups_host: Cupsd) -> None:
    cups_host.add_queue("office")
    result = run_linux(printer="office")
    assert result.status == "already-ok" and result.done is None
    assert result.before["pending_jobs"] == 0


def test_a_new_uri_moves_the_queue(cups_host: Cupsd) -> None:
    cups_host.run("lpadmin", "-p", "office", "-E", "-v", "socket://127.0.0.1:9")
    result = run_linux(printer="office", uri="file:///dev/null")
    assert result.status == "fixed", result.summary
    assert "prints to socket://127.0.0.1:9, not file:///dev/null" in result.steps["check"]
    assert "was socket://127.0.0.1:9" in result.steps["fix"]
    assert device_of(cups_host, "office") == "file:///dev/null"


def test_a_uri_the_scheduler_refuses_changes_nothing_and_fails(cups_host: Cupsd) -> None:
    cups_host.add_queue("office")
    result = run_linux(printer="office", uri="nosuchbackend://127.0.0.1/x")
    assert result.status == "failed" and result.exit_code == 1
    assert result.done["set"] is False and result.done["error"]
    assert "The scheduler refused nosuchbackend://127.0.0.1/x" in result.steps["fix"]
    assert "nothing was changed" in result.steps["fix"]
    assert device_of(cups_host, "office") == "file:///dev/null"


def test_an_unknown_queue_without_uri_is_bad_input(cups_host: Cupsd, home: Path) -> None:
    out = run_cli("printer-reconnect", LINUX_HOST, "--printer", "ghost", "--json", home=home)
    assert out.code == 2 and out.json()["error"]["kind"] == "bad-input"
    assert (
        "CUPS queue 'ghost' does not exist on this host: give its device URI with --uri"
        in (out.json()["error"]["message"])
    )
    assert cups_host.queues() == {}


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"printer": "office", "uri": "not a uri"}, "not a device URI"),
        ({"printer": "office", "uri": "file:///dev/null'; rm -rf /"}, "not a device URI"),
        ({"printer": "office", "uri": "-x"}, "not a device URI"),
        ({"printer": "a/b", "uri": "file:///dev/null"}, "printer='a/b' is invalid"),
        ({"printer": "-x", "uri": "file:///dev/null"}, "printer='-x' is invalid"),
        ({"printer": "\\\\print01\\HP"}, "is not a CUPS queue name"),
        ({"printer": "it's", "uri": "file:///dev/null"}, "is invalid"),
        ({"printer": "a,b", "uri": "file:///dev/null"}, "is invalid"),
        ({"printer": "office", "user": "jdupont"}, "--user apply to Windows printers only"),
    ],
)
def test_malformed_uri_or_queue_is_bad_input(cups_host: Cupsd, params: dict[str, str], says: str) -> None:
    result = run_linux(**params)
    assert result.status == "error" and result.error.kind == "bad-input" and result.exit_code == 2
    assert says in result.error.message
    assert result.output == ""  # nothing ran on the host
    assert cups_host.queues() == {}


def test_a_scheduler_that_does_not_answer_is_a_clear_error(cups_host: Cupsd, home: Path) -> None:
    cups_host.stop()
    try:
        out = run_cli("printer-reconnect", LINUX_HOST, "--printer", "office", "--json", home=home)
    finally:
        cups_host.start()
    assert out.code == 1 and out.json()["status"] == "error"
    assert (
        f"The CUPS scheduler ({cups_host.server}) does not answer: nothing was changed"
        in (out.json()["error"]["message"])
    )


@pytest.mark.parametrize("queue", ["$(id)", "`id`", "x;y&z|w", "ünï", "%s%n", "*"])
def test_hostile_queue_names_are_data(cups_host: Cupsd, queue: str) -> None:
    result = run_linux(printer=queue, uri="file:///dev/null")
    assert result.status == "fixed", (result.error, result.summary)
    assert result.after["queue"] == queue
    assert cups_host.queues() == {queue: {"enabled": True, "accepting": True}}

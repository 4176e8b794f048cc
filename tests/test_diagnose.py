"""diagnose: read-only health check with suggestions, on the Windows lab (WinRM) and on a real
OpenSSH + CUPS host on loopback (SSH); the suggestion rules on their own; the script's network
probe with fake tools (no packet ever leaves loopback: the SSH runs pass --no-network-probe).
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest

from conftest import run_cli
from cups import Cupsd, cupsd  # noqa: F401
from l1fix.action import registry
from l1fix.actions.diagnose import Diagnose, describe, suggest
from l1fix.config import load_config
from l1fix.lab import windows
from l1fix.lab.scripts import ScriptError
from l1fix.lab.windows import Session, healthy_host, packaged_scripts
from l1fix.runner import execute
from l1fix.targets import shell
from sshd import Sshd, sshd  # noqa: F401
from test_ssh import HOST, stuck_printer, write_home
from twins import run_twin

SH_SCRIPT = Path(__file__).parents[1] / "src" / "l1fix" / "actions" / "diagnose.sh"
HOSTILE = ["it's", 'say "hi"', "$(Remove-Item C:\\ -Recurse)", "`whoami`", "a; Stop-Computer -Force", "ünïcødé"]
ALLOWED = ("Spooler", "wuauserv", "BITS", "Dnscache", "WSearch", "AudioSrv")


def run(lab: Any, target: str, **options: Any):
    params = options.pop("params", None)
    return execute("diagnose", target, params, config=options.pop("config", lab.config), **options)


def pairs(result: Any) -> set[tuple[str, str | None]]:
    return {(s["kind"], s["action"]) for s in result.before["suggestions"]}


def escalations(result: Any) -> list[str]:
    return [s["reason"] for s in result.before["suggestions"] if s["kind"] == "escalate"]


def reboot_suggestion() -> tuple[str, str | None]:
    """`reboot` is suggested once that fix exists for Windows; until then the finding is escalated."""
    reboot = registry().get("reboot")
    return ("fix", "reboot") if reboot is not None and "windows" in reboot.target_kinds else ("escalate", None)


def snapshot(host: Any) -> dict[str, Any]:
    """Everything a run could change on a simulated PC (not what it received)."""
    skip = {"received", "scripts_run", "lock"}
    return {f.name: copy.deepcopy(getattr(host, f.name)) for f in fields(host) if f.name not in skip}


# --------------------------------------------------------------------------- Windows (lab)


def test_a_healthy_pc_is_already_ok_and_only_checks_are_sent(lab: Any) -> None:
    result = run(lab, "PC001")
    assert result.status == "already-ok" and result.exit_code == 0, result.summary
    assert result.before["suggestions"] == [] and result.done is None and result.after is None
    assert result.summary.startswith("Health of PC001 read [l1fix lab: simulated host]: up 1 d 2 h")
    assert result.summary.endswith("Nothing to fix.")
    state = result.before
    assert [v["name"] for v in state["volumes"]] == ["C:"] and state["volumes"][0]["system"] is True
    assert state["network"]["probed"] is True and all(p["reachable"] for p in state["network"]["reachable"])
    assert state["spooler"]["ok"] is True and state["policy"]["state"]["computer_last_refresh"]
    assert abs(state["clock"]["off_by_s"]) < 5
    pc = lab.simulator.hosts["PC001"]
    assert pc.scripts_run == ["diagnose", "spooler", "gpupdate"]
    assert [p["steps"] for p in pc.received] == [["check"]] * 3
    # The technician's clock travels in the diagnose payload only; the other checks get no params.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", pc.received[0]["params"]["technician_utc"])
    assert pc.received[0]["params"]["network-probe"] is True
    assert [p["params"] for p in pc.received[1:]] == [{}, {}]


EXPECTED = {
    "PC036": {("fix", "temp-clean")},
    "PC037": {reboot_suggestion()},
    "PC038": {("escalate", None)},
    "PC039": {("escalate", None)},
    "PC040": {("escalate", None)},
    "PC041": {
        ("fix", "temp-clean"),
        ("fix", "service-restart"),
        ("fix", "dns-flush"),
        ("fix", "gpupdate"),
        ("escalate", None),
    },
    "PC042": {("fix", "spooler-restart")},
    "PC021": {("fix", "service-restart")},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_problem_hosts_get_the_right_suggestions(lab: Any, name: str) -> None:
    pc = lab.simulator.hosts[name]
    before = snapshot(pc)
    result = run(lab, name)
    assert result.status == "findings" and result.exit_code == 6 and result.error is None, result.summary
    assert pairs(result) == EXPECTED[name]
    assert snapshot(pc) == before  # read-only: nothing changed on the PC
    assert all(p["steps"] == ["check"] for p in pc.received)
    for s in result.before["suggestions"]:
        if s["kind"] == "fix":
            assert s["command"].startswith(f"l1fix {s['action']} {name}") and s["command"] in result.summary
            registry()[s["action"]].validate_params(s["params"])  # the suggested command is a valid one


def test_the_reasons_say_why(lab: Any) -> None:
    pc036, pc038, pc039, pc040 = (run(lab, n) for n in ("PC036", "PC038", "PC039", "PC040"))
    assert pc036.before["suggestions"][0]["reason"] == "C: 2.1% free (5.0 GB)"
    [disk] = escalations(pc038)
    assert disk.startswith("7 disk error events in 7 days (Ntfs 55, disk 153, disk 7)")  # not the 8th, 17 days old
    assert pc038.before["critical_events"]["count"] == 1  # one: mentioned, not escalated
    assert "1 critical event in 24 h" in pc038.summary
    assert escalations(pc039) == [
        "gateway 10.1.2.1 does not answer (network, cabling, Wi-Fi)",
        "no DNS server answers: 10.0.0.5, 10.0.0.6",
    ]  # and no dns-flush: a flush cannot help when no DNS server answers
    [reboot] = run(lab, "PC037").before["suggestions"]
    assert reboot["reason"] == "reboot pending (Windows Update, PendingFileRenameOperations); up for 45 days"
    if reboot["kind"] == "fix":
        assert reboot["command"].startswith("l1fix reboot PC037 --notice-minutes 15 --message 'Your computer")
    [clock] = escalations(pc040)
    assert clock.startswith("clock 7 min") and "ahead of the technician's" in clock
    assert 440 <= pc040.before["clock"]["off_by_s"] <= 451


def test_several_problems_at_once(lab: Any) -> None:
    result = run(lab, "PC041")
    fixes = {s["action"]: s for s in result.before["suggestions"] if s["kind"] == "fix"}
    assert fixes["service-restart"]["params"] == {"service": "WSearch"}
    assert fixes["service-restart"]["command"] == "l1fix service-restart PC041 --service WSearch"
    assert fixes["gpupdate"]["reason"].startswith("computer policy last refreshed 3 days ago")
    assert escalations(result) == [
        "CorpAgent (Corp inventory agent) is Automatic but Stopped: not on the allow-list (allowed_services)",
        "3 critical events in 24 h (Microsoft-Windows-Kernel-Power 41)",
    ]
    assert "nobody logged on" in result.summary
    assert "Suggested: l1fix temp-clean PC041 (C: 3.0% free (7.0 GB));" in result.summary
    assert "Escalate to L2: CorpAgent" in result.summary


def test_sessions_console_rdp_and_disconnected(lab: Any) -> None:
    result = run(lab, "PC016")
    assert result.before["sessions"] == [{"user": "jdupont", "session": "rdp-tcp#0", "id": 2, "state": "Active"}]
    assert "logged on: jdupont;" in result.summary
    pc = healthy_host("PC100")
    pc.sessions += [
        Session("CORP\\amartin", "S-1-5-21-1-2-3-1031", 1),
        Session("CORP\\mleroy", "S-1-5-21-1-2-3-1022", 3),
    ]
    pc.diagnostics.session_states["CORP\\mleroy"] = "Disc"
    sessions = run_twin(pc, "diagnose", steps=["check"])["check"]["state"]["sessions"]
    assert [(s["user"], s["session"], s["state"]) for s in sessions] == [
        ("amartin", "console", "Active"),
        ("mleroy", "", "Disc"),
    ]
    assert "logged on: amartin, mleroy (Disc)" in describe({"sessions": sessions})


def test_a_service_off_the_allow_list_is_escalated(lab: Any) -> None:
    config = replace(lab.config, allowed_services=("Spooler",))
    result = run(lab, "PC021", config=config)
    assert pairs(result) == {("escalate", None)}
    assert escalations(result) == [
        "BITS (Background Intelligent Transfer Service) is Automatic but Stopped: not on the allow-list "
        "(allowed_services)"
    ]


def test_without_the_network_probe_nothing_is_pinged(lab: Any) -> None:
    result = run(lab, "PC039", params={"network-probe": False})
    assert result.status == "already-ok", result.summary
    assert result.before["network"]["probed"] is False and result.before["network"]["reachable"] == []
    assert "network not probed" in result.summary
    assert lab.simulator.hosts["PC039"].received[0]["params"]["network-probe"] is False


def test_dry_run_is_the_same_check_only_run(lab: Any) -> None:
    result = run(lab, "PC042", dry_run=True)
    assert result.status == "findings" and result.exit_code == 6
    assert pairs(result) == {("fix", "spooler-restart")}
    assert len(lab.simulator.hosts["PC042"].jobs) == 3


def test_a_pc_without_a_spooler_is_diagnosed_without_one(lab: Any) -> None:
    pc = lab.simulator.hosts["PC002"]
    del pc.services["Fax"], pc.services["Spooler"]
    result = run(lab, "PC002")
    assert result.status == "already-ok", result.summary
    assert result.before["spooler"]["state"] is None and "not installed" in result.before["spooler"]["summary"]
    assert "no print spooler" in result.summary


@pytest.mark.parametrize(("name", "kind", "code"), [("PC050", "unreachable", 3), ("PC049", "auth", 3)])
def test_faulty_hosts_are_errors(lab: Any, name: str, kind: str, code: int) -> None:
    result = run(lab, name)
    assert result.status == "error" and result.error.kind == kind and result.exit_code == code
    assert name in result.error.message


def test_a_script_error_is_a_remote_error(lab: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(host: Any, request: dict, clock: Any) -> dict:
        raise ScriptError('Get-CimInstance : Invalid class "Win32_OperatingSystem"')

    monkeypatch.setitem(windows.TWINS, "diagnose", broken)
    result = run(lab, "PC001")
    assert result.status == "error" and result.error.kind == "remote-error" and result.exit_code == 1
    assert "Invalid class" in result.error.message and "PC001" in result.error.message


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_parameter_values_are_refused_before_anything_is_sent(lab: Any, value: str) -> None:
    result = run(lab, "PC001", params={"network-probe": value})
    assert result.status == "error" and result.error.kind == "bad-input" and result.exit_code == 2
    assert lab.simulator.hosts["PC001"].received == []


def test_the_technicians_time_cannot_be_given(lab: Any) -> None:
    result = run(lab, "PC040", params={"technician_utc": "2020-01-01T00:00:00Z"})
    assert result.status == "error" and "unknown parameter 'technician_utc'" in result.error.message
    assert lab.simulator.hosts["PC040"].received == []


@pytest.mark.parametrize("value", [*HOSTILE, "2026-13-45T99:99:99Z", ""])
def test_a_hostile_technician_time_is_data_and_gives_no_skew(value: str) -> None:
    data = run_twin(healthy_host("PC100"), "diagnose", {"technician_utc": value}, ["check"])
    assert data["check"]["state"]["clock"]["skew_s"] is None
    assert data["check"]["state"]["clock"]["technician_utc"] is None


def test_the_script_refuses_a_fix_step() -> None:
    pc = healthy_host("PC100")
    data = run_twin(pc, "diagnose", steps=["fix"])
    assert data["error"].startswith("diagnose only reads: it has no fix step.")
    with pytest.raises(NotImplementedError):
        Diagnose().fix(None, None)  # type: ignore[arg-type]


def test_the_twins_keys_appear_in_the_powershell_script() -> None:
    """A cheap guard against drift: every key the twin returns is written in diagnose.ps1."""
    from l1fix.lab.diagnostics import _pc038, _pc041

    pc = healthy_host("PC041")
    _pc041(pc)
    _pc038(pc)
    pc.sessions.append(Session("CORP\\jdupont", "S-1-5-21-1-2-3-1013", 1))
    state = run_twin(pc, "diagnose", {"technician_utc": "2026-01-01T00:00:00Z"}, ["check"])["check"]["state"]
    keys = set(state)
    for value in state.values():
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, dict):
                keys |= set(item)
                for inner in item.values():
                    for sub in inner if isinstance(inner, list) else [inner]:
                        keys |= set(sub) if isinstance(sub, dict) else set()
    text = packaged_scripts()["diagnose"]
    missing = [k for k in sorted(keys) if not re.search(rf"\b{k}\b\s*=|\['{k}'\]|\.{k}\s*=", text)]
    assert missing == []


def test_the_cli_prints_json_and_exits_6_on_findings(lab: Any) -> None:
    out = run_cli("--profile", "lab", "diagnose", "PC041", "--json", home=lab.home)
    assert out.code == 6, out.stderr
    data = out.json()
    assert data["status"] == "findings" and data["error"] is None and data["after"] is None
    commands = [s["command"] for s in data["before"]["suggestions"] if s["kind"] == "fix"]
    assert "l1fix temp-clean PC041" in commands and "l1fix service-restart PC041 --service WSearch" in commands
    assert list(data["steps"]) == ["check"] and "Suggested:" in data["steps"]["check"]

    ok = run_cli("--profile", "lab", "diagnose", "PC001", "--no-network-probe", "--json", home=lab.home)
    assert ok.code == 0 and ok.json()["status"] == "already-ok"
    assert ok.json()["params"] == {"network-probe": False}

    human = run_cli("--profile", "lab", "diagnose", "PC042", home=lab.home)
    assert human.code == 6 and human.stdout.startswith("PC042: findings — Health of PC042 read")
    assert "Suggested: l1fix spooler-restart PC042 (3 stuck print jobs)." in human.stdout


def test_the_followup_lists_the_suggestions(lab: Any) -> None:
    out = run_cli("--profile", "lab", "diagnose", "PC041", "--ticket", "1234", "--json", home=lab.home)
    assert out.code == 6 and out.json()["followup"]["state"] == "sent", out.stderr
    [followup] = [f for f in lab.glpi.items.get("ITILFollowup", {}).values() if f["items_id"] == 1234]
    content = followup["content"]
    for expected in (
        "diagnose sur PC041",
        "diagnostic : problèmes trouvés, voir les suggestions",
        "Suggestions du diagnostic",
        "À lancer",
        "l1fix temp-clean PC041",
        "l1fix service-restart PC041 --service WSearch",
        "À escalader au niveau 2",
        "CorpAgent (Corp inventory agent) is Automatic but Stopped",
    ):
        assert expected in content


# --------------------------------------------------------------------------- the rules alone


def readings(**overrides: Any) -> dict[str, Any]:
    """A healthy state in the shape both scripts return, with the checks diagnose.py adds."""
    state: dict[str, Any] = {
        "uptime_s": 3600,
        "sessions": [],
        "volumes": [{"name": "/", "free_bytes": 50 * 1024**3, "free_percent": 40.0, "system": True}],
        "services_not_running": [],
        "pending_reboot": [],
        "network": {
            "adapters": [{"addresses": ["10.0.0.2/24"]}],
            "gateways": ["10.0.0.1"],
            "dns_servers": ["10.0.0.1"],
        },
        "clock": {"host_utc": "2026-01-10T12:00:00Z", "off_by_s": 0.0},
        "critical_events": {"count": 0},
        "disk_events": {"count": 0},
        "spooler": {"ok": True, "state": {"scheduler": "running"}},
        "policy": None,
    }
    state.update(overrides)
    return state


def test_rules_healthy_state_suggests_nothing() -> None:
    assert suggest(readings(), "LNX01", "linux", ALLOWED) == []


def test_rules_only_the_system_volume_is_for_temp_clean() -> None:
    volumes = [
        {"name": "C:", "free_bytes": 4 * 1024**3, "free_percent": 4.9, "system": True},
        {"name": "D:", "free_bytes": 1024**3, "free_percent": 0.5, "system": False},
        {"name": "E:", "free_bytes": 1024**3, "free_percent": 5.0, "system": False},
    ]
    found = suggest(readings(volumes=volumes), "PC001", "windows", ALLOWED)
    assert [(s["kind"], s["action"]) for s in found] == [("fix", "temp-clean"), ("escalate", None)]
    assert found[1]["reason"].startswith("D: 0.5% free (1.0 GB): not the system volume")


def test_rules_a_fix_missing_for_the_os_becomes_an_escalation() -> None:
    state = readings(network={"adapters": [], "gateways": [], "dns_servers": ["10.0.0.53"], "probed": True,
                              "reachable": [{"address": "10.0.0.53", "role": "dns", "reachable": True}],
                              "name_resolution": {"name": "corp.example.com", "ok": False}})  # fmt: skip
    [windows_fix] = suggest(state, "PC001", "windows", ALLOWED)
    assert windows_fix["command"] == "l1fix dns-flush PC001"
    [linux] = suggest(state, "LNX01", "linux", ALLOWED)
    assert linux["kind"] == "escalate" and linux["reason"].endswith("(l1fix has no dns-flush for linux computers)")


def test_rules_reboot_reasons_are_one_suggestion_and_the_spooler_unit_is_left_to_spooler_restart() -> None:
    state = readings(
        uptime_s=40 * 86400,
        pending_reboot=["/var/run/reboot-required (linux-image-6.1.0-18-amd64)"],
        services_not_running=[{"name": "cups", "display_name": "CUPS Scheduler", "start_type": "enabled",
                               "status": "failed"}],
        spooler={"ok": False, "summary": "The CUPS scheduler does not answer.", "state": {"scheduler": "not running"}},
    )  # fmt: skip
    found = suggest(state, "LNX01", "linux", ALLOWED)
    assert found[0]["command"] == "l1fix spooler-restart LNX01" and found[0]["reason"] == "print spooler not running"
    reboots = [s for s in found if "reboot" in s["reason"]]
    assert len(reboots) == 1 and "up for 40 days" in reboots[0]["reason"]
    assert not any("cups (" in s["reason"] for s in found)


def test_rules_clock_and_policy_thresholds() -> None:
    behind = readings(clock={"host_utc": "2026-01-10T12:00:00Z", "off_by_s": -130.0})
    [clock] = suggest(behind, "PC001", "windows", ALLOWED)
    assert clock["reason"].startswith("clock 2 min 10 s behind the technician's")
    assert suggest(readings(clock={"off_by_s": 119.0}), "PC001", "windows", ALLOWED) == []
    fresh = readings(policy={"state": {"computer_last_refresh": "2026-01-09T13:00:00Z"}})
    assert suggest(fresh, "PC001", "windows", ALLOWED) == []  # 23 h
    stale = readings(policy={"state": {"computer_last_refresh": "2026-01-09T11:00:00Z"}})
    [gp] = suggest(stale, "PC001", "windows", ALLOWED)
    assert gp["command"] == "l1fix gpupdate PC001" and "25 h ago" in gp["reason"]


def test_rules_a_disabled_spooler_is_not_a_fault_and_quoting_is_for_a_shell() -> None:
    disabled = readings(spooler={"ok": False, "state": {"status": "Stopped", "start_type": "Disabled"}})
    assert suggest(disabled, "PC013", "windows", ALLOWED) == []
    odd = readings(services_not_running=[{"name": "it's $(x)", "start_type": "Automatic", "status": "Stopped"}])
    [restart] = suggest(odd, "PC001", "windows", ["it's $(x)"])
    assert restart["command"] == "l1fix service-restart PC001 --service 'it'\"'\"'s $(x)'"


# --------------------------------------------------------------------------- Linux (real sshd, real CUPS)


@pytest.fixture
def ssh_home(sshd: Sshd, cupsd: Cupsd, home: Path) -> Path:  # noqa: F811
    cupsd.reset()
    return write_home(home, sshd)


def test_linux_stuck_queue_suggests_spooler_restart_and_changes_nothing(ssh_home: Path, cupsd: Cupsd) -> None:  # noqa: F811
    jobs = stuck_printer(cupsd)
    queues = cupsd.queues()
    result = execute("diagnose", HOST, {"network-probe": False}, config=load_config())
    assert result.status == "findings" and result.exit_code == 6, (result.error, result.summary)
    [spooler] = [s for s in result.before["suggestions"] if s["action"] == "spooler-restart"]
    assert spooler["command"] == "l1fix spooler-restart LNX01"
    assert spooler["reason"] == "3 stuck print jobs, paused queue office"
    assert cupsd.jobs() == jobs and cupsd.queues() == queues  # read-only
    state = result.before
    assert state["computer"] and state["uptime_s"] > 0 and state["last_boot"].endswith("Z")
    assert any(v["name"] == "/" and v["system"] for v in state["volumes"])
    assert all(0 <= v["free_percent"] <= 100 for v in state["volumes"])
    assert state["network"]["probed"] is False and state["network"]["reachable"] == []
    assert state["network"]["name_resolution"] is None
    assert abs(state["clock"]["off_by_s"]) < 5  # the same machine's clock
    assert state["policy"] is None  # no gpupdate on Linux
    assert result.summary.startswith(f"Health of {state['computer']} read: ")


def test_linux_cli_json_without_a_stuck_queue(ssh_home: Path, cupsd: Cupsd) -> None:  # noqa: F811
    cupsd.add_queue("office")
    out = run_cli("diagnose", HOST, "--no-network-probe", "--json", home=ssh_home)
    data = out.json()
    assert data["before"]["spooler"]["ok"] is True, data
    assert not any(s["action"] == "spooler-restart" for s in data["before"]["suggestions"])
    assert (out.code, data["status"]) == ((0, "already-ok") if not data["before"]["suggestions"] else (6, "findings"))
    assert cupsd.queues() == {"office": {"enabled": True, "accepting": True}}


# --------------------------------------------------------------------------- the shell script's probe, faked


FAKE_IP = """#!/bin/sh
case "$*" in
    "-o addr show scope global") echo '2: lo0    inet 127.0.0.9/8 scope global lo0' ;;
    "-4 route show default") echo 'default via 127.0.0.1 dev lo0 proto static' ;;
esac
"""
FAKE_PING = """#!/bin/sh
echo "ping $*" >> "$FAKE_LOG"
for last; do :; done
[ "$last" = 127.0.0.1 ]
"""
FAKE_GETENT = """#!/bin/sh
echo "getent $*" >> "$FAKE_LOG"
exit 2
"""


def run_sh(params: dict[str, Any], steps: list[str], tmp_path: Path) -> tuple[int, dict[str, Any], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in {"ip": FAKE_IP, "ping": FAKE_PING, "getent": FAKE_GETENT}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "calls"
    log.touch()
    env = {"PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}", "FAKE_LOG": str(log)}
    payload = {"action": "diagnose", "steps": steps, "params": params, "before": None}
    proc = subprocess.run(
        ["/bin/sh", "-s"],
        input=shell.build_stdin(SH_SCRIPT.read_text(), payload, timeout=30),
        capture_output=True,
        env=env,
        timeout=60,
        start_new_session=True,
    )
    return proc.returncode, json.loads(proc.stdout.decode().splitlines()[-1]), log.read_text().splitlines()


def test_the_probe_pings_only_the_configured_addresses(tmp_path: Path) -> None:
    code, data, calls = run_sh({"network-probe": True}, ["check"], tmp_path)
    assert code == 0, data
    network = data["check"]["state"]["network"]
    assert network["gateways"] == ["127.0.0.1"] and network["probed"] is True
    assert network["adapters"][0]["name"] == "lo0" and network["adapters"][0]["addresses"] == ["127.0.0.9/8"]
    dns = network["dns_servers"]
    assert [(p["address"], p["role"]) for p in network["reachable"]] == [("127.0.0.1", "gateway")] + [
        (a, "dns") for a in dns
    ]
    assert network["reachable"][0]["reachable"] is True
    assert all(p["reachable"] is False for p in network["reachable"][1:])  # the fake answers loopback only
    pinged = [c.split()[-1] for c in calls if c.startswith("ping ")]
    assert pinged == ["127.0.0.1", *dns]  # nothing but what the host is configured with


def test_without_the_probe_nothing_is_pinged_and_a_hostile_time_is_data(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    params = {"network-probe": False, "technician_utc": f"$(touch {marker})`touch {marker}`"}
    code, data, calls = run_sh(params, ["check"], tmp_path)
    assert code == 0 and calls == [] and not marker.exists()
    assert data["check"]["state"]["clock"] == {
        **data["check"]["state"]["clock"],
        "skew_s": None,
        "technician_utc": None,
    }
    code, data, _ = run_sh({"network-probe": False, "technician_utc": "2026-01-10T12:00:00Z"}, ["check"], tmp_path)
    assert data["check"]["state"]["clock"]["technician_utc"] == "2026-01-10T12:00:00Z"
    assert data["check"]["state"]["clock"]["skew_s"] > 0


@pytest.mark.parametrize(("params", "steps", "message"), [
    ({"network-probe": False}, ["fix"], "diagnose only reads: it has no fix step."),
    ({"network-probe": False}, ["verify"], "diagnose only reads: it has no verify step."),
    ({"network-probe": "$(reboot)"}, ["check"], "parameter network-probe must be true or false"),
])  # fmt: skip
def test_the_shell_script_refuses_fix_verify_and_bad_values(
    tmp_path: Path, params: dict, steps: list[str], message: str
) -> None:
    code, data, calls = run_sh(params, steps, tmp_path)
    assert (code, data) == (1, {"error": message}) and calls == []

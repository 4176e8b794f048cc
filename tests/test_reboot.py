"""reboot (and --cancel) through the runner and the CLI, against the lab's simulated PCs."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conftest import run_cli
from l1fix.lab.power import ShutdownEvent, native_argument, split_command_line
from l1fix.lab.windows import Session, healthy_host, packaged_library, packaged_scripts
from l1fix.runner import execute
from l1fix.tickets.followup import render
from twins import run_twin

SCRIPT = packaged_scripts()["reboot"]
LIBRARY = packaged_library()
NOTICE = {"notice-minutes": 15, "message": "Redémarrage pour mise à jour, enregistrez votre travail."}
HOSTILE_MESSAGES = [
    "it's",
    'say "hi"',
    'x" /s /t 0 /f "',
    "$(Stop-Computer -Force)",
    "`$env:PATH` & calc.exe | more",
    "C:\\dir\\",
    'tail \\" and \\\\"',
    "ünïcødé ✓ 日本語 🙂",
]


def run(lab: Any, target: str, confirm: Any = None, **params: Any):
    """A confirmed run (as with --yes): check, fix and verify in one script run."""
    return execute("reboot", target, params, config=lab.config, confirm=confirm)


def host(lab: Any, name: str):
    return lab.simulator.hosts[name]


def seconds_from_now(text: str) -> float:
    return (datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds()


# --------------------------------------------------------------------------- restart


def test_restart_is_scheduled_with_notice(lab: Any) -> None:
    pc = host(lab, "PC043")
    result = run(lab, "PC043", **NOTICE)
    assert result.status == "fixed", result.summary
    assert result.before["uptime_hours"] >= 41 * 24 and result.before["pending"] is None  # the old 1074 predates boot
    assert result.done["scheduled"] is True and result.done["exit_code"] == 0
    assert 14 * 60 < seconds_from_now(result.done["restart_at"]) <= 15 * 60
    assert pc.power.command_lines == [
        '/r /t 900 /c "Redémarrage pour mise à jour, enregistrez votre travail." /d p:0:0'
    ]
    assert 14 * 60 < (pc.power.deadline - datetime.now(UTC)).total_seconds() <= 15 * 60
    assert result.after["restart_pending"] is True and result.after["pending"]["comment"] == NOTICE["message"]
    assert result.after["pending"]["reason_code"] == "0x80000000"  # planned
    assert f"Scheduled a planned restart at {result.done['restart_at']} (in 15 minutes)" in result.summary
    assert "nobody is logged on to see the notice" in result.summary


def test_the_logged_on_users_get_the_notice(lab: Any) -> None:
    result = run(lab, "PC016", **NOTICE)
    assert result.status == "fixed", result.summary
    assert result.before["logged_on_users"] == ["CORP\\jdupont"] and result.done["notified"] == ["CORP\\jdupont"]
    assert f"1 logged-on user (CORP\\jdupont) got the notice '{NOTICE['message']}'" in result.summary
    followup = render(result, language="en").content_html
    assert f"restart at {result.done['restart_at']}" in followup and "got the notice" in followup


def test_a_restart_already_scheduled_is_already_ok(lab: Any) -> None:
    pc = host(lab, "PC044")
    result = run(lab, "PC044", **NOTICE)
    assert result.status == "already-ok" and result.done is None
    assert result.before["pending"]["by"] == "NT AUTHORITY\\SYSTEM"
    assert "a restart is already scheduled" in result.summary and "reboot --cancel" in result.summary
    assert pc.power.command_lines == []


@pytest.mark.parametrize(
    ("target", "code", "text"), [("PC045", 5, "Access is denied.(5)"), ("PC002", 1115, "in progress")]
)
def test_a_refused_shutdown_fails_and_schedules_nothing(lab: Any, target: str, code: int, text: str) -> None:
    pc = host(lab, target)
    pc.power.refuse_error = code  # PC045 already refuses with 5; a PC shutting down refuses with 1115
    result = run(lab, target, **NOTICE)
    assert result.status == "failed" and result.exit_code == 1
    assert result.done["scheduled"] is False and result.done["exit_code"] == code and text in result.done["error"]
    assert "nothing is scheduled" in result.summary and "No restart is scheduled." in result.summary
    assert pc.power.deadline is None and pc.power.events == []


def test_a_power_off_already_scheduled_blocks_the_restart(lab: Any) -> None:
    pc = host(lab, "PC046")
    result = run(lab, "PC046", **NOTICE)
    assert result.status == "failed" and result.exit_code == 1
    assert result.before["pending"]["type"] == "power off" and result.before["restart_pending"] is False
    assert "reboot --cancel" in result.steps["check"]
    assert result.done["exit_code"] == 1190 and "already been scheduled" in result.done["error"]
    assert "No restart with this notice is scheduled" in result.summary
    assert [e.id for e in pc.power.events] == [1074]


def test_an_aborted_restart_is_not_pending(lab: Any) -> None:
    result = run(lab, "PC047", **NOTICE)
    assert result.status == "fixed", result.summary
    assert result.before["pending"] is None


# --------------------------------------------------------------------------- cancel


def test_cancel_aborts_a_scheduled_restart_then_is_already_ok(lab: Any) -> None:
    pc = host(lab, "PC044")
    result = run(lab, "PC044", cancel=True)
    assert result.status == "fixed", result.summary
    assert result.done["cancelled"] is True and pc.power.command_lines == ["/a"]
    assert result.after["pending"] is None and [e.id for e in pc.power.events] == [1074, 1075]
    again = run(lab, "PC044", cancel=True)
    assert again.status == "already-ok" and "nothing to cancel" in again.summary


def test_schedule_then_cancel_leaves_nothing_pending(lab: Any) -> None:
    assert run(lab, "PC043", **NOTICE).status == "fixed"
    result = run(lab, "PC043", cancel=True)
    assert result.status == "fixed" and result.before["pending"]["comment"] == NOTICE["message"]
    assert host(lab, "PC043").power.deadline is None
    assert run(lab, "PC043", **NOTICE).status == "fixed"  # a new restart can be scheduled again


def test_cancel_that_shutdown_refuses_fails(lab: Any) -> None:
    pc = host(lab, "PC044")
    pc.power.refuse_error = 5
    result = run(lab, "PC044", cancel=True)
    assert result.status == "failed" and result.done["exit_code"] == 5
    assert "Still scheduled" in result.summary


# --------------------------------------------------------------------------- input and confirmation


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"notice-minutes": 0, "message": "x"}, "never restarts a PC without notice"),
        ({"notice-minutes": 1441, "message": "x"}, "1 to 1440 minutes"),
        ({"notice-minutes": "soon", "message": "x"}, "notice-minutes='soon' is invalid"),
        ({"notice-minutes": 5}, "needs --notice-minutes N and --message TEXT"),
        ({"message": "x"}, "needs --notice-minutes N and --message TEXT"),
        ({"notice-minutes": 5, "message": "   "}, "1 to 512 characters"),
        ({"notice-minutes": 5, "message": "é" * 513}, "1 to 512 characters"),
        ({"notice-minutes": 5, "message": "🙂" * 257}, "1 to 512 characters"),  # 514 UTF-16 units
        ({"notice-minutes": 5, "message": "two\nlines"}, "without control characters"),
        ({"cancel": True, "message": "x"}, "--cancel takes no --message"),
        ({}, "needs --notice-minutes N and --message TEXT"),
    ],
)
def test_bad_parameters_are_bad_input(lab: Any, params: dict[str, Any], expected: str) -> None:
    result = run(lab, "PC043", **params)
    assert result.status == "error" and result.error.kind == "bad-input" and result.exit_code == 2
    assert expected in result.error.message
    assert host(lab, "PC043").received == []


def test_the_longest_message_is_accepted(lab: Any) -> None:
    message = "🙂" * 256  # 512 UTF-16 units: the most shutdown.exe takes
    result = run(lab, "PC043", **{"notice-minutes": 1, "message": message})
    assert result.status == "fixed" and result.after["pending"]["comment"] == message


@pytest.mark.parametrize("message", HOSTILE_MESSAGES)
def test_hostile_messages_reach_shutdown_exe_as_one_argument(lab: Any, message: str) -> None:
    pc = host(lab, "PC043")
    result = run(lab, "PC043", **{"notice-minutes": 2, "message": message})
    assert result.status == "fixed", result.summary
    assert [p["params"]["message"] for p in pc.received] == [message]
    assert pc.scripts_run == ["reboot"]  # identified by exact match: the script text was untouched
    argv = split_command_line(pc.power.command_lines[0])
    assert argv == ["/r", "/t", "120", "/c", message, "/d", "p:0:0"]  # nothing added, nothing split
    assert pc.power.events[-1].comment == message


@pytest.mark.parametrize("value", ["", "a", "a b", 'a"b', "a\\", 'a\\"b', "\\\\srv\\q\\", '"', "a\tb\\\\"])
def test_native_arguments_round_trip(value: str) -> None:
    assert split_command_line(f"/c {native_argument(value)} /x") == ["/c", value, "/x"]


def test_the_twin_quotes_as_the_library_does() -> None:
    """native_argument mirrors ConvertTo-NativeArgument in _common.ps1: same patterns."""
    for pattern in ("'[\\s\"]'", "'(\\\\*)\"', '$1$1\\\"'", "'(\\\\+)$', '$1$1'"):
        assert pattern in LIBRARY


def test_each_step_on_its_own_after_the_technician_confirms(lab: Any) -> None:
    asked: list[str] = []
    result = run(lab, "PC016", confirm=lambda q: asked.append(q) or True, **NOTICE)
    assert result.status == "fixed", result.summary
    assert "Run reboot on PC016?" in asked[0] and "logged on: CORP\\jdupont" in asked[0]
    assert [p["steps"] for p in host(lab, "PC016").received] == [["check"], ["fix"], ["verify"]]


def test_declined_schedules_nothing(lab: Any) -> None:
    result = run(lab, "PC043", confirm=lambda q: False, **NOTICE)
    assert result.status == "skipped" and host(lab, "PC043").power.command_lines == []


def test_cli_refuses_without_yes_when_no_one_can_confirm(lab: Any) -> None:
    args = ("--profile", "lab", "reboot", "PC043", "--notice-minutes", "10", "--message", "Mise à jour")
    out = run_cli(*args, home=lab.home)
    assert out.code == 2 and "needs confirmation" in out.stderr and "--yes" in out.stderr
    assert host(lab, "PC043").power.command_lines == []
    out = run_cli(*args, "--yes", "--json", home=lab.home)
    assert out.code == 0, out.stderr
    data = out.json()
    assert data["status"] == "fixed" and data["params"] == {
        "notice-minutes": 10,
        "message": "Mise à jour",
        "cancel": False,
    }
    assert data["done"]["restart_at"] in data["steps"]["fix"]
    out = run_cli("--profile", "lab", "reboot", "PC043", "--cancel", "--yes", "--json", home=lab.home)
    assert out.code == 0 and out.json()["status"] == "fixed" and out.json()["after"]["pending"] is None
    out = run_cli("--profile", "lab", "reboot", "PC043", "--notice-minutes", "0", "--message", "x", home=lab.home)
    assert out.code == 2 and len(out.stderr.strip().splitlines()) == 1


def test_the_action_is_listed_as_needing_confirmation(home: Any) -> None:
    out = run_cli("actions", "--json", home=home)
    action = {a["name"]: a for a in json.loads(out.stdout)}["reboot"]
    assert action["risk"] == "confirm" and [p["name"] for p in action["params"]] == [
        "notice-minutes",
        "message",
        "cancel",
    ]


# --------------------------------------------------------------------------- the script itself


@pytest.mark.parametrize(
    "params", [{"notice-minutes": 0, "message": "x"}, {"notice-minutes": 5, "message": ""}, {"notice-minutes": 5}]
)
def test_the_script_refuses_an_instant_or_silent_restart_on_its_own(params: dict[str, Any]) -> None:
    pc = healthy_host("PC100")
    data = run_twin(pc, "reboot", params)
    assert "error" in data and "check" not in data
    assert pc.power.command_lines == []


def test_twin_keys_appear_in_the_powershell_script() -> None:
    pc = healthy_host("PC100")
    pc.sessions.append(Session("CORP\\jdupont", "S-1-5-21-1-2-3-1013", 2))
    pc.power.events.append(ShutdownEvent(1074, datetime.now(UTC) - timedelta(days=9), "x"))
    keys: set[str] = set()
    for params in (NOTICE, {"cancel": True}):
        data = run_twin(pc, "reboot", params)
        keys |= set(data["check"]) | set(data["check"]["state"]) | set(data["fix"]) | set(data["verify"]["state"])
        keys |= set(data["check"]["state"]["pending"] or {})
    missing = [k for k in sorted(keys) if not re.search(rf"\b{k}\b\s*=|\['{k}'\]", SCRIPT + LIBRARY)]
    assert missing == []

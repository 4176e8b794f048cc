"""Quick Windows fixes (dns-flush, gpupdate, temp-clean) through the runner and the CLI, against the lab."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from conftest import run_cli
from l1fix.lab.windows import LabSimulator, Session, TempFile, healthy_host, packaged_library, packaged_scripts
from l1fix.runner import execute
from l1fix.targets.powershell import ARGUMENTS, COMMAND, build_stdin
from twins import HOSTILE_LOGINS, run_twin

SCRIPTS = packaged_scripts()
LIBRARY = packaged_library()
ALL_STEPS = ["check", "fix", "verify"]


def run(lab: Any, action: str, target: str, **params: Any):
    return execute(action, target, params or None, config=lab.config)


def host(lab: Any, name: str):
    return lab.simulator.hosts[name]


# --------------------------------------------------------------------------- dns-flush


def test_dns_flush_empties_the_cache(lab: Any) -> None:
    result = run(lab, "dns-flush", "PC011")
    assert result.status == "fixed", result.summary
    assert result.before["cache_entries"] == 6 and result.before["hosts_file_entries"] == 1
    assert result.done["flushed"] is True and result.done["entries_before"] == 6
    # Outlook looked one name up again at once; the hosts file name is always there.
    assert result.after["cache_entries"] == 1 and result.after["entries_before"] == 6
    assert sorted(host(lab, "PC011").dns_cache) == ["intranet.corp.local", "login.microsoftonline.com"]
    assert "looked up again since" in result.summary


def test_dns_flush_on_an_empty_cache_is_already_ok(lab: Any) -> None:
    result = run(lab, "dns-flush", "PC001")
    assert result.status == "already-ok" and result.done is None
    assert "already empty" in result.summary


def test_dns_flush_with_the_dns_client_stopped_fails_and_starts_nothing(lab: Any) -> None:
    result = run(lab, "dns-flush", "PC012")
    assert result.status == "failed" and result.exit_code == 1
    assert result.done["flushed"] is False
    assert "service-restart --service Dnscache" in result.summary
    assert "still not running" in result.summary
    assert host(lab, "PC012").services["Dnscache"].state == "Stopped"
    assert host(lab, "PC012").dns_cache == ["mail.corp.com", "fileserver.corp.local"]


def test_dns_flush_that_leaves_the_cache_as_it_was_fails() -> None:
    pc = healthy_host("PC100")
    pc.dns_cache = ["a.corp.local", "b.corp.local"]
    pc.dns_relookups = ["a.corp.local", "b.corp.local", "c.corp.local"]  # more than before
    data = run_twin(pc, "dns_flush")
    assert data["fix"]["flushed"] is True
    assert data["verify"]["ok"] is False and "not emptied" in data["verify"]["summary"]


def test_dns_flush_dry_run_changes_nothing(lab: Any) -> None:
    result = execute("dns-flush", "PC011", config=lab.config, dry_run=True)
    assert result.status == "skipped"
    assert len(host(lab, "PC011").dns_cache) == 7


def test_dns_flush_through_the_cli(lab: Any) -> None:
    out = run_cli("--profile", "lab", "dns-flush", "PC011", "--ticket", "1234", "--json", home=lab.home)
    assert out.code == 0, out.stderr
    assert out.json()["status"] == "fixed" and out.json()["after"]["cache_entries"] == 1
    again = run_cli("--profile", "lab", "dns-flush", "PC012", "--json", home=lab.home)
    assert again.code == 1 and again.json()["status"] == "failed"


# --------------------------------------------------------------------------- gpupdate


def test_gpupdate_refreshes_the_computer_policy(lab: Any) -> None:
    result = run(lab, "gpupdate", "PC001")
    assert result.status == "fixed", result.summary
    assert result.before["scope"] == "computer" and result.before["user"] is None
    assert result.done["computer_exit_code"] == 0 and result.done["user_task"] is None
    assert result.after["computer_last_refresh"] > result.before["computer_last_refresh"]
    assert result.after["computer_refreshed"] is True


def test_gpupdate_is_never_already_ok(lab: Any) -> None:
    # A refresh is asked for on purpose: a second run refreshes again.
    assert run(lab, "gpupdate", "PC002").status == "fixed"
    assert run(lab, "gpupdate", "PC002").status == "fixed"


def test_gpupdate_for_a_user_runs_as_the_user_in_their_session(lab: Any) -> None:
    result = run(lab, "gpupdate", "PC016", user="jdupont")
    assert result.status == "fixed", result.summary
    assert result.before["user"] == "CORP\\jdupont" and result.before["session_id"] == 2
    sid = result.before["user_sid"]
    assert sid.startswith("S-1-5-21-")
    assert result.done["user_exit_code"] == 0
    assert re.fullmatch(r"\\l1fix\\gpupdate-[0-9a-f]{32}", result.done["user_task"])
    assert result.after["user_last_refresh"] > result.before["user_last_refresh"]
    assert result.after["user_refreshed"] is True and result.after["computer_refreshed"] is True
    assert "as the user, in session 2" in result.summary


def test_gpupdate_whose_gpupdate_exits_1_fails(lab: Any) -> None:
    before = host(lab, "PC017").gp_last_refresh["Machine"]
    result = run(lab, "gpupdate", "PC017")
    assert result.status == "failed" and result.exit_code == 1
    assert result.done["computer_exit_code"] == 1
    assert result.after["computer_refreshed"] is False
    assert "not refreshed" in result.summary and "exit code 1" in result.summary
    assert host(lab, "PC017").gp_last_refresh["Machine"] == before


def test_gpupdate_for_a_user_not_logged_on_is_refused(lab: Any) -> None:
    refreshed = dict(host(lab, "PC016").gp_last_refresh)
    result = run(lab, "gpupdate", "PC016", user="CORP\\mleroy")
    assert result.status == "error" and result.exit_code == 1
    assert result.error.kind == "remote-error"
    assert "'CORP\\mleroy' is not logged on" in result.error.message
    assert "logged on: CORP\\jdupont" in result.error.message
    assert "PC016" in result.error.message
    assert host(lab, "PC016").gp_last_refresh == refreshed  # refused before any refresh ran


def test_gpupdate_with_a_login_that_is_not_a_login_is_bad_input(lab: Any) -> None:
    result = run(lab, "gpupdate", "PC016", user="jdupont\nCORP\\admin")
    assert result.status == "error" and result.error.kind == "bad-input"
    assert host(lab, "PC016").received == []


@pytest.mark.parametrize("login", HOSTILE_LOGINS)
def test_hostile_logins_reach_the_host_unchanged(lab: Any, login: str) -> None:
    result = run(lab, "gpupdate", "PC016", user=login)
    assert result.status == "error" and result.error.kind == "remote-error"
    assert f"User '{login}' is not logged on" in result.error.message
    pc = host(lab, "PC016")
    assert [p["params"] for p in pc.received] == [{"user": login}]
    assert pc.scripts_run == ["gpupdate"]  # identified by exact match: the script text was untouched


@pytest.mark.parametrize("login", HOSTILE_LOGINS)
def test_hostile_login_of_a_logged_on_user_is_refreshed(lab: Any, login: str) -> None:
    pc = host(lab, "PC003")
    full = login if "\\" in login else "CORP\\" + login
    pc.sessions.append(Session(full, "S-1-5-21-1-2-3-4242", 3))
    result = run(lab, "gpupdate", "PC003", user=login)
    assert result.status == "fixed", result.summary
    assert result.before["user"] == full and result.done["user"] == full
    assert "S-1-5-21-1-2-3-4242" in pc.gp_last_refresh


def test_gpupdate_through_the_cli(lab: Any) -> None:
    out = run_cli("--profile", "lab", "gpupdate", "PC016", "--user", "jdupont", "--json", home=lab.home)
    assert out.code == 0, out.stderr
    assert out.json()["status"] == "fixed" and out.json()["params"] == {"user": "jdupont"}

    out = run_cli("--profile", "lab", "gpupdate", "PC016", "--user", "ghost", home=lab.home)
    lines = out.stderr.strip().splitlines()
    assert out.code == 1 and len(lines) == 1, out.stderr
    assert "'ghost' is not logged on" in lines[0] and "PC016" in lines[0]

    out = run_cli("--profile", "lab", "gpupdate", "PC017", "--json", home=lab.home)
    assert out.code == 1 and out.json()["status"] == "failed"


def test_the_actions_are_listed(home: Any) -> None:
    out = run_cli("actions", "--json", home=home)
    actions = {a["name"]: a for a in json.loads(out.stdout)}
    assert actions["dns-flush"]["risk"] == "safe" and actions["dns-flush"]["params"] == []
    assert actions["gpupdate"]["params"][0]["name"] == "user"
    assert actions["gpupdate"]["params"][0]["required"] is False


# --------------------------------------------------------------------------- twins and scripts agree


@pytest.mark.parametrize(("script", "params"), [("dns_flush", {}), ("gpupdate", {"user": "jdupont"})])
def test_twin_keys_appear_in_the_powershell_script(script: str, params: dict[str, Any]) -> None:
    """A cheap guard against drift: every key a twin returns is written in its .ps1."""
    pc = healthy_host("PC100")
    pc.dns_cache = ["a.corp.local"]
    pc.sessions.append(Session("CORP\\jdupont", "S-1-5-21-1-2-3-1013", 2))
    data = run_twin(pc, script, params)
    keys = set(data["check"]) | set(data["check"]["state"]) | set(data["fix"]) | set(data["verify"])
    keys |= set(data["verify"]["state"])
    text = SCRIPTS[script] + LIBRARY
    missing = [k for k in sorted(keys) if not re.search(rf"\b{k}\b\s*=|\['{k}'\]", text)]
    assert missing == []


def test_new_problem_hosts_leave_the_others_healthy(lab: Any) -> None:
    sim = lab.simulator
    dns_not_ok = [h for h in sim.hosts if not _check(sim, h, "dns_flush")["ok"]]
    assert dns_not_ok == ["PC011", "PC012", "PC041"]  # PC041: a stale answer cached (lab/diagnostics.py)
    assert [h for h, pc in sim.hosts.items() if pc.sessions] == ["PC016", "PC017"]
    assert [h for h, pc in sim.hosts.items() if pc.gpupdate_exit_code] == ["PC017"]


def _check(sim: LabSimulator, name: str, script: str) -> dict[str, Any]:
    payload = {"action": "test", "steps": ["check"], "params": {}, "before": None}
    outcome = sim.run_command(name, COMMAND, list(ARGUMENTS), build_stdin(SCRIPTS[script], payload))
    return json.loads(outcome.stdout)["check"]


# --------------------------------------------------------------------------- temp-clean


def test_temp_clean_deletes_old_files_and_reports_space(lab: Any) -> None:
    pc = host(lab, "PC019")
    result = run(lab, "temp-clean", "PC019")
    assert result.status == "fixed", result.summary
    assert result.before["old_files"] == 5 and result.before["reparse_points_skipped"] == 1
    assert [f["user"] for f in result.before["folders"]] == ["CORP\\jdupont", "CORP\\amartin", None]
    assert result.done["files_deleted"] == 4 and result.done["files_in_use"] == 1
    assert result.done["bytes_freed"] == 224 * 1024**2
    assert result.done["free_bytes_after"] - result.done["free_bytes_before"] == result.done["bytes_freed"]
    assert result.after["old_files"] == 1 and result.after["files_in_use"] == 1
    assert "224.0 MB freed" in result.summary and "1 file in use left alone" in result.summary
    left = sorted(f.path.rpartition("\\")[2] for f in pc.files)
    # In use, fresh, behind the junction (twice: its real path and through the link), outside Temp.
    assert left == ["Thesis.docx", "Thesis.docx", "fresh.tmp", "ntoskrnl.exe", "~DF1A2B.tmp"]


def test_temp_clean_with_nothing_old_is_already_ok(lab: Any) -> None:
    result = run(lab, "temp-clean", "PC001")
    assert result.status == "already-ok" and result.done is None
    result = run(lab, "temp-clean", "PC019", **{"older-than-days": 60})  # nothing that old in Temp
    assert result.status == "already-ok", result.summary
    assert "No temporary file older than 60 days" in result.summary


def test_temp_clean_for_one_user_touches_only_their_temp(lab: Any) -> None:
    result = run(lab, "temp-clean", "PC019", user="amartin")
    assert result.status == "fixed"
    assert [f["path"] for f in result.before["folders"]] == [
        "C:\\Users\\amartin\\AppData\\Local\\Temp",
        "C:\\Windows\\Temp",
    ]
    assert result.done["files_deleted"] == 2
    assert any("jdupont" in f.path and f.path.endswith("setup_2291.exe") for f in host(lab, "PC019").files)


def test_temp_clean_when_every_old_file_is_in_use_fails(lab: Any) -> None:
    result = run(lab, "temp-clean", "PC023")
    assert result.status == "failed" and result.exit_code == 1
    assert result.done["files_deleted"] == 0 and result.done["files_in_use"] == 2
    assert "every old temporary file (2) is in use" in result.summary
    assert len(host(lab, "PC023").files) == 2


def test_temp_clean_for_a_user_without_a_profile_is_an_error(lab: Any) -> None:
    files = list(host(lab, "PC019").files)
    result = run(lab, "temp-clean", "PC019", user="CORP\\ghost")
    assert result.status == "error" and result.error.kind == "remote-error" and result.exit_code == 1
    assert "'CORP\\ghost' has no profile on this computer" in result.error.message
    assert host(lab, "PC019").files == files


@pytest.mark.parametrize("days", ["-1", "soon", "99999"])
def test_temp_clean_bad_age_is_bad_input(lab: Any, days: str) -> None:
    result = run(lab, "temp-clean", "PC019", **{"older-than-days": days})
    assert result.status == "error" and result.error.kind == "bad-input"
    assert host(lab, "PC019").received == []


@pytest.mark.parametrize("login", HOSTILE_LOGINS)
def test_temp_clean_hostile_logins_reach_the_host_unchanged(lab: Any, login: str) -> None:
    result = run(lab, "temp-clean", "PC019", user=login)
    assert result.status == "error" and f"User '{login}' has no profile" in result.error.message
    assert [p["params"] for p in host(lab, "PC019").received] == [{"user": login, "older-than-days": 1}]


def test_temp_clean_through_the_cli(lab: Any) -> None:
    args = ("--profile", "lab", "temp-clean", "PC019", "--user", "jdupont", "--older-than-days", "2", "--json")
    out = run_cli(*args, home=lab.home)
    assert out.code == 0, out.stderr
    data = out.json()
    assert data["status"] == "fixed" and data["params"] == {"user": "jdupont", "older-than-days": 2}
    # jdupont's setup_2291.exe (12 d) and OUTLOOK.etl (3 d), and Windows\Temp's MpCmdRun.log (9 d);
    # ~DF1A2B.tmp (2 d) is not older than 2 days, amartin's folder is not looked at.
    assert data["done"]["files_deleted"] == 3 and data["done"]["files_in_use"] == 0
    out = run_cli("--profile", "lab", "temp-clean", "PC023", "--json", home=lab.home)
    assert out.code == 1 and out.json()["status"] == "failed"


@pytest.mark.parametrize("script", ["temp_clean"])
def test_temp_clean_twin_keys_appear_in_the_powershell_script(script: str) -> None:
    pc = healthy_host("PC100")
    pc.files = [TempFile("C:\\Windows\\Temp\\a.log", 10, 5)]
    data = run_twin(pc, script)
    keys = set(data["check"]) | set(data["check"]["state"]) | set(data["fix"]) | set(data["verify"])
    keys |= set(data["verify"]["state"]) | set(data["check"]["state"]["folders"][0])
    text = SCRIPTS[script] + LIBRARY
    missing = [k for k in sorted(keys) if not re.search(rf"\b{k}\b\s*=|\['{k}'\]", text)]
    assert missing == []

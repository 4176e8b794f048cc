"""The CLI contract other tools rely on: commands, --json, exit codes, journal — against the lab."""

from __future__ import annotations

import json

from conftest import run_cli

REQUIRED_KEYS = {
    "run_id",
    "action",
    "target",
    "status",
    "before",
    "after",
    "ticket",
    "started_at",
    "duration_s",
    "error",
}


def test_actions_lists_builtins_with_parameters(home):
    out = run_cli("actions", "--json", home=home)
    assert out.code == 0, out.stderr
    actions = {a["name"]: a for a in json.loads(out.stdout)}
    assert {"spooler-restart", "service-restart"} <= set(actions)
    assert actions["service-restart"]["params"][0]["name"] == "service"
    assert actions["spooler-restart"]["target_kinds"] == ["linux", "macos", "windows"]
    assert actions["spooler-restart"]["risk"] == "safe"


def test_action_help_shows_its_options(home):
    out = run_cli("service-restart", "--help", home=home)
    assert out.code == 0
    for option in ("--service", "--ticket", "--dry-run", "--json", "--yes"):
        assert option in out.stdout


def test_spooler_restart_fixes_a_lab_pc_and_journals_it(lab):
    out = run_cli("--profile", "lab", "spooler-restart", "PC042", "--ticket", "1234", "--json", home=lab.home)
    assert out.code == 0, out.stderr
    result = json.loads(out.stdout)  # stdout holds exactly one JSON object
    assert set(result) >= REQUIRED_KEYS
    assert result["status"] == "fixed"
    assert result["ticket"] == 1234 and result["error"] is None
    assert result["before"]["stuck_jobs"] > 0
    assert result["after"]["status"] == "Running" and result["after"]["stuck_jobs"] == 0

    journal = run_cli("--profile", "lab", "journal", "--ticket", "1234", "--json", home=lab.home)
    rows = [json.loads(line) for line in journal.stdout.splitlines()]
    assert [r["run_id"] for r in rows] == [result["run_id"]]
    assert rows[0]["status"] == "fixed"

    again = run_cli("--profile", "lab", "spooler-restart", "PC042", "--json", home=lab.home)
    assert again.code == 0 and again.json()["status"] == "already-ok"


def test_dry_run_changes_nothing(lab):
    out = run_cli("--profile", "lab", "spooler-restart", "PC007", "--dry-run", "--json", home=lab.home)
    assert out.code == 0
    assert out.json()["status"] == "skipped"
    assert lab.simulator.hosts["PC007"].services["Spooler"].state == "Stopped"


def test_disabled_spooler_is_reported_failed_not_enabled(lab):
    out = run_cli("--profile", "lab", "spooler-restart", "PC013", "--json", home=lab.home)
    assert out.code == 1
    assert out.json()["status"] == "failed"
    assert lab.simulator.hosts["PC013"].services["Spooler"].start_type == "Disabled"


def test_generic_run_form(lab):
    out = run_cli("--profile", "lab", "run", "service-restart", "PC021", "service=BITS", "--json", home=lab.home)
    assert out.json()["action"] == "service-restart"
    assert out.json()["status"] == "failed"  # BITS on PC021 refuses to start
    assert out.code == 1


def _error_run(lab, *args):
    out = run_cli("--profile", "lab", *args, home=lab.home)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr  # one clear line, no traceback
    last = run_cli("--profile", "lab", "journal", "--json", "--limit", "1", home=lab.home)
    return out, lines[0], json.loads(last.stdout.splitlines()[0])


def test_unknown_action_is_bad_input(lab):
    out, line, journaled = _error_run(lab, "run", "spooler-restrat", "PC042")
    assert out.code == 2
    assert "unknown action 'spooler-restrat'" in line and "spooler-restart" in line
    assert journaled["status"] == "error" and journaled["action"] == "spooler-restrat"


def test_unknown_parameter_is_bad_input(lab):
    out, line, journaled = _error_run(lab, "run", "spooler-restart", "PC042", "colour=red")
    assert out.code == 2 and "unknown parameter 'colour'" in line
    assert journaled["error"]["kind"] == "bad-input"


def test_service_off_the_allow_list_is_refused(lab):
    out, line, _ = _error_run(lab, "service-restart", "PC001", "--service", "WinDefend")
    assert out.code == 2 and "allow-list" in line


def test_malformed_target_name(lab):
    out, line, journaled = _error_run(lab, "spooler-restart", "PC_04;2")
    assert out.code == 2 and "PC_04;2" in line
    assert journaled["status"] == "error"


def test_unreachable_and_access_denied_hosts(lab):
    out, line, _ = _error_run(lab, "spooler-restart", "PC050")
    assert out.code == 3 and "PC050" in line and "cannot connect" in line
    out, line, _ = _error_run(lab, "spooler-restart", "PC049")
    assert out.code == 3 and "access denied" in line


def test_refused_credentials(lab):
    (lab.home / "lab" / "password").write_text("not-the-password")
    out, line, journaled = _error_run(lab, "spooler-restart", "PC001")
    assert out.code == 3 and "refused" in line
    assert journaled["status"] == "error"
    assert "not-the-password" not in out.stdout + out.stderr


def test_tls_failure_when_the_ca_is_wrong(lab):
    config = lab.home / "config.toml"
    config.write_text(config.read_text().replace('ca_bundle = "lab/tls/ca.pem"', "validate_certificate = true"))
    out, line, _ = _error_run(lab, "spooler-restart", "PC001")
    assert out.code == 3 and "certificate" in line


def test_host_not_in_inventory(lab):
    out, line, journaled = _error_run(lab, "spooler-restart", "PC999")
    assert out.code == 2 and "PC999" in line and "inventory" in line
    assert journaled["error"]["kind"] == "unknown-target"


def test_timeout_is_exit_code_4(lab):
    config = lab.home / "config.toml"
    config.write_text(
        config.read_text().replace(
            'transport = "ntlm"', 'transport = "ntlm"\ncommand_timeout_s = 1\noperation_timeout_s = 1'
        )
    )
    out, line, journaled = _error_run(lab, "spooler-restart", "PC048")  # a slow host: 2 s per answer
    assert out.code == 4 and "did not finish within 1 s" in line
    assert journaled["error"]["kind"] == "timeout"


def test_script_output_that_is_not_json_is_an_error_run(lab, monkeypatch):
    from l1fix.journal import Journal
    from l1fix.lab.wsman import CommandOutcome
    from l1fix.runner import execute

    monkeypatch.setattr(lab.simulator, "run_command", lambda *a: CommandOutcome(b"Access to the path is denied.\r\n"))
    journal = Journal(lab.config.journal_path)
    result = execute("spooler-restart", "PC001", config=lab.config, observers=[journal])
    assert result.exit_code == 5 and result.error.kind == "bad-output"
    assert "PC001" in result.error.message and "Access to the path is denied" in result.error.message
    assert journal.get(result.run_id)["status"] == "error"


def test_no_secret_reaches_output_or_journal(lab):
    password = (lab.home / "lab" / "password").read_text()
    out = run_cli("--profile", "lab", "spooler-restart", "PC042", "--json", home=lab.home)
    assert out.code == 0
    journal_bytes = b"".join(p.read_bytes() for p in lab.home.glob("journal.sqlite3*"))
    assert journal_bytes and password.encode() not in journal_bytes
    assert password not in out.stdout + out.stderr


def test_python_api(lab):
    from l1fix import run

    result = run("spooler-restart", "PC007", ticket=77, profile="lab")
    assert result.status == "fixed" and result.ticket == 77
    assert result.before["orphan_spool_files"] > 0 and result.after["spool_files"] == 0


def test_lab_start_runs_in_the_foreground_and_writes_its_profile(home):
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "L1FIX_HOME": str(home)}
    cmd = [sys.executable, "-m", "l1fix", "lab", "start", "--hosts", "5", "--port", "0", "--http-port", "0"]
    lab = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = lab.stdout.readline()
        assert "SIMULATED" in banner
        deadline = time.monotonic() + 20
        while not (home / "lab" / "inventory.yml").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        out = run_cli("--profile", "lab", "service-restart", "PC003", "--service", "BITS", "--json", home=home)
        assert out.code == 0 and out.json()["status"] == "already-ok"
    finally:
        lab.send_signal(signal.SIGTERM)
        assert lab.wait(timeout=20) == 0


def test_debug_shows_the_traceback_and_default_hides_it(lab):
    quiet = run_cli("--profile", "lab", "spooler-restart", "PC050", home=lab.home)
    loud = run_cli("--debug", "--profile", "lab", "spooler-restart", "PC050", home=lab.home)
    assert quiet.code == loud.code == 3
    assert "Traceback" not in quiet.stderr
    assert "Traceback" in loud.stderr and "Unreachable" in loud.stderr


def test_journal_lists_filters_and_shows_runs(lab):
    first = run_cli("--profile", "lab", "spooler-restart", "PC042", "--ticket", "5", "--json", home=lab.home).json()
    run_cli("--profile", "lab", "spooler-restart", "PC007", "--dry-run", home=lab.home)
    listing = run_cli("--profile", "lab", "journal", "--since", "1h", home=lab.home)
    lines = listing.stdout.splitlines()
    assert len(lines) == 2 and "PC007" in lines[0] and "skipped" in lines[0]  # newest first
    assert "PC042" in lines[1] and "fixed" in lines[1] and "#5" in lines[1]
    only = run_cli("--profile", "lab", "journal", "--target", "PC042", "--json", home=lab.home)
    assert [json.loads(line)["run_id"] for line in only.stdout.splitlines()] == [first["run_id"]]
    shown = run_cli("--profile", "lab", "journal", "show", first["run_id"][:8], home=lab.home)
    assert json.loads(shown.stdout)["after"] == first["after"]
    missing = run_cli("--profile", "lab", "journal", "show", "ffffffff", home=lab.home)
    assert missing.code == 2 and "no run" in missing.stderr


def test_a_fix_costs_at_most_five_ws_man_requests(lab):
    from l1fix.runner import execute

    lab.server.reset_stats()
    result = execute("spooler-restart", "PC042", config=lab.config)
    stats = lab.server.stats()
    assert result.status == "fixed"
    assert stats["requests"] <= 5 and stats["auth_handshakes"] == 1
    assert stats["by_action"]["Create"] == 1 and stats["by_action"]["Delete"] == 1  # no shell left behind

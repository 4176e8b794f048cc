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
    assert actions["spooler-restart"]["target_kinds"] == ["windows"]
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

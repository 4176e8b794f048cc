"""Every ready playbook in playbooks/, end to end, through the real CLI where a technician would use it.

printer-stuck runs on the lab's simulated PCs (real WinRM protocol, GLPI stand-in); the AD
playbooks run against a real Samba AD domain controller on loopback (tests/samba_dc.py).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest

from conftest import run_cli
from l1fix.config import load_config
from l1fix.journal import Journal
from l1fix.playbook import load_playbook, run_playbook
from samba_dc import SambaDC, samba_dc  # noqa: F401

PLAYBOOKS = Path(__file__).resolve().parent.parent / "playbooks"
READY = sorted(PLAYBOOKS.glob("*.yml"))
TICKET = 1234


def test_every_ready_playbook_is_valid_and_explains_itself():
    assert {p.stem for p in READY} >= {"printer-stuck", "printer-missing", "user-locked-out", "forgot-password-ad"}
    for path in READY:
        pb = load_playbook(path)
        assert pb.name == path.stem
        assert len(pb.description) > 200, f"{path.name}: the description is for the technician and the KB"
        assert f"l1fix play playbooks/{path.name}" in pb.description  # an example to copy
        assert all(step.on_failure != "escalate" or pb.escalate for step in pb.steps)


# -- printer-stuck on the lab -----------------------------------------------------------------


def play(lab, name: str, *args: str):
    return run_cli("--profile", "lab", "play", str(PLAYBOOKS / name), *args, home=lab.home)


def test_printer_stuck_fixes_the_stuck_pcs_and_escalates_the_disabled_spooler(lab):
    names = ["PC042", "PC007", "PC030", "PC001", "PC013"]
    out = play(lab, "printer-stuck.yml", *(a for n in names for a in ("-t", n)), "--ticket", str(TICKET), "--json")
    assert out.code == 1, out.stderr  # PC013 failed: l1fix never re-enables a disabled spooler
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    status = {line["target"]: line["status"] for line in lines if line["type"] == "target"}
    assert status == {"PC042": "fixed", "PC007": "fixed", "PC030": "fixed", "PC001": "already-ok", "PC013": "failed"}
    for name in ("PC042", "PC030"):
        host = lab.simulator.hosts[name]
        assert host.jobs == [] and host.services["Spooler"].state == "Running"
    summary = lines[-1]
    assert summary["escalation"]["state"] == "escalated" and summary["followup"]["state"] == "sent"
    assert "ticket 1234 escalated to Support N2" in out.stderr
    followups = [f for f in lab.glpi.items["ITILFollowup"].values() if f["items_id"] == TICKET]
    assert len(followups) == 1

    again = play(lab, "printer-stuck.yml", "-t", "PC042", "-t", "PC007", "--json")
    assert again.code == 0 and all(
        json.loads(line)["status"] == "already-ok" for line in again.stdout.splitlines()[:-1]
    )


def test_printer_stuck_reuses_one_winrm_shell_for_its_steps_and_restarts_a_dependent_when_asked(lab):
    config = lab.home / "config.toml"
    allowed = 'inventory = "lab/inventory.yml"\nallowed_services = ["Spooler", "Fax"]'
    config.write_text(config.read_text().replace('inventory = "lab/inventory.yml"', allowed))
    lab.simulator.hosts["PC001"].services["Fax"].state = "Stopped"
    lab.server.reset_stats()
    out = play(lab, "printer-stuck.yml", "-t", "PC001", "--param", "dependent_service=Fax")
    assert out.code == 0, out.stderr
    assert "[1/1] PC001 fixed (service-restart)" in out.stdout
    assert lab.simulator.hosts["PC001"].services["Fax"].state == "Running"
    stats = lab.server.stats()
    # Two steps, one shell: Create, then Command/Send/Receive per step, then one Delete.
    assert stats["by_action"]["Create"] == 1 and stats["by_action"]["Delete"] == 1
    assert stats["by_action"]["Command"] == 2 and stats["auth_handshakes"] == 1

    refused = play(lab, "printer-stuck.yml", "-t", "PC001", "--param", "dependent_service=W32Time")
    assert refused.code == 2 and "not on the allow-list" in refused.stdout
    assert "escalate to Support N2" in refused.stderr  # no ticket: the technician is told whom to call


# -- printer-missing on the lab ---------------------------------------------------------------

HP_QUEUE = "\\\\print01\\HP-3rd-floor"


def test_printer_missing_reconnects_for_every_user_and_leaves_a_connected_pc_alone(lab):
    out = play(lab, "printer-missing.yml", "-t", "PC031", "-t", "PC001", "--param", f"printer={HP_QUEUE}",
               "--ticket", str(TICKET), "--json")  # fmt: skip
    assert out.code == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    targets = {line["target"]: line for line in lines if line["type"] == "target"}
    assert {name: t["status"] for name, t in targets.items()} == {"PC031": "fixed", "PC001": "already-ok"}
    assert [s["status"] for s in targets["PC031"]["steps"]] == ["already-ok", "fixed"]
    assert targets["PC031"]["escalate"] is False
    paths = [(c.path, c.scope) for c in lab.simulator.hosts["PC031"].printers.connections]
    assert (HP_QUEUE, "machine") in paths
    [followup] = [f for f in lab.glpi.items["ITILFollowup"].values() if f["items_id"] == TICKET]
    content = html.unescape(followup["content"])
    assert "<td>PC031</td><td>corrigé</td>" in content and "<td>PC001</td><td>déjà OK</td>" in content


def test_printer_missing_for_one_user_needs_their_session(lab):
    out = play(lab, "printer-missing.yml", "-t", "PC031", "--param", f"printer={HP_QUEUE}",
               "--param", "user=jdupont", "--json")  # fmt: skip
    assert out.code == 1, out.stderr
    [target, summary] = [json.loads(line) for line in out.stdout.splitlines()]
    assert [s["status"] for s in target["steps"]] == ["already-ok", "error"]
    assert "session" in target["steps"][1]["error"]["message"]
    assert summary["escalation"]["state"] == "no-ticket" and "escalate to Support N2" in out.stderr
    assert (HP_QUEUE, "machine") not in [(c.path, c.scope) for c in lab.simulator.hosts["PC031"].printers.connections]


@pytest.mark.parametrize(
    ("host", "printer", "says"),
    [
        ("PC033", "\\\\print02\\Accounting", "445"),
        ("PC034", "\\\\print01\\Xerox-4th", "RestrictDriverInstallationToAdministrators"),
    ],
)
def test_printer_missing_escalates_what_l1_cannot_fix_and_removes_nothing(lab, host, printer, says):
    before = [(c.path, c.scope, c.local_status) for c in lab.simulator.hosts[host].printers.connections]
    out = play(lab, "printer-missing.yml", "-t", host, "--param", f"printer={printer}",
               "--ticket", str(TICKET), "--json")  # fmt: skip
    assert out.code == 1, out.stderr
    [target, summary] = [json.loads(line) for line in out.stdout.splitlines()]
    reconnect = target["steps"][1]
    assert target["escalate"] is True  # the target's line comes first; the summary says it was done
    assert says in (reconnect["summary"] if reconnect["status"] == "failed" else reconnect["error"]["message"])
    assert summary["escalation"]["state"] == "escalated"
    after = [(c.path, c.scope, c.local_status) for c in lab.simulator.hosts[host].printers.connections]
    assert after == before


def test_printer_missing_refuses_a_malformed_printer_path_before_sending_it(lab):
    out = play(lab, "printer-missing.yml", "-t", "PC031", "--param", "printer=print01/HP", "--json")
    assert out.code == 2
    [target, _summary] = [json.loads(line) for line in out.stdout.splitlines()]
    assert target["steps"][1]["error"]["kind"] == "bad-input"
    assert [r["action"] for r in lab.simulator.hosts["PC031"].received] == ["spooler-restart"]


# -- the AD playbooks on a real Samba DC ------------------------------------------------------


@pytest.fixture
def ad(samba_dc: SambaDC, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("L1FIX_HOME", str(home))
    monkeypatch.setenv("L1FIX_TEST_AD_PASSWORD", samba_dc.admin_password)
    (home / "config.toml").write_text(samba_dc.config_toml())
    return samba_dc, home, load_config()


def lock_out(dc: SambaDC, user: str) -> None:
    for _ in range(3):
        ok, message = dc.try_bind(f"{user}@l1fix.test", "Wrong-Password-9x")
        assert not ok and ("data 52e" in message or "data 775" in message)


def test_user_locked_out_unlocks_a_locked_account_and_leaves_a_fine_one_alone(ad):
    dc, _home, config = ad
    pb = load_playbook(PLAYBOOKS / "user-locked-out.yml")
    name, password = dc.add_user("plk")
    [fine] = run_playbook(pb, [name], config=config)
    assert fine.status == "already-ok" and [s.status for s in fine.steps] == ["already-ok", "skipped"]
    assert fine.steps[1].reason == "when: steps.status.before.locked is false"

    lock_out(dc, name)
    [fixed] = run_playbook(pb, [name], config=config)
    assert fixed.status == "fixed", fixed.headline
    assert [s.status for s in fixed.steps] == ["already-ok", "fixed"]
    assert fixed.steps[0].result.before["locked"] is True and fixed.steps[1].result.after["locked"] is False
    assert dc.try_bind(f"{name}@l1fix.test", password) == (True, "")


def test_forgot_password_unlocks_resets_and_shows_the_password_once(ad):
    dc, home, _config = ad
    name, _old = dc.add_user("pfg")
    lock_out(dc, name)
    out = run_cli("play", str(PLAYBOOKS / "forgot-password-ad.yml"), "-t", name, "--json", home=home)
    assert out.code == 0, out.stderr
    [target, summary] = [json.loads(line) for line in out.stdout.splitlines()]
    assert [s["status"] for s in target["steps"]] == ["already-ok", "fixed", "fixed"]
    assert summary["exit_code"] == 0
    shown = dict(line.split(": ", 2)[1:] for line in out.stderr.splitlines() if line.startswith(f"{name}: "))
    password = shown["temporary password"]
    assert shown["read back"]
    ok, message = dc.try_bind(f"{name}@l1fix.test", password)
    assert not ok and "data 773" in message  # the right password, to change at next logon: not locked
    assert password not in out.stdout
    journal = b"".join(p.read_bytes() for p in home.glob("journal.sqlite3*"))
    assert password.encode() not in journal


def test_forgot_password_escalates_a_protected_account(ad):
    dc, _home, config = ad
    name, _ = dc.add_user("padm")
    dc.add_to_group("Domain Admins", name)
    [outcome] = run_playbook(load_playbook(PLAYBOOKS / "forgot-password-ad.yml"), [name], config=config)
    assert outcome.status == "error" and outcome.error.kind == "refused" and outcome.exit_code == 2
    assert [s.status for s in outcome.steps] == ["already-ok", "skipped", "error"]
    assert outcome.escalate and outcome.escalation == {
        "to": "Support N2",
        "state": "no-ticket",
        "note": "The AD password could not be reset by l1fix's forgot-password-ad playbook.",
    }
    assert outcome.revealed == [] and Journal(config.journal_path).list(target=name)

"""playbooks/outlook-broken.yml end to end: the real CLI, the lab's simulated PCs (PC024–PC029), the GLPI stand-in.

The lab's Outlook problem hosts are described in `l1fix.lab.outlook`; the playbook flushes the
DNS cache, then resets the user's Outlook profile, and escalates to "Messaging > N2" when the
reset is refused or fails.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import run_cli
from l1fix.lab.outlook import BACKUP_ROOT
from l1fix.playbook import load_playbook

PLAYBOOK = Path(__file__).resolve().parent.parent / "playbooks" / "outlook-broken.yml"
TICKET = 1234
GROUP = "Messaging > N2"
STALE_DNS = ["autodiscover.corp.com", "mail.corp.com"]  # cached before the mailbox moved
HOSTILE = ["{{ target }}", "{% raw %}x", "$(Stop-Computer -Force)", "it's `whoami`", 'say "hi"', "ünïcødé [x]*?"]


@pytest.fixture
def messaging(lab: Any) -> Any:
    """The lab, which has the messaging team's level-2 group (GLPI: a child group N2 of Messaging)."""
    [group] = [g for g in lab.glpi.items["Group"].values() if g.get("completename") == GROUP]
    assert group["name"] == "N2"
    return lab


def play(lab: Any, target: str, *args: str) -> tuple[int, list[dict[str, Any]], str]:
    """`l1fix play playbooks/outlook-broken.yml -t TARGET ARGS --json`: exit code, parsed lines, stderr."""
    out = run_cli("--profile", "lab", "play", str(PLAYBOOK), "-t", target, *args, "--json", home=lab.home)
    return out.code, [json.loads(line) for line in out.stdout.splitlines()], out.stderr


def steps(line: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in line["steps"]}


def snapshot(pc: Any) -> tuple[Any, ...]:
    """What the playbook may change on a PC: hives, files, backups, Outlook processes, DNS cache."""
    out = pc.outlook
    files = sorted((f.path, f.size) for f in pc.files)
    return copy.deepcopy((out.hives, out.backups, out.processes)), files, list(pc.dns_cache)


def followups(lab: Any) -> list[dict[str, Any]]:
    return [f for f in lab.glpi.items["ITILFollowup"].values() if f["items_id"] == TICKET]


def group_assigned(lab: Any, name: str) -> bool:
    groups = {g["id"] for g in lab.glpi.items["Group"].values() if g["completename"] == name}
    return any(
        link["tickets_id"] == TICKET and link["groups_id"] in groups for link in lab.glpi.items["Group_Ticket"].values()
    )


def test_stale_dns_and_profile_are_reset_with_one_followup_then_a_second_run_is_already_ok(messaging: Any) -> None:
    lab = messaging
    pc = lab.simulator.hosts["PC024"]
    pc.dns_cache.extend(STALE_DNS)
    code, lines, stderr = play(lab, "PC024", "--param", "user=jdupont", "--ticket", str(TICKET), "--yes")
    assert code == 0, stderr
    [target, summary] = lines
    assert target["type"] == "target" and target["status"] == "fixed" and target["exit_code"] == 0
    assert target["counts"] == {"fixed": 2, "already-ok": 0, "failed": 0}
    dns, outlook = steps(target)["dns"], steps(target)["outlook"]
    assert dns["status"] == "fixed" and "2 names" in dns["summary"]
    assert outlook["status"] == "fixed" and "PST" in outlook["summary"]
    [folder] = pc.outlook.backups
    assert folder.startswith(BACKUP_ROOT + "\\jdupont\\")
    assert f"Backup: {folder} (outlook-reset --undo restores it)" in outlook["summary"]
    # The simulated PC: cache empty, profile gone (backed up), OST renamed aside.
    sid = pc.profiles[0].sid
    assert pc.dns_cache == [] and pc.outlook.hives[sid].profiles is None
    stamp = folder.rpartition("\\")[2]
    ost = [f.path.rpartition("\\")[2] for f in pc.files if "jdupont@corp.com.ost" in f.path]
    assert ost == [f"jdupont@corp.com.ost.l1fix-{stamp}.bak"]
    assert summary["type"] == "summary" and summary["statuses"] == {"fixed": 1} and summary["exit_code"] == 0
    assert summary["followup"]["state"] == "sent" and summary["escalation"] is None
    [followup] = followups(lab)  # one followup for the whole playbook, not one per step
    assert folder in followup["content"] and "outlook-broken" in followup["content"]
    assert not group_assigned(lab, GROUP)

    code, lines, stderr = play(lab, "PC024", "--param", "user=CORP\\jdupont", "--yes")
    assert code == 0, stderr
    assert lines[0]["status"] == "already-ok" and [s["status"] for s in lines[0]["steps"]] == ["already-ok"] * 2
    assert list(pc.outlook.backups) == [folder]  # nothing to reset: no second backup
    assert len(followups(lab)) == 1


def test_without_yes_nothing_runs(messaging: Any) -> None:
    lab = messaging
    pc = lab.simulator.hosts["PC024"]
    pc.dns_cache.extend(STALE_DNS)
    before = snapshot(pc)
    out = run_cli(
        "--profile", "lab", "play", str(PLAYBOOK), "-t", "PC024", "--param", "user=jdupont", "--ticket", str(TICKET),
        home=lab.home,
    )  # fmt: skip
    assert out.code == 2 and out.stdout == ""
    [line] = out.stderr.strip().splitlines()
    assert "step outlook runs outlook-reset, which needs confirmation" in line and "--yes" in line
    assert pc.received == [] and snapshot(pc) == before  # not even the DNS flush or a check ran
    assert followups(lab) == [] and not group_assigned(lab, GROUP)


def test_outlook_running_is_refused_and_the_ticket_escalated(messaging: Any) -> None:
    lab = messaging
    pc = lab.simulator.hosts["PC025"]
    before = snapshot(pc)
    code, [target, summary], stderr = play(lab, "PC025", "-p", "user=amartin", "--ticket", str(TICKET), "--yes")
    assert code == 1
    assert target["status"] == "error" and target["exit_code"] == 1 and target["error"]["kind"] == "remote-error"
    dns, outlook = steps(target)["dns"], steps(target)["outlook"]
    assert dns["status"] == "already-ok" and outlook["status"] == "error"
    assert "Outlook is running for CORP\\amartin (process 7312)" in outlook["error"]["message"]
    assert "--close-outlook" in outlook["error"]["message"]
    assert snapshot(pc) == before  # Outlook still runs, the profile is untouched, no backup
    assert summary["escalation"]["state"] == "escalated" and summary["escalation"]["to"] == GROUP
    assert f"ticket {TICKET} escalated to {GROUP}" in stderr  # target lines stream before the ticket is touched
    assert group_assigned(lab, GROUP)
    [followup] = followups(lab)
    assert "Outlook is running" in followup["content"] and "Messaging" in followup["content"]


def test_close_outlook_and_keep_ost_reach_the_reset(lab: Any) -> None:
    pc = lab.simulator.hosts["PC025"]
    ost = sorted(f.path for f in pc.files if f.path.endswith(".ost"))
    args = ("-p", "user=amartin", "-p", "close_outlook=true", "-p", "keep_ost=true", "--yes")
    code, [target, _summary], stderr = play(lab, "PC025", *args)
    assert code == 0, stderr
    assert target["status"] == "fixed"
    summary = steps(target)["outlook"]["summary"]
    assert "Outlook closed (process 7312)" in summary and "OST files kept (--keep-ost)" in summary
    assert pc.outlook.processes == {} and sorted(f.path for f in pc.files if f.path.endswith(".ost")) == ost
    [payload] = [p for p in pc.received if p["action"] == "outlook-reset"]
    assert payload["params"] == {"user": "amartin", "keep-ost": True, "close-outlook": True, "undo": False}


def test_a_user_without_a_profile_on_the_pc_is_an_error_to_escalate(messaging: Any) -> None:
    lab = messaging
    pc = lab.simulator.hosts["PC027"]
    before = snapshot(pc)
    code, [target, summary], stderr = play(lab, "PC027", "-p", "user=jdupont", "--yes")
    assert code == 1
    assert target["status"] == "error" and steps(target)["outlook"]["status"] == "error"
    assert "User 'CORP\\jdupont' has no profile on this computer" in target["error"]["message"]
    assert snapshot(pc) == before
    # No ticket: the technician is told whom to hand the call to.
    assert summary["escalation"] == {"to": GROUP, "state": "no-ticket", "note": load_playbook(PLAYBOOK).escalate.note}
    assert f"escalate to {GROUP}: Outlook's profile could not be reset" in stderr
    assert not group_assigned(lab, GROUP)


def test_a_backup_that_cannot_be_written_fails_removes_nothing_and_escalates(messaging: Any) -> None:
    lab = messaging
    pc = lab.simulator.hosts["PC028"]
    before = snapshot(pc)
    code, [target, summary], _stderr = play(lab, "PC028", "-p", "user=jdupont", "--ticket", str(TICKET), "--yes")
    assert code == 1 and target["status"] == "failed" and target["error"] is None
    assert "nothing was removed" in steps(target)["outlook"]["summary"]
    assert snapshot(pc) == before
    assert summary["escalation"]["state"] == "escalated" and group_assigned(lab, GROUP)


def test_a_failed_dns_flush_does_not_block_the_reset_nor_escalate(messaging: Any) -> None:
    lab = messaging
    pc = lab.simulator.hosts["PC024"]
    pc.services["Dnscache"].state = "Stopped"
    code, [target, summary], _stderr = play(lab, "PC024", "-p", "user=jdupont", "--ticket", str(TICKET), "--yes")
    assert code == 1 and target["status"] == "failed"
    assert [s["status"] for s in target["steps"]] == ["failed", "fixed"]
    assert "service-restart --service Dnscache" in steps(target)["dns"]["summary"]
    assert len(pc.outlook.backups) == 1 and summary["escalation"] is None and not group_assigned(lab, GROUP)


@pytest.mark.parametrize("login", HOSTILE)
def test_a_hostile_user_parameter_arrives_as_data(lab: Any, login: str) -> None:
    pc = lab.simulator.hosts["PC024"]
    before = snapshot(pc)
    code, [target, _summary], _stderr = play(lab, "PC024", "-p", f"user={login}", "--yes")
    assert code == 1 and target["status"] == "error"
    assert f"User '{login}' is not an account this computer knows" in target["error"]["message"]
    assert [p["params"]["user"] for p in pc.received if p["action"] == "outlook-reset"] == [login]
    assert pc.scripts_run == ["dns_flush", "outlook_reset"] and snapshot(pc) == before


def test_the_user_parameter_is_required(lab: Any) -> None:
    out = run_cli("--profile", "lab", "play", str(PLAYBOOK), "-t", "PC024", "--yes", home=lab.home)
    assert out.code == 2 and "needs --param user=" in out.stderr and lab.simulator.hosts["PC024"].received == []

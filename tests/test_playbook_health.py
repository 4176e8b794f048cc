"""slow-pc and pc-health-check, end to end through the real CLI against the lab (real WinRM, GLPI stand-in),
and what a diagnosis's `findings` does to a playbook run: target status, exit code 6, --json, table, followup.
"""

from __future__ import annotations

import html
import json
from typing import Any

import pytest

from l1fix.errors import EXIT_FAILED, EXIT_FINDINGS, EXIT_INTERNAL, EXIT_OK
from l1fix.lab.diagnostics import GB
from l1fix.playbook import (
    StepOutcome,
    TargetOutcome,
    exit_code,
    load_playbook,
    parse_playbook,
    run_playbook,
    standing,
)
from test_playbooks_ready import PLAYBOOKS, TICKET, play

FLOOR = ["PC001", "PC036", "PC041", "PC042"]


def targets(*names: str) -> list[str]:
    return [a for n in names for a in ("-t", n)]


def lines_of(out: Any) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    return {line["target"]: line for line in lines if line["type"] == "target"}, lines[-1]


def snapshot(host: Any) -> Any:
    """What a fix could change on a simulated PC."""
    return (
        {n: (s.state, s.start_type) for n, s in host.services.items()},
        [(j.id, j.status) for j in host.jobs],
        list(host.spool_files),
        [f.path for f in host.files],
        host.free_bytes,
        dict(host.gp_last_refresh),
        list(host.dns_cache),
    )


def followups(lab: Any) -> list[str]:
    """The ticket's followups as HTML (GLPI stores them entity-encoded)."""
    return [html.unescape(f["content"]) for f in lab.glpi.items["ITILFollowup"].values() if f["items_id"] == TICKET]


def only(out: Any) -> dict[str, Any]:
    """The one target line of a --json run on one target."""
    [line] = lines_of(out)[0].values()
    return line


def statuses(line: dict[str, Any]) -> dict[str, str]:
    return {s["id"]: s["status"] for s in line["steps"]}


# -- slow-pc ----------------------------------------------------------------------------------


def test_slow_pc_cleans_a_nearly_full_disk_and_the_second_diagnosis_finds_it_fine(lab):
    pc = lab.simulator.hosts["PC036"]
    old = [f.path for f in pc.files if f.age_days > 1]
    assert pc.free_bytes == 5 * GB and len(old) == 5  # the diagnosis says 2.1 % free
    out = play(lab, "slow-pc.yml", "-t", "PC036", "--ticket", str(TICKET), "--json")
    assert out.code == EXIT_OK, out.stdout + out.stderr
    line, summary = only(out), lines_of(out)[1]
    assert line["status"] == "fixed" and line["exit_code"] == 0 and line["suggestions"] == []
    assert statuses(line) == {
        "diag": "findings",
        "temp_clean": "fixed",
        "service": "skipped",
        "reboot": "skipped",
        "recheck": "already-ok",
    }
    assert line["counts"] == {"fixed": 1, "already-ok": 1, "failed": 0}
    # The lab is consistent: temp-clean's deleted files are the space diagnose then reads.
    assert not set(old) & {f.path for f in pc.files}
    assert [f.path for f in pc.files if f.path.endswith("fresh-download.tmp")]  # today's file kept
    assert pc.free_bytes > 13 * GB
    assert pc.scripts_run.count("diagnose") == 2 and "temp_clean" in pc.scripts_run
    assert "reboot" not in pc.scripts_run and "service" not in pc.scripts_run
    assert summary["exit_code"] == 0 and summary["escalation"] is None and summary["followup"]["state"] == "sent"
    [followup] = followups(lab)
    assert (
        "slow-pc sur PC036 : corrigé" in followup and "<strong>temp_clean</strong> (temp-clean) : corrigé" in followup
    )


def test_slow_pc_leaves_a_healthy_pc_alone(lab):
    pc = lab.simulator.hosts["PC001"]
    before = snapshot(pc)
    out = play(lab, "slow-pc.yml", "-t", "PC001")
    assert out.code == EXIT_OK, out.stdout + out.stderr
    assert "[1/1] PC001 already-ok" in out.stdout
    assert snapshot(pc) == before and pc.scripts_run.count("diagnose") == 1
    assert "temp_clean" not in pc.scripts_run  # C: 34 % free: above min_free_percent (10)


def test_slow_pc_cleans_under_the_threshold_even_when_diagnose_does_not_ask(lab):
    pc = lab.simulator.hosts["PC019"]  # 3 GB free of 237 GB (1.3 %): diagnose suggests temp-clean too
    pc.free_bytes = 20 * GB  # 8.4 %: diagnose (under 5 %) is fine with it, slow-pc (under 10 %) is not
    out = play(lab, "slow-pc.yml", "-t", "PC019", "--json")
    line = only(out)
    assert out.code == EXIT_OK and line["status"] == "fixed", out.stdout
    assert statuses(line)["diag"] == "already-ok" and statuses(line)["temp_clean"] == "fixed"
    assert statuses(line)["recheck"] == "skipped"  # nothing was found: nothing to check again
    again = play(lab, "slow-pc.yml", "-t", "PC019", "--param", "min_free_percent=5", "--json")
    assert statuses(only(again))["temp_clean"] == "skipped"


def test_slow_pc_escalates_a_failing_disk_and_tells_what_is_left(lab):
    pc = lab.simulator.hosts["PC038"]
    before = snapshot(pc)
    out = play(lab, "slow-pc.yml", "-t", "PC038", "--ticket", str(TICKET), "--json")
    assert out.code == EXIT_FINDINGS, out.stdout + out.stderr
    targets_, summary = lines_of(out)
    line = targets_["PC038"]
    assert line["status"] == "findings" and line["exit_code"] == EXIT_FINDINGS
    assert statuses(line) == {
        "diag": "findings",
        "temp_clean": "skipped",
        "service": "skipped",
        "reboot": "skipped",
        "recheck": "findings",
    }
    [disk] = line["suggestions"]
    assert disk["kind"] == "escalate" and disk["reason"].startswith("7 disk error events in 7 days")
    assert summary["escalation"]["state"] == "escalated" and summary["escalation"]["to"] == "Support N2"
    assert summary["statuses"] == {"findings": 1} and summary["exit_code"] == EXIT_FINDINGS
    assert "ticket 1234 escalated to Support N2" in out.stderr
    assert snapshot(pc) == before  # nothing was changed on a failing disk
    [content] = followups(lab)
    assert "diagnostic : problèmes trouvés" in content and "À escalader au niveau 2" in content
    assert "7 disk error events" in content and "Escalad" in content


def test_slow_pc_restarts_a_stopped_allowed_service_then_escalates_what_is_left(lab):
    pc = lab.simulator.hosts["PC041"]
    out = play(lab, "slow-pc.yml", "-t", "PC041")
    assert out.code == EXIT_FINDINGS, out.stdout + out.stderr
    assert pc.services["WSearch"].state == "Running"  # allowed, suggested by the diagnosis: restarted
    assert pc.services["CorpAgent"].state == "Stopped"  # not on the allow-list: left for level 2
    assert "[1/1] PC041 findings (recheck: " in out.stdout and "escalate: CorpAgent" in out.stdout
    assert "escalate to Support N2" in out.stderr  # no ticket: the technician is told whom to call
    table = out.stdout.splitlines()[-2:]
    assert table[0].split()[:2] == ["PC041", "findings"] and "1 findings" in table[1]


def test_slow_pc_reboots_only_when_asked_and_confirmed(lab):
    pc = lab.simulator.hosts["PC037"]  # reboot pending, up 45 days
    out = play(lab, "slow-pc.yml", "-t", "PC037", "--param", "reboot_notice_minutes=20")
    assert out.code == 2 and "needs confirmation" in out.stderr + out.stdout and "--yes" in out.stderr + out.stdout
    assert pc.scripts_run == []  # refused before anything ran
    asked = play(lab, "slow-pc.yml", "-t", "PC037", "--param", "reboot_notice_minutes=20", "--yes", "--json")
    line = only(asked)
    # No second diagnosis (it would still see the restart pending): the findings stand until the PC restarts.
    assert asked.code == EXIT_FINDINGS and line["status"] == "findings", asked.stdout
    assert line["counts"]["fixed"] == 1 and line["suggestions"][0]["action"] == "reboot"
    assert statuses(line) == {
        "diag": "findings",
        "temp_clean": "skipped",
        "service": "skipped",
        "reboot": "fixed",
        "recheck": "skipped",  # the restart is the fix: a diagnosis before it would still see it pending
    }
    sent = next(p for p in pc.received if p["action"] == "reboot")
    assert sent["params"]["notice-minutes"] == 20 and "restarts in 20 minutes" in sent["params"]["message"]


def test_slow_pc_never_reboots_a_pc_the_diagnosis_sends_to_level_2(lab):
    out = play(lab, "slow-pc.yml", "-t", "PC038", "--param", "reboot_notice_minutes=5", "--yes", "--json")
    line = only(out)
    assert statuses(line)["reboot"] == "skipped" and line["status"] == "findings"
    assert "reboot" not in lab.simulator.hosts["PC038"].scripts_run


# -- pc-health-check --------------------------------------------------------------------------


def test_health_check_of_a_floor_is_read_only_and_reports_findings_per_pc(lab):
    inventory = lab.home / "lab" / "inventory.yml"
    inventory.write_text(inventory.read_text() + "groups:\n  floor2: [" + ", ".join(FLOOR) + "]\n")
    hosts = {n: lab.simulator.hosts[n] for n in FLOOR}
    before = {n: snapshot(h) for n, h in hosts.items()}
    out = play(lab, "pc-health-check.yml", "--group", "floor2", "--ticket", str(TICKET), "--json")
    assert out.code == EXIT_FINDINGS, out.stdout + out.stderr
    by_target, summary = lines_of(out)
    assert {n: line["status"] for n, line in by_target.items()} == {
        "PC001": "already-ok",
        "PC036": "findings",
        "PC041": "findings",
        "PC042": "findings",
    }
    assert {n: snapshot(h) for n, h in hosts.items()} == before  # nothing changed anywhere
    assert all(set(h.scripts_run) == {"diagnose", "spooler", "gpupdate"} for h in hosts.values())
    assert all(p["steps"] == ["check"] for h in hosts.values() for p in h.received)
    assert [s["action"] for s in by_target["PC042"]["suggestions"]] == ["spooler-restart"]
    assert [s["action"] for s in by_target["PC036"]["suggestions"]] == ["temp-clean"]
    assert {s["action"] for s in by_target["PC041"]["suggestions"]} == {
        "temp-clean",
        "service-restart",
        "dns-flush",
        "gpupdate",
        None,
    }
    assert statuses(by_target["PC042"]) == {
        "diag": "findings",
        **dict.fromkeys(("spooler", "temp_clean", "dns_flush", "gpupdate", "recheck"), "skipped"),
    }
    assert summary["statuses"] == {"already-ok": 1, "findings": 3} and summary["escalation"] is None
    [content] = followups(lab)  # one for the whole floor
    assert "pc-health-check sur 4 cibles : 1 déjà OK, 3 à examiner (diagnostic)" in content
    assert "<td>PC042</td><td>à examiner (diagnostic)</td>" in content
    assert "<strong>PC042</strong> : diag: run l1fix spooler-restart PC042" in content
    assert "escalate: CorpAgent" in content


def test_health_check_with_safe_fixes_fixes_what_it_may_and_leaves_the_rest(lab):
    pc042, pc041 = lab.simulator.hosts["PC042"], lab.simulator.hosts["PC041"]
    assert len(pc042.jobs) == 3
    out = play(lab, "pc-health-check.yml", *targets(*FLOOR), "--param", "apply_safe_fixes=true", "--json")
    by_target, summary = lines_of(out)
    assert out.code == EXIT_FINDINGS, out.stdout + out.stderr  # PC041 keeps findings for level 2
    assert {n: line["status"] for n, line in by_target.items()} == {
        "PC001": "already-ok",
        "PC036": "fixed",
        "PC041": "findings",
        "PC042": "fixed",
    }
    assert pc042.jobs == [] and pc042.services["Spooler"].state == "Running"
    assert (
        statuses(by_target["PC042"])["spooler"] == "fixed" and statuses(by_target["PC042"])["recheck"] == "already-ok"
    )
    assert statuses(by_target["PC036"])["temp_clean"] == "fixed"
    pc041_steps = statuses(by_target["PC041"])
    assert pc041_steps["gpupdate"] == "fixed" and pc041_steps["spooler"] == "skipped"
    assert pc041_steps["dns_flush"] == "fixed" and pc041.dns_cache == []  # the stale answer is gone
    assert pc041_steps["recheck"] == "findings"
    assert pc041.services["WSearch"].state == "Stopped"  # service restarts are not a health check's
    left = {s["action"] for s in by_target["PC041"]["suggestions"]}
    assert {"gpupdate", "dns-flush"}.isdisjoint(left) and "service-restart" in left and None in left
    assert summary["statuses"] == {"already-ok": 1, "fixed": 2, "findings": 1}


def test_health_check_needs_no_confirmation_and_changes_nothing_in_a_dry_run(lab):
    pc = lab.simulator.hosts["PC042"]
    out = play(lab, "pc-health-check.yml", "-t", "PC042", "--param", "apply_safe_fixes=true", "--dry-run", "--json")
    line = only(out)
    assert out.code == EXIT_FINDINGS and line["status"] == "findings", out.stdout
    assert statuses(line)["spooler"] == "skipped" and len(pc.jobs) == 3


# -- findings in the engine -------------------------------------------------------------------


def outcome(status: str, *steps: tuple[str, str]) -> TargetOutcome:
    return TargetOutcome(
        "p", "pb", "PC", status, [StepOutcome(f"s{i}", a, st) for i, (a, st) in enumerate(steps)], "", 0.0
    )


def test_a_re_diagnosis_replaces_the_findings_and_findings_rank_between_a_fix_and_a_failure():
    first, fix, again = ("diagnose", "findings"), ("temp-clean", "fixed"), ("diagnose", "already-ok")
    assert [s.id for s in standing(outcome("fixed", first, fix, again).steps)] == ["s1", "s2"]
    assert [s.id for s in standing(outcome("findings", first, fix).steps)] == ["s0", "s1"]  # no re-check: it stands
    found = outcome("findings", first, fix)
    assert found.exit_code == EXIT_FINDINGS and found.headline == "s0"  # no suggestions recorded: the step's id
    failed, ok = outcome("failed", ("temp-clean", "failed")), outcome("already-ok", again)
    assert exit_code([ok, found, ok]) == EXIT_FINDINGS
    assert exit_code([found, failed, ok]) == EXIT_FAILED  # a failure says more than a finding
    assert exit_code([found, outcome("error")]) == EXIT_INTERNAL
    assert exit_code([ok]) == EXIT_OK


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("  - action: temp-clean\n    on_findings: stop\n", "temp-clean changes things and never has findings"),
        ("  - action: diagnose\n    on_findings: escalate\n", "escalate needs an `escalate:` block"),
        ("  - action: diagnose\n    on_findings: later\n", "expected one of continue, stop, escalate"),
    ],
)
def test_on_findings_is_checked(step: str, message: str):
    from l1fix.errors import BadInput

    with pytest.raises(BadInput, match=message):
        parse_playbook("name: x\nsteps:\n" + step, "x.yml")


def test_the_ready_playbooks_explain_findings():
    for name in ("slow-pc", "pc-health-check"):
        pb = load_playbook(PLAYBOOKS / f"{name}.yml")
        assert "findings" in pb.description and "exit code 6" in pb.description
        assert pb.steps[0].action == "diagnose" and pb.steps[-1].action == "diagnose"
    assert load_playbook(PLAYBOOKS / "slow-pc.yml").steps[-1].on_findings == "escalate"


def test_on_findings_stop_leaves_the_fixes_out(lab):
    pb = parse_playbook(
        "name: look\nsteps:\n  - {id: diag, action: diagnose, on_findings: stop}\n  - {action: spooler-restart}\n"
    )
    [found, fine] = run_playbook(pb, ["PC042", "PC001"], config=lab.config)
    assert found.status == "findings" and found.exit_code == EXIT_FINDINGS and not found.escalate
    assert [s.status for s in found.steps] == ["findings", "not-run"]
    assert found.steps[1].reason == "step diag has findings (on_findings: stop)"
    assert len(lab.simulator.hosts["PC042"].jobs) == 3  # the fix never ran
    assert fine.status == "already-ok" and [s.status for s in fine.steps] == ["already-ok", "already-ok"]

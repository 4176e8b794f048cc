"""Followups on GLPI tickets, end to end: lab PCs, the GLPI stand-in, the real CLI. Nothing lost or doubled."""

from __future__ import annotations

import json

from conftest import run_cli

TICKET = 1234


def followups(lab, ticket: int = TICKET) -> list[dict]:
    return [f for f in lab.glpi.items.get("ITILFollowup", {}).values() if f["items_id"] == ticket]


def fix(lab, *args: str):
    return run_cli("--profile", "lab", "spooler-restart", "PC042", "--json", *args, home=lab.home)


def test_a_fix_with_a_ticket_leaves_one_followup(lab):
    out = fix(lab, "--ticket", str(TICKET))
    result = out.json()
    assert out.code == 0 and result["status"] == "fixed"
    assert result["followup"]["state"] == "sent"
    [followup] = followups(lab)
    assert followup["id"] == result["followup"]["followup_id"]
    assert followup["is_private"] == 1  # private unless the config says otherwise
    content = followup["content"]
    for expected in (
        "spooler-restart sur PC042",
        "corrigé",
        "Constat",
        "Vérification",
        f"l1fix-run-{result['run_id']}",
    ):
        assert expected in content
    journaled = run_cli("--profile", "lab", "journal", "--ticket", str(TICKET), home=lab.home)
    assert "(followup sent)" in journaled.stdout


def test_glpi_down_the_run_completes_and_sync_delivers_later(lab):
    lab.glpi.stop()
    out = fix(lab, "--ticket", str(TICKET))
    assert out.code == 0 and out.json()["status"] == "fixed"  # exit code unchanged
    assert out.json()["followup"]["state"] == "queued"
    assert "queued" in out.stderr and "l1fix sync" in out.stderr
    assert "(followup queued)" in run_cli("--profile", "lab", "journal", home=lab.home).stdout
    down = run_cli("--profile", "lab", "sync", home=lab.home)
    assert down.code == 3 and "1 still queued" in down.stdout
    lab.glpi.start()
    up = run_cli("--profile", "lab", "sync", home=lab.home)
    assert up.code == 0 and "1 followup(s) delivered" in up.stdout
    assert len(followups(lab)) == 1
    again = run_cli("--profile", "lab", "sync", home=lab.home)
    assert "0 followup(s) delivered" in again.stdout and len(followups(lab)) == 1


def posts(lab, itemtype: str) -> list[dict]:
    return [r for r in lab.glpi.requests_log if r["method"] == "POST" and r["path"].endswith(f"/{itemtype}")]


def test_glpi_dies_mid_delivery_exactly_one_followup_after_sync(lab):
    # The run's output is long: its document goes first, then the followup (2 POSTs).
    lab.glpi.drop_after_commit(2)  # each is stored, then the connection drops: no answer
    out = fix(lab, "--ticket", str(TICKET))
    assert out.json()["followup"]["state"] == "queued"
    assert len(posts(lab, "Document")) == 1 and followups(lab) == []  # the document landed, unanswered
    synced = run_cli("--profile", "lab", "sync", home=lab.home)
    assert synced.code == 3  # the followup's answer was lost too
    assert len(followups(lab)) == 1  # but it landed
    synced = run_cli("--profile", "lab", "sync", home=lab.home)
    assert synced.code == 0 and "1 followup(s) delivered" in synced.stdout
    assert len(followups(lab)) == 1 and len(posts(lab, "ITILFollowup")) == 1  # found by its run id: not re-sent
    assert len(lab.glpi.items["Document"]) == 1 and len(posts(lab, "Document")) == 1


def test_the_next_run_delivers_what_an_earlier_run_left_queued(lab):
    lab.glpi.stop()
    fix(lab, "--ticket", str(TICKET))
    lab.glpi.start()
    out = run_cli("--profile", "lab", "spooler-restart", "PC001", "--json", home=lab.home)  # no ticket
    assert out.json()["status"] == "already-ok"
    assert len(followups(lab)) == 1


def test_unknown_ticket_denied_ticket_and_wrong_app_token_queue_with_a_clear_reason(lab):
    out = fix(lab, "--ticket", "99999")
    assert out.code == 0 and "ticket 99999 not found" in out.json()["followup"]["error"]
    lab.glpi.deny("tech1", "Ticket", TICKET)
    out = fix(lab, "--ticket", str(TICKET))
    assert "may not read ticket 1234" in out.json()["followup"]["error"]
    (lab.home / "lab" / "glpi-app-token").write_text("0" * 40)
    out = fix(lab, "--ticket", "1")
    assert "refused the App-Token" in out.json()["followup"]["error"]


def test_expired_session_is_renewed(lab):
    lab.glpi.stop()
    fix(lab, "--ticket", str(TICKET))
    lab.glpi.start()
    lab.glpi.expire_sessions()
    assert run_cli("--profile", "lab", "sync", home=lab.home).code == 0
    assert len(followups(lab)) == 1


def test_html_huge_and_non_utf8_output_arrive_escaped_and_attached(lab, monkeypatch):
    from l1fix.lab.wsman import CommandOutcome
    from l1fix.runner import execute_journaled

    bad = "<script>alert('x')</script>"
    doc = {"check": {"ok": False, "state": {}, "summary": bad}, "fix": {"summary": "done"}}
    doc["verify"] = {"ok": True, "state": {}, "summary": "ok"}
    stdout = "noise \udcff".encode("utf-8", "surrogateescape") + b"\xff\xfe " + b"x" * 200_000 + b"\r\n"
    stdout += json.dumps(doc).encode() + b"\r\n"
    monkeypatch.setattr(lab.simulator, "run_command", lambda *a: CommandOutcome(stdout))
    result = execute_journaled("spooler-restart", "PC042", config=lab.config, ticket=TICKET)
    assert result.status == "fixed" and result.followup["state"] == "sent"
    [followup] = followups(lab)
    body = next(r["body"] for r in lab.glpi.requests_log if r["path"].endswith("/ITILFollowup"))
    assert b"<script>" not in body and b"&lt;script&gt;" in body
    assert len(body) < 20_000  # capped; the rest is attached
    [document] = lab.glpi.items["Document"].values()
    data = lab.glpi.documents[document["id"]]
    assert len(data) > 200_000 and "\ufffd".encode() in data  # undecodable bytes replaced, not lost


def test_no_secret_in_any_request_the_ticket_system_received(lab):
    fix(lab, "--ticket", str(TICKET))
    secrets = [(lab.home / "lab" / name).read_text() for name in ("password", "glpi-user-token")]
    for request in lab.glpi.requests_log:
        for secret in secrets:
            assert secret.encode() not in request["body"]
            assert secret not in json.dumps(request["query"])
    app_token = (lab.home / "lab" / "glpi-app-token").read_text()
    assert all(app_token.encode() not in r["body"] for r in lab.glpi.requests_log)


def test_ticket_lifecycle_new_show_escalate_solve_close(lab, tmp_path):
    capture = tmp_path / "capture.txt"
    capture.write_bytes(b"error 0x0000011b")

    def cli(*args):
        return run_cli("--profile", "lab", "ticket", *args, home=lab.home)

    created = cli(
        "new",
        "--requester",
        "jdupont",
        "--category",
        "Impression",
        "--title",
        "Imprimante HS",
        "--description",
        "Plus rien ne sort",
        "--urgency",
        "4",
        "--assign-me",
        "--attach",
        str(capture),
        "--json",
    )
    assert created.code == 0, created.stderr
    ticket = created.json()["id"]
    assert lab.glpi.items["Ticket"][ticket]["urgency"] == 4
    [document] = [d for d in lab.glpi.items["Document"].values() if d["filename"] == "capture.txt"]
    assert lab.glpi.documents[document["id"]] == b"error 0x0000011b"

    misspelt = cli("new", "--requester", "jdupont", "--category", "Impresion", "--title", "t", "--description", "d")
    assert misspelt.code == 2 and "Impression" in misspelt.stderr

    run_cli("--profile", "lab", "spooler-restart", "PC013", "--ticket", str(ticket), home=lab.home)  # fails
    escalated = cli("escalate", str(ticket), "--to-group", "Support N2", "--note", "Spooler désactivé")
    assert escalated.code == 0, escalated.stderr
    links = lab.glpi.items.get("Group_Ticket", {}).values()
    assert any(link["tickets_id"] == ticket and link["type"] == 2 for link in links)
    assigned_users = [u for u in lab.glpi.items["Ticket_User"].values() if u["tickets_id"] == ticket and u["type"] == 2]
    assert assigned_users == []  # the L1 assignment was removed
    escalation = followups(lab, ticket)[-1]["content"]
    assert (
        "Support N2" in escalation and "spooler-restart sur PC013" in escalation and "Spooler désactivé" in escalation
    )

    shown = cli("show", str(ticket))
    assert "Imprimante HS" in shown.stdout and "Support N2" in shown.stdout and "escalad" in shown.stdout.lower()

    assert cli("solve", str(ticket), "--solution", "Spooler réactivé par N2").code == 0
    assert lab.glpi.items["Ticket"][ticket]["status"] == 5
    assert cli("close", str(ticket)).code == 0
    assert lab.glpi.items["Ticket"][ticket]["status"] == 6
    assert cli("show", "424242").code == 2


def test_computers_can_be_found_in_glpi(lab):
    config = lab.home / "config.toml"
    text = config.read_text().replace('login = "tech1"', 'login = "tech1"\ninventory_lookup = true')
    text = text.replace('transport = "ntlm"', f'transport = "ntlm"\nport = {lab.server.port}')  # the lab's WinRM port
    config.write_text(text)
    glpi = lab.glpi
    computer = glpi.add("Computer", name="COMPTA-07")
    port = glpi.add("NetworkPort", itemtype="Computer", items_id=computer, instantiation_type="NetworkPortEthernet")
    name = glpi.add("NetworkName", itemtype="NetworkPort", items_id=port, name="")  # an IP only: no DNS
    glpi.add("IPAddress", itemtype="NetworkName", items_id=name, name=lab.server.address_of("PC042"), version=4)
    out = run_cli("--profile", "lab", "spooler-restart", "COMPTA-07", "--json", home=lab.home)
    assert out.code == 0, out.stderr
    assert out.json()["status"] == "fixed"  # it reached the simulated PC at that address
    assert (lab.home / "cache" / "glpi-computers.json").exists()

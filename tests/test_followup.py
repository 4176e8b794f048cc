"""The followup text: what a person reads on the ticket, escaped, capped, in French or English."""

from __future__ import annotations

import base64

from l1fix.result import ErrorInfo, RunResult, Status
from l1fix.secrets import Secret
from l1fix.tickets.followup import marker, render


def a_run(**extra) -> RunResult:
    fields = {
        "run_id": "0123456789abcdef0123456789abcdef",
        "action": "spooler-restart",
        "target": "PC042",
        "status": Status.FIXED,
        "started_at": "2026-12-04T21:00:47+00:00",
        "technician": "tech1",
        "ticket": 1234,
        "steps": {"check": "3 stuck jobs", "fix": "Restarted; 3 jobs purged", "verify": "Running, queue empty"},
        "output": '{"check": {"ok": false}}',
        "duration_s": 0.54,
    }
    return RunResult(**{**fields, **extra})


def test_french_by_default_with_each_step_and_the_marker():
    followup = render(a_run())
    text = followup.content_html
    assert "l1fix — spooler-restart sur PC042 : corrigé" in text
    assert "Exécuté par tech1 le 2026-12-04 21:00:47 UTC (durée 0,5 s)." in text
    assert "<strong>Constat</strong> : 3 stuck jobs" in text
    assert "<strong>Action</strong> : Restarted; 3 jobs purged" in text
    assert "<strong>Vérification</strong> : Running, queue empty" in text
    assert followup.marker == marker(a_run().run_id) and followup.marker in text
    assert followup.attachment is None


def test_english_and_failed_status_says_escalate():
    text = render(a_run(status=Status.FAILED), language="en").content_html
    assert "spooler-restart on PC042: failed, the problem remains — escalate to level 2" in text
    assert "<strong>Found</strong>: 3 stuck jobs" in text


def test_error_run_shows_the_error():
    run = a_run(status=Status.ERROR, steps={}, error=ErrorInfo("unreachable", "PC042: cannot connect"))
    text = render(run, language="en").content_html
    assert "<strong>Error</strong>: PC042: cannot connect" in text


def test_html_in_output_and_summaries_arrives_escaped():
    run = a_run(steps={"check": "<script>alert(1)</script>"}, output="<b>bold</b> & <script>x()</script>")
    text = render(run).content_html
    assert "<script>" not in text and "<b>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&amp;" in text


def test_long_output_is_capped_and_attached_whole():
    output = "line ünïcødé\n" * 1000
    followup = render(a_run(output=output), excerpt_chars=500)
    assert len(followup.content_html) < 2000
    assert followup.attachment == output.strip().encode()
    assert followup.attachment_name == "l1fix-spooler-restart-PC042-01234567.txt"
    assert followup.attachment_name in followup.content_html
    payload = followup.payload(private=True)
    assert base64.b64decode(payload["attachment_b64"]) == followup.attachment and payload["private"] is True


def test_dry_run_says_nothing_changed():
    assert "rien n'a été modifié" in render(a_run(status=Status.SKIPPED, dry_run=True)).content_html


def test_no_secret_in_a_followup_built_from_a_run():
    from l1fix.secrets import redact

    secret = Secret("Temp-Pa55-Ticket")
    run = a_run(output=redact(f"password {secret.reveal()}"), steps={"fix": redact(f"set {secret.reveal()}")})
    assert "Temp-Pa55-Ticket" not in render(run).content_html


def test_escalation_lists_every_run_oldest_first():
    from l1fix.tickets.followup import render_escalation

    runs = [
        {
            "started_at": "2026-12-04T10:05:00+00:00",
            "action": "service-restart",
            "target": "PC042",
            "status": "failed",
            "summary": "BITS refuses to start",
            "error": None,
        },
        {
            "started_at": "2026-12-04T10:00:00+00:00",
            "action": "spooler-restart",
            "target": "PC042",
            "status": "error",
            "summary": "",
            "error": {"kind": "unreachable", "message": "PC042: cannot connect"},
        },
    ]
    followup = render_escalation(runs, to="groupe N2", technician="tech1", note="<urgent>", marker_text="l1fix-esc-1")
    text = followup.content_html
    assert "Escaladé au niveau 2 (groupe N2) par tech1." in text and "&lt;urgent&gt;" in text
    assert text.index("spooler-restart sur PC042") < text.index("service-restart sur PC042")
    assert "cannot connect" in text and "BITS refuses to start" in text and "l1fix-esc-1" in text
    none = render_escalation([], to="N2", technician="t", note=None, marker_text="m", language="en").content_html
    assert "No l1fix fix was tried on this ticket." in none

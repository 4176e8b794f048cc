"""The one followup a playbook run leaves on its ticket: every step of one target, or a fleet's table.

French and English, like tickets/followup.py (whose status words it reuses). Everything from
the run is HTML-escaped. The marker (the playbook run's id) lets a retry find a followup that
already landed.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from l1fix.tickets.followup import TEMPLATES as RUN_TEMPLATES
from l1fix.tickets.followup import Followup, suggestion_lines

if TYPE_CHECKING:
    from l1fix.playbook import Playbook, StepOutcome, TargetOutcome

MAX_ROWS = 500  # a fleet table longer than this is cut (the journal keeps every run)
MAX_PROBLEMS = 50

TEMPLATES: dict[str, dict[str, Any]] = {
    "fr": {
        "one": "l1fix — playbook {playbook} sur {target} : {status}",
        "fleet": "l1fix — playbook {playbook} sur {count} cibles : {tally}",
        "by": "Exécuté par {technician} le {when} (durée {duration} s).",
        "dry": "Simulation (--dry-run) : rien n'a été modifié.",
        "params": "Paramètres",
        "steps": "Étapes",
        "columns": ("Cible", "Statut", "Corrigés", "Déjà OK", "Échecs", "Durée (s)"),
        "problems": "À reprendre",
        "cut": "… et {more} autres lignes (voir `l1fix journal --ticket {ticket}`).",
        "escalated": "Escaladé au niveau 2 ({to}) : {note}",
        "escalation_failed": "Escalade vers {to} demandée mais non faite ({error}) : à faire à la main.",
        "escalation_dry": "Une étape aurait escaladé le ticket vers {to} (simulation : rien n'a été fait).",
        "when_false": "condition fausse",
        "not_run": "non exécutée",
        "status": {**RUN_TEMPLATES["fr"]["status"], "interrupted": "interrompu (Ctrl-C)", "not-run": "non exécutée"},
        "short": {
            "fixed": "corrigé(s)",
            "already-ok": "déjà OK",
            "skipped": "non appliqué(s)",
            "failed": "en échec",
            "findings": "à examiner (diagnostic)",
            "error": "en erreur",
            "interrupted": "interrompu(s)",
        },
    },
    "en": {
        "one": "l1fix — playbook {playbook} on {target}: {status}",
        "fleet": "l1fix — playbook {playbook} on {count} targets: {tally}",
        "by": "Run by {technician} on {when} (took {duration} s).",
        "dry": "Dry run (--dry-run): nothing was changed.",
        "params": "Parameters",
        "steps": "Steps",
        "columns": ("Target", "Status", "Fixed", "Already OK", "Failed", "Duration (s)"),
        "problems": "To follow up",
        "cut": "… and {more} more rows (see `l1fix journal --ticket {ticket}`).",
        "escalated": "Escalated to level 2 ({to}): {note}",
        "escalation_failed": "Escalation to {to} was asked for but not done ({error}): do it by hand.",
        "escalation_dry": "A step would have escalated the ticket to {to} (dry run: nothing was done).",
        "when_false": "condition false",
        "not_run": "not run",
        "status": {**RUN_TEMPLATES["en"]["status"], "interrupted": "interrupted (Ctrl-C)", "not-run": "not run"},
        "short": {
            "fixed": "fixed",
            "already-ok": "already OK",
            "skipped": "not applied",
            "failed": "failed",
            "findings": "with findings (diagnosis)",
            "error": "error",
            "interrupted": "interrupted",
        },
    },
}


def render_playbook(
    playbook: Playbook,
    outcomes: Sequence[TargetOutcome],
    *,
    technician: str,
    started_at: str,
    duration_s: float,
    dry_run: bool,
    escalation: dict[str, Any] | None,
    marker_text: str,
    language: str = "fr",
) -> Followup:
    """One target: its steps. Several: a table, then the targets that need someone's attention."""
    t = TEMPLATES[language]
    when = started_at.replace("T", " ").replace("+00:00", " UTC")
    lines = [f"<p><strong>{_e(_title(t, playbook.name, outcomes))}</strong></p>"]
    lines.append(f"<p>{_e(t['by'].format(technician=technician, when=when, duration=_num(duration_s, language)))}</p>")
    if dry_run:
        lines.append(f"<p>{_e(t['dry'])}</p>")
    if len(outcomes) == 1:
        lines += _one_target(t, playbook, outcomes[0], language)
    else:
        lines += _fleet(t, outcomes, language)
    if escalation is not None:
        lines.append(f"<p><strong>{_e(_escalation_text(t, escalation))}</strong></p>")
    lines.append(f"<p><small>{marker_text}</small></p>")
    text = "\n".join(lines)
    if language == "en":
        text = text.replace("</strong> : ", "</strong>: ")
    return Followup(text, marker_text)


def _title(t: dict[str, Any], name: str, outcomes: Sequence[TargetOutcome]) -> str:
    if len(outcomes) == 1:
        return t["one"].format(playbook=name, target=outcomes[0].target, status=_status(t, str(outcomes[0].status)))
    tally = Counter(str(o.status) for o in outcomes)
    order = ("fixed", "already-ok", "skipped", "findings", "failed", "error", "interrupted")
    text = ", ".join(f"{tally[s]} {t['short'][s]}" for s in order if tally[s])
    return t["fleet"].format(playbook=name, count=len(outcomes), tally=text)


def _one_target(t: dict[str, Any], playbook: Playbook, outcome: TargetOutcome, language: str) -> list[str]:
    lines = []
    if playbook.params:
        lines.append(f"<p>{_e(t['params'])} : {_e(_params_text(outcome))}</p>")
    items = [f"<li>{_step_line(t, step)}</li>" for step in outcome.steps]
    lines.append(f"<p>{_e(t['steps'])} :</p><ol>{''.join(items)}</ol>")
    from l1fix.playbook import standing

    diagnosis = next((s.result for s in reversed(standing(outcome.steps)) if s.status == "findings"), None)
    if diagnosis is not None:
        lines += suggestion_lines(diagnosis, RUN_TEMPLATES[language])
    if outcome.error is not None and not any(s.error is outcome.error for s in outcome.steps):
        lines.append(f"<p>{_e(outcome.error.message)}</p>")
    return lines


def _params_text(outcome: TargetOutcome) -> str:
    params = next((s.result.params for s in outcome.steps if s.result), None)
    return ", ".join(f"{k}={v}" for k, v in (params or {}).items()) or "-"


def _step_line(t: dict[str, Any], step: StepOutcome) -> str:
    status = _status(t, step.status)
    head = f"<strong>{_e(step.id)}</strong> ({_e(step.action)}) : {_e(status)}"
    if step.result is not None:
        detail = " → ".join(step.result.steps.values()) or step.result.summary
        if step.error is not None:
            detail = f"{detail} — {step.error.message}" if detail else step.error.message
        run = f" <small>[run {_e(step.result.run_id[:8])}]</small>"
    else:
        detail = t["when_false"] if step.reason.startswith("when:") else (step.reason or "")
        if step.error is not None:
            detail = step.error.message
        run = ""
    return head + (f" — {_e(detail)}" if detail else "") + run


def _fleet(t: dict[str, Any], outcomes: Sequence[TargetOutcome], language: str) -> list[str]:
    head = "".join(f"<th>{_e(c)}</th>" for c in t["columns"])
    rows = []
    for outcome in outcomes[:MAX_ROWS]:
        counts = outcome.counts
        cells = (
            outcome.target,
            t["short"].get(str(outcome.status), str(outcome.status)).replace("(s)", ""),
            str(counts["fixed"]),
            str(counts["already-ok"]),
            str(counts["failed"]),
            _num(outcome.duration_s, language),
        )
        rows.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    lines = [f"<table><tr>{head}</tr>{''.join(rows)}</table>"]
    if len(outcomes) > MAX_ROWS:
        ticket = next((o.followup or {}).get("ticket", "N") for o in outcomes)
        lines.append(f"<p>{_e(t['cut'].format(more=len(outcomes) - MAX_ROWS, ticket=ticket))}</p>")
    problems = [o for o in outcomes if o.exit_code != 0]
    if problems:
        items = [f"<li><strong>{_e(o.target)}</strong> : {_e(o.headline)}</li>" for o in problems[:MAX_PROBLEMS]]
        more = f"<li>… (+{len(problems) - MAX_PROBLEMS})</li>" if len(problems) > MAX_PROBLEMS else ""
        lines.append(f"<p>{_e(t['problems'])} :</p><ul>{''.join(items)}{more}</ul>")
    return lines


def _escalation_text(t: dict[str, Any], escalation: dict[str, Any]) -> str:
    state = escalation.get("state")
    if state == "escalated":
        return t["escalated"].format(to=escalation["to"], note=escalation.get("note") or "-")
    if state == "dry-run":
        return t["escalation_dry"].format(to=escalation["to"])
    return t["escalation_failed"].format(to=escalation["to"], error=escalation.get("error", ""))


def _status(t: dict[str, Any], status: str) -> str:
    return t["status"].get(status, status)


def _num(value: float, language: str) -> str:
    text = f"{value:.1f}"
    return text.replace(".", ",") if language == "fr" else text


def _e(text: str) -> str:
    return html.escape(str(text), quote=False)

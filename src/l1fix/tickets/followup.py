"""The followup a run leaves on its ticket: what was found, done and verified, for a person.

French and English templates (config `glpi.language`, default French: the procedure's
language). Everything from the run is HTML-escaped; the output excerpt is capped and the
whole output travels as an attached text file when it is longer. The marker (run id)
lets a retry find a followup that already landed.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from typing import Any

from l1fix.result import RunResult

EXCERPT_CHARS = 1500

TEMPLATES: dict[str, dict[str, Any]] = {
    "fr": {
        "title": "l1fix — {action} sur {target} : {status}",
        "by": "Exécuté par {technician} le {when} (durée {duration} s).",
        "dry": "Simulation (--dry-run) : rien n'a été modifié.",
        "check": "Constat",
        "fix": "Action",
        "verify": "Vérification",
        "error": "Erreur",
        "output": "Extrait de la sortie",
        "attached": "Sortie complète jointe au ticket : {filename}",
        "escalated": "Escaladé au niveau 2 ({to}) par {technician}.",
        "note": "Note",
        "tried": "Déjà tenté par l1fix sur ce ticket (ne pas refaire) :",
        "nothing_tried": "Aucun correctif l1fix n'a été tenté sur ce ticket.",
        "suggestions": "Suggestions du diagnostic",
        "suggest_fix": "À lancer",
        "suggest_escalate": "À escalader au niveau 2",
        "status": {
            "fixed": "corrigé",
            "already-ok": "déjà correct, rien à corriger",
            "failed": "échec, le problème persiste — à escalader au niveau 2",
            "error": "le correctif n'a pas pu s'exécuter",
            "skipped": "non appliqué",
            "findings": "diagnostic : problèmes trouvés, voir les suggestions",
        },
    },
    "en": {
        "title": "l1fix — {action} on {target}: {status}",
        "by": "Run by {technician} on {when} (took {duration} s).",
        "dry": "Dry run (--dry-run): nothing was changed.",
        "check": "Found",
        "fix": "Done",
        "verify": "Verified",
        "error": "Error",
        "output": "Output excerpt",
        "attached": "Full output attached to the ticket: {filename}",
        "escalated": "Escalated to level 2 ({to}) by {technician}.",
        "note": "Note",
        "tried": "Already tried by l1fix on this ticket (no need to redo):",
        "nothing_tried": "No l1fix fix was tried on this ticket.",
        "suggestions": "Diagnosis suggestions",
        "suggest_fix": "Run",
        "suggest_escalate": "Escalate to level 2",
        "status": {
            "fixed": "fixed",
            "already-ok": "already fine, nothing to fix",
            "failed": "failed, the problem remains — escalate to level 2",
            "error": "the fix could not run",
            "skipped": "not applied",
            "findings": "diagnosis: problems found, see the suggestions",
        },
    },
}


def marker(run_id: str) -> str:
    """Plain letters, digits and dashes: found again even in GLPI's HTML-encoded copy."""
    return f"l1fix-run-{run_id}"


@dataclass(frozen=True)
class Followup:
    content_html: str
    marker: str
    attachment_name: str | None = None
    attachment: bytes | None = None

    def payload(self, *, private: bool) -> dict[str, Any]:
        """What the journal's outbox keeps until delivery (JSON-safe)."""
        data = None if self.attachment is None else base64.b64encode(self.attachment).decode("ascii")
        return {
            "content_html": self.content_html,
            "marker": self.marker,
            "private": private,
            "attachment_name": self.attachment_name,
            "attachment_b64": data,
        }


def render(result: RunResult, *, language: str = "fr", excerpt_chars: int = EXCERPT_CHARS) -> Followup:
    """The followup for one run, in `language` ("fr" or "en")."""
    t = TEMPLATES[language]
    e = _escape
    status = t["status"].get(str(result.status), str(result.status))
    when = result.started_at.replace("T", " ").replace("+00:00", " UTC")
    lines = [
        f"<p><strong>{e(t['title'].format(action=result.action, target=result.target, status=status))}</strong></p>",
        f"<p>{e(t['by'].format(technician=result.technician, when=when, duration=_number(result, language)))}</p>",
    ]
    if result.dry_run:
        lines.append(f"<p>{e(t['dry'])}</p>")
    items = [f"<li><strong>{e(t[step])}</strong> : {e(text)}</li>" for step, text in result.steps.items()]
    if result.error is not None:
        items.append(f"<li><strong>{e(t['error'])}</strong> : {e(result.error.message)}</li>")
    if items:
        lines.append("<ul>" + "".join(items) + "</ul>")
    lines += suggestion_lines(result, t)
    attachment_name = attachment = None
    output = result.output.strip()
    if output:
        shown = output if len(output) <= excerpt_chars else output[:excerpt_chars] + " …"
        lines.append(f"<p>{e(t['output'])} :</p><pre>{e(shown)}</pre>")
        if len(output) > excerpt_chars:
            attachment_name = f"l1fix-{result.action}-{result.target}-{result.run_id[:8]}.txt"
            attachment = output.encode("utf-8", errors="replace")
            lines.append(f"<p>{e(t['attached'].format(filename=attachment_name))}</p>")
    tag = marker(result.run_id)
    lines.append(f"<p><small>{tag}</small></p>")
    html_text = "\n".join(lines)
    if language == "en":
        html_text = html_text.replace("</strong> : ", "</strong>: ")
    return Followup(html_text, tag, attachment_name, attachment)


def render_escalation(
    runs: list[dict[str, Any]], *, to: str, technician: str, note: str | None, marker_text: str, language: str = "fr"
) -> Followup:
    """The followup that hands a ticket to level 2: every l1fix run journaled for it, oldest first."""
    t = TEMPLATES[language]
    e = _escape
    colon = " :" if language == "fr" else ":"
    lines = [f"<p><strong>{e(t['escalated'].format(to=to, technician=technician))}</strong></p>"]
    if note:
        lines.append(f"<p><strong>{e(t['note'])}</strong>{colon} {e(note)}</p>")
    if runs:
        items = []
        for run in sorted(runs, key=lambda r: r["started_at"]):
            status = t["status"].get(run["status"], run["status"])
            when = run["started_at"].replace("T", " ").replace("+00:00", " UTC")
            detail = run.get("summary") or (run.get("error") or {}).get("message") or ""
            title = t["title"].format(action=run["action"], target=run["target"], status=status)
            tail = f": {e(detail)}" if detail else ""
            items.append(f"<li>{e(when)} — {e(title.removeprefix('l1fix — '))}{tail}</li>")
        lines.append(f"<p>{e(t['tried'])}</p><ul>{''.join(items)}</ul>")
    else:
        lines.append(f"<p>{e(t['nothing_tried'])}</p>")
    lines.append(f"<p><small>{marker_text}</small></p>")
    return Followup("\n".join(lines), marker_text)


def suggestion_lines(result: RunResult, t: dict[str, Any]) -> list[str]:
    """A diagnosis's suggestions (before.suggestions, see actions/diagnose.py) as a list, if any."""
    suggestions = (result.before or {}).get("suggestions") if result.action == "diagnose" else None
    if not suggestions:
        return []
    e = _escape
    items = []
    for s in suggestions:
        if s.get("kind") == "fix":
            what = f"<code>{e(str(s['command']))}</code> — {e(str(s['reason']))}"
            items.append(f"<li><strong>{e(t['suggest_fix'])}</strong> : {what}</li>")
        else:
            items.append(f"<li><strong>{e(t['suggest_escalate'])}</strong> : {e(str(s['reason']))}</li>")
    return [f"<p>{e(t['suggestions'])} :</p><ul>{''.join(items)}</ul>"]


def _escape(text: str) -> str:
    return html.escape(text, quote=False)  # text nodes only: quotes need no escaping


def _number(result: RunResult, language: str) -> str:
    text = f"{result.duration_s:.1f}"
    return text.replace(".", ",") if language == "fr" else text

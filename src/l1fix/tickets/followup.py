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
        "status": {
            "fixed": "corrigé",
            "already-ok": "déjà correct, rien à corriger",
            "failed": "échec, le problème persiste — à escalader au niveau 2",
            "error": "le correctif n'a pas pu s'exécuter",
            "skipped": "non appliqué",
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
        "status": {
            "fixed": "fixed",
            "already-ok": "already fine, nothing to fix",
            "failed": "failed, the problem remains — escalate to level 2",
            "error": "the fix could not run",
            "skipped": "not applied",
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


def _escape(text: str) -> str:
    return html.escape(text, quote=False)  # text nodes only: quotes need no escaping


def _number(result: RunResult, language: str) -> str:
    text = f"{result.duration_s:.1f}"
    return text.replace(".", ",") if language == "fr" else text

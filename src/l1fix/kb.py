"""`l1fix kb publish FILE`: a playbook as a GLPI knowledge base article, created once, then kept up to date.

The article is rendered from the playbook alone: its name, its description (markdown, with raw HTML
escaped and unsafe links dropped by markdown-it-py), its parameters, its steps and its escalation.
A marker made from the playbook's name finds the article again on the next publish, which updates it
(or leaves it alone when nothing changed) instead of adding a second one.

At start-up this imports only typer and the standard library: the playbook engine, markdown-it-py and
the GLPI client load when the command runs.
"""

from __future__ import annotations

import hashlib
import json
import re
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from l1fix.playbook import Playbook
    from l1fix.tickets.glpi import KbArticle

kb_app = typer.Typer(help="The knowledge base in GLPI: publish playbooks.", no_args_is_help=True, rich_markup_mode=None)
TITLE_MAX = 250  # glpi_knowbaseitems.name is a text column; a subject stays readable below this
ON_FAILURE = {"stop": "stop the playbook", "continue": "go on with the next step", "escalate": "escalate the ticket"}


def marker_of(playbook_name: str) -> str:
    """The stable word that identifies the playbook's article: letters, digits and dashes only."""
    slug = re.sub(r"[^a-z0-9]+", "-", playbook_name.lower()).strip("-")
    return "l1fix-kb-" + (slug or hashlib.sha256(playbook_name.encode()).hexdigest()[:12])


def build_article(
    playbook: Playbook,
    *,
    is_faq: bool = False,
    category: str | None = None,
    entity_id: int = 0,
    recursive: bool = True,
) -> KbArticle:
    """The article for `playbook`: subject, HTML body with the marker and a revision hash of the content."""
    from l1fix.tickets.glpi import KbArticle

    title, description = _description(playbook.description)
    name = f"{playbook.name}: {title}" if title else playbook.name
    name = name if len(name) <= TITLE_MAX else name[: TITLE_MAX - 1] + "…"
    body = "".join(
        [
            description,
            f"<p>Applies to: {escape(', '.join(playbook.applies_to))}.</p>" if playbook.applies_to else "",
            _params_html(playbook),
            _steps_html(playbook),
            _escalation_html(playbook),
            f"<h3>Run it</h3><p><code>{escape(run_line(playbook))}</code></p>",
        ]
    )
    marker = marker_of(playbook.name)
    digest = hashlib.sha256(json.dumps([name, body, is_faq], ensure_ascii=False).encode()).hexdigest()
    revision = f"l1fix-rev-{digest[:16]}"
    footer = (
        f"<p><small>Published by l1fix from the playbook {escape(playbook.name)}: edit the playbook, not this "
        f"article, the next <code>l1fix kb publish</code> replaces it. {marker} {revision}</small></p>"
    )
    return KbArticle(name, body + footer, marker, revision, is_faq, category, entity_id, recursive)


def run_line(playbook: Playbook) -> str:
    """An example command: the playbook's required parameters, and --yes when a step asks for confirmation."""
    from l1fix.playbook import steps_to_confirm

    accounts = bool(playbook.applies_to) and all(kind.endswith("-user") for kind in playbook.applies_to)
    words = ["l1fix play", f"playbooks/{Path(playbook.file).name}", "--target", "jdupont" if accounts else "PC042"]
    words += [f"--param {p.name}=…" for p in playbook.params.values() if p.required]
    defaults = {p.name: p.default for p in playbook.params.values() if not p.required}
    if steps_to_confirm(playbook, defaults):
        words.append("--yes")
    return " ".join([*words, "--ticket 1234"])


def _description(text: str) -> tuple[str, str]:
    """(first sentence as plain text, the whole description as safe HTML)."""
    from markdown_it import MarkdownIt

    # html=False: raw HTML in the YAML is shown as text; markdown-it's validateLink drops javascript: & co.
    md = MarkdownIt("commonmark", {"html": False}).enable("table").disable("image")
    tokens = md.parse(text or "")
    first = next((t for t in tokens if t.type == "inline"), None)
    plain = ""
    if first is not None:
        words = {"text": None, "code_inline": None, "softbreak": " ", "hardbreak": " "}
        plain = "".join(words[c.type] or c.content for c in first.children or [] if c.type in words)
        plain = re.split(r"(?<=[.!?])\s", " ".join(plain.split()), maxsplit=1)[0]
    return plain, md.renderer.render(tokens, md.options, {})


def _params_html(playbook: Playbook) -> str:
    if not playbook.params:
        return ""
    rows = "".join(
        f"<tr><td><code>{escape(p.name)}</code></td><td>{escape(p.type)}</td>"
        f"<td>{'required' if p.required else _code(p.default)}</td><td>{escape(p.description)}</td></tr>"
        for p in playbook.params.values()
    )
    head = "<tr><th>Parameter</th><th>Type</th><th>Default</th><th>Description</th></tr>"
    return f"<h3>Parameters</h3><table><thead>{head}</thead><tbody>{rows}</tbody></table>"


def _steps_html(playbook: Playbook) -> str:
    rows = []
    for number, step in enumerate(playbook.steps, 1):
        given = "<br>".join(f"<code>{escape(k)}</code> = {_code(v)}" for k, v in step.with_.items()) or "-"
        when = _code(step.when) if step.when else "always"
        rows.append(
            f"<tr><td>{number}</td><td>{escape(step.name or step.id)}</td><td><code>{escape(step.action)}</code></td>"
            f"<td>{given}</td><td>{when}</td><td>{escape(_on_failure(step))}</td></tr>"
        )
    head = "<tr><th>#</th><th>Step</th><th>Action</th><th>Parameters</th><th>When</th><th>On failure</th></tr>"
    return f"<h3>Steps</h3><table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _on_failure(step: Any) -> str:
    text = ON_FAILURE.get(step.on_failure, step.on_failure)
    if step.on_findings != "continue":  # a diagnosis step: what its findings do
        text += f"; on findings: {ON_FAILURE.get(step.on_findings, step.on_findings)}"
    return text


def _escalation_html(playbook: Playbook) -> str:
    escalation = playbook.escalate
    if escalation is None:
        return ""
    to = f"the group {escalation.group}" if escalation.group else f"the technician {escalation.user}"
    note = f"<p>{escape(escalation.note)}</p>" if escalation.note else ""
    return f"<h3>Escalation</h3><p>When a step escalates, the ticket goes to {escape(to)}.</p>{note}"


def _code(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return f"<code>{escape(text)}</code>" if text else "<em>empty</em>"


@kb_app.command("publish")
def publish_command(
    file: Annotated[Path, typer.Argument(help="Playbook file (YAML), e.g. playbooks/printer-stuck.yml.")],
    category: Annotated[
        str | None, typer.Option("--category", help="Knowledge base category, by (complete) name.")
    ] = None,
    entity: Annotated[
        int, typer.Option("--entity", min=0, help="Entity id the article is published to (0: root).")
    ] = 0,
    recursive: Annotated[
        bool, typer.Option("--recursive/--no-recursive", help="Also visible in the entity's sub-entities.")
    ] = True,
    faq: Annotated[bool, typer.Option("--faq", help="Also show it in the FAQ (self-service users).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the article; send nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create or update the GLPI knowledge base article of a playbook (found again by its marker)."""
    from l1fix.cli import cli_config, fail
    from l1fix.errors import BadInput, L1fixError
    from l1fix.playbook import load_playbook

    try:
        article = build_article(
            load_playbook(file), is_faq=faq, category=category, entity_id=entity, recursive=recursive
        )
        if dry_run:
            _print_dry_run(article, as_json=as_json)
            return
        from l1fix.tickets.delivery import open_ticket_system
        from l1fix.tickets.glpi import GlpiClient

        with open_ticket_system(cli_config()) as system:
            if not isinstance(system, GlpiClient):
                raise BadInput("the knowledge base needs GLPI as the ticket system")
            outcome = system.upsert_kb_article(article)
            url = system.kb_url(outcome.id)
    except L1fixError as exc:
        raise fail(exc) from None
    if as_json:
        data = {
            "id": outcome.id,
            "action": outcome.action,
            "name": article.name,
            "url": url,
            "marker": article.marker,
            "revision": article.revision,
            "category": category,
            "entities": outcome.entities,
            "duplicates": outcome.duplicates,
        }
        typer.echo(json.dumps(data, ensure_ascii=False))
    else:
        typer.echo(f"knowledge base article {outcome.id} {outcome.action}: {article.name} ({url})")
    if outcome.duplicates:
        others = ", ".join(map(str, outcome.duplicates))
        typer.echo(f"l1fix: warning: articles {others} hold the same marker {article.marker}; left alone", err=True)


def _print_dry_run(article: KbArticle, *, as_json: bool) -> None:
    if as_json:
        data = {
            "dry_run": True,
            "name": article.name,
            "answer": article.answer_html,
            "is_faq": article.is_faq,
            "category": article.category,
            "entity": article.entity_id,
            "recursive": article.recursive,
            "marker": article.marker,
            "revision": article.revision,
        }
        typer.echo(json.dumps(data, ensure_ascii=False))
        return
    target = f"entity {article.entity_id}" + (" and its sub-entities" if article.recursive else "")
    typer.echo(f"dry run: nothing sent. Subject: {article.name}")
    typer.echo(f"published to {target}" + (f", category {article.category}" if article.category else ""))
    typer.echo(article.answer_html.replace("</h3>", "</h3>\n").replace("</table>", "</table>\n"))

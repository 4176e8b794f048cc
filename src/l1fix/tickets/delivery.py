"""Getting followups to the ticket system without losing or duplicating one.

Each followup is written to the journal's outbox first, then sent. A send that fails
leaves it queued (`l1fix sync` and the next run deliver it). A retry first looks on the
ticket for the run's marker, so a followup whose first send landed without an answer is
never posted twice.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from l1fix.errors import L1fixError
from l1fix.journal import Journal, OutboxItem
from l1fix.result import RunResult
from l1fix.tickets.followup import render

if TYPE_CHECKING:
    from l1fix.config import Config
    from l1fix.tickets.base import TicketSystem

NO_TICKET_SYSTEM = "no ticket system is configured (glpi.url in config.toml)"


@dataclass
class DeliveryReport:
    sent: list[tuple[str, int]] = field(default_factory=list)  # (run id, followup id)
    queued: list[tuple[str, str]] = field(default_factory=list)  # (run id, why)

    @property
    def complete(self) -> bool:
        return not self.queued


@contextmanager
def open_ticket_system(config: Config) -> Iterator[TicketSystem]:
    """The configured ticket system (GLPI), logged in; logged out at the end."""
    from l1fix.config import resolve_secret
    from l1fix.errors import BadInput
    from l1fix.tickets.glpi import GlpiClient, GlpiSettings

    glpi = config.glpi
    if not glpi.url:
        raise BadInput(NO_TICKET_SYSTEM)

    def secret(ref: str | None, label: str):
        return resolve_secret(ref, label) if ref else None

    settings = GlpiSettings(
        url=glpi.url,
        app_token=secret(glpi.app_token, "GLPI app token"),
        user_token=secret(glpi.user_token, "GLPI user token"),
        login=glpi.login,
        password=secret(glpi.password, f"GLPI password for {glpi.login}"),
        ca_bundle=glpi.ca_bundle,
        verify=glpi.verify,
        timeout_s=glpi.timeout_s,
    )
    with GlpiClient(settings) as client:
        yield client


def deliver(journal: Journal, config: Config, *, run_id: str | None = None) -> DeliveryReport:
    """Send the queued followups (one run's, or all) now; what fails stays queued."""
    report = DeliveryReport()
    items = journal.claim_followups(run_id=run_id)
    if not items:
        return report
    try:
        with open_ticket_system(config) as system:
            for item in items:
                _deliver_one(journal, system, item, report)
    except L1fixError as exc:  # could not log in: every item not yet handled stays queued
        handled = {run for run, _ in report.sent} | {run for run, _ in report.queued}
        for item in items:
            if item.run_id not in handled:
                journal.release(item, exc.one_line())
                report.queued.append((item.run_id, exc.one_line()))
    return report


def _deliver_one(journal: Journal, system: TicketSystem, item: OutboxItem, report: DeliveryReport) -> None:
    payload = item.payload
    try:
        retry = item.attempts > 1  # an earlier attempt may have landed without an answer
        landed = system.followup_ids_containing(item.ticket, payload["marker"]) if retry else []
        followup_id = landed[0] if landed else _send(system, item, retry=retry)
    except L1fixError as exc:
        journal.release(item, exc.one_line())
        report.queued.append((item.run_id, exc.one_line()))
        return
    journal.mark_delivered(item, followup_id)
    report.sent.append((item.run_id, followup_id))


def _send(system: TicketSystem, item: OutboxItem, *, retry: bool) -> int:
    payload = item.payload
    name = payload.get("attachment_name")
    # The attachment first: a followup that says "attached" is never left without it. Its
    # name holds the run id, so a retry can see that it is already there.
    if name and not (retry and system.document_ids_named(item.ticket, name)):
        system.attach_document(item.ticket, name, base64.b64decode(payload["attachment_b64"]))
    return system.add_followup(item.ticket, payload["content_html"], private=bool(payload["private"]))


class FollowupObserver:
    """Runner observer: a run with a ticket leaves a followup, journaled before it is sent."""

    def __init__(self, journal: Journal, config: Config) -> None:
        self.journal = journal
        self.config = config

    def run_started(self, result: RunResult) -> None:
        return None

    def run_finished(self, result: RunResult) -> None:
        if result.ticket is not None:
            followup = render(result, language=self.config.glpi.language)
            self.journal.enqueue_followup(
                result.run_id, result.ticket, followup.payload(private=self.config.glpi.followup_private)
            )
            if not self.config.glpi.url:
                result.followup = {"ticket": result.ticket, "state": "queued", "error": NO_TICKET_SYSTEM}
                return
        elif not self.config.glpi.url or not self.journal.queued_followups():
            return
        # Deliver this run's followup and, opportunistically, any left from earlier runs.
        report = deliver(self.journal, self.config)
        if result.ticket is not None:
            result.followup = _state_of(result, report)


def _state_of(result: RunResult, report: DeliveryReport) -> dict:
    for run_id, followup_id in report.sent:
        if run_id == result.run_id:
            return {"ticket": result.ticket, "state": "sent", "followup_id": followup_id}
    why = next((reason for run_id, reason in report.queued if run_id == result.run_id), "claimed by another sync")
    return {"ticket": result.ticket, "state": "queued", "error": why}

"""What any ticket system offers l1fix: the TicketSystem contract, the ticket view, TicketError."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

from l1fix.errors import EXIT_FAILED, BadInput, L1fixError

# A run marker must survive a ticket system's HTML encoding unchanged (GLPI 9.5/10 store
# rich text encoded, GLPI 11 raw): letters, digits and dashes only. Put it in the text of
# a followup, never in an HTML attribute, which a sanitizer may drop.
MARKER = re.compile(r"[A-Za-z0-9-]+")


class TicketError(L1fixError):
    """The ticket system answered, but refused or failed the request."""

    kind = "ticket"
    exit_code = EXIT_FAILED


def check_marker(marker: str) -> str:
    """Return `marker` if it is safe to search for in stored followups, else raise BadInput."""
    if not MARKER.fullmatch(marker):
        raise BadInput(f"followup marker {marker!r} must be letters, digits and dashes only")
    return marker


@dataclass(frozen=True)
class FollowupView:
    """One followup of a ticket, as plain text."""

    id: int
    date: str
    author: str  # login, or "#<id>" when the account cannot read that user
    private: bool
    content_text: str


@dataclass(frozen=True)
class TicketView:
    """What a technician needs to see of a ticket."""

    id: int
    title: str
    status: int
    status_name: str
    requesters: list[str] = field(default_factory=list)  # logins
    assigned_users: list[str] = field(default_factory=list)  # logins
    assigned_groups: list[str] = field(default_factory=list)  # complete names
    followups: list[FollowupView] = field(default_factory=list)


class TicketSystem(Protocol):
    """Where followups go. Every method raises an L1fixError with a one-line message."""

    def add_followup(self, ticket_id: int, content_html: str, *, private: bool) -> int:
        """Add a followup; return its id."""
        ...

    def followup_ids_containing(self, ticket_id: int, marker: str) -> list[int]:
        """Ids of the ticket's followups whose content contains `marker` (see MARKER)."""
        ...

    def attach_document(self, ticket_id: int, filename: str, data: bytes) -> int:
        """Upload a file and link it to the ticket; return the document id."""
        ...

    def document_ids_named(self, ticket_id: int, filename: str) -> list[int]:
        """Ids of the documents linked to the ticket under that file name."""
        ...

    def get_ticket(self, ticket_id: int) -> TicketView:
        """The ticket with its actors and followups."""
        ...

    def create_ticket(
        self,
        *,
        title: str,
        description: str,
        requester: str,
        category: str | None,
        urgency: int,
        type_: str,
        assign_user: str | None,
    ) -> int:
        """Open a ticket (`description` is plain text, `type_` incident or request); return its id."""
        ...

    def escalate(
        self,
        ticket_id: int,
        *,
        to_group: str | None = None,
        to_user: str | None = None,
        remove_assigned_user: str | None = None,
    ) -> None:
        """Assign the ticket to a group and/or user, then drop a previously assigned user."""
        ...

    def solve(self, ticket_id: int, solution_html: str) -> int:
        """Add a solution; return its id."""
        ...

    def close(self, ticket_id: int) -> None:
        """Close the ticket (a no-op when already closed)."""
        ...

    def find_computer(self, name: str) -> list[str]:
        """Addresses of computer `name`, FQDNs first then IPs; [] when unknown."""
        ...

    def close_session(self) -> None:
        """End the session with the ticket system (best effort)."""
        ...

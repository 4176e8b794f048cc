"""What one run produced: status, before/after state, error, timings."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from l1fix.errors import EXIT_FAILED, EXIT_FINDINGS, EXIT_INTERNAL, EXIT_OK, L1fixError
from l1fix.secrets import Secret

_NOT_JSON = ("exception", "revealed")


class Status(StrEnum):
    FIXED = "fixed"
    ALREADY_OK = "already-ok"
    FAILED = "failed"
    ERROR = "error"
    SKIPPED = "skipped"
    FINDINGS = "findings"  # a read-only action (diagnose) found something to fix or escalate
    RUNNING = "running"  # only in the journal, while a run executes
    INTERRUPTED = "interrupted"  # only in the journal: the process died mid-run


@dataclass
class ErrorInfo:
    kind: str
    message: str
    exit_code: int = EXIT_INTERNAL

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        if isinstance(exc, L1fixError):
            return cls(exc.kind, exc.one_line(), exc.exit_code)
        return cls("internal", f"internal error: {type(exc).__name__}", EXIT_INTERNAL)


@dataclass
class RunResult:
    run_id: str
    action: str
    target: str
    status: Status
    started_at: str
    technician: str
    ticket: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    done: dict[str, Any] | None = None
    summary: str = ""
    steps: dict[str, str] = field(default_factory=dict)  # check/fix/verify → its sentence
    output: str = ""  # the steps' output, secrets removed (--json and the journal keep an excerpt)
    duration_s: float = 0.0
    error: ErrorInfo | None = None
    dry_run: bool = False
    followup: dict[str, Any] | None = None  # delivery of the ticket followup, when there is a ticket
    exception: BaseException | None = field(default=None, repr=False, compare=False)
    # Secrets for the technician's eyes only (a temporary password): shown once on the
    # terminal by the CLI, never in to_json(), the journal or a followup.
    revealed: list[tuple[str, Secret]] = field(default_factory=list, repr=False, compare=False)

    @property
    def exit_code(self) -> int:
        if self.status in (Status.FIXED, Status.ALREADY_OK, Status.SKIPPED):
            return EXIT_OK
        if self.status == Status.FAILED:
            return EXIT_FAILED
        if self.status == Status.FINDINGS:
            return EXIT_FINDINGS
        return self.error.exit_code if self.error else EXIT_INTERNAL

    def to_json(self) -> dict[str, Any]:
        """The --json contract: stable keys, secrets already removed."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _NOT_JSON}
        data["status"] = str(self.status)
        data["duration_s"] = round(self.duration_s, 3)
        data["output"] = excerpt(self.output)
        if self.error is not None:
            data["error"] = {"kind": self.error.kind, "message": self.error.message}
        return data


OUTPUT_EXCERPT_CHARS = 8192


def excerpt(text: str, cap: int = OUTPUT_EXCERPT_CHARS) -> str:
    """At most `cap` characters: the start and the end, which holds a script's result."""
    if len(text) <= cap:
        return text
    head, tail = cap // 4, cap - cap // 4 - 64
    cut = len(text) - head - tail
    return f"{text[:head]}\n… [{cut} characters cut] …\n{text[-tail:]}"

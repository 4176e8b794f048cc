"""Errors a technician can act on, each with its kind and exit code."""

from __future__ import annotations

# Exit codes are a contract for other tools (see README).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 3
EXIT_TIMEOUT = 4
EXIT_INTERNAL = 5
# A diagnosis that found problems: nothing failed and nothing was changed; its suggestions say
# which fix to run or what to escalate. Distinct from 1 (a fix ran and the problem remains).
EXIT_FINDINGS = 6


class L1fixError(Exception):
    """Base error: a one-line message, a kind for --json and an exit code."""

    kind = "internal"
    exit_code = EXIT_INTERNAL

    def __init__(self, message: str, *, target: str | None = None, hint: str | None = None) -> None:
        self.message = message
        self.target = target
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = f"{self.target}: " if self.target else ""
        tail = f" — {self.hint}" if self.hint else ""
        return f"{where}{self.message}{tail}".replace("\n", " ")


class BadInput(L1fixError):
    """Unknown action or parameter, malformed target name, bad value."""

    kind = "bad-input"
    exit_code = EXIT_BAD_INPUT


class UnknownTarget(BadInput):
    """The name is neither in the inventory nor in DNS."""

    kind = "unknown-target"


class Unreachable(L1fixError):
    """Connection refused, no route, TLS failure."""

    kind = "unreachable"
    exit_code = EXIT_UNREACHABLE


class TlsFailure(Unreachable):
    """The server certificate could not be validated."""

    kind = "tls"


class AuthRefused(L1fixError):
    """Credentials rejected or the account lacks the right."""

    kind = "auth"
    exit_code = EXIT_UNREACHABLE


class InsufficientRights(AuthRefused):
    """The account l1fix uses lacks the right or the role for this change."""

    kind = "insufficient-rights"


class Throttled(Unreachable):
    """The service kept asking to slow down (429, 503) after the retries."""

    kind = "throttled"


class Timeout(L1fixError):
    """A command did not finish in its time."""

    kind = "timeout"
    exit_code = EXIT_TIMEOUT


class PasswordRejected(BadInput):
    """A new password breaks the directory's policy (length, complexity, history, banned)."""

    kind = "password-policy"


class BadOutput(L1fixError):
    """A remote script did not end with one JSON document."""

    kind = "bad-output"
    exit_code = EXIT_INTERNAL


class RemoteError(L1fixError):
    """A remote script ran and reported an error of its own."""

    kind = "remote-error"
    exit_code = EXIT_FAILED


class Refused(L1fixError):
    """The technician declined a confirmation, or policy forbids the fix."""

    kind = "refused"
    exit_code = EXIT_BAD_INPUT

"""printer-reconnect: reconnect a network printer (removed and re-added, or a CUPS queue set right), verify it is ready.

Windows (WinRM): a print server's queue `\\\\server\\queue`, connected machine-wide (every user
of the PC, `printui /ga`) or, with --user, for one logged-on user in their own session; or a
TCP/IP printer (`--printer ADDRESS --driver NAME [--name NAME]`) through its Standard TCP/IP port.
Linux/macOS (SSH): a CUPS queue (`--printer QUEUE [--uri URI]`), set right in place with lpadmin (its driver and
jobs kept), or added with its URI when it is gone.
"""

from __future__ import annotations

import ipaddress
import re

from l1fix.action import Observation, Param, Risk, RunContext, ScriptAction
from l1fix.actions._params import login
from l1fix.errors import BadInput

# A host name (RFC 1123 labels) or a dotted IPv4 address; nothing is looked up here.
HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
# A Windows share name: none of " / \ [ ] : | < > + = ; , ? * nor a control character.
SHARE_NAME = re.compile(r'[^"/\\\[\]:|<>+=;,?*\x00-\x1f\x7f]{1,80}')
UNC = re.compile(r"\\\\(?P<server>[^\\]+)\\(?P<queue>[^\\]+)")
# A CUPS queue: printable, none of space / \\ ? ' " # (what lpadmin refuses), nor "," (lpstat reads
# a list) or "@" (a queue on another server); never taken for an option.
CUPS_QUEUE = re.compile(r"(?!-)[^\s/\\?'\"#,@\x00-\x1f\x7f]{1,127}")
# A device URI: scheme, then no space, quote, backslash or control character.
DEVICE_URI = re.compile(r"[a-z][a-z0-9+.-]{0,31}:[^\s\"'\\`\x00-\x1f\x7f]{1,1000}")
# Windows printer and driver names: printable; a printer name has no "\" or "," (spooler rule).
PRINTER_NAME = re.compile(r"[^\\,\x00-\x1f\x7f]{1,220}")
DRIVER_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,256}")


def is_host(value: str) -> bool:
    """A dotted IPv4 address or a host name (labels of letters, digits and inner hyphens)."""
    if re.fullmatch(r"[0-9.]+", value):
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            return False
        return True
    return 0 < len(value) <= 253 and all(HOST_LABEL.fullmatch(label) for label in value.split("."))


def windows_printer(value: str) -> tuple[str, str] | None:
    """(server, queue) of a `\\\\server\\queue` path; None for a TCP/IP printer's address; else ValueError."""
    if value.startswith("\\"):
        match = UNC.fullmatch(value)
        if match is None or not is_host(match["server"]) or not SHARE_NAME.fullmatch(match["queue"]):
            raise ValueError(
                "expected \\\\server\\queue (server: a host name or IPv4 address; queue: a share name without "
                '" / \\ [ ] : | < > + = ; , ? *)'
            )
        return match["server"], match["queue"]
    if not is_host(value):
        raise ValueError("expected \\\\server\\queue, or a TCP/IP printer's IPv4 address or host name")
    return None


def _printer(value: str) -> None:
    # A Windows path or address, or a CUPS queue name: which one applies is checked per target.
    if value.startswith("\\"):
        windows_printer(value)
    elif not (is_host(value) or CUPS_QUEUE.fullmatch(value)):
        raise ValueError(r"expected \\server\queue, a printer's address, or a CUPS queue name")


def _pattern(pattern: re.Pattern[str], what: str):  # noqa: ANN202 - a Param validator
    def validate(value: str) -> None:
        if not pattern.fullmatch(value):
            raise ValueError(f"not {what}")

    return validate


class PrinterReconnect(ScriptAction):
    """Check the printer (present, status), remove and re-add it, verify present and not offline.

    Nothing is removed that cannot be added back: a print server that does not answer, a queue
    it does not share, or a driver that Point and Print may not install (KB5005652) stop the
    fix before any change.
    """

    name = "printer-reconnect"
    summary = "Reconnect a network printer (print server queue, TCP/IP or CUPS queue), verify it is ready"
    params = (
        Param("printer", r"\\server\queue, or a TCP/IP printer's address (Windows); a CUPS queue (Linux, macOS)",
              validate=_printer),
        Param("user", r"Windows: connect \\server\queue for this logged-on user only (default: every user)",
              default=None, validate=login),
        Param("driver", "Windows TCP/IP printer: its driver's name, as installed or in the driver store",
              default=None, validate=_pattern(DRIVER_NAME, "a driver name")),
        Param("name", "Windows TCP/IP printer: its name on the PC (default: the address)", default=None,
              validate=_pattern(PRINTER_NAME, r"a printer name (no \ or ,)")),
        Param("uri", "CUPS: the queue's device URI (required when the queue does not exist)", default=None,
              validate=_pattern(DEVICE_URI, "a device URI (scheme:address, no spaces or quotes)")),
    )  # fmt: skip
    target_kinds = frozenset({"windows", "linux", "macos"})
    risk = Risk.SAFE
    script = "printer_reconnect"
    timeout_s = 300.0  # a Spooler restart, or a task in the user's session, each bounded

    def check(self, ctx: RunContext) -> Observation:
        self.ensure_params_fit(ctx)
        before = super().check(ctx)
        self.ensure_uri_known(ctx, before)
        return before

    def check_fix_verify(self, ctx: RunContext):  # type: ignore[override]
        self.ensure_params_fit(ctx)
        before, done, after = super().check_fix_verify(ctx)
        self.ensure_uri_known(ctx, before)
        return before, done, after

    @staticmethod
    def ensure_params_fit(ctx: RunContext) -> None:
        """The parameters that make sense on this target's OS, before anything is sent."""
        p = ctx.params
        printer = p["printer"]

        def bad(message: str) -> BadInput:
            return BadInput(f"printer-reconnect: {message}", target=ctx.target.name)

        if ctx.target.os != "windows":
            if not CUPS_QUEUE.fullmatch(printer):
                raise bad(f"{printer!r} is not a CUPS queue name (printable, none of: space / \\ ? ' \" # , @)")
            extra = [f"--{k}" for k in ("user", "driver", "name") if p[k] is not None]
            if extra:
                raise bad(f"{', '.join(extra)} apply to Windows printers only")
            return
        if p["uri"] is not None:
            raise bad("--uri applies to CUPS queues (Linux, macOS) only")
        try:
            unc = windows_printer(printer)
        except ValueError as exc:
            raise bad(f"--printer {printer!r}: {exc}") from None
        if unc is not None and (p["driver"] is not None or p["name"] is not None):
            raise bad(r"--driver and --name apply to TCP/IP printers only; \\server\queue brings its own")
        if unc is None and p["driver"] is None:
            raise bad("--driver is required for a TCP/IP printer (the driver's name, as installed on the PC)")
        if unc is None and p["user"] is not None:
            raise bad(r"--user applies to \\server\queue connections only: a TCP/IP printer serves every user")

    @staticmethod
    def ensure_uri_known(ctx: RunContext, before: Observation) -> None:
        """A CUPS queue that does not exist can only be added with --uri (the script changed nothing)."""
        if ctx.target.os != "windows" and before.state.get("exists") is False and ctx.params["uri"] is None:
            raise BadInput(
                f"printer-reconnect: CUPS queue {ctx.params['printer']!r} does not exist on this host: "
                "give its device URI with --uri",
                target=ctx.target.name,
            )

"""reboot: schedule a planned restart of a PC with a notice to its users (never at once); --cancel aborts it."""

from __future__ import annotations

from typing import Any

from l1fix.action import Param, Risk, ScriptAction
from l1fix.errors import BadInput

MAX_NOTICE_MINUTES = 1440  # a day; shutdown.exe itself accepts up to 315360000 s
MAX_MESSAGE = 512  # shutdown.exe /c, in UTF-16 code units as Windows counts them


def _minutes(value: int) -> None:
    if not 1 <= value <= MAX_NOTICE_MINUTES:
        raise ValueError(f"expected 1 to {MAX_NOTICE_MINUTES} minutes: l1fix never restarts a PC without notice")


def _message(value: str) -> None:
    if not value.strip() or len(value.encode("utf-16-le")) // 2 > MAX_MESSAGE:
        raise ValueError(f"expected 1 to {MAX_MESSAGE} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("one line of text, without control characters")


class Reboot(ScriptAction):
    """`shutdown.exe /r /t <minutes*60> /c <message> /d p:0:0`: users see the message and a countdown.

    Check reports uptime, the logged-on users and a restart already scheduled (then already-ok).
    Verify: a restart with this message is scheduled (User32 event 1074 since the last boot, not
    followed by an abort, event 1075): Windows has no API that reads a pending shutdown.
    `--cancel` runs `shutdown.exe /a`, the undo, as long as the notice runs.
    """

    name = "reboot"
    summary = "Schedule a planned restart with a notice to the logged-on users (--cancel aborts it)"
    params = (
        Param("notice-minutes", f"minutes of notice before the restart (1-{MAX_NOTICE_MINUTES})", type=int,
              default=None, validate=_minutes),
        Param("message", f"notice shown to the logged-on users (1-{MAX_MESSAGE} characters)", default=None,
              validate=_message),
        Param("cancel", "cancel the scheduled restart (shutdown /a) instead", type=bool, default=False),
    )  # fmt: skip
    risk = Risk.CONFIRM
    script = "reboot"
    timeout_s = 60.0

    @classmethod
    def validate_params(cls, raw: dict[str, Any]) -> dict[str, Any]:
        """A restart needs its notice and message; a cancel takes neither."""
        values = super().validate_params(raw)
        given = [f"--{name}" for name in ("notice-minutes", "message") if values[name] is not None]
        if values["cancel"] and given:
            raise BadInput(f"reboot --cancel takes no {' or '.join(given)}")
        if not values["cancel"] and len(given) < 2:
            raise BadInput("reboot needs --notice-minutes N and --message TEXT (or --cancel)")
        return values

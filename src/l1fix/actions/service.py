"""service-restart: restart one service from the configured allow-list (Windows, Linux, macOS)."""

from __future__ import annotations

import re

from l1fix.action import Observation, Param, RunContext, ScriptAction
from l1fix.errors import Refused

DEFAULT_ALLOWED_SERVICES = (
    *("Spooler", "wuauserv", "BITS", "Dnscache", "WSearch", "AudioSrv"),
    *("linux:cups", "macos:org.cups.cupsd"),
)
OS_PREFIXES = ("windows", "linux", "macos")


def _service_name(value: str) -> None:
    # Windows service names: up to 256 chars, no slashes; systemd units, init.d scripts and
    # launchd labels: no slashes either. Anything else travels as data, never as script text;
    # the Linux/macOS script also refuses a name that could be read as an option (-x).
    if not value or len(value) > 256 or re.search(r"[\\/\x00-\x1f]", value):
        raise ValueError("not a service name")


def allowed_on(os_kind: str, allowed: tuple[str, ...]) -> list[str]:
    """The allow-list entries that apply to `os_kind`: entries without a prefix, and `<os>:NAME`."""
    names = []
    for entry in allowed:
        prefix, sep, name = entry.partition(":")
        if sep and prefix in OS_PREFIXES:
            if prefix == os_kind:
                names.append(name)
        else:
            names.append(entry)
    return names


def misspelt_prefix(entry: str) -> str | None:
    """The entry as it was probably meant when its prefix is close to, but not, an OS name (`linx:cups`)."""
    import difflib

    prefix, sep, name = entry.partition(":")
    if not sep or prefix in OS_PREFIXES:
        return None
    close = difflib.get_close_matches(prefix.lower(), OS_PREFIXES, n=1, cutoff=0.6)
    return f"{close[0]}:{name}" if close else None


def is_allowed(name: str, os_kind: str, allowed: tuple[str, ...]) -> bool:
    """Windows service names are case-insensitive; systemd units, init.d scripts and launchd labels are exact."""
    names = allowed_on(os_kind, allowed)
    if os_kind == "windows":
        return name.casefold() in {n.casefold() for n in names}
    return name in names


class ServiceRestart(ScriptAction):
    """Restart an allowed service; a Disabled (Windows) or masked (systemd) service is reported, not enabled.

    The allow-list is `allowed_services` in config.toml. An entry applies to every OS unless it starts
    with `windows:`, `linux:` or `macos:` (e.g. `linux:cups`, `macos:org.cups.cupsd`). On Windows names
    match whatever the case; on Linux (systemd unit or init.d script name) and macOS (launchd label of
    the system domain) they match exactly: `cups` allows `cups`, not `cups.service`.
    """

    name = "service-restart"
    summary = "Restart an allowed service (on Windows with its running dependents), verify it runs"
    params = (
        Param(
            "service",
            "service name from the allow-list: Windows service name (not display name), systemd unit or init.d "
            "script name, launchd label",
            validate=_service_name,
        ),
    )
    target_kinds = frozenset({"windows", "linux", "macos"})
    script = "service"

    def check(self, ctx: RunContext) -> Observation:
        self.ensure_allowed(ctx)
        return super().check(ctx)

    def check_fix_verify(self, ctx: RunContext):  # type: ignore[override]
        self.ensure_allowed(ctx)
        return super().check_fix_verify(ctx)

    @staticmethod
    def ensure_allowed(ctx: RunContext) -> None:
        """Refused (before any connection) unless the service is on the allow-list for the target's OS."""
        allowed = ctx.config.allowed_services
        name = ctx.params["service"]
        os_kind = ctx.target.os
        if not is_allowed(name, os_kind, allowed):
            names = ", ".join(allowed_on(os_kind, allowed)) or "none"
            raise Refused(
                f"service {name!r} is not on the allow-list",
                target=ctx.target.name,
                hint=f"allowed on {os_kind}: {names} (config: allowed_services)",
            )

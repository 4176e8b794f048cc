"""service-restart: restart one service from the configured allow-list."""

from __future__ import annotations

import re

from l1fix.action import Observation, Param, RunContext, ScriptAction
from l1fix.errors import Refused

DEFAULT_ALLOWED_SERVICES = ("Spooler", "wuauserv", "BITS", "Dnscache", "WSearch", "AudioSrv")


def _service_name(value: str) -> None:
    # Windows service names: up to 256 chars, no slashes; anything else is allowed and
    # travels as data, never as script text.
    if not value or len(value) > 256 or re.search(r"[\\/\x00-\x1f]", value):
        raise ValueError("not a Windows service name")


class ServiceRestart(ScriptAction):
    """Restart an allowed service with its dependents; a Disabled service is reported, not enabled."""

    name = "service-restart"
    summary = "Restart an allowed Windows service (and its running dependents), verify it runs"
    params = (Param("service", "service name (not display name), from the allow-list", validate=_service_name),)
    script = "service"

    def check(self, ctx: RunContext) -> Observation:
        self.ensure_allowed(ctx)
        return super().check(ctx)

    def check_fix_verify(self, ctx: RunContext):  # type: ignore[override]
        self.ensure_allowed(ctx)
        return super().check_fix_verify(ctx)

    @staticmethod
    def ensure_allowed(ctx: RunContext) -> None:
        allowed = ctx.config.allowed_services
        name = ctx.params["service"]
        if name.lower() not in {s.lower() for s in allowed}:
            raise Refused(
                f"service {name!r} is not on the allow-list",
                target=ctx.target.name,
                hint=f"allowed: {', '.join(allowed)} (config: allowed_services)",
            )

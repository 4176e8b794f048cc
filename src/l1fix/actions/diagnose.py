"""diagnose: read a computer's health and say which l1fix fix applies or what to escalate; changes nothing.

The script (`diagnose.ps1` on Windows, `diagnose.sh` on Linux/macOS) returns the readings in one
shape for every OS. The print queue is judged by spooler-restart's own check, and the policy age
read by gpupdate's (their scripts, check step only: read-only), so a suggestion always agrees with
what that fix would find. The suggestions are computed here, with the same rules for every OS:

- stuck print jobs, a paused queue, a stopped spooler          → spooler-restart
- a system volume under 5 % free                               → temp-clean
- an Automatic service (a failed unit) not running             → service-restart --service X when on
                                                                 the allow-list, else escalate
- a name that does not resolve while a DNS server answers      → dns-flush
- computer policy not refreshed for 24 h                       → gpupdate
- a pending reboot, or up for 30 days or more                  → reboot
- disk failure events, another volume under 5 % free, gateway or DNS servers that do not answer,
  no gateway or DNS server, a clock 2 min or more off the technician's, 3 or more critical
  events in 24 h                                               → escalate to L2

A fix is suggested only when that action exists for the computer's OS; otherwise its finding is
escalated. Healthy → `already-ok`; findings → `findings` (exit code 6, see Action.read_only).
"""

from __future__ import annotations

import shlex
import time
from datetime import UTC, datetime
from typing import Any

from l1fix.action import Observation, Param, Risk, RunContext, ScriptAction, registry
from l1fix.actions.gpupdate import GpUpdate
from l1fix.actions.spooler import SpoolerRestart
from l1fix.errors import RemoteError

LOW_DISK_PERCENT = 5.0
LONG_UPTIME_DAYS = 30
POLICY_MAX_AGE_H = 24
CLOCK_SKEW_S = 120  # Kerberos refuses logons beyond 5 min: warn well before
CRITICAL_EVENTS = 3  # in the last 24 h
# reboot always gives the users a notice: a suggestion the technician may adjust before running it.
REBOOT_NOTICE = {"notice-minutes": "15", "message": "Your computer restarts in 15 minutes: please save your work."}
SPOOLER_SERVICES = frozenset({"spooler", "cups", "org.cups.cupsd"})  # judged by spooler-restart's check
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

Finding = tuple[str | None, dict[str, str], str]  # (the fix to run, or None: escalate; its params; why)


class Diagnose(ScriptAction):
    """Read-only health check with suggestions; never runs a fix step."""

    name = "diagnose"
    summary = "Read a computer's health (uptime, users, disks, print queue, services, network, clock…), suggest fixes"
    target_kinds = frozenset({"windows", "linux", "macos"})
    risk = Risk.SAFE
    read_only = True
    script = "diagnose"
    params = (
        Param("network-probe", "ping the gateway and DNS servers, resolve the domain (off: configuration only)",
              type=bool, default=True),
    )  # fmt: skip

    def check(self, ctx: RunContext) -> Observation:
        sent = time.monotonic()
        params = {**ctx.params, "technician_utc": datetime.now(UTC).strftime(TIME_FORMAT)}
        readings = super().check(_sharing(ctx, params))
        elapsed = time.monotonic() - sent
        state = dict(readings.state)
        state["clock"] = _clock(state.get("clock") or {}, elapsed)
        state["spooler"] = _check_of(SpoolerRestart, ctx)
        state["policy"] = _check_of(GpUpdate, ctx)
        state["suggestions"] = suggest(state, ctx.target.name, ctx.target.kind, ctx.config.allowed_services)
        text = f"{readings.summary}: {describe(state)} {advice(state['suggestions'])}"
        return Observation(not state["suggestions"], state, text)

    def fix(self, ctx: RunContext, before: Observation) -> dict[str, Any]:
        raise NotImplementedError("diagnose only reads: it has no fix step")

    def verify(self, ctx: RunContext, before: Observation) -> Observation:
        raise NotImplementedError("diagnose only reads: it has no verify step")


def _sharing(ctx: RunContext, params: dict[str, Any]) -> RunContext:
    """A context with other params over the run's own connection and output (the runner closes it)."""
    return RunContext(ctx.target, params, lambda: ctx.connection, ctx.config, outputs=ctx.outputs)


def _check_of(action_cls: type[ScriptAction], ctx: RunContext) -> dict[str, Any] | None:
    """Another fix's check step (read-only) on this computer, or None where that fix does not run."""
    if ctx.target.kind not in action_cls.target_kinds:
        return None
    try:
        seen = action_cls().check(_sharing(ctx, {}))
    except RemoteError as exc:  # e.g. no spooler, no CUPS on this computer: nothing to judge
        return {"ok": True, "summary": exc.message, "state": None}
    return {"ok": seen.ok, "summary": seen.summary, "state": seen.state}


def _clock(clock: dict[str, Any], elapsed: float) -> dict[str, Any]:
    """The skew the host reported, less the round trip that the technician's time travelled."""
    skew = clock.get("skew_s")
    clock = {**clock, "round_trip_s": round(elapsed, 1), "off_by_s": None}
    if isinstance(skew, int | float):
        clock["off_by_s"] = round(skew if skew < 0 else max(0.0, skew - elapsed), 1)
    return clock


# --------------------------------------------------------------------------- the rules


def suggest(
    state: dict[str, Any], target: str, kind: str, allowed_services: tuple[str, ...] | list[str]
) -> list[dict[str, Any]]:
    """The fixes to run and what to escalate, from the readings: the same rules for every OS."""
    found: list[Finding] = []
    found += _spooler_findings(state.get("spooler") or {})
    found += _disk_findings(state.get("volumes") or [])
    found += _service_findings(state.get("services_not_running") or [], allowed_services)
    found += _network_findings(state.get("network") or {})
    found += _policy_findings(state.get("policy") or {}, state.get("clock") or {})
    found += _reboot_findings(state)
    found += _escalations(state)
    suggestions: list[dict[str, Any]] = []
    for action, params, reason in found:
        if action is not None and not _runs_on(action, kind):
            reason, action = f"{reason} (l1fix has no {action} for {kind} computers)", None
        if action is None:
            suggestions.append({"kind": "escalate", "action": None, "params": {}, "command": None, "reason": reason})
            continue
        same = next((s for s in suggestions if s["action"] == action and s["params"] == params), None)
        if same is not None:
            same["reason"] += f"; {reason}"
            continue
        words = ["l1fix", action, target, *(w for k, v in params.items() for w in (f"--{k}", v))]
        command = " ".join(shlex.quote(w) for w in words)
        suggestions.append({"kind": "fix", "action": action, "params": params, "command": command, "reason": reason})
    return suggestions


def _runs_on(action: str, kind: str) -> bool:
    cls = registry().get(action)
    return cls is not None and kind in cls.target_kinds


def _spooler_findings(spooler: dict[str, Any]) -> list[Finding]:
    state = spooler.get("state") or {}
    if spooler.get("ok", True):
        return []
    if state.get("start_type") == "Disabled":
        return []  # disabled on purpose (policy, hardening): reported, not a fault
    parts = []
    status = state.get("status") or state.get("scheduler")
    if status and status.lower() not in ("running",):
        parts.append(f"print spooler {status}")
    if state.get("stuck_jobs"):
        parts.append(_count(state["stuck_jobs"], "stuck print job"))
    if state.get("paused_queues"):
        parts.append("paused queue " + ", ".join(state["paused_queues"]))
    if state.get("orphan_spool_files"):
        parts.append(_count(state["orphan_spool_files"], "orphan spool file"))
    return [("spooler-restart", {}, ", ".join(parts) or spooler.get("summary", "print queue not ready"))]


def _disk_findings(volumes: list[dict[str, Any]]) -> list[Finding]:
    found: list[Finding] = []
    for volume in volumes:
        percent = volume.get("free_percent")
        if percent is None or percent >= LOW_DISK_PERCENT:
            continue
        reason = f"{volume['name']} {percent:.1f}% free ({_bytes(volume.get('free_bytes', 0))})"
        if volume.get("system"):
            found.append(("temp-clean", {}, reason))
        else:
            found.append((None, {}, f"{reason}: not the system volume, temporary files are not what fills it"))
    return found


def _service_findings(services: list[dict[str, Any]], allowed: tuple[str, ...] | list[str]) -> list[Finding]:
    allowed_names = {s.casefold() for s in allowed}
    found: list[Finding] = []
    for svc in services:
        name = str(svc.get("name", ""))
        if name.casefold() in SPOOLER_SERVICES:
            continue
        label = f"{name} ({svc['display_name']})" if svc.get("display_name") else name
        reason = f"{label} is {svc.get('start_type', 'Automatic')} but {svc.get('status', 'not running')}"
        if name.casefold() in allowed_names:
            found.append(("service-restart", {"service": name}, reason))
        else:
            found.append((None, {}, f"{reason}: not on the allow-list (allowed_services)"))
    return found


def _network_findings(network: dict[str, Any]) -> list[Finding]:
    found: list[Finding] = []
    addressed = any(a.get("addresses") for a in network.get("adapters") or [])
    if addressed and not network.get("gateways"):
        found.append((None, {}, "no default gateway configured"))
    if addressed and not network.get("dns_servers"):
        found.append((None, {}, "no DNS server configured"))
    if not network.get("probed"):
        return found
    probes = network.get("reachable") or []
    for probe in probes:
        if probe.get("role") == "gateway" and probe.get("reachable") is False:
            found.append((None, {}, f"gateway {probe['address']} does not answer (network, cabling, Wi-Fi)"))
    dns = [p for p in probes if p.get("role") == "dns"]
    if dns and not any(p.get("reachable") for p in dns):
        found.append((None, {}, "no DNS server answers: " + ", ".join(p["address"] for p in dns)))
    lookup = network.get("name_resolution") or {}
    if lookup.get("ok") is False and any(p.get("reachable") for p in dns):
        found.append(("dns-flush", {}, f"{lookup.get('name')} does not resolve although a DNS server answers"))
    return found


def _policy_findings(policy: dict[str, Any], clock: dict[str, Any]) -> list[Finding]:
    last = (policy.get("state") or {}).get("computer_last_refresh")
    now = clock.get("host_utc")
    if not last or not now:
        return []
    age_h = (_time(now) - _time(last)).total_seconds() / 3600
    if age_h < POLICY_MAX_AGE_H:
        return []
    return [
        (
            "gpupdate",
            {},
            f"computer policy last refreshed {age_h / 24:.0f} days ago ({last})"
            if age_h >= 48
            else f"computer policy last refreshed {age_h:.0f} h ago ({last})",
        )
    ]


def _reboot_findings(state: dict[str, Any]) -> list[Finding]:
    reasons = []
    if state.get("pending_reboot"):
        reasons.append("reboot pending (" + ", ".join(state["pending_reboot"]) + ")")
    days = (state.get("uptime_s") or 0) / 86400
    if days >= LONG_UPTIME_DAYS:
        reasons.append(f"up for {days:.0f} days")
    return [("reboot", dict(REBOOT_NOTICE), "; ".join(reasons))] if reasons else []


def _escalations(state: dict[str, Any]) -> list[Finding]:
    found: list[Finding] = []
    disk = state.get("disk_events") or {}
    if disk.get("count"):
        sources = sorted(
            {" ".join(str(e[k]) for k in ("provider", "id") if e.get(k) is not None) for e in disk.get("events") or []}
        )
        found.append(
            (
                None,
                {},
                f"{_count(disk['count'], 'disk error event')} in {disk.get('days', 7)} days "
                f"({', '.join(sources)}): a failing disk; have the user's data backed up",
            )
        )
    off = (state.get("clock") or {}).get("off_by_s")
    if off is not None and abs(off) >= CLOCK_SKEW_S:
        ahead = "ahead of" if off > 0 else "behind"
        found.append(
            (
                None,
                {},
                f"clock {_duration(abs(off))} {ahead} the technician's: time sync (W32Time, NTP); "
                "Kerberos refuses logons beyond 5 min",
            )
        )
    critical = state.get("critical_events") or {}
    if (critical.get("count") or 0) >= CRITICAL_EVENTS:
        found.append(
            (
                None,
                {},
                f"{critical['count']} critical events in {critical.get('hours', 24)} h "
                f"({', '.join(critical.get('sources') or [])})",
            )
        )
    return found


# --------------------------------------------------------------------------- sentences


def describe(state: dict[str, Any]) -> str:
    """The readings in one sentence for a person."""
    parts = []
    if state.get("uptime_s") is not None:
        parts.append(f"up {_duration(state['uptime_s'])}")
    users = [
        s.get("user") + ("" if s.get("state") in (None, "Active", "active") else f" ({s['state']})")
        for s in state.get("sessions") or []
    ]
    parts.append("logged on: " + ", ".join(users) if users else "nobody logged on")
    volumes = [
        f"{v['name']} {v['free_percent']:.0f}% free"
        for v in state.get("volumes") or []
        if v.get("free_percent") is not None
    ]
    if volumes:
        parts.append(", ".join(volumes))
    spooler = state.get("spooler") or {}
    if spooler.get("state") is None:
        parts.append("no print spooler")
    else:
        parts.append("print queue ok" if spooler.get("ok") else "print queue not ready")
    stopped = [s.get("name") for s in state.get("services_not_running") or []]
    if stopped:
        parts.append("not running: " + ", ".join(stopped))
    if state.get("pending_reboot"):
        parts.append("reboot pending")
    network = state.get("network") or {}
    if not network.get("probed"):
        parts.append("network not probed")
    else:
        down = [p["address"] for p in network.get("reachable") or [] if p.get("reachable") is False]
        parts.append("unreachable: " + ", ".join(down) if down else "gateway and DNS answer")
    critical = (state.get("critical_events") or {}).get("count")
    if critical:
        parts.append(f"{_count(critical, 'critical event')} in 24 h")
    return "; ".join(parts) + "."


def advice(suggestions: list[dict[str, Any]]) -> str:
    """What to do next, in one sentence per kind."""
    fixes = [f"{s['command']} ({s['reason']})" for s in suggestions if s["kind"] == "fix"]
    escalate = [s["reason"] for s in suggestions if s["kind"] == "escalate"]
    if not fixes and not escalate:
        return "Nothing to fix."
    text = ""
    if fixes:
        text += "Suggested: " + "; ".join(fixes) + "."
    if escalate:
        text += (" " if text else "") + "Escalate to L2: " + "; ".join(escalate) + "."
    return text


def _count(n: int, noun: str) -> str:
    return f"1 {noun}" if n == 1 else f"{n} {noun}s"


def _bytes(n: int) -> str:
    for unit, size in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 86400:
        return f"{seconds // 86400} d {seconds % 86400 // 3600} h"
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds} s"


def _time(text: str) -> datetime:
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)

"""Turn the name a technician types (`PC042`) into a Target: inventory file, then GLPI (optional), then DNS."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from l1fix.errors import BadInput, UnknownTarget
from l1fix.targets.base import CONNECTION_MODULES, Target

OS_KINDS = ("windows", "linux", "macos")
CONNECTIONS = tuple(dict.fromkeys(("winrm", "ssh", "local", "ldap", "graph", *CONNECTION_MODULES)))
_TOP_KEYS = ("defaults", "hosts", "groups")
_DEFAULT_KEYS = ("dns_suffix", "use_dns", "os", "connection")
_HOST_KEYS = ("address", "os", "connection", "port", "groups", "description", *CONNECTIONS)

_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def validate_target_name(name: str) -> str:
    """Return `name` if it is a host name, an FQDN, or an IPv4/IPv6 literal; else BadInput."""
    if isinstance(name, str) and name:
        if _is_ip(name):
            return name
        hostname = name[:-1] if name.endswith(".") else name
        labels = hostname.split(".")
        if (
            len(hostname) <= 253
            and all(_LABEL.fullmatch(label) for label in labels)
            and not labels[-1].isdigit()  # "1234" or "10.0.0.999" would reach DNS as a number
        ):
            return name
    shown = name[:80] + "…" if isinstance(name, str) and len(name) > 80 else name
    raise BadInput(f"{shown!r} is not a valid host name, FQDN or IP address")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@dataclass
class Inventory:
    """Hosts and groups from the inventory file, and how to fall back to DNS."""

    hosts: dict[str, dict]  # name → entry; names matched case-insensitively
    groups: dict[str, list[str]]
    dns_suffix: str | None = None
    use_dns: bool = True
    default_os: str = "windows"
    default_connection: str = "winrm"
    path: Path | None = None  # the file read, for messages

    def entry_name(self, name: str) -> str | None:
        """The inventory's spelling of `name` (case-insensitive; `PC042.<dns_suffix>` finds PC042)."""
        index = {key.lower(): key for key in self.hosts}
        wanted = name.lower().rstrip(".")
        if wanted in index:
            return index[wanted]
        suffix = "." + self.dns_suffix.lower() if self.dns_suffix else None
        if suffix and wanted.endswith(suffix):
            return index.get(wanted[: -len(suffix)])
        return None

    def resolve(self, name: str, external: Callable[[str], str | None] | None = None) -> Target:
        """The Target for `name`: its inventory entry, else the address `external` knows
        (GLPI's computer inventory), else a host found in DNS (with the defaults)."""
        validate_target_name(name)
        key = self.entry_name(name)
        if key is not None:
            return self._target(key, self.hosts[key] or {})
        if _is_ip(name):
            return Target(name=name, address=name, os=self.default_os, connection=self.default_connection)
        address = external(name) if external else None
        if address:
            return Target(name=name, address=address, os=self.default_os, connection=self.default_connection)
        where = f"the inventory ({self.path})" if self.path else "the inventory"
        if not self.use_dns:
            raise UnknownTarget(f"{name} is not in {where}", hint="check the name or add it to the inventory")
        lookup = name if "." in name or not self.dns_suffix else f"{name}.{self.dns_suffix}"
        if not _resolves(lookup):
            shown = f" (as {lookup})" if lookup != name else ""
            raise UnknownTarget(
                f"{name} is not in {where} and does not resolve in DNS{shown}",
                hint="check the name or add it to the inventory",
            )
        return Target(name=name, address=lookup, os=self.default_os, connection=self.default_connection)

    def _target(self, key: str, entry: dict[str, Any]) -> Target:
        connection = entry.get("connection") or self.default_connection
        return Target(
            name=key,
            address=entry.get("address") or key,
            os=entry.get("os") or self.default_os,
            connection=connection,
            port=entry.get("port"),
            settings=dict(entry.get(connection) or {}),
        )

    def group(self, name: str) -> list[str]:
        """Member names of a group (case-insensitive); unknown group → BadInput."""
        for key, members in self.groups.items():
            if key.lower() == name.lower():
                return list(members)
        import difflib

        close = difflib.get_close_matches(name, list(self.groups), n=1)
        known = ", ".join(sorted(self.groups)) or "none"
        hint = f"did you mean {close[0]}?" if close else None
        raise BadInput(f"unknown group {name!r} (groups: {known})", hint=hint)


_loaded: dict[Path, tuple[tuple[int, int], Inventory]] = {}


def load_inventory(path: Path) -> Inventory:
    """Read the YAML inventory; a missing file is an empty inventory.

    Kept while the file is unchanged (same mtime and size): a fleet run resolves every
    target against it, and parsing a 200-host file per run made the work grow as N².
    """
    path = Path(path)
    try:
        stat = path.stat()
        version = (stat.st_mtime_ns, stat.st_size)
        cached = _loaded.get(path)
        if cached is not None and cached[0] == version:
            return cached[1]
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Inventory(hosts={}, groups={}, path=path)
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read inventory {path}: {getattr(exc, 'strerror', None) or exc}") from None
    inventory = _read(text, path)
    _loaded[path] = (version, inventory)
    return inventory


def _read(text: str, path: Path) -> Inventory:
    """Parse the inventory text; YAML errors name the file and line."""

    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise BadInput(f"{path}{line}: malformed YAML: {problem}") from None
    return _parse(data if data is not None else {}, str(path), path)


def _parse(data: Any, where: str, path: Path) -> Inventory:
    from l1fix.config import check_keys

    _mapping(data, where, "the inventory")
    check_keys(data, _TOP_KEYS, where)

    defaults = _mapping(data.get("defaults") or {}, where, "defaults")
    check_keys(defaults, _DEFAULT_KEYS, f"{where} defaults")
    suffix = defaults.get("dns_suffix")
    if suffix is not None:
        if not isinstance(suffix, str):
            raise BadInput(f"{where}: defaults.dns_suffix must be a domain such as corp.example.com")
        suffix = suffix.strip(".")
        _check_name(suffix, where, "defaults.dns_suffix")
    use_dns = defaults.get("use_dns", True)
    if not isinstance(use_dns, bool):
        raise BadInput(f"{where}: defaults.use_dns must be true or false")
    default_os = _choice(defaults.get("os", "windows"), OS_KINDS, where, "defaults.os")
    default_conn = _choice(defaults.get("connection", "winrm"), CONNECTIONS, where, "defaults.connection")

    hosts: dict[str, dict] = {}
    groups: dict[str, list[str]] = {}
    seen: dict[str, str] = {}
    for raw_name, raw_entry in _mapping(data.get("hosts") or {}, where, "hosts").items():
        name = str(raw_name)
        _check_name(name, where, "host")
        if name.lower() in seen:
            raise BadInput(f"{where}: host {name} is listed twice (also as {seen[name.lower()]})")
        seen[name.lower()] = name
        entry = _host_entry(raw_entry or {}, f"{where} host {name}")
        hosts[name] = entry
        for group in entry.get("groups", []):
            _add(groups, group, name)

    for raw_group, members in _mapping(data.get("groups") or {}, where, "groups").items():
        group = str(raw_group)
        if members is None:
            members = []
        if not isinstance(members, list):
            raise BadInput(f"{where}: group {group} must be a list of host names")
        for member in members:
            _check_name(str(member), where, f"group {group} member")
            _add(groups, group, str(member))
        groups.setdefault(_group_key(groups, group), [])

    return Inventory(
        hosts=hosts,
        groups=groups,
        dns_suffix=suffix or None,
        use_dns=use_dns,
        default_os=default_os,
        default_connection=default_conn,
        path=path,
    )


def _host_entry(entry: Any, where: str) -> dict[str, Any]:
    from l1fix.config import WinRMSettings, build_ssh, build_winrm, check_keys

    _mapping(entry, where, "the entry")
    check_keys(entry, _HOST_KEYS, where)
    entry = dict(entry)
    if "address" in entry:
        _check_name(str(entry["address"]), where, "address")
        entry["address"] = str(entry["address"])
    if "os" in entry:
        _choice(entry["os"], OS_KINDS, where, "os")
    if "connection" in entry:
        _choice(entry["connection"], CONNECTIONS, where, "connection")
    port = entry.get("port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
        raise BadInput(f"{where}: port must be a port number (1-65535)")
    groups = entry.get("groups", [])
    if isinstance(groups, str):
        groups = [groups]
    if not isinstance(groups, list) or not all(isinstance(g, str) and g for g in groups):
        raise BadInput(f"{where}: groups must be a list of group names")
    entry["groups"] = groups
    for conn in CONNECTIONS:
        if conn in entry:
            entry[conn] = dict(_mapping(entry[conn] or {}, where, conn))
    if "winrm" in entry:  # keys, types, and no clear-text password; merged per run by Config.with_winrm
        build_winrm(entry["winrm"], base=WinRMSettings(), root=Path("."), where=f"{where} winrm")
    if "ssh" in entry:  # the same checks as the profile's [ssh] table; merged per run by Config.with_ssh
        build_ssh(entry["ssh"], root=Path("."), where=f"{where} ssh")
    return entry


def _add(groups: dict[str, list[str]], group: str, member: str) -> None:
    members = groups.setdefault(_group_key(groups, group), [])
    if member.lower() not in {m.lower() for m in members}:
        members.append(member)


def _group_key(groups: dict[str, list[str]], group: str) -> str:
    return next((key for key in groups if key.lower() == group.lower()), group)


def _mapping(value: Any, where: str, what: str) -> dict:
    if not isinstance(value, dict):
        raise BadInput(f"{where}: {what} must be a mapping (key: value)")
    return value


def _choice(value: Any, choices: tuple[str, ...], where: str, key: str) -> str:
    if value not in choices:
        raise BadInput(f"{where}: {key} = {value!r} is invalid: expected one of {', '.join(choices)}")
    return value


def _check_name(name: str, where: str, what: str) -> None:
    try:
        validate_target_name(name)
    except BadInput as exc:
        raise BadInput(f"{where}: {what} {exc.message}") from None


def _resolves(name: str) -> bool:
    try:
        return bool(socket.getaddrinfo(name, None, type=socket.SOCK_STREAM))
    except (OSError, UnicodeError):  # socket.gaierror is an OSError
        return False

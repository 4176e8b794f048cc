"""Where l1fix keeps its files, the profile in use, and how credentials are found.

`config.toml` (in `home_dir()`) holds named profiles. Passwords are never stored in it:
only a *reference* (`env:NAME`, `keyring:service/user`, `file:PATH` or `prompt`) that
`resolve_secret` turns into a `Secret` when a connection needs it.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from l1fix.errors import BadInput
from l1fix.secrets import Secret

CONFIG_NAME = "config.toml"
DEFAULT_PROFILE = "default"

PASSWORD_FORMS = "env:NAME, keyring:service/user, file:PATH or prompt"
_PASSWORD_REF = re.compile(r"env:[A-Za-z_][A-Za-z0-9_]*|keyring:[^/]+/.+|file:.+|prompt", re.DOTALL)

_TOP_KEYS = ("default_profile", "profiles")
_PROFILE_KEYS = ("technician", "inventory", "allowed_services", "winrm", "glpi", "ldap", "graph", "ssh")


def home_dir() -> Path:
    """`$L1FIX_HOME` if set, else the user data folder for l1fix; created on demand."""
    env = os.environ.get("L1FIX_HOME")
    if env:
        home = Path(env).expanduser()
    else:
        import platformdirs

        home = Path(platformdirs.user_data_dir("l1fix", appauthor=False))
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    return home


# The longest one script may run on a host. Each fix has its own, shorter timeout (spooler-restart
# 120 s, temp-clean 600 s): a profile's command_timeout_s only lowers it.
COMMAND_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class WinRMSettings:
    """How to reach Windows hosts over WinRM; per-host overrides come from the inventory."""

    scheme: str = "https"  # https | http
    port: int | None = None  # None → 5986 for https, 5985 for http
    transport: str = "ntlm"  # ntlm | kerberos | basic (basic only over https)
    ca_bundle: Path | None = None  # CA PEM for certificate validation (None = system store)
    validate_certificate: bool = True
    username: str | None = None  # e.g. "CORP\\tech"
    password: str | None = None  # a credential reference, never the password itself
    operation_timeout_s: int = 20
    read_timeout_s: int = 30
    command_timeout_s: float = COMMAND_TIMEOUT_S

    @property
    def effective_port(self) -> int:
        """The port to use: the configured one, else WinRM's default for the scheme."""
        if self.port is not None:
            return self.port
        return 5986 if self.scheme == "https" else 5985


WINRM_KEYS = tuple(f.name for f in fields(WinRMSettings))

CREDENTIAL = {"credential": True}  # field metadata: the value is a credential reference


@dataclass(frozen=True)
class GlpiConfig:
    """Where followups go: GLPI's REST API (apirest.php). No url means no ticket system."""

    url: str | None = None  # https://glpi.corp.example.com/apirest.php
    app_token: str | None = field(default=None, metadata=CREDENTIAL)
    user_token: str | None = field(default=None, metadata=CREDENTIAL)
    login: str | None = None  # with password, instead of user_token
    password: str | None = field(default=None, metadata=CREDENTIAL)
    ca_bundle: Path | None = None
    verify: bool = True
    timeout_s: float = 15.0
    followup_private: bool = True
    language: str = field(default="fr", metadata={"choices": ("fr", "en")})
    inventory_lookup: bool = False  # look computers up in GLPI when not in the local inventory
    inventory_cache_s: float = 3600.0


@dataclass(frozen=True)
class LdapSettings:
    """How to reach Active Directory (ldap3): LDAPS or StartTLS, the DC certificate always checked."""

    url: str | None = None  # ldaps://dc1.corp.example.com[:636], ldap://HOST with starttls, or a bare host
    port: int | None = None  # None: the url's port, else 636 (ldaps) or 389 (ldap)
    starttls: bool = False  # ldap:// upgraded with StartTLS before the bind
    ca_bundle: Path | None = None  # CA PEM the DC certificate must chain to (None: system store)
    server_name: str | None = None  # name the DC certificate must carry, checked even when url is an IP
    base_dn: str | None = None  # where users are searched (None: the domain's naming context)
    bind_user: str | None = None  # helpdesk@corp.example.com, CORP\\helpdesk or a DN
    bind_password: str | None = field(default=None, metadata=CREDENTIAL)
    allow_protected: bool = False  # resets/enables may touch protected (admin) accounts
    allow_no_must_change: bool = False  # ad-password-reset --no-must-change is allowed
    timeout_s: float = 10.0

    @property
    def scheme(self) -> str:
        return _url_parts(self.url)[0] if self.url else "ldaps"

    @property
    def host(self) -> str:
        return _url_parts(self.url)[1] if self.url else ""

    @property
    def effective_port(self) -> int:
        """The configured port, else the url's, else LDAP's default for the scheme."""
        if self.port is not None:
            return self.port
        url_port = _url_parts(self.url)[2] if self.url else None
        return url_port or (636 if self.scheme == "ldaps" else 389)

    @property
    def expected_name(self) -> str:
        """The name the DC certificate must match: server_name, else the url's host."""
        return self.server_name or self.host


GRAPH_AUTH = ("app", "device-code", "token")


@dataclass(frozen=True)
class GraphSettings:
    """How to reach Microsoft 365 / Entra ID (Microsoft Graph, msgraph-sdk): HTTPS, certificate always checked.

    auth "app": the application's own identity (client_secret or certificate_path);
    "device-code": the technician signs in (delegated, their own roles apply);
    "token": an access token obtained elsewhere (a credential reference; for tests and scripts).
    """

    auth: str = field(default="app", metadata={"choices": GRAPH_AUTH})
    tenant_id: str | None = None  # directory (tenant) id or domain, e.g. corp.onmicrosoft.com
    client_id: str | None = None  # the app registration's application (client) id
    client_secret: str | None = field(default=None, metadata=CREDENTIAL)
    certificate_path: Path | None = None  # PEM (private key + certificate) or PKCS#12, instead of a secret
    certificate_password: str | None = field(default=None, metadata=CREDENTIAL)
    access_token: str | None = field(default=None, metadata=CREDENTIAL)  # auth = "token" only
    base_url: str = "https://graph.microsoft.com/v1.0"
    authority: str = "https://login.microsoftonline.com"  # where tokens come from (national clouds differ)
    ca_bundle: Path | None = None  # CA PEM for Graph and the authority (None: system store)
    timeout_s: float = 30.0  # per HTTP request
    max_retries: int = 3  # retries of a throttled (429) or unavailable (503, 504) request
    max_retry_after_s: float = 30.0  # a longer Retry-After is not waited for: reported instead
    allow_privileged: bool = False  # resets/enables may touch accounts holding admin roles
    allow_no_must_change: bool = False  # m365-password-reset --no-must-change is allowed
    token_cache: bool = True  # device-code: keep the sign-in in the OS keychain between runs


@dataclass(frozen=True)
class SshSettings:
    """How to reach Linux and macOS hosts over SSH (paramiko); per-host overrides come from the inventory.

    With neither key_file nor password, the SSH agent and ~/.ssh/id_* keys are tried, as ssh does.
    """

    username: str | None = None  # None: the technician's own login name, as ssh does
    port: int = 22
    key_file: Path | None = None  # private key (OpenSSH or PEM format)
    key_passphrase: str | None = field(default=None, metadata=CREDENTIAL)  # when key_file is encrypted
    password: str | None = field(default=None, metadata=CREDENTIAL)
    known_hosts: Path | None = None  # host keys l1fix trusts and records (None: <home>/known_hosts)
    user_known_hosts: bool = False  # also trust the keys in ~/.ssh/known_hosts (read, never written)
    trust_new_host: bool = False  # record the key of a host met for the first time instead of refusing it
    connect_timeout_s: float = 10.0
    command_timeout_s: float = COMMAND_TIMEOUT_S
    sudo: bool = True  # a login other than root runs scripts with `sudo -n` (never asks a password)


@dataclass(frozen=True)
class Config:
    """The settings of one profile, with every path made absolute."""

    home: Path
    profile: str
    technician: str
    inventory_path: Path
    allowed_services: tuple[str, ...]
    winrm: WinRMSettings
    journal_path: Path
    config_path: Path | None = None  # the file read, None when defaults were used
    glpi: GlpiConfig = GlpiConfig()
    ldap: LdapSettings = LdapSettings()
    graph: GraphSettings = GraphSettings()
    ssh: SshSettings = SshSettings()

    def with_winrm(self, **overrides: Any) -> WinRMSettings:
        """The profile's WinRM settings with per-host overrides; relative paths are relative to home."""
        return build_winrm(overrides, base=self.winrm, root=self.home, where="per-host winrm settings")

    def with_ssh(self, **overrides: Any) -> SshSettings:
        """The profile's SSH settings with per-host overrides; relative paths are relative to home."""
        where = "per-host ssh settings"
        checked = build_ssh(overrides, root=self.home, where=where)
        return check_ssh(replace(self.ssh, **{key: getattr(checked, key) for key in overrides}), where)


def load_config(path: Path | None = None, profile: str | None = None) -> Config:
    """Read `config.toml` (from home, or `path`) and return the chosen profile's settings.

    The profile is `profile`, else the file's `default_profile`, else "default" (built-in
    defaults when the file has no such profile). A missing default file means defaults.
    """
    import tomllib

    home = home_dir()
    explicit = path is not None
    config_path = Path(path).expanduser() if path is not None else home / CONFIG_NAME
    data: dict[str, Any] = {}
    try:
        with config_path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        if explicit:
            raise BadInput(f"config file {config_path} does not exist") from None
        config_path = None  # type: ignore[assignment]
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"{config_path}: malformed TOML: {exc}") from None
    except OSError as exc:
        raise BadInput(f"cannot read config file {config_path}: {exc.strerror}") from None

    where = str(config_path) if config_path else CONFIG_NAME
    check_keys(data, _TOP_KEYS, where)
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict) or not all(isinstance(v, dict) for v in profiles.values()):
        raise BadInput(f"{where}: profiles must be tables, like [profiles.lab]")
    default_profile = data.get("default_profile", DEFAULT_PROFILE)
    if not isinstance(default_profile, str):
        raise BadInput(f"{where}: default_profile must be a profile name")

    name = profile or default_profile
    if name in profiles:
        table = profiles[name]
    elif name == DEFAULT_PROFILE and not profile:
        table = {}
    else:
        known = ", ".join(sorted(profiles)) or "none"
        raise BadInput(f"unknown profile {name!r} (profiles in {where}: {known})")

    root = config_path.parent if config_path else home
    return _build_config(table, name=name, home=home, root=root, file_label=where, config_path=config_path)


def _build_config(
    table: Mapping[str, Any], *, name: str, home: Path, root: Path, file_label: str, config_path: Path | None
) -> Config:
    where = f"{file_label} [profiles.{name}]"
    check_keys(table, _PROFILE_KEYS, where)
    technician = table.get("technician") or _os_user()
    if not isinstance(technician, str) or not technician.strip():
        raise BadInput(f"{where}: technician must be a non-empty string")

    inventory = table.get("inventory")
    if inventory is None:
        inventory_path = home / "inventory.yml"
    elif isinstance(inventory, str) and inventory:
        inventory_path = _path(inventory, root)
    else:
        raise BadInput(f"{where}: inventory must be a file path")

    allowed = _allowed_services(table.get("allowed_services"), where)

    winrm_table = table.get("winrm", {})
    if not isinstance(winrm_table, dict):
        raise BadInput(f"{where}: winrm must be a table, like [profiles.{name}.winrm]")
    winrm_where = f"{file_label} [profiles.{name}.winrm]"
    winrm = build_winrm(winrm_table, base=WinRMSettings(), root=root, where=winrm_where)
    glpi = build_section(GlpiConfig, _table(table, "glpi", where), root=root, where=f"{where}.glpi")
    ssh = build_ssh(_table(table, "ssh", where), root=root, where=f"{where}.ssh")
    ldap = build_ldap(_table(table, "ldap", where), root=root, where=f"{where}.ldap")
    graph = build_graph(_table(table, "graph", where), root=root, where=f"{where}.graph")

    return Config(
        home=home,
        profile=name,
        technician=technician.strip(),
        inventory_path=inventory_path,
        allowed_services=allowed,
        winrm=winrm,
        journal_path=home / "journal.sqlite3",
        config_path=config_path,
        glpi=glpi,
        ssh=ssh,
        ldap=ldap,
        graph=graph,
    )


def _allowed_services(services: Any, where: str) -> tuple[str, ...]:
    """The profile's service allow-list (the default one when absent); a misspelt OS prefix is refused."""
    from l1fix.actions.service import DEFAULT_ALLOWED_SERVICES, misspelt_prefix

    if services is None:
        return tuple(DEFAULT_ALLOWED_SERVICES)
    if not isinstance(services, list) or not all(isinstance(s, str) and s.strip() for s in services):
        raise BadInput(f"{where}: allowed_services must be a list of service names")
    allowed = tuple(s.strip() for s in services)
    for entry in allowed:
        meant = misspelt_prefix(entry)
        if meant:
            prefix = entry.partition(":")[0]
            raise BadInput(
                f"{where}: allowed_services: {entry!r}: {prefix!r} is not windows, linux or macos",
                hint=f"did you mean {meant!r}?",
            )
    return allowed


def _table(table: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = table.get(key, {})
    if not isinstance(value, dict):
        raise BadInput(f"{where}: {key} must be a table, like [profiles.NAME.{key}]")
    return value


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """A settings class's field types (evaluated once: a fleet run builds settings per target)."""
    import typing

    return typing.get_type_hints(cls)


def build_section(cls: type, data: Mapping[str, Any], *, root: Path, where: str) -> Any:
    """A settings dataclass from a TOML table, checked against its fields' types.

    Paths are relative to `root`; fields marked CREDENTIAL take only a credential reference;
    fields with "choices" metadata take only those values. Raises BadInput, never echoing a credential.
    """
    hints = _type_hints(cls)
    by_name = {f.name: f for f in fields(cls)}
    check_keys(data, by_name, where)
    values = {}
    for key, raw in data.items():
        meta = by_name[key].metadata
        if meta.get("credential"):
            values[key] = _credential_ref(raw, root, f"{where}: {key}")
            continue
        value = _typed(raw, hints[key], root)
        if value is _INVALID or ("choices" in meta and value not in meta["choices"]):
            expected = " or ".join(meta.get("choices", ())) or _type_name(hints[key])
            raise BadInput(f"{where}: {key} = {raw!r} is invalid: expected {expected}")
        values[key] = value
    return cls(**values)


_INVALID = object()


def _typed(raw: Any, hint: Any, root: Path) -> Any:
    import types

    options = set(hint.__args__) if isinstance(hint, types.UnionType) else {hint}
    if raw is None:
        return None if type(None) in options else _INVALID
    if bool in options:
        return raw if isinstance(raw, bool) else _INVALID
    if isinstance(raw, bool):
        return _INVALID
    if int in options and isinstance(raw, int):
        return raw
    if float in options and isinstance(raw, int | float):
        return float(raw)
    if Path in options and isinstance(raw, str) and raw:
        return _path(raw, root)
    if str in options and isinstance(raw, str) and raw:
        return raw
    return _INVALID


_TYPE_WORDS = {bool: "true or false", int: "a whole number", float: "a number", Path: "a file path", str: "text"}


def _type_name(hint: Any) -> str:
    import types

    options = hint.__args__ if isinstance(hint, types.UnionType) else (hint,)
    return " or ".join(_TYPE_WORDS[o] for o in options if o is not type(None))


def _credential_ref(raw: Any, root: Path, where: str) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not _PASSWORD_REF.fullmatch(raw):
        raise BadInput(f"{where}: secrets are never stored in config: use {PASSWORD_FORMS}")
    return "file:" + str(_path(raw[5:], root)) if raw.startswith("file:") else raw


_DNS_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"(?=.{{1,253}}$){_DNS_LABEL}(\.{_DNS_LABEL})*\.?")
_LDAP_URL_FORMS = "ldaps://HOST[:PORT], or ldap://HOST[:PORT] with starttls = true"


def _url_parts(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port or None) of an LDAP url; a bare host means ldaps. Raises ValueError."""
    from urllib.parse import urlsplit

    parts = urlsplit(url if "://" in url else f"ldaps://{url}")
    if parts.scheme not in ("ldap", "ldaps") or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(url)
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(url)
    return parts.scheme, parts.hostname, parts.port


def build_ldap(data: Mapping[str, Any], *, root: Path, where: str) -> LdapSettings:
    """The [profiles.NAME.ldap] table checked: types, url, and never a bind in clear text. Raises BadInput."""
    settings: LdapSettings = build_section(LdapSettings, data, root=root, where=where)
    if settings.url is not None:
        try:
            scheme, host, url_port = _url_parts(settings.url)
        except ValueError:
            raise BadInput(f"{where}: url = {settings.url!r} is invalid: expected {_LDAP_URL_FORMS}") from None
        if settings.port is not None and url_port is not None and settings.port != url_port:
            raise BadInput(f"{where}: port {settings.port} contradicts the url's port {url_port}")
        if scheme == "ldaps" and settings.starttls:
            raise BadInput(f"{where}: starttls is for ldap:// urls; ldaps:// is already encrypted")
        if scheme == "ldap" and not settings.starttls:
            raise BadInput(
                f"{where}: ldap:// without starttls would send the bind password in clear text",
                hint='use url = "ldaps://HOST", or set starttls = true',
            )
    if settings.port is not None and not 0 < settings.port < 65536:
        raise BadInput(f"{where}: port = {settings.port} is invalid: expected a port number (1-65535)")
    if settings.server_name is not None and not _DNS_NAME.fullmatch(settings.server_name):
        raise BadInput(f"{where}: server_name = {settings.server_name!r} is invalid: expected a DNS name")
    if settings.timeout_s <= 0:
        raise BadInput(f"{where}: timeout_s must be a number of seconds > 0")
    if settings.bind_password is not None and not settings.bind_user:
        raise BadInput(f"{where}: bind_password is set but bind_user is not")
    return settings


def _https_url(url: str, *, path: bool) -> bool:
    """An https:// url (http:// only to a loopback address), no credentials, query or fragment."""
    import ipaddress
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return False
    if not parts.hostname or parts.username or parts.password or parts.query or parts.fragment:
        return False
    if not path and parts.path not in ("", "/"):
        return False
    if parts.scheme == "https":
        return True
    try:
        loopback = parts.hostname == "localhost" or ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        loopback = False
    return parts.scheme == "http" and loopback


def build_graph(data: Mapping[str, Any], *, root: Path, where: str) -> GraphSettings:
    """The [profiles.NAME.graph] table checked: types, urls (HTTPS), limits. Raises BadInput.

    Which credential the chosen auth needs is checked when a connection opens (like ldap.url).
    """
    settings: GraphSettings = build_section(GraphSettings, data, root=root, where=where)
    for key in ("base_url", "authority"):
        url = getattr(settings, key)
        if not _https_url(url, path=key == "base_url"):
            raise BadInput(
                f"{where}: {key} = {url!r} is invalid: expected https://HOST"
                + ("[/PATH]" if key == "base_url" else "")
                + " (http:// only to a loopback address)"
            )
    if settings.base_url.endswith("/"):
        settings = replace(settings, base_url=settings.base_url.rstrip("/"))
    if settings.client_secret and settings.certificate_path:
        raise BadInput(f"{where}: client_secret and certificate_path are two ways to sign in: keep one")
    if settings.certificate_password and not settings.certificate_path:
        raise BadInput(f"{where}: certificate_password is set but certificate_path is not")
    if settings.access_token and settings.auth != "token":
        raise BadInput(f'{where}: access_token is only for auth = "token"')
    if settings.timeout_s <= 0:
        raise BadInput(f"{where}: timeout_s must be a number of seconds > 0")
    if not 0 <= settings.max_retries <= 10:
        raise BadInput(f"{where}: max_retries must be a whole number from 0 to 10")
    if not 0 < settings.max_retry_after_s < 180:
        raise BadInput(f"{where}: max_retry_after_s must be a number of seconds from 0 to 180")
    return settings


def build_ssh(data: Mapping[str, Any], *, root: Path, where: str) -> SshSettings:
    """The [profiles.NAME.ssh] table checked: types, port, timeouts, no secret in clear. Raises BadInput."""
    return check_ssh(build_section(SshSettings, data, root=root, where=where), where)


def check_ssh(settings: SshSettings, where: str) -> SshSettings:
    """The checks that span values: port range, timeouts, a passphrase needs its key."""
    if not 0 < settings.port < 65536:
        raise BadInput(f"{where}: port = {settings.port} is invalid: expected a port number (1-65535)")
    for key in ("connect_timeout_s", "command_timeout_s"):
        if getattr(settings, key) <= 0:
            raise BadInput(f"{where}: {key} must be a number of seconds > 0")
    if settings.username is not None and any(c.isspace() or ord(c) < 32 for c in settings.username):
        raise BadInput(f"{where}: username = {settings.username!r} is invalid: expected a login name")
    if settings.key_passphrase is not None and settings.key_file is None:
        raise BadInput(f"{where}: key_passphrase is set but key_file is not")
    return settings


def build_winrm(data: Mapping[str, Any], *, base: WinRMSettings, root: Path, where: str) -> WinRMSettings:
    """Check `data` (keys, types, values) and merge it over `base`. Raises BadInput."""
    check_keys(data, WINRM_KEYS, where)
    values = {key: _winrm_value(key, raw, root, where) for key, raw in data.items()}
    settings = replace(base, **values)
    if settings.transport == "basic" and settings.scheme != "https":
        raise BadInput(
            f"{where}: basic authentication over http would send the password in clear text",
            hint="use scheme https, or transport ntlm or kerberos",
        )
    if settings.read_timeout_s <= settings.operation_timeout_s:
        raise BadInput(f"{where}: read_timeout_s must be greater than operation_timeout_s")
    return settings


def _winrm_value(key: str, raw: Any, root: Path, where: str) -> Any:
    def bad(expected: str) -> BadInput:
        shown = "…" if key == "password" else repr(raw)  # never echo what may be a password
        return BadInput(f"{where}: {key} = {shown} is invalid: expected {expected}")

    if key == "scheme":
        if raw not in ("https", "http"):
            raise bad("https or http")
        return raw
    if key == "transport":
        if raw not in ("ntlm", "kerberos", "basic"):
            raise bad("ntlm, kerberos or basic")
        return raw
    if key == "port":
        if raw is None:
            return None
        if isinstance(raw, bool) or not isinstance(raw, int) or not 0 < raw < 65536:
            raise bad("a port number (1-65535)")
        return raw
    if key == "ca_bundle":
        if raw is None:
            return None
        if not isinstance(raw, str | Path) or not str(raw):
            raise bad("a path to a CA PEM file")
        return _path(str(raw), root)
    if key == "validate_certificate":
        if not isinstance(raw, bool):
            raise bad("true or false")
        return raw
    if key == "username":
        if raw is not None and (not isinstance(raw, str) or not raw):
            raise bad("a user name such as CORP\\\\tech")
        return raw
    if key == "password":
        if raw is None:
            return None
        if not isinstance(raw, str) or not _PASSWORD_REF.fullmatch(raw):
            raise BadInput(f"{where}: passwords are never stored in config: use {PASSWORD_FORMS}")
        if raw.startswith("file:"):
            return "file:" + str(_path(raw[5:], root))
        return raw
    if key in ("operation_timeout_s", "read_timeout_s"):
        if isinstance(raw, bool) or not isinstance(raw, int) or raw <= 0:
            raise bad("a whole number of seconds > 0")
        return raw
    if key == "command_timeout_s":
        if isinstance(raw, bool) or not isinstance(raw, int | float) or raw <= 0:
            raise bad("a number of seconds > 0")
        return float(raw)
    raise AssertionError(key)  # check_keys ran first


def check_keys(data: Mapping[str, Any], valid: Iterable[str], where: str) -> None:
    """BadInput for the first key of `data` not in `valid`, naming the closest valid key."""
    import difflib

    valid = list(valid)
    for key in data:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(valid)}"
            raise BadInput(f"{where}: unknown key {key!r}", hint=hint)


def _path(text: str, root: Path) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else root / path


def _os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers and services
        return "unknown"


def resolve_secret(ref: str, label: str) -> Secret:
    """Turn a credential reference into a Secret; `label` says what it is for in messages.

    `env:NAME`, `keyring:service/user`, `file:PATH` (must not be accessible by group or
    others; one trailing newline is removed) or `prompt` (no echo, needs a terminal).
    No message ever contains the secret value.
    """
    if not isinstance(ref, str) or not _PASSWORD_REF.fullmatch(ref):
        raise BadInput(f"{label}: not a credential reference: use {PASSWORD_FORMS}")
    if ref.startswith("env:"):
        value = _from_env(ref[4:], label)
    elif ref.startswith("keyring:"):
        service, _, user = ref[8:].partition("/")
        value = _from_keyring(service, user, label)
    elif ref.startswith("file:"):
        value = _from_file(Path(ref[5:]).expanduser(), label)
    else:
        value = _from_prompt(label)
    return Secret(value)


def _from_env(name: str, label: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise BadInput(f"{label}: environment variable {name} is not set", hint=f"export {name} first")
    return value


def _from_keyring(service: str, user: str, label: str) -> str:
    try:
        import keyring
    except ImportError:
        raise BadInput(f"{label}: the keyring package is not installed", hint="pip install 'l1fix[keyring]'") from None
    try:
        value = keyring.get_password(service, user)
    except Exception as exc:  # no backend (NoKeyringError), locked store, D-Bus errors…
        raise BadInput(
            f"{label}: no usable keyring backend ({type(exc).__name__})",
            hint="use env:NAME or file:PATH instead",
        ) from None
    if not value:
        raise BadInput(
            f"{label}: no keyring entry for service {service!r}, user {user!r}",
            hint=f"store it with: keyring set {service} {user}",
        )
    return value


def _from_file(path: Path, label: str) -> str:
    try:
        mode = path.stat().st_mode
        if os.name == "posix" and mode & 0o077:
            raise BadInput(
                f"{label}: {path} is accessible by group or others (mode {mode & 0o777:o})",
                hint=f"chmod 600 {path}",
            )
        value = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"{label}: password file {path} does not exist") from None
    except UnicodeDecodeError:
        raise BadInput(f"{label}: password file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise BadInput(f"{label}: cannot read password file {path}: {exc.strerror}") from None
    if value.endswith("\r\n"):
        value = value[:-2]
    elif value.endswith("\n"):
        value = value[:-1]
    if not value:
        raise BadInput(f"{label}: password file {path} is empty")
    return value


# What the technician typed, by label, for this process: a fleet run's targets share one answer.
_PROMPTED: dict[str, str] = {}
_PROMPT_LOCK = threading.Lock()


def _from_prompt(label: str) -> str:
    """Ask once per label and process (one prompt at a time, whatever the number of targets)."""
    import getpass
    import sys

    with _PROMPT_LOCK:
        if label in _PROMPTED:
            return _PROMPTED[label]
        if sys.stdin is None or not sys.stdin.isatty():
            raise BadInput(f"{label}: cannot prompt without a terminal", hint="use env:, keyring: or file:")
        try:
            value = getpass.getpass(f"{label}: ")
        except EOFError:
            value = ""
        if not value:
            raise BadInput(f"{label}: no password entered")
        _PROMPTED[label] = value
        return value

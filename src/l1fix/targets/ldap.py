"""Active Directory over LDAP (ldap3): find an account, read its state, reset, unlock, enable.

Safe by default: LDAPS or StartTLS, the DC certificate validated against the configured CA
and the expected server name — checked by OpenSSL during the handshake, even when the url
is an IP address. The bind happens only on an encrypted connection, and password writes
check it again. AD's errors are mapped by their extended code (`data 775`, `0000052D`).
ldap3's Connection repr shows the bind password: it never reaches a message, and the
password is dropped from the Connection right after the bind.
"""

from __future__ import annotations

import contextlib
import math
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars

from l1fix.config import resolve_secret
from l1fix.errors import (
    AuthRefused,
    BadInput,
    InsufficientRights,
    L1fixError,
    PasswordRejected,
    Refused,
    RemoteError,
    Timeout,
    TlsFailure,
    UnknownTarget,
    Unreachable,
)
from l1fix.secrets import redact

if TYPE_CHECKING:
    from l1fix.config import Config, LdapSettings
    from l1fix.secrets import Secret
    from l1fix.targets.base import Target

# userAccountControl and msDS-User-Account-Control-Computed bits
UF_ACCOUNTDISABLE = 0x2
UF_LOCKOUT = 0x10  # reliable only in the computed attribute: lockoutTime stays set after the lockout expires
UF_DONT_EXPIRE_PASSWD = 0x10000
UF_PASSWORD_EXPIRED = 0x800000
DOMAIN_PASSWORD_COMPLEX = 0x1  # pwdProperties
NEVER = 0x7FFFFFFFFFFFFFFF

# The "data XXX" of an AD bind refusal (LDAP result 49).
BIND_REASONS = {
    "525": "the account does not exist",
    "52e": "wrong user name or password",
    "530": "not allowed to log on at this time",
    "531": "not allowed to log on from this workstation",
    "532": "its password has expired",
    "533": "the account is disabled",
    "701": "the account has expired",
    "773": "its password must be changed first",
    "775": "the account is locked out",
}
# Well-known privileged groups (AdminSDHolder-protected): domain RIDs and BUILTIN SIDs.
PROTECTED_RIDS = {
    500: "the built-in Administrator account",
    502: "the krbtgt account",
    512: "member of Domain Admins",
    516: "member of Domain Controllers",
    518: "member of Schema Admins",
    519: "member of Enterprise Admins",
    521: "member of Read-only Domain Controllers",
    526: "member of Key Admins",
    527: "member of Enterprise Key Admins",
}
PROTECTED_BUILTIN = {
    "S-1-5-32-544": "member of Administrators",
    "S-1-5-32-548": "member of Account Operators",
    "S-1-5-32-549": "member of Server Operators",
    "S-1-5-32-550": "member of Print Operators",
    "S-1-5-32-551": "member of Backup Operators",
    "S-1-5-32-552": "member of Replicator",
}
USER_ATTRIBUTES = [
    "sAMAccountName",
    "userPrincipalName",
    "displayName",
    "userAccountControl",
    "msDS-User-Account-Control-Computed",
    "pwdLastSet",
    "lockoutTime",
    "badPwdCount",
    "lastLogonTimestamp",
    "adminCount",
    "uSNChanged",
    "objectSid",
    "tokenGroups",
    "msDS-ResultantPSO",
]
USERS = "(&(objectCategory=person)(objectClass=user)"
CANDIDATES_SHOWN = 8


def open_connection(target: Target, config: Config) -> Directory:
    return Directory.open(config.ldap, target=target.name)


# -- what is read ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PasswordPolicy:
    """The password rules that apply to an account (the domain's, or its fine-grained PSO)."""

    min_length: int
    complexity: bool
    history_length: int
    lockout_threshold: int = 0  # bad passwords before a lockout (0: never)
    lockout_minutes: float | None = None  # None: until an administrator unlocks
    source: str = "domain policy"

    def describe(self) -> str:
        rules = [f"at least {self.min_length} characters"]
        if self.complexity:
            rules.append("3 of 4 character classes (upper, lower, digit, symbol), not the user's name")
        if self.history_length:
            rules.append(f"not one of the last {self.history_length} passwords")
        if self.lockout_threshold:
            until = f"for {self.lockout_minutes:g} min" if self.lockout_minutes else "until unlocked"
            rules.append(f"locked {until} after {self.lockout_threshold} bad passwords")
        return f"{self.source}: " + ", ".join(rules)


@dataclass(frozen=True)
class Account:
    """One AD user as read from the DC: raw values plus what they mean."""

    dn: str
    sam: str
    upn: str | None
    display_name: str | None
    uac: int
    computed_uac: int
    pwd_last_set: int
    lockout_time: int
    bad_pwd_count: int
    last_logon_timestamp: int
    usn_changed: int
    protected_by: tuple[str, ...] = ()
    resultant_pso: str | None = None

    @property
    def enabled(self) -> bool:
        return not self.uac & UF_ACCOUNTDISABLE

    @property
    def locked(self) -> bool:
        return bool(self.computed_uac & UF_LOCKOUT)

    @property
    def must_change(self) -> bool:
        return self.pwd_last_set == 0

    @property
    def password_expired(self) -> bool:
        return bool(self.computed_uac & UF_PASSWORD_EXPIRED)

    @property
    def protected(self) -> bool:
        return bool(self.protected_by)

    def name_parts(self) -> list[str]:
        """What AD's complexity rule forbids inside a password: the account name and name tokens."""
        parts = [self.sam, *re.split(r"[\s,.\-_#]+", self.display_name or "")]
        return [p for p in parts if len(p) >= 3]

    def state(self) -> dict[str, Any]:
        """JSON-safe state for the journal (no secret in it)."""
        return {
            "dn": self.dn,
            "sam_account_name": self.sam,
            "user_principal_name": self.upn,
            "display_name": self.display_name,
            "enabled": self.enabled,
            "locked": self.locked,
            "lockout_time": filetime(self.lockout_time) if self.locked else None,
            "bad_pwd_count": self.bad_pwd_count,
            "must_change_password": self.must_change,
            "password_expired": self.password_expired,
            "password_never_expires": bool(self.uac & UF_DONT_EXPIRE_PASSWD),
            "pwd_last_set": filetime(self.pwd_last_set),
            "pwd_last_set_raw": self.pwd_last_set,
            "last_logon": filetime(self.last_logon_timestamp),
            "protected": self.protected,
            "protected_because": list(self.protected_by),
            "usn_changed": self.usn_changed,
        }

    def summary(self) -> str:
        who = f"{self.sam} ({self.display_name})" if self.display_name else self.sam
        parts = ["enabled" if self.enabled else "DISABLED"]
        if self.locked:
            parts.append(f"LOCKED OUT since {_short(self.lockout_time)} ({self.bad_pwd_count} bad passwords)")
        else:
            parts.append("not locked")
        if self.must_change:
            parts.append("must change password at next logon")
        elif self.password_expired:
            parts.append("password EXPIRED")
        else:
            parts.append(f"password set {_short(self.pwd_last_set)}")
        parts.append(f"last logon {_short(self.last_logon_timestamp)}")
        if self.protected:
            parts.append(f"protected ({'; '.join(self.protected_by)})")
        return f"{who}: " + ", ".join(parts)


def filetime(value: int) -> str | None:
    """An AD FILETIME (100 ns since 1601) as ISO 8601 UTC; None for 0 / never."""
    if value <= 0 or value >= NEVER:
        return None
    moment = datetime(1601, 1, 1, tzinfo=UTC) + timedelta(microseconds=value // 10)
    return moment.isoformat(timespec="seconds")


def _short(value: int) -> str:
    text = filetime(value)
    return f"{text[:16].replace('T', ' ')} UTC" if text else "never"


def sid_to_str(raw: bytes) -> str:
    """A binary SID as S-1-5-21-…"""
    if len(raw) < 8:
        return ""
    count = raw[1]
    authority = int.from_bytes(raw[2:8], "big")
    subs = [int.from_bytes(raw[8 + 4 * i : 12 + 4 * i], "little") for i in range(count)]
    return "-".join(["S", str(raw[0]), str(authority), *map(str, subs)])


def protection_reasons(admin_count: int, object_sid: str, token_groups: list[str]) -> tuple[str, ...]:
    """Why an account counts as protected; unreadable memberships count too (fail closed)."""
    reasons: list[str] = []
    if admin_count == 1:
        reasons.append("adminCount=1")
    for sid in [object_sid, *token_groups]:
        reason = PROTECTED_BUILTIN.get(sid)
        if reason is None and sid.startswith("S-1-5-21-"):
            reason = PROTECTED_RIDS.get(int(sid.rsplit("-", 1)[1]))
        if reason and reason not in reasons:
            reasons.append(reason)
    if not token_groups:
        reasons.append("its group memberships (tokenGroups) could not be read")
    return tuple(reasons)


# -- the connection -------------------------------------------------------------------------


class _CheckedTls(ldap3.Tls):
    """ldap3's Tls, but the handshake checks the expected server name (OpenSSL, SNI included)."""

    def __init__(self, context: ssl.SSLContext, server_name: str) -> None:
        super().__init__(validate=ssl.CERT_REQUIRED)
        self._context = context
        self._server_name = server_name

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        connection.socket = self._context.wrap_socket(
            connection.socket,
            server_side=False,
            do_handshake_on_connect=do_handshake,
            server_hostname=self._server_name,
        )


def _tls_context(settings: LdapSettings) -> ssl.SSLContext:
    ca = str(settings.ca_bundle) if settings.ca_bundle else None
    try:
        context = ssl.create_default_context(cafile=ca)
    except FileNotFoundError:
        raise BadInput(f"ldap.ca_bundle {ca} does not exist") from None
    except (ssl.SSLError, OSError) as exc:
        raise BadInput(f"ldap.ca_bundle {ca} is not a readable CA PEM file ({type(exc).__name__})") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class Directory:
    """A bound, encrypted connection to one AD domain controller, for one run."""

    def __init__(self, conn: ldap3.Connection, settings: LdapSettings, *, target: str, where: str) -> None:
        self._conn = conn
        self.settings = settings
        self.target = target
        self.where = where
        self._naming_context: str | None = None

    def __repr__(self) -> str:  # never ldap3's repr: it shows the bind password
        return f"Directory({self.where}, bind_user={self.settings.bind_user!r})"

    @classmethod
    def open(cls, settings: LdapSettings, *, target: str) -> Directory:
        """Connect (LDAPS or StartTLS), validate the certificate, then bind. Raises L1fixError."""
        if not settings.url:
            raise BadInput(
                "no Active Directory server configured",
                target=target,
                hint="set url, server_name, ca_bundle, bind_user and bind_password in [profiles.NAME.ldap]",
            )
        if not settings.bind_user or not settings.bind_password:
            raise BadInput(
                "no LDAP bind account configured",
                target=target,
                hint="set ldap.bind_user and ldap.bind_password (env:, keyring:, file: or prompt) in config.toml",
            )
        ldaps = settings.scheme == "ldaps"
        if not ldaps and not settings.starttls:
            raise Refused(
                "ldap:// without StartTLS would send the bind password in clear text",
                target=target,
                hint="use an ldaps:// url or starttls = true",
            )
        where = f"{settings.scheme}://{settings.host}:{settings.effective_port}"
        server = ldap3.Server(
            settings.host,
            port=settings.effective_port,
            use_ssl=ldaps,
            tls=_CheckedTls(_tls_context(settings), settings.expected_name),
            get_info=ldap3.NONE,
            connect_timeout=settings.timeout_s,
        )
        password = resolve_secret(settings.bind_password, f"LDAP password for {settings.bind_user}")
        conn = ldap3.Connection(
            server,
            user=settings.bind_user,
            password=password.reveal(),
            authentication=ldap3.SIMPLE,
            raise_exceptions=False,
            receive_timeout=max(1, math.ceil(settings.timeout_s)),  # ldap3 packs it as an integer
            auto_referrals=False,
            check_names=False,
            return_empty_attributes=False,
        )
        directory = cls(conn, settings, target=target, where=where)
        try:
            with directory._mapped():
                conn.open(read_server_info=False)
                if not ldaps and not conn.start_tls(read_server_info=False):
                    raise TlsFailure(f"{where} refused StartTLS", target=target, hint="use ldaps://")
                if not directory.encrypted:
                    raise Refused(f"the connection to {where} is not encrypted: no bind", target=target)
                bound = conn.bind(read_server_info=False)
            result = dict(conn.result or {})
        except BaseException:
            directory.close()
            raise
        finally:
            conn.password = None  # the Connection (and its repr) no longer holds it
            conn.request = None  # nor the last request, which held it too
        if not bound:
            directory.close()
            raise directory._bind_error(result)
        return directory

    @property
    def encrypted(self) -> bool:
        """TLS is up on this connection (LDAPS, or StartTLS done)."""
        return bool(self._conn.server.ssl or self._conn.tls_started)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.unbind()

    # -- reading ---------------------------------------------------------------------------

    @property
    def naming_context(self) -> str:
        """The domain's DN (rootDSE defaultNamingContext): where the domain policy lives."""
        if self._naming_context is None:
            found = self._search("", "(objectClass=*)", ["defaultNamingContext"], scope=ldap3.BASE)
            value = _first(found[0][1], "defaultNamingContext") if found else None
            if not value:
                raise RemoteError(f"{self.where} did not say its naming context", target=self.target)
            self._naming_context = value
        return self._naming_context

    @property
    def base_dn(self) -> str:
        return self.settings.base_dn or self.naming_context

    def find_user(self, name: str) -> Account:
        """The one user whose sAMAccountName or UPN is `name` (DOMAIN\\name accepted); else BadInput."""
        wanted = name.strip()
        if "\\" in wanted:
            wanted = wanted.split("\\", 1)[1].strip()
        if not wanted:
            raise BadInput(f"{name!r} is not an account name", target=self.target)
        value = escape_filter_chars(wanted)
        flt = f"{USERS}(|(sAMAccountName={value})(userPrincipalName={value})))"
        found = self._search(self.base_dn, flt, ["sAMAccountName", "displayName"])
        if len(found) == 1:
            return self.read(found[0][0])  # constructed attributes (tokenGroups) need a base search
        if not found:
            candidates = self.candidates(wanted)
            hint = f"did you mean: {', '.join(candidates)}?" if candidates else "check the spelling, or give the UPN"
            raise UnknownTarget(f"no AD user {name!r} (sAMAccountName or UPN) under {self.base_dn}", hint=hint)
        names = ", ".join(sorted(_describe(attrs) for _, attrs in found))
        raise BadInput(f"{name!r} matches {len(found)} AD users: {names}", hint="give the exact sAMAccountName")

    def candidates(self, name: str) -> list[str]:
        """Users whose names start like `name` (AD's ambiguous name resolution), for hints."""
        seen: list[str] = []
        for probe in dict.fromkeys([name, name[:3]]):
            if len(probe) < 2:
                continue
            flt = f"{USERS}(anr={escape_filter_chars(probe)}))"
            for _, attrs in self._search(self.base_dn, flt, ["sAMAccountName", "displayName"], size_limit=20):
                text = _describe(attrs)
                if text not in seen:
                    seen.append(text)
            if seen:
                break
        return sorted(seen)[:CANDIDATES_SHOWN]

    def read(self, dn: str) -> Account:
        """The account at `dn`, read again (after a change)."""
        found = self._search(dn, "(objectClass=user)", USER_ATTRIBUTES, scope=ldap3.BASE)
        if not found:
            raise UnknownTarget(f"the AD account {dn} no longer exists", target=self.target)
        return self._account(*found[0])

    def password_policy(self, account: Account | None = None) -> PasswordPolicy:
        """The rules for `account`: its fine-grained policy (PSO) when readable, else the domain's."""
        if account is not None and account.resultant_pso:
            pso_attrs = [
                "msDS-MinimumPasswordLength",
                "msDS-PasswordComplexityEnabled",
                "msDS-PasswordHistoryLength",
                "msDS-LockoutThreshold",
                "cn",
            ]
            found = self._search(account.resultant_pso, "(objectClass=*)", pso_attrs, scope=ldap3.BASE)
            if found and _first(found[0][1], "msDS-MinimumPasswordLength") is not None:
                attrs = found[0][1]
                return PasswordPolicy(
                    min_length=_int(attrs, "msDS-MinimumPasswordLength"),
                    complexity=(_first(attrs, "msDS-PasswordComplexityEnabled") or "").upper() == "TRUE",
                    history_length=_int(attrs, "msDS-PasswordHistoryLength"),
                    lockout_threshold=_int(attrs, "msDS-LockoutThreshold"),
                    source=f"password settings {_first(attrs, 'cn') or account.resultant_pso}",
                )
        wanted = ["minPwdLength", "pwdProperties", "pwdHistoryLength", "lockoutThreshold", "lockoutDuration"]
        found = self._search(self.naming_context, "(objectClass=*)", wanted, scope=ldap3.BASE)
        attrs = found[0][1] if found else {}
        duration = -_int(attrs, "lockoutDuration")  # negative 100 ns intervals; "forever" is the most negative
        return PasswordPolicy(
            min_length=_int(attrs, "minPwdLength"),
            complexity=bool(_int(attrs, "pwdProperties") & DOMAIN_PASSWORD_COMPLEX),
            history_length=_int(attrs, "pwdHistoryLength"),
            lockout_threshold=_int(attrs, "lockoutThreshold"),
            lockout_minutes=duration / 600_000_000 if 0 < duration < NEVER else None,
        )

    # -- changing --------------------------------------------------------------------------

    def reset_password(self, account: Account, password: Secret, *, must_change: bool, unlock: bool) -> None:
        """Set a new password (unicodePwd) and pwdLastSet (0: must change; -1: now) in one modify."""
        self._require_encrypted("set a password")
        changes: dict[str, Any] = {
            "unicodePwd": [(ldap3.MODIFY_REPLACE, [f'"{password.reveal()}"'.encode("utf-16-le")])],
            "pwdLastSet": [(ldap3.MODIFY_REPLACE, ["0" if must_change else "-1"])],
        }
        if unlock:
            changes["lockoutTime"] = [(ldap3.MODIFY_REPLACE, ["0"])]
        try:
            self._modify(account, changes, doing="reset the password of")
        finally:
            changes.clear()

    def unlock(self, account: Account) -> None:
        """lockoutTime=0: the DC clears the lockout and badPwdCount."""
        self._modify(account, {"lockoutTime": [(ldap3.MODIFY_REPLACE, ["0"])]}, doing="unlock")

    def enable(self, account: Account) -> None:
        """Clear ACCOUNTDISABLE in userAccountControl, keeping every other flag."""
        uac = str(account.uac & ~UF_ACCOUNTDISABLE)
        self._modify(account, {"userAccountControl": [(ldap3.MODIFY_REPLACE, [uac])]}, doing="enable")

    # -- internals -------------------------------------------------------------------------

    def _require_encrypted(self, doing: str) -> None:
        if not self.encrypted:
            raise Refused(
                f"l1fix does not {doing} over an unencrypted connection ({self.where})",
                target=self.target,
                hint="use an ldaps:// url or starttls = true",
            )

    def _search(
        self, base: str, flt: str, attributes: list[str], *, scope: str = ldap3.SUBTREE, size_limit: int = 0
    ) -> list[tuple[str, dict[str, list[bytes]]]]:
        with self._mapped():
            self._conn.search(base, flt, search_scope=scope, attributes=attributes, size_limit=size_limit)
        result = self._conn.result or {}
        if result.get("result") not in (0, 4, 32):  # success, size limit exceeded, no such object
            raise self._operation_error(result, doing="search", account=base)
        entries = [
            (e["dn"], e.get("raw_attributes", {}))
            for e in self._conn.response or []
            if e.get("type") == "searchResEntry"
        ]
        return entries[:size_limit] if size_limit else entries

    def _modify(self, account: Account, changes: dict[str, Any], *, doing: str) -> None:
        try:
            with self._mapped():
                ok = self._conn.modify(account.dn, changes)
            result = dict(self._conn.result or {})
        finally:
            self._conn.request = None  # the last request may hold a password
        if not ok:
            raise self._operation_error(result, doing=doing, account=account.sam)

    def _account(self, dn: str, attrs: dict[str, list[bytes]]) -> Account:
        token_groups = [sid_to_str(v) for v in attrs.get("tokenGroups", [])]
        sid_raw = attrs.get("objectSid") or [b""]
        return Account(
            dn=dn,
            sam=_first(attrs, "sAMAccountName") or "",
            upn=_first(attrs, "userPrincipalName"),
            display_name=_first(attrs, "displayName"),
            uac=_int(attrs, "userAccountControl"),
            computed_uac=_int(attrs, "msDS-User-Account-Control-Computed"),
            pwd_last_set=_int(attrs, "pwdLastSet"),
            lockout_time=_int(attrs, "lockoutTime"),
            bad_pwd_count=_int(attrs, "badPwdCount"),
            last_logon_timestamp=_int(attrs, "lastLogonTimestamp"),
            usn_changed=_int(attrs, "uSNChanged"),
            protected_by=protection_reasons(_int(attrs, "adminCount"), sid_to_str(sid_raw[0]), token_groups),
            resultant_pso=_first(attrs, "msDS-ResultantPSO"),
        )

    def _bind_error(self, result: dict[str, Any]) -> L1fixError:
        user = self.settings.bind_user
        code = result.get("result")
        message = redact(str(result.get("message") or ""))
        if code == 49:
            data = re.search(r"\bdata ([0-9a-fA-F]{3,8})\b", message)
            reason = BIND_REASONS.get(data.group(1).lower(), "invalid credentials") if data else "invalid credentials"
            return AuthRefused(
                f"{self.where} refused the bind as {user}: {reason}",
                target=self.target,
                hint="check ldap.bind_user and ldap.bind_password in config.toml",
            )
        if code == 8:  # strongerAuthRequired
            return Refused(f"{self.where} requires a stronger (encrypted) bind", target=self.target)
        description = result.get("description") or code
        return AuthRefused(f"{self.where} refused the bind as {user}: {description}", target=self.target)

    def _operation_error(self, result: dict[str, Any], *, doing: str, account: str) -> L1fixError:
        code = result.get("result")
        message = redact(str(result.get("message") or ""))
        extended = _extended_code(message)
        detail = _detail(message)
        if extended == "0000052D" or (code == 19 and "password" in message.lower()):
            return PasswordRejected(
                f"the new password for {account} does not meet the password policy (length, complexity or history)",
                target=self.target,
                hint=f"DC said: {detail}" if detail else "see `l1fix ad-user-status` and the domain policy",
            )
        if code == 50 or extended in ("00002098", "00000005"):
            return InsufficientRights(
                f"your account ({self.settings.bind_user}) lacks the right to {doing} {account}",
                target=self.target,
                hint="the helpdesk account needs delegated rights on the user's OU; else escalate to L2",
            )
        if code == 32:
            return UnknownTarget(f"the AD object {account} does not exist", target=self.target)
        if code == 53 and extended == "0000001F":
            return Refused(f"the DC is unwilling to {doing} {account}: {detail}", target=self.target)
        if code == 8:
            return Refused(f"the DC requires an encrypted connection to {doing} {account}", target=self.target)
        if code in (51, 52):  # busy, unavailable
            return Unreachable(f"{self.where} is busy or unavailable", target=self.target, hint="try again")
        reason = f"{result.get('description') or code}" + (f" ({extended})" if extended else "")
        return RemoteError(f"the DC refused to {doing} {account}: {reason}", target=self.target)

    @contextlib.contextmanager
    def _mapped(self) -> Iterator[None]:
        """ldap3 and socket exceptions as one-line L1fixErrors; never a Connection repr."""
        try:
            yield
        except L1fixError:
            raise
        except (LDAPException, OSError) as exc:
            raise self._map_exception(exc) from None

    def _map_exception(self, exc: BaseException) -> L1fixError:
        text = redact(str(exc))
        if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
            match = re.search(r"certificate verify failed: (.+?)\s*\(_ssl", text)
            reason = match.group(1).rstrip(".") if match else "not trusted"
            return TlsFailure(
                f"the TLS certificate of {self.where} could not be validated: {reason}",
                target=self.target,
                hint=f"check ldap.ca_bundle and ldap.server_name (expected {self.settings.expected_name!r})",
            )
        if isinstance(exc, ssl.SSLError) or "ssl" in text.lower() or "tls" in type(exc).__name__.lower():
            return TlsFailure(f"TLS with {self.where} failed ({type(exc).__name__})", target=self.target)
        if "while opening" in text or "unable to open socket" in text:
            return Unreachable(
                f"cannot connect to {self.where}" + (" (timed out)" if "timed out" in text else ""),
                target=self.target,
                hint="is the DC up and the port open? check ldap.url",
            )
        if "timed out" in text or "timeout" in type(exc).__name__.lower():
            return Timeout(f"{self.where} did not answer within {self.settings.timeout_s:g} s", target=self.target)
        if isinstance(exc, OSError) or "socket" in text.lower():
            return Unreachable(f"the connection to {self.where} failed", target=self.target)
        return RemoteError(f"LDAP error talking to {self.where}: {type(exc).__name__}", target=self.target)


def _first(attrs: dict[str, list[bytes]], name: str) -> str | None:
    values = attrs.get(name) or []
    return values[0].decode("utf-8", errors="replace") if values else None


def _int(attrs: dict[str, list[bytes]], name: str) -> int:
    value = _first(attrs, name)
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def _describe(attrs: dict[str, list[bytes]]) -> str:
    sam, display = _first(attrs, "sAMAccountName") or "?", _first(attrs, "displayName")
    return f"{sam} ({display})" if display else sam


def _extended_code(message: str) -> str | None:
    match = re.match(r"\s*([0-9A-Fa-f]{8}):", message)
    return match.group(1).upper() if match else None


def _detail(message: str) -> str:
    """The DC's own words, without the error code prefix, on one short line."""
    text = re.sub(r"^\s*[0-9A-Fa-f]{8}:\s*", "", message).replace("\n", " ").strip()
    return text[:200]

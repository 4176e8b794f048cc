"""Lab Graph: a stand-in for Microsoft Graph v1.0 (the user calls l1fix makes) and Entra's token endpoint.

It follows the Graph documentation for ``GET /users/{id | userPrincipalName}``, ``GET /users?$filter=``,
``PATCH /users/{id}`` (passwordProfile, accountEnabled), ``POST /users/{id}/revokeSignInSessions`` and
``GET /users/{id}/memberOf | transitiveMemberOf[/microsoft.graph.directoryRole]``: ``$select`` (unknown
properties refused, the "returned only on $select" ones hidden otherwise), a small but strict ``$filter``
(``eq``, ``startswith``, ``and``, ``or``, parentheses, string literals with ``''`` for a quote: an
unescaped quote is a syntax error, as in Graph), ``$top`` and paging, error bodies
``{"error": {"code", "message", "innerError": {"date", "request-id", "client-request-id"}}}``, the
bearer token checked on every call. Entra's rules: the password policy (8-256 characters, 3 of 4
classes, allowed symbols), accounts synchronized from AD refused, and a caller with the Helpdesk
Administrator role refused (403 Authorization_RequestDenied) on accounts holding admin roles.

Beside it, under ``/{tenant}/``, the OAuth 2.0 endpoints azure-identity (MSAL) uses: OpenID
discovery, the token endpoint (client secret, client certificate assertion, device code) and the
device-code endpoint, so the real credentials can sign in on loopback.

Everything here is a simulation, ``GET /`` says so. Tests drive faults with :meth:`GraphStandIn.inject`
(429 with Retry-After, 403, 503, ...) and read :attr:`GraphStandIn.requests_log` (method, path, query,
headers with lower-case names, body of every request).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import re
import secrets
import socket
import socketserver
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

from l1fix.lab.service import LoopbackHandler, LoopbackService

log = logging.getLogger(__name__)

API = "/v1.0"
BANNER = b"l1fix lab - Microsoft Graph stand-in. This is NOT Microsoft Graph: it imitates a few user calls.\n"
GRAPH_RESOURCE = "https://graph.microsoft.com"
JSON_TYPE = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
MAX_BODY = 1024 * 1024
MAX_TOP = 999
DEFAULT_PAGE = 100

# Built-in directory roles: name -> roleTemplateId (the same in every tenant).
ROLE_TEMPLATES = {
    "Global Administrator": "62e90394-69f5-4237-9190-012177145e10",
    "Privileged Role Administrator": "e8611ab8-c189-46e8-94e1-60213ab1f814",
    "Privileged Authentication Administrator": "7be44c8a-adaf-4e2a-84d6-ab2649e08a13",
    "User Administrator": "fe930be7-5e62-47db-91af-98c3a49a38b1",
    "Exchange Administrator": "29232cdf-9323-42fd-ade2-1d097af3e4de",
    "Security Administrator": "194ae4cb-b126-40b2-bd5b-6091b380977d",
    "Helpdesk Administrator": "729827e3-9c14-49f7-bb1b-9608f156bbb8",
    "Password Administrator": "966707d0-3269-4727-9be2-8c3a10f19b9d",
    "Directory Readers": "88d8e3e3-8f55-4a1e-953a-9b9898b8876b",
    "Guest Inviter": "95e79109-95c0-4d8e-aee3-d01accf2d47b",
    "Message Center Reader": "790c1fb9-7f7d-4f88-86a1-ef1f95c05c1b",
    "Reports Reader": "4a5d8f65-41da-4de4-8968-e035b65339cf",
}
# Accounts a Helpdesk Administrator may still reset or re-enable ("Who can reset passwords").
HELPDESK_MANAGEABLE = {
    "Directory Readers",
    "Guest Inviter",
    "Helpdesk Administrator",
    "Message Center Reader",
    "Password Administrator",
    "Reports Reader",
}
PASSWORD_SYMBOLS = set("@#$%^&*-_!+=[]{}|\\:',.?/`~\"();<> ")
DEFAULT_PROPERTIES = [
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
]
USER_PROPERTIES = {
    *DEFAULT_PROPERTIES,
    "accountEnabled",
    "createdDateTime",
    "lastPasswordChangeDateTime",
    "mailNickname",
    "onPremisesSyncEnabled",
    "passwordPolicies",
    "passwordProfile",
    "signInActivity",
    "signInSessionsValidFromDateTime",
    "userType",
}
FILTERABLE = {"id", "userPrincipalName", "mail", "displayName", "mailNickname", "givenName", "surname", "userType"}
WRITABLE = {"accountEnabled", "passwordProfile", "displayName", "givenName", "surname", "jobTitle", "mobilePhone"}
ON_PREMISES = (
    "Unable to update the specified properties for on-premises mastered Directory Sync objects or objects "
    "currently undergoing migration."
)
COMPLEXITY = (
    "The specified password does not comply with password complexity requirements. Please provide a different password."
)
NO_PRIVILEGE = "Insufficient privileges to complete the operation."
BAD_SECRET = (
    "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client "
    "secret value, not the client secret ID."
)
UNKNOWN_CERTIFICATE = (
    "AADSTS700027: The certificate with identifier used to sign the client assertion is not registered on application."
)
_DEFAULT_ERRORS = {
    400: ("BadRequest", "Bad request."),
    401: ("InvalidAuthenticationToken", "Access token validation failure."),
    403: ("Authorization_RequestDenied", NO_PRIVILEGE),
    404: ("Request_ResourceNotFound", "Resource does not exist or one of its queried reference-property objects "
          "are not present."),
    429: ("TooManyRequests", "Too many requests. Please try again later (fault injected by the l1fix stand-in)."),
    500: ("generalException", "General exception while processing (fault injected by the l1fix stand-in)."),
    503: ("serviceNotAvailable", "Service unavailable (fault injected by the l1fix stand-in)."),
    504: ("UnknownError", "Gateway timeout (fault injected by the l1fix stand-in)."),
}  # fmt: skip


class GraphError(Exception):
    """An answer in Graph's error format."""

    def __init__(self, status: int, code: str, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, list(headers)


class OAuthError(Exception):
    """An answer in Entra's OAuth error format (``{"error", "error_description", "error_codes"}``)."""

    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.code, self.description = status, error, code, description


@dataclass
class _Answer:
    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Injected:
    status: int
    times: int
    method: str | None
    path: str | None
    retry_after: str | None
    code: str | None
    message: str | None


def entra_password_ok(password: str) -> bool:
    """Entra ID's password policy for cloud accounts: 8-256 characters, 3 of 4 classes, known symbols only."""
    if not 8 <= len(password) <= 256:
        return False
    if any(not (c.isascii() and (c.isalnum() or c in PASSWORD_SYMBOLS)) for c in password):
        return False
    classes = (
        any(c.islower() for c in password),
        any(c.isupper() for c in password),
        any(c.isdigit() for c in password),
        any(c in PASSWORD_SYMBOLS for c in password),
    )
    return sum(classes) >= 3


class GraphStandIn(LoopbackService):
    """Microsoft Graph's user calls and Entra's token endpoint on loopback, with fault injection for tests."""

    label = "Graph stand-in"

    def __init__(
        self,
        *,
        tokens: Iterable[str] = (),
        port: int = 0,
        host: str = "127.0.0.1",
        tls_cert_dir: Path | None = None,
        tenant_id: str = "l1fix-lab.onmicrosoft.com",
        domain: str = "l1fix-lab.onmicrosoft.com",
    ) -> None:
        super().__init__(host=host, port=port, tls_cert_dir=tls_cert_dir)
        self.tenant_id = tenant_id
        self.tenant_guid = str(uuid.uuid5(uuid.NAMESPACE_DNS, tenant_id))
        self.domain = domain
        self.tokens: set[str] = set(tokens)
        self.users: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self.requests_log: list[dict[str, Any]] = []
        self.caller_roles: set[str] = {"User Administrator"}  # the roles of whoever the token stands for
        self.sign_in_activity_readable = True  # False: no AuditLog.Read.All / no Entra ID P1
        self.roles_readable = True
        self.stale_reads = 0  # the next N reads of a user show it as before its last change (replica lag)
        self._before_change: dict[str, dict[str, Any]] = {}
        self.clients: dict[str, dict[str, Any]] = {}  # client_id -> {"secret", "certificate"}
        self.device_users: dict[str, str] = {}  # user_code -> UPN that signed in
        self.device_auto_approve: str | None = None  # UPN that approves every device code at once
        self._devices: dict[str, dict[str, Any]] = {}
        self._injected: list[_Injected] = []
        self._clock = 0.0

    # ----------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """Graph's base url (``graph.base_url``)."""
        return self.origin + API

    @property
    def authority(self) -> str:
        """The sign-in authority (``graph.authority``)."""
        return self.origin

    def _new_server(self, family: socket.AddressFamily) -> _Server:
        return _Server((self.host, self.port), self, family)

    # ----------------------------------------------------------------- data

    def add_user(
        self,
        name: str,
        *,
        display_name: str | None = None,
        mail: str | None = None,
        enabled: bool = True,
        roles: Iterable[str] = (),
        groups: Iterable[str] = (),
        synced: bool = False,
        password: str = "Initial-Pw-2468",
        sign_in: str | None = "2026-01-05T08:30:00Z",
        user_type: str = "Member",
    ) -> str:
        """A user (``name`` or ``name@domain``); returns its object id. Roles by name (ROLE_TEMPLATES)."""
        upn = name if "@" in name else f"{name}@{self.domain}"
        unknown = [r for r in roles if r not in ROLE_TEMPLATES]
        if unknown:
            raise KeyError(f"unknown directory role {unknown[0]!r}")
        with self._lock:
            user_id = str(uuid.uuid4())
            now = self._now()
            self.users[user_id] = {
                "id": user_id,
                "userPrincipalName": upn,
                "mail": mail,
                "displayName": display_name,
                "givenName": (display_name or "").split(" ")[0] or None,
                "surname": (display_name or "").split(" ")[-1] or None,
                "mailNickname": upn.split("@")[0],
                "businessPhones": [],
                "jobTitle": None,
                "mobilePhone": None,
                "officeLocation": None,
                "preferredLanguage": None,
                "accountEnabled": enabled,
                "createdDateTime": now,
                "lastPasswordChangeDateTime": now,
                "onPremisesSyncEnabled": True if synced else None,
                "passwordPolicies": None,
                "signInSessionsValidFromDateTime": now,
                "userType": user_type,
                "_password": password,
                "_force_change": False,
                "_roles": list(roles),
                "_groups": list(groups),
                "_sign_in": sign_in,
            }
            return user_id

    def add_group(self, name: str, *, roles: Iterable[str] = ()) -> str:
        """A (role-assignable) group; its roles reach members through transitiveMemberOf."""
        with self._lock:
            group_id = str(uuid.uuid4())
            self.groups[name] = {"id": group_id, "displayName": name, "_roles": list(roles)}
            return group_id

    def user(self, key: str) -> dict[str, Any]:
        """A copy of a user's stored record (id or UPN), password included: for tests only."""
        with self._lock:
            return dict(self._find(key))

    def add_client(self, client_id: str, *, secret: str | None = None, certificate_pem: bytes | None = None) -> None:
        """An app registration that may sign in with a client secret or a certificate."""
        with self._lock:
            self.clients[client_id] = {"secret": secret, "certificate": certificate_pem}

    # ----------------------------------------------------------------- fault injection

    def inject(
        self,
        status: int,
        *,
        times: int = 1,
        method: str | None = None,
        path: str | None = None,
        retry_after: int | str | None = None,
        code: str | None = None,
        message: str | None = None,
    ) -> None:
        """The next ``times`` Graph calls matching ``method`` and ``path`` (a regex on the path after /v1.0)
        answer ``status`` in Graph's error format, changing nothing; 429/503 carry ``Retry-After``."""
        with self._lock:
            self._injected.append(
                _Injected(status, times, method, path, None if retry_after is None else str(retry_after), code, message)
            )

    def api_requests(self, method: str | None = None) -> list[dict[str, Any]]:
        """Logged Graph calls (not the token endpoint), optionally of one method."""
        with self._lock:
            return [
                r
                for r in self.requests_log
                if r["path"].startswith(API + "/") and (method is None or r["method"] == method)
            ]

    # ----------------------------------------------------------------- HTTP entry

    def _serve(self, method: str, target: str, headers: dict[str, str], body: bytes) -> _Answer:
        path, _, query = target.partition("?")
        request_id = str(uuid.uuid4())
        client_request_id = _header(headers, "client-request-id") or request_id
        with self._lock:
            self.requests_log.append(
                {
                    "method": method,
                    "path": unquote(path),
                    "raw_path": path,
                    "query": query,
                    "params": dict(parse_qsl(query, keep_blank_values=True)),
                    "headers": {k.lower(): v for k, v in headers.items()},  # names in lower case
                    "body": body,
                    "time": time.time(),
                }
            )
        ids = [("request-id", request_id), ("client-request-id", client_request_id)]
        try:
            with self._lock:
                if path in ("", "/") and method == "GET":
                    return _Answer(200, BANNER, "text/plain; charset=utf-8")
                if path.startswith(API + "/"):
                    answer = self._graph(method, path[len(API) :], query, headers, body)
                else:
                    answer = self._oauth(method, path, headers, body)
        except GraphError as err:
            error = {"code": err.code, "message": err.message, "innerError": _inner(request_id, client_request_id)}
            answer = _Answer(err.status, _json({"error": error}), headers=list(err.headers))
        except OAuthError as err:
            answer = _Answer(err.status, _json(_oauth_error(err, request_id)), "application/json; charset=utf-8")
        except Exception:  # a stand-in bug must not look like a Graph answer
            log.exception("Graph stand-in failed on %s %s", method, path)
            answer = _Answer(500, _json({"error": {"code": "l1fixStandInBug", "message": "stand-in error"}}))
        answer.headers.extend(ids)
        return answer

    # ----------------------------------------------------------------- Graph

    def _graph(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes) -> _Answer:
        self._check_token(headers)
        self._maybe_inject(method, unquote(path))
        params = dict(parse_qsl(query, keep_blank_values=True))  # '+' is a space, as in Graph's query parsing
        segments = [_unalias(unquote(s)) for s in path.strip("/").split("/")]
        if segments[0] != "users":
            raise GraphError(400, "BadRequest", f"Resource not found for the segment '{segments[0]}'.")
        if len(segments) == 1 and method == "GET":
            return self._list_users(params)
        if len(segments) == 1:
            raise GraphError(405, "Request_BadRequest", f"The method {method} is not allowed here.")
        user = self._find(segments[1])
        rest = segments[2:]
        if not rest:
            if method == "GET":
                if self.stale_reads > 0 and user["id"] in self._before_change:
                    self.stale_reads -= 1
                    user = self._before_change[user["id"]]
                return self._ok(self._entity(user, params.get("$select"), entity=True))
            if method == "PATCH":
                self._before_change[user["id"]] = dict(user)
                self._patch(user, body)
                return _Answer(204, b"", "")
            raise GraphError(405, "Request_BadRequest", f"The method {method} is not allowed here.")
        if rest[0] in ("revokeSignInSessions", "microsoft.graph.revokeSignInSessions") and len(rest) == 1:
            if method != "POST":
                raise GraphError(405, "BadRequest", "The revokeSignInSessions action needs POST.")
            self._require_manageable(user)
            self._before_change[user["id"]] = dict(user)
            user["signInSessionsValidFromDateTime"] = self._now()
            context = f"{GRAPH_RESOURCE}/v1.0/$metadata#Edm.Boolean"
            return self._ok({"@odata.context": context, "value": True})
        if rest[0] in ("memberOf", "transitiveMemberOf") and method == "GET":
            cast = rest[1] if len(rest) > 1 else None
            if cast not in (None, "microsoft.graph.directoryRole", "microsoft.graph.group") or len(rest) > 2:
                raise GraphError(400, "BadRequest", f"Resource not found for the segment '{rest[-1]}'.")
            return self._member_of(user, transitive=rest[0] == "transitiveMemberOf", cast=cast, params=params)
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{rest[0]}'.")

    def _check_token(self, headers: dict[str, str]) -> None:
        value = _header(headers, "Authorization") or ""
        scheme, _, token = value.partition(" ")
        challenge = [
            (
                "WWW-Authenticate",
                'Bearer realm="", authorization_uri="https://login.microsoftonline.com/'
                'common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"',
            )
        ]
        if scheme.lower() != "bearer" or not token:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.", challenge)
        if token not in self.tokens:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure.", challenge)

    def _maybe_inject(self, method: str, path: str) -> None:
        for rule in self._injected:
            if rule.method and rule.method != method:
                continue
            if rule.path and not re.search(rule.path, path):
                continue
            rule.times -= 1
            if rule.times <= 0:
                self._injected.remove(rule)
            code, message = _DEFAULT_ERRORS.get(rule.status, ("UnknownError", "Injected fault."))
            headers = [("Retry-After", rule.retry_after)] if rule.retry_after is not None else []
            raise GraphError(rule.status, rule.code or code, rule.message or message, headers)

    def _find(self, key: str) -> dict[str, Any]:
        user = self.users.get(key)
        if user is None:
            wanted = key.lower()
            user = next((u for u in self.users.values() if u["userPrincipalName"].lower() == wanted), None)
        if user is None:
            raise GraphError(
                404,
                "Request_ResourceNotFound",
                f"Resource '{key}' does not exist or one of its queried reference-property objects are not present.",
            )
        return user

    def _list_users(self, params: dict[str, str]) -> _Answer:
        unknown = [k for k in params if k.startswith("$") and k not in ("$filter", "$select", "$top", "$skiptoken")]
        if unknown:
            raise GraphError(400, "BadRequest", f"Query option '{unknown[0]}' is not allowed.")
        users = list(self.users.values())
        if "$filter" in params:
            predicate = _FilterParser(params["$filter"]).parse()
            users = [u for u in users if predicate(u)]
        top = _top(params.get("$top"))
        start = int(params.get("$skiptoken") or 0)
        page = users[start : start + top]
        value = [self._entity(u, params.get("$select")) for u in page]
        answer: dict[str, Any] = {"@odata.context": self._context("users", params.get("$select"))}
        if start + top < len(users):
            rest = {k: v for k, v in params.items() if k != "$skiptoken"}
            answer["@odata.nextLink"] = f"{self.url}/users?{urlencode({**rest, '$skiptoken': start + top})}"
        answer["value"] = value
        return self._ok(answer)

    def _entity(self, user: dict[str, Any], select: str | None, *, entity: bool = False) -> dict[str, Any]:
        wanted = DEFAULT_PROPERTIES if select is None else [s.strip() for s in select.split(",") if s.strip()]
        for name in wanted:
            if name not in USER_PROPERTIES:
                message = f"Could not find a property named '{name}' on type 'microsoft.graph.user'."
                raise GraphError(400, "BadRequest", message)
        out: dict[str, Any] = {}
        if entity:
            out["@odata.context"] = self._context("users", select) + "/$entity"
        for name in wanted:
            if name == "signInActivity":
                out[name] = self._sign_in_activity(user)
            elif name == "passwordProfile":
                out[name] = {
                    "password": None,
                    "forceChangePasswordNextSignIn": user["_force_change"],
                    "forceChangePasswordNextSignInWithMfa": False,
                }
            else:
                out[name] = user.get(name)
        return out

    def _sign_in_activity(self, user: dict[str, Any]) -> dict[str, Any] | None:
        if not self.sign_in_activity_readable:
            raise GraphError(
                403,
                "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
                "Neither tenant is B2C or tenant doesn't have premium license",
            )
        when = user["_sign_in"]
        return {
            "lastSignInDateTime": when,
            "lastSignInRequestId": str(uuid.uuid5(uuid.NAMESPACE_OID, str(when))) if when else None,
            "lastNonInteractiveSignInDateTime": when,
            "lastNonInteractiveSignInRequestId": None,
            "lastSuccessfulSignInDateTime": when,
            "lastSuccessfulSignInRequestId": None,
        }

    def _member_of(
        self, user: dict[str, Any], *, transitive: bool, cast: str | None, params: dict[str, str]
    ) -> _Answer:  # noqa: E501
        if not self.roles_readable:
            raise GraphError(403, "Authorization_RequestDenied", NO_PRIVILEGE)
        roles = list(user["_roles"])
        groups = [self.groups[g] for g in user["_groups"] if g in self.groups]
        if transitive:
            roles += [r for g in groups for r in g["_roles"]]
        objects: list[dict[str, Any]] = []
        if cast in (None, "microsoft.graph.directoryRole"):
            for name in dict.fromkeys(roles):
                objects.append(
                    {
                        "@odata.type": "#microsoft.graph.directoryRole",
                        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, self.tenant_id + name)),
                        "deletedDateTime": None,
                        "description": f"{name} (l1fix stand-in)",
                        "displayName": name,
                        "roleTemplateId": ROLE_TEMPLATES[name],
                    }
                )
        if cast in (None, "microsoft.graph.group"):
            for group in groups:
                objects.append(
                    {
                        "@odata.type": "#microsoft.graph.group",
                        "id": group["id"],
                        "displayName": group["displayName"],
                        "securityEnabled": True,
                    }
                )
        select = params.get("$select")
        if select:
            keep = {"@odata.type", *(s.strip() for s in select.split(","))}
            objects = [{k: v for k, v in o.items() if k in keep} for o in objects]
        top = _top(params.get("$top"))
        kind = "directoryRoles" if cast == "microsoft.graph.directoryRole" else "directoryObjects"
        return self._ok({"@odata.context": self._context(kind, select), "value": objects[:top]})

    def _patch(self, user: dict[str, Any], body: bytes) -> None:
        try:
            changes = json.loads(body or b"{}")
        except ValueError:
            raise GraphError(400, "BadRequest", "Unable to read JSON request payload.") from None
        if not isinstance(changes, dict):
            raise GraphError(400, "BadRequest", "The request payload must be a JSON object.")
        changes = {k: v for k, v in changes.items() if not k.startswith("@odata.")}
        for key in changes:
            if key not in WRITABLE:
                raise GraphError(400, "Request_BadRequest", f"Property '{key}' is read-only or unknown here.")
        sensitive = {"passwordProfile", "accountEnabled"} & changes.keys()
        if sensitive and user["onPremisesSyncEnabled"]:
            raise GraphError(400, "Request_BadRequest", ON_PREMISES)
        if sensitive:
            self._require_manageable(user)
        profile = changes.pop("passwordProfile", None)
        if profile is not None:
            if not isinstance(profile, dict):
                raise GraphError(400, "BadRequest", "passwordProfile must be an object.")
            password = profile.get("password")
            if password is not None:  # without a password Graph answers 204 and changes nothing
                if not isinstance(password, str) or not entra_password_ok(password):
                    raise GraphError(400, "Request_BadRequest", COMPLEXITY)
                user["_password"] = password
                user["_force_change"] = bool(profile.get("forceChangePasswordNextSignIn", True))
                user["lastPasswordChangeDateTime"] = self._now()
        if "accountEnabled" in changes and not isinstance(changes["accountEnabled"], bool):
            raise GraphError(400, "BadRequest", "accountEnabled must be true or false.")
        user.update(changes)

    def _require_manageable(self, user: dict[str, Any]) -> None:
        """A Helpdesk Administrator (without a stronger role) may not change an administrator."""
        if self.caller_roles - {"Helpdesk Administrator", "Password Administrator"}:
            return
        held = set(user["_roles"]) | {r for g in user["_groups"] if g in self.groups for r in self.groups[g]["_roles"]}
        if held - HELPDESK_MANAGEABLE:
            raise GraphError(403, "Authorization_RequestDenied", NO_PRIVILEGE)

    def _context(self, kind: str, select: str | None) -> str:
        shown = f"({select})" if select else ""
        return f"{GRAPH_RESOURCE}/v1.0/$metadata#{kind}{shown}"

    def _ok(self, value: dict[str, Any]) -> _Answer:
        return _Answer(200, _json(value))

    def _now(self) -> str:
        """Now, strictly later than the last time given (so two changes never share a timestamp)."""
        self._clock = max(time.time(), self._clock + 1)
        return dt.datetime.fromtimestamp(int(self._clock), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    # ----------------------------------------------------------------- OAuth 2.0 (Entra)

    def _oauth(self, method: str, path: str, headers: dict[str, str], body: bytes) -> _Answer:
        parts = path.strip("/").split("/")
        tenant, rest = parts[0], "/".join(parts[1:])
        if rest == "v2.0/.well-known/openid-configuration" and method == "GET":
            self._check_tenant(tenant)
            return _Answer(200, _json(self._openid(tenant)), "application/json; charset=utf-8")
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        if rest == "oauth2/v2.0/token" and method == "POST":
            self._check_tenant(tenant)
            return _Answer(200, _json(self._token(tenant, form)), "application/json; charset=utf-8")
        if rest == "oauth2/v2.0/devicecode" and method == "POST":
            self._check_tenant(tenant)
            return _Answer(200, _json(self._device_code(form)), "application/json; charset=utf-8")
        return _Answer(404, b"Not Found\n", "text/plain; charset=utf-8")

    def _check_tenant(self, tenant: str) -> None:
        if tenant not in (self.tenant_id, self.tenant_guid, "organizations", "common"):
            raise OAuthError(400, "invalid_request", 90002, f"AADSTS90002: Tenant '{tenant}' not found.")

    def _openid(self, tenant: str) -> dict[str, Any]:
        base = f"{self.authority}/{tenant}"
        return {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "issuer": f"{self.authority}/{self.tenant_guid}/v2.0",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "tenant_region_scope": "EU",
        }

    def _client(self, form: dict[str, str]) -> dict[str, Any]:
        client = self.clients.get(form.get("client_id", ""))
        if client is None:
            raise OAuthError(
                400,
                "unauthorized_client",
                700016,
                f"AADSTS700016: Application with identifier '{form.get('client_id')}' was not found in the "
                f"directory '{self.tenant_id}'.",
            )
        return client

    def _token(self, tenant: str, form: dict[str, str]) -> dict[str, Any]:
        grant = form.get("grant_type")
        if grant == "client_credentials":
            client = self._client(form)
            if "client_assertion" in form:
                self._check_assertion(client, form, tenant)
            elif not client["secret"] or not secrets.compare_digest(form.get("client_secret", ""), client["secret"]):
                raise OAuthError(401, "invalid_client", 7000215, BAD_SECRET)
            return self._issue(form, user=None)
        if grant == "urn:ietf:params:oauth:grant-type:device_code":
            flow = self._devices.get(form.get("device_code", ""))
            if flow is None:
                raise OAuthError(400, "invalid_grant", 70000, "AADSTS70000: The device code is invalid.")
            upn = self.device_users.get(flow["user_code"]) or self.device_auto_approve
            if upn is None:
                raise OAuthError(400, "authorization_pending", 70016, "AADSTS70016: Pending end-user authorization.")
            del self._devices[form["device_code"]]
            return self._issue({**form, "scope": flow["scope"]}, user=self._find(upn), client_id=flow["client_id"])
        if grant == "refresh_token":
            user_id = form.get("refresh_token", "").partition(".")[0]
            if user_id not in self.users:
                raise OAuthError(400, "invalid_grant", 70008, "AADSTS70008: The refresh token has expired.")
            return self._issue(form, user=self.users[user_id])
        raise OAuthError(400, "unsupported_grant_type", 70003, f"AADSTS70003: grant type '{grant}' not supported.")

    def _check_assertion(self, client: dict[str, Any], form: dict[str, str], tenant: str) -> None:
        import jwt
        from cryptography import x509

        bad = OAuthError(401, "invalid_client", 700027, UNKNOWN_CERTIFICATE)
        if not client["certificate"]:
            raise bad
        cert = x509.load_pem_x509_certificate(client["certificate"])
        der = cert.public_bytes(serialization_der())
        header = jwt.get_unverified_header(form["client_assertion"])
        thumbs = {
            "x5t#S256": base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode().rstrip("="),
            "x5t": base64.urlsafe_b64encode(hashlib.sha1(der).digest()).decode().rstrip("="),  # noqa: S324
        }
        if not any(str(header.get(k, "")).rstrip("=") == v for k, v in thumbs.items()):
            raise bad
        try:
            jwt.decode(
                form["client_assertion"],
                cert.public_key(),
                algorithms=["PS256", "RS256"],
                audience=f"{self.authority}/{tenant}/oauth2/v2.0/token",
                issuer=form["client_id"],
            )
        except jwt.PyJWTError:
            raise bad from None

    def _device_code(self, form: dict[str, str]) -> dict[str, Any]:
        self._client(form)
        user_code = "".join(secrets.choice("BCDFGHJKLMNPQRSTVWXZ") for _ in range(9))
        device_code = secrets.token_urlsafe(32)
        self._devices[device_code] = {
            "user_code": user_code,
            "client_id": form["client_id"],
            "scope": form.get("scope", f"{GRAPH_RESOURCE}/.default"),
        }
        uri = f"{self.authority}/devicelogin"
        return {
            "user_code": user_code,
            "device_code": device_code,
            "verification_uri": uri,
            "expires_in": 900,
            "interval": 1,
            "message": f"To sign in, use a web browser to open the page {uri} and enter the code {user_code}.",
        }

    def _issue(self, form: dict[str, str], *, user: dict[str, Any] | None, client_id: str | None = None) -> dict:
        token = "lab-" + secrets.token_urlsafe(24)
        self.tokens.add(token)
        answer: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": form.get("scope", f"{GRAPH_RESOURCE}/.default"),
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": token,
        }
        if user is not None:
            client_id = client_id or form.get("client_id", "")
            now = int(time.time())
            claims = {
                "aud": client_id,
                "iss": f"{self.authority}/{self.tenant_guid}/v2.0",
                "iat": now,
                "nbf": now,
                "exp": now + 3600,
                "name": user.get("displayName") or user["userPrincipalName"],
                "oid": user["id"],
                "preferred_username": user["userPrincipalName"],
                "sub": user["id"],
                "tid": self.tenant_guid,
                "ver": "2.0",
            }
            answer["id_token"] = ".".join(_b64(p) for p in ({"typ": "JWT", "alg": "none"}, claims)) + "."
            answer["client_info"] = _b64({"uid": user["id"], "utid": self.tenant_guid})
            answer["refresh_token"] = f"{user['id']}.{secrets.token_urlsafe(24)}"
        return answer


# --------------------------------------------------------------------------- the lab's tenant


def seed(lab: GraphStandIn) -> None:
    """A small tenant for `l1fix lab`: the callers of the GLPI demo, a disabled account, an admin, a synced one."""
    lab.add_user("jdupont", display_name="Jean Dupont", mail=f"jean.dupont@{lab.domain}")
    lab.add_user("mleroy", display_name="Marie Leroy", mail=f"marie.leroy@{lab.domain}", enabled=False)
    lab.add_user("admin.it", display_name="Admin IT", roles=["Global Administrator"])
    lab.add_user("pmartin", display_name="Paul Martin", synced=True)


def profile_lines(lab: GraphStandIn, profile: str, token_file: str) -> list[str]:
    """The `[profiles.NAME.graph]` table pointing at the stand-in (the token stays in a 0600 file)."""
    lines = [
        f"[profiles.{profile}.graph]  # the Graph stand-in: a simulation, not Microsoft 365",
        'auth = "token"',
        f"access_token = {json.dumps('file:' + token_file)}",
        f"base_url = {json.dumps(lab.url)}",
    ]
    if lab.ca_path is not None:
        lines.append(f"ca_bundle = {json.dumps(str(lab.ca_path))}")
    return lines


# --------------------------------------------------------------------------- $filter


class _FilterParser:
    """A strict subset of OData $filter: `p eq 'v'`, `p eq true`, `startswith(p,'v')`, and, or, parentheses."""

    _TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<word>[A-Za-z_][A-Za-z0-9_/]*)|(?P<sym>[(),]))")

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            match = self._TOKEN.match(text, pos)
            if not match:
                self._syntax(pos)
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind), match.start(kind)))
            pos = match.end()
        self.i = 0

    def _syntax(self, pos: int) -> Any:
        raise GraphError(400, "BadRequest", f"Invalid filter clause: Syntax error at position {pos} in '{self.text}'.")

    def _peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _take(self, kind: str, value: str | None = None) -> str:
        token = self._peek()
        if token is None or token[0] != kind or (value is not None and token[1].lower() != value):
            self._syntax(token[2] if token else len(self.text))
        self.i += 1
        return token[1]  # type: ignore[index]

    def parse(self) -> Any:
        predicate = self._or()
        if self._peek() is not None:
            self._syntax(self._peek()[2])  # type: ignore[index]
        return predicate

    def _or(self) -> Any:
        parts = [self._and()]
        while (t := self._peek()) and t[0] == "word" and t[1].lower() == "or":
            self.i += 1
            parts.append(self._and())
        return lambda u: any(p(u) for p in parts)

    def _and(self) -> Any:
        parts = [self._atom()]
        while (t := self._peek()) and t[0] == "word" and t[1].lower() == "and":
            self.i += 1
            parts.append(self._atom())
        return lambda u: all(p(u) for p in parts)

    def _atom(self) -> Any:
        token = self._peek()
        if token is None:
            self._syntax(len(self.text))
        if token[0] == "sym" and token[1] == "(":  # type: ignore[index]
            self.i += 1
            inner = self._or()
            self._take("sym", ")")
            return inner
        word = self._take("word")
        if word.lower() == "startswith":
            self._take("sym", "(")
            prop = self._property(self._take("word"))
            self._take("sym", ",")
            prefix = _literal(self._take("str")).lower()
            self._take("sym", ")")
            return lambda u: isinstance(u.get(prop), str) and u[prop].lower().startswith(prefix)
        prop = self._property(word)
        self._take("word", "eq")
        token = self._peek()
        if token and token[0] == "word" and token[1].lower() in ("true", "false", "null"):
            self.i += 1
            value: Any = {"true": True, "false": False, "null": None}[token[1].lower()]
            return lambda u: u.get(prop) == value
        wanted = _literal(self._take("str")).lower()
        return lambda u: isinstance(u.get(prop), str) and u[prop].lower() == wanted

    def _property(self, name: str) -> str:
        if name not in FILTERABLE and name != "accountEnabled":
            message = f"Unsupported or invalid query filter clause for '{name}'."
            raise GraphError(400, "Request_UnsupportedQuery", message)
        return name


def _unalias(segment: str) -> str:
    """Graph's schema names the namespace microsoft.graph with the alias "graph": both forms are accepted."""
    return "microsoft." + segment if segment.startswith("graph.") else segment


def _literal(token: str) -> str:
    return token[1:-1].replace("''", "'")


# --------------------------------------------------------------------------- helpers


def serialization_der() -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization.Encoding.DER


def _top(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_TOP:
        raise GraphError(400, "Request_BadRequest", f"Invalid page size specified: '{raw}'. Must be 1-{MAX_TOP}.")
    return int(raw)


def _inner(request_id: str, client_request_id: str) -> dict[str, str]:
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return {"date": date, "request-id": request_id, "client-request-id": client_request_id}


def _oauth_error(err: OAuthError, request_id: str) -> dict[str, Any]:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return {
        "error": err.error,
        "error_description": f"{err.description} Trace ID: {request_id} Timestamp: {stamp}",
        "error_codes": [err.code],
        "timestamp": stamp,
        "trace_id": request_id,
        "correlation_id": str(uuid.uuid4()),
    }


def _header(headers: dict[str, str], name: str) -> str | None:
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def _b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


# --------------------------------------------------------------------------- HTTP side


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], lab: GraphStandIn, family: socket.AddressFamily) -> None:
        self.address_family = family
        self.lab = lab
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # no reverse DNS lookup
        self.server_name, self.server_port = self.lab.host, self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("Graph stand-in connection from %s failed", client_address, exc_info=True)


class _Handler(LoopbackHandler):
    server_version = "Microsoft-IIS/10.0"
    timeout = 30
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("graph-lab %s: " + format, self.client_address[0], *args)

    def do_GET(self) -> None:
        length = self.headers.get("Content-Length", "0")
        if not length.isdigit() or int(length) > MAX_BODY:
            self._send(_Answer(413, b""), close=True)
            return
        body = self.rfile.read(int(length))
        answer = self.server.lab._serve(self.command, self.path, dict(self.headers.items()), body)
        self._send(answer)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _send(self, answer: _Answer, *, close: bool = False) -> None:
        self.send_response(answer.status)
        for name, value in answer.headers:
            self.send_header(name, value)
        if answer.body:
            self.send_header("Content-Type", answer.content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Content-Length", str(len(answer.body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if answer.body:
            self.wfile.write(answer.body)

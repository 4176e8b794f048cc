"""Lab GLPI: a stand-in for GLPI's legacy REST API (``apirest.php``) on loopback, for tests.

It follows GLPI's own code (``src/Api/API.php`` / ``src/Api/APIRest.php`` of GLPI 10, ``inc/api/api.class.php``
of 9.5) and ``apirest.md``: sessions with ``Session-Token``, the ``App-Token`` check, errors as an HTTP status
plus a JSON array ``["ERROR_CODE", "message"]``, ``range`` paging with ``Content-Range`` and 206, the search
engine's answer keyed by search-option ids, and the storage quirks that matter to a client (GLPI 9.5 stores
``<`` as ``&lt;``, GLPI 10 as ``&#60;``, GLPI 11 stores text as it is).  Only the item types l1fix uses exist.

Everything here is a simulation: nothing is a real GLPI, ``GET /`` says so.  Tests drive faults through
:meth:`GlpiStandIn.fail_next`, :meth:`~GlpiStandIn.drop_after_commit`, :meth:`~GlpiStandIn.deny` and friends.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.parser
import email.policy
import hashlib
import json
import logging
import mimetypes
import re
import secrets
import socket
import socketserver
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from l1fix.lab.service import LoopbackHandler, LoopbackService

log = logging.getLogger(__name__)

API_PATH = "/apirest.php"
BANNER = (
    b"l1fix lab - GLPI stand-in. This is NOT a GLPI server: it imitates GLPI's legacy REST API "
    b"(apirest.php) for l1fix's tests.\n"
)
LIST_LIMIT = 15  # GLPI's default 'list_limit' (install/empty_data.php)
MAX_INPUT_VARS = 1000  # PHP's max_input_vars default, sent in Accept-Range
MAX_BODY = 20 * 1024 * 1024
IDLE_TIMEOUT_S = 30.0

# Ticket statuses (CommonITILObject constants)
INCOMING, ASSIGNED, PLANNED, WAITING, SOLVED, CLOSED = 1, 2, 3, 4, 5, 6
# Actor types (CommonITILActor)
REQUESTER, ASSIGN, OBSERVER = 1, 2, 3

NO_RIGHT = "You don't have permission to perform this action."
_UPLOADS = "\x00uploads"  # parameter keys no query string can produce
_ACCEPT_MEDIA = "\x00accept_media"

# GLPI's default priority matrix: urgency -> impact -> priority
_PRIORITY = {
    5: {5: 5, 4: 5, 3: 5, 2: 4, 1: 4},
    4: {5: 5, 4: 4, 3: 4, 2: 3, 1: 3},
    3: {5: 4, 4: 4, 3: 3, 2: 2, 1: 2},
    2: {5: 3, 4: 3, 3: 2, 2: 2, 1: 1},
    1: {5: 2, 4: 2, 3: 1, 2: 1, 1: 1},
}

# --------------------------------------------------------------------------- item types

# Columns of each table (a subset of GLPI 10's), with their defaults (_NOW: the time of the insert).
_NOW = object()
_FIELDS: dict[str, dict[str, Any]] = {
    "Ticket": {
        "entities_id": 0, "name": "", "date": _NOW, "closedate": None, "solvedate": None,
        "takeintoaccountdate": None, "date_mod": _NOW, "users_id_lastupdater": 0, "status": INCOMING,
        "users_id_recipient": 0, "requesttypes_id": 1, "content": "", "urgency": 3, "impact": 3, "priority": 3,
        "itilcategories_id": 0, "type": 1, "global_validation": 1, "slas_id_ttr": 0, "slas_id_tto": 0,
        "time_to_resolve": None, "time_to_own": None, "begin_waiting_date": None, "waiting_duration": 0,
        "close_delay_stat": 0, "solve_delay_stat": 0, "takeintoaccount_delay_stat": 0, "actiontime": 0,
        "is_deleted": 0, "locations_id": 0, "validation_percent": 0, "date_creation": _NOW,
    },
    "ITILFollowup": {
        "itemtype": "", "items_id": 0, "date": _NOW, "users_id": 0, "users_id_editor": 0, "content": "",
        "is_private": 0, "requesttypes_id": 0, "date_mod": _NOW, "date_creation": _NOW, "timeline_position": 1,
        "sourceitems_id": 0, "sourceof_items_id": 0,
    },
    "ITILSolution": {
        "itemtype": "", "items_id": 0, "solutiontypes_id": 0, "solutiontype_name": None, "content": "",
        "date_creation": _NOW, "date_mod": _NOW, "date_approval": None, "users_id": 0, "user_name": None,
        "users_id_editor": 0, "users_id_approval": 0, "user_name_approval": None, "status": 2,
        "itilfollowups_id": None,
    },
    "User": {
        "name": "", "phone": None, "phone2": None, "mobile": None, "realname": None, "firstname": None,
        "locations_id": 0, "language": None, "use_mode": 0, "list_limit": None, "is_active": 1, "comment": None,
        "auths_id": 0, "authtype": 1, "last_login": None, "date_mod": _NOW, "date_sync": None, "is_deleted": 0,
        "profiles_id": 0, "entities_id": 0, "usertitles_id": 0, "usercategories_id": 0, "registration_number": None,
        "groups_id": 0, "users_id_supervisor": 0, "date_creation": _NOW,
    },
    "Group": {
        "entities_id": 0, "is_recursive": 0, "name": "", "comment": None, "ldap_field": None, "ldap_value": None,
        "ldap_group_dn": None, "date_mod": _NOW, "groups_id": 0, "completename": "", "level": 1,
        "is_requester": 1, "is_watcher": 1, "is_assign": 1, "is_task": 1, "is_notify": 1, "is_itemgroup": 1,
        "is_usergroup": 1, "is_manager": 1, "date_creation": _NOW,
    },
    "ITILCategory": {
        "entities_id": 0, "is_recursive": 1, "itilcategories_id": 0, "name": "", "completename": "",
        "comment": None, "level": 1, "knowbaseitemcategories_id": 0, "users_id": 0, "groups_id": 0, "code": None,
        "is_helpdeskvisible": 1, "is_incident": 1, "is_request": 1, "is_problem": 1, "is_change": 1,
        "date_mod": _NOW, "date_creation": _NOW,
    },
    "Ticket_User": {"tickets_id": 0, "users_id": 0, "type": REQUESTER, "use_notification": 1, "alternative_email": ""},
    "Group_Ticket": {"tickets_id": 0, "groups_id": 0, "type": REQUESTER},
    "Document": {
        "entities_id": 0, "is_recursive": 0, "name": "", "filename": None, "filepath": None,
        "documentcategories_id": 0, "mime": None, "date_mod": _NOW, "comment": None, "is_deleted": 0, "link": None,
        "users_id": 0, "tickets_id": 0, "sha1sum": None, "is_blacklisted": 0, "tag": None, "date_creation": _NOW,
    },
    "Document_Item": {
        "documents_id": 0, "items_id": 0, "itemtype": "", "entities_id": 0, "is_recursive": 0, "date_mod": _NOW,
        "users_id": 0, "timeline_position": 0, "date_creation": _NOW, "date": _NOW,
    },
    "Computer": {
        "entities_id": 0, "name": "", "serial": None, "otherserial": None, "contact": None, "contact_num": None,
        "users_id_tech": 0, "groups_id_tech": 0, "comment": None, "date_mod": _NOW, "autoupdatesystems_id": 0,
        "locations_id": 0, "networks_id": 0, "computermodels_id": 0, "computertypes_id": 0, "is_template": 0,
        "template_name": None, "manufacturers_id": 0, "is_deleted": 0, "is_dynamic": 0, "users_id": 0,
        "groups_id": 0, "states_id": 0, "ticket_tco": "0.0000", "uuid": None, "date_creation": _NOW,
        "is_recursive": 0,
    },
    "NetworkPort": {
        "items_id": 0, "itemtype": "", "entities_id": 0, "is_recursive": 0, "logical_number": 0, "name": "",
        "instantiation_type": "NetworkPortEthernet", "mac": None, "comment": None, "is_deleted": 0,
        "is_dynamic": 0, "date_mod": _NOW, "date_creation": _NOW,
    },
    "NetworkName": {
        "entities_id": 0, "items_id": 0, "itemtype": "", "comment": None, "fqdns_id": 0, "is_deleted": 0,
        "is_dynamic": 0, "name": None, "date_mod": _NOW, "date_creation": _NOW,
    },
    "IPAddress": {
        "entities_id": 0, "items_id": 0, "itemtype": "", "version": 4, "name": "", "binary_0": 0, "binary_1": 0,
        "binary_2": 65535, "binary_3": 0, "is_deleted": 0, "is_dynamic": 0, "mainitems_id": 0, "mainitemtype": None,
    },
    "FQDN": {"entities_id": 0, "is_recursive": 0, "name": "", "fqdn": "", "comment": None, "date_mod": _NOW,
             "date_creation": _NOW},
    # Since 0.83 an article has no entity of its own: Entity_KnowbaseItem & co. are its "targets" (who may read
    # it); since 10.0 its categories are KnowbaseItem_KnowbaseItemCategory rows (1-n).
    "KnowbaseItem": {
        "name": "", "answer": "", "is_faq": 0, "users_id": 0, "view": 0, "date_creation": _NOW, "date_mod": _NOW,
        "begin_date": None, "end_date": None,
    },
    "KnowbaseItemCategory": {
        "entities_id": 0, "is_recursive": 0, "knowbaseitemcategories_id": 0, "name": "", "completename": "",
        "comment": None, "level": 1, "sons_cache": None, "ancestors_cache": None, "date_mod": _NOW,
        "date_creation": _NOW,
    },
    "KnowbaseItem_KnowbaseItemCategory": {"knowbaseitems_id": 0, "knowbaseitemcategories_id": 0},
    "Entity_KnowbaseItem": {"knowbaseitems_id": 0, "entities_id": 0, "is_recursive": 0},
}  # fmt: skip
ITEMTYPES = tuple(_FIELDS)
_TABLES = {
    "Ticket": "glpi_tickets", "ITILFollowup": "glpi_itilfollowups", "ITILSolution": "glpi_itilsolutions",
    "User": "glpi_users", "Group": "glpi_groups", "ITILCategory": "glpi_itilcategories",
    "Ticket_User": "glpi_tickets_users", "Group_Ticket": "glpi_groups_tickets", "Document": "glpi_documents",
    "Document_Item": "glpi_documents_items", "Computer": "glpi_computers", "NetworkPort": "glpi_networkports",
    "NetworkName": "glpi_networknames", "IPAddress": "glpi_ipaddresses", "FQDN": "glpi_fqdns",
    "KnowbaseItem": "glpi_knowbaseitems", "KnowbaseItemCategory": "glpi_knowbaseitemcategories",
    "KnowbaseItem_KnowbaseItemCategory": "glpi_knowbaseitems_knowbaseitemcategories",
    "Entity_KnowbaseItem": "glpi_entities_knowbaseitems",
}  # fmt: skip
# User::unsetUndisclosedFields: never sent by the API
_UNDISCLOSED = {"User": {"password", "personal_token", "api_token", "cookie_token", "password_forget_token"}}
# Foreign-key table name (without "glpi_" and the final "s") -> itemtype, for HATEOAS links and expand_dropdowns
_FK_ITEMTYPES = {
    "user": "User", "group": "Group", "itilcategorie": "ITILCategory", "ticket": "Ticket", "document": "Document",
    "computer": "Computer", "networkport": "NetworkPort", "networkname": "NetworkName", "fqdn": "FQDN",
    "entitie": "Entity", "requesttype": "RequestType", "location": "Location", "solutiontype": "SolutionType",
    "itilfollowup": "ITILFollowup", "documentcategorie": "DocumentCategory", "computertype": "ComputerType",
    "computermodel": "ComputerModel", "manufacturer": "Manufacturer", "state": "State", "profile": "Profile",
    "knowbaseitemcategorie": "KnowbaseItemCategory", "knowbaseitem": "KnowbaseItem",
    "autoupdatesystem": "AutoUpdateSystem", "network": "Network",
}  # fmt: skip
# Tree dropdowns (CommonTreeDropdown) and the field naming their parent
_TREES = {
    "Group": "groups_id", "ITILCategory": "itilcategories_id", "KnowbaseItemCategory": "knowbaseitemcategories_id"
}  # fmt: skip
# Types whose add answers an empty message (no "Item successfully added"); the KB relations go with their article
_RELATIONS = ("ITILFollowup", "ITILSolution", "Ticket_User", "Group_Ticket", "Document_Item",
              "KnowbaseItem_KnowbaseItemCategory", "Entity_KnowbaseItem")  # fmt: skip
_KB_RELATIONS = ("KnowbaseItem_KnowbaseItemCategory", "Entity_KnowbaseItem")
_REQUEST_TYPES = {1: "Helpdesk", 2: "E-Mail", 3: "Phone", 4: "Direct", 5: "Written", 6: "Other"}
# API::getHatoasClasses (GLPI 10), for the item types kept here
_CHILD_LINKS = {
    "Ticket": ["Document_Item", "TicketTask", "TicketValidation", "TicketCost", "Problem_Ticket", "Change_Ticket",
               "Ticket_Ticket", "Item_Ticket", "ITILSolution", "ITILFollowup", "Ticket_User", "Group_Ticket",
               "Supplier_Ticket"],
    "Computer": ["ReservationItem", "Document_Item", "Contract_Item", "Infocom", "Item_Ticket", "Item_Project",
                 "NetworkPort"],
    "KnowbaseItem": ["Document_Item"],
    "User": ["Document_Item"],
}  # fmt: skip
_PORT_INSTANTIATIONS = ("NetworkPortEthernet", "NetworkPortWifi", "NetworkPortAggregate", "NetworkPortAlias",
                        "NetworkPortDialup", "NetworkPortLocal", "NetworkPortFiberchannel")  # fmt: skip


class _ApiError(Exception):
    """An error answer: HTTP status and ``[code, message]`` (``message`` may be a list of results)."""

    def __init__(self, status: int, code: str, message: Any, *, doc: bool = True) -> None:
        super().__init__(f"{status} {code}")
        self.status, self.code, self.message, self.doc = status, code, message, doc


@dataclass
class _Session:
    token: str
    login: str
    user_id: int
    last_used: float


@dataclass
class _Answer:
    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=UTF-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Option:
    """One search option: what it shows, and what ``equals`` compares (an id for itemlinks and dropdowns)."""

    name: str
    table: str
    field: str
    show: Callable[[GlpiStandIn, dict], Any]
    key: Callable[[GlpiStandIn, dict], Any] | None = None
    datatype: str = "string"


# --------------------------------------------------------------------------- small helpers


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def _php_truthy(value: Any) -> bool:
    """PHP's idea of truth for request parameters ("0", "" and "false" are false)."""
    if isinstance(value, str):
        return value not in ("", "0", "false")
    return bool(value)


def _parse_php_query(query: str) -> dict[str, Any]:
    """Like PHP's parse_str: ``a[0][b]=1&c[]=2`` becomes nested dicts (list-like dicts keep insertion order)."""
    result: dict[str, Any] = {}
    for raw_key, value in parse_qsl(query, keep_blank_values=True):
        match = re.fullmatch(r"([^\[\]]+)((?:\[[^\[\]]*\])*)", raw_key)
        if not match:
            result[raw_key] = value
            continue
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node = result
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":
                part = str(sum(1 for k in node if k.isdigit()))
            if last:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = node[part] = {}
                node = child
    return result


def _values(node: Any) -> list[Any]:
    """The elements of a PHP array that came from a query string (dict) or JSON (list); a scalar is one."""
    if isinstance(node, dict):
        return list(node.values())
    if isinstance(node, list):
        return node
    return [] if node is None else [node]


def _header(headers: dict[str, str], name: str) -> str | None:
    """Case-insensitive header lookup."""
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def _json(value: Any) -> bytes:
    # json_encode(..., JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _fk_target(key: str, fields: dict[str, Any]) -> str | None:
    """The itemtype a foreign-key field points to (``users_id_recipient`` -> User), like isForeignKeyField."""
    if key == "items_id" and isinstance(fields.get("itemtype"), str) and fields.get("itemtype"):
        return fields["itemtype"]
    match = re.fullmatch(r"([a-z]+)s_id(?:_[a-z0-9_]+)?", key)
    if not match:
        return None
    stem = match.group(1)
    return _FK_ITEMTYPES.get(stem, stem.capitalize())


def _text_matcher(value: str) -> Callable[[Any], bool]:
    """GLPI's ``contains``: a LIKE with % wildcards unless anchored by ^ and $ (Search::makeTextSearchValue)."""
    val = value.strip()
    if val in ("NULL", "null"):
        return lambda x: x is None or x == ""
    if val == "^":
        return lambda x: x not in (None, "")
    if val in ("^$", "$"):
        return lambda x: x in (None, "")
    starts = val.startswith("^")
    ends = val.endswith("$")
    val = val.removeprefix("^").removesuffix("$").strip()
    body = ".*".join(re.escape(part) for part in val.split("%"))
    pattern = re.compile(("^" if starts else "") + body + ("$" if ends else ""), re.IGNORECASE | re.DOTALL)
    return lambda x: x is not None and pattern.search(str(x)) is not None


# --------------------------------------------------------------------------- the stand-in


class GlpiStandIn(LoopbackService):
    """GLPI's legacy REST API on loopback, with data in plain dicts and fault injection for tests."""

    label = "GLPI stand-in"

    def __init__(
        self,
        *,
        app_token: str = "lab-app-token",
        users: dict[str, str] | None = None,
        user_tokens: dict[str, str] | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        session_ttl_s: float = 1440 * 60,
        glpi_version: str = "10.0.16",
        tls_cert_dir: Path | None = None,
    ) -> None:
        super().__init__(host=host, port=port, tls_cert_dir=tls_cert_dir)
        self.app_token = app_token
        self.users = dict(users or {})  # login -> password
        self.user_tokens = dict(user_tokens or {})  # token -> login
        self.session_ttl_s = session_ttl_s
        self.glpi_version = glpi_version
        self.version = tuple(int(p) for p in re.findall(r"\d+", glpi_version)[:3]) or (10, 0, 0)
        self.items: dict[str, dict[int, dict]] = {t: {} for t in ITEMTYPES}
        self.documents: dict[int, bytes] = {}  # Document id -> uploaded file content
        self.requests_log: list[dict] = []
        self._next_id: dict[str, int] = dict.fromkeys(ITEMTYPES, 1)
        self._next_id["User"] = 2  # GLPI's first account, "glpi", is id 2
        self._sessions: dict[str, _Session] = {}
        self._denied: set[tuple[str, str, int]] = set()
        self._stats: Counter[tuple[str, str]] = Counter()
        self._fail: list[int] = []  # statuses of the next failing requests
        self._drops = 0
        self._delay_s = 0.0
        self._strip_auth = False
        self._redirect = False
        self._blocked_ip = False
        for login in [*self.users, *self.user_tokens.values()]:
            self._ensure_user(login)

    # ----------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        return self.origin + API_PATH

    def _new_server(self, family: socket.AddressFamily) -> _Server:
        return _Server((self.host, self.port), self, family)

    # ----------------------------------------------------------------- data

    def add(self, itemtype: str, /, **fields: Any) -> int:
        """Seed an item directly (no API, no rights); returns its id.

        ``itemtype`` is positional-only, so GLPI's own ``itemtype`` field can be given: ``add("NetworkPort",
        itemtype="Computer", items_id=3)``.

        Text is stored the way the chosen GLPI version stores it (GLPI 10 turns ``<`` into ``&#60;``).
        ``_users_id_requester``/``_assign``/``_observer`` and ``_groups_id_*`` on a Ticket create the actor links.
        """
        itemtype_name, itemtype = itemtype, self._itemtype(itemtype)
        if itemtype is None:
            raise KeyError(f"the GLPI stand-in has no item type {itemtype_name!r}")
        with self._lock:
            return self._insert(itemtype, fields, user_id=0, keep_unknown=True)

    def user_id(self, login: str) -> int:
        """Id of the User with that login (created on the fly for logins given to the constructor)."""
        with self._lock:
            for uid, user in self.items["User"].items():
                if user["name"] == login:
                    return uid
        raise KeyError(login)

    # ----------------------------------------------------------------- fault injection

    def expire_sessions(self) -> None:
        """Every current Session-Token becomes invalid (401 ERROR_SESSION_TOKEN_INVALID)."""
        with self._lock:
            self._sessions.clear()

    def fail_next(self, n: int, status: int = 500) -> None:
        """The next ``n`` API requests answer ``status`` with a GLPI-like error body, changing nothing."""
        with self._lock:
            self._fail.extend([status] * n)

    def delay(self, seconds: float) -> None:
        """Every answer waits this long first (0 to stop)."""
        self._delay_s = max(0.0, seconds)

    def drop_after_commit(self, n: int = 1) -> None:
        """The next ``n`` API POSTs are carried out, then the connection is closed without an answer."""
        with self._lock:
            self._drops += n

    def strip_authorization(self, on: bool = True) -> None:
        """Behave like a web server (Apache + php-fpm) that does not pass the Authorization header to PHP."""
        self._strip_auth = on

    def deny(self, login: str, itemtype: str, item_id: int) -> None:
        """That user has no right on that item: GLPI's rights errors."""
        with self._lock:
            self._denied.add((login, self._itemtype(itemtype) or itemtype, int(item_id)))

    def redirect_to_https(self, on: bool = True) -> None:
        """Answer every request with ``301 Location: https://...`` (like a web server forcing HTTPS)."""
        self._redirect = on

    def block_ip(self, on: bool = True) -> None:
        """No API client matches the caller's IP: every API call gets ERROR_NOT_ALLOWED_IP."""
        self._blocked_ip = on

    def stats(self) -> dict[tuple[str, str], int]:
        """API requests counted by (HTTP method, itemtype or endpoint), e.g. ``("POST", "ITILFollowup")``."""
        with self._lock:
            return dict(self._stats)

    def reset_stats(self) -> None:
        with self._lock:
            self._stats.clear()

    # ----------------------------------------------------------------- HTTP entry (called by the handler)

    def _serve(self, method: str, target: str, headers: dict[str, str], body: bytes, client: str) -> _Answer | None:
        """Answer one HTTP request; None means: close the connection without answering."""
        path, _, query = target.partition("?")
        with self._lock:
            self.requests_log.append(
                {
                    "method": method,
                    "path": path,
                    "query": query,
                    "headers": dict(headers),
                    "body": body,
                    "client": client,
                    "time": time.time(),
                }
            )
        if self._delay_s:
            time.sleep(self._delay_s)
        if self._redirect:
            host = _header(headers, "Host") or f"{self.host}:{self.port}"
            return _Answer(301, b"", "text/html", [("Location", f"https://{host}{target}")])
        if path in ("/", API_PATH, API_PATH + "/") and method == "GET" and not query:
            return _Answer(200, BANNER, "text/plain; charset=utf-8")
        if path != API_PATH and not path.startswith(API_PATH + "/"):
            return _Answer(404, b"Not Found\n", "text/plain; charset=utf-8")
        path_info = path[len(API_PATH) :].strip("/")
        with self._lock:
            self._stats[(method, self._stats_key(path_info))] += 1
            failure = self._fail.pop(0) if self._fail else None
            drop = False
            if failure is None and method == "POST" and self._drops > 0:
                self._drops -= 1
                drop = True
        if failure is not None:
            return self._injected(failure)
        if self._strip_auth:
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        try:
            with self._lock:
                answer = self._call(method, path_info, query, headers, body, client)
        except _ApiError as err:
            message = err.message
            if err.doc and isinstance(message, str):
                message = f"{message}; view documentation in your browser at {self.url}/#{err.code}"
            answer = _Answer(err.status, _json([err.code, message]))
        except Exception:  # a stand-in bug must not look like a network fault
            log.exception("GLPI stand-in failed on %s %s", method, target)
            answer = _Answer(500, _json(["ERROR", "l1fix GLPI stand-in: internal error"]))
        if drop:
            return None
        answer.headers.append(("Cache-Control", "no-store, no-cache, must-revalidate"))
        return answer

    def _injected(self, status: int) -> _Answer:
        bodies = {
            400: ["ERROR", f"Bad Request; view documentation in your browser at {self.url}/#ERROR"],
            401: ["ERROR_SESSION_TOKEN_INVALID", "session_token seems invalid"],
            403: ["ERROR_RIGHT_MISSING", NO_RIGHT],
            404: ["ERROR_ITEM_NOT_FOUND", "Item not found"],
            500: ["ERROR_SQL", "Unexpected SQL Error : fault injected by the l1fix GLPI stand-in"],
        }
        body = bodies.get(status, ["ERROR", f"HTTP {status} injected by the l1fix GLPI stand-in"])
        return _Answer(status, _json(body))

    def _stats_key(self, path_info: str) -> str:
        parts = path_info.split("/")
        if parts[0] in ("search", "listSearchOptions") and len(parts) > 1:
            return f"{parts[0]}/{parts[1]}"
        if len(parts) > 2 and self._itemtype(parts[2]):
            return self._itemtype(parts[2]) or parts[2]
        return self._itemtype(parts[0]) or parts[0]

    # ----------------------------------------------------------------- APIRest::call

    def _call(
        self, method: str, path_info: str, query: str, headers: dict[str, str], body: bytes, client: str
    ) -> _Answer:
        parts = path_info.split("/") if path_info else [""]
        resource = parts[0]
        params = self._parse_params(method, query, headers, body)
        if self._blocked_ip:
            message = f"There isn't an active API client matching your IP address in the configuration ({client})"
            raise _ApiError(400, "ERROR_NOT_ALLOWED_IP", message, doc=False)
        if resource in ("", "api"):
            return _Answer(200, BANNER, "text/plain; charset=utf-8")
        session = None
        if resource not in ("initSession", "lostPassword"):
            self._check_app_token(params)
            session = self._check_session(params)
        # GLPI 10's X-GLPI-Sanitized-Content header (APIRest::returnSanitizedContent, FILTER_VALIDATE_BOOLEAN)
        sanitized_header = _header(headers, "X-GLPI-Sanitized-Content") or "true"
        sanitized = sanitized_header.strip().lower() in ("1", "true", "on", "yes")
        if resource == "initSession":
            return self._ok(self._init_session(params))
        if resource == "lostPassword":
            if method not in ("PUT", "PATCH"):
                raise _ApiError(400, "ERROR", "Only HTTP verb PUT is allowed")
            raise _ApiError(400, "ERROR", "Email notifications are disabled")
        assert session is not None
        if resource == "killSession":
            self._sessions.pop(session.token, None)
            return self._ok(True)
        if resource in ("getFullSession", "getActiveProfile", "getMyProfiles", "getMyEntities", "getActiveEntities"):
            return self._ok(self._session_info(resource, session))
        if resource == "getGlpiConfig":
            return self._ok(
                {"cfg_glpi": {"version": self.glpi_version, "url_base_api": self.url, "list_limit": LIST_LIMIT}}
            )
        if resource == "listSearchOptions":
            return self._ok(self._list_search_options(self._require_itemtype(parts, 1)))
        if resource == "getMultipleItems":
            found = []
            for entry in _values(params.get("items")):
                if not isinstance(entry, dict) or ("itemtype" not in entry and "items_id" not in entry):
                    raise self._bad_array()
                itemtype = self._require_itemtype([str(entry.get("itemtype"))], 0)
                found.append(self._get_item(itemtype, int(entry.get("items_id") or 0), params, session, sanitized))
            return self._ok(found)
        if resource == "search":
            return self._search(self._require_itemtype(parts, 1), params, session)
        if len(parts) >= 3 and parts[0].lower() == "user" and parts[2].lower() == "picture" and parts[1].isdigit():
            return _Answer(204)
        return self._crud(method, parts, params, session, sanitized)

    def _ok(self, value: Any, status: int = 200, headers: list[tuple[str, str]] | None = None) -> _Answer:
        return _Answer(status, _json(value), headers=list(headers or []))

    def _bad_array(self) -> _ApiError:
        return _ApiError(400, "ERROR_BAD_ARRAY", "input parameter must be an array of objects")

    def _parse_params(self, method: str, query: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        """APIRest::parseIncomingParams: query string, then the body, then the auth and token headers."""
        params: dict[str, Any] = _parse_php_query(query)
        lower = {k.lower(): v for k, v in headers.items()}
        if body.strip() and method == "GET":
            raise _ApiError(400, "ERROR_JSON_PAYLOAD_FORBIDDEN", "GET Request should not have json payload (http body)")
        content_type = lower.get("content-type", "application/json")
        if "application/json" in content_type:
            if body.strip():
                try:
                    decoded = json.loads(body)
                except ValueError:
                    decoded = None
                # PHP: `if ($body_params = json_decode($body))` - an object is always true, [] and 0 are not
                if not isinstance(decoded, dict) and not decoded:
                    raise _ApiError(400, "ERROR_JSON_PAYLOAD_INVALID", "JSON payload seems not valid", doc=False)
                if isinstance(decoded, dict | list):
                    items = decoded.items() if isinstance(decoded, dict) else enumerate(decoded)
                    for name, value in items:
                        params[str(name)] = value
        elif "multipart/form-data" in content_type:
            params.update(self._parse_multipart(content_type, body))
        elif "application/x-www-form-urlencoded" in content_type:
            form = _parse_php_query(body.decode("utf-8", "replace"))
            params.update(form)
        authorization = lower.get("authorization", "")
        if authorization.lower().startswith("basic "):
            try:
                decoded_auth = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8", "replace")
            except (binascii.Error, ValueError):
                decoded_auth = ""
            login, sep, password = decoded_auth.partition(":")
            if sep:
                params["login"], params["password"] = login, password
        if "user_token" in authorization:
            pieces = authorization.split(" ")
            if len(pieces) > 1:
                params["user_token"] = pieces[1]
        if "session-token" in lower:
            params["session_token"] = lower["session-token"]
        if "app-token" in lower:
            params["app_token"] = lower["app-token"]
        params[_ACCEPT_MEDIA] = "application/octet-stream" in lower.get("accept", "")
        for key, value in list(params.items()):
            if value == "true":
                params[key] = True
            elif value == "false":
                params[key] = False
        return params

    def _parse_multipart(self, content_type: str, body: bytes) -> dict[str, Any]:
        """multipart/form-data: the JSON ``uploadManifest`` plus the uploaded files (PHP's $_FILES)."""
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
        )
        fields: dict[str, str] = {}
        files: dict[str, list[tuple[str, str, bytes]]] = {}
        for part in message.iter_parts() if message.is_multipart() else []:
            name = part.get_param("name", header="content-disposition")
            if not name:
                continue
            filename = part.get_filename()
            payload = part.get_payload(decode=True) or b""
            if filename is not None:
                base = re.sub(r"\[.*$", "", name)
                files.setdefault(base, []).append((filename, part.get_content_type(), payload))
            else:
                fields[name] = payload.decode("utf-8", "replace")
        if not files:
            raise _ApiError(400, "ERROR_UPLOAD_FILE_TOO_BIG_POST_MAX_SIZE", "The file seems too big", doc=False)
        try:
            manifest = json.loads(fields.get("uploadManifest", ""))
        except ValueError:
            manifest = None
        if not manifest or not isinstance(manifest, dict):
            raise _ApiError(400, "ERROR_JSON_PAYLOAD_INVALID", "JSON payload seems not valid", doc=False)
        params: dict[str, Any] = dict(manifest)
        if not isinstance(params.get("input"), dict):
            params["input"] = {}
        # parseIncomingParams empties _filename; manageUploadedFiles adds the first file of each form field
        params["input"]["_filename"] = []
        params["upload_result"] = []
        for base, uploads in files.items():
            filename, mime, payload = uploads[0]
            prefix = uuid.uuid4().hex[:14] + "." + f"{secrets.randbelow(10**8):08d}"  # like uniqid('', true)
            params["input"]["_filename"].append(prefix + filename)
            params.setdefault(_UPLOADS, []).append((filename, mime, payload))
            params["upload_result"].append(
                {
                    base: [
                        {
                            "name": prefix + filename,
                            "size": len(payload),
                            "type": mime,
                            "url": f"{self.url.removesuffix(API_PATH)}/files/_tmp/{prefix}{filename}",
                            "deleteUrl": "",
                            "deleteType": "DELETE",
                            "prefix": prefix,
                            "display": filename,
                            "filesize": f"{len(payload)} B",
                            "id": f"doc{base}{secrets.randbelow(2**31)}",
                        }
                    ]
                }
            )
        return params

    # ----------------------------------------------------------------- sessions

    def _check_app_token(self, params: dict[str, Any]) -> None:
        """API::checkAppToken: with no token configured, sending one is an error too (array_search finds none)."""
        given = params.get("app_token") or ""
        if isinstance(given, str) and given == (self.app_token or ""):
            return
        if given != "":
            raise _ApiError(400, "ERROR_WRONG_APP_TOKEN_PARAMETER", "parameter app_token seems wrong")
        raise _ApiError(400, "ERROR_APP_TOKEN_PARAMETERS_MISSING", "missing parameter app_token")

    def _check_session(self, params: dict[str, Any]) -> _Session:
        token = params.get("session_token")
        if not token or not isinstance(token, str):
            raise _ApiError(400, "ERROR_SESSION_TOKEN_MISSING", "parameter session_token is missing or empty")
        session = self._sessions.get(token.strip())
        now = time.monotonic()
        if session is not None and now - session.last_used > self.session_ttl_s:
            del self._sessions[session.token]
            session = None
        if session is None:
            raise _ApiError(401, "ERROR_SESSION_TOKEN_INVALID", "session_token seems invalid", doc=False)
        session.last_used = now
        return session

    def _init_session(self, params: dict[str, Any]) -> dict[str, Any]:
        """API::initSession: App-Token, then credentials (user_token first, then login/password)."""
        self._check_app_token(params)
        login, password = params.get("login") or "", params.get("password") or ""
        token = params.get("user_token") or ""
        if (not login or not password) and not token:
            raise _ApiError(
                400, "ERROR_LOGIN_PARAMETERS_MISSING", "parameter(s) login, password or user_token are missing"
            )
        user = None
        if token and isinstance(token, str) and token in self.user_tokens:
            user = self.user_tokens[token]
        elif login and password and self.users.get(str(login)) == password:
            user = str(login)
        if user is None:
            if token:
                raise _ApiError(401, "ERROR_GLPI_LOGIN_USER_TOKEN", "parameter user_token seems invalid", doc=False)
            raise _ApiError(401, "ERROR_GLPI_LOGIN", "Incorrect username or password", doc=False)
        alphabet = "0123456789abcdefghijklmnopqrstuv"  # PHP session ids: 26 chars, 5 bits each
        session_token = "".join(secrets.choice(alphabet) for _ in range(26))
        session = _Session(session_token, user, self._ensure_user(user), time.monotonic())
        self._sessions[session_token] = session
        data: dict[str, Any] = {"session_token": session_token}
        if _php_truthy(params.get("get_full_session", False)):
            data["session"] = self._php_session(session)
        return data

    def _php_session(self, session: _Session) -> dict[str, Any]:
        user = self.items["User"][session.user_id]
        profile = {"id": 4, "name": "Super-Admin", "interface": "central", "entities": [{"id": 0, "is_recursive": 1}]}
        return {
            "glpi_currenttime": _now(),
            "glpiID": session.user_id,
            "glpiname": session.login,
            "glpirealname": user.get("realname"),
            "glpifirstname": user.get("firstname"),
            "glpidefault_entity": 0,
            "glpiactive_entity": 0,
            "glpiactive_entity_recursive": False,
            "glpiactiveentities": [0],
            "glpiactiveprofile": profile,
            "glpiprofiles": {"4": profile},
            "glpigroups": [],
            "glpilist_limit": LIST_LIMIT,
            "glpilanguage": "en_GB",
            "glpiis_ids_visible": 0,
            "valid_id": session.token,
            "l1fix_lab": "GLPI stand-in, not a real GLPI session",
        }

    def _session_info(self, resource: str, session: _Session) -> dict[str, Any]:
        full = self._php_session(session)
        if resource == "getFullSession":
            return {"session": full}
        if resource == "getActiveProfile":
            return {"active_profile": full["glpiactiveprofile"]}
        if resource == "getMyProfiles":
            return {"myprofiles": [full["glpiactiveprofile"]]}
        if resource == "getMyEntities":
            return {"myentities": [{"id": 0, "name": "Root entity"}]}
        return {"active_entity": {"id": 0, "active_entity_recursive": False, "active_entities": [{"id": 0}]}}

    def _ensure_user(self, login: str) -> int:
        for uid, user in self.items["User"].items():
            if user["name"] == login:
                return uid
        return self._insert("User", {"name": login}, user_id=0, keep_unknown=True)

    # ----------------------------------------------------------------- item storage

    def _itemtype(self, name: str) -> str | None:
        """Case-insensitive item type lookup (PHP class names are case-insensitive)."""
        for itemtype in ITEMTYPES:
            if itemtype.lower() == name.lower():
                return itemtype
        return None

    def _require_itemtype(self, parts: list[str], index: int) -> str:
        if index >= len(parts) or parts[index] == "":
            raise _ApiError(400, "ERROR_RESOURCE_MISSING", "missing resource")
        itemtype = self._itemtype(parts[index])
        if itemtype is None:
            raise _ApiError(
                400, "ERROR_RESOURCE_NOT_FOUND_NOR_COMMONDBTM", "resource not found or not an instance of CommonDBTM"
            )
        return itemtype

    def _sanitize(self, value: Any) -> Any:
        """What the chosen GLPI version stores for an input string.

        9.5: Toolbox::sanitize -> clean_cross_side_scripting_deep (``<``/``>`` to ``&lt;``/``&gt;``);
        10: Glpi\\Toolbox\\Sanitizer::sanitize (``&``, ``<``, ``>`` to ``&#38;``, ``&#60;``, ``&#62;``);
        11: no sanitizing at all.
        """
        if not isinstance(value, str):
            return value
        if self.version < (10,):
            return value.replace("<", "&lt;").replace(">", "&gt;")
        if self.version < (11,):
            return value.replace("&", "&#38;").replace("<", "&#60;").replace(">", "&#62;")
        return value

    @staticmethod
    def _unsanitize(value: Any) -> Any:
        """Sanitizer::decodeHtmlSpecialChars (new entities when present, else the legacy ones)."""
        if not isinstance(value, str):
            return value
        if any(entity in value for entity in ("&#38;", "&#60;", "&#62;")):
            return value.replace("&#62;", ">").replace("&#60;", "<").replace("&#38;", "&")
        return value.replace("&gt;", ">").replace("&lt;", "<")

    def _insert(self, itemtype: str, given: dict[str, Any], *, user_id: int, keep_unknown: bool) -> int:
        """Store a new item: defaults, sanitized text, then the side effects GLPI's post_addItem has."""
        now = _now()
        fields = {k: (now if v is _NOW else v) for k, v in _FIELDS[itemtype].items()}
        for key, value in given.items():
            if key.startswith("_") or key == "id":
                continue
            if key in fields or keep_unknown:
                fields[key] = self._sanitize(value)
        if keep_unknown and "id" in given and int(given["id"]) not in self.items[itemtype]:
            new_id = int(given["id"])
        else:
            new_id = self._next_id[itemtype]
        self._next_id[itemtype] = max(self._next_id[itemtype], new_id + 1)
        fields = {"id": new_id, **fields}
        if itemtype == "Ticket":
            self._prepare_ticket(fields, given, user_id)
        elif itemtype in _TREES:
            self._complete_name(itemtype, fields)
        self.items[itemtype][new_id] = fields
        if itemtype == "Ticket":
            self._ticket_actors(new_id, given, user_id)
        return new_id

    def _prepare_ticket(self, fields: dict[str, Any], given: dict[str, Any], user_id: int) -> None:
        fields["status"] = int(fields["status"])
        if not fields["name"]:
            text = re.sub(r"<[^>]*>", " ", self._unsanitize(str(fields["content"])))
            fields["name"] = self._sanitize(" ".join(text.split())[:70])
        if "priority" not in given:
            urgency, impact = int(fields["urgency"] or 3), int(fields["impact"] or 3)
            fields["priority"] = _PRIORITY.get(urgency, {}).get(impact, 3)
        if user_id:
            fields["users_id_recipient"] = fields["users_id_recipient"] or user_id
            fields["users_id_lastupdater"] = user_id
        if fields["status"] == INCOMING and (given.get("_users_id_assign") or given.get("_groups_id_assign")):
            fields["status"] = ASSIGNED
        if fields["status"] >= SOLVED and not fields["solvedate"]:
            fields["solvedate"] = fields["date_mod"]
        if fields["status"] == CLOSED and not fields["closedate"]:
            fields["closedate"] = fields["date_mod"]

    def _ticket_actors(self, ticket_id: int, given: dict[str, Any], user_id: int) -> None:
        requesters = given.get("_users_id_requester", user_id if user_id else None)
        for key, kind, value in (
            ("users_id", REQUESTER, requesters),
            ("users_id", ASSIGN, given.get("_users_id_assign")),
            ("users_id", OBSERVER, given.get("_users_id_observer")),
            ("groups_id", REQUESTER, given.get("_groups_id_requester")),
            ("groups_id", ASSIGN, given.get("_groups_id_assign")),
            ("groups_id", OBSERVER, given.get("_groups_id_observer")),
        ):
            for actor in value if isinstance(value, list) else [value]:
                if actor:
                    link = "Ticket_User" if key == "users_id" else "Group_Ticket"
                    self._insert(
                        link, {"tickets_id": ticket_id, key: int(actor), "type": kind}, user_id=0, keep_unknown=False
                    )

    def _complete_name(self, itemtype: str, fields: dict[str, Any]) -> None:
        parent_key = _TREES[itemtype]
        parent = self.items[itemtype].get(int(fields.get(parent_key) or 0))
        if parent is not None:
            fields["completename"] = f"{parent['completename']} > {fields['name']}"
            fields["level"] = parent["level"] + 1
        else:
            fields["completename"] = fields["name"]

    def _friendly_name(self, itemtype: str, item_id: Any) -> str:
        """Dropdown::getDropdownName for the expand_dropdowns option."""
        if itemtype == "Entity":
            return "Root entity" if item_id == 0 else ""
        if itemtype == "RequestType":
            return _REQUEST_TYPES.get(item_id, "")
        item = self.items.get(itemtype, {}).get(item_id) if isinstance(item_id, int) else None
        if item is None:
            return ""
        if itemtype == "User":
            full = " ".join(p for p in (item.get("realname"), item.get("firstname")) if p)
            return full or item["name"]
        return item.get("completename") or item.get("name") or ""

    # ----------------------------------------------------------------- rights

    def _parent_ticket(self, itemtype: str, item: dict) -> int | None:
        if item.get("itemtype") == "Ticket" and itemtype in ("ITILFollowup", "ITILSolution", "Document_Item"):
            return int(item.get("items_id") or 0)
        if itemtype in ("Ticket_User", "Group_Ticket"):
            return int(item.get("tickets_id") or 0)
        return None

    def _can_read(self, session: _Session, itemtype: str, item_id: int) -> bool:
        if (session.login, itemtype, item_id) in self._denied:
            return False
        item = self.items[itemtype].get(item_id)
        parent = self._parent_ticket(itemtype, item) if item else None
        return parent is None or (session.login, "Ticket", parent) not in self._denied

    def _can_create(self, session: _Session, itemtype: str, data: dict[str, Any]) -> bool:
        """The ``$item->can(-1, CREATE, $input)`` step of API::createItems, for the sub-items of a ticket."""
        if itemtype in ("ITILFollowup", "ITILSolution"):
            ticket = self._readable_ticket(session, data.get("itemtype"), data.get("items_id"))
            if ticket is None:
                return False
            # ITILFollowup::canCreateItem refuses closed tickets unless the profile may reopen them (the lab's
            # profile may not); CommonITILObject::canSolve refuses closed ones.
            return ticket["status"] != CLOSED
        if itemtype in ("Ticket_User", "Group_Ticket"):
            ticket = self._readable_ticket(session, "Ticket", data.get("tickets_id"))
            actor = ("User", data.get("users_id")) if itemtype == "Ticket_User" else ("Group", data.get("groups_id"))
            return ticket is not None and self._get(actor[0], actor[1]) is not None
        if itemtype in _KB_RELATIONS:
            # CommonDBRelation::canCreateItem: both ends must exist (an entity: only the root one, 0, here)
            if itemtype == "KnowbaseItem_KnowbaseItemCategory":
                other = self._get("KnowbaseItemCategory", data.get("knowbaseitemcategories_id")) is not None
            else:
                other = str(data.get("entities_id", "")) == "0"
            return other and self._get("KnowbaseItem", data.get("knowbaseitems_id")) is not None
        if itemtype == "Document_Item":
            target = self._itemtype(str(data.get("itemtype") or ""))
            return (
                self._get("Document", data.get("documents_id")) is not None
                and target is not None
                and self._get(target, data.get("items_id")) is not None
                and self._can_read(session, target, int(data.get("items_id") or 0))
            )
        return True

    def _readable_ticket(self, session: _Session, itemtype: Any, items_id: Any) -> dict | None:
        if not isinstance(itemtype, str) or itemtype.lower() != "ticket":
            return None
        ticket = self._get("Ticket", items_id)
        if ticket is None or not self._can_read(session, "Ticket", ticket["id"]):
            return None
        return ticket

    def _get(self, itemtype: str, item_id: Any) -> dict | None:
        try:
            return self.items[itemtype].get(int(item_id))
        except (TypeError, ValueError):
            return None

    # ----------------------------------------------------------------- CRUD (the commonDBTM branch of call())

    def _crud(
        self, method: str, parts: list[str], params: dict[str, Any], session: _Session, sanitized: bool
    ) -> _Answer:
        itemtype = self._require_itemtype(parts, 0)
        parent_itemtype = None
        if len(parts) > 2:
            parent_itemtype, itemtype = itemtype, self._require_itemtype(parts, 2)
        item_id: int | None = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        additional = int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else None
        parent_id = None
        if additional or parent_itemtype:
            parent_id, item_id = item_id, additional
        if method == "POST":
            response = self._create_items(itemtype, params, session)
            if isinstance(response, dict):
                return self._ok(response, 201, [("Location", f"{self.url}/{itemtype}/{response['id']}")])
            links = ",".join(f"{self.url}/{itemtype}/{r['id']}" for r in response if r.get("id"))
            return self._ok(response, 201, [("Link", links)])
        if method in ("PUT", "PATCH"):
            if "input" not in params:
                raise self._bad_array()
            if isinstance(params["input"], dict) and item_id and "id" not in params["input"]:
                params["input"]["id"] = item_id
            return self._ok(self._update_items(itemtype, params, session))
        if method == "DELETE":
            if item_id is not None:
                params["input"] = {"id": item_id}
            return self._ok(self._delete_items(itemtype, params, session))
        if item_id:  # GET (and any other verb, like GLPI's `default:` case)
            fields = self._get_item(itemtype, item_id, params, session, sanitized)
            if isinstance(fields, _Answer):
                return fields
            headers = []
            if isinstance(fields, dict) and fields.get("date_mod"):
                stamp = time.strptime(str(fields["date_mod"]), "%Y-%m-%d %H:%M:%S")
                headers.append(("Last-Modified", time.strftime("%a, %d %b %Y %H:%M:%S GMT", stamp)))
            return self._ok(fields, headers=headers)
        return self._get_items(itemtype, params, session, sanitized, parent_itemtype, parent_id)

    def _present(self, itemtype: str, fields: dict, params: dict[str, Any], sanitized: bool) -> dict:
        """Undisclosed fields out, dropdowns expanded, HATEOAS links in (API::parseDropdowns and friends)."""
        fields = {k: v for k, v in fields.items() if k not in _UNDISCLOSED.get(itemtype, ())}
        expand = _php_truthy(params.get("expand_dropdowns", False))
        hateoas = _php_truthy(params.get("get_hateoas", True))
        links = []
        original = dict(fields)
        for key, value in original.items():
            target = _fk_target(key, original)
            if target is None or not (value or (key == "entities_id" and isinstance(value, int) and value >= 0)):
                continue
            if hateoas and isinstance(value, int):
                links.append({"rel": target, "href": f"{self.url}/{target}/{value}"})
            if expand:
                fields[key] = self._friendly_name(target, value)
        if hateoas:
            for child in _CHILD_LINKS.get(itemtype, []):
                links.append({"rel": child, "href": f"{self.url}/{itemtype}/{fields['id']}/{child}/"})
            if links:
                fields["links"] = links
        names = _values(params.get("add_keys_names"))
        if names:
            fields["_keys_names"] = {
                name: self._friendly_name(
                    itemtype if name == "id" else _fk_target(name, original) or "", original[name]
                )
                for name in names
                if name in original
            }
        if not sanitized and self.version[:1] == (10,):
            fields = {k: self._unsanitize(v) for k, v in fields.items()}
        return fields

    def _get_item(
        self, itemtype: str, item_id: int, params: dict, session: _Session, sanitized: bool
    ) -> dict | str | _Answer:
        """API::getItem (a Document's file itself with ``alt=media`` or ``Accept: application/octet-stream``)."""
        item = self.items[itemtype].get(item_id)
        if item is None:
            raise _ApiError(404, "ERROR_ITEM_NOT_FOUND", "Item not found", doc=False)
        if not self._can_read(session, itemtype, item_id):
            raise _ApiError(403, "ERROR_RIGHT_MISSING", NO_RIGHT, doc=False)
        if itemtype == "Document" and (params.get("alt") == "media" or params.get(_ACCEPT_MEDIA)):
            return _Answer(200, self.documents.get(item_id, b""), item.get("mime") or "application/octet-stream")
        fields = dict(item)
        if _php_truthy(params.get("with_networkports", False)):
            fields["_networkports"] = self._network_ports(itemtype, item_id)
        if _php_truthy(params.get("get_sha1", False)):
            return hashlib.sha1(_json(self._present(itemtype, fields, params, sanitized))).hexdigest()
        return self._present(itemtype, fields, params, sanitized)

    def _visible(self, itemtype: str, session: _Session, is_deleted: bool) -> list[dict]:
        rows = []
        for item_id, item in self.items[itemtype].items():
            if "is_deleted" in item and bool(item["is_deleted"]) != is_deleted:
                continue
            if self._can_read(session, itemtype, item_id):
                rows.append(item)
        return rows

    @staticmethod
    def _parse_range(value: Any, default: tuple[int, int]) -> tuple[int, int]:
        if value is None:
            return default
        match = re.fullmatch(r"(\d+)-(\d+)", str(value))
        if not match:
            raise _ApiError(400, "ERROR", "range must be in format : [start-end] with integers")
        return int(match.group(1)), int(match.group(2))

    def _get_items(
        self, itemtype: str, params: dict, session: _Session, sanitized: bool, parent: str | None, parent_id: int | None
    ) -> _Answer:
        """API::getItems plus the paging headers of APIRest::call."""
        start, end = self._parse_range(params.get("range"), (0, LIST_LIMIT - 1))
        order = str(params.get("order", "ASC"))
        if order.upper() not in ("ASC", "DESC"):
            raise _ApiError(400, "ERROR", "order must be DESC or ASC")
        sort = str(params.get("sort", "id"))
        if sort != "id" and sort not in _FIELDS[itemtype]:
            raise _ApiError(400, "ERROR", f"sort param is not a field of {_TABLES[itemtype]}")
        rows = self._visible(itemtype, session, _php_truthy(params.get("is_deleted", False)))
        if parent is not None:
            parent_item = self._get(parent, parent_id)
            if parent_item is None:
                raise _ApiError(404, "ERROR_ITEM_NOT_FOUND", "Item not found", doc=False)
            if not self._can_read(session, parent, parent_item["id"]):
                raise _ApiError(403, "ERROR_RIGHT_MISSING", NO_RIGHT, doc=False)
            fk_parent = _TABLES[parent].removeprefix("glpi_") + "_id"
            fk_child = _TABLES[itemtype].removeprefix("glpi_") + "_id"
            if fk_parent in _FIELDS[itemtype]:
                rows = [r for r in rows if r.get(fk_parent) == parent_item["id"]]
            elif "itemtype" in _FIELDS[itemtype] and "items_id" in _FIELDS[itemtype]:
                rows = [r for r in rows if r.get("itemtype") == parent and r.get("items_id") == parent_item["id"]]
            elif fk_child in parent_item:
                rows = [r for r in rows if r["id"] == parent_item[fk_child]]
            else:
                rows = []
        search_text = params.get("searchText")
        if isinstance(search_text, dict):
            for name, value in search_text.items():
                if name == "all":
                    name = "name"
                if name not in _FIELDS[itemtype] and name != "id":
                    raise _ApiError(400, "ERROR_FIELD_NOT_FOUND", f"Field '{name}' not found in {_TABLES[itemtype]}")
                if value:
                    matcher = _text_matcher(str(value))
                    rows = [r for r in rows if matcher(self._unsanitize(r.get(name)))]
        rows.sort(key=lambda r: (r.get(sort) is None, r.get(sort)), reverse=order.upper() == "DESC")
        total = len(rows)
        if start > total:
            raise _ApiError(400, "ERROR_RANGE_EXCEED_TOTAL", f"Provided range exceed total count of data: {total}")
        page = rows[start : end + 1]
        found = []
        for row in page:
            fields = {"id": row["id"]} if _php_truthy(params.get("only_id", False)) else dict(row)
            if _php_truthy(params.get("with_networkports", False)):
                fields["_networkports"] = self._network_ports(itemtype, row["id"])
            found.append(self._present(itemtype, fields, params, sanitized))
        # the headers use [0, list_limit] when no range is given, like APIRest::call
        head_start, head_end = self._parse_range(params.get("range"), (0, LIST_LIMIT))
        head_end = min(head_end, total - 1)
        status = 206 if head_end - head_start + 1 < total else 200
        headers = [("Accept-Range", f"{itemtype} {MAX_INPUT_VARS}")]
        if total > 0:
            headers.append(("Content-Range", f"{head_start}-{head_end}/{total}"))
        return self._ok(found, status, headers)

    def _network_ports(self, itemtype: str, item_id: int) -> dict[str, list[dict]]:
        """API::getNetworkPorts (GLPI 10): ports grouped by instantiation type, each with its first NetworkName."""
        result: dict[str, list[dict]] = {}
        for kind in _PORT_INSTANTIATIONS:
            for port in self.items["NetworkPort"].values():
                if (port["itemtype"], port["items_id"], port["is_deleted"]) != (itemtype, item_id, 0):
                    continue
                if port.get("instantiation_type") != kind:
                    continue
                data: dict[str, Any] = {
                    "netport_id": port["id"],
                    "entities_id": port["entities_id"],
                    "is_recursive": port["is_recursive"],
                    "logical_number": port["logical_number"],
                    "name": port["name"],
                    "mac": port["mac"],
                    "comment": port["comment"],
                    "is_dynamic": port["is_dynamic"],
                    # the NetworkPortEthernet row (netp_subtable.*), simulated
                    "id": port["id"],
                    "networkports_id": port["id"],
                    "items_devicenetworkcards_id": 0,
                    "type": "",
                    "speed": 10,
                    "date_mod": port["date_mod"],
                    "date_creation": port["date_creation"],
                }
                names = [
                    n
                    for n in self.items["NetworkName"].values()
                    if n["itemtype"] == "NetworkPort" and n["items_id"] == port["id"]
                ]
                if names:
                    name = names[0]
                    fqdn = self.items["FQDN"].get(name["fqdns_id"]) or {}
                    addresses = [
                        {"id": str(ip["id"]), "name": ip["name"], "IPNetwork": []}
                        for ip in self.items["IPAddress"].values()
                        if ip["itemtype"] == "NetworkName" and ip["items_id"] == name["id"]
                    ]
                    data["NetworkName"] = {
                        "id": name["id"],
                        "name": name["name"],
                        "fqdns_id": name["fqdns_id"],
                        "FQDN": {"id": name["fqdns_id"], "name": fqdn.get("name"), "fqdn": fqdn.get("fqdn")},
                        "IPAddress": addresses,
                    }
                result.setdefault(kind, []).append(data)
        return result

    def _create_items(self, itemtype: str, params: dict[str, Any], session: _Session) -> Any:
        """API::createItems: one object answers ``{"id", "message"}``, a list answers a list (201/207/400)."""
        data = params.get("input")
        single = isinstance(data, dict)
        if not single and not isinstance(data, list):
            raise self._bad_array()
        inputs = [data] if single else data
        results, failed = [], 0
        uploads = params.get(_UPLOADS, [])
        for index, obj in enumerate(inputs):
            obj = dict(obj) if isinstance(obj, dict) else {}
            new_id, message = self._create_one(itemtype, obj, session, uploads if index == 0 else [])
            if new_id is False:
                failed += 1
            result: dict[str, Any] = {"id": new_id, "message": message}
            upload_result = params.get("upload_result")
            if isinstance(upload_result, list) and index < len(upload_result):
                result["upload_result"] = upload_result[index]
            results.append(result)
        if single:
            if failed:
                raise _ApiError(400, "ERROR_GLPI_ADD", results[0]["message"], doc=False)
            return results[0]
        if failed == len(inputs):
            raise _ApiError(400, "ERROR_GLPI_ADD", results, doc=False)
        if failed:
            raise _ApiError(207, "ERROR_GLPI_PARTIAL_ADD", results, doc=False)
        return results

    def _create_one(self, itemtype: str, obj: dict[str, Any], session: _Session, uploads: list) -> tuple[Any, str]:
        if not self._can_create(session, itemtype, obj):
            return False, NO_RIGHT
        obj.setdefault("entities_id", 0)
        uid = session.user_id
        if itemtype == "ITILFollowup":
            if not obj.get("content"):
                return False, "You can't add a followup without description"
            obj["itemtype"] = "Ticket"
            obj.setdefault("users_id", uid)
            obj["items_id"] = int(obj["items_id"])
        elif itemtype == "ITILSolution":
            ticket = self.items["Ticket"][int(obj["items_id"])]
            if ticket["status"] in (SOLVED, CLOSED):
                space = " " if self.version < (10,) else ""
                return False, f"The item is already solved, did anyone pushed a solution before you{space}?"
            obj["itemtype"] = "Ticket"
            obj["items_id"] = ticket["id"]
            obj["users_id"] = uid
            obj["status"] = 2  # CommonITILValidation::WAITING: the root entity's auto-close delay is not 0
        elif itemtype == "Ticket" and not obj.get("content"):
            return False, "Mandatory fields are not filled. Please correct: Description"
        elif itemtype in ("Document_Item", "Document", "KnowbaseItem"):
            obj.setdefault("users_id", uid)
        if itemtype == "KnowbaseItem" and not obj.get("name"):
            obj["name"] = "New item"  # KnowbaseItem::prepareInputForAdd
        if itemtype == "Document" and uploads:
            filename, mime, payload = uploads[0]
            digest = hashlib.sha1(payload).hexdigest()
            ext = (Path(filename).suffix.lstrip(".") or "bin").upper()
            guessed = mimetypes.guess_type(filename)[0]  # GLPI asks finfo, not the client
            obj.update(
                filename=filename,
                filepath=f"{ext}/{digest}.{ext}",
                sha1sum=digest,
                tag=str(uuid.uuid4()),
                mime=guessed or mime,
            )
            if not obj.get("name"):
                obj["name"] = filename
        new_id = self._insert(itemtype, obj, user_id=uid, keep_unknown=False)
        self._after_add(itemtype, new_id, obj, session)
        if itemtype == "Document" and uploads:
            self.documents[new_id] = uploads[0][2]
            return new_id, "Document move succeeded."
        if itemtype in _RELATIONS:
            return new_id, ""
        name = self._unsanitize(self.items[itemtype][new_id].get("name") or "")
        return new_id, f"Item successfully added: {name or f'{itemtype} - ID {new_id}'}"

    def _after_add(self, itemtype: str, new_id: int, obj: dict[str, Any], session: _Session) -> None:
        """The parts of post_addItem that a client can see."""
        item = self.items[itemtype][new_id]
        now = _now()
        ticket = self._get("Ticket", item.get("tickets_id") or item.get("items_id"))
        if itemtype in ("ITILFollowup", "ITILSolution", "Ticket_User", "Group_Ticket") and ticket is not None:
            ticket["date_mod"] = now
            ticket["users_id_lastupdater"] = session.user_id
        if itemtype == "ITILSolution" and ticket is not None:
            ticket["status"] = SOLVED
            ticket["solvedate"] = now
        assigned = itemtype in ("Ticket_User", "Group_Ticket") and item["type"] == ASSIGN
        if assigned and ticket is not None and ticket["status"] == INCOMING:
            ticket["status"] = ASSIGNED
        if itemtype == "Document":
            target = self._itemtype(str(obj.get("itemtype") or ""))
            items_id = int(obj.get("items_id") or 0)
            if target and items_id > 0:  # Document::post_addItem links the new document
                self._insert(
                    "Document_Item",
                    {"documents_id": new_id, "itemtype": target, "items_id": items_id, "users_id": session.user_id},
                    user_id=0,
                    keep_unknown=False,
                )

    def _update_items(self, itemtype: str, params: dict[str, Any], session: _Session) -> list:
        """API::updateItems, including its quirks: a missing item adds no result row."""
        data = params.get("input")
        single = isinstance(data, dict)
        if not single and not isinstance(data, list):
            raise self._bad_array()
        inputs = [data] if single else data
        results: list[Any] = []
        failed = 0
        for obj in inputs:
            if not isinstance(obj, dict) or "id" not in obj:
                results.append([])
                continue
            item_id = int(obj["id"])
            item = self.items[itemtype].get(item_id)
            if item is None:
                failed += 1
                continue  # GLPI `continue`s before appending its "Item not found" row
            if not self._can_read(session, itemtype, item_id):
                failed += 1
                results.append({str(item_id): False, "message": NO_RIGHT})
                continue
            self._apply_update(itemtype, item, obj, session)
            results.append({str(item_id): True, "message": ""})
        if single:
            if failed:
                raise _ApiError(400, "ERROR_GLPI_UPDATE", results[0]["message"] if results else None, doc=False)
            return results
        if failed == len(inputs):
            raise _ApiError(400, "ERROR_GLPI_UPDATE", results, doc=False)
        if failed:
            raise _ApiError(207, "ERROR_GLPI_PARTIAL_UPDATE", results, doc=False)
        return results

    def _apply_update(self, itemtype: str, item: dict, obj: dict[str, Any], session: _Session) -> None:
        now = _now()
        if itemtype == "KnowbaseItem" and "name" in obj and not obj["name"]:
            obj = {**obj, "name": "New item"}  # KnowbaseItem::prepareInputForUpdate
        for key, value in obj.items():
            if key != "id" and not key.startswith("_") and key in _FIELDS[itemtype]:
                item[key] = self._sanitize(value)
        if "date_mod" in item:
            item["date_mod"] = now
        if itemtype == "Ticket":
            item["users_id_lastupdater"] = session.user_id
            item["status"] = int(item["status"])
            if item["status"] >= SOLVED and not item["solvedate"]:
                item["solvedate"] = now
            if item["status"] == CLOSED and not item["closedate"]:
                item["closedate"] = now
            if item["status"] < SOLVED:
                item["solvedate"] = item["closedate"] = None
        if itemtype in _TREES and "name" in obj:
            self._complete_name(itemtype, item)

    def _delete_items(self, itemtype: str, params: dict[str, Any], session: _Session) -> list:
        """API::deleteItems: to the trash bin when the type has one, unless force_purge."""
        data = params.get("input")
        single = isinstance(data, dict)
        if not single and not isinstance(data, list):
            raise self._bad_array()
        inputs = [data] if single else data
        purge = _php_truthy(params.get("force_purge", False))
        results, failed = [], 0
        for obj in inputs:
            if not isinstance(obj, dict) or "id" not in obj:
                continue
            item_id = int(obj["id"])
            item = self.items[itemtype].get(item_id)
            if item is None:
                failed += 1
                results.append({str(item_id): False, "message": "Item not found"})
            elif not self._can_read(session, itemtype, item_id):
                failed += 1
                results.append({str(item_id): False, "message": NO_RIGHT})
            else:
                if "is_deleted" in item and not purge:
                    item["is_deleted"] = 1
                else:
                    del self.items[itemtype][item_id]
                    if itemtype == "KnowbaseItem":  # KnowbaseItem::cleanDBonPurge
                        for relation in _KB_RELATIONS:
                            rows = self.items[relation]
                            for gone in [k for k, r in rows.items() if r["knowbaseitems_id"] == item_id]:
                                del rows[gone]
                results.append({str(item_id): True, "message": ""})
        if single:
            if failed:
                raise _ApiError(400, "ERROR_GLPI_DELETE", results[0]["message"], doc=False)
            return results
        if failed == len(inputs):
            raise _ApiError(400, "ERROR_GLPI_DELETE", results, doc=False)
        if failed:
            raise _ApiError(207, "ERROR_GLPI_PARTIAL_DELETE", results, doc=False)
        return results

    # ----------------------------------------------------------------- search engine

    def _options(self, itemtype: str) -> dict[int, _Option]:
        """The search options the stand-in knows (ids as in GLPI's rawSearchOptions)."""
        table = _TABLES[itemtype]

        def col(name: str, label: str, datatype: str = "string") -> _Option:
            return _Option(label, table, name, lambda lab, item: item.get(name), None, datatype)

        def dropdown(fk: str, target: str, label: str, shown: str = "completename") -> _Option:
            return _Option(
                label,
                _TABLES.get(target, "glpi_" + fk.removesuffix("_id")),
                shown,
                lambda lab, item: lab._friendly_name(target, item.get(fk)) or None,
                lambda lab, item: item.get(fk),
                "dropdown",
            )

        options: dict[int, _Option] = {2: col("id", "ID", "number")}
        if "name" in _FIELDS[itemtype]:
            options[1] = _Option("Name", table, "name", lambda lab, item: item.get("name"), None, "itemlink")
        options[80] = _Option(
            "Entity",
            "glpi_entities",
            "completename",
            lambda lab, item: "Root entity",
            lambda lab, item: item.get("entities_id", 0),
            "dropdown",
        )
        if itemtype in _TREES:
            options[1] = _Option(
                "Complete name", table, "completename", lambda lab, item: item.get("completename"), None, "itemlink"
            )
            options.update({14: col("name", "Name"), 16: col("comment", "Comments", "text")})
        elif itemtype == "User":
            # Search::addWhere: equals/notequals on glpi_users.name compares glpi_users.id
            options[1] = _Option(
                "Login", table, "name", lambda lab, item: item.get("name"), lambda lab, item: item["id"], "itemlink"
            )
            options.update(
                {
                    5: col("email", "Email"),
                    6: col("phone", "Phone"),
                    8: col("is_active", "Active", "bool"),
                    9: col("firstname", "First name"),
                    34: col("realname", "Surname"),
                    13: _Option("Groups", "glpi_groups", "completename", lambda lab, item: None),
                }
            )
        elif itemtype == "Ticket":
            options.update(
                {
                    3: col("priority", "Priority", "number"),
                    10: col("urgency", "Urgency", "number"),
                    11: col("impact", "Impact", "number"),
                    12: col("status", "Status", "specific"),
                    14: col("type", "Type", "number"),
                    15: col("date", "Opening date", "datetime"),
                    16: col("closedate", "Closing date", "datetime"),
                    17: col("solvedate", "Resolution date", "datetime"),
                    19: col("date_mod", "Last update", "datetime"),
                    21: col("content", "Description", "text"),
                    7: dropdown("itilcategories_id", "ITILCategory", "Category"),
                    4: self._actor_option("Ticket_User", "users_id", REQUESTER, "Requester"),
                    5: self._actor_option("Ticket_User", "users_id", ASSIGN, "Technician"),
                    66: self._actor_option("Ticket_User", "users_id", OBSERVER, "Watcher"),
                    71: self._actor_option("Group_Ticket", "groups_id", REQUESTER, "Requester group"),
                    8: self._actor_option("Group_Ticket", "groups_id", ASSIGN, "Technician group"),
                }
            )
        elif itemtype == "Computer":
            options.update(
                {
                    5: col("serial", "Serial number"),
                    6: col("otherserial", "Inventory number"),
                    16: col("comment", "Comments", "text"),
                    19: col("date_mod", "Last update", "datetime"),
                    70: dropdown("users_id", "User", "User", "name"),
                    21: _Option(
                        "MAC address", "glpi_networkports", "mac", lambda lab, item: lab._port_values(item, "mac")
                    ),
                    126: _Option("IP", "glpi_ipaddresses", "name", lambda lab, item: lab._port_values(item, "ip")),
                }
            )
        elif itemtype == "KnowbaseItem":  # KnowbaseItem::rawSearchOptions
            options[1] = _Option("Subject", table, "name", lambda lab, item: item.get("name"), None, "itemlink")
            options.update(
                {
                    7: col("answer", "Content", "text"),
                    8: col("is_faq", "FAQ item", "bool"),
                    79: _Option(
                        "Category",
                        "glpi_knowbaseitemcategories",
                        "completename",
                        lambda lab, item: [lab._friendly_name("KnowbaseItemCategory", i) for i in lab._kb_links(item)],
                        lambda lab, item: lab._kb_links(item),
                        "dropdown",
                    ),
                }
            )
        elif itemtype in ("ITILFollowup", "ITILSolution"):
            options[1] = col("content", "Description", "text")
        elif itemtype == "Document":
            options.update({3: col("filename", "File"), 4: col("link", "Web link"), 5: col("mime", "MIME type")})
        return options

    def _kb_links(self, item: dict) -> list[int]:
        """The categories of a KnowbaseItem (its KnowbaseItem_KnowbaseItemCategory rows)."""
        rows = self.items["KnowbaseItem_KnowbaseItemCategory"].values()
        return [r["knowbaseitemcategories_id"] for r in rows if r["knowbaseitems_id"] == item["id"]]

    def _actor_option(self, link: str, fk: str, kind: int, label: str) -> _Option:
        target = "User" if fk == "users_id" else "Group"

        def ids(lab: GlpiStandIn, item: dict) -> list[int]:
            return [r[fk] for r in lab.items[link].values() if r["tickets_id"] == item["id"] and r["type"] == kind]

        def shown(lab: GlpiStandIn, item: dict) -> list[str]:
            if target == "User":
                return [lab.items["User"].get(i, {}).get("name", "") for i in ids(lab, item)]
            return [lab._friendly_name("Group", i) for i in ids(lab, item)]

        return _Option(label, _TABLES[target], "name" if target == "User" else "completename", shown, ids, "dropdown")

    def _port_values(self, computer: dict, what: str) -> list[str]:
        ports = [
            p
            for p in self.items["NetworkPort"].values()
            if p["itemtype"] == "Computer" and p["items_id"] == computer["id"] and not p["is_deleted"]
        ]
        if what == "mac":
            return [p["mac"] for p in ports if p["mac"]]
        names = {
            n["id"]
            for n in self.items["NetworkName"].values()
            if n["itemtype"] == "NetworkPort" and n["items_id"] in {p["id"] for p in ports}
        }
        return [
            ip["name"]
            for ip in self.items["IPAddress"].values()
            if ip["itemtype"] == "NetworkName" and ip["items_id"] in names
        ]

    def _list_search_options(self, itemtype: str) -> dict[str, Any]:
        result: dict[str, Any] = {"common": "Characteristics"}
        for option_id, option in sorted(self._options(itemtype).items()):
            result[str(option_id)] = {
                "name": option.name,
                "table": option.table,
                "field": option.field,
                "datatype": option.datatype,
                "nosearch": False,
                "nodisplay": False,
                "available_searchtypes": ["contains", "notcontains", "equals", "notequals"],
                "uid": f"{itemtype}.{option.field}",
            }
        return result

    def _search(self, itemtype: str, params: dict[str, Any], session: _Session) -> _Answer:
        """API::searchItems over Search::getDatas: rows keyed by search-option id, 206 when paged."""
        options = self._options(itemtype)
        criteria = [c for c in _values(params.get("criteria")) if isinstance(c, dict)]
        self._check_criteria(criteria, options)
        forced = [int(v) for v in _values(params.get("forcedisplay")) if str(v).strip().lstrip("-").isdigit()]
        start, end = self._parse_range(params.get("range"), (0, LIST_LIMIT - 1))
        rows = [
            r
            for r in self._visible(itemtype, session, _php_truthy(params.get("is_deleted", False)))
            if self._matches(r, criteria, options)
        ]
        sort_id = int(params["sort"]) if str(params.get("sort", "")).isdigit() else 1
        order = "DESC" if str(params.get("order", "ASC")).upper() == "DESC" else "ASC"
        sorter = options.get(sort_id, options[2])
        rows.sort(key=lambda r: (str(sorter.show(self, r) or "").lower(), r["id"]), reverse=order == "DESC")
        total = len(rows)
        if start > total:
            raise _ApiError(400, "ERROR_RANGE_EXCEED_TOTAL", f"Provided range exceed total count of data: {total}")
        page = rows[start : end + 1]
        end = min(end, total - 1)
        columns: list[int] = [1] if 1 in options else []  # Search::addDefaultToView (single entity: no 80)
        for option_id in [*forced, *self._criteria_fields(criteria)]:
            if option_id in options and option_id not in columns:
                columns.append(option_id)
        result: dict[str, Any] = {"totalcount": total, "count": len(page)}
        if self.version < (10,):
            result.update(sort=sort_id, order=order)
        else:
            result.update(sort=[sort_id], order=[order])
        if page:
            data = []
            for row in page:
                line = {}
                for option_id in columns:
                    value = options[option_id].show(self, row)
                    if isinstance(value, list):
                        value = None if not value else value[0] if len(value) == 1 else value
                    line[str(option_id)] = value
                data.append(line)
            if _php_truthy(params.get("withindexes", False)):
                result["data"] = {str(row["id"]): line for row, line in zip(page, data, strict=True)}
            else:
                result["data"] = data
        result["content-range"] = f"{start}-{end}/{total}"
        headers = [("Accept-Range", f"{itemtype} {MAX_INPUT_VARS}")]
        if total > 0:
            headers.append(("Content-Range", result["content-range"]))
        return self._ok(result, 200 if len(page) >= total else 206, headers)

    def _check_criteria(self, criteria: list[dict], options: dict[int, _Option]) -> None:
        for criterion in criteria:
            if "criteria" in criterion:
                self._check_criteria([c for c in _values(criterion["criteria"]) if isinstance(c, dict)], options)
                continue
            if not all(k in criterion for k in ("field", "searchtype", "value")):
                raise _ApiError(400, "ERROR", "Malformed search criteria")
            if not str(criterion["field"]).isdigit() or int(criterion["field"]) not in options:
                raise _ApiError(400, "ERROR", "Bad field ID in search criteria")

    def _criteria_fields(self, criteria: list[dict]) -> Iterable[int]:
        for criterion in criteria:
            if "criteria" in criterion:
                yield from self._criteria_fields([c for c in _values(criterion["criteria"]) if isinstance(c, dict)])
            elif str(criterion.get("field", "")).isdigit() and not _php_truthy(criterion.get("meta", False)):
                yield int(criterion["field"])

    def _matches(self, row: dict, criteria: list[dict], options: dict[int, _Option]) -> bool:
        """Evaluate criteria left to right with AND binding tighter than OR, like the SQL GLPI builds."""
        groups: list[list[bool]] = [[]]
        for index, criterion in enumerate(criteria):
            link = str(criterion.get("link", "AND")).upper() if index else "AND"
            if "criteria" in criterion:
                sub = [c for c in _values(criterion["criteria"]) if isinstance(c, dict)]
                value = self._matches(row, sub, options)
            elif str(criterion.get("value", "")) == "":
                value = True  # empty values are ignored by the search engine
            else:
                value = self._criterion(row, criterion, options[int(criterion["field"])])
            if link.endswith("NOT"):
                value = not value
            if link.startswith("OR"):
                groups.append([value])
            else:
                groups[-1].append(value)
        return any(all(group) for group in groups)

    def _criterion(self, row: dict, criterion: dict, option: _Option) -> bool:
        searchtype = str(criterion.get("searchtype", "contains"))
        value = str(criterion.get("value"))
        if option.field == "status" and option.table == "glpi_tickets" and searchtype in ("equals", "notequals"):
            sets = {
                "notold": {1, 2, 3, 4},
                "old": {5, 6},
                "notclosed": {1, 2, 3, 4, 5},
                "process": {2, 3},
                "all": {1, 2, 3, 4, 5, 6},
            }
            wanted = sets.get(value, {int(value)} if value.isdigit() else set())
            return (row["status"] in wanted) == (searchtype == "equals")
        if searchtype in ("equals", "notequals", "under", "notunder"):
            keys = option.key(self, row) if option.key else option.show(self, row)
            keys = keys if isinstance(keys, list) else [keys]
            hit = any(str(k).lower() == value.lower() for k in keys if k is not None)
            return hit == (searchtype in ("equals", "under"))
        if searchtype in ("lessthan", "morethan"):
            shown = option.show(self, row)
            try:
                left, right = float(shown), float(value)
            except (TypeError, ValueError):
                left, right = str(shown or ""), value  # type: ignore[assignment]
            return left < right if searchtype == "lessthan" else left > right
        matcher = _text_matcher(self._unsanitize(value))
        shown = option.show(self, row)
        values = shown if isinstance(shown, list) else [shown]
        hit = any(matcher(self._unsanitize(v)) for v in values) if values else matcher(None)
        return hit != (searchtype == "notcontains")


# --------------------------------------------------------------------------- HTTP side


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], lab: GlpiStandIn, family: socket.AddressFamily) -> None:
        self.address_family = family
        self.lab = lab
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup; loopback needs none.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.lab.host, self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("GLPI stand-in connection from %s failed", client_address, exc_info=True)


class _Handler(LoopbackHandler):
    server_version = "Apache"  # what a GLPI behind Apache shows; the banner says what this really is
    timeout = IDLE_TIMEOUT_S
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        # The request line may carry ?user_token=…&password=…: log the path only.
        shown = [str(a).split("?", 1)[0] if isinstance(a, str) else a for a in args]
        log.debug("glpi-lab %s: " + format, self.client_address[0], *shown)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def do_OPTIONS(self) -> None:
        self._read_body()
        self._send(
            _Answer(
                200,
                b"",
                headers=[
                    ("Access-Control-Allow-Methods", "PUT, GET, POST, DELETE, OPTIONS"),
                    (
                        "Access-Control-Allow-Headers",
                        "origin, content-type, accept, session-token, authorization, app-token",
                    ),
                ],
            )
        )

    def _dispatch(self) -> None:
        body = self._read_body()
        if body is None:
            return
        answer = self.server.lab._serve(
            self.command, self.path, dict(self.headers.items()), body, self.client_address[0]
        )
        if answer is None:  # drop_after_commit: the work is done, the client never hears of it
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.request.shutdown(socket.SHUT_RDWR)
            return
        self._send(answer)

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self._send(_Answer(413 if length > 0 else 400, b"", "text/plain"), close=True)
            return None
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            return None
        return body

    def _send(self, answer: _Answer, *, close: bool = False) -> None:
        self.send_response(answer.status)
        for name, value in answer.headers:
            self.send_header(name, value)
        if answer.body or answer.status not in (204, 301):
            self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if answer.body and self.command != "HEAD":
            self.wfile.write(answer.body)

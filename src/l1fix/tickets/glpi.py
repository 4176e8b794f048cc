"""GLPI over its legacy REST API (apirest.php of GLPI 9.5, 10 and 11), with requests.

One client holds one GLPI session: `initSession` with the App-Token and a user token (or
login/password), `Session-Token` on every later call, `killSession` at the end. An expired
session is opened again once. When the web server strips the Authorization header (Apache
with PHP-FPM), the credentials go in the query string instead, as GLPI documents.

Safe by default: TLS validated (custom CA bundle possible), a timeout on every call, no
redirect ever followed, no token or password in any message or log line.
"""

from __future__ import annotations

import base64
import difflib
import html
import ipaddress
import json
import logging
import mimetypes
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote_plus, urljoin, urlsplit

import requests
import urllib3

from l1fix.errors import AuthRefused, BadInput, L1fixError, Timeout, TlsFailure, Unreachable
from l1fix.secrets import Secret, redact
from l1fix.tickets.base import FollowupView, TicketError, TicketSystem, TicketView, check_marker

log = logging.getLogger(__name__)

# GLPI constants (CommonITILObject, Ticket, CommonITILActor).
STATUS_NAMES = {
    1: "new",
    2: "processing (assigned)",
    3: "processing (planned)",
    4: "pending",
    5: "solved",
    6: "closed",
}
CLOSED = 6
TICKET_TYPES = {"incident": 1, "request": 2}
REQUESTER, ASSIGNED = 1, 2
# Search option ids shared by User and Computer: 1 is the name (login), 2 the id.
NAME_FIELD, ID_FIELD = 1, 2
KB_ANSWER_FIELD = 7  # KnowbaseItem::rawSearchOptions: 7 is the content (answer)
PAGE = 1000  # rows asked per page of a list
LOCAL_PORT = "NetworkPortLocal"  # the loopback interface an inventory agent reports
Files = list[tuple[str, tuple[str | None, Any, str]]] | None  # multipart parts for requests
VERBS = {"GET": "read", "POST": "add", "PUT": "update", "DELETE": "delete"}
_DOC_SUFFIX = re.compile(r";[^;]*#ERROR\w*\s*$")  # "; view documentation in your browser at …/#ERROR_X"


class _RedactLogs(logging.Filter):
    """urllib3 logs request URLs at DEBUG; with the query-string fallback they hold the token."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_RedactLogs())


@dataclass(frozen=True)
class GlpiSettings:
    """How to reach GLPI's REST API and log in (a user token, or login and password)."""

    url: str  # https://glpi.example.com/apirest.php
    app_token: Secret | None = None
    user_token: Secret | None = None
    login: str | None = None
    password: Secret | None = None
    ca_bundle: Path | None = None  # custom CA; TLS validation always on unless verify=False
    verify: bool = True
    timeout_s: float = 15.0


@dataclass(frozen=True)
class KbArticle:
    """A knowledge base article to publish; `marker` finds it again, `revision` tells whether it changed."""

    name: str
    answer_html: str
    marker: str  # letters, digits, dashes; written in answer_html
    revision: str  # likewise, changes with the content
    is_faq: bool = False
    category: str | None = None  # KnowbaseItemCategory, by complete name or name
    entity_id: int = 0  # the target: who may read it (0, the root entity)
    recursive: bool = True


@dataclass(frozen=True)
class KbOutcome:
    id: int
    action: str  # created, updated, unchanged
    duplicates: list[int]  # other articles holding the same marker, left alone
    entities: list[int]  # the entities the article is published to


class GlpiClient(TicketSystem):
    """GLPI as l1fix's ticket system. A context manager: the session is killed on exit."""

    def __init__(self, settings: GlpiSettings) -> None:
        parts = urlsplit(settings.url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise BadInput(f"glpi.url must be an http(s) URL of apirest.php, not {settings.url!r}")
        if not settings.user_token and not (settings.login and settings.password):
            raise BadInput(
                "no GLPI credentials configured", hint="set glpi.user_token, or glpi.login and glpi.password"
            )
        self.settings = settings
        self._base = settings.url.rstrip("/")
        self._where = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        self._verify: bool | str = (
            str(settings.ca_bundle) if settings.ca_bundle and settings.verify else settings.verify
        )
        self._http = requests.Session()
        self._session_token: Secret | None = None
        self._credentials_in_query = False
        self._logins: dict[int, str] = {}
        self._groups: dict[int, str] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close_session()

    # -- the TicketSystem contract --------------------------------------------------------

    def add_followup(self, ticket_id: int, content_html: str, *, private: bool) -> int:
        fields = {"itemtype": "Ticket", "items_id": ticket_id, "content": content_html, "is_private": int(private)}
        return self._add_to_ticket("ITILFollowup", ticket_id, what=f"a followup to ticket {ticket_id}", fields=fields)

    def followup_ids_containing(self, ticket_id: int, marker: str) -> list[int]:
        check_marker(marker)  # so it reads the same in GLPI's HTML-encoded content and in raw HTML
        rows = self._all(f"Ticket/{ticket_id}/ITILFollowup", what=f"ticket {ticket_id}")
        return [int(row["id"]) for row in rows if marker in (row.get("content") or "")]

    def attach_document(self, ticket_id: int, filename: str, data: bytes) -> int:
        if not filename or "/" in filename or "\\" in filename:
            raise BadInput(f"document name {filename!r} must be a plain file name")
        # "Upload a document file": the input goes in an uploadManifest part; itemtype/items_id link it.
        manifest = {"input": {"name": filename, "_filename": [filename], "itemtype": "Ticket", "items_id": ticket_id}}
        mime = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        files = [
            ("uploadManifest", (None, json.dumps(manifest), "application/json")),
            ("filename[0]", (filename, data, mime)),
        ]
        what = f"document {filename} to ticket {ticket_id}"
        # Check the ticket first: GLPI would store the document even when the link to the ticket fails.
        self._call("GET", f"Ticket/{ticket_id}", what=f"ticket {ticket_id}")
        return _new_id(self._call("POST", "Document", what=what, files=files), what)

    def document_ids_named(self, ticket_id: int, filename: str) -> list[int]:
        what = f"ticket {ticket_id}"
        links = self._all(f"Ticket/{ticket_id}/Document_Item", what=what)
        found = []
        for link in links:
            document = self._call("GET", f"Document/{int(link['documents_id'])}", what=f"documents of {what}")
            if filename in (document.get("filename"), document.get("name")):
                found.append(int(document["id"]))
        return found

    def get_ticket(self, ticket_id: int) -> TicketView:
        what = f"ticket {ticket_id}"
        ticket = self._call("GET", f"Ticket/{ticket_id}", what=what)
        users = self._all(f"Ticket/{ticket_id}/Ticket_User", what=what)
        groups = self._all(f"Ticket/{ticket_id}/Group_Ticket", what=what)
        followups = self._all(f"Ticket/{ticket_id}/ITILFollowup", what=what)
        status = int(ticket.get("status") or 0)
        return TicketView(
            id=ticket_id,
            title=_text(ticket.get("name")),
            status=status,
            status_name=STATUS_NAMES.get(status, f"status {status}"),
            requesters=[self._login_of(int(u["users_id"])) for u in users if int(u["type"]) == REQUESTER],
            assigned_users=[self._login_of(int(u["users_id"])) for u in users if int(u["type"]) == ASSIGNED],
            assigned_groups=[self._group_of(int(g["groups_id"])) for g in groups if int(g["type"]) == ASSIGNED],
            followups=[
                FollowupView(
                    id=int(f["id"]),
                    date=str(f.get("date") or ""),
                    author=self._login_of(int(f.get("users_id") or 0)),
                    private=bool(int(f.get("is_private") or 0)),
                    content_text=html_to_text(f.get("content") or ""),
                )
                for f in followups
            ],
        )

    def create_ticket(
        self,
        *,
        title: str,
        description: str,
        requester: str,
        category: str | None,
        urgency: int,
        type_: str,
        assign_user: str | None,
    ) -> int:
        if type_ not in TICKET_TYPES:
            raise BadInput(f"ticket type must be {' or '.join(TICKET_TYPES)}, not {type_!r}")
        if urgency not in range(1, 6):
            raise BadInput(f"urgency must be 1 (very low) to 5 (very high), not {urgency}")
        fields: dict[str, Any] = {
            "name": title,
            "content": text_to_html(description),
            "type": TICKET_TYPES[type_],
            "urgency": urgency,
            "_users_id_requester": self._user_id(requester),
        }
        if category:
            fields["itilcategories_id"] = self._dropdown_id("ITILCategory", category, "category")
        if assign_user:
            fields["_users_id_assign"] = self._user_id(assign_user)
        return _new_id(self._call("POST", "Ticket", what="the ticket", payload={"input": fields}), "the ticket")

    def escalate(
        self,
        ticket_id: int,
        *,
        to_group: str | None = None,
        to_user: str | None = None,
        remove_assigned_user: str | None = None,
    ) -> None:
        if not (to_group or to_user or remove_assigned_user):
            raise BadInput("escalate needs a group or a user to assign, or a user to remove")
        what = f"ticket {ticket_id}"
        # Read the actors first: a retried escalation adds nothing twice.
        user_links = self._all(f"Ticket/{ticket_id}/Ticket_User", what=what) if to_user or remove_assigned_user else []
        if to_group:
            group_links = self._all(f"Ticket/{ticket_id}/Group_Ticket", what=what)
            group_id = self._dropdown_id("Group", to_group, "group")
            if not _has_link(group_links, "groups_id", group_id):
                fields = {"tickets_id": ticket_id, "groups_id": group_id, "type": ASSIGNED}
                self._add_to_ticket("Group_Ticket", ticket_id, what=f"group {to_group} to {what}", fields=fields)
        if to_user:
            user_id = self._user_id(to_user)
            if not _has_link(user_links, "users_id", user_id):
                fields = {"tickets_id": ticket_id, "users_id": user_id, "type": ASSIGNED}
                self._add_to_ticket("Ticket_User", ticket_id, what=f"technician {to_user} to {what}", fields=fields)
        if remove_assigned_user:
            user_id = self._user_id(remove_assigned_user)
            for link in user_links:
                if int(link["users_id"]) == user_id and int(link["type"]) == ASSIGNED:
                    link_what = f"the assignment of {remove_assigned_user} to {what}"
                    self._call("DELETE", f"Ticket_User/{int(link['id'])}", what=link_what)

    def solve(self, ticket_id: int, solution_html: str) -> int:
        fields = {"itemtype": "Ticket", "items_id": ticket_id, "content": solution_html}
        return self._add_to_ticket("ITILSolution", ticket_id, what=f"a solution to ticket {ticket_id}", fields=fields)

    def close(self, ticket_id: int) -> None:
        what = f"ticket {ticket_id}"
        if int(self._call("GET", f"Ticket/{ticket_id}", what=what).get("status") or 0) == CLOSED:
            return
        self._call("PUT", f"Ticket/{ticket_id}", what=what, payload={"input": {"status": CLOSED}})
        status = int(self._call("GET", f"Ticket/{ticket_id}", what=what).get("status") or 0)
        if status != CLOSED:
            raise TicketError(
                f"GLPI left {what} {STATUS_NAMES.get(status, f'in status {status}')} instead of closing it",
                hint="the account's profile may not close tickets from this status (Setup > Profiles > Life cycles)",
            )

    def find_computer(self, name: str) -> list[str]:
        rows = self._search("Computer", f"^{name}$", what=f"computer {name}")
        ids = [int(row[str(ID_FIELD)]) for row in rows if _text(row.get(str(NAME_FIELD))).lower() == name.lower()]
        addresses: list[str] = []
        for computer_id in ids:
            item = self._call(
                "GET", f"Computer/{computer_id}", what=f"computer {name}", params={"with_networkports": "true"}
            )
            addresses += _addresses(item.get("_networkports"), name)
        return list(dict.fromkeys(sorted(addresses, key=_is_ip)))

    # -- knowledge base (KnowbaseItem) -------------------------------------------------------

    def upsert_kb_article(self, article: KbArticle) -> KbOutcome:
        """Create the article, or update the one holding its marker; then make sure of its category and target.

        GLPI shows an article to nobody but its author and knowledge-base admins until it has a target: this adds
        an Entity_KnowbaseItem for `article.entity_id` (never removes another target). The category is a
        KnowbaseItem_KnowbaseItemCategory link (GLPI 10 and later), added when missing.
        """
        check_marker(article.marker)
        check_marker(article.revision)
        category_id = (
            self._dropdown_id("KnowbaseItemCategory", article.category, "knowledge base category")
            if article.category
            else None
        )
        existing = self._kb_ids_with(article.marker)
        fields = {"name": article.name, "answer": article.answer_html, "is_faq": int(article.is_faq)}
        if not existing:
            what = f"knowledge base article {article.name!r}"
            kb_id = _new_id(self._call("POST", "KnowbaseItem", what=what, payload={"input": fields}), what)
            action = "created"
        else:
            kb_id, answer = existing[0]
            action = "unchanged" if _has_marker(answer, article.revision) else "updated"
            if action == "updated":
                payload = {"input": {"id": kb_id, **fields}}
                self._call("PUT", f"KnowbaseItem/{kb_id}", what=f"knowledge base article {kb_id}", payload=payload)
        targets = self._ensure_kb_link(
            kb_id, "Entity_KnowbaseItem", "entities_id", article.entity_id, {"is_recursive": int(article.recursive)}
        )
        if category_id is not None:
            self._ensure_kb_link(kb_id, "KnowbaseItem_KnowbaseItemCategory", "knowbaseitemcategories_id", category_id)
        return KbOutcome(kb_id, action, [i for i, _ in existing[1:]], targets)

    def kb_url(self, kb_id: int) -> str:
        """The article's page in GLPI's web interface (next to apirest.php)."""
        return f"{self._base.rsplit('/', 1)[0]}/front/knowbaseitem.form.php?id={kb_id}"

    def _kb_ids_with(self, marker: str) -> list[tuple[int, str]]:
        """(id, answer) of the articles whose content holds `marker` as a whole word, lowest id first."""
        params = {
            "criteria[0][field]": KB_ANSWER_FIELD,
            "criteria[0][searchtype]": "contains",
            "criteria[0][value]": marker,
            "forcedisplay[0]": ID_FIELD,
            "range": f"0-{PAGE - 1}",
        }
        answer = self._call("GET", "search/KnowbaseItem", what="the knowledge base", params=params)
        rows = (answer.get("data") or []) if isinstance(answer, dict) else []
        found = []
        for kb_id in sorted({int(row[str(ID_FIELD)]) for row in rows}):
            item = self._call("GET", f"KnowbaseItem/{kb_id}", what=f"knowledge base article {kb_id}")
            content = _text(item.get("answer"))
            if _has_marker(content, marker):  # the search's "contains" also finds longer markers
                found.append((kb_id, content))
        return found

    def _ensure_kb_link(
        self, kb_id: int, itemtype: str, key: str, value: int, extra: dict[str, int] | None = None
    ) -> list[int]:
        """Add the `itemtype` row linking the article to `value` unless it exists; returns every linked value."""
        what = f"the {'targets' if itemtype == 'Entity_KnowbaseItem' else 'categories'} of knowledge base article"
        rows = self._all(f"KnowbaseItem/{kb_id}/{itemtype}", what=f"{what} {kb_id}")
        linked = [int(row[key]) for row in rows if int(row.get("knowbaseitems_id") or 0) == kb_id]
        if value not in linked:
            fields = {"knowbaseitems_id": kb_id, key: value, **(extra or {})}
            _new_id(self._call("POST", itemtype, what=f"{what} {kb_id}", payload={"input": fields}), what)
            linked.append(value)
        return linked

    def close_session(self) -> None:
        token, self._session_token = self._session_token, None
        if token is None:
            return
        try:
            self._send(
                "GET", "killSession", what="logout", headers={**self._app_headers(), "Session-Token": token.reveal()}
            )
        except L1fixError as exc:  # the session expires on its own; this must not hide the real outcome
            log.debug("GLPI killSession failed: %s", exc)

    # -- look-ups ---------------------------------------------------------------------------

    def _user_id(self, login: str) -> int:
        """The id of the GLPI user whose login is `login`, else BadInput with close logins."""
        for row in self._search("User", f"^{login}$", what=f"user {login}"):
            if _text(row.get(str(NAME_FIELD))).lower() == login.lower():
                return int(row[str(ID_FIELD)])
        logins = [_text(row.get(str(NAME_FIELD))) for row in self._search("User", None, what="the user list")]
        raise BadInput(f"no GLPI user with login {login!r}{_close_matches(login, logins)}")

    def _dropdown_id(self, itemtype: str, value: str, label: str) -> int:
        """The id of the ITILCategory/Group whose complete name (or, failing that, name) is `value`."""
        rows = self._all(itemtype, what=f"the {label} list")
        wanted = value.strip().lower()
        for key in ("completename", "name"):
            hits = [row for row in rows if _text(row.get(key)).lower() == wanted]
            if len(hits) == 1:
                return int(hits[0]["id"])
            if hits:
                choices = ", ".join(repr(_text(row.get("completename"))) for row in hits)
                raise BadInput(f"GLPI {label} {value!r} is ambiguous: {choices}")
        names = [_text(row.get("completename") or row.get("name")) for row in rows]
        raise BadInput(f"no GLPI {label} {value!r}{_close_matches(value, names)}")

    def _login_of(self, user_id: int) -> str:
        if user_id <= 0:
            return ""
        if user_id not in self._logins:
            try:
                self._logins[user_id] = _text(self._call("GET", f"User/{user_id}", what=f"user #{user_id}")["name"])
            except (AuthRefused, BadInput):  # a user the account may not read still shows as an author
                self._logins[user_id] = f"#{user_id}"
        return self._logins[user_id]

    def _group_of(self, group_id: int) -> str:
        if group_id not in self._groups:
            group = self._call("GET", f"Group/{group_id}", what=f"group #{group_id}")
            self._groups[group_id] = _text(group.get("completename") or group.get("name"))
        return self._groups[group_id]

    def _search(self, itemtype: str, anchored: str | None, *, what: str) -> list[dict[str, Any]]:
        """`search/itemtype` on the name option (contains, with ^…$ anchors), name and id shown."""
        params: dict[str, Any] = {"forcedisplay[0]": NAME_FIELD, "forcedisplay[1]": ID_FIELD, "range": f"0-{PAGE - 1}"}
        if anchored is not None:
            params |= {
                "criteria[0][field]": NAME_FIELD,
                "criteria[0][searchtype]": "contains",
                "criteria[0][value]": anchored,
            }
        answer = self._call("GET", f"search/{itemtype}", what=what, params=params)
        return list(answer.get("data") or []) if isinstance(answer, dict) else []

    def _all(self, path: str, *, what: str) -> list[dict[str, Any]]:
        """Every row of a list or sub-item list, page by page."""
        rows: list[dict[str, Any]] = []
        while True:
            page = self._call("GET", path, what=what, params={"range": f"{len(rows)}-{len(rows) + PAGE - 1}"})
            if not isinstance(page, list):
                raise TicketError(f"GLPI answered {what} with something else than a list")
            rows += page
            if len(page) < PAGE:
                return rows

    def _add_to_ticket(self, itemtype: str, ticket_id: int, *, what: str, fields: dict[str, Any]) -> int:
        """Add an item that belongs to a ticket; say so when the ticket is missing or closed."""
        try:
            return _new_id(self._call("POST", itemtype, what=what, payload={"input": fields}), what)
        except AuthRefused:
            # GLPI refuses an add to a missing or closed ticket with its "no permission" message.
            ticket = self._call("GET", f"Ticket/{ticket_id}", what=f"ticket {ticket_id}")
            if int(ticket.get("status") or 0) == CLOSED:
                raise TicketError(
                    f"GLPI refused {what}: the ticket is closed", hint="reopen it in GLPI, or use another ticket"
                ) from None
            raise

    # -- HTTP -------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: dict[str, Any] | None = None,
        payload: dict[str, Any] | None = None,
        files: Files = None,
    ) -> Any:
        """One API call in the session; logs in again once if GLPI says the session is invalid."""
        status, body = self._send_in_session(method, path, what=what, params=params, payload=payload, files=files)
        if _error_code(body) == "ERROR_SESSION_TOKEN_INVALID":
            log.info("GLPI session expired: logging in again")
            self._session_token = None
            status, body = self._send_in_session(method, path, what=what, params=params, payload=payload, files=files)
        if status >= 400 or _error_code(body):
            raise self._error(method, status, body, what)
        return body

    def _send_in_session(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        if self._session_token is None:
            self._session_token = self._init_session()
        headers = {**self._app_headers(), "Session-Token": self._session_token.reveal()}
        return self._send(method, path, headers=headers, **kwargs)

    def _init_session(self) -> Secret:
        """initSession with the Authorization header, or in the query when the web server strips that header."""
        s = self.settings
        if s.user_token:
            header = f"user_token {s.user_token.reveal()}"
            query = {"user_token": _for_query(s.user_token)}
        else:
            password = s.password or Secret("")
            header = "Basic " + base64.b64encode(f"{s.login}:{password.reveal()}".encode()).decode("ascii")
            query = {"login": s.login or "", "password": _for_query(password)}
        status, body = 0, None
        if not self._credentials_in_query:
            headers = {**self._app_headers(), "Authorization": header}
            status, body = self._send("GET", "initSession", what="login", headers=headers)
            if _error_code(body) == "ERROR_LOGIN_PARAMETERS_MISSING":
                log.info("the web server in front of GLPI drops the Authorization header: credentials go in the query")
                self._credentials_in_query = True
        if self._credentials_in_query:
            status, body = self._send("GET", "initSession", what="login", headers=self._app_headers(), params=query)
        if status >= 400 or _error_code(body):
            raise self._error("GET", status, body, "login")
        if not isinstance(body, dict) or not body.get("session_token"):
            raise TicketError("GLPI's answer to initSession has no session_token")
        return Secret(str(body["session_token"]))

    def _app_headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.settings.app_token:
            headers["App-Token"] = self.settings.app_token.reveal()
        return headers

    def _send(
        self,
        method: str,
        path: str,
        *,
        what: str,
        headers: dict[str, str],
        params: dict[str, Any] | None = None,
        payload: dict[str, Any] | None = None,
        files: Files = None,
    ) -> tuple[int, Any]:
        """One HTTP exchange: never follows a redirect; returns (status, decoded JSON or None)."""
        if files is None:
            headers = {**headers, "Content-Type": "application/json"}  # GLPI asks for it on every call
        url = f"{self._base}/{path}"
        try:
            response = self._http.request(
                method,
                url,
                headers=headers,
                params=params,
                json=payload,
                files=files,
                timeout=self.settings.timeout_s,
                verify=self._verify,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise self._transport_error(exc, method, what) from None
        log.debug("GLPI %s %s -> %s", method, path, response.status_code)
        if response.is_redirect or 300 <= response.status_code < 400:
            raise self._redirect_error(urljoin(url, response.headers.get("Location", "")), what)
        if not response.content:
            return response.status_code, None
        try:
            return response.status_code, response.json()
        except ValueError:
            raise self._not_json_error(response, what) from None

    # -- errors -----------------------------------------------------------------------------

    def _error(self, method: str, status: int, body: Any, what: str) -> L1fixError:
        """Turn GLPI's ["ERROR_CODE", "message"] (or a bare HTTP status) into a one-line error."""
        code = _error_code(body)
        message = _glpi_message(body)
        s = self.settings
        if code == "ERROR_WRONG_APP_TOKEN_PARAMETER":
            return AuthRefused("GLPI refused the App-Token", hint="check glpi.app_token (GLPI: Setup > General > API)")
        if code == "ERROR_APP_TOKEN_PARAMETERS_MISSING":
            return AuthRefused("GLPI requires an App-Token", hint="set glpi.app_token (GLPI: Setup > General > API)")
        if code == "ERROR_GLPI_LOGIN_USER_TOKEN":
            return AuthRefused(
                "GLPI refused the user token", hint="check glpi.user_token (GLPI: My settings > Remote access keys)"
            )
        if code == "ERROR_GLPI_LOGIN":
            return AuthRefused(
                f"GLPI refused the login of {s.login}: {message}", hint="check glpi.login and glpi.password"
            )
        if code == "ERROR_LOGIN_WITH_CREDENTIALS_DISABLED":
            return AuthRefused("GLPI does not accept login/password on its API", hint="use glpi.user_token instead")
        if code == "ERROR_LOGIN_PARAMETERS_MISSING":
            return AuthRefused("GLPI received no credentials, neither in the Authorization header nor in the query")
        if code == "ERROR_NOT_ALLOWED_IP":
            return AuthRefused(
                f"GLPI's API refuses this address: {message}", hint="GLPI: Setup > General > API clients"
            )
        if code == "ERROR_SESSION_TOKEN_INVALID":
            return AuthRefused("GLPI refused the session again right after a new login")
        if code == "ERROR_RIGHT_MISSING":
            return AuthRefused(
                f"the GLPI account may not {VERBS.get(method, 'use')} {what}",
                hint="ask a GLPI administrator to check the account's profile and entities",
            )
        if code == "ERROR_ITEM_NOT_FOUND":
            return BadInput(f"{what} not found in GLPI")
        if code and code.startswith(("ERROR_GLPI_ADD", "ERROR_GLPI_UPDATE", "ERROR_GLPI_DELETE", "ERROR_GLPI_PARTIAL")):
            line = f"GLPI refused to {VERBS.get(method, 'change')} {what}: {message or 'no reason given'}"
            # GLPI answers a missing right on an add/update/delete with its "no permission" message.
            return AuthRefused(line) if "permission" in message.lower() else TicketError(line)
        if code:
            return TicketError(f"GLPI error {code} on {what}: {message}")
        if status in (401, 403):
            return AuthRefused(f"the web server in front of GLPI answered HTTP {status} on {what}")
        return TicketError(
            f"GLPI answered HTTP {status} on {what}",
            hint="GLPI itself failed: see its files/_log/php-errors.log" if status >= 500 else None,
        )

    def _transport_error(self, exc: requests.RequestException, method: str, what: str) -> L1fixError:
        """Map a requests failure; never quotes it, since its text holds the URL and its query."""
        maybe_applied = (
            "the change may have been applied: look at the ticket before retrying" if method != "GET" else None
        )
        if isinstance(exc, requests.exceptions.SSLError):
            return TlsFailure(
                f"TLS certificate of GLPI at {self._where} could not be validated",
                hint="set glpi.ca_bundle to the CA that signed GLPI's certificate",
            )
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return Timeout(f"no connection to GLPI at {self._where} within {self.settings.timeout_s:g} s ({what})")
        if isinstance(exc, requests.Timeout):
            return Timeout(
                f"GLPI at {self._where} did not answer within {self.settings.timeout_s:g} s ({what})",
                hint=maybe_applied,
            )
        reason = exc.args[0] if exc.args else None
        if isinstance(reason, urllib3.exceptions.MaxRetryError):
            reason = reason.reason
        if isinstance(reason, urllib3.exceptions.NewConnectionError):
            return Unreachable(f"cannot connect to GLPI at {self._where}", hint="is glpi.url right and GLPI up?")
        return Unreachable(f"the connection to GLPI at {self._where} was cut ({what})", hint=maybe_applied)

    def _redirect_error(self, location: str, what: str) -> TicketError:
        parts = urlsplit(location)  # shown without its query: it may repeat the credentials
        target = f"{parts.scheme}://{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "") + parts.path
        upgrade = parts.scheme == "https" and self._base.startswith("http:")
        return TicketError(
            f"GLPI answered {what} with a redirect to {redact(target)}",
            hint="set the https URL in glpi.url in config.toml" if upgrade else "set the final URL in glpi.url",
        )

    @staticmethod
    def _not_json_error(response: requests.Response, what: str) -> TicketError:
        kind = response.headers.get("Content-Type", "no content type").split(";")[0]
        if response.status_code >= 400:
            return TicketError(f"GLPI answered HTTP {response.status_code} ({kind}) on {what}")
        return TicketError(
            f"GLPI answered {what} with {kind} instead of JSON",
            hint="glpi.url must be GLPI's apirest.php; a login page or proxy may be in the way",
        )


# -- helpers ------------------------------------------------------------------------------


def _error_code(body: Any) -> str | None:
    """The code of a GLPI error answer ["ERROR_…", message], else None."""
    if isinstance(body, list) and len(body) == 2 and isinstance(body[0], str) and body[0].startswith("ERROR"):
        return body[0]
    return None


def _glpi_message(body: Any) -> str:
    """GLPI's human message, one line, without its documentation link and any known secret."""
    if not _error_code(body):
        return ""
    raw = body[1]
    message = raw if isinstance(raw, str) else "" if raw is None else json.dumps(raw, ensure_ascii=False)
    return redact(_DOC_SUFFIX.sub("", message)).replace("\n", " ").strip()


def _for_query(secret: Secret) -> str:
    """The value to put in the query string; its URL-encoded form, which logs show, becomes a known secret too."""
    Secret(quote_plus(secret.reveal()))  # creating a Secret registers the value with l1fix.secrets.redact
    return secret.reveal()


def _new_id(body: Any, what: str) -> int:
    if isinstance(body, dict) and isinstance(body.get("id"), int) and body["id"] > 0:
        return body["id"]
    raise TicketError(f"GLPI's answer to adding {what} has no id")


def _has_marker(text: str, marker: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9-]){re.escape(marker)}(?![A-Za-z0-9-])", text) is not None


def _has_link(links: list[dict[str, Any]], key: str, item_id: int) -> bool:
    return any(int(link[key]) == item_id and int(link["type"]) == ASSIGNED for link in links)


def _close_matches(value: str, names: list[str]) -> str:
    by_lower = {name.lower(): name for name in names if name}
    close = difflib.get_close_matches(value.lower(), list(by_lower), n=3, cutoff=0.6)
    return f": did you mean {', '.join(repr(by_lower[c]) for c in close)}?" if close else ""


def _text(value: Any) -> str:
    """A name as GLPI returns it, decoded (GLPI 9.5/10 return stored values HTML-encoded)."""
    return html.unescape(str(value)) if value is not None else ""


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def _addresses(ports: Any, name: str) -> list[str]:
    """FQDNs and IPs from getItem's `_networkports` ({instantiation type: [port, …]})."""
    if isinstance(ports, dict) and "error" in ports:
        raise AuthRefused(
            f"the GLPI account may not read the network ports of computer {name}",
            hint="GLPI shows network ports to profiles that may read network equipment",
        )
    if not isinstance(ports, dict):  # GLPI sends [] for an item without ports
        return []
    found: list[str] = []
    for kind, rows in ports.items():
        if kind == LOCAL_PORT:
            continue
        for port in rows:
            network_name = port.get("NetworkName") or {}
            domain = (network_name.get("FQDN") or {}).get("fqdn")
            if network_name.get("name") and domain:
                found.append(f"{_text(network_name['name'])}.{_text(domain)}")
            for ip in network_name.get("IPAddress") or []:
                address = _text(ip.get("name")).strip()
                if _is_ip(address) and not ipaddress.ip_address(address).is_link_local:
                    found.append(address)
    return found


class _TextOfHtml(HTMLParser):
    BREAKS = {"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "pre", "blockquote"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(content: str) -> str:
    """Plain text of GLPI rich text, raw (GLPI 11) or HTML-encoded (GLPI 9.5/10)."""
    if "<" not in content and "&" in content:
        content = html.unescape(content)
    parser = _TextOfHtml()
    parser.feed(content)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)


def text_to_html(text: str) -> str:
    """Plain text as GLPI rich text: escaped, one paragraph per block, line breaks kept."""
    blocks = [b for b in re.split(r"\n\s*\n", text.strip()) if b.strip()]
    return "".join("<p>" + "<br>".join(html.escape(line) for line in b.splitlines()) + "</p>" for b in blocks)

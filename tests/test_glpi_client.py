"""The GLPI REST client against the lab's GLPI stand-in on loopback (real requests, real HTTP)."""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote_plus

import pytest

from l1fix.errors import AuthRefused, BadInput, L1fixError, Timeout, TlsFailure, Unreachable
from l1fix.lab.glpi import GlpiStandIn
from l1fix.secrets import Secret
from l1fix.tickets.base import TicketError
from l1fix.tickets.glpi import GlpiClient, GlpiSettings, html_to_text

APP_TOKEN = "app-9f3c1e7a5b2d4c6e8a0b"
USER_TOKEN = "usr-4d2b8e6f1a3c5e7b9d0f"
LOGIN, PASSWORD = "tech1", "Tech-Pa55word!"
SECRETS = (APP_TOKEN, USER_TOKEN, PASSWORD, quote_plus(PASSWORD))  # the query string carries the encoded form


@pytest.fixture
def glpi() -> Iterator[GlpiStandIn]:
    lab = GlpiStandIn(app_token=APP_TOKEN, users={LOGIN: PASSWORD}, user_tokens={USER_TOKEN: LOGIN})
    lab.start()
    yield lab
    lab.stop()


def client(lab: GlpiStandIn, **overrides: object) -> GlpiClient:
    settings: dict = {"url": lab.url, "app_token": Secret(APP_TOKEN), "user_token": Secret(USER_TOKEN)}
    settings.update(overrides)
    return GlpiClient(GlpiSettings(**settings))


def ticket(lab: GlpiStandIn, **fields: object) -> int:
    requester = lab.add("User", name="jdupont", realname="Dupont", firstname="Jean")
    return lab.add(
        "Ticket", name="Printer stuck", content="<p>It prints nothing</p>", _users_id_requester=requester, **fields
    )


def calls(lab: GlpiStandIn, path_end: str) -> list[dict]:
    return [r for r in lab.requests_log if r["path"].endswith(path_end)]


def assert_no_secret(exc: BaseException) -> None:
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]  # what --debug shows
    if isinstance(exc, L1fixError):
        texts += [exc.message, exc.hint or "", exc.one_line()]
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


# -- sessions -------------------------------------------------------------------------------


def test_user_token_login_sends_the_documented_headers_and_kills_the_session(glpi):
    ticket_id = ticket(glpi)
    with client(glpi) as c:
        followup_id = c.add_followup(ticket_id, "<p>done</p>", private=True)
    assert glpi.items["ITILFollowup"][followup_id]["is_private"] == 1
    init, post, kill = calls(glpi, "/initSession")[0], calls(glpi, "/ITILFollowup")[0], calls(glpi, "/killSession")[0]
    assert init["headers"]["Authorization"] == f"user_token {USER_TOKEN}"
    assert init["headers"]["App-Token"] == APP_TOKEN
    assert init["query"] == ""
    session = post["headers"]["Session-Token"]
    assert session and "Authorization" not in post["headers"]
    assert kill["headers"]["Session-Token"] == session


def test_login_and_password_use_basic_auth(glpi):
    ticket_id = ticket(glpi)
    with client(glpi, user_token=None, login=LOGIN, password=Secret(PASSWORD)) as c:
        c.add_followup(ticket_id, "<p>done</p>", private=False)
    assert calls(glpi, "/initSession")[0]["headers"]["Authorization"].startswith("Basic ")
    followup = next(iter(glpi.items["ITILFollowup"].values()))
    assert followup["users_id"] == glpi.user_id(LOGIN)


def test_an_expired_session_is_opened_again_once(glpi):
    ticket_id = ticket(glpi)
    with client(glpi) as c:
        c.add_followup(ticket_id, "<p>one</p>", private=True)
        glpi.expire_sessions()
        c.add_followup(ticket_id, "<p>two</p>", private=True)
    assert len(calls(glpi, "/initSession")) == 2
    assert len(glpi.items["ITILFollowup"]) == 2


def test_a_session_refused_again_is_an_auth_error_without_a_login_loop(glpi):
    ticket_id = ticket(glpi)
    c = client(glpi)
    c.get_ticket(ticket_id)
    before = len(glpi.requests_log)
    glpi.fail_next(3, 401)
    with pytest.raises(AuthRefused, match="session"):
        c.get_ticket(ticket_id)
    assert [r["path"].rsplit("/", 1)[-1] for r in glpi.requests_log[before:]] == [str(ticket_id), "initSession"]


@pytest.mark.parametrize(
    "credentials",
    [{}, {"user_token": None, "login": LOGIN, "password": Secret(PASSWORD)}],
    ids=["user-token", "login-password"],
)
def test_stripped_authorization_header_falls_back_to_query_parameters_for_good(glpi, credentials, caplog):
    caplog.set_level(logging.DEBUG)  # urllib3 logs each URL, query included, at DEBUG
    glpi.strip_authorization(True)
    ticket_id = ticket(glpi)
    with client(glpi, **credentials) as c:
        c.add_followup(ticket_id, "<p>one</p>", private=True)
        glpi.expire_sessions()
        c.add_followup(ticket_id, "<p>two</p>", private=True)
    inits = calls(glpi, "/initSession")
    assert [("Authorization" in r["headers"], bool(r["query"])) for r in inits] == [
        (True, False),  # the documented header first; GLPI never saw it
        (False, True),  # then the query string
        (False, True),  # and the query string straight away after the session expired
    ]
    expected = "user_token=" if not credentials else "login=tech1&password="
    assert expected in inits[1]["query"]
    assert len(glpi.items["ITILFollowup"]) == 2
    client_log = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("l1fix.lab"))
    assert f"initSession?{expected}[redacted]" in client_log
    assert not any(secret in client_log for secret in SECRETS)


def test_wrong_app_token_is_refused_with_a_clear_line(glpi):
    with pytest.raises(AuthRefused, match="App-Token") as err:
        client(glpi, app_token=Secret("app-wrong-0000")).get_ticket(1)
    assert "glpi.app_token" in (err.value.hint or "")


@pytest.mark.parametrize(
    ("credentials", "expected"),
    [
        ({"user_token": Secret("usr-wrong-0000")}, "user token"),
        ({"user_token": None, "login": LOGIN, "password": Secret("Wrong-Pa55")}, "login of tech1"),
    ],
    ids=["user-token", "password"],
)
def test_wrong_credentials_are_refused_with_a_clear_line(glpi, credentials, expected):
    with pytest.raises(AuthRefused, match=expected):
        client(glpi, **credentials).get_ticket(1)


def test_an_address_without_api_client_is_refused(glpi):
    glpi.block_ip(True)
    with pytest.raises(AuthRefused, match="refuses this address"):
        client(glpi).get_ticket(1)


def test_settings_without_credentials_or_with_a_bad_url_are_bad_input(glpi):
    with pytest.raises(BadInput, match="no GLPI credentials"):
        client(glpi, user_token=None)
    with pytest.raises(BadInput, match="http"):
        client(glpi, url="glpi.example.com/apirest.php")


# -- errors ---------------------------------------------------------------------------------


def test_missing_right_on_a_ticket(glpi):
    ticket_id = ticket(glpi)
    glpi.deny(LOGIN, "Ticket", ticket_id)
    c = client(glpi)
    with pytest.raises(AuthRefused, match=f"may not read ticket {ticket_id}"):
        c.get_ticket(ticket_id)
    with pytest.raises(AuthRefused):
        c.add_followup(ticket_id, "<p>x</p>", private=True)
    assert glpi.items["ITILFollowup"] == {}


def test_unknown_ticket_is_bad_input(glpi):
    c = client(glpi)
    with pytest.raises(BadInput, match="ticket 999 not found"):
        c.get_ticket(999)
    with pytest.raises(BadInput, match="ticket 999 not found"):  # GLPI itself only says "no permission"
        c.add_followup(999, "<p>x</p>", private=True)
    with pytest.raises(BadInput, match="ticket 999 not found"):
        c.attach_document(999, "output.txt", b"x")
    assert glpi.items["Document"] == {}


def test_a_closed_ticket_takes_no_followup(glpi):
    ticket_id = ticket(glpi, status=6)
    with pytest.raises(TicketError, match="the ticket is closed"):
        client(glpi).add_followup(ticket_id, "<p>x</p>", private=True)


def test_server_error_is_a_ticket_error(glpi):
    ticket_id = ticket(glpi)
    c = client(glpi)
    c.get_ticket(ticket_id)
    glpi.fail_next(1, 500)
    with pytest.raises(TicketError, match="ERROR_SQL") as err:
        c.add_followup(ticket_id, "<p>x</p>", private=True)
    assert "view documentation" not in str(err.value)
    assert glpi.items["ITILFollowup"] == {}


def test_slow_answer_is_a_timeout(glpi):
    glpi.delay(1.0)
    with pytest.raises(Timeout, match="did not answer within 0.3 s"):
        client(glpi, timeout_s=0.3).get_ticket(1)


def test_connection_cut_after_the_post_says_it_may_have_landed(glpi):
    ticket_id = ticket(glpi)
    c = client(glpi)
    c.get_ticket(ticket_id)
    glpi.drop_after_commit(1)
    with pytest.raises(Unreachable, match="cut") as err:
        c.add_followup(ticket_id, "<p>l1fix-run-0a1b2c</p>", private=True)
    assert "may have been applied" in (err.value.hint or "")
    assert c.followup_ids_containing(ticket_id, "l1fix-run-0a1b2c") == list(glpi.items["ITILFollowup"])


def test_nothing_listening_is_unreachable(glpi):
    url = glpi.url
    glpi.stop()
    with pytest.raises(Unreachable, match="cannot connect"):
        client(glpi, url=url).get_ticket(1)


def test_redirect_on_post_is_refused_and_creates_nothing(glpi):
    ticket_id = ticket(glpi)
    c = client(glpi)
    c.get_ticket(ticket_id)
    glpi.redirect_to_https(True)
    before = len(glpi.requests_log)
    with pytest.raises(TicketError, match="redirect to https://127.0.0.1") as err:
        c.add_followup(ticket_id, "<p>x</p>", private=True)
    assert "https URL" in (err.value.hint or "")
    sent = [(r["method"], r["path"].rsplit("/", 1)[-1]) for r in glpi.requests_log[before:]]
    assert sent == [("POST", "ITILFollowup")]  # never replayed as a GET
    assert glpi.items["ITILFollowup"] == {}


class _LoginPage(BaseHTTPRequestHandler):
    """What a single sign-on proxy in front of GLPI answers: an HTML page, 200 OK."""

    def do_GET(self) -> None:
        body = b"<html><body><form>Login</form></body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def login_page() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LoginPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/apirest.php"
    server.shutdown()
    server.server_close()


def test_an_html_answer_is_refused(glpi, login_page):
    with pytest.raises(TicketError, match="text/html instead of JSON") as err:
        client(glpi, url=login_page).get_ticket(1)
    assert "apirest.php" in (err.value.hint or "")


def test_no_token_or_password_in_any_error(glpi, login_page):
    ticket_id = ticket(glpi)
    glpi.strip_authorization(True)  # so the credentials travel in the URL
    seen: list[BaseException] = []

    def collect(call) -> None:
        with pytest.raises(L1fixError) as err:
            call()
        seen.append(err.value)

    token, basic = client(glpi), client(glpi, user_token=None, login=LOGIN, password=Secret(PASSWORD))
    collect(lambda: client(glpi, app_token=Secret("app-wrong-0000")).get_ticket(ticket_id))
    collect(lambda: client(glpi, user_token=Secret("usr-wrong-0000")).get_ticket(ticket_id))
    collect(lambda: client(glpi, login=LOGIN, password=Secret("Wrong-Pa55"), user_token=None).get_ticket(ticket_id))
    for c in (token, basic):  # credentials now go in the query; the next login sends them there at once
        c.get_ticket(ticket_id)
        c.close_session()
    glpi.redirect_to_https(True)
    collect(lambda: token.get_ticket(ticket_id))  # the redirect's Location repeats the query with the user token
    collect(lambda: basic.get_ticket(ticket_id))  # ... and with the password
    assert [r["query"].split("=")[0] for r in glpi.requests_log[-2:]] == ["user_token", "login"]
    glpi.redirect_to_https(False)
    glpi.delay(1.0)
    collect(lambda: client(glpi, timeout_s=0.3).get_ticket(ticket_id))
    glpi.delay(0)
    collect(lambda: client(glpi, url=login_page).get_ticket(ticket_id))
    url = glpi.url
    glpi.stop()
    collect(lambda: client(glpi, url=url).get_ticket(ticket_id))
    assert len(seen) == 8
    for exc in seen:
        assert_no_secret(exc)


# -- followups and documents ----------------------------------------------------------------


@pytest.mark.parametrize("version", ["9.5.13", "10.0.16", "11.0.0"])
def test_followup_marker_is_found_in_every_glpi_storage_form(version):
    with GlpiStandIn(app_token=APP_TOKEN, user_tokens={USER_TOKEN: LOGIN}, glpi_version=version) as lab:
        ticket_id = ticket(lab)
        other = lab.add("ITILFollowup", itemtype="Ticket", items_id=ticket_id, content="<p>by hand</p>")
        with client(lab) as c:
            mine = c.add_followup(ticket_id, "<p>Fixed &amp; checked <small>l1fix-run-7f3a</small></p>", private=True)
            assert c.followup_ids_containing(ticket_id, "l1fix-run-7f3a") == [mine]
            assert c.followup_ids_containing(ticket_id, "l1fix-run-0000") == []
            view = c.get_ticket(ticket_id)
        texts = {f.id: f.content_text for f in view.followups}
        assert texts == {other: "by hand", mine: "Fixed & checked l1fix-run-7f3a"}


def test_a_marker_that_html_encoding_could_change_is_refused(glpi):
    with pytest.raises(BadInput, match="letters, digits and dashes"):
        client(glpi).followup_ids_containing(1, "run <1>")


def test_followups_are_read_page_by_page(glpi, monkeypatch):
    monkeypatch.setattr("l1fix.tickets.glpi.PAGE", 2)
    ticket_id = ticket(glpi)
    for i in range(5):
        glpi.add("ITILFollowup", itemtype="Ticket", items_id=ticket_id, content=f"<p>note {i} l1fix-run-x{i}</p>")
    c = client(glpi)
    assert len(c.followup_ids_containing(ticket_id, "l1fix-run-x4")) == 1
    ranges = [r["query"] for r in calls(glpi, "/ITILFollowup")]
    assert ranges == ["range=0-1", "range=2-3", "range=4-5"]


def test_document_is_uploaded_and_linked_to_the_ticket(glpi):
    ticket_id = ticket(glpi)
    with client(glpi) as c:
        doc_id = c.attach_document(ticket_id, "spooler-output.txt", b"line 1\nline 2\n")
    assert glpi.documents[doc_id] == b"line 1\nline 2\n"
    assert glpi.items["Document"][doc_id]["filename"] == "spooler-output.txt"
    links = [d for d in glpi.items["Document_Item"].values() if d["documents_id"] == doc_id]
    assert [(d["itemtype"], d["items_id"]) for d in links] == [("Ticket", ticket_id)]


# -- tickets --------------------------------------------------------------------------------


def seed_directory(lab: GlpiStandIn) -> dict[str, int]:
    hardware = lab.add("ITILCategory", name="Hardware")
    return {
        "printer": lab.add("ITILCategory", name="Printer", itilcategories_id=hardware),
        "account": lab.add("ITILCategory", name="Account locked"),
        "jdupont": lab.add("User", name="jdupont"),
        "l2": lab.add("Group", name="Level 2"),
        "tech2": lab.add("User", name="tech2"),
    }


def test_create_ticket_with_requester_category_and_technician(glpi):
    ids = seed_directory(glpi)
    with client(glpi) as c:
        ticket_id = c.create_ticket(
            title="Printer stuck on floor 2",
            description="Nothing prints.\nThe queue shows <3 jobs>.",
            requester="JDupont",
            category="hardware > printer",
            urgency=4,
            type_="incident",
            assign_user=LOGIN,
        )
        view = c.get_ticket(ticket_id)
    stored = glpi.items["Ticket"][ticket_id]
    assert (stored["itilcategories_id"], stored["urgency"], stored["type"]) == (ids["printer"], 4, 1)
    assert (view.title, view.status, view.status_name) == ("Printer stuck on floor 2", 2, "processing (assigned)")
    assert (view.requesters, view.assigned_users) == (["jdupont"], [LOGIN])
    description = html_to_text(glpi._unsanitize(stored["content"]))
    assert description == "Nothing prints.\nThe queue shows <3 jobs>."


def test_misspelt_category_names_the_close_match_and_creates_nothing(glpi):
    seed_directory(glpi)
    kwargs = {"title": "t", "description": "d", "requester": "jdupont", "urgency": 3, "type_": "request"}
    with pytest.raises(BadInput, match=r"no GLPI category 'Hardware > Priner': did you mean 'Hardware > Printer'"):
        client(glpi).create_ticket(category="Hardware > Priner", assign_user=None, **kwargs)
    with pytest.raises(BadInput, match=r"no GLPI user with login 'jdupond': did you mean 'jdupont'\?"):
        client(glpi).create_ticket(category=None, assign_user=None, **{**kwargs, "requester": "jdupond"})
    with pytest.raises(BadInput, match="incident or request"):
        client(glpi).create_ticket(category=None, assign_user=None, **{**kwargs, "type_": "problem"})
    assert glpi.items["Ticket"] == {}


def test_escalate_to_group_and_user_removes_the_first_technician(glpi):
    ids = seed_directory(glpi)
    assigned = glpi.user_id(LOGIN)
    ticket_id = glpi.add(
        "Ticket", name="Outlook", content="x", _users_id_requester=ids["jdupont"], _users_id_assign=assigned
    )
    c = client(glpi)
    c.escalate(ticket_id, to_group="Level 2", to_user="tech2", remove_assigned_user=LOGIN)
    c.escalate(ticket_id, to_group="Level 2", to_user="tech2", remove_assigned_user=LOGIN)  # a retry: no change
    view = c.get_ticket(ticket_id)
    assert (view.assigned_groups, view.assigned_users, view.requesters) == (["Level 2"], ["tech2"], ["jdupont"])
    assert len(glpi.items["Group_Ticket"]) == 1
    with pytest.raises(BadInput, match="did you mean 'Level 2'"):
        c.escalate(ticket_id, to_group="Level2")


def test_solve_then_close(glpi):
    ticket_id = ticket(glpi)
    with client(glpi) as c:
        solution_id = c.solve(ticket_id, "<p>Spooler restarted, test page printed.</p>")
        assert c.get_ticket(ticket_id).status_name == "solved"
        with pytest.raises(TicketError, match="already solved"):
            c.solve(ticket_id, "<p>again</p>")
        c.close(ticket_id)
        c.close(ticket_id)  # already closed: nothing to do
        assert c.get_ticket(ticket_id).status == 6
    assert glpi.items["ITILSolution"][solution_id]["items_id"] == ticket_id
    assert [r["method"] for r in calls(glpi, f"/Ticket/{ticket_id}")].count("PUT") == 1


def test_ticket_view_names_authors_and_groups(glpi):
    ids = seed_directory(glpi)
    ticket_id = glpi.add(
        "Ticket",
        name="VPN & Wi-Fi <home>",
        content="x",
        _users_id_requester=ids["jdupont"],
        _groups_id_assign=ids["l2"],
    )
    note = {"content": "<p>Called the user<br>no answer</p>", "date": "2026-01-05 10:00:00", "is_private": 1}
    glpi.add("ITILFollowup", itemtype="Ticket", items_id=ticket_id, users_id=ids["tech2"], **note)
    view = client(glpi).get_ticket(ticket_id)
    assert (view.title, view.assigned_groups) == ("VPN & Wi-Fi <home>", ["Level 2"])
    (followup,) = view.followups
    assert (followup.author, followup.private, followup.date) == ("tech2", True, "2026-01-05 10:00:00")
    assert followup.content_text == "Called the user\nno answer"


# -- inventory ------------------------------------------------------------------------------


def seed_computer(lab: GlpiStandIn, name: str) -> int:
    computer = lab.add("Computer", name=name)
    domain = lab.add("FQDN", name="corp.example", fqdn="corp.example")
    for kind, host, addresses in (
        ("NetworkPortEthernet", name.lower(), ["127.0.42.7", "fe80::1"]),
        ("NetworkPortWifi", None, ["127.0.43.7"]),
        ("NetworkPortLocal", "localhost", ["127.0.0.1"]),
    ):
        port = lab.add("NetworkPort", itemtype="Computer", items_id=computer, instantiation_type=kind, name=kind)
        net_name = lab.add(
            "NetworkName", itemtype="NetworkPort", items_id=port, name=host, fqdns_id=domain if host else 0
        )
        for address in addresses:
            version = 6 if ":" in address else 4
            lab.add("IPAddress", itemtype="NetworkName", items_id=net_name, name=address, version=version)
    return computer


def test_find_computer_returns_fqdns_first_then_ips(glpi):
    seed_computer(glpi, "PC042")
    seed_computer(glpi, "PC0421")  # a longer name that "contains" would also match
    c = client(glpi)
    assert c.find_computer("pc042") == ["pc042.corp.example", "127.0.42.7", "127.0.43.7"]
    assert c.find_computer("PC999") == []
    assert calls(glpi, "/search/Computer")[0]["query"].count("criteria") == 3


# -- TLS ------------------------------------------------------------------------------------


def test_tls_is_validated_against_the_configured_ca(tmp_path: Path):
    with GlpiStandIn(app_token=APP_TOKEN, user_tokens={USER_TOKEN: LOGIN}, tls_cert_dir=tmp_path / "tls") as lab:
        assert lab.url.startswith("https://")
        with pytest.raises(TlsFailure, match="could not be validated"):
            client(lab).get_ticket(1)
        ticket_id = ticket(lab)
        assert client(lab, ca_bundle=lab.ca_path).get_ticket(ticket_id).title == "Printer stuck"

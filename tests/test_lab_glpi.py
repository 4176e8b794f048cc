"""The GLPI stand-in answers like GLPI's legacy REST API (apirest.php), faults included."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from l1fix.lab.glpi import CLOSED, SOLVED, GlpiStandIn

APP = "lab-app-token"
TOKEN = "q56hqkniwot8wntb3z1qarka5atf365taaa2uyjrn"


@pytest.fixture
def glpi() -> Iterator[GlpiStandIn]:
    lab = GlpiStandIn(users={"tech": "s3cret!"}, user_tokens={TOKEN: "tech"})
    lab.add("User", name="jdupont", realname="Dupont", firstname="Jean")
    lab.start()
    try:
        yield lab
    finally:
        lab.stop()


def login(lab: GlpiStandIn) -> dict[str, str]:
    """Headers of a fresh session opened with the user token."""
    answer = requests.get(f"{lab.url}/initSession", headers={"Authorization": f"user_token {TOKEN}", "App-Token": APP})
    assert answer.status_code == 200, answer.text
    return {"Session-Token": answer.json()["session_token"], "App-Token": APP}


def ticket(lab: GlpiStandIn, **fields) -> int:
    return lab.add("Ticket", name="Printer stuck", content="queue blocked", **fields)


def error(answer: requests.Response) -> tuple[int, str, str]:
    code, message = answer.json()
    return answer.status_code, code, message


# --------------------------------------------------------------------------- sessions


def test_init_session_with_user_token_and_full_session(glpi: GlpiStandIn) -> None:
    answer = requests.get(
        f"{glpi.url}/initSession",
        params={"get_full_session": "true"},
        headers={"Authorization": f"user_token {TOKEN}", "App-Token": APP, "Content-Type": "application/json"},
    )
    assert answer.status_code == 200
    body = answer.json()
    assert len(body["session_token"]) >= 26
    assert body["session"]["glpiname"] == "tech"
    assert body["session"]["glpiID"] == glpi.user_id("tech")


def test_init_session_with_basic_login_and_kill(glpi: GlpiStandIn) -> None:
    answer = requests.get(f"{glpi.url}/initSession", auth=("tech", "s3cret!"), headers={"App-Token": APP})
    assert answer.status_code == 200
    headers = {"Session-Token": answer.json()["session_token"], "App-Token": APP}
    assert requests.get(f"{glpi.url}/getFullSession", headers=headers).status_code == 200
    killed = requests.get(f"{glpi.url}/killSession", headers=headers)
    assert (killed.status_code, killed.json()) == (200, True)
    assert error(requests.get(f"{glpi.url}/getFullSession", headers=headers)) == (
        401,
        "ERROR_SESSION_TOKEN_INVALID",
        "session_token seems invalid",
    )


def test_bad_credentials(glpi: GlpiStandIn) -> None:
    wrong_token = requests.get(
        f"{glpi.url}/initSession", headers={"Authorization": "user_token nope", "App-Token": APP}
    )
    assert error(wrong_token) == (401, "ERROR_GLPI_LOGIN_USER_TOKEN", "parameter user_token seems invalid")
    wrong_password = requests.get(f"{glpi.url}/initSession", auth=("tech", "nope"), headers={"App-Token": APP})
    assert error(wrong_password) == (401, "ERROR_GLPI_LOGIN", "Incorrect username or password")


def test_app_token_missing_or_wrong(glpi: GlpiStandIn) -> None:
    missing = requests.get(f"{glpi.url}/initSession", headers={"Authorization": f"user_token {TOKEN}"})
    status, code, message = error(missing)
    assert (status, code) == (400, "ERROR_APP_TOKEN_PARAMETERS_MISSING")
    doc = f"{glpi.url}/#ERROR_APP_TOKEN_PARAMETERS_MISSING"
    assert message == f"missing parameter app_token; view documentation in your browser at {doc}"
    wrong = requests.get(f"{glpi.url}/Ticket/1", headers={"App-Token": "bad", "Session-Token": "x"})
    assert error(wrong)[:2] == (400, "ERROR_WRONG_APP_TOKEN_PARAMETER")
    assert error(wrong)[2].startswith("parameter app_token seems wrong; view documentation")


def test_session_missing_expired_and_idle(glpi: GlpiStandIn) -> None:
    no_session = requests.get(f"{glpi.url}/Ticket", headers={"App-Token": APP})
    assert error(no_session)[:2] == (400, "ERROR_SESSION_TOKEN_MISSING")
    headers = login(glpi)
    assert requests.get(f"{glpi.url}/Ticket", headers=headers).status_code == 200
    glpi.expire_sessions()
    assert error(requests.get(f"{glpi.url}/Ticket", headers=headers))[:2] == (401, "ERROR_SESSION_TOKEN_INVALID")
    glpi.session_ttl_s = 0.2
    headers = login(glpi)
    time.sleep(0.3)
    assert requests.get(f"{glpi.url}/Ticket", headers=headers).status_code == 401


# --------------------------------------------------------------------------- items


def test_add_followup_and_read_it_back_html_encoded(glpi: GlpiStandIn) -> None:
    headers = login(glpi)
    ticket_id = ticket(glpi)
    payload = {"input": {"itemtype": "Ticket", "items_id": ticket_id, "content": "<p>x & y</p>", "is_private": 0}}
    answer = requests.post(f"{glpi.url}/ITILFollowup", json=payload, headers=headers)
    assert answer.status_code == 201
    followup_id = answer.json()["id"]
    assert answer.json() == {"id": followup_id, "message": ""}
    assert answer.headers["Location"] == f"{glpi.url}/ITILFollowup/{followup_id}"
    stored = glpi.items["ITILFollowup"][followup_id]
    assert stored["users_id"] == glpi.user_id("tech") and stored["date"]
    read = requests.get(f"{glpi.url}/ITILFollowup/{followup_id}", headers=headers).json()
    assert read["content"] == "&#60;p&#62;x &#38; y&#60;/p&#62;"  # GLPI 10's Sanitizer
    raw = requests.get(
        f"{glpi.url}/ITILFollowup/{followup_id}", headers={**headers, "X-GLPI-Sanitized-Content": "false"}
    ).json()
    assert raw["content"] == "<p>x & y</p>"


@pytest.mark.parametrize(("version", "expected"), [("9.5.13", "&lt;p&gt;x&lt;/p&gt;"), ("11.0.1", "<p>x</p>")])
def test_content_encoding_follows_the_glpi_version(version: str, expected: str) -> None:
    with GlpiStandIn(user_tokens={TOKEN: "tech"}, glpi_version=version) as lab:
        headers = login(lab)
        ticket_id = ticket(lab)
        created = requests.post(
            f"{lab.url}/ITILFollowup",
            json={"input": {"itemtype": "Ticket", "items_id": ticket_id, "content": "<p>x</p>"}},
            headers=headers,
        )
        read = requests.get(f"{lab.url}/ITILFollowup/{created.json()['id']}", headers=headers)
        assert read.json()["content"] == expected


def test_get_sub_items_and_item_errors(glpi: GlpiStandIn) -> None:
    headers = login(glpi)
    ticket_id = ticket(glpi, _users_id_requester=glpi.user_id("jdupont"))
    other = ticket(glpi)
    for text in ("first", "second"):
        glpi.add("ITILFollowup", itemtype="Ticket", items_id=ticket_id, content=text)
    glpi.add("ITILFollowup", itemtype="Ticket", items_id=other, content="elsewhere")
    answer = requests.get(f"{glpi.url}/Ticket/{ticket_id}/ITILFollowup", headers=headers)
    assert answer.status_code == 200
    assert [f["content"] for f in answer.json()] == ["first", "second"]
    assert answer.headers["Content-Range"] == "0-1/2"
    actors = requests.get(f"{glpi.url}/Ticket/{ticket_id}/Ticket_User", headers=headers).json()
    assert [(a["users_id"], a["type"]) for a in actors] == [(glpi.user_id("jdupont"), 1)]
    assert error(requests.get(f"{glpi.url}/Ticket/999", headers=headers)) == (
        404,
        "ERROR_ITEM_NOT_FOUND",
        "Item not found",
    )
    assert requests.get(f"{glpi.url}/Ticket/999/ITILFollowup", headers=headers).status_code == 404
    unknown = requests.get(f"{glpi.url}/NoSuchType/1", headers=headers)
    assert error(unknown)[:2] == (400, "ERROR_RESOURCE_NOT_FOUND_NOR_COMMONDBTM")


def test_expand_dropdowns_and_hateoas(glpi: GlpiStandIn) -> None:
    headers = login(glpi)
    category = glpi.add("ITILCategory", name="Printing")
    ticket_id = ticket(glpi, itilcategories_id=category, users_id_recipient=glpi.user_id("jdupont"))
    plain = requests.get(f"{glpi.url}/Ticket/{ticket_id}", headers=headers).json()
    assert plain["itilcategories_id"] == category
    assert {"rel": "ITILCategory", "href": f"{glpi.url}/ITILCategory/{category}"} in plain["links"]
    expanded = requests.get(f"{glpi.url}/Ticket/{ticket_id}", params={"expand_dropdowns": "true"}, headers=headers)
    assert expanded.json()["itilcategories_id"] == "Printing"
    assert expanded.json()["users_id_recipient"] == "Dupont Jean"
    assert expanded.json()["entities_id"] == "Root entity"


def test_list_paging_headers(glpi: GlpiStandIn) -> None:
    headers = login(glpi)
    for n in range(120):
        glpi.add("Computer", name=f"PC{n:03d}")
    first = requests.get(f"{glpi.url}/Computer", params={"range": "0-49"}, headers=headers)
    assert first.status_code == 206
    assert first.headers["Content-Range"] == "0-49/120"
    assert first.headers["Accept-Range"] == "Computer 1000"
    assert len(first.json()) == 50
    last = requests.get(f"{glpi.url}/Computer", params={"range": "100-149"}, headers=headers)
    assert (last.status_code, last.headers["Content-Range"], len(last.json())) == (206, "100-119/120", 20)
    whole = requests.get(f"{glpi.url}/Computer", params={"range": "0-199"}, headers=headers)
    assert (whole.status_code, whole.headers["Content-Range"]) == (200, "0-119/120")
    beyond = requests.get(f"{glpi.url}/Computer", params={"range": "200-249"}, headers=headers)
    assert error(beyond)[:2] == (400, "ERROR_RANGE_EXCEED_TOTAL")
    assert error(requests.get(f"{glpi.url}/Computer", params={"range": "x"}, headers=headers))[:2] == (400, "ERROR")


def test_search_user_by_login(glpi: GlpiStandIn) -> None:
    headers = login(glpi)
    query = {
        "criteria[0][field]": "1",
        "criteria[0][searchtype]": "contains",
        "criteria[0][value]": "^jdupont$",
        "forcedisplay[0]": "2",
        "forcedisplay[1]": "34",
    }
    answer = requests.get(f"{glpi.url}/search/User", params=query, headers=headers)
    assert answer.status_code == 200
    body = answer.json()
    assert (body["totalcount"], body["count"]) == (1, 1)
    assert body["data"] == [{"1": "jdupont", "2": glpi.user_id("jdupont"), "34": "Dupont"}]
    assert answer.headers["Content-Range"] == "0-0/1"
    # 'equals' on a User's login compares the id (Search::addWhere), so a login finds nothing
    equals = {**query, "criteria[0][searchtype]": "equals", "criteria[0][value]": "jdupont"}
    none = requests.get(f"{glpi.url}/search/User", params=equals, headers=headers).json()
    assert none["totalcount"] == 0 and "data" not in none
    by_id = {**equals, "criteria[0][value]": str(glpi.user_id("jdupont"))}
    assert requests.get(f"{glpi.url}/search/User", params=by_id, headers=headers).json()["totalcount"] == 1
    bad = requests.get(f"{glpi.url}/search/User", params={"criteria[0][field]": "1"}, headers=headers)
    assert error(bad)[:2] == (400, "ERROR") and error(bad)[2].startswith("Malformed search criteria")


def test_search_categories_and_computers(glpi: GlpiStandIn) -> None:
    headers = login(glpi)
    parent = glpi.add("ITILCategory", name="Hardware")
    glpi.add("ITILCategory", name="Printer", itilcategories_id=parent)
    glpi.add("Group", name="L2 support")
    computer = glpi.add("Computer", name="PC042")
    port = glpi.add("NetworkPort", itemtype="Computer", items_id=computer, name="eth0", mac="00:11:22:33:44:55")
    name = glpi.add("NetworkName", itemtype="NetworkPort", items_id=port, name="pc042")
    glpi.add("IPAddress", itemtype="NetworkName", items_id=name, name="10.1.2.42", version=4)
    category = {"criteria[0][field]": "1", "criteria[0][searchtype]": "contains", "criteria[0][value]": "printer"}
    found = requests.get(f"{glpi.url}/search/ITILCategory", params=category, headers=headers).json()
    assert found["data"] == [{"1": "Hardware > Printer"}]
    group = {**category, "criteria[0][value]": "L2"}
    assert requests.get(f"{glpi.url}/search/Group", params=group, headers=headers).json()["data"] == [
        {"1": "L2 support"}
    ]
    pc = {**category, "criteria[0][searchtype]": "equals", "criteria[0][value]": "pc042", "forcedisplay[0]": "126"}
    assert requests.get(f"{glpi.url}/search/Computer", params=pc, headers=headers).json()["data"] == [
        {"1": "PC042", "126": "10.1.2.42"}
    ]
    item = requests.get(f"{glpi.url}/Computer/{computer}", params={"with_networkports": "true"}, headers=headers)
    ethernet = item.json()["_networkports"]["NetworkPortEthernet"]
    assert ethernet[0]["netport_id"] == port and ethernet[0]["mac"] == "00:11:22:33:44:55"
    assert ethernet[0]["NetworkName"]["IPAddress"][0]["name"] == "10.1.2.42"
    ips = requests.get(f"{glpi.url}/NetworkName/{name}/IPAddress", headers=headers).json()
    assert [ip["name"] for ip in ips] == ["10.1.2.42"]


# --------------------------------------------------------------------------- errors and rights


def test_followup_on_missing_ticket_and_bad_input(glpi: GlpiStandIn) -> None:
    headers = login(glpi)
    missing = {"input": {"itemtype": "Ticket", "items_id": 999, "content": "x"}}
    answer = requests.post(f"{glpi.url}/ITILFollowup", json=missing, headers=headers)
    assert error(answer) == (400, "ERROR_GLPI_ADD", "You don't have permission to perform this action.")
    empty = {"input": {"itemtype": "Ticket", "items_id": ticket(glpi), "content": ""}}
    answer = requests.post(f"{glpi.url}/ITILFollowup", json=empty, headers=headers)
    assert error(answer) == (400, "ERROR_GLPI_ADD", "You can't add a followup without description")
    no_input = requests.post(f"{glpi.url}/ITILFollowup", json={"content": "x"}, headers=headers)
    assert error(no_input)[:2] == (400, "ERROR_BAD_ARRAY")
    assert "view documentation in your browser" in error(no_input)[2]
    not_json = requests.post(
        f"{glpi.url}/ITILFollowup", data=b"{oops", headers={**headers, "Content-Type": "application/json"}
    )
    assert error(not_json) == (400, "ERROR_JSON_PAYLOAD_INVALID", "JSON payload seems not valid")
    assert not glpi.items["ITILFollowup"]


def test_deny_gives_the_rights_errors(glpi: GlpiStandIn) -> None:
    headers = login(glpi)
    ticket_id = ticket(glpi)
    glpi.deny("tech", "Ticket", ticket_id)
    assert error(requests.get(f"{glpi.url}/Ticket/{ticket_id}", headers=headers)) == (
        403,
        "ERROR_RIGHT_MISSING",
        "You don't have permission to perform this action.",
    )
    assert requests.get(f"{glpi.url}/Ticket/{ticket_id}/ITILFollowup", headers=headers).status_code == 403
    followup = {"input": {"itemtype": "Ticket", "items_id": ticket_id, "content": "x"}}
    assert error(requests.post(f"{glpi.url}/ITILFollowup", json=followup, headers=headers))[:2] == (
        400,
        "ERROR_GLPI_ADD",
    )
    update = requests.put(f"{glpi.url}/Ticket/{ticket_id}", json={"input": {"status": 2}}, headers=headers)
    assert error(update) == (400, "ERROR_GLPI_UPDATE", "You don't have permission to perform this action.")
    assert glpi.items["Ticket"][ticket_id]["status"] == 1


# --------------------------------------------------------------------------- faults


def test_fail_next_then_recover(glpi: GlpiStandIn) -> None:
    headers = login(glpi)
    glpi.fail_next(2, status=503)
    assert requests.get(f"{glpi.url}/Ticket", headers=headers).status_code == 503
    assert requests.get(f"{glpi.url}/Ticket", headers=headers).status_code == 503
    assert requests.get(f"{glpi.url}/Ticket", headers=headers).status_code == 200
    glpi.fail_next(1)
    failed = requests.get(f"{glpi.url}/Ticket", headers=headers)
    assert failed.status_code == 500 and failed.json()[0] == "ERROR_SQL"


def test_drop_after_commit_creates_the_item_without_answering(glpi: GlpiStandIn) -> None:
    headers = login(glpi)
    ticket_id = ticket(glpi)
    glpi.drop_after_commit()
    payload = {"input": {"itemtype": "Ticket", "items_id": ticket_id, "content": "restarted the spooler"}}
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{glpi.url}/ITILFollowup", json=payload, headers=headers, timeout=5)
    assert [f["content"] for f in glpi.items["ITILFollowup"].values()] == ["restarted the spooler"]
    assert requests.post(f"{glpi.url}/ITILFollowup", json=payload, headers=headers).status_code == 201


def test_strip_authorization_needs_query_parameters(glpi: GlpiStandIn) -> None:
    glpi.strip_authorization()
    by_header = requests.get(
        f"{glpi.url}/initSession", headers={"Authorization": f"user_token {TOKEN}", "App-Token": APP}
    )
    assert error(by_header)[:2] == (400, "ERROR_LOGIN_PARAMETERS_MISSING")
    basic = requests.get(f"{glpi.url}/initSession", auth=("tech", "s3cret!"), headers={"App-Token": APP})
    assert error(basic)[:2] == (400, "ERROR_LOGIN_PARAMETERS_MISSING")
    by_token = requests.get(f"{glpi.url}/initSession", params={"user_token": TOKEN}, headers={"App-Token": APP})
    assert by_token.status_code == 200
    by_login = requests.get(
        f"{glpi.url}/initSession", params={"login": "tech", "password": "s3cret!"}, headers={"App-Token": APP}
    )
    assert by_login.status_code == 200
    via_query = {"session_token": by_token.json()["session_token"], "app_token": APP}
    assert requests.get(f"{glpi.url}/getFullSession", params=via_query).status_code == 200


def test_redirect_to_https_answers_301_and_changes_nothing(glpi: GlpiStandIn) -> None:
    headers = login(glpi)
    ticket_id = ticket(glpi)
    glpi.redirect_to_https()
    payload = {"input": {"itemtype": "Ticket", "items_id": ticket_id, "content": "x"}}
    answer = requests.post(f"{glpi.url}/ITILFollowup", json=payload, headers=headers, allow_redirects=False)
    assert answer.status_code == 301
    host = glpi.url.removeprefix("http://").split("/")[0]
    assert answer.headers["Location"] == f"https://{host}/apirest.php/ITILFollowup"
    assert not glpi.items["ITILFollowup"]
    glpi.redirect_to_https(False)
    assert requests.get(f"{glpi.url}/Ticket/{ticket_id}", headers=headers).status_code == 200


def test_delay_slows_every_answer(glpi: GlpiStandIn) -> None:
    glpi.delay(0.3)
    started = time.monotonic()
    login(glpi)
    assert time.monotonic() - started >= 0.3
    glpi.delay(0)


# --------------------------------------------------------------------------- documents and lifecycle


def test_document_upload_linked_to_a_ticket(glpi: GlpiStandIn) -> None:
    headers = login(glpi)
    ticket_id = ticket(glpi)
    manifest = {"input": {"name": "run log", "_filename": ["run.txt"], "itemtype": "Ticket", "items_id": ticket_id}}
    answer = requests.post(
        f"{glpi.url}/Document",
        headers=headers,
        files={
            "uploadManifest": (None, json.dumps(manifest), "application/json"),
            "filename[0]": ("run.txt", b"spooler restarted\r\nok\n", "text/plain"),
        },
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["message"] == "Document move succeeded."
    upload = body["upload_result"]["filename"][0]
    assert upload["display"] == "run.txt" and upload["size"] == 22
    document = glpi.items["Document"][body["id"]]
    assert (document["name"], document["filename"], document["mime"]) == ("run log", "run.txt", "text/plain")
    assert glpi.documents[body["id"]] == b"spooler restarted\r\nok\n"
    links = requests.get(f"{glpi.url}/Ticket/{ticket_id}/Document_Item", headers=headers).json()
    assert [(link["documents_id"], link["itemtype"]) for link in links] == [(body["id"], "Ticket")]
    raw = requests.get(f"{glpi.url}/Document/{body['id']}", headers={**headers, "Accept": "application/octet-stream"})
    assert raw.content == b"spooler restarted\r\nok\n"


def test_ticket_solve_and_close(glpi: GlpiStandIn) -> None:
    headers = login(glpi)
    created = requests.post(
        f"{glpi.url}/Ticket",
        json={"input": {"name": "Outlook", "content": "won't open", "_users_id_assign": glpi.user_id("tech")}},
        headers=headers,
    )
    assert created.status_code == 201
    ticket_id = created.json()["id"]
    assert created.json()["message"] == "Item successfully added: Outlook"
    assert glpi.items["Ticket"][ticket_id]["status"] == 2
    solution = {"input": {"itemtype": "Ticket", "items_id": ticket_id, "content": "profile rebuilt"}}
    assert requests.post(f"{glpi.url}/ITILSolution", json=solution, headers=headers).status_code == 201
    assert glpi.items["Ticket"][ticket_id]["status"] == SOLVED
    again = requests.post(f"{glpi.url}/ITILSolution", json=solution, headers=headers)
    assert error(again) == (
        400,
        "ERROR_GLPI_ADD",
        "The item is already solved, did anyone pushed a solution before you?",
    )
    closed = requests.put(f"{glpi.url}/Ticket/{ticket_id}", json={"input": {"status": CLOSED}}, headers=headers)
    assert (closed.status_code, closed.json()) == (200, [{str(ticket_id): True, "message": ""}])
    assert glpi.items["Ticket"][ticket_id]["closedate"]
    followup = {"input": {"itemtype": "Ticket", "items_id": ticket_id, "content": "late note"}}
    refused = requests.post(f"{glpi.url}/ITILFollowup", json=followup, headers=headers)
    assert error(refused) == (400, "ERROR_GLPI_ADD", "You don't have permission to perform this action.")
    missing = requests.put(f"{glpi.url}/Ticket/999", json={"input": {"status": 2}}, headers=headers)
    assert (missing.status_code, missing.json()) == (400, ["ERROR_GLPI_UPDATE", None])  # GLPI 10's own answer


def test_bulk_add_and_delete(glpi: GlpiStandIn) -> None:
    headers = login(glpi)
    ticket_id = ticket(glpi)
    bulk = {
        "input": [
            {"itemtype": "Ticket", "items_id": ticket_id, "content": "one"},
            {"itemtype": "Ticket", "items_id": 999, "content": "two"},
        ]
    }
    partial = requests.post(f"{glpi.url}/ITILFollowup", json=bulk, headers=headers)
    assert partial.status_code == 207
    code, results = partial.json()
    assert code == "ERROR_GLPI_PARTIAL_ADD"
    assert [r["id"] is not False for r in results] == [True, False]
    deleted = requests.delete(f"{glpi.url}/Ticket/{ticket_id}", headers=headers)
    assert (deleted.status_code, deleted.json()) == (200, [{str(ticket_id): True, "message": ""}])
    assert glpi.items["Ticket"][ticket_id]["is_deleted"] == 1  # to the trash bin, not purged
    assert requests.get(f"{glpi.url}/Ticket", headers=headers).json() == []


# --------------------------------------------------------------------------- plumbing


def test_requests_log_keeps_bodies_and_secret_headers(glpi: GlpiStandIn) -> None:
    headers = login(glpi)
    ticket_id = ticket(glpi)
    payload = {"input": {"itemtype": "Ticket", "items_id": ticket_id, "content": "temporary password not here"}}
    requests.post(f"{glpi.url}/ITILFollowup", json=payload, headers=headers)
    init, post = glpi.requests_log[0], glpi.requests_log[-1]
    assert init["headers"]["Authorization"] == f"user_token {TOKEN}"
    assert post["method"] == "POST" and post["path"] == "/apirest.php/ITILFollowup"
    assert json.loads(post["body"]) == payload
    assert post["headers"]["Session-Token"] == headers["Session-Token"]
    assert glpi.stats()[("POST", "ITILFollowup")] == 1
    assert glpi.stats()[("GET", "initSession")] == 1


def test_banner_says_stand_in(glpi: GlpiStandIn) -> None:
    for url in (glpi.url.removesuffix("/apirest.php") + "/", glpi.url + "/"):
        answer = requests.get(url)
        assert answer.status_code == 200 and b"stand-in" in answer.content


def test_tls(tmp_path: Path) -> None:
    with GlpiStandIn(user_tokens={TOKEN: "tech"}, tls_cert_dir=tmp_path / "certs") as lab:
        assert lab.url.startswith("https://127.0.0.1:")
        answer = requests.get(
            f"{lab.url}/initSession",
            headers={"Authorization": "Basic " + base64.b64encode(b"x:y").decode(), "App-Token": APP},
            params={"user_token": TOKEN},
            verify=str(lab.ca_path),
        )
        assert answer.status_code == 200


def test_only_loopback() -> None:
    with pytest.raises(ValueError):
        GlpiStandIn(host="0.0.0.0")

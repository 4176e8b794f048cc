"""`l1fix kb publish`: playbooks as GLPI knowledge base articles, through the real CLI, against the GLPI stand-in."""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from conftest import run_cli
from l1fix.lab.glpi import GlpiStandIn

ROOT = Path(__file__).resolve().parents[1]
PRINTER_STUCK = ROOT / "playbooks" / "printer-stuck.yml"
APP_TOKEN = "app-kb-5e1d9c3a7b2f4e6d"
USER_TOKEN = "usr-kb-8c4a2e6f0b1d3f5a"
SECRETS = (APP_TOKEN, USER_TOKEN)
# What an article may contain: the tags markdown-it and kb.py write, links only to http(s)/mailto.
SAFE_TAGS = {"p", "strong", "em", "code", "pre", "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody"}
SAFE_TAGS |= {"tr", "th", "td", "ol", "ul", "li", "small", "br", "a", "blockquote", "hr", "s"}


@pytest.fixture(params=["10.0.16"])
def glpi(home: Path, request: pytest.FixtureRequest) -> Iterator[GlpiStandIn]:
    """A GLPI stand-in on loopback and a config profile `kb` that reaches it with a user token."""
    lab = GlpiStandIn(app_token=APP_TOKEN, user_tokens={USER_TOKEN: "tech1"}, glpi_version=request.param)
    lab.start()
    for name, value in (("app-token", APP_TOKEN), ("user-token", USER_TOKEN)):
        (home / name).write_text(value)
        (home / name).chmod(0o600)
    (home / "config.toml").write_text(
        'default_profile = "kb"\n[profiles.kb.glpi]\n'
        f'url = "{lab.url}"\napp_token = "file:{home}/app-token"\nuser_token = "file:{home}/user-token"\n'
    )
    yield lab
    lab.stop()


def publish(home: Path, *args: str):
    out = run_cli("kb", "publish", *args, home=home)
    for secret in SECRETS:
        assert secret not in out.stdout + out.stderr
    return out


def articles(lab: GlpiStandIn) -> list[dict]:
    return list(lab.items["KnowbaseItem"].values())


def answer_of(article: dict) -> str:
    return html.unescape(article["answer"])  # GLPI 10 stores "<" as "&#60;"


def calls(lab: GlpiStandIn, method: str, itemtype: str) -> int:
    return lab.stats().get((method, itemtype), 0)


def test_publish_creates_one_article_visible_to_the_root_entity(glpi, home):
    out = publish(home, str(PRINTER_STUCK), "--json")
    assert out.code == 0, out.stderr
    result = out.json()
    [article] = articles(glpi)
    assert result["id"] == article["id"] and result["action"] == "created"
    assert article["name"] == "printer-stuck: The user's documents do not print, or stay stuck in the queue."
    assert article["users_id"] == glpi.user_id("tech1") and article["is_faq"] == 0
    text = answer_of(article)
    for expected in ("<h3>Steps</h3>", "spooler-restart", "service-restart", "params.dependent_service", "Support N2"):
        assert expected in text
    assert "dependent_service" in text and "escalate the ticket" in text and "<p>Applies to: " in text
    assert "l1fix-kb-printer-stuck" in text and result["revision"] in text
    [target] = glpi.items["Entity_KnowbaseItem"].values()
    assert (target["knowbaseitems_id"], target["entities_id"], target["is_recursive"]) == (article["id"], 0, 1)
    assert urlsplit(result["url"]).path == "/front/knowbaseitem.form.php"
    human = publish(home, str(PRINTER_STUCK))
    assert human.code == 0 and f"knowledge base article {article['id']} unchanged" in human.stdout


def test_second_publish_updates_the_same_article(glpi, home, tmp_path):
    first = publish(home, str(PRINTER_STUCK), "--json").json()
    again = publish(home, str(PRINTER_STUCK), "--json").json()
    assert again["action"] == "unchanged" and again["id"] == first["id"]
    assert calls(glpi, "PUT", "KnowbaseItem") == 0 and calls(glpi, "POST", "KnowbaseItem") == 1
    changed = tmp_path / "printer-stuck.yml"
    changed.write_text(PRINTER_STUCK.read_text().replace("Tell the user:", "Tell the caller kindly:"))
    updated = publish(home, str(changed), "--json").json()
    assert updated["action"] == "updated" and updated["id"] == first["id"]
    [article] = articles(glpi)
    assert "Tell the caller kindly:" in answer_of(article) and updated["revision"] in answer_of(article)
    assert len(glpi.items["Entity_KnowbaseItem"]) == 1  # the target is not added twice


@pytest.mark.parametrize("glpi", ["9.5.13", "11.0.1"], indirect=True)
def test_publish_is_idempotent_whatever_the_storage_encoding(glpi, home):
    first = publish(home, str(PRINTER_STUCK), "--json").json()
    again = publish(home, str(PRINTER_STUCK), "--json").json()
    assert (first["action"], again["action"], again["id"]) == ("created", "unchanged", first["id"])
    assert len(articles(glpi)) == 1 and calls(glpi, "PUT", "KnowbaseItem") == 0


def test_an_article_with_a_longer_marker_is_not_taken_for_ours(glpi, home):
    other = glpi.add("KnowbaseItem", name="other", answer="<p>l1fix-kb-printer-stuck-2 l1fix-rev-0</p>")
    result = publish(home, str(PRINTER_STUCK), "--json").json()
    assert result["action"] == "created" and result["id"] != other and len(articles(glpi)) == 2


def test_duplicates_are_reported_and_left_alone(glpi, home):
    first = publish(home, str(PRINTER_STUCK), "--json").json()
    copy = dict(glpi.items["KnowbaseItem"][first["id"]])
    second = glpi.add("KnowbaseItem", name=copy["name"], answer=answer_of(copy))
    out = publish(home, str(PRINTER_STUCK), "--json")
    assert out.json()["id"] == first["id"] and out.json()["duplicates"] == [second]
    assert f"articles {second} hold the same marker" in out.stderr


def test_category_and_faq(glpi, home):
    parent = glpi.add("KnowbaseItemCategory", name="Helpdesk")
    category = glpi.add("KnowbaseItemCategory", name="Printing", knowbaseitemcategories_id=parent)
    out = publish(home, str(PRINTER_STUCK), "--category", "Helpdesk > Printing", "--faq", "--json")
    assert out.code == 0, out.stderr
    [link] = glpi.items["KnowbaseItem_KnowbaseItemCategory"].values()
    assert (link["knowbaseitems_id"], link["knowbaseitemcategories_id"]) == (out.json()["id"], category)
    assert articles(glpi)[0]["is_faq"] == 1
    publish(home, str(PRINTER_STUCK), "--category", "Printing", "--faq")
    assert len(glpi.items["KnowbaseItem_KnowbaseItemCategory"]) == 1
    wrong = publish(home, str(PRINTER_STUCK), "--category", "Helpdesk > Printng")
    assert wrong.code == 2 and "no GLPI knowledge base category 'Helpdesk > Printng'" in wrong.stderr
    assert "did you mean 'Helpdesk > Printing'" in wrong.stderr


def test_dry_run_sends_nothing(glpi, home):
    out = publish(home, str(PRINTER_STUCK), "--dry-run")
    assert out.code == 0 and "dry run: nothing sent" in out.stdout and "<h3>Steps</h3>" in out.stdout
    data = publish(home, str(PRINTER_STUCK), "--dry-run", "--json").json()
    assert data["dry_run"] is True and data["marker"] == "l1fix-kb-printer-stuck" and "<table>" in data["answer"]
    assert glpi.requests_log == [] and articles(glpi) == []


def test_an_invalid_playbook_is_bad_input_with_its_place(glpi, home, tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("name: broken\ndescription: x\nsteps:\n  - action: spooler-restat\n")
    out = publish(home, str(broken))
    assert out.code == 2 and out.stdout == ""
    assert f"{broken}:4:" in out.stderr and "spooler-restart" in out.stderr  # the closest action
    assert len(out.stderr.strip().splitlines()) == 1
    assert glpi.requests_log == []


def test_glpi_down_is_a_clear_error(glpi, home):
    glpi.stop()
    out = publish(home, str(PRINTER_STUCK))
    assert out.code == 3 and out.stdout == ""
    assert f"cannot connect to GLPI at http://127.0.0.1:{glpi.port}" in out.stderr
    assert "Traceback" not in out.stderr


def test_an_answer_lost_after_the_create_leaves_no_duplicate(glpi, home):
    glpi.drop_after_commit(1)  # the article is stored, then the connection drops before GLPI answers
    lost = publish(home, str(PRINTER_STUCK))
    assert lost.code == 3 and "was cut" in lost.stderr and len(articles(glpi)) == 1
    retried = publish(home, str(PRINTER_STUCK), "--json")
    assert retried.code == 0 and retried.json()["action"] == "unchanged"
    assert len(articles(glpi)) == 1 and len(glpi.items["Entity_KnowbaseItem"]) == 1  # the target comes now


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


HOSTILE = """name: "evil <script>alert(1)</script>"
description: |
  **Hi** <script>alert('x')</script> <img src=x onerror=alert(2)>
  [click](javascript:alert(3)) and [ok](https://glpi.example/doc) <a href="javascript:alert(4)">raw</a>
  ![pic](https://tracker.example/p.png)
params:
  printer:
    type: string
    default: "<b onmouseover=alert(5)>x</b>"
    description: "</td></tr></table><script>alert(6)</script>"
steps:
  - id: spooler
    name: "<iframe src=//evil>"
    action: spooler-restart
    when: params.printer != "</code><script>alert(7)</script>"
    on_failure: escalate
escalate:
  group: "Support <N2>"
  note: "</p><script>alert(8)</script>"
"""


def test_html_in_the_playbook_is_neutralised(glpi, home, tmp_path):
    hostile = tmp_path / "hostile.yml"
    hostile.write_text(HOSTILE)
    out = publish(home, str(hostile), "--json")
    assert out.code == 0, out.stderr
    [article] = articles(glpi)
    text = answer_of(article)
    parser = _Tags()
    parser.feed(text)
    assert {tag for tag, _ in parser.tags} <= SAFE_TAGS
    for tag, attrs in parser.tags:
        assert [name for name, _ in attrs] == (["href"] if tag == "a" else [])
        assert all(urlsplit(value or "").scheme in ("https", "http", "mailto") for _, value in attrs)
    assert ("a", [("href", "https://glpi.example/doc")]) in parser.tags
    assert "&lt;script&gt;alert('x')&lt;/script&gt;" in text  # shown as text, not run
    assert "Support &lt;N2&gt;" in text
    # the subject is plain text, which GLPI escapes when it shows it
    assert html.unescape(article["name"]).startswith("evil <script>alert(1)</script>: Hi")


def test_the_stand_in_answers_kb_relations_like_glpi(glpi):
    session = requests.Session()
    session.headers.update({"App-Token": APP_TOKEN, "Content-Type": "application/json"})
    token = session.get(f"{glpi.url}/initSession", headers={"Authorization": f"user_token {USER_TOKEN}"}).json()
    session.headers["Session-Token"] = token["session_token"]
    missing = session.post(f"{glpi.url}/Entity_KnowbaseItem", json={"input": {"knowbaseitems_id": 99}})
    assert missing.status_code == 400 and missing.json()[0] == "ERROR_GLPI_ADD"
    created = session.post(f"{glpi.url}/KnowbaseItem", json={"input": {"name": "", "answer": "<p>a</p>"}})
    assert created.status_code == 201 and created.json()["message"] == "Item successfully added: New item"
    kb_id = created.json()["id"]
    link = session.post(
        f"{glpi.url}/Entity_KnowbaseItem", json={"input": {"knowbaseitems_id": kb_id, "entities_id": 0}}
    )
    assert link.status_code == 201 and link.json()["message"] == ""
    listed = session.get(f"{glpi.url}/KnowbaseItem/{kb_id}/Entity_KnowbaseItem").json()
    assert [row["entities_id"] for row in listed] == [0]
    search = session.get(
        f"{glpi.url}/search/KnowbaseItem",
        params={"criteria[0][field]": 1, "criteria[0][searchtype]": "contains", "criteria[0][value]": "^New item$"},
    ).json()
    assert search["totalcount"] == 1 and search["data"][0]["1"] == "New item"
    purged = session.delete(f"{glpi.url}/KnowbaseItem/{kb_id}", params={"force_purge": "true"})
    assert purged.status_code == 200 and glpi.items["Entity_KnowbaseItem"] == {}
    assert json.loads(purged.text) == [{str(kb_id): True, "message": ""}]


@pytest.mark.parametrize(
    ("playbook", "run_it"),
    [
        ("outlook-broken", "l1fix play playbooks/outlook-broken.yml --target PC042 --param user=… --yes --ticket 1234"),
        ("printer-missing", "l1fix play playbooks/printer-missing.yml --target PC042 --param printer=… --ticket 1234"),
        ("user-locked-out", "l1fix play playbooks/user-locked-out.yml --target jdupont --ticket 1234"),
        # its reboot step needs --yes only when the technician asks for a restart
        ("slow-pc", "l1fix play playbooks/slow-pc.yml --target PC042 --ticket 1234"),
    ],
)
def test_the_run_it_line_gives_what_the_playbook_needs(glpi, home, playbook, run_it):
    data = publish(home, str(ROOT / "playbooks" / f"{playbook}.yml"), "--dry-run", "--json").json()
    assert f"<h3>Run it</h3><p><code>{html.escape(run_it)}</code></p>" in data["answer"]


def test_a_diagnosis_step_says_what_its_findings_do(glpi, home):
    data = publish(home, str(ROOT / "playbooks" / "slow-pc.yml"), "--dry-run", "--json").json()
    assert "on findings: escalate the ticket" in data["answer"]

"""The Microsoft 365 fixes through the real msgraph-sdk (and azure-identity) against the Graph stand-in."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import run_cli
from l1fix.config import Config, load_config
from l1fix.lab.graph import COMPLEXITY, ON_PREMISES, GraphStandIn, entra_password_ok
from l1fix.passwords import read_back
from l1fix.result import RunResult
from l1fix.runner import execute_journaled
from l1fix.secrets import Secret

TOKEN_ENV = "L1FIX_TEST_GRAPH_TOKEN"
SECRET_ENV = "L1FIX_TEST_GRAPH_SECRET"
TOKEN = "lab-static-token-5d1e8c0a9f"
PROFILE = "m365"
SELECT = (
    "id,userPrincipalName,mail,displayName,accountEnabled,lastPasswordChangeDateTime,passwordPolicies,"
    "passwordProfile,onPremisesSyncEnabled,signInSessionsValidFromDateTime,userType"
)


@dataclass
class M365Env:
    """An l1fix home whose `m365` profile points at the Graph stand-in (static bearer token)."""

    graph: GraphStandIn
    home: Path
    config: Config

    def reconfigure(self, **graph: object) -> Config:
        (self.home / "config.toml").write_text(config_toml(self.graph, **graph))
        self.config = load_config()
        return self.config

    def run(self, action: str, user: str, params: dict[str, Any] | None = None, **options: Any) -> RunResult:
        return execute_journaled(action, user, params, config=self.config, **options)

    def cli(self, *args: str, stdin: str = "") -> Any:
        return run_cli(*args, home=self.home, stdin=stdin)

    def upn(self, name: str) -> str:
        return f"{name}@{self.graph.domain}"

    def sent(self, method: str | None = None, since: int = 0) -> list[tuple[str, str]]:
        """(method, path) of the Graph calls received since request number `since`."""
        return [(r["method"], r["path"]) for r in self.graph.api_requests(method)[since:]]

    def journal_bytes(self) -> bytes:
        return b"".join(p.read_bytes() for p in sorted(self.home.glob("journal.sqlite3*")))


def config_toml(graph: GraphStandIn, *, profile: str = PROFILE, default: bool = True, **values: object) -> str:
    settings: dict[str, object] = {
        "auth": "token",
        "access_token": f"env:{TOKEN_ENV}",
        "base_url": graph.url,
        "ca_bundle": str(graph.ca_path),
        "max_retry_after_s": 5,
        **values,
    }
    lines = [f'default_profile = "{profile}"'] if default else []
    lines.append(f"[profiles.{profile}.graph]")
    lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items() if value is not None]
    return "\n".join(lines) + "\n"


@pytest.fixture
def graph_lab(tmp_path: Path) -> Any:
    lab = GraphStandIn(tokens=[TOKEN], tls_cert_dir=tmp_path / "graph-tls")
    lab.start()
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture
def m365(graph_lab: GraphStandIn, home: Path, monkeypatch: pytest.MonkeyPatch) -> M365Env:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    (home / "config.toml").write_text(config_toml(graph_lab))
    return M365Env(graph_lab, home, load_config())


def revealed(result: RunResult) -> dict[str, str]:
    return {label: secret.reveal() for label, secret in result.revealed}


# -- reading --------------------------------------------------------------------------------


def test_status_reads_the_account_with_exact_requests(m365: M365Env) -> None:
    user_id = m365.graph.add_user("jdupont", display_name="Jean Dupont", mail="jean.dupont@corp.example")
    upn = m365.upn("jdupont")
    result = m365.run("m365-user-status", upn)
    assert result.status == "already-ok" and result.exit_code == 0, result.error
    state = result.before or {}
    assert (
        state["id"] == user_id and state["user_principal_name"] == upn and state["mail"] == "jean.dupont@corp.example"
    )
    assert state["enabled"] is True and state["privileged"] is False and state["roles"] == []
    assert state["sign_in_activity"]["last_sign_in"] == "2026-01-05T08:30:00+00:00"
    assert result.summary.startswith(f"{upn} (Jean Dupont): enabled, password set ")
    assert "last sign-in 2026-01-05 08:30 UTC" in result.summary

    calls = m365.graph.api_requests()
    assert calls[0]["method"] == "GET" and calls[0]["path"] == "/v1.0/users"
    assert sorted((r["method"], r["path"]) for r in calls[1:]) == [  # roles and sign-in read concurrently
        ("GET", f"/v1.0/users/{user_id}"),
        ("GET", f"/v1.0/users/{user_id}/transitiveMemberOf/graph.directoryRole"),
    ]
    lookup = calls[0]["params"]
    assert lookup == {
        "$filter": f"userPrincipalName eq '{upn}' or mail eq '{upn}'",
        "$select": SELECT,
        "$top": "10",
    }
    by_path = {r["path"]: r["params"] for r in calls[1:]}
    assert by_path[f"/v1.0/users/{user_id}/transitiveMemberOf/graph.directoryRole"] == {
        "$select": "id,displayName,roleTemplateId"
    }
    assert by_path[f"/v1.0/users/{user_id}"] == {"$select": "id,signInActivity"}
    assert all(r["headers"]["authorization"] == f"Bearer {TOKEN}" for r in calls)
    # the same account by mail and by object id
    assert m365.run("m365-user-status", "jean.dupont@corp.example").before["id"] == user_id  # type: ignore[index]
    assert m365.run("m365-user-status", user_id).before["user_principal_name"] == upn  # type: ignore[index]


def test_sign_in_activity_without_the_licence_is_noted_not_fatal(m365: M365Env) -> None:
    m365.graph.add_user("nolic")
    m365.graph.sign_in_activity_readable = False
    result = m365.run("m365-user-status", m365.upn("nolic"))
    assert result.status == "already-ok", result.error
    assert result.before and result.before["sign_in_activity"] is None
    assert "Authentication_RequestFromNonPremiumTenantOrB2CTenant" in result.before["sign_in_activity_note"]
    assert "AuditLog.Read.All" in result.before["sign_in_activity_note"]


def test_roles_make_an_account_privileged_directly_or_through_a_group(m365: M365Env) -> None:
    lab = m365.graph
    lab.add_user("reader", roles=["Directory Readers"])
    lab.add_user("ga", roles=["Global Administrator"])
    lab.add_group("Tier1 admins", roles=["User Administrator"])
    lab.add_user("viagroup", groups=["Tier1 admins"])
    reader = m365.run("m365-user-status", m365.upn("reader")).before or {}
    assert reader["roles"] == ["Directory Readers"] and reader["privileged"] is False
    ga = m365.run("m365-user-status", m365.upn("ga")).before or {}
    assert ga["privileged"] is True and ga["privileged_because"] == ["holds the Global Administrator role"]
    nested = m365.run("m365-user-status", m365.upn("viagroup"))
    assert nested.before and nested.before["privileged_because"] == ["holds the User Administrator role"]
    assert "privileged (holds the User Administrator role)" in nested.summary


# -- password reset -------------------------------------------------------------------------


def test_password_reset_sends_exactly_one_patch_and_shows_the_password_once(m365: M365Env) -> None:
    user_id = m365.graph.add_user("reset", display_name="Anna Reset")
    before = m365.graph.user(user_id)
    result = m365.run("m365-password-reset", m365.upn("reset"), ticket=1235)
    assert result.status == "fixed", result.error
    shown = revealed(result)
    assert list(shown) == ["temporary password", "read back"]
    password = shown["temporary password"]
    assert len(password) >= 12 and entra_password_ok(password) and shown["read back"] == read_back(password)
    assert result.done == {
        "summary": "password reset (generated, shown to the technician), must change at next sign-in",
        "password": "generated",
        "must_change": True,
    }
    assert m365.sent() == [
        ("GET", "/v1.0/users"),
        ("GET", f"/v1.0/users/{user_id}/transitiveMemberOf/graph.directoryRole"),
        ("PATCH", f"/v1.0/users/{user_id}"),
        ("GET", f"/v1.0/users/{user_id}"),
    ]
    patch = m365.graph.api_requests("PATCH")[0]
    assert json.loads(patch["body"]) == {
        "passwordProfile": {"forceChangePasswordNextSignIn": True, "password": password},
    }
    assert patch["headers"]["content-type"].startswith("application/json")
    after = m365.graph.user(user_id)
    assert after["_password"] == password and after["_force_change"] is True
    assert after["lastPasswordChangeDateTime"] != before["lastPasswordChangeDateTime"]
    assert result.after and result.after["must_change_password"] is True
    assert "password reset verified" in result.summary


def test_verify_waits_for_graph_to_show_the_change_then_says_failed(m365: M365Env) -> None:
    """Graph is eventually consistent: verify reads again (1 s apart) before it calls a reset failed."""
    m365.graph.add_user("lag")
    m365.graph.stale_reads = 1
    started = time.monotonic()
    result = m365.run("m365-password-reset", m365.upn("lag"))
    assert result.status == "fixed" and 1.0 <= time.monotonic() - started < 5, result.summary
    assert [m for m, _ in m365.sent()].count("GET") == 4  # lookup, roles, a stale read, a fresh one

    m365.graph.stale_reads = 10
    failed = m365.run("m365-password-reset", m365.upn("lag"))
    assert failed.status == "failed" and failed.exit_code == 1
    assert "lastPasswordChangeDateTime did not change: escalate" in failed.summary
    assert revealed(failed)["temporary password"]  # it was set: the technician still gets it
    m365.graph.stale_reads = 0


def test_a_weak_supplied_password_is_refused_before_anything_is_sent(m365: M365Env) -> None:
    m365.graph.add_user("weak")
    for weak in ("Sh0rt-x", "alllowercaseletters", "Ünïcode-Pässwort-9"):
        result = m365.run("m365-password-reset", m365.upn("weak"), {"password": Secret(weak)})
        assert result.status == "error" and result.exit_code == 2 and result.error.kind == "password-policy"
        assert "does not meet Entra ID's password rules" in result.error.message
        assert weak not in result.error.message and weak not in repr(result.exception)
    assert m365.graph.api_requests() == []  # refused locally: Graph never heard of it
    out = m365.cli("m365-password-reset", m365.upn("weak"), "--password-stdin", stdin="Sh0rt-x\n")
    assert out.code == 2 and "does not meet Entra ID's password rules" in out.stderr
    assert "Sh0rt-x" not in out.stdout + out.stderr


def test_entra_refusing_the_password_is_a_policy_error(m365: M365Env) -> None:
    user_id = m365.graph.add_user("banned")
    m365.graph.inject(400, method="PATCH", code="Request_BadRequest", message=COMPLEXITY)
    supplied = "Summer-2026-Corp!"  # fine by the rules, refused by Entra (say, a banned password)
    result = m365.run("m365-password-reset", m365.upn("banned"), {"password": Secret(supplied)})
    assert result.status == "error" and result.exit_code == 2 and result.error.kind == "password-policy"
    assert f"the new password for {m365.upn('banned')} does not meet Entra ID's password policy" in str(result.error)
    assert "Graph said: Request_BadRequest: The specified password does not comply" in result.error.message
    assert supplied not in result.error.message and result.revealed == []
    assert m365.graph.user(user_id)["_password"] == "Initial-Pw-2468"


def test_no_must_change_needs_the_profile_to_allow_it(m365: M365Env) -> None:
    user_id = m365.graph.add_user("keep")
    params = {"must-change": False, "password": Secret("Kept-Pw-4567-xyz")}
    refused = m365.run("m365-password-reset", m365.upn("keep"), params)
    assert (
        refused.status == "error" and refused.error.kind == "refused" and "allow_no_must_change" in str(refused.error)
    )
    m365.reconfigure(allow_no_must_change=True)
    result = m365.run("m365-password-reset", m365.upn("keep"), params)
    assert result.status == "fixed" and result.revealed == [], result.error
    assert json.loads(m365.graph.api_requests("PATCH")[0]["body"])["passwordProfile"] == {
        "forceChangePasswordNextSignIn": False,
        "password": "Kept-Pw-4567-xyz",
    }
    assert m365.graph.user(user_id)["_force_change"] is False


def test_privileged_accounts_are_refused_and_a_helpdesk_role_is_named(m365: M365Env) -> None:
    lab = m365.graph
    admin_id = lab.add_user("gadmin", roles=["Global Administrator"])
    for dry_run in (True, False):
        refused = m365.run("m365-password-reset", m365.upn("gadmin"), dry_run=dry_run)
        assert refused.status == "error" and refused.exit_code == 2 and refused.error.kind == "refused"
        assert "holds the Global Administrator role" in refused.error.message and "L2" in refused.error.message
    assert m365.graph.api_requests("PATCH") == []

    m365.reconfigure(allow_privileged=True)
    lab.caller_roles = {"Helpdesk Administrator"}  # what the technician's token stands for
    denied = m365.run("m365-password-reset", m365.upn("gadmin"))
    assert denied.status == "error" and denied.exit_code == 3 and denied.error.kind == "insufficient-rights"
    assert f"lacks the permission or the directory role to reset the password of {m365.upn('gadmin')}" in str(
        denied.error
    )
    assert "Helpdesk Administrator cannot reset or re-enable administrators" in denied.error.message
    assert "Authorization_RequestDenied" in denied.error.message and denied.revealed == []
    assert lab.user(admin_id)["_password"] == "Initial-Pw-2468"

    lab.caller_roles = {"Privileged Authentication Administrator"}
    assert m365.run("m365-password-reset", m365.upn("gadmin")).status == "fixed"


def test_unreadable_roles_count_as_privileged(m365: M365Env) -> None:
    m365.graph.add_user("opaque")
    m365.graph.roles_readable = False
    result = m365.run("m365-password-reset", m365.upn("opaque"))
    assert result.error and result.error.kind == "refused"
    assert "its directory roles could not be read" in result.error.message


def test_accounts_synchronized_from_ad_are_sent_to_the_ad_fixes(m365: M365Env) -> None:
    m365.graph.add_user("synced", synced=True, enabled=False)
    reset = m365.run("m365-password-reset", m365.upn("synced"))
    assert reset.error and reset.error.kind == "refused" and "ad-password-reset" in reset.error.message
    enable = m365.run("m365-enable", m365.upn("synced"), confirm=None)
    assert enable.error and enable.error.kind == "refused" and "ad-enable" in enable.error.message
    assert m365.graph.api_requests("PATCH") == []
    # and if Entra says it (the account became synced meanwhile), the same advice
    m365.graph.add_user("later")
    m365.graph.inject(400, method="PATCH", code="Request_BadRequest", message=ON_PREMISES)
    later = m365.run("m365-password-reset", m365.upn("later"))
    assert later.error and later.error.kind == "refused" and "synchronized from on-premises" in later.error.message


# -- revoke, enable -------------------------------------------------------------------------


def test_revoke_sessions_posts_revoke_sign_in_sessions(m365: M365Env) -> None:
    user_id = m365.graph.add_user("lost", display_name="Lost Phone")
    result = m365.run("m365-revoke-sessions", m365.upn("lost"), ticket=7)
    assert result.status == "fixed", result.error
    post = m365.graph.api_requests("POST")
    assert [(r["path"], r["body"]) for r in post] == [(f"/v1.0/users/{user_id}/revokeSignInSessions", b"")]
    assert result.done == {"summary": "sign-in sessions revoked", "revoked": True}
    assert result.before and result.after
    assert result.after["sessions_valid_from"] > result.before["sessions_valid_from"]
    assert "the user must sign in again" in result.summary


def test_enable_asks_for_confirmation_then_patches_account_enabled(m365: M365Env) -> None:
    user_id = m365.graph.add_user("dis", enabled=False)
    declined = m365.run("m365-enable", m365.upn("dis"), confirm=lambda question: False)
    assert declined.status == "skipped" and m365.graph.api_requests("PATCH") == []
    out = m365.cli("m365-enable", m365.upn("dis"))  # no terminal to ask on, no --yes
    assert out.code == 2 and "--yes" in out.stderr
    asked: list[str] = []
    result = m365.run("m365-enable", m365.upn("dis"), confirm=lambda q: asked.append(q) or True)
    assert result.status == "fixed" and result.after and result.after["enabled"] is True, result.error
    assert "DISABLED" in asked[0] and "m365-enable" in asked[0]
    patch = m365.graph.api_requests("PATCH")
    assert [(r["path"], json.loads(r["body"])) for r in patch] == [(f"/v1.0/users/{user_id}", {"accountEnabled": True})]
    assert m365.graph.user(user_id)["accountEnabled"] is True
    assert m365.run("m365-enable", m365.upn("dis"), confirm=None).status == "already-ok"


def test_a_helpdesk_administrator_cannot_re_enable_an_administrator(m365: M365Env) -> None:
    m365.graph.add_user("exadmin", enabled=False, roles=["Exchange Administrator"])
    m365.reconfigure(allow_privileged=True)
    m365.graph.caller_roles = {"Helpdesk Administrator"}
    result = m365.run("m365-enable", m365.upn("exadmin"), confirm=None)
    assert result.status == "error" and result.error.kind == "insufficient-rights" and result.exit_code == 3
    assert "to enable exadmin@" in result.error.message


# -- names: unknown, ambiguous, escaped -----------------------------------------------------


def test_unknown_user_lists_candidates_and_ambiguous_names_list_matches(m365: M365Env) -> None:
    m365.graph.add_user("zoe.candidate", display_name="Zoe Candidate")
    result = m365.run("m365-user-status", m365.upn("zoe.candidat"))
    assert result.status == "error" and result.exit_code == 2 and result.error.kind == "unknown-target"
    assert f"did you mean: {m365.upn('zoe.candidate')} (Zoe Candidate)?" in result.error.message
    nothing = m365.cli("m365-password-reset", "qqqq@nowhere.example", "--json")
    assert nothing.code == 2 and nothing.json()["error"]["kind"] == "unknown-target"
    assert "no Microsoft 365 user 'qqqq@nowhere.example'" in nothing.json()["error"]["message"]

    m365.graph.add_user("shared1", mail="team@corp.example", display_name="Team One")
    m365.graph.add_user("team@corp.example", display_name="Team Two")  # a UPN equal to the other's mail
    ambiguous = m365.run("m365-user-status", "team@corp.example")
    assert ambiguous.error and ambiguous.error.kind == "bad-input"
    assert "matches 2 Microsoft 365 users" in ambiguous.error.message and "Team One" in ambiguous.error.message


def test_odata_string_values_are_escaped(m365: M365Env) -> None:
    user_id = m365.graph.add_user("o'brien", display_name="Sean O'Brien", mail="sean+it@corp.example")
    upn = m365.upn("o'brien")
    result = m365.run("m365-password-reset", upn)
    assert result.status == "fixed", result.error
    lookup = m365.graph.api_requests()[0]
    assert lookup["params"]["$filter"] == f"userPrincipalName eq 'o''brien@{m365.graph.domain}' or " + (
        f"mail eq 'o''brien@{m365.graph.domain}'"
    )
    assert "%27o%27%27brien" in lookup["query"]  # percent-encoded on the wire
    guest = f"sean_partner.example#EXT#@{m365.graph.domain}"
    guest_id = m365.graph.add_user(guest, user_type="Guest")
    found = m365.run("m365-user-status", guest)
    assert found.before and found.before["id"] == guest_id and found.before["user_type"] == "Guest"
    assert "%23EXT%23" in m365.graph.api_requests()[-3]["query"]  # '#' would end the URL: encoded
    by_mail = m365.run("m365-user-status", "sean+it@corp.example")  # '+' must reach Graph as %2B, not a space
    assert by_mail.before and by_mail.before["id"] == user_id
    before = len(m365.graph.api_requests())
    for evil in ("x' or startswith(displayName,'S", "') or (mail eq 'sean+it@corp.example", "*"):
        injected = m365.run("m365-password-reset", evil)
        assert injected.error and injected.error.kind == "unknown-target", evil
        assert injected.revealed == []
    assert m365.graph.api_requests("PATCH")[1:] == []  # only the reset above
    assert len(m365.graph.api_requests()) > before


# -- errors: throttling, refusals, transport ------------------------------------------------


def test_429_is_retried_after_retry_after_then_succeeds(m365: M365Env) -> None:
    user_id = m365.graph.add_user("busy")
    m365.graph.inject(429, method="PATCH", retry_after=1)
    started = time.monotonic()
    result = m365.run("m365-password-reset", m365.upn("busy"))
    assert result.status == "fixed", result.error
    assert time.monotonic() - started >= 1.0  # Retry-After was honoured
    patches = m365.graph.api_requests("PATCH")
    assert len(patches) == 2 and patches[0]["body"] == patches[1]["body"]
    assert "retry-attempt" not in patches[0]["headers"] and patches[1]["headers"]["retry-attempt"] == "1"
    assert m365.graph.user(user_id)["_password"] == revealed(result)["temporary password"]


def test_429_that_never_ends_is_reported_after_the_retries(m365: M365Env) -> None:
    m365.graph.add_user("storm")
    m365.reconfigure(max_retries=2)
    m365.graph.inject(429, times=10, method="GET", path="^/users$", retry_after=1)
    started = time.monotonic()
    result = m365.run("m365-user-status", m365.upn("storm"))
    elapsed = time.monotonic() - started
    assert result.status == "error" and result.exit_code == 3 and result.error.kind == "throttled"
    assert result.error.message == (
        f"{m365.upn('storm')}: Microsoft Graph is throttling l1fix (429 Too Many Requests): could not look up "
        f"{m365.upn('storm')}, still refused after 2 retries — try again in 1 s"
    )
    assert len(m365.graph.api_requests()) == 3 and 2.0 <= elapsed < 10


def test_a_retry_after_longer_than_the_limit_is_not_waited_for(m365: M365Env) -> None:
    m365.graph.add_user("slow")
    m365.graph.inject(429, method="GET", retry_after=120)
    started = time.monotonic()
    result = m365.run("m365-user-status", m365.upn("slow"))
    assert time.monotonic() - started < 5
    assert result.error and result.error.kind == "throttled"
    assert "it asks to wait 120 s, more than graph.max_retry_after_s (5)" in result.error.message
    assert len(m365.graph.api_requests()) == 1


def test_503_is_retried_too(m365: M365Env) -> None:
    m365.graph.add_user("flaky")
    m365.graph.inject(503, method="POST", retry_after=1)
    assert m365.run("m365-revoke-sessions", m365.upn("flaky")).status == "fixed"
    assert len(m365.graph.api_requests("POST")) == 2


def test_user_deleted_between_check_and_fix_is_unknown(m365: M365Env) -> None:
    m365.graph.add_user("gone")
    m365.graph.inject(404, method="PATCH")
    result = m365.run("m365-password-reset", m365.upn("gone"))
    assert result.error and result.error.kind == "unknown-target" and result.exit_code == 2
    assert "Request_ResourceNotFound" in result.error.message and result.revealed == []


def test_a_rejected_token_is_an_auth_error_without_the_token(m365: M365Env, monkeypatch: pytest.MonkeyPatch) -> None:
    m365.graph.add_user("tok")
    wrong = "not-the-lab-token-71c3"
    monkeypatch.setenv(TOKEN_ENV, wrong)
    result = m365.run("m365-user-status", m365.upn("tok"))
    assert result.status == "error" and result.exit_code == 3 and result.error.kind == "auth"
    assert "Microsoft Graph refused the configured access token: InvalidAuthenticationToken" in result.error.message
    texts = [str(result.exception), "".join(traceback.format_exception(result.exception)), str(result.to_json())]
    assert all(wrong not in text for text in texts) and wrong.encode() not in m365.journal_bytes()
    assert result.exception.__context__ is None and result.exception.__cause__ is None  # no httpx request kept


def test_tls_is_checked_and_an_unreachable_graph_is_named(m365: M365Env, tmp_path: Path) -> None:
    m365.graph.add_user("tls")
    other = GraphStandIn(tls_cert_dir=tmp_path / "other-tls")  # another CA
    other.start()
    other.stop()
    m365.reconfigure(ca_bundle=str(other.ca_path))
    result = m365.run("m365-user-status", m365.upn("tls"))
    assert result.status == "error" and result.exit_code == 3 and result.error.kind == "tls"
    assert "could not be validated" in result.error.message and "graph.ca_bundle" in result.error.message

    m365.reconfigure(base_url=f"https://127.0.0.1:{other.port}/v1.0")  # nobody listens there now
    result = m365.run("m365-user-status", m365.upn("tls"))
    assert result.error and result.error.kind == "unreachable" and result.exit_code == 3
    assert f"cannot reach https://127.0.0.1:{other.port}/v1.0" in result.error.message
    assert result.exception is not None and result.exception.__context__ is None


def test_missing_settings_are_bad_input_before_any_request(m365: M365Env) -> None:
    (m365.home / "config.toml").write_text(f'default_profile = "{PROFILE}"\n[profiles.{PROFILE}]\n')
    m365.config = load_config()
    result = m365.run("m365-user-status", "someone@corp.example")
    assert (
        result.error and result.error.kind == "bad-input" and "no Microsoft 365 tenant configured" in str(result.error)
    )
    m365.reconfigure(auth="app", access_token=None, tenant_id="corp.example", client_id="c1d2")
    result = m365.run("m365-user-status", "someone@corp.example")
    assert result.error and "needs graph.client_secret or graph.certificate_path" in result.error.message
    assert m365.graph.requests_log == []


def test_without_msgraph_sdk_the_fix_says_what_to_install(m365: M365Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "msgraph", None)  # import msgraph now raises ImportError
    result = m365.run("m365-user-status", "someone@corp.example")
    assert result.error and result.error.kind == "bad-input" and result.exit_code == 2
    assert "need the msgraph-sdk package" in str(result.error) and "l1fix[m365]" in str(result.error)


def test_the_connection_works_from_inside_a_running_event_loop(m365: M365Env) -> None:
    """An async caller (a future HTTP API) runs fixes too: the SDK's loop lives in its own thread."""
    m365.graph.add_user("async")

    async def caller() -> RunResult:
        return m365.run("m365-user-status", m365.upn("async"))

    assert asyncio.run(caller()).status == "already-ok"


# -- sign-in through azure-identity (app secret, certificate, device code) ------------------


def test_app_sign_in_with_a_client_secret(m365: M365Env, monkeypatch: pytest.MonkeyPatch) -> None:
    lab = m365.graph
    lab.add_user("app")
    secret = "lab-client-secret~Q8w.Zt3"
    lab.add_client("11111111-2222-3333-4444-555555555555", secret=secret)
    monkeypatch.setenv(SECRET_ENV, secret)
    m365.reconfigure(
        auth="app",
        access_token=None,
        tenant_id=lab.tenant_id,
        client_id="11111111-2222-3333-4444-555555555555",
        client_secret=f"env:{SECRET_ENV}",
        authority=lab.authority,
    )
    result = m365.run("m365-user-status", m365.upn("app"))
    assert result.status == "already-ok", result.error
    token_calls = [r for r in lab.requests_log if r["path"].endswith("/oauth2/v2.0/token")]
    assert len(token_calls) == 1 and b"grant_type=client_credentials" in token_calls[0]["body"]
    assert b"scope=https%3A%2F%2F127.0.0.1%2F.default" in token_calls[0]["body"]

    monkeypatch.setenv(SECRET_ENV, "wrong-secret-Zq9~x")
    failed = m365.run("m365-user-status", m365.upn("app"))
    assert failed.status == "error" and failed.exit_code == 3 and failed.error.kind == "auth"
    assert "the client secret is wrong (AADSTS7000215)" in failed.error.message
    texts = [str(failed.exception), "".join(traceback.format_exception(failed.exception)), str(failed.to_json())]
    for value in (secret, "wrong-secret-Zq9~x"):
        assert all(value not in text for text in texts) and value.encode() not in m365.journal_bytes()


def _rsa_certificate(path: Path) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "l1fix-app")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(key_pem + pem)
    path.chmod(0o600)
    return pem


def test_app_sign_in_with_a_certificate(m365: M365Env, tmp_path: Path) -> None:
    lab = m365.graph
    lab.add_user("cert")
    registered = _rsa_certificate(tmp_path / "registered.pem")
    lab.add_client("cert-app", certificate_pem=registered)
    m365.reconfigure(
        auth="app",
        access_token=None,
        tenant_id=lab.tenant_id,
        client_id="cert-app",
        certificate_path=str(tmp_path / "registered.pem"),
        authority=lab.authority,
    )
    assert m365.run("m365-user-status", m365.upn("cert")).status == "already-ok"
    token_call = [r for r in lab.requests_log if r["path"].endswith("/oauth2/v2.0/token")][-1]
    assert (
        b"client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
        in (token_call["body"])
    )

    _rsa_certificate(tmp_path / "other.pem")  # a key the app registration does not know
    m365.reconfigure(
        auth="app",
        access_token=None,
        tenant_id=lab.tenant_id,
        client_id="cert-app",
        certificate_path=str(tmp_path / "other.pem"),
        authority=lab.authority,
    )
    failed = m365.run("m365-user-status", m365.upn("cert"))
    assert failed.error and failed.error.kind == "auth" and "AADSTS700027" in failed.error.message

    (tmp_path / "broken.pem").write_text("not a certificate")
    m365.reconfigure(
        auth="app",
        access_token=None,
        tenant_id=lab.tenant_id,
        client_id="cert-app",
        certificate_path=str(tmp_path / "broken.pem"),
        authority=lab.authority,
    )
    broken = m365.run("m365-user-status", m365.upn("cert"))
    assert broken.error and broken.error.kind == "bad-input" and "could not be loaded" in broken.error.message


def test_device_code_sign_in_shows_the_code_and_acts_as_the_technician(
    m365: M365Env, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = m365.graph
    lab.add_user("tech1", display_name="Tech One", roles=["Helpdesk Administrator"])
    lab.add_user("caller")
    lab.add_client("public-app")
    lab.device_auto_approve = m365.upn("tech1")
    m365.reconfigure(
        auth="device-code",
        access_token=None,
        tenant_id=lab.tenant_id,
        client_id="public-app",
        authority=lab.authority,
        token_cache=False,
    )
    result = m365.run("m365-password-reset", m365.upn("caller"))
    assert result.status == "fixed", result.error
    err = capsys.readouterr().err
    assert f"to sign in to Microsoft 365, open {lab.authority}/devicelogin and enter the code " in err
    assert [r["path"] for r in lab.requests_log if "oauth2" in r["path"]] == [
        f"/{lab.tenant_id}/oauth2/v2.0/devicecode",
        f"/{lab.tenant_id}/oauth2/v2.0/token",
    ]
    lab.add_user("boss", roles=["Global Administrator"])
    lab.caller_roles = {"Helpdesk Administrator"}  # the technician's own role applies (delegated)
    m365.reconfigure(
        auth="device-code",
        access_token=None,
        tenant_id=lab.tenant_id,
        client_id="public-app",
        authority=lab.authority,
        token_cache=False,
        allow_privileged=True,
    )
    denied = m365.run("m365-password-reset", m365.upn("boss"))
    assert denied.error and denied.error.kind == "insufficient-rights"
    assert denied.error.message.startswith(
        f"{m365.upn('boss')}: your account ({m365.upn('tech1')}) lacks the permission or the directory role"
    )


def test_device_code_sign_in_is_kept_in_the_keychain_or_says_why_not(
    m365: M365Env, capsys: pytest.CaptureFixture[str]
) -> None:
    from l1fix.targets.graph import AUTH_RECORD

    lab = m365.graph
    lab.add_user("tech2")
    lab.add_user("caller2")
    lab.add_client("public-app")
    lab.device_auto_approve = m365.upn("tech2")
    m365.reconfigure(
        auth="device-code", access_token=None, tenant_id=lab.tenant_id, client_id="public-app", authority=lab.authority
    )
    assert m365.run("m365-user-status", m365.upn("caller2")).status == "already-ok"
    err = capsys.readouterr().err
    record = m365.home / AUTH_RECORD
    assert ("no OS keychain to keep the Microsoft 365 sign-in" in err) != record.exists()
    if record.exists():  # kept: no token in it, readable by the technician only
        assert record.stat().st_mode & 0o077 == 0 and "lab-" not in record.read_text()


def test_device_code_sign_in_is_reused_by_the_next_run_when_kept(
    m365: M365Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With a token cache (here a plain file standing in for the OS keychain) the next run signs in silently."""
    import azure.identity

    from l1fix.targets.graph import AUTH_RECORD

    real = azure.identity.TokenCachePersistenceOptions
    monkeypatch.setattr(
        azure.identity, "TokenCachePersistenceOptions", lambda **kw: real(**kw, allow_unencrypted_storage=True)
    )
    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))  # where msal-extensions keeps that file
    lab = m365.graph
    lab.add_user("tech3")
    lab.add_user("caller3")
    lab.add_client("public-app")
    lab.device_auto_approve = m365.upn("tech3")
    m365.reconfigure(
        auth="device-code", access_token=None, tenant_id=lab.tenant_id, client_id="public-app", authority=lab.authority
    )
    for _ in range(2):
        result = m365.run("m365-user-status", m365.upn("caller3"))
        assert result.status == "already-ok", result.error
    assert capsys.readouterr().err.count("to sign in to Microsoft 365") == 1  # once, not every run
    assert [r["path"].rsplit("/", 1)[-1] for r in lab.requests_log if "oauth2" in r["path"]] == ["devicecode", "token"]
    saved = json.loads((m365.home / AUTH_RECORD).read_text())
    assert saved["for"]["client_id"] == "public-app" and "lab-" not in json.dumps(saved)  # who, never a token

    m365.reconfigure(  # another app: that sign-in is not reused
        auth="device-code", access_token=None, tenant_id=lab.tenant_id, client_id="other-app", authority=lab.authority
    )
    lab.add_client("other-app")
    assert m365.run("m365-user-status", m365.upn("caller3")).status == "already-ok"
    assert capsys.readouterr().err.count("to sign in to Microsoft 365") == 1


# -- secrets --------------------------------------------------------------------------------


def test_no_password_or_token_reaches_the_journal_json_errors_or_glpi(lab: Any, graph_lab: GraphStandIn) -> None:
    """Every M365 fix with ticket 1234 (GLPI stand-in), CLI and API; then look for every secret everywhere."""
    import os

    os.environ[TOKEN_ENV] = TOKEN
    try:
        with (lab.home / "config.toml").open("a") as fh:
            fh.write("\n" + config_toml(graph_lab, profile="lab", default=False))
        config = load_config(None, "lab")
        graph_lab.add_user("secret.user", display_name="Secret User", enabled=False)
        upn = f"secret.user@{graph_lab.domain}"
        secrets: list[str] = [TOKEN]
        outputs: list[str] = []
        exceptions: list[str] = []

        def keep(result: RunResult) -> RunResult:
            secrets.extend(s.reveal() for _, s in result.revealed)
            outputs.append(json.dumps(result.to_json()) + result.summary)
            if result.exception is not None:
                exceptions.append("".join(traceback.format_exception(result.exception)))
            return result

        def run(action: str, params: dict[str, Any] | None = None, **options: Any) -> RunResult:
            return keep(execute_journaled(action, upn, params, config=config, ticket=1234, **options))

        assert run("m365-user-status").status == "already-ok"
        assert run("m365-enable", confirm=None).status == "fixed"
        assert run("m365-password-reset").status == "fixed"  # generated
        assert run("m365-revoke-sessions").status == "fixed"
        graph_lab.inject(400, method="PATCH", code="Request_BadRequest", message=COMPLEXITY)
        refused = "Refused-By-Entra-77"
        secrets.append(refused)
        assert run("m365-password-reset", {"password": Secret(refused)}).error.kind == "password-policy"
        weak = "weak-99"
        secrets.append(weak)
        assert run("m365-password-reset", {"password": Secret(weak)}).error.kind == "password-policy"

        supplied = "Supplied-M365-Pw-3141"
        secrets.append(supplied)
        args = ("--profile", "lab", "m365-password-reset", upn, "--ticket", "1234", "--json")
        cli = run_cli(*args, "--password-stdin", home=lab.home, stdin=supplied + "\n")
        assert cli.code == 0 and cli.json()["params"]["password"] == "[redacted]", cli.stderr
        outputs.append(cli.stdout + cli.stderr)  # supplied: nothing revealed, so nothing on stderr either
        generated = run_cli("--profile", "lab", "m365-password-reset", upn, "--ticket", "1234", "--json", home=lab.home)
        assert generated.code == 0, generated.stderr
        shown = dict(line.split(": ", 1) for line in generated.stderr.splitlines() if ": " in line)
        secrets.append(shown["temporary password"])
        assert generated.stderr.count(shown["temporary password"]) == 1
        outputs.append(generated.stdout)  # stdout only: stderr is the terminal where it is shown once

        journal = b"".join(p.read_bytes() for p in sorted(lab.home.glob("journal.sqlite3*")))
        glpi_bodies = [r["body"] for r in lab.glpi.requests_log]
        followups = [b for b in glpi_bodies if b"m365-" in b]
        assert journal and len(followups) >= 6  # every run left its followup on ticket 1234
        patched = [r["body"] for r in graph_lab.api_requests("PATCH")]
        for secret in secrets:
            assert secret.encode() not in journal, "a secret reached the journal"
            assert not any(secret in text for text in outputs), "a secret reached --json or a summary"
            assert not any(secret in text for text in exceptions), "a secret reached an exception"
            assert not any(secret.encode() in body for body in glpi_bodies), "a secret reached GLPI"
        assert any(supplied.encode() in body for body in patched)  # Graph itself must receive it, of course
    finally:
        os.environ.pop(TOKEN_ENV, None)


# -- fast start -----------------------------------------------------------------------------


def test_m365_actions_and_their_help_import_no_graph_library(home: Path) -> None:
    code = (
        "import sys, json\n"
        "sys.argv = ['l1fix', 'm365-password-reset', '--help']\n"
        "from l1fix.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**_env(), "L1FIX_HOME": str(home)},
    )
    modules = set(json.loads(proc.stderr.strip().splitlines()[-1]))
    assert "--password-stdin" in proc.stdout
    assert not modules & {"msgraph", "msgraph_core", "azure", "kiota_abstractions", "httpx", "msal", "asyncio"}


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_the_lab_tenant_and_its_profile_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `l1fix lab` can start beside the PCs: a seeded tenant and a profile that reaches it."""
    from l1fix.lab.graph import profile_lines, seed

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("L1FIX_HOME", str(home))
    graph = GraphStandIn(tokens=["lab-file-token-1"], tls_cert_dir=home / "lab" / "graph-tls")
    with graph:
        seed(graph)
        (home / "lab").mkdir(exist_ok=True)
        (home / "lab" / "graph-token").write_text("lab-file-token-1")
        (home / "lab" / "graph-token").chmod(0o600)
        toml = 'default_profile = "lab"\n' + "\n".join(profile_lines(graph, "lab", "lab/graph-token")) + "\n"
        (home / "config.toml").write_text(toml)
        config = load_config()
        status = execute_journaled("m365-user-status", f"mleroy@{graph.domain}", config=config)
        assert status.status == "already-ok" and status.before and status.before["enabled"] is False, status.error
        admin = execute_journaled("m365-password-reset", f"admin.it@{graph.domain}", config=config)
        assert admin.error and admin.error.kind == "refused"
        synced = execute_journaled("m365-enable", f"pmartin@{graph.domain}", config=config, confirm=None)
        assert synced.status == "already-ok"  # enabled: nothing to do, even if synced

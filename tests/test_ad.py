"""The AD fixes against a real Samba AD domain controller on loopback (see samba_dc.py)."""

from __future__ import annotations

import datetime as dt
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import run_cli
from l1fix.config import Config, load_config
from l1fix.errors import BadInput, Refused, TlsFailure
from l1fix.passwords import character_classes, read_back
from l1fix.result import RunResult
from l1fix.runner import execute_journaled
from l1fix.secrets import Secret
from samba_dc import LDAPS_PORT, MIN_PASSWORD_LENGTH, SambaDC, samba_dc  # noqa: F401

PASSWORD_ENV = "L1FIX_TEST_AD_PASSWORD"


@dataclass
class AdEnv:
    """An l1fix home whose `ad` profile points at the DC, bound as the domain Administrator."""

    dc: SambaDC
    home: Path
    config: Config

    def reconfigure(self, **ldap: object) -> Config:
        (self.home / "config.toml").write_text(self.dc.config_toml(**ldap))
        self.config = load_config()
        return self.config

    def run(self, action: str, user: str, params: dict[str, Any] | None = None, **options: Any) -> RunResult:
        return execute_journaled(action, user, params, config=self.config, **options)

    def cli(self, *args: str, stdin: str = "") -> Any:
        return run_cli(*args, home=self.home, stdin=stdin)

    def account(self, user: str) -> dict[str, Any]:
        result = self.run("ad-user-status", user)
        assert result.status == "already-ok", result.error
        return result.before or {}

    def lock_out(self, user: str) -> None:
        for _ in range(3):
            ok, message = self.dc.try_bind(f"{user}@l1fix.test", "Wrong-Password-9x")
            assert not ok and ("data 52e" in message or "data 775" in message)

    def journal_bytes(self) -> bytes:
        return b"".join(p.read_bytes() for p in sorted(self.home.glob("journal.sqlite3*")))


@pytest.fixture
def ad(samba_dc: SambaDC, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AdEnv:  # noqa: F811
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("L1FIX_HOME", str(home))
    monkeypatch.setenv(PASSWORD_ENV, samba_dc.admin_password)
    (home / "config.toml").write_text(samba_dc.config_toml())
    return AdEnv(samba_dc, home, load_config())


def upn(name: str) -> str:
    return f"{name}@l1fix.test"


# -- the DC itself -------------------------------------------------------------------------


def _listening(port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of the sockets listening on `port`."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hexport = local.rsplit(":", 1)
            if state == "0A" and int(hexport, 16) == port:
                found.append(address)
    return found


def test_the_dc_is_on_loopback_only_and_found_by_its_own_pid_file(samba_dc: SambaDC) -> None:  # noqa: F811
    from samba_dc import _Manager, shared_folder

    loopback = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1, ::1
    for port in (389, LDAPS_PORT):
        assert _listening(port) and set(_listening(port)) <= loopback
    pid = _Manager(shared_folder())._running_pid()
    assert pid is not None and Path(f"/proc/{pid}/exe").resolve().name == "samba"
    assert samba_dc.root == shared_folder() / "live" and samba_dc.ca_file.is_file()


# -- reading --------------------------------------------------------------------------------


def test_status_of_a_normal_user(ad: AdEnv) -> None:
    name, _ = ad.dc.add_user("norm", given_name="Jean", surname="Normal")
    result = ad.run("ad-user-status", name)
    assert result.status == "already-ok" and result.exit_code == 0, result.error
    state = result.before or {}
    assert state["sam_account_name"] == name and state["user_principal_name"] == upn(name)
    assert state["enabled"] is True and state["locked"] is False and state["protected"] is False
    assert state["must_change_password"] is False and state["password_expired"] is False
    assert state["bad_pwd_count"] == 0 and state["last_logon"] is None
    set_at = dt.datetime.fromisoformat(state["pwd_last_set"])
    assert abs((dt.datetime.now(dt.UTC) - set_at).total_seconds()) < 600
    assert f"{name} (Jean Normal): enabled, not locked" in result.summary
    # the same account by UPN and by DOMAIN\name
    assert ad.account(upn(name))["dn"] == state["dn"] == ad.account(f"L1FIX\\{name}")["dn"]


def test_domain_password_policy_is_read_from_the_domain(ad: AdEnv) -> None:
    from l1fix.targets.ldap import Directory

    directory = Directory.open(ad.config.ldap, target="policy")
    try:
        policy = directory.password_policy()
    finally:
        directory.close()
    assert (policy.min_length, policy.complexity, policy.history_length) == (MIN_PASSWORD_LENGTH, True, 24)
    assert (policy.lockout_threshold, policy.lockout_minutes) == (3, 30)
    assert policy.describe() == (
        "domain policy: at least 14 characters, 3 of 4 character classes (upper, lower, digit, symbol), "
        "not the user's name, not one of the last 24 passwords, locked for 30 min after 3 bad passwords"
    )


def test_a_fine_grained_policy_makes_the_generated_password_longer(ad: AdEnv) -> None:
    name, _ = ad.dc.add_user("pso")
    pso = f"l1fix-{name}"
    ad.dc.tool("domain", "passwordsettings", "pso", "create", pso, "1", "--min-pwd-length=21", "--complexity=on")
    ad.dc.tool("domain", "passwordsettings", "pso", "apply", pso, name)
    try:
        result = ad.run("ad-password-reset", name)
        assert result.status == "fixed", result.error
        password = dict(result.revealed)["temporary password"].reveal()
        assert len(password) >= 21
    finally:
        ad.dc.tool("domain", "passwordsettings", "pso", "delete", pso, check=False)


# -- password reset -------------------------------------------------------------------------


def test_reset_with_must_change_then_a_bind_needs_a_password_change(ad: AdEnv) -> None:
    name, old_password = ad.dc.add_user("reset", given_name="Anna", surname="Reset")
    result = ad.run("ad-password-reset", name, ticket=1235)
    assert result.status == "fixed", result.error
    labels = [label for label, _ in result.revealed]
    assert labels == ["temporary password", "read back"]
    password = result.revealed[0][1].reveal()
    assert len(password) >= MIN_PASSWORD_LENGTH and character_classes(password) == 4
    assert result.revealed[1][1].reveal() == read_back(password)
    assert result.done == {
        "summary": "password reset (generated, shown to the technician), must change at next logon",
        "password": "generated",
        "must_change": True,
        "unlocked": False,
    }
    assert result.after and result.after["must_change_password"] is True and result.after["pwd_last_set"] is None
    ok, message = ad.dc.try_bind(upn(name), password)
    assert not ok and "data 773" in message  # AD: right password, must change it first
    ok, message = ad.dc.try_bind(upn(name), old_password)
    assert not ok and "data 52e" in message


def test_reset_unlocks_a_locked_account(ad: AdEnv) -> None:
    name, _ = ad.dc.add_user("rlock")
    ad.lock_out(name)
    assert ad.account(name)["locked"] is True
    result = ad.run("ad-password-reset", name)
    assert result.status == "fixed", result.error
    assert result.before and result.before["locked"] is True
    assert result.after and result.after["locked"] is False and result.done and result.done["unlocked"] is True
    ok, message = ad.dc.try_bind(upn(name), result.revealed[0][1].reveal())
    assert "data 773" in message  # not 775: unlocked


def test_reset_twice_while_must_change_is_still_verified(ad: AdEnv) -> None:
    name, _ = ad.dc.add_user("twice")
    first = ad.run("ad-password-reset", name)
    assert first.status == "fixed"
    second = ad.run("ad-password-reset", name)  # pwdLastSet was 0 already: the USN proves the write
    assert second.status == "fixed", second.summary
    assert second.revealed[0][1] != first.revealed[0][1]
    assert "data 773" in ad.dc.try_bind(upn(name), second.revealed[0][1].reveal())[1]


def test_no_must_change_is_refused_unless_the_profile_allows_it(ad: AdEnv) -> None:
    name, _ = ad.dc.add_user("keep")
    before = ad.account(name)
    refused = ad.run("ad-password-reset", name, {"must-change": False, "password": Secret("Kept-Pw-4567-xyz")})
    assert refused.status == "error" and refused.exit_code == 2 and refused.error.kind == "refused"
    assert "allow_no_must_change" in refused.error.message
    assert ad.account(name)["pwd_last_set_raw"] == before["pwd_last_set_raw"]

    ad.reconfigure(allow_no_must_change=True)
    result = ad.run("ad-password-reset", name, {"must-change": False, "password": Secret("Kept-Pw-4567-xyz")})
    assert result.status == "fixed", result.error
    assert result.revealed == []  # the technician typed it: nothing to show
    assert result.after and result.after["must_change_password"] is False
    assert ad.dc.try_bind(upn(name), "Kept-Pw-4567-xyz") == (True, "")


def test_weak_supplied_password_is_refused_with_the_policy_message(ad: AdEnv) -> None:
    name, _ = ad.dc.add_user("weak")
    before = ad.account(name)
    for weak in ("Short-7x", "alllowercaseletters"):
        result = ad.run("ad-password-reset", name, {"password": Secret(weak)})
        assert result.status == "error" and result.exit_code == 2
        assert result.error.kind == "password-policy"
        assert "does not meet the password policy (length, complexity or history)" in result.error.message
        assert weak not in result.error.message and weak not in repr(result.exception)
    assert ad.account(name)["pwd_last_set_raw"] == before["pwd_last_set_raw"]
    out = ad.cli("ad-password-reset", name, "--password-stdin", stdin="Short-7x\n")
    assert out.code == 2 and "does not meet the password policy" in out.stderr
    assert "Short-7x" not in out.stdout + out.stderr


def test_insufficient_rights_are_named(ad: AdEnv) -> None:
    helper, helper_password = ad.dc.add_user("nohelp")
    victim, _ = ad.dc.add_user("victim")
    (ad.home / "helper.pw").write_text(helper_password)
    (ad.home / "helper.pw").chmod(0o600)
    ad.reconfigure(bind_user=upn(helper), bind_password=f"file:{ad.home / 'helper.pw'}")
    result = ad.run("ad-password-reset", victim)
    assert result.status == "error" and result.exit_code == 3 and result.error.kind == "insufficient-rights"
    assert f"your account ({upn(helper)}) lacks the right to reset the password of {victim}" in result.error.message
    assert result.revealed == []  # nothing shown: the password was never set


# -- lockout, unlock, enable ----------------------------------------------------------------


def test_lockout_status_unlock_and_bind_again(ad: AdEnv) -> None:
    name, password = ad.dc.add_user("lock")
    assert ad.run("ad-unlock", name).status == "already-ok"
    ad.lock_out(name)
    ok, message = ad.dc.try_bind(upn(name), password)
    assert not ok and "data 775" in message  # even the right password: locked out
    status = ad.run("ad-user-status", name)
    assert status.before and status.before["locked"] is True and status.before["bad_pwd_count"] == 3
    assert status.before["lockout_time"] is not None and "LOCKED OUT" in status.summary
    result = ad.run("ad-unlock", name, ticket=7)
    assert result.status == "fixed" and result.after and result.after["locked"] is False
    assert ad.dc.try_bind(upn(name), password) == (True, "")
    assert ad.run("ad-unlock", name).status == "already-ok"


def test_enable_asks_for_confirmation(ad: AdEnv) -> None:
    name, password = ad.dc.add_user("dis")
    ad.dc.tool("user", "disable", name)
    assert ad.account(name)["enabled"] is False
    declined = ad.run("ad-enable", name, confirm=lambda question: False)
    assert declined.status == "skipped" and ad.account(name)["enabled"] is False
    out = ad.cli("ad-enable", name)  # no terminal to ask on, no --yes
    assert out.code == 2 and "--yes" in out.stderr
    asked: list[str] = []
    result = ad.run("ad-enable", name, confirm=lambda question: asked.append(question) or True)
    assert result.status == "fixed" and result.after and result.after["enabled"] is True
    assert "DISABLED" in asked[0] and "ad-enable" in asked[0]
    assert ad.dc.try_bind(upn(name), password) == (True, "")
    assert ad.run("ad-enable", name, confirm=None).status == "already-ok"


# -- refusals and bad input -----------------------------------------------------------------


def test_unknown_user_is_bad_input_listing_candidates(ad: AdEnv) -> None:
    name, _ = ad.dc.add_user("cand", given_name="Zoe", surname="Candidate")
    result = ad.run("ad-user-status", name + "x")
    assert result.status == "error" and result.exit_code == 2 and result.error.kind == "unknown-target"
    assert f"did you mean: {name} (Zoe Candidate)" in result.error.message
    nothing = ad.cli("ad-password-reset", "qqqqnobody", "--json")
    assert nothing.code == 2 and nothing.json()["error"]["kind"] == "unknown-target"
    assert "no AD user 'qqqqnobody'" in nothing.json()["error"]["message"]


def test_ldap_filter_injection_is_escaped(ad: AdEnv) -> None:
    for evil in ("*)(objectClass=*", "*", "Administrator)(|(sAMAccountName=*", "x\\2a"):
        result = ad.run("ad-password-reset", evil)
        assert result.status == "error" and result.exit_code == 2 and result.error.kind == "unknown-target", evil
        assert result.revealed == []
    name, _ = ad.dc.add_user("pa(r)en")  # parentheses are legal in a sAMAccountName
    assert ad.account(name)["sam_account_name"] == name


def test_protected_accounts_are_refused(ad: AdEnv) -> None:
    admin = ad.run("ad-password-reset", "Administrator")
    assert admin.status == "error" and admin.exit_code == 2 and admin.error.kind == "refused"
    assert "the built-in Administrator account" in admin.error.message and "L2" in admin.error.message
    member, _ = ad.dc.add_user("da")
    ad.dc.add_to_group("Domain Admins", member)
    nested_group = ad.dc.add_group("nest")
    ad.dc.add_to_group("Domain Admins", nested_group)
    nested, _ = ad.dc.add_user("nested")
    ad.dc.add_to_group(nested_group, nested)
    for user in (member, nested):
        before = ad.account(user)
        assert before["protected"] is True and "member of Domain Admins" in before["protected_because"]
        for dry_run in (True, False):
            refused = ad.run("ad-password-reset", user, dry_run=dry_run)
            assert refused.status == "error" and refused.error.kind == "refused", (user, dry_run)
            assert "member of Domain Admins" in refused.error.message
        assert ad.account(user)["pwd_last_set_raw"] == before["pwd_last_set_raw"]
    ad.dc.tool("user", "disable", nested)
    assert ad.run("ad-enable", nested, confirm=None).error.kind == "refused"
    assert ad.run("ad-unlock", "Administrator").status == "already-ok"  # unlocking gives no one a password

    ad.reconfigure(allow_protected=True)
    assert ad.run("ad-password-reset", member).status == "fixed"


# -- the connection: TLS, clear text, credentials -------------------------------------------


def test_starttls_works_and_plain_ldap_is_refused(ad: AdEnv) -> None:
    name, _ = ad.dc.add_user("tls")
    ad.reconfigure(url=f"ldap://{ad.dc.address}", starttls=True)
    assert ad.run("ad-password-reset", name).status == "fixed"  # a password write over StartTLS

    (ad.home / "config.toml").write_text(ad.dc.config_toml(url=f"ldap://{ad.dc.address}"))
    with pytest.raises(BadInput, match="clear text"):
        load_config()
    out = ad.cli("ad-user-status", name)
    assert out.code == 2 and "would send the bind password in clear text" in out.stderr


def test_password_writes_are_refused_on_an_unencrypted_connection(ad: AdEnv) -> None:
    """Even a Directory built around a plain connection refuses before sending anything."""
    import ldap3

    from l1fix.targets.ldap import Directory

    name, _ = ad.dc.add_user("plain")
    before = ad.account(name)
    conn = ldap3.Connection(ldap3.Server(ad.dc.address, port=389, get_info=ldap3.NONE), raise_exceptions=False)
    assert conn.bind()  # anonymous, in clear
    plain = Directory(conn, ad.config.ldap, target=name, where=f"ldap://{ad.dc.address}:389")
    secure = Directory.open(ad.config.ldap, target=name)
    try:
        assert not plain.encrypted and secure.encrypted
        account = secure.find_user(name)
        with pytest.raises(Refused, match="unencrypted connection"):
            plain.reset_password(account, Secret("Plain-Text-Pw-456"), must_change=True, unlock=False)
    finally:
        plain.close()
        secure.close()
    assert ad.account(name)["pwd_last_set_raw"] == before["pwd_last_set_raw"]


def _other_ca(path: Path) -> Path:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "DC1.l1fix.test")])  # same name, other key
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_wrong_ca_or_wrong_server_name_is_a_tls_failure(ad: AdEnv, tmp_path: Path) -> None:
    ad.reconfigure(ca_bundle=str(_other_ca(tmp_path / "other-ca.pem")))
    result = ad.run("ad-user-status", "Administrator")
    assert result.status == "error" and result.exit_code == 3 and result.error.kind == "tls"
    assert "could not be validated" in result.error.message and "ca_bundle" in result.error.message
    assert isinstance(result.exception, TlsFailure)

    ad.reconfigure(server_name="dc2.l1fix.test")  # the right CA, another name: checked even by IP
    result = ad.run("ad-user-status", "Administrator")
    assert result.error.kind == "tls" and "Hostname mismatch" in result.error.message

    ad.reconfigure(url=f"ldap://{ad.dc.address}", starttls=True, server_name="dc2.l1fix.test")
    assert ad.run("ad-user-status", "Administrator").error.kind == "tls"  # StartTLS checks it too


def test_unreachable_dc(ad: AdEnv) -> None:
    ad.reconfigure(url=f"ldaps://{ad.dc.address}:{LDAPS_PORT + 1}")
    result = ad.run("ad-user-status", "Administrator")
    assert result.status == "error" and result.exit_code == 3 and result.error.kind == "unreachable"
    assert f"cannot connect to ldaps://{ad.dc.address}:{LDAPS_PORT + 1}" in result.error.message


def test_bind_failure_never_shows_the_password(ad: AdEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    from l1fix.targets.ldap import Directory

    wrong = "Wrong-Bind-Secret-8271"
    monkeypatch.setenv(PASSWORD_ENV, wrong)
    result = ad.run("ad-user-status", "Administrator")
    assert result.status == "error" and result.exit_code == 3 and result.error.kind == "auth"
    assert "refused the bind as Administrator@l1fix.test: wrong user name or password" in result.error.message
    texts = [
        str(result.exception),
        repr(result.exception),
        "".join(traceback.format_exception(result.exception)),
        str(result.to_json()),
    ]
    assert all(wrong not in text for text in texts)
    assert ad.journal_bytes() and wrong.encode() not in ad.journal_bytes()

    monkeypatch.setenv(PASSWORD_ENV, ad.dc.admin_password)  # bound: ldap3's Connection no longer holds it
    directory = Directory.open(ad.config.ldap, target="x")
    try:
        assert ad.dc.admin_password not in repr(directory) + repr(directory._conn) + str(vars(directory._conn))
    finally:
        directory.close()


def test_a_locked_bind_account_is_named(ad: AdEnv) -> None:
    helper, helper_password = ad.dc.add_user("lockhelp")
    (ad.home / "helper.pw").write_text(helper_password)
    (ad.home / "helper.pw").chmod(0o600)
    ad.reconfigure(bind_user=upn(helper), bind_password=f"file:{ad.home / 'helper.pw'}")
    ad.lock_out(helper)
    result = ad.run("ad-user-status", helper)
    assert result.error.kind == "auth" and "the account is locked out" in result.error.message


# -- through the command line, and secrets everywhere --------------------------------------


def test_cli_reset_shows_the_password_once_on_the_terminal(ad: AdEnv) -> None:
    name, _ = ad.dc.add_user("cli")
    out = ad.cli("ad-password-reset", name, "--ticket", "1235", "--json")
    assert out.code == 0, out.stderr
    data = out.json()
    assert data["status"] == "fixed" and data["ticket"] == 1235 and data["target"] == name
    shown = dict(line.split(": ", 1) for line in out.stderr.splitlines() if ": " in line)
    password = shown["temporary password"]
    assert shown["read back"] == read_back(password)
    assert password not in out.stdout and out.stderr.count(password) == 1
    assert "data 773" in ad.dc.try_bind(upn(name), password)[1]
    human = ad.cli("ad-user-status", name)
    assert human.code == 0 and "must change password at next logon" in human.stdout


def test_no_secret_reaches_the_journal_json_or_errors(ad: AdEnv) -> None:
    """Run every AD fix (CLI and API), then look for every password in every record."""
    secrets: list[str] = [ad.dc.admin_password]
    outputs: list[str] = []
    exceptions: list[str] = []

    def keep(result: RunResult) -> RunResult:
        secrets.extend(s.reveal() for _, s in result.revealed)
        outputs.append(str(result.to_json()))
        if result.exception is not None:
            exceptions.append("".join(traceback.format_exception(result.exception)))
        return result

    name, _ = ad.dc.add_user("sec")
    ad.lock_out(name)
    keep(ad.run("ad-user-status", name))
    keep(ad.run("ad-password-reset", name))  # generated, unlocks
    supplied = "Supplied-Secret-Pw-3141"
    secrets.append(supplied)
    cli = ad.cli("ad-password-reset", name, "--password-stdin", "--json", stdin=supplied + "\n")
    assert cli.code == 0 and cli.json()["params"]["password"] == "[redacted]"
    outputs.append(cli.stdout + cli.stderr)  # supplied: nothing revealed, so nothing on stderr either
    weak = "weak-9"
    secrets.append(weak)
    failed = ad.cli("ad-password-reset", name, "--password-stdin", "--json", stdin=weak + "\n")
    assert failed.code == 2
    outputs.append(failed.stdout + failed.stderr)
    keep(ad.run("ad-password-reset", name, {"password": Secret(weak)}))
    ad.lock_out(name)
    keep(ad.run("ad-unlock", name))
    ad.dc.tool("user", "disable", name)
    keep(ad.run("ad-enable", name, confirm=None))
    generated = ad.cli("ad-password-reset", name, "--json")
    assert generated.code == 0
    password = dict(line.split(": ", 1) for line in generated.stderr.splitlines() if ": " in line)
    secrets.append(password["temporary password"])
    outputs.append(generated.stdout)  # stdout only: stderr is the terminal where it is shown once

    journal = ad.journal_bytes()
    assert len(secrets) >= 5 and journal
    for secret in secrets:
        assert secret.encode() not in journal, "a password reached the journal"
        assert secret.encode("utf-16-le") not in journal
        assert not any(secret in text for text in outputs), "a password reached --json or the summary"
        assert not any(secret in text for text in exceptions), "a password reached an exception"


# -- without a DC: the mapping rules --------------------------------------------------------


def _offline_directory() -> Any:
    from l1fix.config import LdapSettings
    from l1fix.targets.ldap import Directory

    settings = LdapSettings(url="ldaps://dc1.corp", bind_user="helpdesk@corp")
    return Directory(object(), settings, target="jdupont", where="ldaps://dc1.corp:636")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("52e", "wrong user name or password"),
        ("773", "its password must be changed first"),
        ("775", "the account is locked out"),
        ("533", "the account is disabled"),
        ("532", "its password has expired"),
        ("999", "invalid credentials"),
    ],
)
def test_bind_refusals_are_mapped_by_their_data_code(data: str, reason: str) -> None:
    message = f"80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data {data}, v1db1"
    error = _offline_directory()._bind_error({"result": 49, "description": "invalidCredentials", "message": message})
    assert error.kind == "auth" and error.exit_code == 3
    assert str(error) == f"jdupont: ldaps://dc1.corp:636 refused the bind as helpdesk@corp: {reason} — " + (
        "check ldap.bind_user and ldap.bind_password in config.toml"
    )


@pytest.mark.parametrize(
    ("result", "kind", "words"),
    [
        (  # Windows: only the code says it
            {
                "result": 19,
                "message": "0000052D: AtrErr: DSID-03191083, #1:\n\t0: 0000052D: DSID-03191083, problem 1005",
            },
            "password-policy",
            "does not meet the password policy (length, complexity or history)",
        ),
        (
            {"result": 50, "message": "00002098: SecErr: DSID-03150F94, problem 4003 (INSUFF_ACCESS_RIGHTS)"},
            "insufficient-rights",
            "your account (helpdesk@corp) lacks the right to reset the password of jdupont",
        ),
        ({"result": 32, "message": "0000208D: NameErr"}, "unknown-target", "does not exist"),
        ({"result": 51, "message": ""}, "unreachable", "busy or unavailable"),
        ({"result": 80, "description": "other", "message": "00000057: LdapErr"}, "remote-error", "other (00000057)"),
    ],
)
def test_operation_errors_are_mapped_by_their_extended_code(result: dict, kind: str, words: str) -> None:
    error = _offline_directory()._operation_error(result, doing="reset the password of", account="jdupont")
    assert error.kind == kind and words in str(error)


def test_an_ambiguous_name_lists_the_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    directory = _offline_directory()
    found = [
        ("CN=a", {"sAMAccountName": [b"jdupont"], "displayName": [b"Jean Dupont"]}),
        ("CN=b", {"sAMAccountName": [b"jdupont2"], "displayName": [b"Julie Dupont"]}),
    ]
    monkeypatch.setattr(directory, "_search", lambda *a, **k: found)
    monkeypatch.setattr(type(directory), "base_dn", "DC=corp")
    with pytest.raises(BadInput, match=r"matches 2 AD users: jdupont \(Jean Dupont\), jdupont2 \(Julie Dupont\)"):
        directory.find_user("jdupont")


def test_sids_filetimes_and_protection() -> None:
    from l1fix.targets.ldap import filetime, protection_reasons, sid_to_str

    raw = bytes.fromhex("01050000000000051500000099136ffcb454344fdc81664000020000")
    assert sid_to_str(raw) == "S-1-5-21-4235137945-1328829620-1080459740-512"
    assert filetime(0) is None and filetime(0x7FFFFFFFFFFFFFFF) is None
    assert filetime(134408927781493400) == "2026-12-04T21:19:38+00:00"
    domain = "S-1-5-21-1-2-3"
    assert protection_reasons(0, f"{domain}-1105", [f"{domain}-513"]) == ()
    assert protection_reasons(1, f"{domain}-1105", [f"{domain}-513"]) == ("adminCount=1",)
    assert protection_reasons(0, f"{domain}-1105", [f"{domain}-513", f"{domain}-512", "S-1-5-32-551"]) == (
        "member of Domain Admins",
        "member of Backup Operators",
    )
    assert protection_reasons(0, f"{domain}-500", [f"{domain}-513"]) == ("the built-in Administrator account",)
    assert protection_reasons(0, f"{domain}-1105", []) == ("its group memberships (tokenGroups) could not be read",)


def test_no_password_reaches_the_ticket_system(ad: AdEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every AD fix run for a ticket: the followups GLPI received hold no password."""
    from l1fix.lab.glpi import GlpiStandIn

    glpi = GlpiStandIn(app_token="ad-test-app", user_tokens={"ad-test-user-token": "tech1"})
    glpi.start()
    try:
        ticket = glpi.add("Ticket", name="Compte bloqué", content="<p>locked</p>", status=2)
        monkeypatch.setenv("L1FIX_TEST_GLPI_USER", "ad-test-user-token")
        monkeypatch.setenv("L1FIX_TEST_GLPI_APP", "ad-test-app")
        glpi_section = (
            f'\n[profiles.{ad.config.profile}.glpi]\nurl = "{glpi.url}"\n'
            'app_token = "env:L1FIX_TEST_GLPI_APP"\nuser_token = "env:L1FIX_TEST_GLPI_USER"\n'
        )
        config_file = ad.home / "config.toml"
        config_file.write_text(config_file.read_text() + glpi_section)
        ad.config = load_config()
        name, _ = ad.dc.add_user("tkt")
        ad.lock_out(name)
        secrets = [ad.dc.admin_password, "Supplied-Ticket-Pw-2718"]
        results = [
            ad.run("ad-user-status", name, ticket=ticket),
            ad.run("ad-password-reset", name, ticket=ticket),
            ad.run("ad-password-reset", name, {"password": Secret(secrets[1])}, ticket=ticket),
        ]
        for result in results:
            assert result.followup and result.followup["state"] == "sent", result.followup
            secrets.extend(s.reveal() for _, s in result.revealed)
        assert len(secrets) >= 3 and len(glpi.items["ITILFollowup"]) == 3
        for request in glpi.requests_log:
            for secret in secrets:
                assert secret.encode() not in request["body"], "a password reached GLPI"
    finally:
        glpi.stop()

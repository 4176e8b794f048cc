"""config.py: profiles, paths, validation and credential references."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from l1fix.actions.service import DEFAULT_ALLOWED_SERVICES
from l1fix.config import Config, WinRMSettings, home_dir, load_config, resolve_secret
from l1fix.errors import BadInput
from l1fix.secrets import Secret


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("L1FIX_HOME", str(path))
    return path


def write_config(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- home and defaults ---------------------------------------------------------------------


def test_home_dir_from_env_is_created(home: Path) -> None:
    assert not home.exists()
    assert home_dir() == home
    assert home.is_dir()


def test_home_dir_defaults_to_user_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import platformdirs

    monkeypatch.delenv("L1FIX_HOME", raising=False)
    monkeypatch.setattr(platformdirs, "user_data_dir", lambda *a, **k: str(tmp_path / "data" / "l1fix"))
    assert home_dir() == tmp_path / "data" / "l1fix"
    assert (tmp_path / "data" / "l1fix").is_dir()


def test_no_config_file_means_defaults(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "alice")
    config = load_config()
    assert config == Config(
        home=home,
        profile="default",
        technician="alice",
        inventory_path=home / "inventory.yml",
        allowed_services=DEFAULT_ALLOWED_SERVICES,
        winrm=WinRMSettings(),
        journal_path=home / "journal.sqlite3",
    )
    assert config.winrm.effective_port == 5986


def test_effective_port() -> None:
    assert WinRMSettings(scheme="http").effective_port == 5985
    assert WinRMSettings(port=15986).effective_port == 15986


def test_explicit_missing_config_file_is_an_error(home: Path, tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="does not exist"):
        load_config(tmp_path / "nope.toml")


# --- profiles ------------------------------------------------------------------------------

FULL = """
default_profile = "lab"

[profiles.lab]
technician = "tech1"
inventory = "inv/lab.yml"
allowed_services = ["Spooler", "BITS"]

[profiles.lab.winrm]
scheme = "https"
port = 15986
transport = "kerberos"
ca_bundle = "certs/lab-ca.pem"
validate_certificate = true
username = 'CORP\\tech1'
password = "file:secrets/winrm.txt"
operation_timeout_s = 10
read_timeout_s = 15
command_timeout_s = 60

[profiles.prod]
inventory = "/etc/l1fix/inventory.yml"

[profiles.prod.winrm]
password = "keyring:l1fix/CORP\\\\tech1"
"""


def test_full_profile_paths_relative_to_config_folder(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    path = folder / "l1fix.toml"
    path.write_text(FULL, encoding="utf-8")
    config = load_config(path)
    assert config.profile == "lab"
    assert config.home == home
    assert config.config_path == path
    assert config.technician == "tech1"
    assert config.inventory_path == folder / "inv" / "lab.yml"
    assert config.allowed_services == ("Spooler", "BITS")
    assert config.journal_path == home / "journal.sqlite3"
    assert config.winrm == WinRMSettings(
        scheme="https",
        port=15986,
        transport="kerberos",
        ca_bundle=folder / "certs" / "lab-ca.pem",
        validate_certificate=True,
        username="CORP\\tech1",
        password=f"file:{folder / 'secrets' / 'winrm.txt'}",
        operation_timeout_s=10,
        read_timeout_s=15,
        command_timeout_s=60.0,
    )


def test_profile_argument_wins(home: Path) -> None:
    write_config(home, FULL)
    config = load_config(profile="prod")
    assert config.profile == "prod"
    assert config.inventory_path == Path("/etc/l1fix/inventory.yml")
    assert config.winrm.password == "keyring:l1fix/CORP\\tech1"
    assert config.allowed_services == DEFAULT_ALLOWED_SERVICES


def test_unknown_profile_lists_known_ones(home: Path) -> None:
    write_config(home, FULL)
    with pytest.raises(BadInput, match=r"unknown profile 'staging'.*lab, prod"):
        load_config(profile="staging")


def test_default_profile_naming_nothing_is_an_error(home: Path) -> None:
    write_config(home, 'default_profile = "ghost"\n[profiles.lab]\n')
    with pytest.raises(BadInput, match="unknown profile 'ghost'"):
        load_config()


@pytest.mark.parametrize(
    ("text", "key", "closest"),
    [
        ('default_profil = "lab"\n', "default_profil", "default_profile"),
        ('[profiles.lab]\ninventry = "x.yml"\n', "inventry", "inventory"),
        ('[profiles.default.winrm]\ntrasport = "ntlm"\n', "trasport", "transport"),
    ],
)
def test_unknown_key_names_key_and_closest(home: Path, text: str, key: str, closest: str) -> None:
    write_config(home, text)
    with pytest.raises(BadInput) as info:
        load_config(profile="lab" if "lab" in text else None)
    assert repr(key) in str(info.value)
    assert repr(closest) in str(info.value)


@pytest.mark.parametrize(
    ("winrm", "message"),
    [
        ('scheme = "ftp"', "https or http"),
        ('transport = "credssp"', "ntlm, kerberos or basic"),
        ('port = "5986"', "port number"),
        ("port = 70000", "port number"),
        ('validate_certificate = "no"', "true or false"),
        ("operation_timeout_s = 0", "seconds"),
        ("operation_timeout_s = 30\nread_timeout_s = 30", "greater than operation_timeout_s"),
        ('scheme = "http"\ntransport = "basic"', "clear text"),
    ],
)
def test_bad_winrm_values(home: Path, winrm: str, message: str) -> None:
    write_config(home, f"[profiles.default.winrm]\n{winrm}\n")
    with pytest.raises(BadInput, match=message):
        load_config()


def test_basic_over_https_is_fine(home: Path) -> None:
    write_config(home, '[profiles.default.winrm]\ntransport = "basic"\n')
    assert load_config().winrm.transport == "basic"


def test_bad_profile_values(home: Path) -> None:
    write_config(home, '[profiles.default]\nallowed_services = "Spooler"\n')
    with pytest.raises(BadInput, match="allowed_services"):
        load_config()


@pytest.mark.parametrize(
    ("entry", "meant"), [("linx:cups", "linux:cups"), ("MacOS:org.cups.cupsd", "macos:org.cups.cupsd")]
)
def test_a_misspelt_os_prefix_in_the_allow_list_is_refused(home: Path, entry: str, meant: str) -> None:
    write_config(home, f'[profiles.default]\nallowed_services = ["Spooler", "{entry}"]\n')
    with pytest.raises(BadInput, match="is not windows, linux or macos") as info:
        load_config()
    assert info.value.hint == f"did you mean {meant!r}?"


def test_an_allow_list_name_with_a_colon_that_is_no_prefix_is_kept(home: Path) -> None:
    write_config(home, '[profiles.default]\nallowed_services = ["linux:cups", "Vendor:Agent"]\n')
    assert load_config().allowed_services == ("linux:cups", "Vendor:Agent")


def test_malformed_toml(home: Path) -> None:
    write_config(home, "[profiles.lab\n")
    with pytest.raises(BadInput, match="malformed TOML.*line 1"):
        load_config()


@pytest.mark.parametrize("password", ["hunter2-Clear", "env:Bad-Name!", "keyring:no-user"])
def test_clear_text_password_is_refused_without_echo(home: Path, password: str) -> None:
    write_config(home, f'[profiles.default.winrm]\npassword = "{password}"\n')
    with pytest.raises(BadInput, match="passwords are never stored in config") as info:
        load_config()
    assert password not in str(info.value)


# --- per-host overrides --------------------------------------------------------------------


def test_with_winrm_merges_overrides(home: Path) -> None:
    write_config(home, '[profiles.default.winrm]\ntransport = "kerberos"\nusername = "CORP\\\\tech"\n')
    config = load_config()
    merged = config.with_winrm(port=15986, ca_bundle="ca/lab.pem", validate_certificate=False)
    assert merged.transport == "kerberos"
    assert merged.username == "CORP\\tech"
    assert merged.port == 15986
    assert merged.ca_bundle == home / "ca" / "lab.pem"
    assert merged.validate_certificate is False
    assert config.winrm.port is None  # the profile is unchanged
    assert config.with_winrm() == config.winrm


def test_with_winrm_validates(home: Path) -> None:
    config = load_config()
    with pytest.raises(BadInput, match="did you mean 'scheme'"):
        config.with_winrm(shceme="http")
    with pytest.raises(BadInput, match="never stored") as info:
        config.with_winrm(password="Pa55word!")
    assert "Pa55word!" not in str(info.value)
    with pytest.raises(BadInput, match="clear text"):
        config.with_winrm(scheme="http", transport="basic")


# --- credential references -----------------------------------------------------------------


def test_resolve_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("L1FIX_TEST_PW", "from-env-1")
    secret = resolve_secret("env:L1FIX_TEST_PW", "WinRM password")
    assert isinstance(secret, Secret)
    assert secret.reveal() == "from-env-1"
    assert "from-env-1" not in repr(secret)


def test_resolve_env_missing_names_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("L1FIX_NOPE", raising=False)
    with pytest.raises(BadInput, match="L1FIX_NOPE is not set"):
        resolve_secret("env:L1FIX_NOPE", "WinRM password")


def test_resolve_file_strips_one_newline(tmp_path: Path) -> None:
    path = tmp_path / "pw.txt"
    path.write_text("line-pw\n\n", encoding="utf-8")
    path.chmod(0o600)
    assert resolve_secret(f"file:{path}", "pw").reveal() == "line-pw\n"
    path.write_text("crlf-pw\r\n", encoding="utf-8")
    assert resolve_secret(f"file:{path}", "pw").reveal() == "crlf-pw"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_resolve_file_refuses_loose_permissions(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "pw.txt"
    path.write_text("loose-secret-77\n", encoding="utf-8")
    path.chmod(mode)
    with pytest.raises(BadInput, match="chmod 600") as info:
        resolve_secret(f"file:{path}", "WinRM password")
    assert "loose-secret-77" not in str(info.value)


def test_resolve_file_missing(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="does not exist"):
        resolve_secret(f"file:{tmp_path / 'none'}", "pw")


def test_resolve_prompt_needs_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("l1fix.config._PROMPTED", {})
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    with pytest.raises(BadInput, match="terminal"):
        resolve_secret("prompt", "WinRM password for PC042")


def test_resolve_prompt_uses_getpass(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty:
        def isatty(self) -> bool:
            return True

    asked: list[str] = []
    monkeypatch.setattr("l1fix.config._PROMPTED", {})
    monkeypatch.setattr(sys, "stdin", Tty())
    monkeypatch.setattr("getpass.getpass", lambda prompt: asked.append(prompt) or "typed-pw")
    assert resolve_secret("prompt", "WinRM password for PC042").reveal() == "typed-pw"
    assert asked == ["WinRM password for PC042: "]


def test_a_fleet_run_prompts_once_per_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    """Twenty targets connecting at once: one prompt for the WinRM password, one for the SSH key."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    class Tty:
        def isatty(self) -> bool:
            return True

    asked: list[str] = []
    at_once = threading.Semaphore(1)

    def getpass(prompt: str) -> str:
        assert at_once.acquire(blocking=False), "two prompts at the same time"
        try:
            asked.append(prompt)
            return f"typed for {prompt}"
        finally:
            at_once.release()

    monkeypatch.setattr("l1fix.config._PROMPTED", {})
    monkeypatch.setattr(sys, "stdin", Tty())
    monkeypatch.setattr("getpass.getpass", getpass)
    labels = ["WinRM password for CORP\\tech", "passphrase of SSH key /k"] * 20
    with ThreadPoolExecutor(20) as pool:
        values = list(pool.map(lambda label: resolve_secret("prompt", label).reveal(), labels))
    assert sorted(asked) == ["WinRM password for CORP\\tech: ", "passphrase of SSH key /k: "]
    assert values == [f"typed for {label}: " for label in labels]


def test_resolve_unknown_form_does_not_echo() -> None:
    with pytest.raises(BadInput) as info:
        resolve_secret("Sup3rSecret", "pw")
    assert "Sup3rSecret" not in str(info.value)


@pytest.fixture
def memory_keyring():
    keyring = pytest.importorskip("keyring")
    from keyring.backend import KeyringBackend

    class Memory(KeyringBackend):
        priority = 1  # type: ignore[assignment]
        store: dict[tuple[str, str], str] = {}

        def get_password(self, service: str, username: str) -> str | None:
            return self.store.get((service, username))

        def set_password(self, service: str, username: str, password: str) -> None:
            self.store[(service, username)] = password

        def delete_password(self, service: str, username: str) -> None:
            self.store.pop((service, username), None)

    previous = keyring.get_keyring()
    backend = Memory()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def test_resolve_keyring(memory_keyring) -> None:
    memory_keyring.set_password("l1fix", "CORP\\tech", "kr-pw-9")
    assert resolve_secret("keyring:l1fix/CORP\\tech", "pw").reveal() == "kr-pw-9"
    with pytest.raises(BadInput, match="no keyring entry"):
        resolve_secret("keyring:l1fix/other", "pw")


def test_resolve_keyring_without_backend() -> None:
    keyring = pytest.importorskip("keyring")
    from keyring.backends import fail

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        with pytest.raises(BadInput, match="no usable keyring backend"):
            resolve_secret("keyring:l1fix/tech", "pw")
    finally:
        keyring.set_keyring(previous)


def test_import_is_light() -> None:
    code = (
        "import sys, l1fix.config; "
        "print(sorted(m for m in ('keyring', 'platformdirs', 'yaml', 'tomllib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- [profiles.NAME.glpi] -------------------------------------------------------------------


def test_glpi_section_is_typed_and_never_holds_a_token(tmp_path):
    from l1fix.config import GlpiConfig

    path = tmp_path / "config.toml"
    path.write_text(
        '[profiles.p.glpi]\nurl = "https://glpi.example/apirest.php"\napp_token = "env:GLPI_APP"\n'
        'user_token = "file:glpi.token"\nca_bundle = "ca.pem"\nlanguage = "en"\ntimeout_s = 5\n'
    )
    glpi = load_config(path, "p").glpi
    assert glpi == GlpiConfig(
        url="https://glpi.example/apirest.php",
        app_token="env:GLPI_APP",
        user_token=f"file:{tmp_path / 'glpi.token'}",
        ca_bundle=tmp_path / "ca.pem",
        language="en",
        timeout_s=5.0,
    )
    assert glpi.followup_private is True and glpi.inventory_lookup is False


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('user_token = "q1w2e3r4t5"', "never stored in config"),
        ('language = "de"', "expected fr or en"),
        ('verify = "yes"', "expected true or false"),
        ("timeout_s = true", "expected a number"),
        ('urll = "x"', "did you mean 'url'"),
    ],
)
def test_glpi_section_errors(tmp_path, line, message):
    path = tmp_path / "config.toml"
    path.write_text(f"[profiles.p.glpi]\n{line}\n")
    with pytest.raises(BadInput, match=message) as err:
        load_config(path, "p")
    assert "q1w2e3r4t5" not in str(err.value)


# --- ldap (Active Directory) ---------------------------------------------------------------


def test_ldap_defaults_when_absent(home: Path) -> None:
    from l1fix.config import LdapSettings

    ldap = load_config().ldap
    assert ldap == LdapSettings()
    assert ldap.url is None and ldap.allow_protected is False and ldap.timeout_s == 10.0


def test_ldap_section_is_typed_and_paths_are_relative_to_the_config(tmp_path: Path) -> None:
    from l1fix.config import LdapSettings

    path = tmp_path / "config.toml"
    path.write_text(
        "[profiles.p.ldap]\n"
        'url = "ldaps://10.0.0.5"\nserver_name = "dc1.corp.example.com"\nca_bundle = "corp-ca.pem"\n'
        'base_dn = "OU=Staff,DC=corp,DC=example,DC=com"\nbind_user = "helpdesk@corp.example.com"\n'
        'bind_password = "file:ad.pw"\nallow_protected = true\ntimeout_s = 5\n'
    )
    ldap = load_config(path, "p").ldap
    assert ldap == LdapSettings(
        url="ldaps://10.0.0.5",
        server_name="dc1.corp.example.com",
        ca_bundle=tmp_path / "corp-ca.pem",
        base_dn="OU=Staff,DC=corp,DC=example,DC=com",
        bind_user="helpdesk@corp.example.com",
        bind_password=f"file:{tmp_path / 'ad.pw'}",
        allow_protected=True,
        timeout_s=5.0,
    )
    assert (ldap.scheme, ldap.host, ldap.effective_port) == ("ldaps", "10.0.0.5", 636)
    assert ldap.expected_name == "dc1.corp.example.com"  # checked in the certificate even by IP


@pytest.mark.parametrize(
    ("lines", "scheme", "host", "port", "name"),
    [
        ('url = "dc1.corp.example.com"', "ldaps", "dc1.corp.example.com", 636, "dc1.corp.example.com"),
        ('url = "dc1.corp.example.com"\nport = 3269', "ldaps", "dc1.corp.example.com", 3269, "dc1.corp.example.com"),
        ('url = "ldaps://dc1:1636"', "ldaps", "dc1", 1636, "dc1"),
        ('url = "ldap://dc1.corp.example.com"\nstarttls = true', "ldap", "dc1.corp.example.com", 389, None),
        ('url = "ldaps://[::1]"\nserver_name = "dc1.corp"', "ldaps", "::1", 636, "dc1.corp"),
    ],
)
def test_ldap_url_forms(tmp_path: Path, lines: str, scheme: str, host: str, port: int, name: str | None) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[profiles.p.ldap]\n{lines}\n")
    ldap = load_config(path, "p").ldap
    assert (ldap.scheme, ldap.host, ldap.effective_port) == (scheme, host, port)
    assert ldap.expected_name == (name or host)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ('url = "ldap://dc1.corp"', "clear text"),
        ('url = "ldap://dc1.corp"\nstarttls = false', "clear text"),
        ('url = "ldaps://dc1.corp"\nstarttls = true', "already encrypted"),
        ('url = "https://dc1.corp"', "expected ldaps://"),
        ('url = "ldaps://dc1.corp/OU=x"', "expected ldaps://"),
        ('url = "ldaps://user:pw@dc1.corp"', "expected ldaps://"),
        ('url = "ldaps://dc1.corp:636"\nport = 3269', "contradicts"),
        ("port = 70000", "port number"),
        ('server_name = "dc1 corp"', "DNS name"),
        ("timeout_s = 0", "seconds > 0"),
        ("allow_protected = 1", "expected true or false"),
        ('bind_user = "h@corp"\nbind_password = "S3cret-q1w2e3r4"', "never stored in config"),
        ('bind_password = "env:AD_PW"', "bind_user is not"),
        ('bind_pasword = "env:AD_PW"', "did you mean 'bind_password'"),
    ],
)
def test_ldap_section_errors(tmp_path: Path, lines: str, message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[profiles.p.ldap]\n{lines}\n")
    with pytest.raises(BadInput, match=message) as err:
        load_config(path, "p")
    assert "S3cret-q1w2e3r4" not in str(err.value)


def test_ldap_bind_password_reference_is_resolved_later(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AD_PW", "pw-from-env")
    path = tmp_path / "config.toml"
    path.write_text('[profiles.p.ldap]\nurl = "ldaps://dc1"\nbind_user = "h@corp"\nbind_password = "env:AD_PW"\n')
    ldap = load_config(path, "p").ldap
    assert ldap.bind_password == "env:AD_PW"
    assert resolve_secret(ldap.bind_password, "ad").reveal() == "pw-from-env"


# --- graph (Microsoft 365) -----------------------------------------------------------------


def test_graph_defaults_when_absent(home: Path) -> None:
    from l1fix.config import GraphSettings

    graph = load_config().graph
    assert graph == GraphSettings()
    assert graph.auth == "app" and graph.base_url == "https://graph.microsoft.com/v1.0"
    assert graph.allow_privileged is False and graph.max_retries == 3


def test_graph_section_is_typed_and_never_holds_a_secret(tmp_path: Path) -> None:
    from l1fix.config import GraphSettings

    path = tmp_path / "config.toml"
    path.write_text(
        "[profiles.p.graph]\n"
        'tenant_id = "corp.onmicrosoft.com"\nclient_id = "0b7d6c4e-1111-2222-3333-444455556666"\n'
        'client_secret = "keyring:l1fix/graph"\nca_bundle = "proxy-ca.pem"\ntimeout_s = 10\n'
        'base_url = "https://graph.microsoft.us/v1.0/"\nauthority = "https://login.microsoftonline.us"\n'
        "max_retries = 5\nallow_privileged = true\n"
    )
    graph = load_config(path, "p").graph
    assert graph == GraphSettings(
        tenant_id="corp.onmicrosoft.com",
        client_id="0b7d6c4e-1111-2222-3333-444455556666",
        client_secret="keyring:l1fix/graph",
        ca_bundle=tmp_path / "proxy-ca.pem",
        timeout_s=10.0,
        base_url="https://graph.microsoft.us/v1.0",  # the trailing slash dropped
        authority="https://login.microsoftonline.us",
        max_retries=5,
        allow_privileged=True,
    )


def test_graph_certificate_and_device_code_forms(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[profiles.cert.graph]\ntenant_id = "t"\nclient_id = "c"\ncertificate_path = "app.pem"\n'
        'certificate_password = "env:CERT_PW"\n'
        '[profiles.dev.graph]\nauth = "device-code"\ntenant_id = "t"\nclient_id = "c"\ntoken_cache = false\n'
        '[profiles.lab.graph]\nauth = "token"\naccess_token = "file:graph.token"\nbase_url = "http://127.0.0.1:8443/v1.0"\n'
    )
    cert = load_config(path, "cert").graph
    assert cert.certificate_path == tmp_path / "app.pem" and cert.certificate_password == "env:CERT_PW"
    assert load_config(path, "dev").graph.auth == "device-code"
    lab = load_config(path, "lab").graph
    assert lab.access_token == f"file:{tmp_path / 'graph.token'}" and lab.base_url.startswith("http://127.0.0.1")


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ('client_secret = "q1w2e3r4t5~secret"', "never stored in config"),
        ('access_token = "eyJ0eXAiOiJKV1QiLCJhbGciOi"', "never stored in config"),
        ('auth = "password"', "expected app or device-code or token"),
        ('base_url = "http://graph.microsoft.com/v1.0"', "expected https://HOST"),
        ('base_url = "https://user:pw@graph.microsoft.com/v1.0"', "expected https://HOST"),
        ('base_url = "https://graph.microsoft.com/v1.0?x=1"', "expected https://HOST"),
        ('authority = "https://login.microsoftonline.com/common"', "expected https://HOST"),
        ('client_secret = "env:S"\ncertificate_path = "a.pem"', "keep one"),
        ('certificate_password = "env:P"', "certificate_path is not"),
        ('access_token = "env:T"', "only for auth"),
        ("timeout_s = 0", "seconds > 0"),
        ("max_retries = 11", "from 0 to 10"),
        ("max_retry_after_s = 600", "from 0 to 180"),
        ("allow_privileged = 1", "expected true or false"),
        ('tenant = "corp"', "did you mean 'tenant_id'"),
    ],
)
def test_graph_section_errors(tmp_path: Path, lines: str, message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[profiles.p.graph]\n{lines}\n")
    with pytest.raises(BadInput, match=message) as err:
        load_config(path, "p")
    assert "q1w2e3r4t5~secret" not in str(err.value) and "eyJ0eXAi" not in str(err.value)


# --- ssh (Linux and macOS hosts) -----------------------------------------------------------


def test_ssh_defaults_when_absent(home: Path) -> None:
    from l1fix.config import SshSettings

    ssh = load_config().ssh
    assert ssh == SshSettings()
    assert (ssh.port, ssh.sudo, ssh.trust_new_host, ssh.user_known_hosts, ssh.known_hosts) == (
        22,
        True,
        False,
        False,
        None,
    )


def test_ssh_section_is_typed_and_paths_are_relative_to_the_config(tmp_path: Path) -> None:
    from l1fix.config import SshSettings

    path = tmp_path / "config.toml"
    path.write_text(
        "[profiles.p.ssh]\n"
        'username = "helpdesk"\nport = 2222\nkey_file = "keys/id_ed25519"\nkey_passphrase = "env:KEY_PASS"\n'
        'password = "keyring:l1fix/helpdesk"\nknown_hosts = "hosts.known"\nuser_known_hosts = true\n'
        "trust_new_host = true\nconnect_timeout_s = 5\ncommand_timeout_s = 60\nsudo = false\n"
    )
    assert load_config(path, "p").ssh == SshSettings(
        username="helpdesk",
        port=2222,
        key_file=tmp_path / "keys" / "id_ed25519",
        key_passphrase="env:KEY_PASS",
        password="keyring:l1fix/helpdesk",
        known_hosts=tmp_path / "hosts.known",
        user_known_hosts=True,
        trust_new_host=True,
        connect_timeout_s=5.0,
        command_timeout_s=60.0,
        sudo=False,
    )


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ('password = "q1w2e3r4t5"', "never stored in config"),
        ('key_file = "k"\nkey_passphrase = "q1w2e3r4t5"', "never stored in config"),
        ('key_passphrase = "env:P"', "key_passphrase is set but key_file is not"),
        ("port = 0", "port = 0 is invalid"),
        ("port = 70000", "expected a port number"),
        ('port = "22"', "expected a whole number"),
        ("connect_timeout_s = 0", "connect_timeout_s must be a number of seconds > 0"),
        ("command_timeout_s = -1", "command_timeout_s must be a number of seconds > 0"),
        ('trust_new_host = "yes"', "expected true or false"),
        ('username = "bad user"', "expected a login name"),
        ('user = "x"', "did you mean 'username'"),
    ],
)
def test_ssh_section_errors(tmp_path: Path, lines: str, message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[profiles.p.ssh]\n{lines}\n")
    with pytest.raises(BadInput, match=message) as err:
        load_config(path, "p")
    assert "q1w2e3r4t5" not in str(err.value)


def test_with_ssh_merges_per_host_overrides(home: Path) -> None:
    write_config(home, '[profiles.default.ssh]\nusername = "helpdesk"\nkey_file = "id_ed25519"\nport = 2222\n')
    config = load_config()
    merged = config.with_ssh(port=22, password="env:HOST_PW", key_file="host_key", trust_new_host=True)
    assert (merged.username, merged.port, merged.password, merged.trust_new_host) == (
        "helpdesk",
        22,
        "env:HOST_PW",
        True,
    )
    assert merged.key_file == home / "host_key"  # relative to home, as with_winrm
    assert config.with_ssh() == config.ssh
    assert config.with_ssh(key_file=None).key_file is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"password": "q1w2e3r4t5"}, "never stored in config"),
        ({"port": "22"}, "expected a whole number"),
        ({"sudo": "no"}, "expected true or false"),
        ({"hostname": "x"}, "unknown key 'hostname'"),
        ({"key_file": None, "key_passphrase": "env:P"}, "key_passphrase is set but key_file is not"),
    ],
)
def test_with_ssh_checks_overrides(home: Path, overrides: dict, message: str) -> None:
    with pytest.raises(BadInput, match=message) as err:
        load_config().with_ssh(**overrides)
    assert "per-host ssh settings" in str(err.value) and "q1w2e3r4t5" not in str(err.value)


def test_the_default_command_timeout_lets_every_fix_use_its_own():
    """command_timeout_s only lowers a fix's own timeout: by default no fix is cut short."""
    from l1fix.action import registry
    from l1fix.config import SshSettings, WinRMSettings

    longest = max(getattr(cls, "timeout_s", 0.0) for cls in registry().values())
    assert longest >= 600  # temp-clean walks whole Temp folders
    assert WinRMSettings().command_timeout_s >= longest and SshSettings().command_timeout_s >= longest

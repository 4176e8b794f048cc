"""inventory.py: name syntax, inventory entries (and their winrm and ssh tables), groups and the DNS fallback.

DNS is never asked about anything but loopback: lookups are patched, or use localhost.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli
from l1fix.errors import BadInput, UnknownTarget
from l1fix.inventory import Inventory, load_inventory, validate_target_name
from l1fix.targets.base import Target

INVENTORY = """
defaults:
  dns_suffix: corp.example.com
  use_dns: true
hosts:
  PC042:
    address: pc042.corp.example.com
    groups: [floor2, printers]
  PC043:
    address: 10.0.2.43
    port: 15986
    winrm:
      transport: kerberos
      ca_bundle: certs/ca.pem
    groups: floor2
  lnx01:
    address: 127.0.0.1
    os: linux
    connection: ssh
    ssh:
      username: helpdesk
  PC044:
groups:
  floor2: [PC042, PC045]
  empty:
"""


@pytest.fixture
def inventory(tmp_path: Path) -> Inventory:
    path = tmp_path / "inventory.yml"
    path.write_text(INVENTORY, encoding="utf-8")
    return load_inventory(path)


@pytest.fixture
def no_dns(mocker):
    """Fail the test if anything reaches DNS."""
    return mocker.patch("socket.getaddrinfo", side_effect=AssertionError("unexpected DNS lookup"))


# --- name syntax ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "PC042",
        "pc-042",
        "a",
        "x" * 63,
        "pc042.corp.example.com",
        "pc042.corp.example.com.",
        "3com.example.com",
        ".".join(["a" * 63] * 3) + "." + "b" * 61,  # 253 characters
        "10.0.0.1",
        "127.0.0.1",
        "::1",
        "fe80::1",
        "2001:db8::42",
        "fe80::1%eth0",
    ],
)
def test_valid_names(name: str) -> None:
    assert validate_target_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "-pc042",
        "pc042-",
        "pc_042",
        "pc 042",
        "x" * 64,
        ".".join(["a" * 63] * 4),  # 255 characters
        "pc042..corp",
        ".pc042",
        "PC042;rm -rf /",
        "$(whoami)",
        "10.0.0.999",
        "1234",
        "2001:db8::g",
        "[::1]",
        "pc042\n",
        "pc\u00e9042",
    ],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(BadInput, match="is not a valid host name, FQDN or IP address"):
        validate_target_name(name)


def test_invalid_name_is_refused_before_any_lookup(inventory: Inventory, no_dns) -> None:
    with pytest.raises(BadInput, match="not a valid host name"):
        inventory.resolve("PC042;calc.exe")
    no_dns.assert_not_called()


# --- inventory entries ---------------------------------------------------------------------


def test_resolve_inventory_entry_case_insensitive(inventory: Inventory, no_dns) -> None:
    assert inventory.resolve("pc042") == Target(
        name="PC042", address="pc042.corp.example.com", os="windows", connection="winrm"
    )
    no_dns.assert_not_called()


def test_resolve_entry_with_overrides(inventory: Inventory, no_dns) -> None:
    target = inventory.resolve("PC043")
    assert target.address == "10.0.2.43"
    assert target.port == 15986
    assert target.settings == {"transport": "kerberos", "ca_bundle": "certs/ca.pem"}


def test_resolve_entry_other_connection(inventory: Inventory, no_dns) -> None:
    target = inventory.resolve("LNX01")
    assert (target.name, target.os, target.connection) == ("lnx01", "linux", "ssh")
    assert target.settings == {"username": "helpdesk"}


def test_entry_without_fields_uses_name_as_address(inventory: Inventory, no_dns) -> None:
    assert inventory.resolve("PC044") == Target(name="PC044", address="PC044")


def test_fqdn_with_dns_suffix_finds_short_entry(inventory: Inventory, no_dns) -> None:
    assert inventory.resolve("pc042.corp.example.com").name == "PC042"


def test_with_winrm_takes_host_settings(inventory: Inventory, tmp_path: Path, monkeypatch) -> None:
    from l1fix.config import load_config

    monkeypatch.setenv("L1FIX_HOME", str(tmp_path / "home"))
    config = load_config()
    settings = config.with_winrm(**inventory.resolve("PC043").settings)
    assert settings.transport == "kerberos"
    assert settings.ca_bundle == tmp_path / "home" / "certs" / "ca.pem"


# --- groups --------------------------------------------------------------------------------


def test_groups_merge_both_places(inventory: Inventory) -> None:
    assert inventory.group("floor2") == ["PC042", "PC043", "PC045"]
    assert inventory.group("FLOOR2") == ["PC042", "PC043", "PC045"]
    assert inventory.group("printers") == ["PC042"]
    assert inventory.group("empty") == []


def test_unknown_group_lists_known(inventory: Inventory) -> None:
    with pytest.raises(BadInput, match=r"unknown group 'floor3' \(groups: empty, floor2, printers\)") as info:
        inventory.group("floor3")
    assert "did you mean floor2?" in str(info.value)


# --- DNS fallback --------------------------------------------------------------------------


def test_dns_found_short_name_gets_suffix(inventory: Inventory, mocker) -> None:
    lookup = mocker.patch(
        "socket.getaddrinfo",
        return_value=[(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.9.99", 0))],
    )
    target = inventory.resolve("PC999")
    assert target == Target(name="PC999", address="PC999.corp.example.com", os="windows", connection="winrm")
    assert lookup.call_args.args[0] == "PC999.corp.example.com"


def test_dns_found_fqdn_is_looked_up_as_is(inventory: Inventory, mocker) -> None:
    lookup = mocker.patch("socket.getaddrinfo", return_value=[(socket.AF_INET, 1, 6, "", ("10.1.1.1", 0))])
    assert inventory.resolve("srv9.other.example.org").address == "srv9.other.example.org"
    assert lookup.call_args.args[0] == "srv9.other.example.org"


def test_dns_not_found_is_unknown_target(inventory: Inventory, mocker) -> None:
    mocker.patch("socket.getaddrinfo", side_effect=socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    with pytest.raises(UnknownTarget) as info:
        inventory.resolve("PC999")
    message = str(info.value)
    assert message.startswith("PC999 is not in the inventory (")
    assert str(inventory.path) in message
    assert "does not resolve in DNS (as PC999.corp.example.com)" in message
    assert info.value.hint == "check the name or add it to the inventory"
    assert info.value.kind == "unknown-target"


def test_use_dns_false_never_looks_up(tmp_path: Path, no_dns) -> None:
    path = tmp_path / "inv.yml"
    path.write_text("defaults: {use_dns: false}\nhosts: {PC042: {}}\n", encoding="utf-8")
    inventory = load_inventory(path)
    with pytest.raises(UnknownTarget, match="PC999 is not in the inventory"):
        inventory.resolve("PC999")
    no_dns.assert_not_called()


def test_ip_literal_needs_no_lookup(no_dns) -> None:
    inventory = Inventory(hosts={}, groups={})
    assert inventory.resolve("127.0.0.1") == Target(name="127.0.0.1", address="127.0.0.1")
    assert inventory.resolve("::1").address == "::1"


def test_real_lookup_of_localhost() -> None:
    inventory = Inventory(hosts={}, groups={})  # no suffix: "localhost" is looked up as is
    assert inventory.resolve("localhost") == Target(name="localhost", address="localhost")


# --- loading -------------------------------------------------------------------------------


def test_missing_file_is_empty_inventory(tmp_path: Path, mocker) -> None:
    inventory = load_inventory(tmp_path / "none.yml")
    assert (inventory.hosts, inventory.groups, inventory.use_dns) == ({}, {}, True)
    mocker.patch("socket.getaddrinfo", side_effect=socket.gaierror("nope"))
    with pytest.raises(UnknownTarget, match=r"none\.yml"):
        inventory.resolve("PC1")


def test_empty_file_is_empty_inventory(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_text("# nothing yet\n", encoding="utf-8")
    assert load_inventory(path).hosts == {}


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_text("hosts:\n  PC042:\n    address: [unclosed\n  PC043: {}\n", encoding="utf-8")
    with pytest.raises(BadInput, match=rf"{path}:\d+: malformed YAML"):
        load_inventory(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- PC042\n", "must be a mapping"),
        ("host: {}\n", "unknown key 'host'.*did you mean 'hosts'"),
        ("hosts: {PC042: {adress: x}}\n", "unknown key 'adress'.*did you mean 'address'"),
        ("hosts: {'PC_042': {}}\n", "not a valid host name"),
        ("hosts: {PC042: {address: 'a b'}}\n", "address 'a b' is not a valid"),
        ("hosts: {PC042: {}, pc042: {}}\n", "listed twice"),
        ("hosts: {PC042: {os: solaris}}\n", "expected one of windows, linux, macos"),
        ("hosts: {PC042: {connection: telnet}}\n", "expected one of"),
        ("hosts: {PC042: {port: 99999}}\n", "port"),
        ("hosts: {PC042: {winrm: {trasport: ntlm}}}\n", "did you mean 'transport'"),
        ("hosts: {PC042: {winrm: {password: 'Clear-Pw-1'}}}\n", "passwords are never stored"),
        ("groups: {floor2: PC042}\n", "must be a list"),
        ("groups: {floor2: ['bad name']}\n", "not a valid host name"),
        ("defaults: {use_dns: maybe}\n", "use_dns must be true or false"),
        ("defaults: {dns_suffix: 'corp example'}\n", "dns_suffix"),
        ("defaults: {dns_sufix: corp.example.com}\n", "did you mean 'dns_suffix'"),
    ],
)
def test_invalid_inventory(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "inv.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BadInput, match=message) as info:
        load_inventory(path)
    assert "Clear-Pw-1" not in str(info.value)


SSH_HOST = "hosts:\n  lnx01:\n    os: linux\n    connection: ssh\n    ssh: {%s}\n"


@pytest.mark.parametrize(
    ("ssh", "message"),
    [
        ("user: helpdesk", "host lnx01 ssh: unknown key 'user' — did you mean 'username'?"),
        ("keyfile: id_ed25519", "host lnx01 ssh: unknown key 'keyfile' — did you mean 'key_file'?"),
        ("key: id_ed25519", "host lnx01 ssh: unknown key 'key' — valid keys: username, port, key_file,"),
        ("port: '22'", "host lnx01 ssh: port = '22' is invalid: expected a whole number"),
        ("port: 70000", "host lnx01 ssh: port = 70000 is invalid: expected a port number"),
        ("port: 0", "host lnx01 ssh: port = 0 is invalid: expected a port number"),
        ("sudo: 'yes'", "host lnx01 ssh: sudo = 'yes' is invalid: expected true or false"),
        ("known_hosts: 42", "host lnx01 ssh: known_hosts = 42 is invalid: expected a file path"),
        ("command_timeout_s: 0", "host lnx01 ssh: command_timeout_s must be a number of seconds > 0"),
        ("key_passphrase: 'env:PASS'", "host lnx01 ssh: key_passphrase is set but key_file is not"),
        ("password: 'Clear-Pw-1'", "host lnx01 ssh: password: secrets are never stored"),
        ("key_file: k, key_passphrase: 'Clear-Pw-1'", "host lnx01 ssh: key_passphrase: secrets are never stored"),
        ("password: 42", "host lnx01 ssh: password: secrets are never stored"),
    ],
)
def test_a_hosts_ssh_table_is_checked_when_the_inventory_loads(tmp_path: Path, ssh: str, message: str) -> None:
    """One line naming the file, the host and the key; exit code of bad input; a secret never echoed."""
    path = tmp_path / "inv.yml"
    path.write_text(SSH_HOST % ssh, encoding="utf-8")
    with pytest.raises(BadInput) as info:
        load_inventory(path)
    line = str(info.value)
    assert line.startswith(f"{path} ") and message in line and "\n" not in line
    assert info.value.exit_code == 2
    assert "Clear-Pw-1" not in line


def test_a_valid_ssh_table_reaches_the_connection_settings(tmp_path: Path, monkeypatch) -> None:
    from l1fix.config import load_config

    path = tmp_path / "inv.yml"
    table = "username: helpdesk, port: 2222, key_file: keys/id, password: 'env:PW', sudo: false, known_hosts: kh"
    path.write_text(SSH_HOST % table, encoding="utf-8")
    target = load_inventory(path).resolve("lnx01")
    monkeypatch.setenv("L1FIX_HOME", str(tmp_path / "home"))
    settings = load_config().with_ssh(**target.settings)
    assert (settings.username, settings.port, settings.password, settings.sudo) == ("helpdesk", 2222, "env:PW", False)
    assert settings.key_file == tmp_path / "home" / "keys" / "id"
    assert settings.known_hosts == tmp_path / "home" / "kh"


def test_defaults_os_and_connection(tmp_path: Path, mocker) -> None:
    path = tmp_path / "inv.yml"
    path.write_text("defaults: {os: linux, connection: ssh, dns_suffix: .lab.example}\nhosts: {srv1: {}}\n")
    inventory = load_inventory(path)
    assert inventory.dns_suffix == "lab.example"
    assert inventory.resolve("srv1") == Target(name="srv1", address="srv1", os="linux", connection="ssh")


def test_import_is_light() -> None:
    code = "import sys, l1fix.inventory; print(sorted(m for m in ('yaml', 'keyring') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_an_unchanged_inventory_is_parsed_once_and_a_changed_one_again(tmp_path, mocker):
    import yaml

    path = tmp_path / "inventory.yml"
    path.write_text("hosts:\n  PC001: {address: 127.0.0.1}\n")
    parse = mocker.spy(yaml, "load")
    first = load_inventory(path)
    assert load_inventory(path) is first and parse.call_count == 1
    path.write_text("hosts:\n  PC001: {address: 127.0.0.2}\n  PC002: {address: 127.0.0.3}\n")
    assert load_inventory(path).resolve("PC002").address == "127.0.0.3" and parse.call_count == 2


def test_a_bad_ssh_table_stops_the_cli_with_one_journaled_line(home: Path) -> None:
    (home / "inventory.yml").write_text(SSH_HOST % "password: 'Clear-Pw-1'", encoding="utf-8")
    out = run_cli("temp-clean", "lnx01", home=home)
    lines = out.stderr.strip().splitlines()
    assert out.code == 2 and len(lines) == 1, out.stderr
    assert f"{home / 'inventory.yml'} host lnx01 ssh: password: secrets are never stored" in lines[0]
    last = run_cli("journal", "--json", "--limit", "1", home=home)
    journaled = json.loads(last.stdout.splitlines()[0])
    assert journaled["status"] == "error" and journaled["error"]["kind"] == "bad-input"
    assert "Clear-Pw-1" not in out.stderr + last.stdout

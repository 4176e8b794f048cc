"""The lab WS-Management server, driven by the real pywinrm client over loopback."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import spnego
import xmltodict
from spnego.channel_bindings import GssChannelBindings
from winrm.exceptions import (
    InvalidCredentialsError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)
from winrm.protocol import Protocol

from l1fix.lab import tls
from l1fix.lab.wsman import TRANSFER, CommandOutcome, WSManLab

USER = "labadmin"
PASSWORD = "Pässwörd-1!"
PAYLOAD = ("Grüße aus Köln — ✓ 東京 €100 ".encode() * 800) + bytes(range(256))  # > 20 KB, non-ASCII


@dataclass
class Call:
    host: str
    command: str
    arguments: list[str]
    stdin: bytes


@dataclass
class EchoSimulator:
    """stdout = stdin reversed, stderr = JSON of the command line; 'sleep N' and 'big N' for timing and size."""

    faults: dict[str, str] = field(
        default_factory=lambda: {"PC002": "access-denied", "PC003": "unreachable", "PC004": "slow"}
    )
    calls: list[Call] = field(default_factory=list)

    def host_names(self) -> list[str]:
        return ["PC001", "PC002", "PC003", "PC004", "PC005"]

    def fault(self, host: str) -> str | None:
        return self.faults.get(host)

    def run_command(self, host: str, command: str, arguments: list[str], stdin: bytes) -> CommandOutcome:
        self.calls.append(Call(host, command, arguments, stdin))
        if command == "sleep":
            return CommandOutcome(b"slept\r\n", duration_s=float(arguments[0]))
        if command == "big":
            return CommandOutcome(b"0123456789" * (int(arguments[0]) // 10), b"e" * 1000)
        info = json.dumps({"command": command, "arguments": arguments}).encode()
        return CommandOutcome(stdout=stdin[::-1], stderr=info, exit_code=7)


@pytest.fixture(scope="module")
def sim() -> EchoSimulator:
    return EchoSimulator()


@pytest.fixture(scope="module")
def lab(sim: EchoSimulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WSManLab]:
    with WSManLab(sim, users={USER: PASSWORD}, cert_dir=tmp_path_factory.mktemp("lab-tls")) as running:
        yield running


def protocol(lab: WSManLab, host: str = "PC001", scheme: str = "http", **options: Any) -> Protocol:
    """A pywinrm Protocol for one lab host; HTTP uses NTLM with message encryption, HTTPS trusts the lab CA."""
    port = lab.http_port if scheme == "http" else lab.port
    settings: dict[str, Any] = {
        "transport": "ntlm",
        "username": USER,
        "password": PASSWORD,
        "proxy": None,
        "operation_timeout_sec": 5,
        "read_timeout_sec": 10,
    }
    if scheme == "http":
        settings["message_encryption"] = "always"
        settings["ca_trust_path"] = None
    else:
        settings["ca_trust_path"] = str(lab.ca_path)
    settings.update(options)
    return Protocol(f"{scheme}://{lab.address_of(host)}:{port}/wsman", **settings)


def b64(data: bytes | None) -> str:
    return base64.b64encode(data or b"").decode()


def run(p: Protocol, command: str, arguments: list[str], stdin: bytes) -> tuple[bytes, bytes, int]:
    shell_id = p.open_shell()
    command_id = p.run_command(shell_id, command, arguments)
    p.send_command_input(shell_id, command_id, stdin, end=True)
    result = p.get_command_output(shell_id, command_id)
    p.close_shell(shell_id)
    return result


def test_http_ntlm_encrypted_roundtrip(lab: WSManLab, sim: EchoSimulator) -> None:
    p = protocol(lab)
    shell_id = p.open_shell(codepage=65001)
    wire: list[requests.PreparedRequest] = []
    p.transport.session.hooks["response"].append(lambda r, **_: wire.append(r.request))

    command_id = p.run_command(shell_id, "powershell.exe", ["-NoProfile", "-Command", "-"])
    p.send_command_input(shell_id, command_id, PAYLOAD, end=True)
    stdout, stderr, code = p.get_command_output(shell_id, command_id)
    p.close_shell(shell_id)

    assert len(PAYLOAD) > 20_000
    assert sim.calls[-1] == Call("PC001", "powershell.exe", ["-NoProfile", "-Command", "-"], PAYLOAD)
    assert stdout == PAYLOAD[::-1]
    assert json.loads(stderr) == {"command": "powershell.exe", "arguments": ["-NoProfile", "-Command", "-"]}
    assert code == 7
    # on the wire every message was sealed: the stdin (base64 in the SOAP body) never appears in clear
    assert len(wire) == 4
    assert all(r.headers["Content-Type"].startswith("multipart/encrypted") for r in wire)
    assert all(base64.b64encode(PAYLOAD[:300]) not in (r.body or b"") for r in wire)


def test_http_refuses_unencrypted_soap(lab: WSManLab) -> None:
    p = protocol(lab, message_encryption="never")
    with pytest.raises(WinRMTransportError) as caught:
        p.open_shell()
    assert caught.value.code == 500


def test_https_ntlm_with_lab_ca(lab: WSManLab, sim: EchoSimulator) -> None:
    assert run(protocol(lab, scheme="https"), "cmd", ["/c", "more"], b"abc") == (
        b"cba",
        b'{"command": "cmd", "arguments": ["/c", "more"]}',
        7,
    )
    # channel binding is checked when sent (requests_ntlm does by default) and not required (Relaxed)
    assert run(protocol(lab, scheme="https", send_cbt=False), "cmd", [], b"xy")[0] == b"yx"


def ntlm_logon(lab: WSManLab, bindings: GssChannelBindings) -> int:
    """Status of a hand-made NTLM logon over HTTPS that sends the given channel bindings."""
    url = f"https://{lab.address_of('PC001')}:{lab.port}/wsman"
    client = spnego.client(
        USER, PASSWORD, protocol="ntlm", channel_bindings=bindings, options=spnego.NegotiateOptions.use_ntlm
    )
    with requests.Session() as session:
        first = session.post(url, headers={"Authorization": f"Negotiate {b64(client.step())}"}, verify=lab.ca_path)
        challenge = base64.b64decode(first.headers["WWW-Authenticate"].split()[1])
        auth = {"Authorization": f"Negotiate {b64(client.step(challenge))}"}
        return session.post(url, headers=auth, verify=lab.ca_path).status_code


def test_https_channel_binding_must_match(lab: WSManLab) -> None:
    server_hash = tls.end_point_hash(lab.cert_dir / tls.CERT_NAME)
    right = GssChannelBindings(application_data=b"tls-server-end-point:" + server_hash)
    wrong = GssChannelBindings(application_data=b"tls-server-end-point:" + bytes(32))
    assert ntlm_logon(lab, right) == 200
    assert ntlm_logon(lab, wrong) == 401


def test_https_rejected_without_lab_ca(lab: WSManLab) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        protocol(lab, scheme="https", ca_trust_path=None).open_shell()


def test_basic_auth_only_over_https(lab: WSManLab) -> None:
    assert run(protocol(lab, scheme="https", transport="basic"), "x", [], b"12")[0] == b"21"
    with pytest.raises(InvalidCredentialsError):
        protocol(lab, transport="basic", message_encryption="auto").open_shell()
    with pytest.raises(InvalidCredentialsError):
        protocol(lab, scheme="https", transport="basic", password="wrong").open_shell()


def test_wrong_password(lab: WSManLab) -> None:
    with pytest.raises(InvalidCredentialsError):
        protocol(lab, password="not-the-password").open_shell()
    with pytest.raises(InvalidCredentialsError):
        protocol(lab, scheme="https", password="not-the-password").open_shell()


def test_receive_times_out_like_windows(lab: WSManLab) -> None:
    p = protocol(lab, operation_timeout_sec=1, read_timeout_sec=3)
    shell_id = p.open_shell()
    command_id = p.run_command(shell_id, "sleep", ["1.4"])

    started = time.monotonic()
    with pytest.raises(WinRMOperationTimeoutError):  # stdin still open: the command has not started
        p.get_command_output_raw(shell_id, command_id)
    assert time.monotonic() - started >= 0.9

    p.send_command_input(shell_id, command_id, b"", end=True)
    with pytest.raises(WinRMOperationTimeoutError):  # running longer than OperationTimeout
        p.get_command_output_raw(shell_id, command_id)
    stdout, stderr, code, done = p.get_command_output_raw(shell_id, command_id)
    elapsed = time.monotonic() - started
    assert (stdout, stderr, code, done) == (b"slept\r\n", b"", 0, True)
    assert 2.3 <= elapsed < 3.5
    p.close_shell(shell_id)


def test_signal_terminates_running_command(lab: WSManLab) -> None:
    p = protocol(lab)
    shell_id = p.open_shell()
    command_id = p.run_command(shell_id, "sleep", ["30"])
    p.send_command_input(shell_id, command_id, b"", end=True)
    p.cleanup_command(shell_id, command_id)
    with pytest.raises(WSManFaultError):
        p.get_command_output_raw(shell_id, command_id)
    p.close_shell(shell_id)


def test_large_output_spans_several_receives(lab: WSManLab) -> None:
    lab.reset_stats()
    stdout, stderr, code = run(protocol(lab, scheme="https"), "big", ["400000"], b"")
    assert stdout == b"0123456789" * 40000 and stderr == b"e" * 1000 and code == 0
    assert lab.stats()["by_action"]["Receive"] >= 3  # 153600-byte envelopes hold ~110 KB of output


def test_request_bigger_than_max_envelope_gets_413(lab: WSManLab) -> None:
    p = protocol(lab, scheme="https")
    shell_id = p.open_shell()
    command_id = p.run_command(shell_id, "x")
    with pytest.raises(WinRMTransportError) as caught:
        p.send_command_input(shell_id, command_id, b"z" * 600_000, end=True)
    assert caught.value.code == 413
    p.close_shell(shell_id)


def test_unknown_shell_fault(lab: WSManLab) -> None:
    with pytest.raises(WSManFaultError) as caught:
        protocol(lab).run_command("0E3B0F6E-0000-4000-8000-000000000000", "hostname")
    assert caught.value.wsman_fault_code == 2150858843
    assert caught.value.fault_subcode == "w:InvalidSelectors"
    assert "0E3B0F6E-0000-4000-8000-000000000000" in caught.value.response
    # a shell belongs to the host that created it
    shell_id = protocol(lab, scheme="https").open_shell()
    with pytest.raises(WSManFaultError) as caught:
        protocol(lab, host="PC005", scheme="https").close_shell(shell_id)
    assert caught.value.wsman_fault_code == 2150858843


def test_only_the_cmd_shell_is_simulated(lab: WSManLab) -> None:
    p = protocol(lab)
    request = {"env:Envelope": p.build_wsman_header(TRANSFER + "Create", "http://schemas.microsoft.com/powershell/x")}
    with pytest.raises(WSManFaultError) as caught:
        p.send_message(xmltodict.unparse(request))
    assert caught.value.fault_subcode == "w:InvalidResourceURI"


def test_access_denied_host(lab: WSManLab) -> None:
    with pytest.raises(WSManFaultError) as caught:
        protocol(lab, host="PC002").open_shell()
    assert caught.value.wsman_fault_code == 5
    assert caught.value.code == 500
    assert caught.value.reason.strip() == "Access is denied."


def test_unreachable_host_refuses_connections(lab: WSManLab) -> None:
    with pytest.raises(requests.exceptions.ConnectionError):
        protocol(lab, host="PC003").open_shell()
    with pytest.raises(requests.exceptions.ConnectionError):
        protocol(lab, host="PC003", scheme="https").open_shell()


def test_slow_host_answers_late(lab: WSManLab) -> None:
    started = time.monotonic()
    answer = requests.post(f"http://{lab.address_of('PC004')}:{lab.http_port}/wsman", data=b"", timeout=5)
    assert answer.status_code == 401
    assert time.monotonic() - started >= 2.0


def test_stats_count_one_command_cycle(lab: WSManLab) -> None:
    base = f"http://{lab.address_of('PC001')}:{lab.http_port}"
    assert requests.post(f"{base}/stats/reset", timeout=5).json()["requests"] == 0
    run(protocol(lab), "cmd", ["/c", "ver"], b"")
    stats = lab.stats()
    assert stats["requests"] == 5
    assert stats["by_action"] == {"Create": 1, "Command": 1, "Send": 1, "Receive": 1, "Signal": 0, "Delete": 1}
    assert stats["auth_handshakes"] == 1
    assert stats["http_requests"] == 8  # 2 legs of NTLM, the empty encryption-setup POST, 5 WS-Man requests
    assert requests.get(f"{base}/stats", timeout=5).json() == stats
    assert "simulat" in requests.get(f"{base}/", timeout=5).text


def test_hosts_have_own_addresses(lab: WSManLab) -> None:
    assert [lab.address_of(h) for h in ("PC001", "PC002", "PC005")] == ["127.0.10.1", "127.0.10.2", "127.0.10.5"]
    assert lab.port != lab.http_port
    with pytest.raises(KeyError):
        lab.address_of("PC999")


def test_certificates_reused_while_they_fit(tmp_path: Path) -> None:
    first = tls.ensure_certificates(tmp_path, ["PC001"], ["127.0.10.1"])
    ca, cert = first.ca_path.read_bytes(), first.cert_path.read_bytes()
    assert (tmp_path / tls.KEY_NAME).stat().st_mode & 0o777 == 0o600
    tls.ensure_certificates(tmp_path, ["PC001"], ["127.0.10.1"])
    assert first.cert_path.read_bytes() == cert
    tls.ensure_certificates(tmp_path, ["PC001", "PC002"], ["127.0.10.1", "127.0.10.2"])
    assert first.cert_path.read_bytes() != cert and first.ca_path.read_bytes() == ca

"""The WinRM connection against the lab's real WS-Management endpoint (real pywinrm client)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from l1fix.config import WinRMSettings
from l1fix.errors import AuthRefused, BadInput, BadOutput, RemoteError, Timeout, TlsFailure, Unreachable
from l1fix.lab.wsman import CommandOutcome, WSManLab
from l1fix.secrets import Secret
from l1fix.targets import powershell
from l1fix.targets.base import Target
from l1fix.targets.winrm import WinRMConnection

USER, PASSWORD = "LAB\\tech", "Lab-Pa55word!"
PROGRESS_CLIXML = (
    '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
    '<Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject</T></TN>'
    '<MS><I64 N="SourceId">1</I64><PR N="Record"><AV>Preparing modules for first use.</AV></PR></MS></Obj></Objs>'
)


@dataclass
class EchoHost:
    """A simulator that returns what it received, so the test sees exactly what crossed the wire."""

    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    reply: CommandOutcome | None = None

    def host_names(self) -> list[str]:
        return ["PC001", "PC002"]

    def fault(self, host: str) -> str | None:
        return None

    def run_command(self, host: str, command: str, arguments: list[str], stdin: bytes) -> CommandOutcome:
        self.received.append((command, arguments, stdin))
        if self.reply is not None:
            return self.reply
        _library, script, payload = powershell.split_stdin(stdin)
        doc = {"check": {"ok": True, "state": {"script_len": len(script), "payload": payload}, "summary": "echo"}}
        return CommandOutcome(json.dumps(doc, ensure_ascii=False).encode(), PROGRESS_CLIXML.encode(), 0)


@pytest.fixture
def echo_lab(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("L1FIX_TEST_WINRM_PASSWORD", PASSWORD)
    host = EchoHost()
    lab = WSManLab(host, users={USER: PASSWORD}, cert_dir=tmp_path / "tls", first_ip="127.0.11.1")
    lab.start()
    yield lab, host
    lab.stop()


def connection(lab: WSManLab, scheme: str = "https", host: str = "PC001", **overrides) -> WinRMConnection:
    settings = {
        "scheme": scheme,
        "transport": "ntlm",
        "ca_bundle": lab.ca_path,
        "username": USER,
        "password": "env:L1FIX_TEST_WINRM_PASSWORD",
        **overrides,
    }
    port = lab.port if scheme == "https" else lab.http_port
    return WinRMConnection(Target(host, lab.address_of(host), port=port), WinRMSettings(**settings))


def big_script(tmp_path: Path) -> Path:
    body = "param([Parameter(Mandatory = $true)][string]$Request)\n" + "".join(
        f"# filler line {i} — ünïcødé to make the script large\n" for i in range(600)
    )
    assert len(body.encode()) > 20_000
    path = tmp_path / "big.ps1"
    path.write_text(body, encoding="utf-8")
    return path


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_script_over_20kb_and_data_arrive_unchanged(echo_lab, tmp_path, scheme):
    lab, host = echo_lab
    script = big_script(tmp_path)
    hostile = "a'b\"c $(Remove-Item C:\\) `whoami`; rm -rf /\nnext line ünïcødé 🖨\n# <l1fix-script>\n"
    conn = connection(lab, scheme)
    result = conn.run_script(script, {"params": {"service": hostile}}, timeout=30)
    conn.close()
    command, arguments, stdin = host.received[0]
    assert command == "powershell.exe"
    assert arguments == ["-NoProfile", "-NonInteractive", "-Command", "-"]
    library_text, script_text, payload = powershell.split_stdin(stdin)
    assert library_text == powershell.LIBRARY_PATH.read_text(encoding="utf-8")  # sent with every script
    assert script_text == script.read_text(encoding="utf-8")  # the script is never altered
    assert payload["params"]["service"] == hostile
    assert result.data["check"]["state"]["payload"]["params"]["service"] == hostile
    assert result.data["check"]["state"]["script_len"] == len(script_text)
    assert result.stderr == ""  # the CLIXML progress record is not an error


def test_one_shell_serves_several_commands(echo_lab, tmp_path):
    lab, _ = echo_lab
    script = tmp_path / "s.ps1"
    script.write_text("param($Request)\n")
    conn = connection(lab)
    lab.reset_stats()
    conn.run_script(script, {}, timeout=30)
    first = lab.stats()["requests"]
    conn.run_script(script, {}, timeout=30)
    second = lab.stats()["requests"]
    conn.close()
    assert first == 4  # Create, Command, Send, Receive
    assert second - first == 3  # Command, Send, Receive on the same shell
    assert lab.stats()["by_action"]["Create"] == 1 and lab.stats()["by_action"]["Delete"] == 1


def test_real_timeout_terminates_the_command(echo_lab, tmp_path):
    lab, host = echo_lab
    host.reply = CommandOutcome(b"{}", b"", 0, duration_s=30)
    script = tmp_path / "s.ps1"
    script.write_text("param($Request)\n")
    conn = connection(lab, operation_timeout_s=1, read_timeout_s=5, command_timeout_s=2)
    with pytest.raises(Timeout, match="did not finish within 2 s"):
        conn.run_script(script, {}, timeout=60)
    assert lab.stats()["by_action"].get("Signal", 0) == 1


def test_output_that_is_not_json_is_bad_output(echo_lab, tmp_path):
    lab, host = echo_lab
    host.reply = CommandOutcome(b"Hello from a login banner\r\n", b"", 0)
    script = tmp_path / "s.ps1"
    script.write_text("param($Request)\n")
    with pytest.raises(BadOutput, match="did not return a JSON result"):
        connection(lab).run_script(script, {}, timeout=30)


def test_script_error_is_reported_with_its_message(echo_lab, tmp_path):
    lab, host = echo_lab
    error_clixml = (
        '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
        '<S S="Error">Cannot find any service with service name _x0027_Nope_x0027_._x000D__x000A_</S></Objs>'
    )
    host.reply = CommandOutcome(b'{"error": "service Nope not found"}\r\n', error_clixml.encode(), 1)
    script = tmp_path / "s.ps1"
    script.write_text("param($Request)\n")
    with pytest.raises(RemoteError, match="service Nope not found"):
        connection(lab).run_script(script, {}, timeout=30)


def test_wrong_password_is_auth_refused_without_the_password(echo_lab, tmp_path, monkeypatch):
    lab, _ = echo_lab
    monkeypatch.setenv("L1FIX_TEST_WINRM_PASSWORD", "Wrong-Secret-123")
    Secret("Wrong-Secret-123")
    script = tmp_path / "s.ps1"
    script.write_text("param($Request)\n")
    with pytest.raises(AuthRefused) as err:
        connection(lab).run_script(script, {}, timeout=30)
    assert "Wrong-Secret-123" not in str(err.value) and "refused" in str(err.value)


def test_certificate_not_trusted_is_tls_failure(echo_lab, tmp_path):
    lab, _ = echo_lab
    script = tmp_path / "s.ps1"
    script.write_text("param($Request)\n")
    with pytest.raises(TlsFailure):
        connection(lab, ca_bundle=None).run_script(script, {}, timeout=30)


def test_connection_refused_is_unreachable(echo_lab, tmp_path):
    lab, _ = echo_lab
    script = tmp_path / "s.ps1"
    script.write_text("param($Request)\n")
    conn = WinRMConnection(
        Target("PC009", "127.0.11.99", port=lab.port),
        WinRMSettings(ca_bundle=lab.ca_path, username=USER, password="env:L1FIX_TEST_WINRM_PASSWORD"),
    )
    with pytest.raises(Unreachable, match="cannot connect"):
        conn.run_script(script, {}, timeout=30)


def test_basic_auth_over_plain_http_is_refused_before_sending():
    with pytest.raises(BadInput, match="Basic auth over plain HTTP"):
        WinRMConnection(Target("PC001", "127.0.0.1"), WinRMSettings(scheme="http", transport="basic"))


def test_a_connection_belongs_to_one_thread(echo_lab, tmp_path):
    lab, _ = echo_lab
    script = tmp_path / "s.ps1"
    script.write_text("param($Request)\n")
    conn = connection(lab)
    errors: list[BaseException] = []

    def other_thread() -> None:
        try:
            conn.run_script(script, {}, timeout=30)
        except RuntimeError as exc:
            errors.append(exc)

    worker = threading.Thread(target=other_thread)
    worker.start()
    worker.join()
    assert errors and "one thread" in str(errors[0])


def test_kerberos_without_its_library_is_a_clear_bad_input(monkeypatch):
    import l1fix.targets.winrm as winrm_connection

    monkeypatch.setattr(winrm_connection, "HAVE_KERBEROS", False)
    with pytest.raises(BadInput, match="Kerberos needs"):
        WinRMConnection(Target("PC001", "127.0.0.1"), WinRMSettings(transport="kerberos"))

"""WinRM connection (pywinrm): scripts streamed over stdin to one reused shell.

Safe by default: HTTPS with certificate validation; plain HTTP only with NTLM/Kerberos
message encryption; Basic auth never over plain HTTP. A real per-command timeout wraps
pywinrm's Receive loop. One instance serves one run, in one thread.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
from winrm.exceptions import (
    InvalidCredentialsError,
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)
from winrm.protocol import Protocol
from winrm.transport import HAVE_KERBEROS

from l1fix import clixml
from l1fix.config import resolve_secret
from l1fix.errors import (
    AuthRefused,
    BadInput,
    L1fixError,
    RemoteError,
    Timeout,
    TlsFailure,
    Unreachable,
)
from l1fix.secrets import redact
from l1fix.targets import output, powershell
from l1fix.targets.base import ErrorMapper, ScriptResult, Target

if TYPE_CHECKING:
    from l1fix.config import Config, WinRMSettings

UTF8_CODEPAGE = 65001
SEND_CHUNK_BYTES = 64 * 1024  # base64 of this stays well inside the 150 KB envelope
ACCESS_DENIED = 5


def open_connection(target: Target, config: Config) -> WinRMConnection:
    return WinRMConnection(target, config.with_winrm(**target.settings))


def endpoint_of(target: Target, settings: WinRMSettings) -> str:
    port = target.port or settings.effective_port
    host = f"[{target.address}]" if ":" in target.address else target.address
    return f"{settings.scheme}://{host}:{port}/wsman"


def check_policy(settings: WinRMSettings) -> None:
    """Refuse the unsafe combinations before anything is sent."""
    if settings.scheme not in ("https", "http"):
        raise BadInput(f"winrm scheme must be https or http, not {settings.scheme!r}")
    if settings.transport not in ("ntlm", "kerberos", "basic"):
        raise BadInput(f"winrm transport must be ntlm, kerberos or basic, not {settings.transport!r}")
    if settings.scheme == "http" and settings.transport == "basic":
        raise BadInput("Basic auth over plain HTTP would send the password in clear: use https or ntlm")
    if settings.transport == "kerberos" and not HAVE_KERBEROS:
        raise BadInput("Kerberos needs pywinrm's kerberos extra", hint="pip install 'pywinrm[kerberos]', or use ntlm")


class WinRMConnection:
    """Runs l1fix scripts on one Windows host through one WinRM shell."""

    script_suffix = ".ps1"

    def __init__(self, target: Target, settings: WinRMSettings) -> None:
        check_policy(settings)
        self.target = target
        self.settings = settings
        self.endpoint = endpoint_of(target, settings)
        self._protocol: Protocol | None = None
        self._shell_id: str | None = None
        self._thread = threading.get_ident()

    def run_script(self, script: Path, payload: dict[str, Any], *, timeout: float) -> ScriptResult:
        """Send the script and its data over stdin; return its final JSON document."""
        if threading.get_ident() != self._thread:
            raise RuntimeError("a WinRM connection is used by one thread only")
        stdin = powershell.build_stdin(script.read_text(encoding="utf-8"), payload)
        timeout = min(timeout, self.settings.command_timeout_s) if timeout else self.settings.command_timeout_s
        with self._errors_mapped():
            stdout, stderr, code = self._run(stdin, timeout)
        return self._parse(script.name, stdout, stderr, code)

    def close(self) -> None:
        """Delete the shell (one request) and drop the HTTP session."""
        protocol, shell_id = self._protocol, self._shell_id
        self._protocol = self._shell_id = None
        if protocol is not None and shell_id is not None:
            with self._errors_mapped():
                protocol.close_shell(shell_id)

    # -- internals -------------------------------------------------------------------------

    def _open(self) -> tuple[Protocol, str]:
        if self._protocol is None or self._shell_id is None:
            self._protocol = self._new_protocol()
            self._shell_id = self._protocol.open_shell(codepage=UTF8_CODEPAGE, noprofile=True)
        return self._protocol, self._shell_id

    def _new_protocol(self) -> Protocol:
        s = self.settings
        if not s.username or not s.password:
            raise BadInput(
                "no WinRM credentials configured",
                target=self.target.name,
                hint="set winrm.username and winrm.password (env:, keyring:, file: or prompt) in config.toml",
            )
        password = resolve_secret(s.password, f"WinRM password for {s.username}")
        return Protocol(
            endpoint=self.endpoint,
            transport=s.transport,  # type: ignore[arg-type]
            username=s.username,
            password=password.reveal(),
            server_cert_validation="validate" if s.validate_certificate else "ignore",
            ca_trust_path=str(s.ca_bundle) if s.ca_bundle else None,  # type: ignore[arg-type]
            message_encryption="always" if s.scheme == "http" else "auto",
            operation_timeout_sec=s.operation_timeout_s,
            read_timeout_sec=s.read_timeout_s,
            proxy=None,
        )

    def _run(self, stdin: bytes, timeout: float) -> tuple[bytes, bytes, int]:
        protocol, shell_id = self._open()
        deadline = time.monotonic() + timeout
        command_id = protocol.run_command(
            shell_id, powershell.COMMAND, powershell.ARGUMENTS, console_mode_stdin=False, skip_cmd_shell=True
        )
        for start in range(0, max(len(stdin), 1), SEND_CHUNK_BYTES):
            chunk = stdin[start : start + SEND_CHUNK_BYTES]
            protocol.send_command_input(shell_id, command_id, chunk, end=start + SEND_CHUNK_BYTES >= len(stdin))
        stdout, stderr = [], []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._terminate(protocol, shell_id, command_id)
                raise Timeout(f"the script did not finish within {timeout:g} s", target=self.target.name)
            # Receive waits at most the operation timeout: never longer than what is left.
            protocol.operation_timeout_sec = max(1, min(self.settings.operation_timeout_s, int(remaining + 0.999)))
            try:
                out, err, code, done = protocol.get_command_output_raw(shell_id, command_id)
            except WinRMOperationTimeoutError:
                continue
            stdout.append(out)
            stderr.append(err)
            if done:
                return b"".join(stdout), b"".join(stderr), code

    @staticmethod
    def _terminate(protocol: Protocol, shell_id: str, command_id: str) -> None:
        # The timeout is what the technician needs to hear about, not a failed Signal.
        with contextlib.suppress(WinRMError, requests.RequestException):
            protocol.cleanup_command(shell_id, command_id)

    def _parse(self, name: str, stdout_b: bytes, stderr_b: bytes, code: int) -> ScriptResult:
        stdout = stdout_b.decode("utf-8", errors="replace")
        stderr = clixml.to_text(stderr_b.decode("utf-8", errors="replace"))
        return output.script_result(name, self.target.name, stdout, stderr, code)

    def _errors_mapped(self) -> _ErrorMapper:
        return _ErrorMapper(self)


class _ErrorMapper(ErrorMapper):
    """Turns pywinrm/requests exceptions into one-line errors; never leaks the password."""

    def __init__(self, conn: WinRMConnection) -> None:
        self.conn = conn

    def map(self, exc: BaseException) -> L1fixError | None:
        name, where = self.conn.target.name, self.conn.endpoint
        if isinstance(exc, requests.exceptions.SSLError):
            return TlsFailure(
                f"TLS certificate of {where} could not be validated",
                target=name,
                hint="check winrm.ca_bundle in config.toml and the host's WinRM HTTPS certificate",
            )
        if isinstance(exc, requests.exceptions.ReadTimeout):
            return Timeout(f"no answer from {where} in {self.conn.settings.read_timeout_s} s", target=name)
        if isinstance(exc, requests.exceptions.ConnectionError):
            return Unreachable(
                f"cannot connect to {where}",
                target=name,
                hint="is the PC on, WinRM enabled (winrm quickconfig -transport:https) and port open?",
            )
        if isinstance(exc, InvalidCredentialsError):
            return AuthRefused(
                f"credentials for {self.conn.settings.username} were refused by {where}",
                target=name,
                hint="check winrm.username/password in config.toml",
            )
        if isinstance(exc, WSManFaultError):
            if exc.wsman_fault_code == ACCESS_DENIED or exc.wmierror_code == ACCESS_DENIED:
                return AuthRefused(
                    "access denied: the account is not allowed to use WinRM on this PC",
                    target=name,
                    hint="the technician account must be a local administrator on the PC",
                )
            return RemoteError(f"WinRM fault: {redact(str(exc.reason))}", target=name)
        if isinstance(exc, WinRMTransportError):
            return Unreachable(f"WinRM transport error (HTTP {exc.code}) from {where}", target=name)
        if isinstance(exc, WinRMError):
            return RemoteError(f"WinRM error: {redact(str(exc))}", target=name)
        return None

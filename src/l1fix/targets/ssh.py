"""SSH connection (paramiko) to Linux and macOS hosts: scripts streamed over stdin to `/bin/sh -s`.

Safe by default: the host key must be known (l1fix's own known_hosts file, and the
technician's ~/.ssh/known_hosts when configured); an unknown host is refused with its
fingerprint unless `trust_new_host` records it; a changed key is always refused. A login
other than root runs scripts with `sudo -n`, which never asks for a password. One SSH
connection serves a run's steps, one channel each; a real per-command timeout closes the
channel, and the script's own watchdog (see targets/shell.py) ends what it started.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import hashlib
import logging
import os
import select
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paramiko

from l1fix.config import resolve_secret
from l1fix.errors import AuthRefused, BadInput, L1fixError, Timeout, Unreachable
from l1fix.secrets import redact
from l1fix.targets import output, shell
from l1fix.targets.base import ErrorMapper, ScriptResult, Target

if TYPE_CHECKING:
    from l1fix.config import Config, SshSettings

log = logging.getLogger(__name__)

KNOWN_HOSTS_NAME = "known_hosts"
USER_KNOWN_HOSTS = Path("~/.ssh/known_hosts")
CHUNK = 32 * 1024
POLL_S = 0.05  # how often a send waiting for the SSH window looks again


class HostKeyRefused(Unreachable):
    """The host's SSH key is unknown or has changed: nothing was sent to it."""

    kind = "host-key"


def open_connection(target: Target, config: Config) -> SSHConnection:
    known_hosts = config.home / KNOWN_HOSTS_NAME
    return SSHConnection(target, config.with_ssh(**target.settings), known_hosts=known_hosts)


def fingerprint(key: paramiko.PKey) -> str:
    """SHA256:… as OpenSSH shows it (`ssh-keygen -l`)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


class SSHConnection:
    """Runs l1fix scripts on one Linux or macOS host over one SSH connection."""

    script_suffix = ".sh"

    def __init__(self, target: Target, settings: SshSettings, *, known_hosts: Path) -> None:
        self.target = target
        self.settings = settings
        self.known_hosts = settings.known_hosts or known_hosts
        self.port = target.port or settings.port
        self.username = settings.username or getpass.getuser()
        self.where = f"{target.address}:{self.port}"
        self._client: paramiko.SSHClient | None = None

    @property
    def uses_sudo(self) -> bool:
        return self.settings.sudo and self.username != "root"

    def run_script(self, script: Path, payload: dict[str, Any], *, timeout: float) -> ScriptResult:
        """Send the script and its data over stdin; return its final JSON document."""
        timeout = min(timeout, self.settings.command_timeout_s) if timeout else self.settings.command_timeout_s
        stdin = shell.build_stdin(script.read_text(encoding="utf-8"), payload, timeout=timeout)
        with self._errors_mapped():
            client = self._open()
            stdout, stderr, code = self._run(client, stdin, timeout)
        return self._parse(script.name, stdout, stderr, code)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- connecting --------------------------------------------------------------------------

    def _open(self) -> paramiko.SSHClient:
        """The run's SSH connection: opened (host key checked, logged in) on first use."""
        if self._client is not None:
            transport = self._client.get_transport()
            if transport is not None and transport.is_active():
                return self._client
            self.close()
        s = self.settings
        auth: dict[str, Any] = {"allow_agent": False, "look_for_keys": False}
        if s.key_file is not None:
            auth["pkey"] = self._load_key(s.key_file)
        if s.password is not None:
            auth["password"] = resolve_secret(s.password, f"SSH password for {self.username}").reveal()
        if s.key_file is None and s.password is None:
            auth = {"allow_agent": True, "look_for_keys": True}  # as ssh does: the agent, ~/.ssh/id_*
        client = paramiko.SSHClient()
        try:
            if s.user_known_hosts:
                user_file = USER_KNOWN_HOSTS.expanduser()
                if user_file.exists():
                    client.load_system_host_keys(str(user_file))
            if self.known_hosts.exists():
                client.load_host_keys(str(self.known_hosts))
            client.set_missing_host_key_policy(_HostKeyPolicy(self))
            client.connect(
                self.target.address,
                port=self.port,
                username=self.username,
                timeout=s.connect_timeout_s,
                banner_timeout=s.connect_timeout_s,
                auth_timeout=s.connect_timeout_s,
                channel_timeout=s.connect_timeout_s,
                **auth,
            )
        except BaseException:
            client.close()
            raise
        self._client = client
        return client

    def _load_key(self, path: Path) -> paramiko.PKey:
        passphrase = None
        if self.settings.key_passphrase is not None:
            passphrase = resolve_secret(self.settings.key_passphrase, f"passphrase of SSH key {path}").reveal()
        try:
            return _private_key(path, passphrase)
        except FileNotFoundError:
            raise BadInput(f"SSH key file {path} does not exist", hint="check ssh.key_file in config.toml") from None
        except PermissionError:
            raise BadInput(f"SSH key file {path} is not readable") from None
        except (paramiko.SSHException, ValueError, TypeError) as exc:
            # cryptography says "password was not provided" with a TypeError, a wrong one with a ValueError.
            if passphrase is None and isinstance(exc, TypeError | paramiko.PasswordRequiredException):
                raise BadInput(
                    f"SSH key file {path} is encrypted and no passphrase is configured",
                    hint="set ssh.key_passphrase (env:, keyring:, file: or prompt)",
                ) from None
            reason = "wrong passphrase, or not a private key" if passphrase else "not a private key l1fix can read"
            raise BadInput(f"cannot load SSH key file {path}: {reason}") from None

    def record_host_key(self, hostname: str, key: paramiko.PKey) -> None:
        """Append the key to l1fix's known_hosts (mode 0600), as `trust_new_host` asks."""
        self.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="ascii") as fh:
            fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        log.warning(
            "%s: recorded the new SSH host key %s %s in %s",
            self.target.name,
            key.get_name(),
            fingerprint(key),
            self.known_hosts,
        )

    # -- running -----------------------------------------------------------------------------

    def _run(self, client: paramiko.SSHClient, stdin: bytes, timeout: float) -> tuple[bytes, bytes, int]:
        transport = client.get_transport()
        if transport is None:
            raise Unreachable(f"the SSH connection to {self.where} is closed", target=self.target.name)
        deadline = time.monotonic() + timeout
        channel = transport.open_session(timeout=self.settings.connect_timeout_s)
        try:
            channel.exec_command(shell.SUDO_COMMAND if self.uses_sudo else shell.COMMAND)
            return self._exchange(channel, stdin, deadline, timeout)
        finally:
            channel.close()

    def _exchange(
        self, channel: paramiko.Channel, stdin: bytes, deadline: float, timeout: float
    ) -> tuple[bytes, bytes, int]:
        """Feed stdin and read stdout/stderr until the command has exited and both are at EOF."""
        pending = memoryview(stdin)
        if not pending:
            channel.shutdown_write()
        stdout: list[bytes] = []
        stderr: list[bytes] = []
        while True:
            if pending and channel.send_ready():
                try:
                    sent = channel.send(pending[:CHUNK].tobytes())
                except OSError:  # the command exited without reading it all
                    sent = len(pending)
                pending = pending[sent:]
                if not pending:
                    with contextlib.suppress(OSError):
                        channel.shutdown_write()
            while channel.recv_ready():
                stdout.append(channel.recv(CHUNK))
            while channel.recv_stderr_ready():
                stderr.append(channel.recv_stderr(CHUNK))
            done = channel.exit_status_ready() and (channel.eof_received or channel.closed)
            if done and not channel.recv_ready() and not channel.recv_stderr_ready():
                return b"".join(stdout), b"".join(stderr), channel.recv_exit_status()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Timeout(
                    f"the script did not finish within {timeout:g} s",
                    target=self.target.name,
                    hint="the host is slow or a command hangs there; its script ends itself shortly",
                )
            if channel.eof_received and not pending:
                # Output is over; only the exit status is to come. The channel's pipe stays
                # readable after EOF, so select() would return at once: wait on the status.
                channel.status_event.wait(min(remaining, 1.0))
            else:
                select.select([channel], [], [], min(remaining, POLL_S if pending else 1.0))

    def _parse(self, name: str, stdout_b: bytes, stderr_b: bytes, code: int) -> ScriptResult:
        stdout = stdout_b.decode("utf-8", errors="replace")
        stderr = stderr_b.decode("utf-8", errors="replace")
        if output.last_json(stdout) is None and self.uses_sudo:
            refusal = _sudo_refusal(stderr)
            if refusal:
                raise AuthRefused(
                    f"{self.username} may not run l1fix scripts as root on this host ({refusal})",
                    target=self.target.name,
                    hint=f"add the sudoers rule '{self.username} ALL=(root) NOPASSWD: /bin/sh', or log in as root",
                )
        return output.script_result(name, self.target.name, stdout, stderr, code)

    def _errors_mapped(self) -> _ErrorMapper:
        return _ErrorMapper(self)


# Keys already read by this process: a fleet run opens one connection per target with the same
# key. An entry counts only for the same file (path, size, time) and the same passphrase.
_KEYS: dict[tuple[str, int, int, bytes], paramiko.PKey] = {}


def _private_key(path: Path, passphrase: str | None) -> paramiko.PKey:
    stat = path.stat()
    secret = hashlib.sha256(passphrase.encode()).digest() if passphrase is not None else b""
    cache_key = (str(path), stat.st_size, stat.st_mtime_ns, secret)
    key = _KEYS.get(cache_key)
    if key is None:
        key = paramiko.PKey.from_path(path, passphrase.encode() if passphrase is not None else None)
        _KEYS[cache_key] = key
    return key


def _sudo_refusal(stderr: str) -> str | None:
    """sudo's own complaint (no password allowed, not in sudoers, no sudo), if that is why nothing ran."""
    for line in stderr.splitlines():
        text = line.strip()
        if text.startswith("sudo: ") or text.endswith(("sudo: not found", "sudo: command not found")):
            return redact(text)[:200]
    return None


class _HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """A host not in known_hosts: refused with its fingerprint, or recorded when trust_new_host is set."""

    def __init__(self, conn: SSHConnection) -> None:
        self.conn = conn

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        conn = self.conn
        if conn.settings.trust_new_host:
            conn.record_host_key(hostname, key)
            client.get_host_keys().add(hostname, key.get_name(), key)
            return
        raise HostKeyRefused(
            f"unknown SSH host key for {conn.where}: {key.get_name()} {fingerprint(key)} is not in {conn.known_hosts}",
            target=conn.target.name,
            hint="check that fingerprint with the host's owner (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub on it), "
            "then run once with ssh.trust_new_host = true to record it",
        )


class _ErrorMapper(ErrorMapper):
    """Turns paramiko/socket exceptions into one-line errors; never leaks a password or passphrase."""

    def __init__(self, conn: SSHConnection) -> None:
        self.conn = conn

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        if isinstance(exc, Exception) and not isinstance(exc, L1fixError):
            self.conn.close()  # whatever broke, the next step starts from a new connection
        return super().__exit__(exc_type, exc, tb)

    def map(self, exc: BaseException) -> L1fixError | None:
        conn = self.conn
        name, where = conn.target.name, conn.where
        if isinstance(exc, paramiko.BadHostKeyException):
            return HostKeyRefused(
                f"the SSH host key of {where} has CHANGED: it offers {exc.key.get_name()} {fingerprint(exc.key)}, "
                f"known_hosts has {exc.expected_key.get_name()} {fingerprint(exc.expected_key)}",
                target=name,
                hint="someone may be intercepting the connection, or the host was reinstalled: check with its owner "
                f"before removing the old key (ssh-keygen -R '[{conn.target.address}]:{conn.port}' -f FILE)",
            )
        if isinstance(exc, paramiko.AuthenticationException):
            return AuthRefused(
                f"SSH login of {conn.username} was refused by {where}",
                target=name,
                hint="check ssh.username, ssh.key_file and ssh.password in config.toml",
            )
        if isinstance(exc, socket.gaierror):
            return Unreachable(f"cannot resolve {conn.target.address}", target=name, hint="check the inventory")
        if isinstance(exc, TimeoutError):
            return Unreachable(
                f"no answer from {where} within {conn.settings.connect_timeout_s:g} s",
                target=name,
                hint="is the computer on and its SSH server reachable?",
            )
        if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError | ConnectionError):
            return Unreachable(
                f"cannot connect to {where}", target=name, hint="is the computer on and its SSH server running?"
            )
        if isinstance(exc, paramiko.SSHException | EOFError | OSError):
            return Unreachable(f"SSH failure with {where}: {redact(str(exc))[:200]}", target=name)
        return None

"""A real OpenSSH server on loopback for the SSH tests (session fixture `sshd`).

Import it into a test module with `from sshd import sshd  # noqa: F401` (it brings the
`cupsd` fixture along when CUPS is installed).

`/usr/sbin/sshd -D -e -f <config>` runs as root from a folder of its own (a fresh
`tempfile.mkdtemp`, mode 0755 so the test users can read their authorized keys, removed at
the end): its ed25519 host key, its config, its pid file, the authorized keys
(`AuthorizedKeysFile <folder>/authorized_keys/%u`, so nobody's ~/.ssh is touched), the
client keys (in a 0700 sub-folder) and its log. It listens on 127.0.0.1:<free port> only,
without PAM, with `StrictModes no` (the folder lives under /tmp).

Logins, each with its own ed25519 key:

- `root`: the connection runs scripts without sudo;
- `l1fixtest`: may run `/bin/sh` as root with `sudo -n` (a sudoers drop-in, NOPASSWD, that
  also keeps CUPS_SERVER); no password (`*`), so only a key in this folder opens it;
- `l1fixnosudo`: no sudo right at all; also logs in with a password, random, kept in a 0600
  root file so concurrent sessions agree on it.

The two users and the drop-in `/etc/sudoers.d/l1fix-tests` are created once and left in
place (under a lock, `$TMPDIR/l1fix-test-users-<uid>/`), so test sessions running at the same
time never pull them from under each other. `/run/sshd` (sshd's privilege-separation folder,
normally made by the service) is created when missing.

The server's sessions get `CUPS_SERVER=<test cupsd>` through `SetEnv`: the "login
environment" of a host whose print scheduler is the test one.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import need_service

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "ssh-keygen"
ADDRESS = "127.0.0.1"
SUDO_USER = "l1fixtest"
PLAIN_USER = "l1fixnosudo"
SUDOERS_DROP_IN = Path("/etc/sudoers.d/l1fix-tests")
SUDOERS_TEXT = f"""\
# l1fix test suite (tests/sshd.py): a throw-away user on a loopback-only test sshd.
# {SUDO_USER} has no password and no key outside that server's temporary folder.
Defaults:{SUDO_USER} env_keep += "CUPS_SERVER"
{SUDO_USER} ALL=(root) NOPASSWD: /bin/sh
"""
START_TIMEOUT_S = 20.0

SSHD_CONFIG = """\
ListenAddress {address}:{port}
HostKey {folder}/ssh_host_ed25519_key
PidFile {folder}/sshd.pid
AuthorizedKeysFile {folder}/authorized_keys/%u
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
AllowUsers root {sudo_user} {plain_user}
AllowTcpForwarding no
X11Forwarding no
PrintMotd no
PrintLastLog no
MaxStartups 100
LogLevel VERBOSE
{set_env}
"""


@dataclass(frozen=True)
class Login:
    """A user of the test server and how it logs in."""

    user: str
    key_file: Path  # ed25519 private key, no passphrase, authorized for this user
    password: str | None = None


@dataclass
class Sshd:
    """One test sshd; `logins` are "root", "sudo" (l1fixtest) and "plain" (l1fixnosudo)."""

    folder: Path
    port: int
    logins: dict[str, Login]
    set_env: dict[str, str]
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def host_key_line(self) -> str:
        """`ssh-ed25519 AAAA…` of the server's host key."""
        return " ".join((self.folder / "ssh_host_ed25519_key.pub").read_text().split()[:2])

    @property
    def fingerprint(self) -> str:
        """SHA256:… as `ssh-keygen -l` shows it."""
        blob = base64.b64decode(self.host_key_line.split()[1])
        return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")

    def known_hosts_line(self) -> str:
        return f"[{ADDRESS}]:{self.port} {self.host_key_line}"

    def new_key(self, name: str, passphrase: str = "") -> Path:
        """A client key pair in the private folder (not authorized for anybody)."""
        return _keygen(self.folder / "client" / name, passphrase)

    def authorize(self, user: str, key_file: Path) -> None:
        """Add a public key to the user's authorized keys on this server."""
        path = self.folder / "authorized_keys" / user
        with path.open("a") as fh:
            fh.write(Path(f"{key_file}.pub").read_text())
        path.chmod(0o644)

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.folder / "sshd.log").read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None


def sshd_available() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "the SSH tests run sshd as root and create throw-away users"
    if not os.access(SSHD, os.X_OK) or shutil.which(SSH_KEYGEN) is None:
        return False, f"{SSHD} or {SSH_KEYGEN} not found (Debian packages openssh-server, openssh-client)"
    for tool in ("useradd", "usermod", "chpasswd", "visudo", "sudo"):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
            return False, f"{tool} not found (Debian packages passwd, sudo)"
    return True, ""


def _keygen(path: Path, passphrase: str = "") -> Path:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", passphrase, "-C", path.name, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def _private_folder() -> Path:
    """$TMPDIR/l1fix-test-users-<uid>/, ours and 0700 (refused if anyone else made it)."""
    folder = Path(tempfile.gettempdir()) / f"l1fix-test-users-{os.geteuid()}"
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise RuntimeError(f"{folder} is not a private folder of ours: remove it")
    return folder


def _run(*args: str, input: str | None = None) -> None:
    out = subprocess.run(list(args), input=input, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {out.stderr.strip()}")


def _user_exists(user: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


def ensure_users() -> str:
    """Create the test users and the sudoers drop-in if missing; return PLAIN_USER's password."""
    folder = _private_folder()
    with (folder / "users.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for user in (SUDO_USER, PLAIN_USER):
            if not _user_exists(user):
                _run("useradd", "--create-home", "--shell", "/bin/sh", "--comment", "l1fix test user", user)
        # "*": no password can match, yet the account is not locked ("!"), so keys still work.
        _run("usermod", "--password", "*", SUDO_USER)
        password_file = folder / "password"
        if not password_file.exists():
            fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(24))
        password = password_file.read_text().strip()
        _run("chpasswd", input=f"{PLAIN_USER}:{password}\n")
        if not SUDOERS_DROP_IN.exists() or SUDOERS_DROP_IN.read_text() != SUDOERS_TEXT:
            staged = folder / "sudoers.staged"
            staged.write_text(SUDOERS_TEXT)
            staged.chmod(0o440)
            _run("visudo", "-c", "-q", "-f", str(staged))
            shutil.copyfile(staged, SUDOERS_DROP_IN)
            SUDOERS_DROP_IN.chmod(0o440)
        return password


def start_sshd(set_env: dict[str, str] | None = None) -> Sshd:
    """Start a test sshd (see the module's docstring); the caller stops it and removes its folder."""
    password = ensure_users()
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="l1fix-sshd-"))
    folder.chmod(0o755)
    (folder / "authorized_keys").mkdir(mode=0o755)
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "ssh_host_ed25519_key")],
        check=True,
        capture_output=True,
    )
    server = Sshd(folder=folder, port=0, logins={}, set_env=dict(set_env or {}))
    for name, user, secret in (("root", "root", None), ("sudo", SUDO_USER, None), ("plain", PLAIN_USER, password)):
        key = server.new_key(name)
        server.authorize(user, key)
        server.logins[name] = Login(user, key, secret)
    env_line = "SetEnv " + " ".join(f"{k}={v}" for k, v in server.set_env.items()) if server.set_env else ""
    for _attempt in range(5):
        with socket.socket() as sock:
            sock.bind((ADDRESS, 0))
            server.port = sock.getsockname()[1]
        config = SSHD_CONFIG.format(
            address=ADDRESS,
            port=server.port,
            folder=folder,
            sudo_user=SUDO_USER,
            plain_user=PLAIN_USER,
            set_env=env_line,
        )
        (folder / "sshd_config").write_text(config)
        _run(SSHD, "-t", "-f", str(folder / "sshd_config"))
        with (folder / "sshd.log").open("ab") as log:
            server.process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(folder / "sshd_config")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if _wait_for_banner(server):
            return server
        server.stop()  # most likely the port was taken between bind and listen: try another
    raise RuntimeError(f"sshd did not start: {server.log_tail()}")


def _wait_for_banner(server: Sshd) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process is None or server.process.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection((ADDRESS, server.port), timeout=2) as sock:
            if sock.recv(64).startswith(b"SSH-2.0-"):
                return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="session")
def sshd(request: pytest.FixtureRequest) -> Iterator[Sshd]:
    """The test sshd, once per session; its sessions reach the test cupsd when CUPS is installed."""
    from cups import cups_available

    available, reason = sshd_available()
    need_service(available, reason)
    set_env = {}
    if cups_available()[0]:
        set_env["CUPS_SERVER"] = request.getfixturevalue("cupsd").server
    server = start_sshd(set_env)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.folder, ignore_errors=True)

"""A real Samba AD domain controller on loopback for the AD tests (session fixture `samba_dc`).

Import it into a test module with `from samba_dc import samba_dc  # noqa: F401`.

Everything lives in one folder of our own, `/tmp/l1fix-samba-<uid>/` (mode 0700):

- `template-<key>/`  a provisioned domain that never ran, cached between test runs; `<key>`
  hashes the Samba version and the provisioning options, so an upgrade provisions anew.
  Provisioning happens in a `.partial-<pid>` folder renamed when complete.
- `live/`  a copy of the template that `samba -F` serves; its pid file, sockets, locks,
  state, cache and log are all inside it (`--option` overrides), nothing in /run/samba or
  /var/lib/samba. Samba's ports are fixed (LDAP 389, LDAPS 636), on loopback only.
- `setup.lock`  held (exclusive) while a session starts or stops the DC;
  `users.lock`  held (shared) by every session using the DC: the last one out stops it.

A DC left running by an earlier run is found by `live/run/samba.pid` — checked to be a
`samba` process holding that very pid file — and reused when it answers LDAPS with the
template's key, else stopped (never looked up by process name). Tests create their own
uniquely named users, so a reused DC is fine.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import os
import secrets
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import need_service

LAYOUT = "1"  # bump when the provisioning below changes
REALM = "L1FIX.TEST"
DOMAIN = "L1FIX"
HOST = "dc1"
SERVER_NAME = "dc1.l1fix.test"
BASE_DN = "DC=l1fix,DC=test"
ADDRESS = "127.0.0.1"
LDAP_PORT, LDAPS_PORT = 389, 636
MIN_PASSWORD_LENGTH = 14
LOCKOUT_THRESHOLD = 3
START_TIMEOUT_S = 60.0
LOCK_TIMEOUT_S = 300.0

# Relative folders every Samba path option points into (inside the provisioned folder).
_DIR_OPTIONS = {
    "pid directory": "run",
    "ncalrpc dir": "run/ncalrpc",
    "winbindd socket directory": "run/winbindd",
    "ntp signd socket directory": "run/ntp_signd",
    "lock directory": "lock",
    "state directory": "state",
    "cache directory": "cache",
}
_OTHER_OPTIONS = {
    "interfaces": "lo",
    "bind interfaces only": "yes",
    "server services": "ldap",  # no smbd, kdc, dns, nbt, cldap, ntp_signd, winbindd
    "dcerpc endpoint servers": "",
}


def _samba_binary() -> str | None:
    return shutil.which("samba") or next((p for p in ("/usr/sbin/samba",) if os.access(p, os.X_OK)), None)


PACKAGES = "samba samba-ad-provision samba-dsdb-modules samba-vfs-modules"


def _samba_module(relative: str) -> bool:
    """A Samba plugin (ldb module, vfs module) is installed, wherever the distribution puts them."""
    roots = ["/usr/lib/*/samba", "/usr/lib/samba", "/usr/lib64/samba"]
    return any(glob.glob(f"{root}/{relative}") for root in roots)


def _missing() -> str | None:
    """Why the DC cannot run here, or None."""
    if _samba_binary() is None or shutil.which("samba-tool") is None:
        return f"Samba is not installed (Debian: apt-get install {PACKAGES})"
    if not Path("/usr/share/samba/setup/ad-schema").is_dir():
        return "Samba's AD provisioning files are missing (Debian: apt-get install samba-ad-provision)"
    if not _samba_module("ldb/samba_dsdb.so"):
        return "Samba's directory database modules are missing (Debian: apt-get install samba-dsdb-modules)"
    if not _samba_module("vfs/acl_xattr.so"):
        return "Samba's VFS modules, needed to provision a DC, are missing (Debian: apt-get install samba-vfs-modules)"
    if os.geteuid() != 0:
        return "a Samba AD DC needs root (LDAP ports 389/636, NT ACL xattrs)"
    return None


def _samba_version() -> str:
    out = subprocess.run([_samba_binary() or "samba", "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip()


@dataclass
class SambaDC:
    """A running DC: where it is, how to trust it, and helpers to prepare accounts."""

    root: Path
    admin_password: str
    address: str = ADDRESS
    server_name: str = SERVER_NAME
    realm: str = REALM
    domain: str = DOMAIN
    base_dn: str = BASE_DN
    admin_user: str = "Administrator@l1fix.test"
    started_s: float = 0.0  # how long start-up took in this session (provision included)
    provisioned_s: float | None = None  # provisioning time, when this session provisioned

    @property
    def ca_file(self) -> Path:
        return self.root / "private" / "tls" / "ca.pem"

    @property
    def conf(self) -> Path:
        return self.root / "etc" / "smb.conf"

    def tool(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `samba-tool ARGS` on the DC's own database."""
        proc = subprocess.run(["samba-tool", *args, "-s", str(self.conf)], capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise RuntimeError(f"samba-tool {args[0]} {args[1] if len(args) > 1 else ''} failed: {proc.stderr}")
        return proc

    def add_user(self, prefix: str = "u", *, password: str | None = None, **attrs: str) -> tuple[str, str]:
        """A new user with a unique sAMAccountName (≤ 20 chars) and a compliant password: (name, password)."""
        name = f"{prefix[:12]}{secrets.token_hex(3)}"
        password = password or f"Init-{secrets.token_hex(6)}-Pw9"
        extra = [f"--{key.replace('_', '-')}={value}" for key, value in attrs.items()]
        self.tool("user", "add", name, password, "--use-username-as-cn", *extra)  # CN unique like the name
        return name, password

    def add_to_group(self, group: str, *members: str) -> None:
        self.tool("group", "addmembers", group, ",".join(members))

    def add_group(self, prefix: str = "g") -> str:
        name = f"{prefix[:12]}{secrets.token_hex(3)}"
        self.tool("group", "add", name)
        return name

    def try_bind(self, user: str, password: str) -> tuple[bool, str]:
        """A simple bind over LDAPS as `user`: (success, the DC's diagnostic message)."""
        import ldap3

        class CheckedTls(ldap3.Tls):  # the server name checked by OpenSSL, not ldap3's deprecated matcher
            def wrap_socket(tls, connection, do_handshake=False):  # noqa: N805
                context = ssl.create_default_context(cafile=str(self.ca_file))
                connection.socket = context.wrap_socket(
                    connection.socket, do_handshake_on_connect=do_handshake, server_hostname=self.server_name
                )

        tls = CheckedTls(validate=ssl.CERT_REQUIRED)
        server = ldap3.Server(self.address, port=LDAPS_PORT, use_ssl=True, tls=tls, get_info=ldap3.NONE)
        conn = ldap3.Connection(server, user=user, password=password, raise_exceptions=False, receive_timeout=10)
        try:
            ok = conn.bind()
            return ok, str(conn.result.get("message", ""))
        finally:
            conn.unbind()

    def config_toml(self, profile: str = "ad", **overrides: object) -> str:
        """A config.toml with an [profiles.NAME.ldap] section for this DC; values may be overridden."""
        ldap: dict[str, object] = {
            "url": f"ldaps://{self.address}",
            "server_name": self.server_name,
            "ca_bundle": str(self.ca_file),
            "bind_user": self.admin_user,
            "bind_password": "env:L1FIX_TEST_AD_PASSWORD",
            "timeout_s": 10,
        }
        ldap.update(overrides)
        lines = [f'default_profile = "{profile}"', "", f"[profiles.{profile}]", "", f"[profiles.{profile}.ldap]"]
        for key, value in ldap.items():
            if value is None:
                continue
            if isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, int | float):
                lines.append(f"{key} = {value}")
            else:
                lines.append(f"{key} = {_toml_string(str(value))}")
        return "\n".join(lines) + "\n"


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- the shared folder, its locks and the DC's life cycle ---------------------------------------


class _Manager:
    """Provisions, starts, reuses and stops the DC in the shared folder (see module docstring)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.live = base / "live"
        self.key = self._key()
        self.template = base / f"template-{self.key}"
        self._users_fd: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def _key() -> str:
        text = "\n".join([LAYOUT, _samba_version(), repr(sorted(_DIR_OPTIONS.items())), repr(_OTHER_OPTIONS)])
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    # -- locks ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _setup_lock(self) -> Iterator[None]:
        fd = os.open(self.base / "setup.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            _flock(fd, fcntl.LOCK_EX, LOCK_TIMEOUT_S, "another test session is starting or stopping the Samba DC")
            yield
        finally:
            os.close(fd)  # releases the lock

    def acquire(self) -> SambaDC:
        """Reuse the running DC or start one; hold the shared `users.lock` until release()."""
        started = time.perf_counter()
        with self._setup_lock():
            fd = os.open(self.base / "users.lock", os.O_RDWR | os.O_CREAT, 0o600)
            self._users_fd = fd
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                others = False
            except BlockingIOError:
                others = True
            provisioned_s = self._ensure_running(shared=others)
            fcntl.flock(fd, fcntl.LOCK_SH)  # no other session can get here: we hold setup.lock
        password = (self.live / "admin-password").read_text().strip()
        dc = SambaDC(root=self.live, admin_password=password)
        dc.started_s = time.perf_counter() - started
        dc.provisioned_s = provisioned_s
        return dc

    def release(self) -> None:
        """Stop the DC if no other session uses it."""
        if self._users_fd is None:
            return
        with self._setup_lock():
            fd, self._users_fd = self._users_fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                last = True
            except BlockingIOError:
                last = False
            if last:
                self._stop()
            os.close(fd)

    # -- start / reuse / stop ------------------------------------------------------------

    def _ensure_running(self, *, shared: bool) -> float | None:
        pid = self._running_pid()
        if pid is not None:
            if self._live_key() == self.key and self._ldaps_answers():
                return None  # reuse: ours, current and answering
            if shared:
                raise RuntimeError(
                    f"a Samba DC (pid {pid}) from another test session with other settings is running in {self.live}"
                )
            self._stop()
        self._check_ports_free()
        provisioned_s = self._ensure_template()
        self._fresh_live()
        try:
            self._start()
        except RuntimeError:
            if provisioned_s is not None:
                raise
            shutil.rmtree(self.template)  # a cached template that does not start: provision anew, once
            provisioned_s = self._ensure_template()
            self._fresh_live()
            self._start()
        return provisioned_s

    def _running_pid(self) -> int | None:
        """The pid in our pid file, if that process is a samba holding this very file."""
        pid_file = self.live / "run" / "samba.pid"
        try:
            pid = int(pid_file.read_text().strip())
            exe = os.readlink(f"/proc/{pid}/exe")
            fds = os.listdir(f"/proc/{pid}/fd")
        except (OSError, ValueError):
            return None
        if Path(exe).name != "samba":
            return None
        for fd in fds:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == str(pid_file):
                    return pid
        return None

    def _live_key(self) -> str | None:
        try:
            return (self.live / "KEY").read_text().strip()
        except OSError:
            return None

    def _ldaps_answers(self) -> bool:
        """A TLS handshake with the DC's own CA and name succeeds."""
        try:
            context = ssl.create_default_context(cafile=str(self.live / "private" / "tls" / "ca.pem"))
            with (
                socket.create_connection((ADDRESS, LDAPS_PORT), timeout=2) as sock,
                context.wrap_socket(sock, server_hostname=SERVER_NAME),
            ):
                return True
        except (OSError, ssl.SSLError):
            return False

    def _check_ports_free(self) -> None:
        for port in (LDAP_PORT, LDAPS_PORT):
            with socket.socket() as sock:
                sock.settimeout(1)
                if sock.connect_ex((ADDRESS, port)) == 0:
                    raise _PortTaken(f"port {port} on {ADDRESS} is used by another LDAP server, not our Samba DC")

    def _ensure_template(self) -> float | None:
        """Provision the cached template if missing; return the time it took (None when cached)."""
        if (self.template / "COMPLETE").exists():
            return None
        for old in self.base.glob("template-*"):  # other keys and interrupted attempts: ours to remove
            shutil.rmtree(old, ignore_errors=True)
        partial = self.base / f"template-{self.key}.partial-{os.getpid()}"
        partial.mkdir(mode=0o700)
        started = time.perf_counter()
        password = f"Adm-{secrets.token_urlsafe(12)}-9x"
        options = {**{k: str(partial / v) for k, v in _DIR_OPTIONS.items()}, **_OTHER_OPTIONS}
        for sub in set(_DIR_OPTIONS.values()):
            (partial / sub).mkdir(parents=True, exist_ok=True)
        cmd = [
            "samba-tool", "domain", "provision",
            f"--realm={REALM}", f"--domain={DOMAIN}", "--server-role=dc", "--dns-backend=NONE",
            f"--adminpass={password}", f"--targetdir={partial}", f"--host-name={HOST}", f"--host-ip={ADDRESS}",
            *(f"--option={k}={v}" for k, v in options.items()),
        ]  # fmt: skip
        _run(cmd, "samba-tool domain provision")
        conf = str(partial / "etc" / "smb.conf")
        _run(
            [
                "samba-tool", "domain", "passwordsettings", "set", "-s", conf,
                f"--account-lockout-threshold={LOCKOUT_THRESHOLD}", f"--min-pwd-length={MIN_PASSWORD_LENGTH}",
                "--min-pwd-age=0", "--complexity=on", "--history-length=24",
            ],
            "samba-tool domain passwordsettings set",
        )  # fmt: skip
        _write_private(partial / "admin-password", password)
        (partial / "PROVISIONED_AT").write_text(str(partial))
        (partial / "COMPLETE").write_text(self.key)
        partial.rename(self.template)
        return time.perf_counter() - started

    def _fresh_live(self) -> None:
        """`live` = a copy of the template, its paths rewritten; Samba makes its TLS files on start."""
        shutil.rmtree(self.live, ignore_errors=True)
        shutil.copytree(self.template, self.live, symlinks=True)
        old = (self.template / "PROVISIONED_AT").read_text()
        conf = self.live / "etc" / "smb.conf"
        conf.write_text(conf.read_text().replace(old, str(self.live)))
        (self.live / "KEY").write_text(self.key)

    def _start(self) -> None:
        log = (self.live / "samba.out").open("wb")
        self._proc = subprocess.Popen(
            [_samba_binary() or "samba", "-F", "-M", "single", "--debug-stdout", "-s", str(self.live / "etc/smb.conf")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.live,
            start_new_session=True,  # its own process group: Ctrl-C on pytest does not reach it
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._ldaps_answers():
            if self._proc.poll() is not None:
                raise RuntimeError(f"samba exited with code {self._proc.returncode}: {self._log_tail()}")
            if time.monotonic() > deadline:
                self._stop()
                raise RuntimeError(f"samba did not answer LDAPS within {START_TIMEOUT_S:g} s: {self._log_tail()}")
            time.sleep(0.1)

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return " | ".join((self.live / "samba.out").read_text(errors="replace").splitlines()[-8:])
        return "no log"

    def _stop(self) -> None:
        """SIGTERM our samba (by its verified pid), then its own process group if it lingers."""
        pid = self._running_pid()
        if pid is None and self._proc is not None and self._proc.poll() is None:
            pid = self._proc.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not _wait_gone(pid, self._proc, 20):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    if os.getpgid(pid) == pid:  # the session start_new_session gave it
                        os.killpg(pid, signal.SIGKILL)
                _wait_gone(pid, self._proc, 10)
        self._proc = None


class _PortTaken(RuntimeError):
    pass


def _wait_gone(pid: int, proc: subprocess.Popen[bytes] | None, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.pid == pid:
            if proc.poll() is not None:
                return True
        else:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                return True
            if state == "Z":
                return True
        time.sleep(0.05)
    return False


def _flock(fd: int, op: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, op | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting: {what}") from None
            time.sleep(0.2)


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {tail}")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def shared_folder() -> Path:
    """`/tmp/l1fix-samba-<uid>` (fixed, so every run finds a DC left running), ours alone: mode 0700."""
    base = Path("/tmp") / f"l1fix-samba-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        base.mkdir(mode=0o700)
    info = base.lstat()

    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise RuntimeError(f"{base} is not a folder owned by uid {os.getuid()}: remove it")
    if info.st_mode & 0o077:
        base.chmod(0o700)
    return base


@pytest.fixture(scope="session")
def samba_dc() -> Iterator[SambaDC]:
    """The DC for this session: started (or reused) once, stopped by the last session using it."""
    missing = _missing()
    need_service(missing is None, missing or "")
    manager = _Manager(shared_folder())
    try:
        dc = manager.acquire()
    except _PortTaken as exc:
        manager.release()
        need_service(False, str(exc))
        raise
    except BaseException:
        manager.release()
        raise
    try:
        yield dc
    finally:
        manager.release()

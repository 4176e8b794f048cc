"""A real CUPS scheduler on loopback for the SSH tests (session fixture `cupsd`).

Import it into a test module with `from cups import cupsd  # noqa: F401`.

`cupsd -f -c cupsd.conf -s cups-files.conf` runs from a folder of its own (a fresh
`tempfile.mkdtemp`, removed at the end): ServerRoot, RequestRoot (spool), TempDir, CacheDir,
StateDir (pid file, certificates), printcap and logs are all inside it, so nothing of the
machine's CUPS (/etc/cups, /var/spool/cups, /run/cups) is read or written. It listens on
127.0.0.1:<free port> only, with browsing and the web interface off, and a policy that lets
loopback clients do everything without authentication: the tests drive it with the real
CUPS clients (`lpadmin`, `lp`, `cupsdisable`…) and `CUPS_SERVER=127.0.0.1:<port>`.

Queues print to `file:///dev/null` (`FileDevice Yes`): a job on an enabled queue completes at
once; a "stuck" printer is a disabled queue (`cupsdisable`) and held jobs (`lp -H hold`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import need_service

CUPSD = "/usr/sbin/cupsd"
CLIENTS = ("lpstat", "lp", "lpadmin", "cancel", "cupsenable", "cupsdisable", "cupsaccept", "cupsreject")
ADDRESS = "127.0.0.1"
START_TIMEOUT_S = 20.0

CUPS_FILES_CONF = """\
ServerRoot {folder}/root
RequestRoot {folder}/spool
TempDir {folder}/spool/tmp
CacheDir {folder}/cache
StateDir {folder}/state
Printcap {folder}/printcap
ErrorLog {folder}/log/error_log
AccessLog {folder}/log/access_log
PageLog {folder}/log/page_log
FileDevice Yes
User lp
Group lp
SystemGroup root
"""

CUPSD_CONF = """\
Listen {address}:{port}
Browsing No
BrowseLocalProtocols none
WebInterface No
DefaultAuthType None
LogLevel info
MaxJobs 0
PreserveJobHistory No
<Location />
  Order allow,deny
  Allow from 127.0.0.1
</Location>
<Policy default>
  JobPrivateAccess all
  JobPrivateValues none
  SubscriptionPrivateAccess all
  SubscriptionPrivateValues none
  <Limit All>
    Order allow,deny
    Allow from 127.0.0.1
  </Limit>
</Policy>
"""


def cups_available() -> tuple[bool, str]:
    """Whether this machine can run the test scheduler, and why not."""
    if os.geteuid() != 0:
        return False, "the CUPS tests run cupsd as root (it drops to the lp user for backends)"
    if not os.access(CUPSD, os.X_OK):
        return False, f"{CUPSD} not found (Debian package cups)"
    missing = [name for name in CLIENTS if shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin") is None]
    if missing:
        return False, f"CUPS clients missing: {', '.join(missing)} (Debian packages cups-client, cups-bsd)"
    return True, ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((ADDRESS, 0))
        return sock.getsockname()[1]


@dataclass
class Cupsd:
    """One scheduler from its own folder; the CUPS clients reach it through `server`."""

    folder: Path
    port: int = 0
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def server(self) -> str:
        return f"{ADDRESS}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        path = os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
        return {**os.environ, "CUPS_SERVER": self.server, "LC_ALL": "C", "PATH": path}

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Write the configuration (first time) and start cupsd; wait until it answers."""
        if not (self.folder / "cupsd.conf").exists():
            self.port = free_port()
            for sub in ("root", "spool/tmp", "cache", "state", "log"):
                (self.folder / sub).mkdir(parents=True, exist_ok=True)
            # cupsd's backends run as lp: they must reach the spool inside this folder.
            self.folder.chmod(0o755)
            (self.folder / "cups-files.conf").write_text(CUPS_FILES_CONF.format(folder=self.folder))
            (self.folder / "cupsd.conf").write_text(CUPSD_CONF.format(address=ADDRESS, port=self.port))
        log = (self.folder / "log" / "cupsd.out").open("ab")
        self.process = subprocess.Popen(
            [CUPSD, "-f", "-c", str(self.folder / "cupsd.conf"), "-s", str(self.folder / "cups-files.conf")],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "LC_ALL": "C"},
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"cupsd exited with {self.process.returncode}: {self.log_tail()}")
            if self.answers():
                return
            time.sleep(0.05)
        raise RuntimeError(f"cupsd did not answer within {START_TIMEOUT_S} s: {self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.thaw()
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def freeze(self) -> None:
        """SIGSTOP: the port still accepts connections, nothing answers (a hung scheduler)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def answers(self) -> bool:
        out = self.run("lpstat", "-r", check=False, timeout=5)
        return out.stdout.strip() == "scheduler is running"

    def log_tail(self, lines: int = 20) -> str:
        texts = []
        for name in ("cupsd.out", "error_log"):
            with contextlib.suppress(OSError):
                texts.append((self.folder / "log" / name).read_text(errors="replace"))
        return "\n".join("\n".join(texts).splitlines()[-lines:])

    # -- clients -------------------------------------------------------------------------

    def run(self, *args: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        """Run a CUPS client command against this scheduler."""
        out = subprocess.run(list(args), capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and out.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({out.returncode}): {out.stderr.strip()}")
        return out

    def reset(self) -> None:
        """No queue, no job: every test starts from an empty scheduler."""
        self.thaw()
        if self.process is None or self.process.poll() is not None:
            self.start()
        self.run("cancel", "-a", "-x", check=False)
        for name in self.queues():
            self.run("lpadmin", "-x", name)

    def add_queue(self, name: str, *, enabled: bool = True, reason: str = "") -> None:
        """A queue that prints to /dev/null; disabled (stopped) with `reason` when not enabled."""
        self.run("lpadmin", "-p", name, "-E", "-v", "file:///dev/null")
        if not enabled:
            self.run("cupsdisable", *(["-r", reason] if reason else []), name)

    def submit(self, queue: str, *, hold: bool = False, title: str = "l1fix test page") -> str:
        """Print a small text job; held (`lp -H hold`) when asked. Returns its id, `queue-N`."""
        args = ["lp", "-d", queue, "-t", title, *(["-H", "hold"] if hold else [])]
        out = subprocess.run(args, input="l1fix\n", capture_output=True, text=True, env=self.env, timeout=20)
        if out.returncode != 0:
            raise RuntimeError(f"lp failed: {out.stderr.strip()}")
        return out.stdout.split("request id is ", 1)[1].split()[0]

    def queues(self) -> dict[str, dict[str, bool]]:
        """{name: {"enabled", "accepting"}} from lpstat."""
        found: dict[str, dict[str, bool]] = {}
        for line in self.run("lpstat", "-p", check=False).stdout.splitlines():
            if line.startswith("printer "):
                name = line.split()[1]
                found[name] = {"enabled": " disabled since " not in line, "accepting": True}
        for line in self.run("lpstat", "-a", check=False).stdout.splitlines():
            words = line.split()
            if words and words[0] in found:
                found[words[0]]["accepting"] = words[1] != "not"
        return found

    def jobs(self) -> list[str]:
        """The ids of the jobs not completed."""
        lines = self.run("lpstat", "-o", check=False).stdout.splitlines()
        return [line.split()[0] for line in lines if line and not line[0].isspace()]


@pytest.fixture(scope="session")
def cupsd() -> Iterator[Cupsd]:
    """The test scheduler, started once per session; tests call `reset()` before using it."""
    available, reason = cups_available()
    need_service(available, reason)
    server = Cupsd(Path(tempfile.mkdtemp(prefix="l1fix-cupsd-")))
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.folder, ignore_errors=True)

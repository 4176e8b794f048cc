"""service-restart and temp-clean on Linux, against the real OpenSSH server of tests/sshd.py.

This machine has no systemd: service-restart goes through `service NAME ...` and an init.d
script, a throw-away one of each test's own (/etc/init.d/l1fix-test-<random>: a `sleep` with a
pid file, removed after the test). The systemd path (systemctl, journalctl) and the macOS one
(launchctl) are not exercised here.

temp-clean cleans the real /tmp and /var/tmp of this machine: the tests age only files of
their own (os.utime) to the year 2001 and run it with --older-than-days 3650, so only files
older than ten years are ever candidates; a guard refuses to run when anything else that old
is there.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import l1fix.actions
from cups import cupsd  # noqa: F401 - the sshd fixture brings the test cupsd along
from l1fix.config import load_config
from l1fix.errors import AuthRefused, RemoteError
from l1fix.runner import execute
from l1fix.targets import shell
from sshd import Sshd, sshd  # noqa: F401
from test_ssh import HOST, PASSWORD_ENV, cli, write_home

INIT_D = Path("/etc/init.d")


def with_allowed(home: Path, *services: str) -> None:
    """Set `allowed_services` in the profile that write_home made."""
    config = home / "config.toml"
    lines = [line for line in config.read_text().splitlines() if not line.startswith("allowed_services =")]
    lines.insert(lines.index("[profiles.t]") + 1, f"allowed_services = [{', '.join(map(json.dumps, services))}]")
    config.write_text("\n".join(lines) + "\n")


def run(action: str, params: dict[str, Any] | None = None, **options: Any) -> Any:
    return execute(action, HOST, params or {}, config=load_config(), **options)


# -- service-restart ---------------------------------------------------------------------------

INIT_SCRIPT = """\
    #!/bin/sh
    # l1fix test service (tests/test_linux_fixes.py): a sleep with a pid file. Throw-away.
    STATE={state}
    PIDFILE="$STATE/pid"
    alive() {{ [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }}
    case "$1" in
        start)
            if [ -e "$STATE/broken" ]; then
                echo "l1fix-test: cannot start: $(cat "$STATE/broken")" >&2
                exit 1
            fi
            alive && exit 0
            setsid sleep 3600 </dev/null >/dev/null 2>&1 &
            echo $! >"$PIDFILE"
            echo started >>"$STATE/log"
            ;;
        stop)
            alive && kill "$(cat "$PIDFILE")"
            rm -f "$PIDFILE"
            ;;
        restart)
            "$0" stop
            "$0" start
            ;;
        status)
            alive && {{ echo "l1fix-test is running"; exit 0; }}
            [ -e "$PIDFILE" ] && {{ echo "l1fix-test is dead, pid file left"; exit 1; }}
            echo "l1fix-test is not running"
            exit 3
            ;;
        *) echo "Usage: $0 start|stop|restart|status" >&2; exit 2 ;;
    esac
    """


@dataclass
class InitService:
    """A throw-away init.d service of this test."""

    name: str
    state: Path

    @property
    def script(self) -> Path:
        return INIT_D / self.name

    def pid(self) -> int | None:
        text = (self.state / "pid").read_text().strip() if (self.state / "pid").exists() else ""
        return int(text) if text else None

    def running(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def control(self, verb: str) -> None:
        subprocess.run([str(self.script), verb], check=True, capture_output=True, timeout=30)

    def starts(self) -> int:
        return len((self.state / "log").read_text().splitlines()) if (self.state / "log").exists() else 0


@pytest.fixture
def service(sshd: Sshd, home: Path) -> Iterator[InitService]:  # noqa: F811
    """A stopped init.d service, on the allow-list of the profile that reaches the test sshd."""
    state = Path(os.environ.get("TMPDIR", "/tmp")) / f"l1fix-svc-{secrets.token_hex(4)}"
    state.mkdir(mode=0o755)
    svc = InitService(f"l1fix-test-{secrets.token_hex(4)}", state)
    svc.script.write_text(textwrap.dedent(INIT_SCRIPT.format(state=state)))
    svc.script.chmod(0o755)
    write_home(home, sshd)
    with_allowed(home, "Spooler", svc.name)
    try:
        yield svc
    finally:
        pid = svc.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        svc.script.unlink(missing_ok=True)
        shutil.rmtree(state, ignore_errors=True)


def test_a_stopped_service_is_started_then_already_ok(service: InitService) -> None:
    result = run("service-restart", {"service": service.name})
    assert result.status == "fixed", (result.error, result.summary)
    assert result.before == {
        "service": service.name,
        "manager": "sysv",
        "status": "not running (status exit code 3)",
        "running": False,
        "masked": False,
        "detail": "l1fix-test is not running",
    }
    assert result.steps["check"] == f"Service '{service.name}' (sysv) is not running: not running (status exit code 3)."
    assert result.done["action"] == "started" and result.done["start_error"] == ""
    assert result.steps["fix"] == f"Started service '{service.name}' (service {service.name} restart)."
    assert result.after["running"] is True and result.steps["verify"] == f"Service '{service.name}' (sysv) is running."
    assert service.running() and service.starts() == 1
    pid = service.pid()

    again = run("service-restart", {"service": service.name})
    assert again.status == "already-ok" and list(again.steps) == ["check"]
    assert service.pid() == pid and service.starts() == 1  # a running service is left alone, as on Windows


def test_a_dead_service_with_a_stale_pid_file_is_started(service: InitService) -> None:
    gone = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True).stdout
    (service.state / "pid").write_text(gone)  # it crashed: its pid file stays, naming a process that is gone
    result = run("service-restart", {"service": service.name})
    assert result.before["status"] == "not running (status exit code 1)"
    assert result.status == "fixed" and service.running()


def test_dry_run_changes_nothing(service: InitService) -> None:
    result = run("service-restart", {"service": service.name}, dry_run=True)
    assert result.status == "skipped" and result.summary.endswith("(dry run: nothing changed)")
    assert not service.running() and service.starts() == 0


def test_a_service_that_fails_to_start_is_failed_with_the_reason(service: InitService) -> None:
    (service.state / "broken").write_text("missing /etc/l1fix-test.conf\n")
    result = run("service-restart", {"service": service.name})
    assert result.status == "failed", (result.error, result.summary)
    assert result.done["start_error"] == f"'service {service.name} restart' failed (exit code 1)"
    assert "l1fix-test: cannot start: missing /etc/l1fix-test.conf" in result.done["log"]
    assert result.steps["fix"] == (
        f"Tried to start service '{service.name}' but it is not running: 'service {service.name} restart' failed "
        "(exit code 1). Last output: l1fix-test: cannot start: missing /etc/l1fix-test.conf"
    )
    assert result.steps["verify"].startswith(f"Service '{service.name}' (sysv) is still not running")


def test_the_cli_starts_it(service: InitService, home: Path) -> None:
    code, out, _ = cli(home, "service-restart", HOST, "--service", service.name)
    assert (code, out["status"], out["error"]) == (0, "fixed", None)
    assert service.running()


@pytest.mark.parametrize(
    ("allowed", "asked"),
    [
        ("{name}", "{upper}"),  # Linux names are exact: case counts
        ("windows:{name}", "{name}"),  # an entry for Windows only
        ("{name}", "{name}.service"),
        ("Spooler", "cron"),
    ],
)
def test_a_service_off_the_allow_list_is_refused_before_connecting(
    service: InitService,
    home: Path,
    sshd: Sshd,  # noqa: F811
    allowed: str,
    asked: str,
) -> None:
    names = {"name": service.name, "upper": service.name.upper()}
    write_home(home, sshd, port=1)  # nothing listens there: a connection attempt would be "unreachable"
    with_allowed(home, allowed.format(**names))
    code, out, _ = cli(home, "service-restart", HOST, "--service", asked.format(**names))
    assert (code, out["status"], out["error"]["kind"]) == (2, "error", "refused")
    assert "not on the allow-list" in out["error"]["message"]
    assert not service.running()


def test_an_os_prefixed_entry_allows_it_on_linux(service: InitService, home: Path) -> None:
    with_allowed(home, "windows:Spooler", f"linux:{service.name}")
    assert run("service-restart", {"service": service.name}).status == "fixed"


def test_an_unknown_service_is_a_clear_error(service: InitService, home: Path) -> None:
    ghost = service.name + "-ghost"
    with_allowed(home, ghost)
    result = run("service-restart", {"service": ghost})
    assert result.status == "error" and isinstance(result.exception, RemoteError)
    assert result.error.message == (
        f"{HOST}: service.sh: Service '{ghost}' was not found on this computer (no init script /etc/init.d/{ghost})."
    )
    assert result.exit_code == 1


def test_a_login_without_sudo_gets_a_clear_sudo_error(
    service: InitService,
    home: Path,
    sshd: Sshd,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, sshd.logins["plain"].password)
    plain = {"username": sshd.logins["plain"].user, "password": f"env:{PASSWORD_ENV}"}
    write_home(home, sshd, ssh={"key_file": None}, host_ssh=plain)
    with_allowed(home, service.name)
    result = run("service-restart", {"service": service.name})
    assert result.status == "error" and isinstance(result.exception, AuthRefused) and result.exit_code == 3
    assert "l1fixnosudo may not run l1fix scripts as root on this host (sudo: a password is required)" in (
        result.error.message
    )

    write_home(home, sshd, ssh={"key_file": None}, host_ssh={**plain, "sudo": False})
    with_allowed(home, service.name)
    result = run("service-restart", {"service": service.name})
    assert result.status == "error" and result.exit_code == 1
    assert f"Restarting service '{service.name}' needs root" in result.error.message
    assert not service.running()


HOSTILE = ["it's", 'a"b', "$(touch {marker})", "`touch {marker}`", "x;touch {marker}", "caf\u00e9", "-h", "a b"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_service_names_arrive_as_data_and_are_refused(
    service: InitService,
    home: Path,
    sshd: Sshd,  # noqa: F811
    name: str,
) -> None:
    marker = f"l1fix-pwned-{secrets.token_hex(4)}"  # a relative name: the remote shell runs in the login's home
    name = name.format(marker=marker)
    with_allowed(home, name)
    result = run("service-restart", {"service": name})
    assert result.status == "error" and result.exit_code == 1
    assert (
        result.error.message == f"{HOST}: service.sh: '{name}' is not a service name l1fix restarts on Linux or macOS."
    )
    assert not (Path(pwd.getpwnam(sshd.logins["sudo"].user).pw_dir) / marker).exists()


# -- temp-clean ----------------------------------------------------------------------------------

DAYS = 3650  # the tests' age limit: ten years
ANCIENT = 978_307_200  # 2001-01-01: older than DAYS


def age(path: Path) -> None:
    """Make `path` (never what a link points to) look untouched since 2001: mtime and atime."""
    os.utime(path, (ANCIENT, ANCIENT), follow_symlinks=False)


def foreign_ancient_files(*mine: Path) -> list[str]:
    """Files older than DAYS in /tmp and /var/tmp that are not this test's: temp-clean would delete them."""
    out = subprocess.run(
        ["find", "/tmp", "/var/tmp", "-xdev", "-type", "f", "-mmin", f"+{DAYS * 1440}"],
        capture_output=True,
        text=True,
    )
    return [line for line in out.stdout.splitlines() if not any(line.startswith(str(m)) for m in mine)]


@dataclass
class TempFiles:
    """This test's own files in /tmp and /var/tmp, and what temp-clean must do with each."""

    base: Path  # /tmp/l1fix-tc-<random>, aged
    roots: list[Path]  # everything this test made, removed at the end
    removed: dict[str, Path]
    kept: dict[str, Path]
    holder: subprocess.Popen

    def exists(self, path: Path) -> bool:
        return os.path.lexists(path)


@pytest.fixture
def temp_files(sshd: Sshd, home: Path) -> Iterator[TempFiles]:  # noqa: F811
    """Old and new files of every kind in a folder of /tmp, one old file in /var/tmp, a folder
    outside both that links point to; the profile reaches the test sshd."""
    tag = secrets.token_hex(4)
    base = Path(f"/tmp/l1fix-tc-{tag}")
    outside = Path(f"/var/lib/l1fix-tc-outside-{tag}")
    private = Path(f"/tmp/systemd-private-l1fix-tc-{tag}")
    var_file = Path(f"/var/tmp/l1fix-tc-{tag}.log")
    roots = [base, outside, private, var_file]
    for folder in (base, outside, private, base / "busy", base / "empty-old"):
        folder.mkdir()
    write = {
        base / "old.tmp": 1000,
        base / "old-of-l1fixtest.tmp": 2000,
        var_file: 3000,
        base / "fresh.tmp": 10,
        base / "read-today.tmp": 20,
        base / "held.tmp": 30,
        base / "caf\u00e9 held.tmp": 35,  # lsof shows this name escaped: asked about on its own
        base / "busy" / "old-in-busy-folder.tmp": 40,
        private / "old-in-private.tmp": 50,
        outside / "target.txt": 60,
        outside / "in-linked-folder.txt": 70,
    }
    for path, size in write.items():
        path.write_bytes(b"x" * size)
    os.chown(base / "old-of-l1fixtest.tmp", *_ids(sshd.logins["sudo"].user))
    (base / "link.tmp").symlink_to(outside / "target.txt")
    (base / "linked-folder").symlink_to(outside)
    os.mkfifo(base / "fifo.tmp")
    with socket_file(base / "socket.tmp"):
        pass
    with (base / "held.tmp").open("ab") as out, (base / "caf\u00e9 held.tmp").open("ab") as err:
        holder = subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    for path in [*write, base / "link.tmp", base / "linked-folder", base / "fifo.tmp", base / "socket.tmp"]:
        if path != base / "fresh.tmp":
            age(path)
    os.utime(base / "read-today.tmp", (time.time(), ANCIENT))  # read today, written in 2001
    for folder in (base / "empty-old", private, outside, base):  # last: making entries changed them
        age(folder)
    removed = {"old": base / "old.tmp", "owned": base / "old-of-l1fixtest.tmp", "var": var_file}
    removed["empty folder"] = base / "empty-old"
    kept = {
        name: base / name
        for name in ("fresh.tmp", "read-today.tmp", "held.tmp", "caf\u00e9 held.tmp", "link.tmp", "linked-folder")
        + ("fifo.tmp", "socket.tmp")
    }
    kept |= {
        "busy": base / "busy" / "old-in-busy-folder.tmp",
        "private": private / "old-in-private.tmp",
        "target": outside / "target.txt",
        "through link": outside / "in-linked-folder.txt",
    }
    files = TempFiles(base, roots, removed, kept, holder)
    foreign = foreign_ancient_files(*roots)
    if foreign:
        pytest.skip(f"files older than {DAYS} days in /tmp or /var/tmp that are not this test's: {foreign[:3]}")
    write_home(home, sshd)
    try:
        yield files
    finally:
        holder.kill()
        holder.wait()
        for root in roots:
            if root.is_dir() and not root.is_symlink():
                shutil.rmtree(root, ignore_errors=True)
            else:
                root.unlink(missing_ok=True)


def _ids(user: str) -> tuple[int, int]:
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


@contextlib.contextmanager
def socket_file(path: Path) -> Iterator[None]:
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(path))
        yield
    finally:
        sock.close()


def mine(state: dict[str, Any]) -> dict[str, Any]:
    return {key: state[key] for key in ("old_files", "old_bytes", "files_in_use", "old_empty_folders")}


def test_temp_clean_deletes_only_old_unused_regular_files(temp_files: TempFiles) -> None:
    dry = run("temp-clean", {"older-than-days": DAYS}, dry_run=True)
    assert dry.status == "skipped", (dry.error, dry.summary)
    assert mine(dry.before) == {"old_files": 3, "old_bytes": 6000, "files_in_use": 2, "old_empty_folders": 1}
    assert all(temp_files.exists(p) for p in [*temp_files.removed.values(), *temp_files.kept.values()])

    result = run("temp-clean", {"older-than-days": DAYS})
    assert result.status == "fixed", (result.error, result.summary)
    gone = {name for name, path in {**temp_files.removed, **temp_files.kept}.items() if not temp_files.exists(path)}
    assert gone == set(temp_files.removed)
    assert (temp_files.kept["target"]).read_bytes() == b"x" * 60
    assert result.before["in_use_check"] == "lsof" and result.before["user"] is None
    assert [f["path"] for f in result.before["folders"]] == ["/tmp", "/var/tmp"]
    assert result.steps["check"].startswith(
        f"3 temporary files (5.9 KB) and 1 empty folder older than {DAYS} days in /tmp and /var/tmp; "
    )
    assert result.steps["check"].endswith(" free, 2 old files in use kept.")
    done = result.done
    assert (done["files_deleted"], done["bytes_freed"], done["empty_folders_removed"]) == (3, 6000, 1)
    assert (done["files_in_use"], done["files_not_deleted"]) == (2, 0)
    assert done["free_bytes_before"] > 0 and done["free_bytes_after"] > 0
    assert done["summary"].startswith("Deleted 3 files (5.9 KB freed) and 1 empty folder; free space ")
    assert done["summary"].endswith(" 2 files in use left alone.")
    assert (result.after["old_files"], result.after["old_empty_folders"]) == (0, 0)

    again = run("temp-clean", {"older-than-days": DAYS})
    assert again.status == "already-ok" and list(again.steps) == ["check"]
    assert again.steps["check"].startswith(f"No temporary file older than {DAYS} days to delete in /tmp and /var/tmp")


def test_a_login_without_root_rights_deletes_nothing_and_fails(temp_files: TempFiles, home: Path, sshd: Sshd) -> None:  # noqa: F811
    write_home(home, sshd, host_ssh={"sudo": False})  # l1fixtest itself: not allowed to delete root's files
    result = run("temp-clean", {"older-than-days": DAYS})
    assert result.status == "failed", (result.error, result.summary)
    assert result.done["files_deleted"] == 0 and result.done["files_not_deleted"] >= 3
    assert result.steps["fix"].endswith(" could not be deleted.")
    assert " could not be deleted in /tmp and /var/tmp; " in result.steps["verify"]
    assert all(temp_files.exists(p) for p in [*temp_files.removed.values(), *temp_files.kept.values()])


def test_the_default_age_of_one_day_finds_them_too(temp_files: TempFiles) -> None:
    """Read only (dry run): with the default, everything older than a day on this machine counts."""
    result = run("temp-clean", dry_run=True)
    assert result.before["older_than_days"] == 1
    assert result.before["old_files"] >= 3 and result.before["files_in_use"] >= 2
    assert all(temp_files.exists(p) for p in temp_files.removed.values())


def test_temp_clean_for_one_user_deletes_only_their_files(temp_files: TempFiles, sshd: Sshd) -> None:  # noqa: F811
    user = sshd.logins["sudo"].user
    result = run("temp-clean", {"older-than-days": DAYS, "user": user})
    assert result.status == "fixed", (result.error, result.summary)
    assert result.before["user"] == user
    assert mine(result.before) == {"old_files": 1, "old_bytes": 2000, "files_in_use": 0, "old_empty_folders": 0}
    assert not temp_files.exists(temp_files.removed["owned"])
    assert temp_files.exists(temp_files.removed["old"]) and temp_files.exists(temp_files.removed["var"])
    assert temp_files.exists(temp_files.removed["empty folder"])  # root's


@pytest.mark.parametrize("login", ["ghost-l1fix", "it's", "$(touch {marker})", "`touch {marker}`", "-h", "caf\u00e9"])
def test_temp_clean_for_an_unknown_user_is_an_error(temp_files: TempFiles, sshd: Sshd, login: str) -> None:  # noqa: F811
    marker = f"l1fix-pwned-{secrets.token_hex(4)}"
    login = login.format(marker=marker)
    result = run("temp-clean", {"older-than-days": DAYS, "user": login})
    assert result.status == "error" and result.exit_code == 1
    assert result.error.message == (
        f"{HOST}: temp_clean.sh: User '{login}' does not exist on this computer: nothing of theirs to clean "
        "(check the login, or clean without --user)."
    )
    assert all(temp_files.exists(p) for p in temp_files.removed.values())
    assert not (Path(pwd.getpwnam(sshd.logins["sudo"].user).pw_dir) / marker).exists()


@pytest.mark.parametrize("days", ["-1", "3651", "x"])
def test_temp_clean_bad_age_is_bad_input(temp_files: TempFiles, days: str) -> None:
    result = run("temp-clean", {"older-than-days": days})
    assert result.exit_code == 2 and result.error.kind == "bad-input"
    assert all(temp_files.exists(p) for p in temp_files.removed.values())


def test_temp_clean_through_the_cli(temp_files: TempFiles, home: Path) -> None:
    code, out, _ = cli(home, "temp-clean", HOST, "--older-than-days", str(DAYS))
    assert (code, out["status"]) == (0, "fixed")
    assert out["done"]["files_deleted"] == 3 and not temp_files.exists(temp_files.removed["old"])


def run_locally(params: dict[str, Any], tools: Path) -> dict[str, Any]:
    """temp_clean.sh run here as root (not over SSH), its PATH being `tools` only (and sbin)."""
    script = Path(l1fix.actions.__file__).with_name("temp_clean.sh")
    payload = {"action": "temp-clean", "steps": ["check", "fix", "verify"], "params": params, "before": None}
    proc = subprocess.run(
        ["/bin/sh", "-s"],
        input=shell.build_stdin(script.read_text(), payload, timeout=60),
        capture_output=True,
        env={"PATH": str(tools), "LC_ALL": "C"},
        start_new_session=True,  # its watchdog kills its process group, never pytest's
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def tools_without(tmp_path: Path, *missing: str) -> Path:
    """A folder of links to every tool in /usr/bin but `missing`."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in Path("/usr/bin").iterdir():
        if tool.name not in missing:
            (folder / tool.name).symlink_to(tool)
    return folder


def test_without_lsof_fuser_finds_the_files_in_use(temp_files: TempFiles, tmp_path: Path) -> None:
    out = run_locally({"older-than-days": DAYS}, tools_without(tmp_path, "lsof"))
    assert out["check"]["state"]["in_use_check"] == "fuser"
    assert mine(out["check"]["state"]) == {"old_files": 3, "old_bytes": 6000, "files_in_use": 2, "old_empty_folders": 1}
    assert (out["fix"]["files_deleted"], out["fix"]["files_in_use"], out["verify"]["ok"]) == (3, 2, True)
    assert not any(temp_files.exists(p) for p in temp_files.removed.values())
    assert all(temp_files.exists(p) for p in temp_files.kept.values())


def test_without_lsof_and_fuser_nothing_is_deleted(temp_files: TempFiles, tmp_path: Path) -> None:
    out = run_locally({"older-than-days": DAYS}, tools_without(tmp_path, "lsof", "fuser"))
    assert out["check"]["state"]["in_use_check"] == "none"
    assert out["fix"]["summary"] == (
        "Nothing deleted: neither lsof nor fuser is installed on this computer, so l1fix cannot tell which files are "
        "in use; install lsof (or psmisc for fuser) and run again."
    )
    assert out["fix"]["files_deleted"] == 0 and out["verify"]["ok"] is False
    assert all(temp_files.exists(p) for p in [*temp_files.removed.values(), *temp_files.kept.values()])

"""The SSH connection and spooler-restart on CUPS, against a real OpenSSH server and a real
CUPS scheduler on loopback (tests/sshd.py, tests/cups.py), through the runner and the CLI.

The host `LNX01` of each test's inventory is the test sshd; its sessions reach the test
cupsd through CUPS_SERVER (sshd's SetEnv; sudo keeps it). A "stuck printer" is a disabled
queue with held jobs.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import run_cli
from cups import Cupsd, cupsd  # noqa: F401
from l1fix.config import SshSettings, load_config
from l1fix.errors import AuthRefused, BadInput, BadOutput, RemoteError, Timeout
from l1fix.runner import execute
from l1fix.targets.base import Target
from l1fix.targets.ssh import HostKeyRefused, SSHConnection
from sshd import Sshd, sshd  # noqa: F401

HOST = "LNX01"
PASSWORD_ENV = "L1FIX_TEST_SSH_PASSWORD"
WRONG_PASSWORD = "Wr0ng-Pa55word-l1fix"


@dataclass
class Lab:
    sshd: Sshd
    cupsd: Cupsd


@pytest.fixture(scope="session")
def lab(sshd: Sshd, cupsd: Cupsd, tmp_path_factory: pytest.TempPathFactory) -> Lab:  # noqa: F811
    """Both servers, once checked: a session really talks to the test cupsd, as root and
    through sudo. (Were CUPS_SERVER lost, spooler.sh would judge the machine's own CUPS.)"""
    script = write_script(tmp_path_factory.mktemp("ssh-lab"), SERVER_SCRIPT, "server")
    for login in ("root", "sudo"):
        conn = connection(sshd, login)
        try:
            seen = conn.run_script(script, {"steps": ["check"]}, timeout=20)
        finally:
            conn.close()
        assert seen.data["check"]["state"] == {"server": cupsd.server, "uid": "0"}, seen.data
    return Lab(sshd, cupsd)


@pytest.fixture
def printers(lab: Lab) -> Cupsd:
    """An empty scheduler, answering."""
    lab.cupsd.reset()
    return lab.cupsd


def stuck_printer(cups: Cupsd) -> list[str]:
    """Queue `office` disabled (paper jam) with two held jobs and one waiting; `spare` fine."""
    cups.add_queue("office", enabled=False, reason="Paper jam in tray 2")
    cups.add_queue("spare")
    return [cups.submit("office", hold=True), cups.submit("office", hold=True), cups.submit("office")]


# -- homes, configs, inventories ----------------------------------------------------------


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(str(value))


def write_home(
    home: Path,
    server: Sshd,
    *,
    login: str = "sudo",
    ssh: dict[str, Any] | None = None,
    host_ssh: dict[str, Any] | None = None,
    known: bool = True,
    port: int | None = None,
) -> Path:
    """config.toml (profile t, its ssh section), inventory.yml (LNX01) and known_hosts in `home`."""
    who = server.logins[login]
    settings = {"username": who.user, "key_file": str(who.key_file), **(ssh or {})}
    lines = ['default_profile = "t"', "[profiles.t]", 'inventory = "inventory.yml"', "[profiles.t.ssh]"]
    lines += [f"{key} = {toml_value(value)}" for key, value in settings.items() if value is not None]
    (home / "config.toml").write_text("\n".join(lines) + "\n")
    entry: dict[str, Any] = {"address": "127.0.0.1", "os": "linux", "connection": "ssh", "port": port or server.port}
    if host_ssh:
        entry["ssh"] = host_ssh
    (home / "inventory.yml").write_text(json.dumps({"hosts": {HOST: entry}}))  # JSON is YAML
    known_hosts = home / "known_hosts"
    if known:
        known_hosts.write_text(server.known_hosts_line() + "\n")
    elif known_hosts.exists():
        known_hosts.unlink()
    return home


def connection(server: Sshd, login: str = "sudo", **overrides: Any) -> SSHConnection:
    who = server.logins[login]
    known_hosts = server.folder / "client" / "known_hosts"
    known_hosts.write_text(server.known_hosts_line() + "\n")
    settings = SshSettings(username=who.user, key_file=who.key_file, known_hosts=known_hosts, **overrides)
    target = Target(HOST, "127.0.0.1", os="linux", connection="ssh", port=server.port)
    return SSHConnection(target, settings, known_hosts=known_hosts)


def write_script(folder: Path, text: str, name: str = "test") -> Path:
    path = folder / f"{name}.sh"
    path.write_text(textwrap.dedent(text))
    return path


SERVER_SCRIPT = """\
    l1fix_prepare() { :; }
    l1fix_check() {
        l1fix_observation true "{\\"server\\":$(l1fix_json_string "$(lpstat -H)"),\\"uid\\":\\"$(id -u)\\"}" 'who'
    }
    l1fix_fix() { :; }
    l1fix_verify() { :; }
    l1fix_run_steps
    """


def cli(home: Path, *args: str) -> tuple[int, dict, str]:
    out = run_cli(*args, "--json", home=home)
    return out.code, out.json(), out.stderr


# -- spooler-restart on CUPS --------------------------------------------------------------


def test_a_stuck_queue_is_cleared_then_already_ok(lab: Lab, printers: Cupsd, home: Path) -> None:
    jobs = stuck_printer(printers)
    write_home(home, lab.sshd)
    config = load_config()

    result = execute("spooler-restart", HOST, config=config)
    assert result.status == "fixed", (result.error, result.summary)
    assert result.before["scheduler"] == "running" and result.before["server"] == printers.server
    assert result.before["paused_queues"] == ["office"] and result.before["stuck_job_ids"] == jobs
    assert {job["id"]: job["why"] for job in result.before["jobs"]} == {
        jobs[0]: "held, queue disabled",
        jobs[1]: "held, queue disabled",
        jobs[2]: "queue disabled",
    }
    assert result.done["jobs_cancelled"] == jobs and result.done["queues_enabled"] == ["office"]
    assert result.done["scheduler_restarted"] is False
    assert result.after["paused_queues"] == [] and result.after["stuck_jobs"] == 0
    assert result.steps["check"] == (
        "The CUPS scheduler answers but queue office is paused and 3 print jobs are stuck (3 jobs in the queue)."
    )
    assert result.steps["verify"].startswith("The CUPS scheduler answers, 2 queues ready, no stuck print job")
    ready = {"enabled": True, "accepting": True}
    assert printers.queues() == {"office": ready, "spare": ready}
    assert printers.jobs() == []

    again = execute("spooler-restart", HOST, config=config)
    assert again.status == "already-ok" and again.after is None and list(again.steps) == ["check"]


def test_dry_run_changes_nothing(lab: Lab, printers: Cupsd, home: Path) -> None:
    jobs = stuck_printer(printers)
    write_home(home, lab.sshd)
    result = execute("spooler-restart", HOST, config=load_config(), dry_run=True)
    assert result.status == "skipped" and result.summary.endswith("(dry run: nothing changed)")
    assert printers.jobs() == jobs and printers.queues()["office"]["enabled"] is False


def test_the_cli_fixes_then_finds_it_ok(lab: Lab, printers: Cupsd, home: Path) -> None:
    stuck_printer(printers)
    write_home(home, lab.sshd)
    code, out, _ = cli(home, "spooler-restart", HOST, "--dry-run")
    assert (code, out["status"]) == (0, "skipped") and printers.jobs()
    code, out, _ = cli(home, "spooler-restart", HOST)
    assert (code, out["status"], out["error"]) == (0, "fixed", None)
    assert out["before"]["stuck_jobs"] == 3 and out["after"]["stuck_jobs"] == 0
    code, out, _ = cli(home, "spooler-restart", HOST)
    assert (code, out["status"]) == (0, "already-ok")
    assert printers.jobs() == []


def test_root_logs_in_without_sudo(lab: Lab, printers: Cupsd, home: Path) -> None:
    stuck_printer(printers)
    write_home(home, lab.sshd, login="root")
    assert execute("spooler-restart", HOST, config=load_config()).status == "fixed"


def test_password_login_per_host_settings_and_no_sudo(
    lab: Lab, printers: Cupsd, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host's own ssh settings from the inventory: password login, scripts run without sudo."""
    monkeypatch.setenv(PASSWORD_ENV, lab.sshd.logins["plain"].password)
    stuck_printer(printers)
    plain = {"username": lab.sshd.logins["plain"].user, "password": f"env:{PASSWORD_ENV}", "sudo": False}
    write_home(home, lab.sshd, ssh={"key_file": None}, host_ssh=plain)
    result = execute("spooler-restart", HOST, config=load_config())
    # The test scheduler lets any loopback client manage it: no root needed there.
    assert result.status == "fixed", result.error


def test_a_scheduler_that_does_not_answer_is_not_restarted_when_it_is_not_this_hosts(
    lab: Lab, printers: Cupsd, home: Path
) -> None:
    write_home(home, lab.sshd)
    printers.stop()
    try:
        code, out, _ = cli(home, "spooler-restart", HOST)
    finally:
        printers.start()
    assert (code, out["status"]) == (1, "failed")
    assert out["steps"]["check"] == f"The CUPS scheduler ({printers.server}) does not answer."
    assert out["steps"]["fix"] == (
        f"The CUPS scheduler does not answer and was not restarted: {printers.server} is not this computer's own "
        "scheduler: l1fix does not restart it; escalate."
    )


# -- host keys ------------------------------------------------------------------------------


def test_an_unknown_host_is_refused_with_its_fingerprint_then_trusted_when_asked(lab: Lab, home: Path) -> None:
    lab.cupsd.reset()
    write_home(home, lab.sshd, known=False)
    code, out, _ = cli(home, "spooler-restart", HOST)
    assert (code, out["status"], out["error"]["kind"]) == (3, "error", "host-key")
    assert lab.sshd.fingerprint in out["error"]["message"] and "ssh-ed25519" in out["error"]["message"]
    assert "trust_new_host" in out["error"]["message"]
    assert not (home / "known_hosts").exists()

    write_home(home, lab.sshd, known=False, ssh={"trust_new_host": True})
    code, out, stderr = cli(home, "spooler-restart", HOST)
    assert (code, out["status"]) == (0, "already-ok")
    assert (home / "known_hosts").read_text() == lab.sshd.known_hosts_line() + "\n"
    assert lab.sshd.fingerprint in stderr and "recorded the new SSH host key" in stderr

    (home / "config.toml").write_text((home / "config.toml").read_text().replace("trust_new_host = true", ""))
    code, out, _ = cli(home, "spooler-restart", HOST)
    assert (code, out["status"]) == (0, "already-ok")
    assert (home / "known_hosts").read_text() == lab.sshd.known_hosts_line() + "\n"  # recorded once


def test_trust_new_host_on_the_command_line_records_an_unknown_host_once(lab: Lab, home: Path) -> None:
    lab.cupsd.reset()
    write_home(home, lab.sshd, known=False)
    code, out, _ = cli(home, "spooler-restart", HOST)
    assert (code, out["error"]["kind"]) == (3, "host-key")
    proc = run_cli("--trust-new-host", "spooler-restart", HOST, "--json", home=home)
    assert proc.code == 0, proc.stderr
    assert (home / "known_hosts").read_text() == lab.sshd.known_hosts_line() + "\n"
    code, out, _ = cli(home, "spooler-restart", HOST)  # without the flag: now known
    assert code == 0


@pytest.mark.parametrize("trust_new_host", [False, True])
def test_a_changed_host_key_is_always_refused(lab: Lab, home: Path, trust_new_host: bool) -> None:
    write_home(home, lab.sshd, known=False, ssh={"trust_new_host": trust_new_host})
    impostor = lab.sshd.new_key(f"impostor-{trust_new_host}")
    line = " ".join(Path(f"{impostor}.pub").read_text().split()[:2])
    (home / "known_hosts").write_text(f"[127.0.0.1]:{lab.sshd.port} {line}\n")
    with pytest.raises(HostKeyRefused) as err:
        execute_or_raise(home)
    message = str(err.value)
    assert "CHANGED" in message and lab.sshd.fingerprint in message
    assert fingerprint_of(Path(f"{impostor}.pub")) in message
    assert err.value.exit_code == 3
    assert (home / "known_hosts").read_text() == f"[127.0.0.1]:{lab.sshd.port} {line}\n"


def fingerprint_of(pub: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-l", "-f", str(pub)], capture_output=True, text=True, check=True)
    return out.stdout.split()[1]


def execute_or_raise(home: Path, action: str = "spooler-restart") -> Any:
    result = execute(action, HOST, config=load_config())
    if result.exception is not None:
        raise result.exception
    return result


# -- credentials and rights ------------------------------------------------------------------


def test_a_wrong_password_is_refused_and_never_shown(lab: Lab, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, WRONG_PASSWORD)
    write_home(home, lab.sshd, login="plain", ssh={"password": f"env:{PASSWORD_ENV}", "key_file": None})
    out = run_cli("spooler-restart", HOST, "--json", home=home)
    assert out.code == 3 and out.json()["error"]["kind"] == "auth"
    assert "SSH login of l1fixnosudo was refused" in out.json()["error"]["message"]
    for text in (out.stdout, out.stderr, (home / "journal.sqlite3").read_bytes().decode("latin-1")):
        assert WRONG_PASSWORD not in text


def test_a_key_the_host_does_not_know_is_refused(lab: Lab, home: Path) -> None:
    stranger = lab.sshd.new_key("stranger")
    write_home(home, lab.sshd, ssh={"key_file": str(stranger)})
    code, out, _ = cli(home, "spooler-restart", HOST)
    assert (code, out["error"]["kind"]) == (3, "auth")


def test_an_encrypted_key_opens_with_its_passphrase_only(lab: Lab, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab.cupsd.reset()
    passphrase = "l1fix-Key-Passphrase-42"
    key = lab.sshd.new_key("encrypted", passphrase=passphrase)
    lab.sshd.authorize(lab.sshd.logins["sudo"].user, key)
    ref = {"key_file": str(key), "key_passphrase": "env:L1FIX_TEST_KEY_PASSPHRASE"}
    write_home(home, lab.sshd, ssh=ref)
    monkeypatch.setenv("L1FIX_TEST_KEY_PASSPHRASE", passphrase)
    assert execute_or_raise(home).status == "already-ok"

    monkeypatch.setenv("L1FIX_TEST_KEY_PASSPHRASE", "not-" + passphrase)
    with pytest.raises(BadInput, match="wrong passphrase") as err:
        execute_or_raise(home)
    assert passphrase not in str(err.value)

    write_home(home, lab.sshd, ssh={"key_file": str(key)})
    with pytest.raises(BadInput, match="encrypted and no passphrase is configured"):
        execute_or_raise(home)


def test_a_login_without_sudo_rights_gets_a_clear_error(lab: Lab, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, lab.sshd.logins["plain"].password)
    write_home(home, lab.sshd, login="plain", ssh={"password": f"env:{PASSWORD_ENV}"})
    out = run_cli("spooler-restart", HOST, "--json", home=home)
    assert (out.code, out.json()["error"]["kind"]) == (3, "auth")
    message = out.json()["error"]["message"]
    assert "l1fixnosudo may not run l1fix scripts as root on this host (sudo: a password is required)" in message
    assert "NOPASSWD: /bin/sh" in message
    assert lab.sshd.logins["plain"].password not in out.stdout + out.stderr


def test_nobody_listening_is_unreachable(lab: Lab, home: Path) -> None:
    from cups import free_port

    write_home(home, lab.sshd, port=free_port())
    code, out, _ = cli(home, "spooler-restart", HOST)
    assert (code, out["error"]["kind"]) == (3, "unreachable")
    assert "cannot connect to 127.0.0.1:" in out["error"]["message"]


# -- the command itself: timeout, data, output ---------------------------------------------


def processes_with_env(marker: str) -> list[str]:
    """Live processes whose environment holds `marker` (zombies left out), as 'pid command'."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            if marker.encode() in (proc / "environ").read_bytes().split(b"\0"):
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{proc.name} {command}")
        except OSError:
            continue
    return found


def test_a_hung_scheduler_times_out_and_the_script_is_killed(lab: Lab, printers: Cupsd, home: Path) -> None:
    write_home(home, lab.sshd, ssh={"command_timeout_s": 2})
    printers.freeze()  # lpstat connects, then waits for an answer that never comes
    try:
        started = time.monotonic()
        code, out, _ = cli(home, "spooler-restart", HOST)
        assert (code, out["status"], out["error"]["kind"]) == (4, "error", "timeout")
        assert "did not finish within 2 s" in out["error"]["message"]
        # The session's sh and its lpstat outlive the connection (sshd does not end them)...
        marker = f"CUPS_SERVER={printers.server}"
        assert any("lpstat" in p for p in processes_with_env(marker)), processes_with_env(marker)
        # ...until the script's watchdog kills them, a second after the connection gave up.
        deadline = time.monotonic() + 10
        while processes_with_env(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_with_env(marker) == []
        assert time.monotonic() - started < 8
    finally:
        printers.thaw()


def test_a_script_that_sleeps_past_its_timeout(lab: Lab, tmp_path: Path) -> None:
    script = write_script(
        tmp_path,
        """\
        l1fix_prepare() { :; }
        l1fix_check() { sleep 30; l1fix_observation true '{}' 'late'; }
        l1fix_fix() { :; }
        l1fix_verify() { :; }
        l1fix_run_steps
        """,
    )
    conn = connection(lab.sshd)
    try:
        started = time.monotonic()
        with pytest.raises(Timeout) as err:
            conn.run_script(script, {"steps": ["check"]}, timeout=1)
        assert 1 <= time.monotonic() - started < 3 and err.value.exit_code == 4
        # The same connection serves the next step.
        who = conn.run_script(write_script(tmp_path, SERVER_SCRIPT, "who"), {"steps": ["check"]}, timeout=20)
        assert who.data["check"]["state"]["uid"] == "0"
    finally:
        conn.close()


ECHO_SCRIPT = """\
    l1fix_prepare() { :; }
    l1fix_check() {
        l1fix_param text ''
        l1fix_observation true "{\\"text\\":$(l1fix_json_string "$L1FIX_PARAM"),\\"uid\\":\\"$(id -u)\\"}" 'echo'
    }
    l1fix_fix() { :; }
    l1fix_verify() { :; }
    l1fix_run_steps
    """
HOSTILE = [
    "'; touch /tmp/l1fix-ssh-pwned; echo '",
    "$(touch /tmp/l1fix-ssh-pwned)",
    "`touch /tmp/l1fix-ssh-pwned`",
    '"; touch /tmp/l1fix-ssh-pwned; "\\',
    "line\n} </dev/null\ntouch /tmp/l1fix-ssh-pwned\n",
    "ünïcødé € 😀\t\r\x01",
    "-n -e *",
    "y" * 50_000,
]


@pytest.mark.parametrize("login", ["sudo", "root"])
def test_hostile_parameter_values_reach_the_script_unchanged(lab: Lab, tmp_path: Path, login: str) -> None:
    Path("/tmp/l1fix-ssh-pwned").unlink(missing_ok=True)
    script = write_script(tmp_path, ECHO_SCRIPT)
    conn = connection(lab.sshd, login)
    try:
        for value in HOSTILE:
            result = conn.run_script(script, {"steps": ["check"], "params": {"text": value}}, timeout=20)
            assert result.data["check"]["state"] == {"text": value, "uid": "0"}
    finally:
        conn.close()
    assert not Path("/tmp/l1fix-ssh-pwned").exists()


def test_one_connection_serves_every_step(lab: Lab, tmp_path: Path) -> None:
    script = write_script(tmp_path, ECHO_SCRIPT)
    before = (lab.sshd.folder / "sshd.log").read_text().count("Accepted publickey for l1fixtest")
    conn = connection(lab.sshd)
    try:
        for step in ("check", "fix", "verify"):
            conn.run_script(script, {"steps": ["check"], "params": {"text": step}}, timeout=20)
    finally:
        conn.close()
    time.sleep(0.2)
    assert (lab.sshd.folder / "sshd.log").read_text().count("Accepted publickey for l1fixtest") == before + 1


def test_output_that_is_not_json_is_bad_output(lab: Lab, tmp_path: Path) -> None:
    script = write_script(tmp_path, "echo 'this is not JSON'\n")
    conn = connection(lab.sshd)
    try:
        with pytest.raises(BadOutput, match=r"test\.sh did not return a JSON result") as err:
            conn.run_script(script, {"steps": ["check"]}, timeout=20)
    finally:
        conn.close()
    assert err.value.exit_code == 5


def test_a_script_error_is_a_remote_error(lab: Lab, tmp_path: Path) -> None:
    script = write_script(
        tmp_path, ECHO_SCRIPT.replace("l1fix_prepare() { :; }", "l1fix_prepare() { l1fix_fail 'no such queue'; }")
    )
    conn = connection(lab.sshd)
    try:
        with pytest.raises(RemoteError, match="test.sh: no such queue") as err:
            conn.run_script(script, {"steps": ["check"]}, timeout=20)
    finally:
        conn.close()
    assert err.value.exit_code == 1


def test_sudo_refusal_without_password_auth(lab: Lab, tmp_path: Path) -> None:
    """The connection alone: l1fixnosudo by key, sudo -n refuses."""
    conn = connection(lab.sshd, "plain")
    try:
        with pytest.raises(AuthRefused, match="a password is required"):
            conn.run_script(write_script(tmp_path, ECHO_SCRIPT), {"steps": ["check"]}, timeout=20)
    finally:
        conn.close()


def test_a_script_killed_on_the_host_is_bad_output_not_a_hang(lab: Lab, tmp_path: Path) -> None:
    script = write_script(tmp_path, "kill -s KILL 0\n")
    conn = connection(lab.sshd, "root")
    try:
        started = time.monotonic()
        with pytest.raises(BadOutput, match=r"exit code -1: no output"):
            conn.run_script(script, {"steps": ["check"]}, timeout=20)
        assert time.monotonic() - started < 5
    finally:
        conn.close()

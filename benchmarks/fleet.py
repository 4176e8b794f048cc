"""Fleet runs against their floor: the same work done by the bare client library, same run.

    python benchmarks/fleet.py [--rounds 3] [--hosts 200] [--concurrency 20]
                               [--ssh-hosts 50] [--ssh-concurrency 10] [--skip-ssh]

1. WinRM: the lab (simulated Windows PCs on loopback, 20 ms injected latency per WS-Man
   request, no faults) with `--hosts` PCs, run in a child process so that it neither shares
   the benchmark's GIL nor counts in its memory. l1fix runs `playbooks/printer-stuck.yml`
   (one `spooler-restart` step: check → fix → verify in one remote command; the second
   step's `when:` is false) with `run_playbook(..., concurrency=C)`, journal included.
   The floor is bare pywinrm (`winrm.protocol.Protocol`, same NTLM over HTTPS with the
   lab's CA, same timeouts) in a ThreadPoolExecutor of the same size, sending the same
   stdin bytes (`l1fix.targets.powershell.build_stdin` of spooler.ps1 with the payload l1fix
   sends — checked in the warm-up) with open_shell / run_command / send / receive / close
   per host. Nothing can reach a host with fewer requests than that, hence "floor".
   Also reported: the l1fix run's tracemalloc peak (in an extra, untimed run: tracing slows
   Python down) and the growth of the process's ru_maxrss over its first run.

2. SSH: one real sshd on 127.0.0.1 (started with tests/sshd.py's helpers: needs root),
   `--ssh-hosts` inventory names (lx001…) all pointing at it, logging in as root with a key,
   host key checked against a known_hosts file. Every contender runs one short command per
   name (a `uname -n`, as JSON for l1fix) with `--ssh-concurrency` at a time:
   - floor: bare paramiko (connect, one exec of `/bin/sh -s`, the same stdin bytes as l1fix
     from `l1fix.targets.shell.build_stdin`, read to EOF, close) in a thread pool;
   - l1fix run_playbook: a whole playbook run (resolution, runner, journal) of a one-step
     playbook whose action, `bench-short`, is registered by this benchmark only: its check
     runs the short script through the target's connection (read-only: one command);
   - l1fix SSHConnection: `connect()` + `SSHConnection.run_script` + close, in a thread pool;
   - OpenSSH client: the `ssh` binary per name (BatchMode, ControlMaster off, the test key,
     the test sshd's known_hosts) fed the same stdin bytes, in a thread pool;
   - pyinfra `exec` and `ansible -m raw` (`uname -n`, same parallelism, OpenSSH ControlMaster
     off so the names cannot share one connection) when found in the side venv
     (`--tools-venv`, default /tmp/fleet-cmp-venv).

Every figure is the median of `--rounds` rounds (the order of the contenders alternates
from round to round); ratios are against the floor measured in the same run. All traffic
stays on loopback; every loop is bounded by the host count and per-command timeouts.
Targets (issue 6): l1fix ≤ 1.05× the floor for both; over SSH no slower than pyinfra.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
PLAYBOOK = ROOT / "playbooks" / "printer-stuck.yml"
SPOOLER_PS1 = ROOT / "src" / "l1fix" / "actions" / "spooler.ps1"
PAYLOAD = {"action": "spooler-restart", "steps": ["check", "fix", "verify"], "params": {}, "before": None}
TOOLS_VENV = Path("/tmp/fleet-cmp-venv")
SHORT_SCRIPT = """printf '{"ok": true, "host": "%s"}\\n' "$(uname -n)"\n"""
SHORT_COMMAND = "uname -n"
BENCH_PLAYBOOK = """\
name: bench-short-command
description: Benchmark only (benchmarks/fleet.py), one short command on each target.
applies_to: [linux]
steps:
  - id: short
    action: bench-short
"""
LAB_CHILD = """
import sys
from pathlib import Path
from l1fix.lab.profile import start_lab
lab = start_lab(Path(sys.argv[1]), hosts=int(sys.argv[2]), latency_ms=float(sys.argv[3]), faults={})
print("ready", flush=True)
sys.stdin.read()  # until the parent closes our stdin
lab.stop()
"""


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def rounds_of(contenders: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    """Run every contender once per round, in an order that alternates, and keep the times."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for i in range(rounds):
        for name in names if i % 2 == 0 else names[::-1]:
            seconds, _ = timed(contenders[name])
            times[name].append(seconds)
            print(f"  round {i + 1}: {name:<28} {seconds:7.2f} s", flush=True)
    return times


def table(title: str, times: dict[str, list[float]], floor: str, notes: list[str]) -> None:
    base = statistics.median(times[floor])
    print(f"\n{title}")
    print(f"  {'contender':<30} {'median':>9} {'ratio':>7}   rounds (s)")
    for name, values in times.items():
        median = statistics.median(values)
        shown = " ".join(f"{v:.2f}" for v in values)
        print(f"  {name:<30} {median:8.2f}s {median / base:6.2f}x   {shown}")
    for note in notes:
        print(f"  {note}")


# -- 1. WinRM ---------------------------------------------------------------------------------


def start_lab_child(home: Path, hosts: int, latency_ms: float) -> subprocess.Popen:
    env = dict(os.environ, L1FIX_HOME=str(home))
    child = subprocess.Popen(
        [sys.executable, "-c", LAB_CHILD, str(home), str(hosts), str(latency_ms)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = child.stdout.readline() if child.stdout else ""
    if line.strip() != "ready":
        child.kill()
        raise RuntimeError("the lab did not start")
    return child


def winrm_floor(hosts: list[tuple[str, int]], credentials: dict[str, Any], stdin: bytes, concurrency: int) -> int:
    """Bare pywinrm, one shell and one command per host; returns how many hosts answered exit code 0."""
    from winrm.protocol import Protocol

    from l1fix.targets import powershell

    def one(host: tuple[str, int]) -> int:
        address, port = host
        protocol = Protocol(endpoint=f"https://{address}:{port}/wsman", **credentials)
        shell_id = protocol.open_shell(codepage=65001, noprofile=True)
        command_id = protocol.run_command(
            shell_id, powershell.COMMAND, powershell.ARGUMENTS, console_mode_stdin=False, skip_cmd_shell=True
        )
        chunk = 64 * 1024
        for start in range(0, max(len(stdin), 1), chunk):
            protocol.send_command_input(
                shell_id, command_id, stdin[start : start + chunk], end=start + chunk >= len(stdin)
            )
        code = None
        for _ in range(100):  # bounded: each Receive waits at most the operation timeout
            _out, _err, code, done = protocol.get_command_output_raw(shell_id, command_id)
            if done:
                break
        protocol.close_shell(shell_id)
        return code

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        return sum(1 for code in pool.map(one, hosts) if code == 0)


def bench_winrm(args: argparse.Namespace) -> None:
    from l1fix.config import load_config
    from l1fix.lab.profile import PROFILE
    from l1fix.playbook import load_playbook, run_playbook
    from l1fix.targets import powershell
    from l1fix.targets.winrm import WinRMConnection

    home = Path(tempfile.mkdtemp(prefix="l1fix-fleet-winrm-"))
    os.environ["L1FIX_HOME"] = str(home)
    print(f"WinRM: starting the lab ({args.hosts} PCs, {args.latency_ms:g} ms latency) in a child process…")
    child = start_lab_child(home, args.hosts, args.latency_ms)
    try:
        config = load_config(None, PROFILE)
        inventory = yaml.safe_load((home / "lab" / "inventory.yml").read_text())["hosts"]
        names = list(inventory)
        hosts = [(entry["address"], entry["port"]) for entry in inventory.values()]
        w = config.winrm
        credentials = {
            "transport": "ntlm",
            "username": w.username,
            "password": (home / "lab" / "password").read_text().strip(),
            "server_cert_validation": "validate",
            "ca_trust_path": str(home / "lab" / "tls" / "ca.pem"),
            "message_encryption": "auto",
            "operation_timeout_sec": w.operation_timeout_s,
            "read_timeout_sec": w.read_timeout_s,
            "proxy": None,
        }
        stdin = powershell.build_stdin(SPOOLER_PS1.read_text(encoding="utf-8"), PAYLOAD)
        playbook = load_playbook(PLAYBOOK)

        def l1fix_run() -> int:
            outcomes = run_playbook(playbook, names, config=config, concurrency=args.concurrency)
            return sum(1 for o in outcomes if o.status.value in ("fixed", "already-ok"))

        # Warm-up (untimed): fixes the lab's broken spoolers once, so that every round does the
        # same work; records what l1fix sends, and how much the process grows in its first run.
        sent: list[bytes] = []
        original = WinRMConnection.run_script

        def recording(self: WinRMConnection, script: Path, payload: dict[str, Any], *, timeout: float) -> Any:
            sent.append(powershell.build_stdin(script.read_text(encoding="utf-8"), payload))
            return original(self, script, payload, timeout=timeout)

        WinRMConnection.run_script = recording  # type: ignore[method-assign]
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            ok_warm = l1fix_run()
        finally:
            WinRMConnection.run_script = original  # type: ignore[method-assign]
        rss_growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
        same_bytes = len(sent) == len(names) and all(b == stdin for b in sent)
        ok_floor = winrm_floor(hosts, credentials, stdin, args.concurrency)
        print(
            f"  warm-up: l1fix ok on {ok_warm}/{len(names)}, floor exit 0 on {ok_floor}/{len(names)}; "
            f"l1fix sent {len(sent)} commands, same bytes as the floor: {same_bytes}"
        )

        times = rounds_of(
            {
                "pywinrm pool (floor)": lambda: winrm_floor(hosts, credentials, stdin, args.concurrency),
                "l1fix run_playbook": l1fix_run,
            },
            args.rounds,
        )
        tracemalloc.start()
        l1fix_run()
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        notes = [
            f"{args.hosts} hosts, concurrency {args.concurrency}, {args.latency_ms:g} ms per WS-Man request, "
            f"{args.rounds} rounds; target: l1fix <= 1.05x",
            f"l1fix memory: tracemalloc peak {peak / 2**20:.1f} MiB (extra untimed run); "
            f"ru_maxrss growth over the first run {rss_growth_mb:.1f} MiB",
        ]
        table("WinRM (lab)", times, "pywinrm pool (floor)", notes)
    finally:
        if child.stdin:
            child.stdin.close()
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
        shutil.rmtree(home, ignore_errors=True)


# -- 2. SSH -----------------------------------------------------------------------------------


def ssh_floor(names: list[str], port: int, key_file: Path, known_hosts: Path, stdin: bytes, concurrency: int) -> int:
    """Bare paramiko: connect (host key checked), one exec of /bin/sh -s fed `stdin`, close."""
    import paramiko

    from l1fix.targets import shell

    pkey = paramiko.PKey.from_path(key_file)

    def one(_name: str) -> int:
        client = paramiko.SSHClient()
        client.load_host_keys(str(known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                "127.0.0.1", port=port, username="root", pkey=pkey, allow_agent=False, look_for_keys=False, timeout=10
            )
            channel = client.get_transport().open_session(timeout=10)  # type: ignore[union-attr]
            channel.settimeout(30)
            channel.exec_command(shell.COMMAND)
            channel.sendall(stdin)
            channel.shutdown_write()
            while channel.recv(32 * 1024):
                pass
            return channel.recv_exit_status()
        finally:
            client.close()

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        return sum(1 for code in pool.map(one, names) if code == 0)


def ssh_l1fix(names: list[str], script: Path, concurrency: int) -> int:
    from l1fix.config import load_config
    from l1fix.inventory import load_inventory
    from l1fix.targets.base import connect

    config = load_config(None, "bench")
    inventory = load_inventory(config.inventory_path)

    def one(name: str) -> bool:
        conn = connect(inventory.resolve(name), config)
        try:
            return conn.run_script(script, {}, timeout=30).data.get("ok") is True
        finally:
            conn.close()

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        return sum(pool.map(one, names))


def register_bench_action(script: Path) -> None:
    """Add `bench-short` (one short script, read-only) to this process's action registry, not the product's."""
    from l1fix.action import Action, Observation, RunContext, registry

    class BenchShort(Action):
        name = "bench-short"
        summary = "Benchmark only: run one short command and report the host name"
        target_kinds = frozenset({"linux", "macos"})
        read_only = True

        def check(self, ctx: RunContext) -> Observation:
            data = ctx.connection.run_script(script, {}, timeout=30).data  # type: ignore[attr-defined]
            return Observation(data.get("ok") is True, {"host": data.get("host")}, "short command ran")

    registry()[BenchShort.name] = BenchShort  # registry() is cached: the playbook and the runner see it


def ssh_playbook(names: list[str], playbook_file: Path, concurrency: int) -> int:
    """A full `run_playbook` (runner, journal) of the one-step playbook; returns the targets that ended ok."""
    from l1fix.config import load_config
    from l1fix.playbook import load_playbook, run_playbook

    config = load_config(None, "bench")
    outcomes = run_playbook(load_playbook(playbook_file), names, config=config, concurrency=concurrency)
    return sum(1 for o in outcomes if o.status.value == "already-ok")


def ssh_openssh(names: list[str], port: int, key_file: Path, known_hosts: Path, stdin: bytes, concurrency: int) -> int:
    """The OpenSSH client, one `ssh` process per name, fed the same stdin bytes as the floor."""
    from l1fix.targets import shell

    argv = ["ssh", "-F", "/dev/null", "-p", str(port), "-l", "root", "-i", str(key_file)]
    for option in (
        "BatchMode=yes",
        "ControlMaster=no",
        "ControlPath=none",
        "IdentitiesOnly=yes",
        "StrictHostKeyChecking=yes",
        f"UserKnownHostsFile={known_hosts}",
        "GlobalKnownHostsFile=/dev/null",
        "ConnectTimeout=10",
    ):
        argv += ["-o", option]
    argv += ["127.0.0.1", shell.COMMAND]

    def one(_name: str) -> int:
        return subprocess.run(argv, input=stdin, capture_output=True, timeout=60).returncode

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        return sum(1 for code in pool.map(one, names) if code == 0)


def run_tool(argv: list[str], cwd: Path, env: dict[str, str]) -> int:
    out = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({out.returncode}): {(out.stderr or out.stdout)[-400:]}")
    return out.returncode


def bench_ssh(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from sshd import sshd_available, start_sshd  # the tests' helpers (pytest is installed with them)
    except ImportError as exc:
        print(f"\nSSH: NOT DONE: cannot import tests/sshd.py ({exc})")
        return
    available, reason = sshd_available()
    if not available:
        print(f"\nSSH: NOT DONE: {reason}")
        return
    from l1fix.targets import shell

    print(f"\nSSH: starting sshd on 127.0.0.1, {args.ssh_hosts} names pointing at it…")
    server = start_sshd()
    home = Path(tempfile.mkdtemp(prefix="l1fix-fleet-ssh-"))
    try:
        os.environ["L1FIX_HOME"] = str(home)
        key = server.logins["root"].key_file
        known_hosts = home / "known_hosts"
        known_hosts.write_text(server.known_hosts_line() + "\n")
        known_hosts.chmod(0o600)
        names = [f"lx{i:03d}" for i in range(1, args.ssh_hosts + 1)]
        hosts = {n: {"address": "127.0.0.1", "os": "linux", "connection": "ssh", "port": server.port} for n in names}
        (home / "inventory.yml").write_text(yaml.safe_dump({"defaults": {"use_dns": False}, "hosts": hosts}))
        (home / "config.toml").write_text(
            'default_profile = "bench"\n[profiles.bench]\ninventory = "inventory.yml"\n[profiles.bench.ssh]\n'
            f'username = "root"\nkey_file = "{key}"\nknown_hosts = "{known_hosts}"\n'
        )
        script = home / "short.sh"
        script.write_text(SHORT_SCRIPT)
        stdin = shell.build_stdin(SHORT_SCRIPT, {}, timeout=30)
        notes = [
            f"{len(names)} names -> 127.0.0.1:{server.port}, concurrency {args.ssh_concurrency}, {args.rounds} rounds; "
            "target: l1fix <= 1.05x and <= pyinfra"
        ]
        register_bench_action(script)
        playbook_file = home / "bench-short.yml"
        playbook_file.write_text(BENCH_PLAYBOOK)
        c = args.ssh_concurrency
        contenders: dict[str, Callable[[], Any]] = {
            "paramiko pool (floor)": lambda: ssh_floor(names, server.port, key, known_hosts, stdin, c),
            "l1fix run_playbook": lambda: ssh_playbook(names, playbook_file, c),
            "l1fix SSHConnection": lambda: ssh_l1fix(names, script, c),
        }
        if shutil.which("ssh"):
            contenders["OpenSSH client"] = lambda: ssh_openssh(names, server.port, key, known_hosts, stdin, c)
        else:
            notes.append("OpenSSH client skipped: no `ssh` binary (apt-get install openssh-client)")
        ours = list(contenders)
        tools = args.tools_venv / "bin"
        env = dict(
            os.environ,
            ANSIBLE_HOST_KEY_CHECKING="True",
            ANSIBLE_SSH_ARGS="-o ControlMaster=no",
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_CONFIG=str(home / "ansible.cfg"),
            ANSIBLE_LOCAL_TEMP=str(home / "at"),
        )
        (home / "ansible.cfg").write_text("[defaults]\n")
        if (tools / "pyinfra").exists():
            rows = ",\n".join(
                f'    ("{n}", {{"ssh_hostname": "127.0.0.1", "ssh_port": {server.port}, "ssh_user": "root", '
                f'"ssh_key": "{key}", "ssh_known_hosts_file": "{known_hosts}", '
                f'"ssh_strict_host_key_checking": "yes"}})'
                for n in names
            )
            (home / "pyinfra_inventory.py").write_text(f"hosts = [\n{rows},\n]\n")
            argv = [
                str(tools / "pyinfra"),
                "pyinfra_inventory.py",
                "exec",
                "--parallel",
                str(c),
                "-y",
                "--",
                SHORT_COMMAND,
            ]
            contenders["pyinfra exec"] = lambda: run_tool(argv, home, env)
        else:
            notes.append(f"pyinfra skipped: python -m venv {args.tools_venv} && {tools}/pip install pyinfra")
        if (tools / "ansible").exists():
            lines = [f"{n} ansible_host=127.0.0.1" for n in names]
            common = f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes"
            (home / "inventory.ini").write_text(
                "[fleet]\n" + "\n".join(lines) + f"\n[fleet:vars]\nansible_port={server.port}\nansible_user=root\n"
                f"ansible_ssh_private_key_file={key}\nansible_ssh_common_args='{common}'\n"
            )
            argv_a = [
                str(tools / "ansible"),
                "fleet",
                "-i",
                "inventory.ini",
                "-m",
                "raw",
                "-a",
                SHORT_COMMAND,
                "-f",
                str(c),
                "-o",
            ]
            contenders["ansible -m raw"] = lambda: run_tool(argv_a, home, env)
        else:
            notes.append(f"ansible skipped: python -m venv {args.tools_venv} && {tools}/pip install ansible-core")
        warm = {name: contenders[name]() for name in ours}
        print("  warm-up: " + ", ".join(f"{name} ok on {ok}/{len(names)}" for name, ok in warm.items()))
        for name in list(contenders)[len(ours) :]:
            try:
                contenders[name]()
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                notes.append(f"{name} dropped: {exc}")
                del contenders[name]
        times = rounds_of(contenders, args.rounds)
        table("SSH (real sshd on loopback)", times, "paramiko pool (floor)", notes)
    finally:
        server.stop()
        shutil.rmtree(server.folder, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20, help="WinRM: run_playbook's and the pool's size")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--ssh-hosts", type=int, default=50)
    parser.add_argument("--ssh-concurrency", type=int, default=10)
    parser.add_argument("--tools-venv", type=Path, default=TOOLS_VENV, help="where pyinfra / ansible-core live")
    parser.add_argument("--skip-winrm", action="store_true")
    parser.add_argument("--skip-ssh", action="store_true")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    if not args.skip_winrm:
        bench_winrm(args)
    if not args.skip_ssh:
        bench_ssh(args)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

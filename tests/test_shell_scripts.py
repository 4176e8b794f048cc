"""Every shell script l1fix ships parses (sh -n, shellcheck) and never evaluates text as code;
the framing and the shared library (_common.sh) carry data as data; spooler.sh reads CUPS
right, against canned lpstat output (fake CUPS tools on PATH; the real CUPS is in test_ssh.py).

Scripts run here with `/bin/sh -s` in a session of their own, as sshd runs them: the library's
watchdog kills its process group, which must never be pytest's.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

import l1fix.actions
from conftest import need_service
from l1fix.targets import shell

ACTIONS = Path(l1fix.actions.__file__).parent
LIBRARY = ACTIONS / "_common.sh"
ALL_SH = sorted(ACTIONS.glob("*.sh"))  # the scripts and the library
SCRIPTS = [p for p in ALL_SH if p != LIBRARY]
# Ways to run text as code, or to hide code from review.
FORBIDDEN = re.compile(r"\beval\b|\bsource\b|^\s*\.\s|\b(?:ba|da|z)?sh\s+-c\b|\bbase64\b.*\|\s*(?:ba)?sh\b", re.M)


# To try the scripts with another sh or awk: L1FIX_TEST_SH="busybox sh", L1FIX_TEST_PATH=/folder/with/an/awk.
SH = shlex.split(os.environ.get("L1FIX_TEST_SH", "/bin/sh"))
EXTRA_PATH = os.environ.get("L1FIX_TEST_PATH", "")


def run_sh(stdin: bytes, *, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    """sh -s in its own session (its own process group), like an sshd session."""
    env = dict(os.environ if env is None else env)
    if EXTRA_PATH:
        env["PATH"] = f"{EXTRA_PATH}:{env.get('PATH', '/usr/bin:/bin')}"
    return subprocess.run(
        [*SH, "-s"], input=stdin, capture_output=True, env=env, timeout=timeout, start_new_session=True
    )


def run_script(
    text: str, params: dict | None = None, steps: tuple[str, ...] = ("check", "fix", "verify"), **kwargs
) -> tuple[int, dict | None, str]:
    payload = {"action": "test", "steps": list(steps), "params": params or {}, "before": None}
    proc = run_sh(shell.build_stdin(text, payload, timeout=kwargs.pop("timeout", 20)), **kwargs)
    lines = proc.stdout.decode().strip().splitlines()
    return proc.returncode, json.loads(lines[-1]) if lines else None, proc.stderr.decode()


# -- syntax ----------------------------------------------------------------------------------


def test_the_actions_ship_their_scripts_and_the_library() -> None:
    assert "spooler.sh" in {p.name for p in SCRIPTS}
    assert LIBRARY in ALL_SH and LIBRARY not in SCRIPTS


@pytest.mark.parametrize("script", ALL_SH, ids=lambda p: p.name)
def test_script_parses(script: Path) -> None:
    out = subprocess.run(["/bin/sh", "-n", str(script)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_the_framed_script_parses(script: Path) -> None:
    """What sh really reads: the data line, then library and script as one brace group."""
    stdin = shell.build_stdin(script.read_text(), {"params": {}}, timeout=5)
    out = subprocess.run(["/bin/sh", "-n"], input=stdin, capture_output=True)
    assert out.returncode == 0, out.stderr.decode()


def test_a_broken_script_is_detected() -> None:
    text = (ACTIONS / "spooler.sh").read_text()
    broken = text.replace("esac", "", 1)
    out = subprocess.run(["/bin/sh", "-n"], input=broken.encode(), capture_output=True)
    assert out.returncode != 0


def shellcheck(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["shellcheck", "-s", "sh", *map(str, paths)], capture_output=True, text=True)


@pytest.mark.parametrize("script", ALL_SH, ids=lambda p: p.name)
def test_shellcheck_finds_nothing(script: Path, tmp_path: Path) -> None:
    need_service(shutil.which("shellcheck") is not None, "shellcheck not found (Debian package shellcheck)")
    out = shellcheck(script)
    assert out.returncode == 0, out.stdout
    if script != LIBRARY:  # and as sh runs it: after the library
        joined = tmp_path / script.name
        joined.write_text(LIBRARY.read_text() + script.read_text())
        out = shellcheck(joined)
        assert out.returncode == 0, out.stdout


def test_shellcheck_sees_a_flaw() -> None:
    need_service(shutil.which("shellcheck") is not None, "shellcheck not found (Debian package shellcheck)")
    out = subprocess.run(
        ["shellcheck", "-s", "sh", "-"], input='rm -rf $1/*\n[[ -n "$x" ]]\n', capture_output=True, text=True
    )
    assert out.returncode != 0


@pytest.mark.parametrize("script", ALL_SH, ids=lambda p: p.name)
def test_script_never_evaluates_text_as_code(script: Path) -> None:
    assert FORBIDDEN.findall(script.read_text()) == []


@pytest.mark.parametrize("snippet", ['eval "$x"', ". ./lib.sh", "source lib", 'sh -c "$1"', "base64 -d | sh"])
def test_code_evaluation_is_detected(snippet: str) -> None:
    assert FORBIDDEN.search(snippet)


@pytest.mark.parametrize("script", ALL_SH, ids=lambda p: p.name)
def test_script_is_ascii(script: Path) -> None:
    script.read_bytes().decode("ascii")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_uses_the_library_frame(script: Path) -> None:
    text = script.read_text()
    assert text.rstrip().endswith("\nl1fix_run_steps")
    assert "_common.sh" in text  # says where its other functions come from
    for step in ("l1fix_prepare", "l1fix_check", "l1fix_fix", "l1fix_verify"):
        assert re.search(rf"^{step}\(\) {{$", text, re.M), step


def library_functions() -> set[str]:
    return set(re.findall(r"^(\w+)\(\) \{$", LIBRARY.read_text(), re.M))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_no_script_redefines_a_library_function(script: Path) -> None:
    assert set(re.findall(r"^(\w+)\(\) \{$", script.read_text(), re.M)) & library_functions() == set()


def test_the_library_holds_only_definitions() -> None:
    """Top-level lines: comments, settings, function definitions and the awk program."""
    text = re.sub(r"(?ms)^L1FIX_JSON_READER='.*?^'$", "", LIBRARY.read_text())
    allowed = re.compile(r"#|set -f\b|LC_ALL=C\b|PATH=\$PATH:|export LC_ALL PATH\b|\w+\(\) \{$|\}$")
    depth = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        if depth == 0:
            assert allowed.match(line), line
        depth += line.endswith("() {") - (line == "}")
    assert depth == 0
    shared = {"l1fix_run_steps", "l1fix_fail", "l1fix_param", "l1fix_int_param", "l1fix_observation"}
    assert shared <= library_functions()


# -- the framing -----------------------------------------------------------------------------


def test_framing_round_trip() -> None:
    payload = {"action": "a", "steps": ["check"], "params": {"x": 'it\'s\n"q" ünï'}, "before": None}
    stdin = shell.build_stdin("echo hi\n", payload, timeout=12.5, library_text="lib() { :; }")
    library, script, decoded, watchdog = shell.split_stdin(stdin)
    assert (library, script, decoded, watchdog) == ("lib() { :; }\n", "echo hi\n", payload, 14)
    first, rest = stdin.decode().split("\n", 1)
    assert re.fullmatch(r"L1FIX_REQUEST='[A-Za-z0-9+/=]*' L1FIX_TIMEOUT=14", first)
    assert rest.startswith("{\nlib() { :; }\n# <l1fix-script>\necho hi\n") and rest.endswith("\n} </dev/null\n")


def test_the_data_never_reaches_the_script_text() -> None:
    hostile = "'; touch /tmp/x #\n} </dev/null\n# <l1fix-script>\n$(id)"
    stdin = shell.build_stdin("echo hi\n", {"params": {"x": hostile}}, timeout=5).decode()
    assert hostile not in stdin and "touch" not in stdin
    assert stdin.count("\n} </dev/null\n") == 1 and stdin.count("# <l1fix-script>") == 1


def test_a_library_holding_the_separator_is_refused() -> None:
    with pytest.raises(ValueError, match="separator"):
        shell.build_stdin("x\n", {}, timeout=5, library_text="a\n# <l1fix-script>\nb\n")


@pytest.mark.parametrize("bad", [b"echo hi\n", b"L1FIX_REQUEST='e30=' L1FIX_TIMEOUT=3\necho\n"])
def test_split_refuses_what_build_never_makes(bad: bytes) -> None:
    with pytest.raises(ValueError):
        shell.split_stdin(bad)


def test_a_stdin_cut_short_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    script = f"touch '{marker}'\n" + "".join(f"# filler {i}\n" for i in range(200)) + "l1fix_run_steps\n"
    stdin = shell.build_stdin(script, {"steps": ["check"]}, timeout=5)
    proc = run_sh(stdin[: len(stdin) - 40])
    assert proc.returncode != 0 and not marker.exists()
    run_sh(stdin)
    assert marker.exists()  # the whole of it does run


def test_commands_reading_stdin_never_eat_the_script(tmp_path: Path) -> None:
    text = textwrap.dedent("""\
        l1fix_prepare() { :; }
        l1fix_check() { l1fix_observation true "{\\"read\\":$(l1fix_json_string "$(cat)")}" 'read stdin'; }
        l1fix_fix() { :; }
        l1fix_verify() { :; }
        l1fix_run_steps
        """)
    code, data, _ = run_script(text, steps=("check",))
    assert code == 0 and data == {"check": {"ok": True, "state": {"read": ""}, "summary": "read stdin"}}


# -- the library: request in, JSON out --------------------------------------------------------

ECHO = textwrap.dedent("""\
    l1fix_prepare() { :; }
    l1fix_check() {
        l1fix_param text ''
        ECHO_TEXT=$L1FIX_PARAM
        l1fix_param missing 'the default'
        ECHO_MISSING=$L1FIX_PARAM
        ECHO_STATE="{\\"text\\":$(l1fix_json_string "$ECHO_TEXT"),\\"missing\\":$(l1fix_json_string "$ECHO_MISSING")}"
        l1fix_observation false "$ECHO_STATE" "echo"
    }
    l1fix_fix() { L1FIX_OUT='{"summary":"did it"}'; }
    l1fix_verify() { l1fix_observation true '{}' 'fine'; }
    l1fix_run_steps
    """)

HOSTILE = [
    "plain",
    "it's",
    "'; touch /tmp/l1fix-pwned; echo '",
    "$(touch /tmp/l1fix-pwned)",
    "`touch /tmp/l1fix-pwned`",
    '"double" and \\backslash\\ and \\n not a newline',
    "line one\nline two\n\n",
    "\ttab\rcarriage\x01\x1f\x7f",
    "ünïcødé € 😀 中文",
    "-n",
    "*",
    "%s%d%%",
    "} </dev/null\n# <l1fix-script>\nl1fix_fail pwned",
    "x" * 70_000,
    "",
]


@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: repr(v[:20]))
def test_parameter_values_reach_the_script_unchanged(value: str) -> None:
    code, data, stderr = run_script(ECHO, {"text": value})
    assert code == 0, stderr
    assert data is not None
    assert data["check"]["state"] == {"text": value, "missing": "the default"}
    assert not Path("/tmp/l1fix-pwned").exists()


def test_escaped_json_is_decoded_too() -> None:
    """A request written with \\u escapes (ensure_ascii) decodes to the same text."""
    value = 'é € 😀 \x01 "q" \\ /'
    request = json.dumps({"steps": ["check"], "params": {"text": value}}, ensure_ascii=True).replace("/", "\\/")
    stdin = shell.build_stdin(ECHO, {}, timeout=5).decode()
    first, rest = stdin.split("\n", 1)
    encoded = base64.b64encode(request.encode()).decode()
    data_line = re.sub(r"L1FIX_REQUEST='[^']*'", f"L1FIX_REQUEST='{encoded}'", first)
    proc = run_sh(f"{data_line}\n{rest}".encode())
    assert json.loads(proc.stdout)["check"]["state"]["text"] == value


def test_numbers_and_booleans_arrive_as_written() -> None:
    code, data, _ = run_script(ECHO, {"text": 12.5})
    assert data["check"]["state"]["text"] == "12.5"
    code, data, _ = run_script(ECHO, {"text": True})
    assert data["check"]["state"]["text"] == "true"
    code, data, _ = run_script(ECHO, {"text": None})
    assert data["check"]["state"]["text"] == ""


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"text": ["a", "b"]}, "parameter text is not a single value"),
        ({"text": {"a": 1}}, "parameter text is not a single value"),
        ({"text": "nul\x00byte"}, "a NUL character is not allowed"),
    ],
)
def test_values_that_are_not_one_string_are_refused(params: dict, message: str) -> None:
    code, data, _ = run_script(ECHO, params)
    assert code == 1 and data == {"error": f"malformed request: {message}"}


def test_steps_run_in_order_and_stop_after_an_ok_check() -> None:
    code, data, _ = run_script(ECHO)
    assert list(data) == ["check", "fix", "verify"] and data["fix"] == {"summary": "did it"}
    ok_check = ECHO.replace('l1fix_observation false "$ECHO_STATE"', 'l1fix_observation true "$ECHO_STATE"')
    code, data, _ = run_script(ok_check)
    assert list(data) == ["check"]
    code, data, _ = run_script(ECHO, steps=("verify",))
    assert data == {"verify": {"ok": True, "state": {}, "summary": "fine"}}


def test_an_unknown_step_is_an_error() -> None:
    code, data, _ = run_script(ECHO, steps=("check", "reboot"))
    assert code == 1 and data == {"error": "Unknown step 'reboot' (expected check, fix or verify)."}


def test_everything_but_the_json_goes_to_stderr() -> None:
    noisy = ECHO.replace("l1fix_fix() {", "l1fix_fix() { echo chatter; printf 'more\\n';")
    proc = run_sh(shell.build_stdin(noisy, {"steps": ["fix"]}, timeout=5))
    assert proc.stdout.decode().count("\n") == 1 and b"chatter" in proc.stderr


@pytest.mark.parametrize(
    "data_line",
    ["L1FIX_REQUEST='' L1FIX_TIMEOUT=5", "L1FIX_REQUEST='bm90IGpzb24=' L1FIX_TIMEOUT=5", "L1FIX_TIMEOUT=5"],
)
def test_a_missing_or_malformed_request_is_an_error(data_line: str) -> None:
    rest = shell.build_stdin(ECHO, {}, timeout=5).decode().split("\n", 1)[1]
    proc = run_sh(f"{data_line}\n{rest}".encode())
    assert proc.returncode == 1
    error = json.loads(proc.stdout)["error"]
    assert "request" in error


def test_int_param_bounds() -> None:
    text = ECHO.replace("l1fix_prepare() { :; }", "l1fix_prepare() { l1fix_int_param n 5 1 10; }")
    for value, ok in ((7, True), ("7", True), (0, False), (11, False), ("7; id", False), (1.5, False), (-1, False)):
        code, data, _ = run_script(text, {"n": value})
        assert (code == 0) is ok, (value, data)
        if not ok:
            assert data == {"error": "parameter n must be a whole number from 1 to 10"}


def test_the_watchdog_kills_a_script_that_outlives_its_time(tmp_path: Path) -> None:
    marker = tmp_path / "survived"
    text = ECHO.replace("l1fix_check() {", f"l1fix_check() {{ sleep 3; touch '{marker}';")
    started = time.monotonic()
    proc = run_sh(shell.build_stdin(text, {"steps": ["check"]}, timeout=0.5))  # watchdog: 2 s
    assert proc.returncode == -9 and proc.stdout == b""
    assert time.monotonic() - started < 2.8
    time.sleep(max(0.0, started + 3.5 - time.monotonic()))
    assert not marker.exists()  # the sleep and what followed it were killed too


def test_a_script_that_ends_in_time_leaves_no_watchdog_behind() -> None:
    started = time.monotonic()
    proc = subprocess.Popen([*SH, "-s"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
    out, _ = proc.communicate(shell.build_stdin(ECHO, {"steps": ["check"]}, timeout=30), timeout=10)
    assert json.loads(out)["check"]["summary"] == "echo"
    assert time.monotonic() - started < 5  # stdout closed at once: no sleep holding it
    time.sleep(0.3)
    assert alive_in_group(proc.pid) == []


def alive_in_group(pgid: int) -> list[str]:
    """The processes of a process group that still run (zombies are dead, only not reaped)."""
    out = subprocess.run(["ps", "-o", "stat=,args=", "-g", str(pgid)], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.strip() and not line.strip().startswith("Z")]


# -- spooler.sh against canned CUPS output ----------------------------------------------------

FAKE_NOW = "2026 01 10 12 00"  # what the fake `date` says: 10 Jan 2026, 12:00

FAKE_LPSTAT = r"""#!/bin/sh
# A fake lpstat: answers from the files in $FAKE_CUPS.
echo "lpstat $*" >> "$FAKE_CUPS/calls"
none() { echo 'lpstat: No destinations added.' >&2; exit 1; }
case "$*" in
  -H) cat "$FAKE_CUPS/server" ;;
  -r) if [ -e "$FAKE_CUPS/running" ]; then echo 'scheduler is running'; else echo 'scheduler is not running'; fi ;;
  -p) cat "$FAKE_CUPS/printers"; [ -s "$FAKE_CUPS/printers" ] || none ;;
  -a) cat "$FAKE_CUPS/accepting"; [ -s "$FAKE_CUPS/accepting" ] || none ;;
  '-l -o') cat "$FAKE_CUPS/jobs" ;;
  *) echo "fake lpstat: unexpected $*" >&2; exit 2 ;;
esac
"""
FAKE_RECORDER = """#!/bin/sh
echo "$(basename "$0") $*" >> "$FAKE_CUPS/calls"
[ ! -e "$FAKE_CUPS/fail-$(basename "$0")" ]
"""
FAKE_RESTARTER = """#!/bin/sh
echo "$(basename "$0") $*" >> "$FAKE_CUPS/calls"
[ -e "$FAKE_CUPS/fail-$(basename "$0")" ] && exit 1
touch "$FAKE_CUPS/running"
"""

PRINTERS = """\
printer office is idle.  enabled since Sat Jan 10 08:00:00 2026
printer jammed disabled since Sat Jan 10 11:00:00 2026 -
\tPaper jam in tray 2
printer label-1 now printing label-1-7.  enabled since Sat Jan 10 09:00:00 2026
\tWaiting for printer to finish.
"""
ACCEPTING = """\
office accepting requests since Sat Jan 10 08:00:00 2026
jammed accepting requests since Sat Jan 10 11:00:00 2026
label-1 not accepting requests since Sat Jan 10 09:00:00 2026 -
\tRejecting Jobs
"""
JOBS = """\
office-3                alice             1024   Sat Jan 10 11:59:00 2026
\tAlerts: job-printing
\tqueued for office
office-4                bob               2048   Sat Jan 10 11:15:00 2026
\tAlerts: none
\tqueued for office
jammed-5                carol smith       1024   Sat Jan  3 23:58:00 2026
\tAlerts: none
\tqueued for jammed
label-1-6               dave              1024   Sat Jan 10 11:58:00 2026
\tAlerts: job-hold-until-specified
\tqueued for label-1
label-1-7               erin              1024   Wed Dec 31 23:59:00 2025
\tStatus: Printing page 1
\tAlerts: job-printing
\tqueued for label-1
"""


@pytest.fixture
def fake_cups(tmp_path: Path) -> Path:
    """A folder of fake CUPS tools (and date, uname) and the state they answer from."""
    state = tmp_path / "cups"
    bin_dir = tmp_path / "bin"
    state.mkdir()
    bin_dir.mkdir()
    tools = {
        "lpstat": FAKE_LPSTAT,
        "date": f"#!/bin/sh\necho '{FAKE_NOW}'\n",
        "uname": '#!/bin/sh\ncat "$FAKE_CUPS/uname" 2>/dev/null || echo Linux\n',
    }
    for name in ("cancel", "lprm", "cupsenable", "cupsaccept"):
        tools[name] = FAKE_RECORDER
    for name in ("systemctl", "service", "launchctl"):
        tools[name] = FAKE_RESTARTER
    for name, text in tools.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    for name, text in {"server": "/run/cups/cups.sock\n", "printers": "", "accepting": "", "jobs": ""}.items():
        (state / name).write_text(text)
    (state / "running").touch()
    (state / "calls").touch()
    return state


def run_spooler(state: Path, params: dict | None = None, steps: tuple[str, ...] = ("check",)) -> dict:
    env = {"PATH": f"{state.parent / 'bin'}:/usr/bin:/bin", "FAKE_CUPS": str(state)}
    code, data, stderr = run_script((ACTIONS / "spooler.sh").read_text(), params, steps, env=env)
    assert data is not None, stderr
    return data


def calls(state: Path) -> list[str]:
    return [line for line in (state / "calls").read_text().splitlines() if not line.startswith("lpstat")]


def test_spooler_reads_queues_and_judges_jobs(fake_cups: Path) -> None:
    for name, text in (("printers", PRINTERS), ("accepting", ACCEPTING), ("jobs", JOBS)):
        (fake_cups / name).write_text(text)
    check = run_spooler(fake_cups)["check"]
    state = check["state"]
    assert check["ok"] is False
    assert state["queues"] == [
        {"name": "office", "enabled": True, "accepting": True, "message": ""},
        {"name": "jammed", "enabled": False, "accepting": True, "message": "Paper jam in tray 2"},
        {"name": "label-1", "enabled": True, "accepting": False, "message": "Waiting for printer to finish."},
    ]
    assert state["paused_queues"] == ["jammed", "label-1"]
    jobs = {job["id"]: job for job in state["jobs"]}
    assert {j: (jobs[j]["age_minutes"], jobs[j]["stuck"], jobs[j]["why"]) for j in jobs} == {
        "office-3": (1, False, ""),
        "office-4": (45, True, "older than 30 min"),
        "jammed-5": (9362, True, "queue disabled, older than 30 min"),  # 6 days 12 h 2 min
        "label-1-6": (2, True, "held"),
        "label-1-7": (13681, True, "older than 30 min"),  # across the new year
    }
    assert jobs["jammed-5"]["owner"] == "carol smith" and jobs["label-1-7"]["printer"] == "label-1"
    assert state["stuck_jobs"] == 4 and state["stuck_job_ids"] == ["office-4", "jammed-5", "label-1-6", "label-1-7"]
    assert check["summary"] == (
        "The CUPS scheduler answers but queues jammed, label-1 are paused and 4 print jobs are stuck "
        "(5 jobs in the queue)."
    )


def test_stuck_minutes_zero_judges_no_job_by_age(fake_cups: Path) -> None:
    (fake_cups / "printers").write_text(PRINTERS.replace("jammed disabled since", "jammed is idle.  enabled since"))
    (fake_cups / "accepting").write_text(ACCEPTING.replace("label-1 not accepting", "label-1 accepting"))
    (fake_cups / "jobs").write_text(JOBS)
    state = run_spooler(fake_cups, {"stuck_minutes": 0})["check"]["state"]
    assert state["stuck_job_ids"] == ["label-1-6"] and state["paused_queues"] == []


def test_spooler_fix_cancels_enables_accepts_and_does_not_restart_an_answering_scheduler(fake_cups: Path) -> None:
    for name, text in (("printers", PRINTERS), ("accepting", ACCEPTING), ("jobs", JOBS)):
        (fake_cups / name).write_text(text)
    (fake_cups / "fail-cupsaccept").touch()
    fix = run_spooler(fake_cups, steps=("fix",))["fix"]
    assert calls(fake_cups) == [
        "cancel office-4",
        "cancel jammed-5",
        "cancel label-1-6",
        "cancel label-1-7",
        "cupsenable jammed",
        "cupsaccept label-1",
    ]
    assert fix["scheduler_restarted"] is False
    assert fix["jobs_cancelled"] == ["office-4", "jammed-5", "label-1-6", "label-1-7"]
    assert fix["queues_enabled"] == ["jammed"] and fix["queues_not_accepting"] == ["label-1"]
    assert fix["summary"] == (
        "Cancelled 4 stuck print jobs (office-4, jammed-5, label-1-6, label-1-7). Re-enabled queue jammed. "
        "Could not make queue label-1 accept jobs."
    )


def test_an_ok_scheduler_is_left_alone(fake_cups: Path) -> None:
    (fake_cups / "printers").write_text("printer office is idle.  enabled since Sat Jan 10 08:00:00 2026\n")
    (fake_cups / "accepting").write_text("office accepting requests since Sat Jan 10 08:00:00 2026\n")
    data = run_spooler(fake_cups, steps=("check", "fix", "verify"))
    assert list(data) == ["check"] and data["check"]["ok"] is True
    summary = "The CUPS scheduler answers, 1 queue ready, no stuck print job (0 jobs in the queue)."
    assert data["check"]["summary"] == summary
    assert calls(fake_cups) == []


def test_no_queue_at_all_is_fine(fake_cups: Path) -> None:
    check = run_spooler(fake_cups)["check"]
    assert check["ok"] is True and check["state"]["queues"] == [] and check["state"]["errors"] == ""


def test_a_listing_error_is_never_taken_for_no_queue(fake_cups: Path) -> None:
    (fake_cups / "jobs").write_text("lpstat: Forbidden\n")
    check = run_spooler(fake_cups)["check"]
    assert check["ok"] is False and "lpstat reported: lpstat: Forbidden" in check["summary"]


@pytest.mark.parametrize(
    ("uname", "server", "restarter"),
    [
        ("Linux", "/run/cups/cups.sock", "systemctl restart cups"),
        ("Linux", "localhost:631", "systemctl restart cups"),
        ("Darwin", "/private/var/run/cupsd", "launchctl kickstart -k system/org.cups.cupsd"),
    ],
)
def test_a_silent_local_scheduler_is_restarted(fake_cups: Path, uname: str, server: str, restarter: str) -> None:
    (fake_cups / "running").unlink()
    (fake_cups / "uname").write_text(uname + "\n")
    (fake_cups / "server").write_text(server + "\n")
    data = run_spooler(fake_cups, steps=("check", "fix", "verify"))
    assert data["check"]["summary"] == f"The CUPS scheduler ({server}) does not answer."
    assert calls(fake_cups) == [restarter]
    assert data["fix"]["scheduler_restarted"] is True and data["verify"]["ok"] is True
    assert data["fix"]["summary"] == f"Restarted the CUPS scheduler ({restarter.split()[0]})."


def test_without_systemd_the_service_command_restarts_it(fake_cups: Path) -> None:
    (fake_cups / "running").unlink()
    (fake_cups / "fail-systemctl").touch()
    fix = run_spooler(fake_cups, steps=("fix",))["fix"]
    assert calls(fake_cups) == ["systemctl restart cups", "service cups restart"]
    assert fix["restart_method"] == "service"


def test_a_scheduler_that_stays_silent_fails_verify(fake_cups: Path) -> None:
    (fake_cups / "running").unlink()
    for name in ("systemctl", "service"):
        (fake_cups / f"fail-{name}").touch()
    data = run_spooler(fake_cups, {"timeout_s": 1}, steps=("check", "fix", "verify"))
    assert data["fix"]["restart_error"].startswith("no way to restart CUPS worked")
    assert data["verify"]["ok"] is False
    assert data["verify"]["summary"] == "The CUPS scheduler (/run/cups/cups.sock) still does not answer."


def test_a_scheduler_elsewhere_is_never_restarted(fake_cups: Path) -> None:
    (fake_cups / "running").unlink()
    (fake_cups / "server").write_text("printserver.corp.example.com:631\n")
    data = run_spooler(fake_cups, steps=("check", "fix", "verify"))
    assert calls(fake_cups) == []
    assert data["fix"]["summary"] == (
        "The CUPS scheduler does not answer and was not restarted: printserver.corp.example.com:631 "
        "is not this computer's own scheduler: l1fix does not restart it; escalate."
    )
    assert data["verify"]["ok"] is False


def test_without_cups_the_script_says_so(fake_cups: Path) -> None:
    bin_dir = fake_cups.parent / "bin"
    (bin_dir / "lpstat").unlink()
    basic = fake_cups.parent / "basic"  # what the library needs, and no lpstat
    basic.mkdir()
    for tool in ("awk", "base64", "sleep", "cat"):
        os.symlink(shutil.which(tool), basic / tool)
    env = {"PATH": f"{bin_dir}:{basic}", "FAKE_CUPS": str(fake_cups)}
    proc = run_sh(shell.build_stdin((ACTIONS / "spooler.sh").read_text(), {"steps": ["check"]}, timeout=5), env=env)
    assert json.loads(proc.stdout) == {"error": "CUPS is not installed on this computer (no lpstat)."}

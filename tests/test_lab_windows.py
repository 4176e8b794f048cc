"""The lab's simulated Windows hosts, driven directly through LabSimulator.run_command."""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import pytest

from l1fix import clixml
from l1fix.lab.windows import (
    LAB_TAG,
    LabSimulator,
    PrintJob,
    Service,
    WindowsHost,
    default_fleet,
    healthy_host,
    packaged_library,
    packaged_scripts,
)
from l1fix.lab.wsman import CommandOutcome
from l1fix.targets.powershell import (
    ARGUMENTS,
    BOOTSTRAP,
    COMMAND,
    SEPARATOR,
    SEPARATOR_LINE,
    build_stdin,
    encode_data,
    split_stdin,
)
from twins import run_twin

SCRIPTS = packaged_scripts()
LIBRARY = packaged_library()
ALL_STEPS = ["check", "fix", "verify"]


def payload(steps: list[str], params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"action": "test", "steps": steps, "params": params or {}, "before": None}


def run(sim: LabSimulator, host: str, script: str, steps: list[str], **params: Any) -> tuple[CommandOutcome, dict]:
    """Send one of l1fix's scripts with its data, as the WinRM connection does."""
    stdin = build_stdin(SCRIPTS[script], payload(steps, params))
    outcome = sim.run_command(host, COMMAND, list(ARGUMENTS), stdin)
    return outcome, json.loads(outcome.stdout)


@pytest.fixture
def sim() -> LabSimulator:
    return LabSimulator(default_fleet())


# --------------------------------------------------------------------------- spooler.ps1


def test_spooler_check_finds_the_stuck_jobs_on_pc042(sim: LabSimulator) -> None:
    outcome, data = run(sim, "PC042", "spooler", ["check"])
    assert outcome.exit_code == 0
    check = data["check"]
    assert check["ok"] is False
    assert check["state"]["status"] == "Running"
    assert check["state"]["stuck_job_ids"] == [12, 13, 14]
    assert [j["status"] for j in check["state"]["jobs"]] == ["Error, Printing", "Queued", "Queued"]
    assert "3 stuck print jobs" in check["summary"]
    assert set(data) == {"check", "lab"}


def test_spooler_check_fix_verify_purges_pc042_then_says_already_ok(sim: LabSimulator) -> None:
    outcome, data = run(sim, "PC042", "spooler", ALL_STEPS)
    assert outcome.exit_code == 0
    assert data["check"]["ok"] is False
    assert data["fix"]["jobs_purged"] == 3
    assert data["fix"]["files_deleted"] == 6
    assert data["fix"]["started"] is True
    assert "3 jobs purged" in data["fix"]["summary"]
    assert data["verify"]["ok"] is True
    assert data["verify"]["state"]["jobs"] == []
    host = sim.hosts["PC042"]
    assert host.jobs == [] and host.spool_files == []
    assert host.services["Spooler"].state == "Running"

    _, again = run(sim, "PC042", "spooler", ALL_STEPS)
    assert again["check"]["ok"] is True
    assert "fix" not in again and "verify" not in again


def test_spooler_stopped_with_orphan_files_is_started_and_purged(sim: LabSimulator) -> None:
    _, data = run(sim, "PC007", "spooler", ALL_STEPS)
    state = data["check"]["state"]
    assert data["check"]["ok"] is False
    assert (state["status"], state["jobs"], state["orphan_spool_files"]) == ("Stopped", [], 4)
    assert data["fix"]["jobs_purged"] == 2
    assert data["fix"]["summary"].startswith("Started the Print Spooler")
    assert data["verify"]["ok"] is True


def test_spooler_uses_the_spool_folder_from_the_registry(sim: LabSimulator) -> None:
    _, data = run(sim, "PC030", "spooler", ALL_STEPS)
    assert data["check"]["state"]["spool_folder"] == "D:\\Spool"
    assert data["check"]["state"]["stuck_job_ids"] == [5, 6]
    assert data["fix"]["spool_folder"] == "D:\\Spool"
    assert data["fix"]["jobs_purged"] == 2
    assert data["verify"]["ok"] is True


def test_disabled_spooler_is_reported_never_enabled(sim: LabSimulator) -> None:
    outcome, data = run(sim, "PC013", "spooler", ALL_STEPS)
    assert outcome.exit_code == 0
    assert data["check"]["ok"] is False
    assert data["fix"]["disabled"] is True
    assert "escalate" in data["fix"]["summary"]
    assert data["verify"]["ok"] is False
    spooler = sim.hosts["PC013"].services["Spooler"]
    assert (spooler.state, spooler.start_type) == ("Stopped", "Disabled")


def test_spooler_restart_starts_again_the_dependents_that_ran() -> None:
    host = healthy_host("PC100")
    host.services["Fax"].state = "Running"
    host.add_job(PrintJob(1, "a.pdf", "u", "P", "Paused"))
    sim = LabSimulator({"PC100": host})
    _, data = run(sim, "PC100", "spooler", ALL_STEPS)
    assert data["check"]["state"]["dependents_running"] == ["Fax"]
    assert data["fix"]["dependents_restarted"] == ["Fax"]
    assert host.services["Fax"].state == "Running"


def test_stuck_minutes_parameter_changes_what_counts_as_stuck(sim: LabSimulator) -> None:
    _, data = run(sim, "PC042", "spooler", ["check"], stuck_minutes=90)
    assert data["check"]["state"]["stuck_job_ids"] == [12]  # the two queued jobs are younger than 90 min


# --------------------------------------------------------------------------- service.ps1


def test_service_already_running_stops_after_check(sim: LabSimulator) -> None:
    _, data = run(sim, "PC001", "service", ALL_STEPS, service="BITS")
    assert data["check"]["ok"] is True
    assert set(data) == {"check", "lab"}


def test_service_restart_normal(sim: LabSimulator) -> None:
    _, data = run(sim, "PC001", "service", ["fix", "verify"], service="bits")
    assert data["fix"]["action"] == "restarted"
    assert data["fix"]["start_error"] is None
    assert data["verify"]["ok"] is True
    assert data["verify"]["state"]["service"] == "BITS"


def test_service_restart_brings_back_nested_dependents_in_order() -> None:
    host = WindowsHost("PC100")
    for svc in (Service("A", "A"), Service("B", "B", depends_on=("A",)), Service("C", "C", depends_on=("B",))):
        host.add_service(svc)
    sim = LabSimulator({"PC100": host})
    _, data = run(sim, "PC100", "service", ["fix", "verify"], service="A")
    assert data["fix"]["dependents_restarted"] == ["B", "C"]  # stopped C then B, started B then C
    assert data["verify"]["state"]["dependents_running"] == ["C", "B"]


def test_service_that_refuses_to_start_fails_verify(sim: LabSimulator) -> None:
    outcome, data = run(sim, "PC021", "service", ALL_STEPS, service="BITS")
    assert outcome.exit_code == 0
    assert data["check"]["ok"] is False
    assert data["fix"]["start_error"]
    assert data["verify"]["ok"] is False
    assert sim.hosts["PC021"].services["BITS"].state == "Stopped"


def test_disabled_service_is_not_enabled() -> None:
    host = healthy_host("PC100")
    host.services["wuauserv"].start_type = "Disabled"
    host.services["wuauserv"].state = "Stopped"
    sim = LabSimulator({"PC100": host})
    _, data = run(sim, "PC100", "service", ALL_STEPS, service="wuauserv")
    assert data["fix"]["disabled"] is True and data["fix"]["action"] == "none"
    assert data["verify"]["ok"] is False
    assert host.services["wuauserv"].start_type == "Disabled"


def test_unknown_service_is_a_script_error(sim: LabSimulator) -> None:
    outcome, data = run(sim, "PC001", "service", ALL_STEPS, service="NoSuchService")
    assert outcome.exit_code == 1
    assert set(data) == {"error", "lab"}
    assert "'NoSuchService' was not found" in data["error"]
    assert "was not found" in clixml.to_text(outcome.stderr.decode())


def test_service_name_is_never_a_wildcard(sim: LabSimulator) -> None:
    outcome, data = run(sim, "PC001", "service", ["check"], service="Spool*")
    assert outcome.exit_code == 1 and "'Spool*' was not found" in data["error"]


# --------------------------------------------------------------------------- what the lab accepts


def test_an_altered_script_is_refused(sim: LabSimulator) -> None:
    stdin = build_stdin(SCRIPTS["service"] + "\n# one more line\n", payload(ALL_STEPS, {"service": "BITS"}))
    outcome = sim.run_command("PC001", COMMAND, list(ARGUMENTS), stdin)
    assert outcome.exit_code == 1 and outcome.stdout == b""
    assert "not one of l1fix's scripts" in clixml.to_text(outcome.stderr.decode())
    assert sim.hosts["PC001"].scripts_run == []


@pytest.mark.parametrize(
    "library",
    [
        LIBRARY + "function Get-Param { param($Request, $Name, $Default) 'evil' }\n",  # one function more
        LIBRARY.replace("$ErrorActionPreference = 'Stop'", "$ErrorActionPreference = 'Continue'"),
        LIBRARY.replace("\n", "\r\n"),  # even the line ends count
        "",  # no library at all
    ],
    ids=["function-added", "setting-changed", "crlf", "empty"],
)
def test_a_tampered_library_is_refused(sim: LabSimulator, library: str) -> None:
    assert library != LIBRARY
    stdin = build_stdin(SCRIPTS["service"], payload(ALL_STEPS, {"service": "BITS"}), library)
    assert split_stdin(stdin)[1] == SCRIPTS["service"]  # the script itself is l1fix's
    outcome = sim.run_command("PC001", COMMAND, list(ARGUMENTS), stdin)
    assert outcome.exit_code == 1 and outcome.stdout == b""
    assert "not l1fix's _common.ps1" in clixml.to_text(outcome.stderr.decode())
    assert sim.hosts["PC001"].scripts_run == []


def test_the_library_is_sent_by_default_and_is_not_a_script(sim: LabSimulator) -> None:
    assert "_common" not in SCRIPTS and {"spooler", "service"} <= set(SCRIPTS)
    stdin = build_stdin(SCRIPTS["spooler"], payload(["check"]))
    assert split_stdin(stdin)[:2] == (LIBRARY, SCRIPTS["spooler"])
    assert stdin.decode().count("\n" + SEPARATOR + "\n") == 1
    stdin = build_stdin(LIBRARY, payload(["check"]))  # the library sent as if it were a script
    outcome = sim.run_command("PC001", COMMAND, list(ARGUMENTS), stdin)
    assert outcome.exit_code == 1 and "not one of l1fix's scripts" in clixml.to_text(outcome.stderr.decode())


def test_only_the_first_separator_line_splits() -> None:
    # The bootstrap splits with the same pattern, in .NET, as split_stdin does here.
    assert f"[regex]'{SEPARATOR_LINE}').Split([Console]::In.ReadToEnd(),2)" in BOOTSTRAP
    assert "'" not in SEPARATOR_LINE
    script = f"param($Request)\n{SEPARATOR}\n'after'\n"  # a script may hold the line itself
    stdin = build_stdin(script, payload(["check"]), "function A { 1 }")  # no final newline: one is added
    assert split_stdin(stdin)[:2] == ("function A { 1 }\n", script)
    crlf = stdin.replace(f"}}\n{SEPARATOR}\n".encode(), f"}}\r\n{SEPARATOR}\r\n".encode(), 1)
    assert split_stdin(crlf)[:2] == ("function A { 1 }\r\n", script)
    not_a_line = stdin.replace(f"\n{SEPARATOR}\n".encode(), f"\n {SEPARATOR}\n".encode(), 1)
    assert split_stdin(not_a_line)[:2] == (f"function A {{ 1 }}\n {SEPARATOR}\nparam($Request)\n", "'after'\n")
    with pytest.raises(ValueError, match="separator"):
        build_stdin(script, payload(["check"]), f"# a library\n{SEPARATOR}\r\n")


def test_stdin_without_the_separator_is_refused(sim: LabSimulator) -> None:
    stdin = build_stdin(SCRIPTS["service"], payload(["check"], {"service": "BITS"}))
    stdin = stdin.replace(("\n" + SEPARATOR + "\n").encode(), b"\n")
    outcome = sim.run_command("PC001", COMMAND, list(ARGUMENTS), stdin)
    assert outcome.exit_code == 1 and "no separator line" in clixml.to_text(outcome.stderr.decode())
    assert sim.hosts["PC001"].scripts_run == []


@pytest.mark.parametrize(
    ("command", "arguments"),
    [("cmd.exe", ["/c", "whoami"]), (COMMAND, ["-NoProfile", "-EncodedCommand", "ZQBjAGgAbwA="])],
)
def test_only_the_l1fix_command_line_runs(sim: LabSimulator, command: str, arguments: list[str]) -> None:
    stdin = build_stdin(SCRIPTS["service"], payload(["check"], {"service": "BITS"}))
    outcome = sim.run_command("PC001", command, arguments, stdin)
    assert outcome.exit_code == 1
    assert "lab" in clixml.to_text(outcome.stderr.decode())


def test_progress_on_stderr_with_exit_code_zero(sim: LabSimulator) -> None:
    outcome, data = run(sim, "PC001", "spooler", ["check"])
    assert outcome.exit_code == 0 and data["check"]["ok"] is True
    assert outcome.stderr.startswith(b"#< CLIXML\r\n") and b'S="progress"' in outcome.stderr
    assert clixml.to_text(outcome.stderr.decode()) == ""


def test_everything_the_lab_says_is_marked_as_simulated(sim: LabSimulator) -> None:
    _, data = run(sim, "PC042", "spooler", ALL_STEPS)
    assert "simulated" in data["lab"]
    assert data["check"]["summary"].endswith(LAB_TAG)  # the first sentence a technician reads
    _, fixed_only = run(sim, "PC007", "spooler", ["fix"])
    assert fixed_only["fix"]["summary"].endswith(LAB_TAG) and "simulated" in fixed_only["lab"]


HOSTILE = [
    "it's",
    'say "hi"',
    "$(Remove-Item C:\\ -Recurse)",
    "`$env:PATH`",
    "a; Stop-Computer -Force",
    "line1\nline2\r\n",
    "Spooler ünïcødé [x]",
    "' + (iex 'calc') + '",
    f"\n{SEPARATOR}\n",  # the separator line, as data
    f"x\r\n{SEPARATOR}\r\nfunction Get-Param {{ 'evil' }}\n{SEPARATOR}\n",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_arrive_unchanged_and_leave_the_script_unchanged(value: str) -> None:
    host = healthy_host("PC100")
    host.add_service(Service(value, "Hostile name", "Stopped", "Manual"))
    sim = LabSimulator({"PC100": host})
    sent = payload(ALL_STEPS, {"service": value})
    stdin = build_stdin(SCRIPTS["service"], sent)
    # The data is only base64 in the bootstrap line: no line break, no quote, no separator.
    bootstrap, _, rest = stdin.decode().partition("\n")
    data = encode_data(sent)
    assert re.fullmatch(r"[A-Za-z0-9+/=]+", data) and bootstrap == BOOTSTRAP.replace("{data}", data)
    assert rest == LIBRARY + SEPARATOR + "\n" + SCRIPTS["service"]
    assert split_stdin(stdin) == (LIBRARY, SCRIPTS["service"], sent)

    outcome = sim.run_command("PC100", COMMAND, list(ARGUMENTS), stdin)
    data = json.loads(outcome.stdout)
    assert host.received == [sent]
    assert host.scripts_run == ["service"]  # identified by exact match: the text was untouched
    assert outcome.exit_code == 0
    assert data["fix"]["service"] == value
    assert data["verify"]["ok"] is True
    assert host.services[value].state == "Running"


def test_concurrent_commands_on_one_host_are_serialised(sim: LabSimulator) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            run(sim, "PC042", "spooler", ALL_STEPS)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(sim.hosts["PC042"].received) == 8
    assert sim.hosts["PC042"].jobs == []


# --------------------------------------------------------------------------- the fleet and the twins


def test_default_fleet_is_healthy_but_for_its_documented_problems() -> None:
    fleet = default_fleet()
    assert list(fleet) == [f"PC{i:03d}" for i in range(1, 51)]
    sim = LabSimulator(fleet)
    assert sim.host_names() == list(fleet) and sim.fault("PC001") is None
    spooler_not_ok = [h for h in fleet if not run(sim, h, "spooler", ["check"])[1]["check"]["ok"]]
    assert spooler_not_ok == ["PC007", "PC013", "PC030", "PC042"]
    bits_not_ok = [h for h in fleet if not run(sim, h, "service", ["check"], service="BITS")[1]["check"]["ok"]]
    assert bits_not_ok == ["PC021"]


def test_small_fleet_and_faults() -> None:
    sim = LabSimulator(default_fleet(5), faults={"PC002": "slow"})
    assert sim.host_names() == ["PC001", "PC002", "PC003", "PC004", "PC005"]
    assert sim.fault("PC002") == "slow" and sim.fault("PC001") is None


@pytest.mark.parametrize(("script", "params"), [("spooler", {}), ("service", {"service": "Fax"})])
def test_twin_keys_appear_in_the_powershell_script(script: str, params: dict[str, Any]) -> None:
    """A cheap guard against drift: every key a twin returns is written in its .ps1."""
    host = healthy_host("PC100")
    host.add_job(PrintJob(1, "a.pdf", "u", "P", "Error"))  # spooler: not ok; Fax is Stopped: not ok
    _, data = run(LabSimulator({"PC100": host}), "PC100", script, ALL_STEPS, **params)
    keys = set(data["check"]) | set(data["check"]["state"]) | set(data["fix"]) | set(data["verify"])
    for job in data["check"]["state"].get("jobs", []):
        keys |= set(job)
    assert script == "service" or "age_minutes" in keys
    text = SCRIPTS[script] + LIBRARY  # shared state keys (Get-ServiceState) are written in _common.ps1
    missing = [k for k in sorted(keys) if not re.search(rf"\b{k}\b\s*=|\['{k}'\]", text)]
    assert missing == []


@pytest.mark.parametrize(
    ("script", "name", "what"),
    [
        ("service", "service", "a service name"),
        ("outlook_reset", "user", "the login whose Outlook profile to reset"),
        ("printer_reconnect", "printer", "\\\\server\\queue, or a TCP/IP printer's address"),
    ],
)
@pytest.mark.parametrize("value", [None, ""])
def test_a_missing_required_parameter_is_named(script: str, name: str, what: str, value: str | None) -> None:
    """Get-RequiredParam in the script, required_param in its twin: one error naming the parameter."""
    data = run_twin(healthy_host("PC100"), script, {name: value})
    assert data["error"].startswith(f"The parameter '{name}' ({what}) is missing.")
    assert "check" not in data
    text = packaged_scripts()[script]
    assert f"Get-RequiredParam -Request $Request -Name '{name}'" in text

"""journal.py: WAL, start/finish, interrupted runs, filters, prefixes, threads, no secrets."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from l1fix.errors import BadInput, L1fixError
from l1fix.journal import OUTPUT_CAP, SCHEMA_VERSION, Journal, parse_since
from l1fix.result import ErrorInfo, RunResult, Status
from l1fix.secrets import Secret


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "j" / "journal.sqlite3")


def make_run(
    *,
    run_id: str | None = None,
    target: str = "PC042",
    ticket: int | None = 1234,
    started: datetime | None = None,
    **extra,
) -> RunResult:
    started = started or datetime.now(UTC)
    return RunResult(
        run_id=run_id or uuid.uuid4().hex,
        action="spooler-restart",
        target=target,
        status=Status.RUNNING,
        started_at=started.isoformat(timespec="seconds"),
        technician="tech1",
        ticket=ticket,
        **extra,
    )


def test_wal_mode_and_schema_version(journal: Journal) -> None:
    with sqlite3.connect(journal.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    Journal(journal.path)  # opening again keeps one version row
    with sqlite3.connect(journal.path) as db:
        assert db.execute("SELECT count(*) FROM schema_version").fetchone()[0] == 1


def test_newer_schema_is_refused(journal: Journal) -> None:
    with sqlite3.connect(journal.path) as db:
        db.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(L1fixError, match="newer"):
        Journal(journal.path)


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(L1fixError, match="cannot be used"):
        Journal(path)


def test_start_then_finish(journal: Journal) -> None:
    run = make_run(params={"service": "Spooler"})
    journal.start(run)
    (row,) = journal.list()
    assert row["status"] == "running"
    assert row["finished_at"] is None
    assert row["pid"] > 0 and row["host"]

    run.status = Status.FIXED
    run.before = {"state": "Stopped"}
    run.after = {"state": "Running"}
    run.done = {"restarted": True}
    run.summary = "Spooler restarted"
    run.output = "ok"
    run.duration_s = 1.23456
    journal.finish(run)

    got = journal.get(run.run_id)
    assert got is not None
    expected = run.to_json()
    assert {k: got[k] for k in expected} == expected
    assert got["finished_at"] is not None
    assert len(journal.list()) == 1


def test_is_a_runner_observer(journal: Journal) -> None:
    run = make_run()
    journal.run_started(run)
    assert journal.get(run.run_id)["status"] == "running"
    run.status = Status.FIXED
    journal.run_finished(run)
    assert journal.get(run.run_id)["status"] == "fixed"


def test_error_is_stored(journal: Journal) -> None:
    run = make_run()
    journal.start(run)
    run.status = Status.ERROR
    run.error = ErrorInfo("unreachable", "PC042: connection refused", 3)
    journal.finish(run)
    assert journal.get(run.run_id)["error"] == {"kind": "unreachable", "message": "PC042: connection refused"}


def test_finish_without_start_still_records(journal: Journal) -> None:
    run = make_run()
    run.status = Status.ALREADY_OK
    journal.finish(run)
    assert journal.get(run.run_id)["status"] == "already-ok"


def test_duplicate_start_is_refused(journal: Journal) -> None:
    run = make_run()
    journal.start(run)
    with pytest.raises(L1fixError, match="already in the journal"):
        journal.start(run)


CRASH = """
import os, sys
from l1fix.journal import Journal
from l1fix.result import RunResult, Status
Journal(sys.argv[1]).start(RunResult(run_id=sys.argv[2], action="spooler-restart", target="PC042",
    status=Status.RUNNING, started_at="2026-01-01T10:00:00+00:00", technician="tech1"))
print(os.getpid(), flush=True)
os._exit(9)
"""


def test_start_then_crash_shows_interrupted(journal: Journal) -> None:
    run_id = uuid.uuid4().hex
    proc = subprocess.run([sys.executable, "-c", CRASH, str(journal.path), run_id], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    (row,) = journal.list()
    assert row["run_id"] == run_id
    assert row["status"] == "interrupted"
    assert row["pid"] == int(proc.stdout)
    assert "ended before the run finished" in row["error"]["message"]
    with sqlite3.connect(journal.path) as db:  # updated on disk too, not only reported
        assert db.execute("SELECT status FROM runs").fetchone()[0] == "interrupted"
    assert journal.get(run_id)["status"] == "interrupted"


def test_a_live_run_stays_running(journal: Journal) -> None:
    run = make_run()
    journal.start(run)  # this process is alive
    assert journal.get(run.run_id)["status"] == "running"


def test_a_day_old_running_row_is_interrupted_even_if_its_pid_was_reused(journal: Journal) -> None:
    run = make_run(started=datetime.now(UTC) - timedelta(days=2))
    journal.start(run)  # this process's pid: alive, but no run lasts a day
    assert journal.get(run.run_id)["status"] == "interrupted"


def test_running_row_of_another_host_is_left_alone(journal: Journal) -> None:
    run = make_run()
    journal.start(run)
    with sqlite3.connect(journal.path) as db:
        db.execute("UPDATE runs SET host = 'other-host', pid = 999999999")
    assert journal.get(run.run_id)["status"] == "running"


def test_filters(journal: Journal) -> None:
    now = datetime.now(UTC)
    old = make_run(target="PC001", ticket=1, started=now - timedelta(days=10))
    mid = make_run(target="PC002", ticket=2, started=now - timedelta(hours=3))
    new = make_run(target="pc001", ticket=2, started=now - timedelta(minutes=5))
    for run in (mid, new, old):
        journal.start(run)

    ids = lambda rows: [r["run_id"] for r in rows]  # noqa: E731
    assert ids(journal.list()) == [new.run_id, mid.run_id, old.run_id]  # newest first
    assert ids(journal.list(target="PC001")) == [new.run_id, old.run_id]  # case-insensitive
    assert ids(journal.list(ticket=2)) == [new.run_id, mid.run_id]
    assert ids(journal.list(since=parse_since("1h"))) == [new.run_id]
    assert ids(journal.list(since=parse_since("7d"))) == [new.run_id, mid.run_id]
    assert ids(journal.list(target="PC001", since=parse_since("2d"), ticket=2)) == [new.run_id]
    assert ids(journal.list(limit=1)) == [new.run_id]
    with pytest.raises(BadInput):
        journal.list(limit=0)


def test_get_by_prefix(journal: Journal) -> None:
    a = make_run(run_id="abc123aaaa")
    b = make_run(run_id="abc123bbbb")
    c = make_run(run_id="ffff00001111")
    for run in (a, b, c):
        journal.start(run)
    assert journal.get("ffff00")["run_id"] == c.run_id
    assert journal.get("FFFF0000")["run_id"] == c.run_id
    assert journal.get("abc123a")["run_id"] == a.run_id
    assert journal.get("abc123aaaa")["run_id"] == a.run_id
    assert journal.get("999999") is None
    with pytest.raises(BadInput, match="ambiguous"):
        journal.get("abc123")
    with pytest.raises(BadInput, match="at least 6"):
        journal.get("ffff")


def test_output_is_capped_keeping_start_and_end(journal: Journal) -> None:
    run = make_run()
    run.output = "START" + "x" * 100_000 + '{"result": "END"}'
    journal.finish(run)
    output = journal.get(run.run_id)["output"]
    assert len(output) <= OUTPUT_CAP
    assert output.startswith("START")
    assert output.endswith('{"result": "END"}')
    assert "characters cut" in output


def test_concurrent_finishes_lose_nothing(journal: Journal) -> None:
    runs = [make_run(target=f"PC{i:03}") for i in range(40)]
    for run in runs:
        journal.start(run)
    errors: list[BaseException] = []

    def finish(run: RunResult) -> None:
        try:
            run.status = Status.FIXED
            Journal(journal.path).finish(run) if run.target.endswith("0") else journal.finish(run)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=finish, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    rows = journal.list(limit=100)
    assert len(rows) == 40
    assert {row["status"] for row in rows} == {"fixed"}


def test_no_secret_ever_reaches_the_file(journal: Journal) -> None:
    value = "S3cr3t-xyz"
    secret = Secret(value)
    # An open connection keeps the -wal file (the last one to close checkpoints and removes it).
    keeper = sqlite3.connect(journal.path)
    keeper.execute("SELECT count(*) FROM runs").fetchone()

    run = make_run(params={"password": secret, "note": f"pw is {value}", "nested": [{"deep": value}]})
    run.summary = f"reset to {value}"
    journal.start(run)
    run.status = Status.ERROR
    run.output = f"line 1\nNew password: {value}\n" + "y" * 20_000 + value
    run.done = {"temporary_password": value}
    run.error = ErrorInfo("remote-error", f"failed with {value}", 1)
    journal.finish(run)

    got = journal.get(run.run_id)
    assert value not in repr(got)
    assert got["params"]["password"] == "[redacted]"
    assert got["params"]["nested"] == [{"deep": "[redacted]"}]
    assert got["error"]["message"] == "failed with [redacted]"

    wal = journal.path.with_name(journal.path.name + "-wal")
    assert wal.stat().st_size > 0  # the rows are in the WAL now: check it and the main file
    for path in (journal.path, wal):
        data = path.read_bytes()
        assert value.encode() not in data
        assert value.encode("utf-16-le") not in data
    journal.close()
    keeper.close()  # the last connection: checkpoint into the main file
    assert value.encode() not in journal.path.read_bytes()
    assert b"[redacted]" in journal.path.read_bytes()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_journal_file_is_private(journal: Journal) -> None:
    assert journal.path.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    ("text", "ago"),
    [("30m", timedelta(minutes=30)), ("2h", timedelta(hours=2)), ("7d", timedelta(days=7)), ("1W", timedelta(weeks=1))],
)
def test_parse_since_relative(text: str, ago: timedelta) -> None:
    moment = parse_since(text)
    assert moment.tzinfo is not None
    assert abs((datetime.now(UTC) - ago - moment).total_seconds()) < 5


def test_parse_since_dates() -> None:
    day = parse_since("2026-12-01")
    assert (day.year, day.month, day.day, day.hour) == (2026, 12, 1, 0)
    assert day.tzinfo is not None
    moment = parse_since("2026-12-01T08:30:00+02:00")
    assert moment == datetime(2026, 12, 1, 6, 30, tzinfo=UTC)
    assert parse_since("2026-12-01T08:30:00Z") == datetime(2026, 12, 1, 8, 30, tzinfo=UTC)


@pytest.mark.parametrize("text", ["", "yesterday", "30", "5y", "2026-13-01", "-2h"])
def test_parse_since_rejects(text: str) -> None:
    with pytest.raises(BadInput, match="not understood"):
        parse_since(text)


def test_import_is_light() -> None:
    code = (
        "import sys, l1fix.journal; print(sorted(m for m in ('yaml', 'keyring', 'platformdirs') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- outbox ---------------------------------------------------------------------------------


def test_outbox_keeps_a_followup_until_delivered(journal: Journal) -> None:
    journal.enqueue_followup("run-1", 1234, {"content": "hello"})
    journal.enqueue_followup("run-1", 1234, {"content": "again"})  # once per run and ticket
    items = journal.claim_followups()
    assert [(i.run_id, i.ticket, i.payload, i.attempts) for i in items] == [("run-1", 1234, {"content": "hello"}, 1)]
    assert journal.claim_followups() == []  # claimed: a concurrent sync does not send it too
    journal.release(items[0], "GLPI unreachable")
    retry = journal.claim_followups()
    assert retry[0].attempts == 2  # the sender must look for an earlier landing first
    assert journal.queued_followups() == 1
    journal.mark_delivered(retry[0], 77)
    assert journal.claim_followups() == [] and journal.queued_followups() == 0


def test_a_claim_whose_sender_died_expires(journal: Journal, monkeypatch: pytest.MonkeyPatch) -> None:
    import l1fix.journal as journal_module

    journal.enqueue_followup("run-2", 5, {})
    assert len(journal.claim_followups()) == 1
    after_lease = time.time() + journal_module.CLAIM_LEASE_S + 1
    monkeypatch.setattr(journal_module.time, "time", lambda: after_lease)
    assert [i.attempts for i in journal.claim_followups()] == [2]


def test_runs_show_their_followup_state(journal: Journal) -> None:
    result = make_run(ticket=42)
    journal.start(result)
    journal.finish(result)
    assert journal.get(result.run_id)["followup"] is None
    journal.enqueue_followup(result.run_id, 42, {})
    item = journal.claim_followups()[0]
    journal.release(item, "timeout")
    shown = journal.list()[0]["followup"]
    assert shown == {"ticket": 42, "state": "queued", "attempts": 1, "followup_id": None, "last_error": "timeout"}
    journal.mark_delivered(journal.claim_followups()[0], 9)
    assert journal.get(result.run_id)["followup"]["state"] == "sent"


def test_a_version_1_journal_gains_the_outbox_and_steps(tmp_path: Path) -> None:
    import l1fix.journal as journal_module

    path = tmp_path / "old.sqlite3"
    version_1 = journal_module._SCHEMA.split("CREATE TABLE IF NOT EXISTS outbox")[0]
    version_1 = "\n".join(line for line in version_1.splitlines() if not line.strip().startswith("steps "))
    with sqlite3.connect(path) as db:
        db.executescript(version_1)
        db.execute("INSERT INTO schema_version VALUES (1)")
    old = Journal(path)
    old.enqueue_followup("r", 1, {})
    run = make_run(steps={"check": "found it"})
    old.start(run)
    old.finish(run)
    assert old.get(run.run_id)["steps"] == {"check": "found it"}
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]

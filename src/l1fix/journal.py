"""The local record of every run: SQLite (WAL), written before a run executes and after.

A run is inserted as "running" with its pid and host before anything happens, and
updated when it ends. If the process dies in between, the row stays, and is reported
(and updated) as "interrupted" the next time the journal is read on that host.
Everything stored passes through `l1fix.secrets` redaction first.

The outbox holds ticket followups until the ticket system has them: an item is written
before it is sent, claimed with a lease while it is being sent, and marked delivered
only when the ticket system answered. `attempts` counts sends that were started: from
the second one on, the sender must first look whether an earlier attempt landed.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from l1fix.errors import BadInput, L1fixError
from l1fix.result import RunResult, Status, excerpt
from l1fix.secrets import redact, redact_data

SCHEMA_VERSION = 2  # 2: the outbox
CLAIM_LEASE_S = 120  # a claimed outbox item whose sender died is free again after this
OUTPUT_CAP = 8192  # characters of step output kept per run
BUSY_TIMEOUT_MS = 15_000
STALE_AFTER_S = 24 * 3600  # a "running" row this old is dead even if its pid was reused
MIN_PREFIX = 6

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    started_ts REAL NOT NULL,          -- started_at as epoch seconds, for sorting and --since
    finished_at TEXT,
    technician TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    params TEXT NOT NULL,              -- JSON
    status TEXT NOT NULL,
    before TEXT,                       -- JSON
    after TEXT,                        -- JSON
    done TEXT,                         -- JSON
    summary TEXT NOT NULL DEFAULT '',
    steps TEXT,                        -- JSON: check/fix/verify sentences (schema 2)
    output TEXT NOT NULL DEFAULT '',   -- capped excerpt
    duration_s REAL NOT NULL DEFAULT 0,
    ticket INTEGER,
    error_kind TEXT,
    error_message TEXT,
    dry_run INTEGER NOT NULL DEFAULT 0,
    pid INTEGER,
    host TEXT
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_ts);
CREATE INDEX IF NOT EXISTS runs_target ON runs (target COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS runs_ticket ON runs (ticket);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    ticket INTEGER NOT NULL,
    payload TEXT NOT NULL,             -- JSON, redacted
    state TEXT NOT NULL DEFAULT 'queued',  -- queued | sent
    attempts INTEGER NOT NULL DEFAULT 0,
    claimed_until REAL,
    last_error TEXT,
    remote_id INTEGER,
    created_at TEXT NOT NULL,
    sent_at TEXT,
    UNIQUE (run_id, ticket)
);
CREATE INDEX IF NOT EXISTS outbox_state ON outbox (state);
"""


@dataclass(frozen=True)
class OutboxItem:
    """A followup waiting for the ticket system; `attempts` includes the one just claimed."""

    id: int
    run_id: str
    ticket: int
    payload: dict[str, Any]
    attempts: int


_COLUMNS = (
    "id, started_at, started_ts, finished_at, technician, action, target, params, status, before, after, "
    "done, summary, steps, output, duration_s, ticket, error_kind, error_message, dry_run, pid, host"
)
_INSERT = f"INSERT INTO runs ({_COLUMNS}) VALUES ({', '.join('?' for _ in _COLUMNS.split(', '))})"
# On finish, everything but where and when the run started is replaced.
_UPSERT = (
    f"{_INSERT} "
    "ON CONFLICT(id) DO UPDATE SET finished_at=excluded.finished_at, technician=excluded.technician, "
    "action=excluded.action, target=excluded.target, params=excluded.params, status=excluded.status, "
    "before=excluded.before, after=excluded.after, done=excluded.done, summary=excluded.summary, "
    "steps=excluded.steps, "
    "output=excluded.output, duration_s=excluded.duration_s, ticket=excluded.ticket, "
    "error_kind=excluded.error_kind, error_message=excluded.error_message, dry_run=excluded.dry_run"
)


class Journal:
    """The run journal at `path`. A connection per thread: safe across threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.path.exists():
            self.path.touch(mode=0o600)  # -wal and -shm files take the same mode
        try:
            with self._connect() as db:
                self._init_schema(db)
        except sqlite3.DatabaseError as exc:
            raise L1fixError(f"journal {self.path} cannot be used: {exc}", hint="check the file") from None

    def _init_schema(self, db: sqlite3.Connection) -> None:
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise L1fixError(f"journal {self.path}: cannot switch to WAL mode (got {mode})")
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
            if "steps" not in {col["name"] for col in db.execute("PRAGMA table_info(runs)")}:
                db.execute("ALTER TABLE runs ADD COLUMN steps TEXT")  # a schema-1 journal
            row = db.execute("SELECT max(version) FROM schema_version").fetchone()
            if row[0] is None:
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] < SCHEMA_VERSION:  # the new tables were created above
                db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
            elif row[0] > SCHEMA_VERSION:
                raise L1fixError(
                    f"journal {self.path} has schema version {row[0]}, newer than this l1fix "
                    f"understands ({SCHEMA_VERSION})",
                    hint="upgrade l1fix",
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection (autocommit), opened on first use and kept until close().

        A fleet run writes twice per step from many threads: one connection per thread saves
        an open and a close each time.
        """
        db = getattr(self._local, "db", None)
        if db is None:
            try:  # the timeout is SQLite's busy timeout: wait for another writer, then fail
                db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            except sqlite3.Error as exc:
                raise L1fixError(f"cannot open journal {self.path}: {exc}") from None
            db.row_factory = sqlite3.Row
            self._local.db = db
        yield db

    def close(self) -> None:
        """Close this thread's connection; the last one closed folds the WAL into the file.

        A thread's connection also closes when the thread ends or the Journal is dropped.
        """
        db = getattr(self._local, "db", None)
        if db is not None:
            self._local.db = None
            db.close()

    def start(self, result: RunResult) -> None:
        """Record a run before it executes (status "running", this process and host)."""
        with self._connect() as db:
            try:
                db.execute(_INSERT, _row(result, finished=False))
            except sqlite3.IntegrityError:
                raise L1fixError(f"run {result.run_id} is already in the journal") from None

    def finish(self, result: RunResult) -> None:
        """Record how a run ended; inserts the whole run if start() was never recorded."""
        with self._connect() as db:
            db.execute(_UPSERT, _row(result, finished=True))

    def run_started(self, result: RunResult) -> None:
        """The runner's observer hook (l1fix.runner.RunObserver): start()."""
        self.start(result)

    def run_finished(self, result: RunResult) -> None:
        """The runner's observer hook (l1fix.runner.RunObserver): finish()."""
        self.finish(result)

    def list(
        self,
        *,
        target: str | None = None,
        ticket: int | None = None,
        since: datetime | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """Runs, newest first, shaped like RunResult.to_json() plus finished_at, pid and host."""
        if limit < 1:
            raise BadInput("limit must be at least 1")
        where, args = [], []
        if target is not None:
            where.append("target = ? COLLATE NOCASE")
            args.append(target)
        if ticket is not None:
            where.append("ticket = ?")
            args.append(ticket)
        if since is not None:
            where.append("started_ts >= ?")
            args.append(_timestamp(since))
        sql = f"SELECT * FROM runs {'WHERE ' + ' AND '.join(where) if where else ''} "
        sql += "ORDER BY started_ts DESC, rowid DESC LIMIT ?"
        with self._connect() as db:
            self._mark_interrupted(db)
            rows = db.execute(sql, (*args, limit)).fetchall()
            followups = self._followups_of(db, [row["id"] for row in rows])
        return [_to_dict(row, followups.get(row["id"])) for row in rows]

    def get(self, run_id: str) -> dict[str, Any] | None:
        """One run by its id or a unique prefix of it (at least 6 characters); None if unknown."""
        run_id = run_id.strip()
        with self._connect() as db:
            self._mark_interrupted(db)
            rows = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchall()
            if not rows:
                if len(run_id) < MIN_PREFIX:
                    raise BadInput(f"run id {run_id!r} is too short: give at least {MIN_PREFIX} characters")
                rows = db.execute(
                    "SELECT * FROM runs WHERE lower(substr(id, 1, ?)) = lower(?) ORDER BY started_ts DESC LIMIT 5",
                    (len(run_id), run_id),
                ).fetchall()
            if len(rows) > 1:
                ids = ", ".join(row["id"] for row in rows)
                raise BadInput(f"run id prefix {run_id!r} is ambiguous ({ids}…)", hint="give more characters")
            if not rows:
                return None
            return _to_dict(rows[0], self._followups_of(db, [rows[0]["id"]]).get(rows[0]["id"]))

    # -- outbox ---------------------------------------------------------------------------

    def enqueue_followup(self, run_id: str, ticket: int, payload: dict[str, Any]) -> None:
        """Keep a followup for `ticket` until it is delivered; once per (run, ticket)."""
        with self._connect() as db:
            db.execute(
                "INSERT OR IGNORE INTO outbox (run_id, ticket, payload, created_at) VALUES (?, ?, ?, ?)",
                (run_id, ticket, _json(payload), _now()),
            )

    def claim_followups(self, *, run_id: str | None = None, limit: int = 100) -> list[OutboxItem]:
        """Queued followups (of one run, or all), each claimed for CLAIM_LEASE_S and its attempt counted."""
        now = time.time()
        where = "state = 'queued' AND (claimed_until IS NULL OR claimed_until < ?)"
        args: list[Any] = [now]
        if run_id is not None:
            where += " AND run_id = ?"
            args.append(run_id)
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            rows = db.execute(f"SELECT * FROM outbox WHERE {where} ORDER BY id LIMIT ?", (*args, limit)).fetchall()
            db.executemany(
                "UPDATE outbox SET claimed_until = ?, attempts = attempts + 1 WHERE id = ?",
                [(now + CLAIM_LEASE_S, row["id"]) for row in rows],
            )
            db.execute("COMMIT")
        return [
            OutboxItem(row["id"], row["run_id"], row["ticket"], json.loads(row["payload"]), row["attempts"] + 1)
            for row in rows
        ]

    def mark_delivered(self, item: OutboxItem, remote_id: int) -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE outbox SET state = 'sent', remote_id = ?, sent_at = ?, claimed_until = NULL, "
                "last_error = NULL WHERE id = ?",
                (remote_id, _now(), item.id),
            )

    def release(self, item: OutboxItem, error: str) -> None:
        """The send failed: the item stays queued for `l1fix sync`, with the reason."""
        with self._connect() as db:
            db.execute("UPDATE outbox SET claimed_until = NULL, last_error = ? WHERE id = ?", (redact(error), item.id))

    def queued_followups(self) -> int:
        with self._connect() as db:
            return db.execute("SELECT count(*) FROM outbox WHERE state = 'queued'").fetchone()[0]

    def _followups_of(self, db: sqlite3.Connection, run_ids: list[str]) -> dict[str, dict[str, Any]]:
        if not run_ids:
            return {}
        marks = ", ".join("?" for _ in run_ids)
        rows = db.execute(f"SELECT * FROM outbox WHERE run_id IN ({marks})", run_ids).fetchall()
        return {
            row["run_id"]: {
                "ticket": row["ticket"],
                "state": row["state"],
                "attempts": row["attempts"],
                "followup_id": row["remote_id"],
                "last_error": row["last_error"],
            }
            for row in rows
        }

    def _mark_interrupted(self, db: sqlite3.Connection) -> None:
        """Turn "running" rows of dead processes on this host into "interrupted"."""
        host = socket.gethostname()
        stale_before = time.time() - STALE_AFTER_S
        rows = db.execute(
            "SELECT id, pid, started_ts FROM runs WHERE status = ? AND host = ?", (str(Status.RUNNING), host)
        ).fetchall()
        for row in rows:
            if row["started_ts"] >= stale_before and _pid_alive(row["pid"]):
                continue
            db.execute(
                "UPDATE runs SET status = ?, error_kind = 'interrupted', error_message = ? WHERE id = ? AND status = ?",
                (
                    str(Status.INTERRUPTED),
                    f"the l1fix process (pid {row['pid']}) ended before the run finished",
                    row["id"],
                    str(Status.RUNNING),
                ),
            )


def parse_since(text: str) -> datetime:
    """ "30m", "2h", "7d" (also "45s", "2w") ago, a date "2026-12-01" or an ISO datetime.

    Returns an aware datetime; dates and naive times are local time.
    """
    value = text.strip()
    match = re.fullmatch(r"(\d+)\s*([smhdw])", value, re.IGNORECASE)
    if match:
        amount, unit = int(match[1]), match[2].lower()
        seconds = amount * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
        return datetime.now().astimezone() - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadInput(
            f"since {text!r} is not understood",
            hint='use "30m", "2h", "7d", a date like 2026-12-01 or an ISO date and time',
        ) from None
    return moment if moment.tzinfo else moment.astimezone()


def _row(result: RunResult, *, finished: bool) -> tuple[Any, ...]:
    error = result.error
    return (
        result.run_id,
        result.started_at,
        _started_ts(result.started_at),
        _now() if finished else None,
        redact(result.technician),
        redact(result.action),
        redact(result.target),
        _json(result.params or {}),
        str(result.status),
        _json(result.before),
        _json(result.after),
        _json(result.done),
        redact(result.summary or ""),
        _json(result.steps or {}),
        excerpt(redact(result.output or ""), OUTPUT_CAP),
        float(result.duration_s or 0.0),
        result.ticket,
        error.kind if error else None,
        redact(error.message) if error else None,
        int(bool(result.dry_run)),
        os.getpid(),
        socket.gethostname(),
    )


def _to_dict(row: sqlite3.Row, followup: dict[str, Any] | None = None) -> dict[str, Any]:
    error = None
    if row["error_kind"] or row["error_message"]:
        error = {"kind": row["error_kind"], "message": row["error_message"] or ""}
    return {
        "run_id": row["id"],
        "action": row["action"],
        "target": row["target"],
        "status": row["status"],
        "started_at": row["started_at"],
        "technician": row["technician"],
        "ticket": row["ticket"],
        "params": json.loads(row["params"]) or {},
        "before": json.loads(row["before"]),
        "after": json.loads(row["after"]),
        "done": json.loads(row["done"]),
        "summary": row["summary"],
        "steps": json.loads(row["steps"] or "{}"),
        "output": row["output"],
        "duration_s": round(row["duration_s"], 3),
        "error": error,
        "dry_run": bool(row["dry_run"]),
        "finished_at": row["finished_at"],
        "pid": row["pid"],
        "host": row["host"],
        "followup": followup,
    }


def _json(value: Any) -> str:
    """JSON text with secrets redacted before encoding, and once more after (a second net)."""
    text = json.dumps(redact_data(value), default=lambda obj: redact(str(obj)), ensure_ascii=False)
    return redact(text)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _started_ts(started_at: str) -> float:
    try:
        return _timestamp(datetime.fromisoformat(started_at))
    except (TypeError, ValueError):
        return time.time()


def _timestamp(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.astimezone()).timestamp()


def _pid_alive(pid: int | None) -> bool:
    """Is process `pid` alive on this host? Never sends a signal that could harm it."""
    if not pid or pid < 0:
        return False
    if pid == os.getpid():
        return True
    if os.name == "nt":
        return _pid_alive_windows(pid)
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    try:  # a zombie has died; only its parent has not collected it yet (Linux)
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _pid_alive_windows(pid: int) -> bool:
    # os.kill(pid, 0) would terminate the process on Windows: ask the kernel instead.
    import ctypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    process_query_limited_information, still_active = 0x1000, 259
    handle = kernel32.OpenProcess(process_query_limited_information, False, pid)
    if not handle:
        return kernel32.GetLastError() == 5  # access denied: it exists
    try:
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True
        return code.value == still_active
    finally:
        kernel32.CloseHandle(handle)

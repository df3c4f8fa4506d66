"""The device's local log: visits and hourly records in one SQLite file (WAL mode).

An hourly record is committed here before it is published and marked delivered only when
central's receipt says it stored that revision (or, with `mqtt.receipts = false`, when the broker
acknowledges it), so a crash or an outage of the broker or central loses nothing: on restart
`undelivered()` is what still has to go out, oldest first. The daemon's running state (open
hours, last frame time) is saved in the same transactions as the visits it reflects, so after a
`kill -9` the log and the state agree and nothing is counted twice.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from edge.wire.contract import HourlyRecord, encode
from edge.wire.sqlite import (
    CorruptLog,
    LogError,
    Schema,
    connect_durable,
    decode_record,
    hourly_query,
    is_corruption,
    migrate_sqlite,
    transaction,
)

if TYPE_CHECKING:
    from edge.vision.analyzer import Visitor

log = logging.getLogger("aicctv.edge")

SCHEMA = Schema(
    "edge log",
    (
        """CREATE TABLE visits (
            id INTEGER PRIMARY KEY,
            device TEXT NOT NULL,
            track INTEGER NOT NULL,
            first_seen REAL NOT NULL,
            last_seen REAL NOT NULL,
            frames INTEGER NOT NULL,
            gender TEXT,
            p_female REAL,
            age REAL,
            age_band TEXT
        )""",
        """CREATE INDEX visits_first_seen ON visits (first_seen)""",
        """CREATE TABLE hourly (
            device TEXT NOT NULL,
            hour TEXT NOT NULL,
            revision INTEGER NOT NULL,
            record TEXT NOT NULL,
            delivered INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (device, hour)
        )""",
        """CREATE TABLE state (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )""",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            time REAL NOT NULL,
            kind TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT ''
        )""",
    ),
)


# Why SQLite could not open or write a log that is not damaged, and what to do about it.
_REMEDIES = {
    sqlite3.SQLITE_FULL: "free space on its disk",
    sqlite3.SQLITE_READONLY: "its file system is read-only or the file is not writable",
    sqlite3.SQLITE_CANTOPEN: "its directory must exist and be writable",
}


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _open_error(path: Path, exc: sqlite3.Error | OSError | ValueError) -> LogError:
    """A damaged file (CorruptLog), or one that cannot be used where it is (LogError)."""
    if "\0" in str(path):
        return LogError(f"cannot use the edge log {str(path)!r} (storage.db): the path holds a NUL character")
    if _text_file(path):
        # A damaged log is set aside; another file named by mistake (a config) is left where it is.
        return LogError(f"{path} (storage.db) is a text file, not an edge log: name a new or existing .db file")
    if isinstance(exc, ValueError) or (isinstance(exc, sqlite3.Error) and is_corruption(exc)):
        return CorruptLog(f"{path} is not a readable edge log ({_first_line(exc)})")
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else _first_line(exc)
    remedy = _REMEDIES.get(getattr(exc, "sqlite_errorcode", 0) & 0xFF, "check its disk and permissions")
    return LogError(f"cannot use the edge log {path} (storage.db): {reason}; {remedy}")


class EdgeStore:
    """Raises CorruptLog for a damaged file (`open_or_replace` sets it aside), and LogError for a
    log from a newer aicctv or one that cannot be opened or written where it is."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        conn: sqlite3.Connection | None = None
        try:
            conn = connect_durable(self.path)
            migrate_sqlite(conn, SCHEMA, str(self.path))
            _check_content(conn)
        except BaseException as exc:
            # Closed before anyone moves the file: closing later could delete a new log's WAL.
            if conn is not None:
                conn.close()
            if isinstance(exc, (sqlite3.Error, OSError, ValueError)):
                raise _open_error(self.path, exc) from None
            raise
        self.conn = conn

    @classmethod
    def open_or_replace(cls, path: str | Path) -> EdgeStore:
        """The log at `path`; a damaged one is moved aside (with its WAL and shared-memory files)
        and a fresh log started, with an event naming where the old one went, so the device keeps
        counting and the old file stays there for recovery."""
        try:
            return cls(path)
        except CorruptLog as exc:
            aside = set_aside(Path(path))
            log.error("%s: moved it to %s and started a fresh log", exc, aside)
            store = cls(path)
            store.add_event("log set aside", f"{exc}; the old log is now {aside}")
            return store

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> EdgeStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def transaction(self) -> AbstractContextManager[None]:
        """Group writes into one atomic commit."""
        return transaction(self.conn)

    def save_state(self, key: str, value: dict) -> None:
        self.conn.execute(
            "INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )

    def load_state(self, key: str) -> dict | None:
        row = self.conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def add_event(self, kind: str, detail: str = "", at: float | None = None) -> None:
        """A line in the device's own log: started, stopped, source lost or back, resync served."""
        self.conn.execute(
            "INSERT INTO events (time, kind, detail) VALUES (?, ?, ?)",
            (time.time() if at is None else at, kind, detail),
        )

    def prune(self, keep_s: float) -> int:
        """Delete visits and events more than `keep_s` older than the newest of their kind; how
        many. Relative to the newest, not the clock, so replays of old footage keep theirs."""
        with self.transaction():
            visits = self.conn.execute(
                "DELETE FROM visits WHERE first_seen < (SELECT max(first_seen) FROM visits) - ?", (keep_s,)
            ).rowcount
            events = self.conn.execute("DELETE FROM events WHERE time < (SELECT max(time) FROM events) - ?", (keep_s,))
        return visits + events.rowcount

    def events(self) -> list[tuple[float, str, str]]:
        return list(self.conn.execute("SELECT time, kind, detail FROM events ORDER BY id"))

    def add_visit(self, device: str, visitor: Visitor) -> None:
        row = visitor.to_json()
        self.conn.execute(
            "INSERT INTO visits (device, track, first_seen, last_seen, frames, gender, p_female, age, age_band)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                device,
                row["track"],
                visitor.first_seen,
                visitor.last_seen,
                row["frames"],
                row["gender"],
                row["p_female"],
                row["age"],
                row["age_band"],
            ),
        )

    def save_hourly(self, record: HourlyRecord) -> bool:
        """Keep `record` unless a later revision of its hour is already stored; True if kept."""
        cursor = self.conn.execute(
            "INSERT INTO hourly (device, hour, revision, record, delivered) VALUES (?, ?, ?, ?, 0)"
            " ON CONFLICT (device, hour) DO UPDATE SET revision = excluded.revision,"
            " record = excluded.record, delivered = 0 WHERE excluded.revision > hourly.revision",
            (record.device, record.hour, record.revision, encode(record).decode()),
        )
        return cursor.rowcount == 1

    def confirm(self, device: str, hour: str, revision: int) -> None:
        """This revision of the hour (or a later one) was delivered: central's receipt, or the
        broker's PUBACK without receipts. A newer revision stored since stays pending."""
        self.conn.execute(
            "UPDATE hourly SET delivered = 1 WHERE device = ? AND hour = ? AND revision <= ?",
            (device, hour, revision),
        )

    def mark_delivered(self, record: HourlyRecord) -> None:
        self.confirm(record.device, record.hour, record.revision)

    def undelivered(self) -> list[HourlyRecord]:
        rows = self.conn.execute("SELECT record FROM hourly WHERE delivered = 0 ORDER BY hour, device")
        return [decode_record(r[0]) for r in rows]

    def undelivered_count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM hourly WHERE delivered = 0").fetchone()[0]

    def hourly(
        self, device: str | None = None, since: str | None = None, until: str | None = None
    ) -> list[HourlyRecord]:
        """Stored records, oldest first, of one device or all, for hours in [since, until]."""
        return [decode_record(r[0]) for r in self.conn.execute(*hourly_query(device, since, until))]

    def visits(self) -> list[dict]:
        self.conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in self.conn.execute("SELECT * FROM visits ORDER BY first_seen, id")]
        finally:
            self.conn.row_factory = None


def _text_file(path: Path) -> bool:
    """A file that starts as text does (UTF-8, no NUL) and not as SQLite: not a log, damaged or not."""
    try:
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    if not head or head.startswith(b"SQLite format 3\0") or b"\0" in head:
        return False
    try:
        head.decode()
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # a character cut at the end of the 4 KB
    return True


def _check_content(conn: sqlite3.Connection) -> None:
    """Raise if the pages or the JSON the daemon reads back are damaged: better found at start,
    where the log can be set aside, than in the middle of a delivery."""
    problem = conn.execute("PRAGMA quick_check").fetchone()[0]
    if problem != "ok":
        raise ValueError(f"integrity check: {problem}")
    for key, value in conn.execute("SELECT key, value FROM state"):
        if not isinstance(json.loads(value), dict):
            raise ValueError(f"state {key!r} is not a JSON object")
    for (record,) in conn.execute("SELECT record FROM hourly"):
        decode_record(record)


def set_aside(path: Path) -> Path:
    """Move a log and its -wal and -shm files to `<name>.corrupt-<UTC time>`; the new name."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            # The WAL goes with its database, under the name SQLite looks for beside the new one.
            os.replace(source, aside.with_name(aside.name + suffix))
    return aside

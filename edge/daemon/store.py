"""The device's local log: visits and hourly records in one SQLite file (WAL mode).

An hourly record is committed here before it is published and marked delivered only when the
broker acknowledges that exact revision, so a crash or a broker outage loses nothing: on restart
`undelivered()` is what still has to go out, oldest first. The daemon's running state (open
hours, last frame time) is saved in the same transactions as the visits it reflects, so after a
`kill -9` the log and the state agree and nothing is counted twice.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from edge.wire.contract import HourlyRecord, encode
from edge.wire.sqlite import LogError, Schema, connect_durable, decode_record, hourly_query, migrate_sqlite, transaction

if TYPE_CHECKING:
    from edge.vision.analyzer import Visitor

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


class EdgeStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.conn = connect_durable(self.path)
            migrate_sqlite(self.conn, SCHEMA, str(self.path))
        except sqlite3.DatabaseError as exc:
            raise LogError(
                f"{self.path} is not a readable edge log ({exc}): move it aside, or point storage.db elsewhere"
            ) from None

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

    def mark_delivered(self, record: HourlyRecord) -> None:
        """The broker acknowledged this revision (a newer one, if stored since, stays pending)."""
        self.conn.execute(
            "UPDATE hourly SET delivered = 1 WHERE device = ? AND hour = ? AND revision = ?",
            (record.device, record.hour, record.revision),
        )

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

"""The device's local log: visits and hourly records in one SQLite file (WAL mode).

An hourly record is committed here before it is published and marked delivered only when the
broker acknowledges that exact revision, so a crash or a broker outage loses nothing: on restart
`undelivered()` is what still has to go out, oldest first.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import cast

from edge.analyzer import Visitor
from edge.contract import HourlyRecord, decode, encode

SCHEMA = """
CREATE TABLE IF NOT EXISTS visits (
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
);
CREATE INDEX IF NOT EXISTS visits_first_seen ON visits (first_seen);
CREATE TABLE IF NOT EXISTS hourly (
    device TEXT NOT NULL,
    hour TEXT NOT NULL,
    revision INTEGER NOT NULL,
    record TEXT NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (device, hour)
);
"""


class EdgeStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode with explicit transactions: every write below is its own atomic commit.
        self.conn = sqlite3.connect(self.path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed hourly record survives power loss too, at the cost of an fsync per
        # commit, which at a few commits a minute is nothing.
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

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
        return [self._record(r[0]) for r in rows]

    def hourly(self, since: str | None = None, until: str | None = None) -> list[HourlyRecord]:
        """Stored records, oldest first, for hours in [since, until] (ISO hour strings sort by time)."""
        rows = self.conn.execute(
            "SELECT record FROM hourly WHERE hour >= ? AND hour <= ? ORDER BY hour, device",
            (since or "", until or "9999"),
        )
        return [self._record(r[0]) for r in rows]

    def visits(self) -> list[dict]:
        self.conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in self.conn.execute("SELECT * FROM visits ORDER BY first_seen, id")]
        finally:
            self.conn.row_factory = None

    @staticmethod
    def _record(text: str) -> HourlyRecord:
        return cast(HourlyRecord, decode(HourlyRecord, text.encode()))

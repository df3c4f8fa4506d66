"""The central log, in SQLite (default) or PostgreSQL (a `postgresql://` URL).

Both keep the same tables, so `aicctv stats` and `aicctv central export` read either:

    hourly   (device, hour) → revision, record (the contract's canonical JSON), visitors, received
    live     device → the latest LiveCounts (time = the edge's publish time), received
    devices  device → status (online / source-lost / offline), updated
    counters name → value: messages received per channel, rejections per reason
    settings device → the device's last SettingsState (its contract JSON), received (version 3)

and a view (schema version 2; version 4 added the unknown_<band> columns), `hourly_counts`: each
hourly record as plain columns for Grafana.

A `Batch` is written in one transaction: the subscriber acknowledges its messages to the broker
only after `write` returns, so a crash loses nothing and a redelivered message changes nothing.
"""

from __future__ import annotations

import sqlite3
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, Protocol, cast

from central.config import POSTGRES_SCHEMES
from edge.wire.config import redact
from edge.wire.contract import (
    ContractError,
    HourlyRecord,
    LiveCounts,
    SettingsState,
    decode,
    encode,
    hour_start,
    parse_hour,
)
from edge.wire.sqlite import Schema, connect_durable, decode_record, hourly_query, migrate_sqlite, transaction

HOUR_S = 3600
# A device whose live counts arrived this recently is running (edges send them every second).
RUNNING_WITHIN_S = 120.0
# A read-only store waits at most this long for a lock (only while a writer recovers the log).
READ_BUSY_TIMEOUT_S = 2.0
# Undecodable rows noted by a read-only store, at most: enough to say which, never all of a log.
UNREADABLE_KEPT = 1000
# The hourly_counts view's bands as released in schema version 2: a migration never changes, so
# these are spelt out here rather than taken from the contract.
_VIEW_GENDERS = ("female", "male")
_VIEW_BANDS = ("0-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60+")


def hourly_counts_view(dialect: str, unknown_bands: bool = False) -> str:
    """CREATE VIEW hourly_counts: one row per device-hour with a timestamp and one number per
    column, so Grafana (or any SQL client) plots it without JSON functions. Columns: hour_start
    (PostgreSQL timestamptz; SQLite the ISO text 'YYYY-MM-DDTHH:00:00Z'), time_s (Unix seconds),
    device, visitors, <gender>_<band> (female_0_9 … male_60_plus), female, male, unclassified
    (visitors whose gender or age was not told), coverage, mean_dwell_s, frames; with
    `unknown_bands` (schema version 4) also unknown_0_9 … unknown_60_plus: of the unclassified,
    those whose age was read (the record's `unknown_bands`, 0 where it has none)."""
    if dialect == "sqlite":
        source, hour_start = "hourly", "hour"
        time_s = "CAST(strftime('%s', hour) AS INTEGER)"

        def count(gender: str, band: str) -> str:
            return f"""json_extract(record, '$.counts.{gender}."{band}"')"""

        def unknown(band: str) -> str:
            return f"""coalesce(json_extract(record, '$.unknown_bands."{band}"'), 0)"""

        def number(key: str, kind: str = "REAL") -> str:
            return f"CAST(json_extract(record, '$.{key}') AS {kind})"

    else:
        # `record` is TEXT: parsed once per row, in the innermost query.
        source, hour_start = "(SELECT hourly.*, record::jsonb AS r FROM hourly) AS parsed", "hour::timestamptz"
        time_s = "CAST(extract(epoch FROM hour::timestamptz) AS BIGINT)"

        def count(gender: str, band: str) -> str:
            return f"CAST(r -> 'counts' -> '{gender}' ->> '{band}' AS INTEGER)"

        def unknown(band: str) -> str:
            return f"coalesce(CAST(r -> 'unknown_bands' ->> '{band}' AS INTEGER), 0)"

        def number(key: str, kind: str = "DOUBLE PRECISION") -> str:
            return f"CAST(r ->> '{key}' AS {kind})"

    def column(prefix: str, band: str) -> str:
        return f"{prefix}_{band.replace('-', '_').replace('+', '_plus')}"

    columns = {column(g, b): (g, b) for g in _VIEW_GENDERS for b in _VIEW_BANDS}
    extracted = ",\n    ".join(f"{count(g, b)} AS {name}" for name, (g, b) in columns.items())
    totals = {g: " + ".join(name for name, (gender, _) in columns.items() if gender == g) for g in _VIEW_GENDERS}
    ages = [column("unknown", b) for b in _VIEW_BANDS] if unknown_bands else []
    extracted += "".join(f",\n    {unknown(b)} AS {name}" for b, name in zip(_VIEW_BANDS, ages, strict=False))
    return f"""CREATE VIEW hourly_counts AS
SELECT hour_start, time_s, device, visitors, {", ".join([*columns, *ages])},
    {", ".join(f"{total} AS {g}" for g, total in totals.items())},
    visitors - ({" + ".join(columns)}) AS unclassified,
    coverage, mean_dwell_s, frames
FROM (SELECT {hour_start} AS hour_start, {time_s} AS time_s, device, visitors,
    {extracted},
    {number("coverage")} AS coverage, {number("mean_dwell_s")} AS mean_dwell_s, {number("frames", "BIGINT")} AS frames
FROM {source}) AS flat"""


# One text for both databases where they agree (SQLite takes PostgreSQL's type names with the right
# affinities); a {dialect: text} mapping where they do not (JSON and time functions).
SCHEMA = Schema(
    "central log",
    (
        """CREATE TABLE hourly (
        device TEXT NOT NULL,
        hour TEXT NOT NULL,
        revision INTEGER NOT NULL,
        record TEXT NOT NULL,
        visitors INTEGER NOT NULL,
        received DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (device, hour)
    )""",
        """CREATE TABLE live (
        device TEXT PRIMARY KEY,
        time DOUBLE PRECISION NOT NULL,
        in_view INTEGER NOT NULL,
        visitors_this_hour INTEGER NOT NULL,
        received DOUBLE PRECISION NOT NULL
    )""",
        """CREATE TABLE devices (
        device TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        updated DOUBLE PRECISION NOT NULL
    )""",
        "CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
    ),
    (
        # 2: the hourly_counts view, for Grafana and plain SQL (see hourly_counts_view).
        ({"sqlite": hourly_counts_view("sqlite"), "postgresql": hourly_counts_view("postgresql")},),
        # 3: each device's settings as it last reported them (paused since / until), for the
        # Devices page and /api/v1/devices.
        (
            """CREATE TABLE settings (
        device TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        received DOUBLE PRECISION NOT NULL
    )""",
        ),
        # 4: hourly_counts with the ages of visitors without a gender (HourlyRecord.unknown_bands).
        (
            "DROP VIEW hourly_counts",
            {"sqlite": hourly_counts_view("sqlite", True), "postgresql": hourly_counts_view("postgresql", True)},
        ),
    ),
)
UPSERT_HOURLY = (
    "INSERT INTO hourly (device, hour, revision, record, visitors, received) VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (device, hour) DO UPDATE SET revision = excluded.revision, record = excluded.record,"
    " visitors = excluded.visitors, received = excluded.received WHERE excluded.revision > hourly.revision"
)
UPSERT_LIVE = (
    "INSERT INTO live (device, time, in_view, visitors_this_hour, received) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (device) DO UPDATE SET time = excluded.time, in_view = excluded.in_view,"
    " visitors_this_hour = excluded.visitors_this_hour, received = excluded.received"
    " WHERE excluded.time >= live.time"
)
UPSERT_DEVICE = (
    "INSERT INTO devices (device, status, updated) VALUES (?, ?, ?)"
    " ON CONFLICT (device) DO UPDATE SET status = excluded.status, updated = excluded.updated"
)
UPSERT_SETTINGS = (
    "INSERT INTO settings (device, state, received) VALUES (?, ?, ?)"
    " ON CONFLICT (device) DO UPDATE SET state = excluded.state, received = excluded.received"
)
ADD_COUNTER = (
    "INSERT INTO counters (name, value) VALUES (?, ?)"
    " ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value"
)


class StoreError(Exception):
    """The database failed (server gone, disk full, locked too long); the message says how.
    `public` says what went wrong without the database's address, port or role names, for
    whoever may ask (the dashboard's anonymous /healthz): the message is for the server's log."""

    def __init__(self, message: str, public: str | None = None) -> None:
        super().__init__(message)
        self.public = public or "the database cannot be reached or refused the query (the server's log says why)"


@dataclass
class Batch:
    """What one transaction writes. `counters` are added to the stored ones."""

    hourly: list[HourlyRecord] = field(default_factory=list)
    live: list[LiveCounts] = field(default_factory=list)
    statuses: dict[str, str] = field(default_factory=dict)
    settings: dict[str, SettingsState] = field(default_factory=dict)  # the latest per device
    counters: Counter[str] = field(default_factory=Counter)


class CentralStore(Protocol):
    def write(self, batch: Batch) -> int: ...

    def hourly(
        self,
        device: str | Sequence[str] | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int | None = None,
    ) -> list[HourlyRecord]: ...

    def received(self) -> dict[tuple[str, str], float]: ...

    def live(self) -> dict[str, tuple[LiveCounts, float]]: ...

    def statuses(self) -> dict[str, str]: ...

    def settings(self) -> dict[str, tuple[SettingsState, float]]: ...

    def counters(self) -> dict[str, int]: ...

    def held_hours(self) -> dict[str, HeldHours]: ...

    def decode_rows(self, rows: Iterable[tuple[str, str, Any]]) -> list[HourlyRecord]: ...

    def replaced(self) -> bool: ...

    def close(self) -> None: ...


def open_store(db: str | Path, read_only: bool = False) -> CentralStore:
    """A PostgreSQL store for a `postgresql://` URL, else a SQLite store for a file path.
    Read-only (the dashboard): nothing is created, migrated or locked for writing, a log of
    another schema version is refused (StoreError), and a record this version cannot decode is
    left out and noted in `unreadable` instead of failing the whole read."""
    if str(db).startswith(POSTGRES_SCHEMES):
        return PostgresStore(str(db), read_only)
    return SQLiteStore(db, read_only=read_only)


def _check_version(found: int, where: str) -> None:
    """A read-only store reads only a log of this version: it may not migrate one."""
    if found == SCHEMA.version:
        return
    if found > SCHEMA.version:
        public = (
            f"the central log is of schema version {found}, newer than this aicctv's {SCHEMA.version}: upgrade aicctv"
        )
    else:
        public = (
            f"the central log is of schema version {found}, older than this aicctv's {SCHEMA.version}: "
            "`aicctv central run` migrates it when it starts"
        )
    raise StoreError(f"{where}: {public}", public)


@dataclass(frozen=True)
class HeldHours:
    """What the central log holds of one device's hours, for finding the ones it lacks."""

    missing: tuple[str, str] | None  # first and last hour missing between its first and latest
    latest: str  # its latest stored hour
    hourly_arrived: float  # when its last hourly record was stored (central's clock)
    live_arrived: float | None  # when its last live counts were stored; None if never

    def overdue(self, now: float, after_s: float) -> tuple[str, str] | None:
        """The hours after `latest` that the device should have published by `now`: it is running
        (live counts within RUNNING_WITHIN_S), and its last hourly record came more than an hour
        plus `after_s` ago. Edges publish every hour, idle or not, so those hours were lost."""
        if self.live_arrived is None or now - self.live_arrived > RUNNING_WITHIN_S:
            return None
        due = int((now - self.hourly_arrived - after_s) // HOUR_S)
        if due < 1:
            return None
        first = parse_hour(self.latest) + HOUR_S
        return hour_start(first), hour_start(first + (due - 1) * HOUR_S)


def missing_span(hours: Sequence[str]) -> tuple[str, str] | None:
    """First and last hour missing between the first and last of `hours` (sorted), if any."""
    times = [parse_hour(h) for h in hours]
    holes = [(a + HOUR_S, b - HOUR_S) for a, b in pairwise(times) if b - a > HOUR_S]
    return (hour_start(holes[0][0]), hour_start(holes[-1][1])) if holes else None


class _SQLStore(ABC):
    """The SQL both databases share; subclasses connect and run transactions."""

    _errors: tuple[type[Exception], ...]
    # Whether a driver's messages may name the server's address, port or role (PostgreSQL's do).
    _addresses_in_errors = False
    read_only = False
    # (device, hour or "live counts") -> why, of the rows a read-only store could not decode (at
    # most UNREADABLE_KEPT).
    unreadable: dict[tuple[str, str], str]

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]: ...

    @abstractmethod
    def _executemany(self, sql: str, rows: list[tuple]) -> int: ...

    @abstractmethod
    def _transaction(self) -> AbstractContextManager: ...

    @contextmanager
    def _failures(self) -> Iterator[None]:
        try:
            yield
        except self._errors as exc:
            # One line (drivers add hint lines), and a connection string in it loses its password.
            message = redact(f"{type(exc).__name__}: {' '.join(str(exc).split())}")
            raise StoreError(message, None if self._addresses_in_errors else message) from exc

    def write(self, batch: Batch) -> int:
        """Write `batch` in one transaction; returns how many hourly rows were inserted or replaced.
        Rows go in key order so concurrent writers lock them in the same order (no deadlocks)."""
        now = time.time()
        hourly = sorted(
            (r.device, r.hour, r.revision, encode(r).decode(), r.visitors, now)
            for r in _latest(batch.hourly, lambda r: (r.device, r.hour), lambda r: r.revision)
        )
        live = sorted(
            (c.device, c.time, c.in_view, c.visitors_this_hour, now)
            for c in _latest(batch.live, lambda c: c.device, lambda c: c.time)
        )
        devices = sorted((device, status, now) for device, status in batch.statuses.items())
        settings = sorted((device, encode(state).decode(), now) for device, state in batch.settings.items())
        counters = sorted(batch.counters.items())
        with self._failures(), self._transaction():
            stored = self._executemany(UPSERT_HOURLY, hourly) if hourly else 0
            for sql, rows in (
                (UPSERT_LIVE, live),
                (UPSERT_DEVICE, devices),
                (UPSERT_SETTINGS, settings),
                (ADD_COUNTER, counters),
            ):
                if rows:
                    self._executemany(sql, rows)
        return stored

    def hourly(
        self,
        device: str | Sequence[str] | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int | None = None,
    ) -> list[HourlyRecord]:
        """Stored records, oldest first, of one device, several or all, for hours in [since,
        until]; the first `limit` of them when given."""
        return self.decode_rows(self._read(*hourly_query(device, since, until, "device, hour, record", limit)))

    def decode_rows(self, rows: Iterable[tuple[str, str, Any]]) -> list[HourlyRecord]:
        """The records of (device, hour, record) rows. A writable store raises ContractError on
        one it cannot decode; a read-only one leaves it out and notes it in `unreadable`, so a
        damaged row or one from a newer aicctv does not hide every other."""
        records = []
        for device, hour, text in rows:
            try:
                if not isinstance(text, str):
                    raise ContractError(f"the record is {type(text).__name__}, not JSON text")
                records.append(decode_record(text))
            except ContractError as exc:
                self._unreadable(device, hour, exc)
        return records

    def _unreadable(self, device: Any, what: Any, exc: ContractError) -> None:
        """A row that cannot be decoded: an error, but for a read-only store, which notes it."""
        if not self.read_only:
            raise exc
        if len(self.unreadable) < UNREADABLE_KEPT:
            self.unreadable[(str(device), str(what))] = str(exc)

    def replaced(self) -> bool:
        """Whether the log was replaced since it was opened (a new connection reads the new one);
        StoreError when it is gone."""
        return False

    def received(self) -> dict[tuple[str, str], float]:
        """When each (device, hour) row was last written (Unix time), e.g. to measure latency."""
        return {(device, hour): t for device, hour, t in self._read("SELECT device, hour, received FROM hourly")}

    def live(self) -> dict[str, tuple[LiveCounts, float]]:
        """Each device's latest live counts and when they were stored."""
        live = {}
        for row in self._read("SELECT device, time, in_view, visitors_this_hour, received FROM live"):
            try:
                if not isinstance(row[4], int | float):
                    raise ContractError(f"received = {row[4]!r} is not a time")
                live[row[0]] = (LiveCounts(*row[:4]).validate(), row[4])
            except ContractError as exc:
                self._unreadable(row[0], "live counts", exc)
        return live

    def statuses(self) -> dict[str, str]:
        return dict(self._read("SELECT device, status FROM devices"))

    def counters(self) -> dict[str, int]:
        return dict(self._read("SELECT name, value FROM counters"))

    def settings(self) -> dict[str, tuple[SettingsState, float]]:
        """Each device's settings as it last reported them, and when that report was stored. A
        row this version cannot read (written by a newer one) is left out, not an error: the page
        then shows no state for that device."""
        states = {}
        for device, text, received in self._read("SELECT device, state, received FROM settings"):
            try:
                states[device] = (
                    cast(SettingsState, decode(SettingsState, text.encode(), device, now=received)),
                    received,
                )
            except ContractError:
                continue
        return states

    def held_hours(self) -> dict[str, HeldHours]:
        """Each device not known to be offline, with what the log holds of its hours. Counting
        first keeps the common case (no hole) cheap."""
        rows = self._read(
            "SELECT h.device, min(h.hour), max(h.hour), count(*), max(h.received), max(l.received) FROM hourly h"
            " LEFT JOIN devices d ON d.device = h.device LEFT JOIN live l ON l.device = h.device"
            " WHERE d.status IS NULL OR d.status <> 'offline' GROUP BY h.device"
        )
        held = {}
        for device, first, latest, count, hourly_arrived, live_arrived in rows:
            missing = None
            if (parse_hour(latest) - parse_hour(first)) // HOUR_S + 1 > count:
                hours = [h for (h,) in self._read("SELECT hour FROM hourly WHERE device = ? ORDER BY hour", [device])]
                missing = missing_span(hours)
            held[device] = HeldHours(missing, latest, hourly_arrived, live_arrived)
        return held

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._failures():
            return self._execute(sql, params)


def _latest(items: list, key: Any, order: Any) -> list:
    """The item with the highest `order` per `key`: a batch writes each row once."""
    best: dict = {}
    for item in items:
        k = key(item)
        if k not in best or order(item) > order(best[k]):
            best[k] = item
    return list(best.values())


class SQLiteStore(_SQLStore):
    """One SQLite file in WAL mode; several processes may write it (each waits its turn).
    Read-only, it is opened with mode=ro and query_only: in WAL a reader never waits for a
    writer, so only a log being recovered makes it wait, READ_BUSY_TIMEOUT_S at most."""

    _errors = (sqlite3.Error,)

    def __init__(self, path: str | Path, busy_timeout_s: float = 30.0, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self.unreadable = {}
        if read_only:
            self._identity = self._stat()
            with self._failures():
                self.conn = sqlite3.connect(
                    f"{self.path.resolve().as_uri()}?mode=ro",
                    uri=True,
                    isolation_level=None,
                    timeout=READ_BUSY_TIMEOUT_S,
                )
                try:
                    self.conn.execute("PRAGMA query_only = ON")
                    _check_version(self.conn.execute("PRAGMA user_version").fetchone()[0], str(self.path))
                except BaseException:
                    self.conn.close()
                    raise
            return
        with self._failures():
            # Durable: an acknowledged message must survive power loss, since the broker forgets it.
            self.conn = connect_durable(self.path, busy_timeout_s)
            migrate_sqlite(self.conn, SCHEMA, str(self.path))

    def _stat(self) -> tuple[int, int]:
        """The file's (device, inode): which file the path names now."""
        try:
            found = self.path.stat()
        except FileNotFoundError:
            raise StoreError(
                f"no central log at {self.path}: deleted or moved?", "the central log file is gone (deleted or moved)"
            ) from None
        except OSError as exc:
            raise StoreError(
                f"{self.path}: {exc.strerror}", f"the central log file cannot be read: {exc.strerror}"
            ) from None
        return found.st_dev, found.st_ino

    def replaced(self) -> bool:
        # An open SQLite file goes on reading a deleted or replaced file's old inode: the path is
        # looked at again on every use, and so is the version (a newer aicctv may migrate it).
        if not self.read_only:
            return False
        with self._failures():
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        return self._stat() != self._identity or version != SCHEMA.version

    def close(self) -> None:
        self.conn.close()

    def _transaction(self) -> AbstractContextManager:
        return transaction(self.conn)

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self.conn.execute(sql, params).fetchall()

    def _executemany(self, sql: str, rows: list[tuple]) -> int:
        return self.conn.executemany(sql, rows).rowcount


class PostgresStore(_SQLStore):
    """A PostgreSQL database (psycopg 3, imported only here, so SQLite users need not install it)."""

    _addresses_in_errors = True

    def __init__(self, url: str, read_only: bool = False) -> None:
        try:
            import psycopg
        except ImportError:
            raise StoreError("PostgreSQL needs psycopg: pip install 'aicctv[central]'") from None
        self._errors = (psycopg.Error,)
        self.url = url
        self.read_only = read_only
        self.unreadable = {}
        if read_only:
            with self._failures():
                # Every transaction of this session read-only: the server refuses a write.
                self.conn = psycopg.connect(
                    url, autocommit=True, connect_timeout=10, options="-c default_transaction_read_only=on"
                )
                try:
                    known = self.conn.execute("SELECT to_regclass('aicctv_schema') IS NOT NULL").fetchone()[0]
                    row = self.conn.execute("SELECT version FROM aicctv_schema").fetchone() if known else None
                    _check_version(row[0] if row else 0, redact(url))
                except BaseException:
                    self.conn.close()
                    raise
            return
        with self._failures():
            self.conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
            with self._transaction():
                # Instances starting together would race to create or migrate the tables.
                self.conn.execute("SELECT pg_advisory_xact_lock(hashtext('aicctv-central-schema'))")
                known = self.conn.execute("SELECT to_regclass('aicctv_schema') IS NOT NULL").fetchone()[0]
                row = self.conn.execute("SELECT version FROM aicctv_schema").fetchone() if known else None
                if row is not None and row[0] == SCHEMA.version:
                    return  # current: a role with rights on the tables alone, not the schema, may run it
                self.conn.execute("CREATE TABLE IF NOT EXISTS aicctv_schema (version INTEGER NOT NULL)")
                has_tables = self.conn.execute("SELECT to_regclass('hourly') IS NOT NULL").fetchone()[0]
                for statement in SCHEMA.steps(row[0] if row else 0, has_tables, redact(url), "postgresql"):
                    self.conn.execute(statement)
                self.conn.execute("DELETE FROM aicctv_schema")
                self.conn.execute("INSERT INTO aicctv_schema (version) VALUES (%s)", (SCHEMA.version,))

    def close(self) -> None:
        self.conn.close()

    def _transaction(self) -> AbstractContextManager:
        return self.conn.transaction()

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self.conn.execute(sql.replace("?", "%s"), params).fetchall()

    def _executemany(self, sql: str, rows: list[tuple]) -> int:
        with self.conn.cursor() as cursor:
            cursor.executemany(sql.replace("?", "%s"), rows)
            return cursor.rowcount

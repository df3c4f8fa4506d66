"""What the edge's and central's logs share: durable SQLite connections, transactions, the hourly
query, and versioned schemas that migrate on open.

A log's schema version is `PRAGMA user_version` in SQLite (a table `aicctv_schema` in PostgreSQL).
Version 1 is the layout of the first release, whose logs carry no version (0): they are adopted
as version 1. Opening a log brings it to the current version in one transaction; a log from a
newer aicctv is refused before anything is written, so a downgrade never damages it.

A statement is one SQL text for every database, or, where SQLite and PostgreSQL differ (JSON
functions, time types), a mapping of dialect ("sqlite", "postgresql") to its text.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from edge.wire.contract import HourlyRecord, decode


class LogError(RuntimeError):
    """A log that cannot be used as it is: corrupt, not a log, from a newer aicctv, or where it
    cannot be written."""

    exit_code = 2


class CorruptLog(LogError):
    """The file itself is damaged or not a log: unlike a log from a newer aicctv, or one on a full
    or read-only disk, there is nothing to wait or upgrade for; what it holds is beyond use."""


def is_corruption(exc: sqlite3.Error) -> bool:
    """Whether SQLite failed because the file's content is damaged, not because of where it is."""
    # The extended code's low byte is the primary result code.
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


# One SQL text for every database, or {"sqlite": …, "postgresql": …} where they differ.
Statement = str | Mapping[str, str]
DIALECTS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class Schema:
    """A log's tables as first released, and each migration since, in order."""

    what: str  # "edge log", "central log": for messages
    tables: tuple[Statement, ...]  # version 1
    # migrations[n - 1] takes version n to n + 1. Append only; never edit a released one.
    migrations: tuple[tuple[Statement, ...], ...] = ()

    def __post_init__(self) -> None:
        if not all(isinstance(m, tuple) for m in self.migrations):
            raise TypeError(f"{self.what}: each migration is a tuple of statements")
        for statement in [*self.tables, *(s for m in self.migrations for s in m)]:
            if not isinstance(statement, str) and set(statement) != set(DIALECTS):
                raise TypeError(f"{self.what}: a statement per dialect needs exactly {', '.join(DIALECTS)}")

    @property
    def version(self) -> int:
        return 1 + len(self.migrations)

    def steps(self, found: int, has_tables: bool, where: str, dialect: str = "sqlite") -> list[str]:
        """The statements, in `dialect`'s SQL, that bring a log at version `found` to `version`:
        all of them for a new log (so every new log walks the same path as an upgraded one), none
        when current."""
        if dialect not in DIALECTS:
            raise ValueError(f"unknown SQL dialect {dialect!r}: one of {', '.join(DIALECTS)}")
        if found > self.version:
            raise LogError(
                f"{where} is a {self.what} of schema version {found}, newer than this aicctv's {self.version}: "
                "upgrade aicctv, or point it at another file"
            )
        if found == 0:
            if not has_tables:
                todo = [*self.tables, *(s for m in self.migrations for s in m)]
                return [in_dialect(s, dialect) for s in todo]
            found = 1
        return [in_dialect(s, dialect) for m in self.migrations[found - 1 :] for s in m]


def in_dialect(statement: Statement, dialect: str) -> str:
    """The text of `statement` for `dialect`; a mapping lacking it is a bug in the schema."""
    return statement if isinstance(statement, str) else statement[dialect]


def connect_durable(path: Path, busy_timeout_s: float = 5.0) -> sqlite3.Connection:
    """A SQLite connection for a log that must survive crashes and power loss (edge and central):
    WAL, so readers (stats, export) never block the writer; synchronous=FULL, so a commit is on
    disk before we acknowledge anything, at an fsync per commit; autocommit mode, so every write
    is its own transaction unless grouped by `transaction()`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_s)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    except BaseException:
        # Closed now, not when garbage collected: the caller may move the file aside.
        conn.close()
        raise
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """All or nothing, even on kill -9. IMMEDIATE takes the write lock up front, so two writers
    queue instead of deadlocking."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def migrate_sqlite(conn: sqlite3.Connection, schema: Schema, where: str) -> int:
    """Bring an open SQLite log to `schema.version` in one transaction; the version it had."""
    with transaction(conn):
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        has_tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0] > 0
        for statement in schema.steps(found, has_tables, where, "sqlite"):
            conn.execute(statement)
        if found != schema.version:
            # PRAGMA takes no parameters; the version is our own integer.
            conn.execute(f"PRAGMA user_version = {int(schema.version)}")
    return found


def hourly_query(
    device: str | Sequence[str] | None = None,
    since: str | None = None,
    until: str | None = None,
    column: str = "record",
    limit: int | None = None,
) -> tuple[str, list[str]]:
    """The SELECT (with `?` placeholders) and parameters for hourly records of one device, of
    several (a site's: at least one) or all, hours in [since, until], oldest first, at most
    `limit` of them: one query for the edge log, the central log (SQLite and PostgreSQL share the
    `hourly` table's layout) and `aicctv stats`."""
    devices = [device] if isinstance(device, str) else list(device or ())
    where = "hour >= ? AND hour <= ?" + (f" AND device IN ({', '.join('?' * len(devices))})" if devices else "")
    # Hour strings sort by time, so these bounds are the whole range when none is given.
    params = [since or "", until or "9999", *devices]
    capped = "" if limit is None else f" LIMIT {int(limit)}"
    return f"SELECT {column} FROM hourly WHERE {where} ORDER BY hour, device{capped}", params


def decode_record(text: str) -> HourlyRecord:
    return cast(HourlyRecord, decode(HourlyRecord, text.encode()))

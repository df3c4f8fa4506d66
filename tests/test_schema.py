"""Logs survive upgrades: each carries a schema version, an older one migrates in one transaction,
a newer or corrupt one is refused with one line and nothing written. The fixtures under
tests/fixtures/logs were written by release 0.1.0, which had no schema version."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from central import store as central_store
from central.store import SQLiteStore, open_store
from edge.daemon import store as edge_store
from edge.daemon.store import EdgeStore
from edge.wire.sqlite import LogError, Schema, connect_durable, in_dialect, migrate_sqlite

FIXTURES = Path(__file__).parent / "fixtures" / "logs"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA user_version").fetchone()[0]


@pytest.fixture
def released(tmp_path) -> dict[str, Path]:
    return {kind: Path(shutil.copy(FIXTURES / f"{kind}-v0.1.0.db", tmp_path)) for kind in ("edge", "central")}


def test_new_logs_carry_the_current_version(tmp_path):
    EdgeStore(tmp_path / "edge.db").close()
    SQLiteStore(tmp_path / "central.db").close()
    assert user_version(tmp_path / "edge.db") == edge_store.SCHEMA.version
    assert user_version(tmp_path / "central.db") == central_store.SCHEMA.version


def test_a_released_log_opens_with_everything_kept(released):
    with EdgeStore(released["edge"]) as store:
        assert [r.hour for r in store.hourly()] == ["2026-01-05T09:00:00Z", "2026-01-05T10:00:00Z"]
        assert [r.hour for r in store.undelivered()] == ["2026-01-05T10:00:00Z"]
        assert store.visits()[0]["age_band"] == "30-39" and store.load_state("tally") == {"open": []}
    central = open_store(released["central"])
    assert [r.visitors for r in central.hourly()] == [3, 0] and central.statuses() == {"shop-1": "online"}
    central.close()
    assert user_version(released["edge"]) == edge_store.SCHEMA.version
    assert user_version(released["central"]) == central_store.SCHEMA.version


def test_the_next_schema_change_migrates_a_released_log(released):
    """The path the next real change takes (the unknown-visitor column is the first): a migration
    appended to the schema runs once, in one transaction, on a log written by the release."""
    column = "ALTER TABLE visits ADD COLUMN too_small INTEGER NOT NULL DEFAULT 0"
    nxt = replace(edge_store.SCHEMA, migrations=(*edge_store.SCHEMA.migrations, (column,)))
    conn = connect_durable(released["edge"])
    assert migrate_sqlite(conn, nxt, "edge.db") == 0
    assert conn.execute("SELECT too_small, age_band FROM visits").fetchall() == [(0, "30-39")]
    assert conn.execute("PRAGMA user_version").fetchone()[0] == nxt.version
    assert migrate_sqlite(conn, nxt, "edge.db") == nxt.version  # nothing more to do the second time
    conn.close()


def test_a_failing_migration_leaves_the_log_as_it_was(released):
    broken = replace(
        edge_store.SCHEMA,
        migrations=(
            *edge_store.SCHEMA.migrations,
            ("ALTER TABLE visits ADD COLUMN fine INTEGER", "ALTER TABLE no_such_table ADD COLUMN x INTEGER"),
        ),
    )
    conn = connect_durable(released["edge"])
    with pytest.raises(sqlite3.OperationalError):
        migrate_sqlite(conn, broken, "edge.db")
    columns = [row[1] for row in conn.execute("PRAGMA table_info(visits)")]
    assert "fine" not in columns and conn.execute("PRAGMA user_version").fetchone()[0] == 0
    conn.close()


@pytest.mark.parametrize("kind", ["edge", "central"])
def test_a_log_from_a_newer_release_is_refused_untouched(released, kind):
    path = released[kind]
    open_store(path).close() if kind == "central" else EdgeStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    before = digest(path)
    with pytest.raises(LogError, match=r"schema version 99, newer than this aicctv's \d+: upgrade aicctv"):
        open_store(path) if kind == "central" else EdgeStore(path)
    assert digest(path) == before


def test_a_corrupt_log_is_one_line_and_exit_2_not_a_traceback(tmp_path):
    bad = tmp_path / "edge.db"
    bad.write_bytes(b"this is not a database" * 100)
    done = subprocess.run(
        [sys.executable, "-m", "edge.cli.main", "edge", "export", "--db", str(bad)], capture_output=True, text=True
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and "is not a readable SQLite log" in done.stderr, done.stderr


def test_postgres_logs_carry_a_version_and_refuse_a_newer_one(postgres_url):
    import psycopg

    open_store(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM aicctv_schema").fetchall() == [(central_store.SCHEMA.version,)]
        conn.execute("UPDATE aicctv_schema SET version = 99")
    with pytest.raises(LogError, match="newer than this aicctv"):
        open_store(postgres_url)


# What the release-0.1.0 central fixture holds, as the hourly_counts view (schema version 2) shows it.
FIXTURE_COUNTS = [
    {
        "time_s": 1767603600,  # 2026-01-05T09:00:00Z
        "device": "shop-1",
        "visitors": 3,
        "female_30_39": 2,
        "male_20_29": 1,
        "female": 2,
        "male": 1,
        "unclassified": 0,
        "coverage": 1.0,
        "mean_dwell_s": 40.5,
        "frames": 90000,
    },
    {
        "time_s": 1767607200,
        "device": "shop-1",
        "visitors": 0,
        "female": 0,
        "male": 0,
        "unclassified": 0,
        "coverage": 0.0,
        "mean_dwell_s": 0.0,
        "frames": 0,
    },
]
BAND_COLUMNS = [
    f"{gender}_{band}"
    for gender in ("female", "male", "unknown")  # unknown_*: version 4
    for band in ("0_9", "10_19", "20_29", "30_39", "40_49", "50_59", "60_plus")
]


def view_rows(cursor, sql: str) -> list[dict]:
    described = cursor.execute(sql)
    names = [column[0] for column in described.description]
    return [dict(zip(names, row, strict=True)) for row in described.fetchall()]


def expected_counts(row: dict) -> dict:
    return {**dict.fromkeys(BAND_COLUMNS, 0), **row}


def test_schema_steps_per_dialect_and_from_each_version():
    both = {"sqlite": "CREATE VIEW v AS SELECT 1", "postgresql": "CREATE VIEW v AS SELECT 2"}
    schema = Schema("log", ("CREATE TABLE t (x INTEGER)",), (("ALTER TABLE t ADD y INTEGER",), (both,)))
    assert schema.version == 3
    assert schema.steps(0, False, "x") == ["CREATE TABLE t (x INTEGER)", "ALTER TABLE t ADD y INTEGER", both["sqlite"]]
    assert schema.steps(0, True, "x", "postgresql") == ["ALTER TABLE t ADD y INTEGER", both["postgresql"]]
    assert schema.steps(2, True, "x", "postgresql") == [both["postgresql"]]
    assert schema.steps(3, True, "x") == []
    with pytest.raises(ValueError, match="unknown SQL dialect 'mysql'"):
        schema.steps(1, True, "x", "mysql")
    with pytest.raises(TypeError, match="a tuple of statements"):
        Schema("log", (), (both,))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="exactly sqlite, postgresql"):
        Schema("log", (), (({"sqlite": "SELECT 1"},),))


def test_a_released_central_log_gains_the_grafana_view(released):
    """Migration 2, the first real schema change: the release's log is brought to version 2 on
    open, and hourly_counts shows its records as plain numbers, one column per gender and band."""
    assert central_store.SCHEMA.version >= 2
    open_store(released["central"]).close()
    assert user_version(released["central"]) == central_store.SCHEMA.version
    with sqlite3.connect(released["central"]) as conn:
        rows = view_rows(conn.cursor(), "SELECT * FROM hourly_counts ORDER BY time_s")
    assert [row.pop("hour_start") for row in rows] == ["2026-01-05T09:00:00Z", "2026-01-05T10:00:00Z"]
    assert rows == [expected_counts(row) for row in FIXTURE_COUNTS]
    assert all(isinstance(row[column], int) for row in rows for column in [*BAND_COLUMNS, "time_s", "unclassified"])


def test_the_grafana_view_in_postgresql(released, postgres_url):
    """A PostgreSQL log of version 1 gains the view too; the same records read the same through it,
    with a timestamptz; visitors whose gender or age was not told are counted as unclassified."""
    import psycopg

    records = open_store(released["central"]).hourly()
    ages = {"0-9": 1, "10-19": 0, "20-29": 0, "30-39": 0, "40-49": 0, "50-59": 0, "60+": 0}
    # 3 classified, 2 not, 1 of those with an age
    untold = replace(records[0], hour="2026-01-05T11:00:00Z", visitors=5, unknown=2, unknown_bands=ages)
    open_store(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:  # as a release-0.1.0 central left it
        conn.execute("DROP VIEW hourly_counts")
        conn.execute("DROP TABLE settings")  # version 3's
        conn.execute("UPDATE aicctv_schema SET version = 1")
    store = open_store(postgres_url)
    store.write(central_store.Batch(hourly=[*records, untold]))
    store.close()
    with psycopg.connect(postgres_url) as conn:
        rows = view_rows(conn.cursor(), "SELECT * FROM hourly_counts ORDER BY hour_start")
    assert [row.pop("hour_start").isoformat() for row in rows] == [
        "2026-01-05T09:00:00+00:00",
        "2026-01-05T10:00:00+00:00",
        "2026-01-05T11:00:00+00:00",
    ]
    third = {**FIXTURE_COUNTS[0], "time_s": 1767610800, "visitors": 5, "unclassified": 2, "unknown_0_9": 1}
    assert rows == [expected_counts(row) for row in [*FIXTURE_COUNTS, third]]


def test_released_migrations_never_change():
    """A migration, once released, is never edited: logs already past it would not get the change.
    Append a new one instead (and its digest here)."""
    released = ["798b27a92e9cfa2c"]  # 2: hourly_counts
    digests = [
        hashlib.sha256(repr([in_dialect(s, d) for s in m for d in ("sqlite", "postgresql")]).encode()).hexdigest()[:16]
        for m in central_store.SCHEMA.migrations
    ]
    assert digests[: len(released)] == released, "a released migration of the central log was edited: append one"

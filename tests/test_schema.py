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
from edge.wire.sqlite import LogError, connect_durable, migrate_sqlite

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
    assert done.stderr.count("\n") == 1 and "not a readable edge log" in done.stderr, done.stderr


def test_postgres_logs_carry_a_version_and_refuse_a_newer_one(postgres_url):
    import psycopg

    open_store(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM aicctv_schema").fetchall() == [(central_store.SCHEMA.version,)]
        conn.execute("UPDATE aicctv_schema SET version = 99")
    with pytest.raises(LogError, match="newer than this aicctv"):
        open_store(postgres_url)

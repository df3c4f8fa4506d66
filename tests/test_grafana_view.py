"""The example Grafana dashboard (deploy/grafana) runs its SQL, as Grafana would after expanding its
macros, against the hourly_counts view of both databases: one text serves PostgreSQL and SQLite."""

from __future__ import annotations

import json
import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from central.store import Batch, open_store

ROOT = Path(__file__).parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "aicctv-visitors.json"
FIXTURE = Path(__file__).parent / "fixtures" / "logs" / "central-v0.1.0.db"
# What Grafana puts in place of the macros and the device variable (all devices, all time).
EXPANDED = {
    "$__from": "1767225600000",  # 2026-01-01, in milliseconds
    "$__to": "4102444800000",
    "${device:singlequote}": "'shop-1', 'lobby-2'",
}


def queries() -> dict[str, str]:
    """Each panel's SQL by title, with the macros expanded; both plugins' fields hold the same text."""
    found = {}
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        (target,) = panel["targets"]
        assert target["rawSql"] == target["queryText"] == target["rawQueryText"]
        sql = target["rawSql"]
        for macro, value in EXPANDED.items():
            sql = sql.replace(macro, value)
        assert "$" not in sql, sql
        found[panel["title"]] = sql
    return found


def test_the_dashboard_declares_its_data_source_as_a_variable():
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    panels = dashboard["panels"]
    assert {p["type"] for p in panels} >= {"timeseries", "bargauge"}
    assert all(t["datasource"] == {"uid": "${datasource}"} for p in panels for t in [p, *p["targets"]])


def results(cursor, sql: str) -> list[tuple]:
    return [tuple(float(v) if isinstance(v, int | float) else v for v in row) for row in cursor.execute(sql)]


EXPECTED = {
    # time, female, male, unclassified: the fixture's two hours, and a third of 5 visitors, 3 told
    # and 1 of the other 2 with an age (0-9) but no gender.
    "Visitors per hour, by gender": [
        (1767603600.0, 2.0, 1.0, 0.0),
        (1767607200.0, 0.0, 0.0, 0.0),
        (1767610800.0, 2.0, 1.0, 2.0),
    ],
    "Visitors by age band": [(1.0, 0.0, 2.0, 4.0, 0.0, 0.0, 0.0)],
    "Per device": [("shop-1", 8.0, 4.0, 2.0, 2.0, 2 / 3)],
}


@pytest.fixture
def records(tmp_path):
    store = open_store(shutil.copy(FIXTURE, tmp_path))
    released = store.hourly()
    store.close()
    ages = {"0-9": 1, "10-19": 0, "20-29": 0, "30-39": 0, "40-49": 0, "50-59": 0, "60+": 0}
    third = replace(released[0], hour="2026-01-05T11:00:00Z", visitors=5, unknown=2, unknown_bands=ages)
    return [*released, third]


def test_the_dashboard_queries_on_sqlite(tmp_path, records):
    store = open_store(tmp_path / "central.db")
    store.write(Batch(hourly=records))
    store.close()
    with sqlite3.connect(tmp_path / "central.db") as conn:
        got = {title: results(conn.cursor(), sql) for title, sql in queries().items()}
    assert got == EXPECTED


def test_the_dashboard_queries_on_postgresql(postgres_url, records):
    import psycopg

    store = open_store(postgres_url)
    store.write(Batch(hourly=records))
    store.close()
    with psycopg.connect(postgres_url) as conn:
        got = {title: results(conn.cursor(), sql) for title, sql in queries().items()}
    assert got == EXPECTED

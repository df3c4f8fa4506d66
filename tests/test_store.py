from dataclasses import replace

from edge.daemon.store import EdgeStore
from edge.vision.analyzer import Visitor
from edge.wire.contract import HourlyRecord, empty_counts


def record(hour: str = "2026-01-05T09:00:00Z", revision: int = 1, visitors: int = 3) -> HourlyRecord:
    return HourlyRecord("shop-1", hour, visitors, empty_counts(), 4.0, 100, 0.5, revision)


def test_wal_mode_and_persistence(tmp_path):
    store = EdgeStore(tmp_path / "edge.db")
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.save_hourly(record())
    store.add_visit("shop-1", Visitor(1, 10.0, 12.5, 40, 0.8, 33.0, 3))
    store.close()
    again = EdgeStore(tmp_path / "edge.db")
    assert again.undelivered() == [record()]
    assert again.visits()[0]["gender"] == "female" and again.visits()[0]["age_band"] == "30-39"
    assert again.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_undelivered_until_acknowledged_oldest_first(tmp_path):
    store = EdgeStore(tmp_path / "edge.db")
    later, earlier = record("2026-01-05T10:00:00Z"), record("2026-01-05T09:00:00Z")
    store.save_hourly(later)
    store.save_hourly(earlier)
    assert store.undelivered() == [earlier, later]
    store.mark_delivered(earlier)
    assert store.undelivered() == [later]


def test_a_newer_revision_replaces_and_an_older_one_is_ignored(tmp_path):
    store = EdgeStore(tmp_path / "edge.db")
    first, second = record(revision=1), record(revision=2, visitors=4)
    assert store.save_hourly(first)
    store.mark_delivered(first)
    assert store.save_hourly(second)
    assert store.undelivered() == [second]
    assert not store.save_hourly(first)  # a stale revision arriving late changes nothing
    store.mark_delivered(first)  # an acknowledgement of the old revision leaves the new one pending
    assert store.undelivered() == [second]
    assert store.hourly() == [second]


def test_hour_range(tmp_path):
    store = EdgeStore(tmp_path / "edge.db")
    for h in ("08", "09", "10", "11"):
        store.save_hourly(replace(record(), hour=f"2026-01-05T{h}:00:00Z"))
    hours = [r.hour[11:13] for r in store.hourly(since="2026-01-05T09:00:00Z", until="2026-01-05T10:00:00Z")]
    assert hours == ["09", "10"]


def test_prune_keeps_the_newest_span_of_visits_and_events(tmp_path):
    from edge.daemon.store import EdgeStore
    from edge.vision.analyzer import Visitor

    store = EdgeStore(tmp_path / "edge.db")
    day = 86400.0
    for first_seen in (0.0, 10 * day, 400 * day):  # replayed footage: times need not be recent
        store.add_visit("shop-1", Visitor(1, first_seen, first_seen + 5, 10, 0.9, 30.0, 2))
    store.add_event("started", at=0.0)
    store.add_event("started", at=380 * day)
    assert store.prune(keep_s=365 * day) == 3  # the visits of day 0 and 10, the event of day 0
    assert [v["first_seen"] for v in store.visits()] == [400 * day]
    assert [t for t, _, _ in store.events()] == [380 * day]
    store.close()

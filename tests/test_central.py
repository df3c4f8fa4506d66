"""The central subscriber against a real Mosquitto broker and real SQLite and PostgreSQL logs."""

from __future__ import annotations

import csv
import io
import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

import central.subscriber as subscriber_module
from bench.services import Listener, wait_until
from central.config import CentralConfig
from central.store import Batch, HeldHours, open_store
from central.subscriber import MAX_QUEUED_BYTES, Inbound, InboundQueue, Subscriber
from edge.cli.main import main
from edge.daemon.store import EdgeStore
from edge.wire.config import ConfigError, load
from edge.wire.contract import HourlyRecord, LiveCounts, ResyncRequest, decode, empty_counts, encode
from edge.wire.export import CSV_FIELDS, LOCAL_CSV_FIELDS
from tests.test_systemd import NotifySocket

HOUR = "2026-01-05T09:00:00Z"
NOW = round(time.time())  # live counts must carry a plausible time


def record(device: str = "cam-1", hour: str = HOUR, revision: int = 1, visitors: int = 3) -> HourlyRecord:
    counts = empty_counts()
    counts["female"]["20-29"] = min(visitors, 2)
    return HourlyRecord(device, hour, visitors, counts, 12.5, 9000, 1.0, revision)


def hour(n: int) -> str:
    """The n-th hour after HOUR."""
    return f"2026-01-{5 + (9 + n) // 24:02d}T{(9 + n) % 24:02d}:00:00Z"


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path) -> str:
    """A central log location: a SQLite file, or a fresh PostgreSQL database."""
    return str(tmp_path / "central.db") if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def central_config(broker_url: str, db: str, **settings: object) -> CentralConfig:
    overrides = {"mqtt.broker": broker_url, "storage.db": db} | {k.replace("__", "."): v for k, v in settings.items()}
    return load(CentralConfig, None, overrides, environ={})


@contextmanager
def running(config: CentralConfig) -> Iterator[Subscriber]:
    """A subscriber on its own thread, subscribed when this yields, stopped afterwards."""
    subscriber = Subscriber(config)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            subscriber.run()
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert subscriber.subscribed.wait(10), "no SUBACK"
        yield subscriber
    finally:
        subscriber.stop()
        thread.join(10)
    assert not thread.is_alive() and not failures, failures


class Publisher:
    """A plain MQTT client standing in for edge devices."""

    def __init__(self, url: str) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
        self.client.max_inflight_messages_set(1000)
        self.client.connect("127.0.0.1", int(url.rsplit(":", 1)[1]))
        self.client.loop_start()

    def send(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(10)

    def hourly(self, *records: HourlyRecord) -> None:
        for r in records:
            self.send(f"aicctv/{r.device}/hourly", encode(r))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(broker) -> Iterator[Publisher]:
    pub = Publisher(broker.url)
    yield pub
    pub.close()


def stored(db: str) -> dict[tuple[str, str], HourlyRecord]:
    store = open_store(db)
    try:
        return {(r.device, r.hour): r for r in store.hourly()}
    finally:
        store.close()


def counters(db: str) -> dict[str, int]:
    store = open_store(db)
    try:
        return store.counters()
    finally:
        store.close()


def test_store_keeps_one_row_per_device_hour_at_its_highest_revision(db):
    store = open_store(db)
    try:
        # Within one batch and across batches, in any order; a repeat or an older revision is ignored.
        assert store.write(Batch(hourly=[record(revision=2), record(revision=5), record(revision=3)])) == 1
        assert store.write(Batch(hourly=[record(revision=4), record(revision=5, visitors=9)])) == 0
        assert store.write(Batch(hourly=[record(revision=6, visitors=7), record("cam-2")])) == 2
        assert [(r.device, r.revision, r.visitors) for r in store.hourly()] == [("cam-1", 6, 7), ("cam-2", 1, 3)]
        assert store.hourly(device="cam-2") == [record("cam-2")]
        assert store.hourly(since=hour(1)) == []
    finally:
        store.close()


def test_export_matches_the_edge_export_line_for_line(db, tmp_path, capsys):
    records = [record(hour=hour(n), revision=n + 1, visitors=n) for n in range(3)]
    store = open_store(db)
    try:
        store.write(Batch(hourly=[*records, record("cam-2", hour(1))]))
    finally:
        store.close()
    edge = EdgeStore(tmp_path / "edge.db")
    for r in records:
        edge.save_hourly(r)
    edge.close()

    assert main(["edge", "export", "--db", str(tmp_path / "edge.db"), "--format", "json"]) == 0
    edge_lines = capsys.readouterr().out.splitlines()
    assert main(["central", "export", "--db", db, "--device", "cam-1", "--format", "json"]) == 0
    central_lines = capsys.readouterr().out.splitlines()
    assert central_lines == edge_lines
    assert [json.loads(line) for line in central_lines] == [json.loads(encode(r)) for r in records]
    assert central_lines[0] == encode(records[0]).decode()

    assert main(["central", "export", "--db", db, "--since", hour(1), "--until", hour(1), "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("\ufeff")  # so a spreadsheet opens it as UTF-8
    rows = list(csv.DictReader(io.StringIO(out.removeprefix("\ufeff"))))
    assert tuple(rows[0]) == LOCAL_CSV_FIELDS
    assert "female_20-29" in CSV_FIELDS
    assert [(r["device"], r["hour"], r["revision"], r["female_20-29"]) for r in rows] == [
        ("cam-1", hour(1), "2", "1"),
        ("cam-2", hour(1), "1", "2"),
    ]


def test_ingests_hourly_live_and_status(db, broker, publisher):
    with running(central_config(broker.url, db)):
        publisher.send("aicctv/cam-1/status", b"online", retain=True)
        publisher.hourly(record(revision=1), record(revision=3), record(revision=2), record(revision=3))
        publisher.hourly(record("cam-2", hour(1)))
        for t in (NOW + 10, NOW + 12, NOW + 11):
            publisher.send("aicctv/cam-1/live", encode(LiveCounts("cam-1", t, 2, 12)), qos=0)
        wait_until(lambda: counters(db).get("received.live", 0) == 3, what="live counts")
        wait_until(lambda: counters(db).get("received.hourly", 0) == 5, what="hourly records")
    assert stored(db) == {("cam-1", HOUR): record(revision=3), ("cam-2", hour(1)): record("cam-2", hour(1))}
    store = open_store(db)
    try:
        live, received = store.live()["cam-1"]
        assert live == LiveCounts("cam-1", NOW + 12, 2, 12) and received > 0
        assert store.statuses() == {"cam-1": "online"}
    finally:
        store.close()


def test_rejects_bad_payloads_counts_them_and_keeps_working(db, broker, publisher):
    good = encode(record())
    bad = {
        "oversized": ("cam-1/hourly", b"{" + b" " * 20_000 + b"}"),
        "malformed": ("cam-1/hourly", good[:-5]),
        "schema": ("cam-1/hourly", good.replace(b'"schema":2', b'"schema":9')),
        "device-mismatch": ("cam-2/hourly", good),
        "invalid": ("cam-1/live", json.dumps({"schema": 1, "device": "cam-1"}).encode()),
        "topic": ("cam 1/hourly", good),
    }
    with running(central_config(broker.url, db)) as subscriber:
        for name, payload in bad.values():
            publisher.send(f"aicctv/{name}", payload)
        publisher.send("aicctv/cam-1/status", b"rebooting")
        publisher.hourly(record(revision=2))
        wait_until(lambda: ("cam-1", HOUR) in stored(db), what="the good record after the bad ones")
        wait_until(lambda: subscriber.totals.rejected == len(bad) + 1, what="the rejections counted")
    assert stored(db) == {("cam-1", HOUR): record(revision=2)}
    assert {k: v for k, v in counters(db).items() if k.startswith("rejected.")} == {
        "rejected.oversized": 1,
        "rejected.malformed": 1,
        "rejected.schema": 1,
        "rejected.device-mismatch": 1,
        "rejected.invalid": 2,
        "rejected.topic": 1,
    }


def test_persistent_session_keeps_records_while_central_is_down(broker, publisher, tmp_path):
    db = str(tmp_path / "central.db")
    config = central_config(broker.url, db)
    with running(config):
        publisher.hourly(record(hour=hour(0)))
        wait_until(lambda: len(stored(db)) == 1, what="the first record")
    publisher.hourly(*(record(hour=hour(n)) for n in range(1, 30)))
    # The broker restarts too while central is away: it saves sessions and queues when stopped.
    broker.stop()
    broker.start()
    with running(config):
        wait_until(lambda: len(stored(db)) == 30, what="records published while central was down")


def test_shared_subscription_stores_each_record_once(db, broker, publisher):
    configs = [central_config(broker.url, db, mqtt__client_id=f"central-{n}") for n in (1, 2)]
    records = [record(f"cam-{d}", hour(h)) for d in range(10) for h in range(20)]
    with running(configs[0]) as first, running(configs[1]) as second:
        publisher.hourly(*records)
        wait_until(lambda: len(stored(db)) == len(records), what="every record")
        wait_until(lambda: first.totals.hourly + second.totals.hourly == len(records), what="all deliveries")
    # The broker gave each record to one instance only, and both did part of the work.
    assert first.totals.hourly > 0 and second.totals.hourly > 0
    assert first.totals.hourly + second.totals.hourly == len(records) == counters(db)["received.hourly"]
    assert stored(db) == {(r.device, r.hour): r for r in records}


def test_a_missing_hour_is_requested_again(broker, tmp_path):
    db = str(tmp_path / "central.db")
    store = open_store(db)
    try:
        # Written before central starts, so its first check sees the whole picture.
        hourly = [record(device, hour(n)) for device in ("cam-1", "cam-2", "cam-3", "cam-4") for n in (0, 1, 4, 6)]
        hourly += [record("cam-4", hour(n)) for n in (2, 3, 5)]
        store.write(Batch(hourly=hourly, statuses={"cam-1": "online", "cam-2": "offline", "cam-4": "online"}))
    finally:
        store.close()
    listener = Listener(broker.url, "aicctv/+/cmd/resync").connect()
    config = central_config(broker.url, db, resync__check_interval_s=0.1, resync__min_interval_s=60)
    with running(config):
        wait_until(lambda: len(listener.messages) >= 2, what="resync requests")
        time.sleep(0.5)  # several more checks: the rate limit holds them back
    listener.disconnect()
    requests = sorted((name, decode(ResyncRequest, payload)) for name, payload, _ in listener.messages)
    # cam-2 is offline; cam-3 never sent a status, so it is not known to be offline; cam-4 is whole.
    assert requests == [
        ("aicctv/cam-1/cmd/resync", ResyncRequest(hour(2), hour(5))),
        ("aicctv/cam-3/cmd/resync", ResyncRequest(hour(2), hour(5))),
    ]
    # Counted for the Devices page and /metrics (it was documented, but never written).
    resyncs = {name: n for name, n in counters(db).items() if name.startswith("resync.")}
    assert resyncs == {"resync.cam-1": 1, "resync.cam-3": 1}


def test_hours_overdue_from_a_running_device():
    last = 1_000_000.0  # when the device's latest hour, hour(2), arrived
    held = HeldHours(None, hour(2), hourly_arrived=last, live_arrived=None)

    def overdue(now: float, live_age: float | None = 1.0) -> tuple[str, str] | None:
        live = None if live_age is None else now - live_age
        return replace(held, live_arrived=live).overdue(now, after_s=600)

    assert overdue(last + 3600 + 599) is None  # the next hour may still be on its way
    assert overdue(last + 3600 + 601) == (hour(3), hour(3))
    assert overdue(last + 3 * 3600 + 601) == (hour(3), hour(5))
    assert overdue(last + 3 * 3600 + 601, live_age=None) is None  # never seen running
    assert overdue(last + 3 * 3600 + 601, live_age=600) is None  # not running now: nothing due


def test_held_hours_of_devices_not_offline(db):
    store = open_store(db)
    try:
        store.write(
            Batch(
                hourly=[record("cam-1", hour(n)) for n in (0, 1, 4)] + [record("cam-2"), record("cam-3")],
                live=[LiveCounts("cam-1", 1.0, 0, 0)],
                statuses={"cam-3": "offline"},
            )
        )
        held = store.held_hours()
    finally:
        store.close()
    assert sorted(held) == ["cam-1", "cam-2"]
    assert (held["cam-1"].missing, held["cam-1"].latest) == ((hour(2), hour(3)), hour(4))
    assert held["cam-1"].live_arrived == pytest.approx(held["cam-1"].hourly_arrived, abs=5)
    assert (held["cam-2"].missing, held["cam-2"].live_arrived) == (None, None)


def test_a_running_device_with_an_overdue_hour_is_asked_once(broker, tmp_path):
    db = tmp_path / "central.db"
    devices = ("cam-5", "cam-6", "cam-7")
    store = open_store(str(db))
    try:
        store.write(
            Batch(
                hourly=[record(device, hour(n)) for device in devices for n in range(3)],
                live=[LiveCounts(device, time.time(), 1, 0) for device in devices],
                statuses=dict.fromkeys(devices, "online"),
            )
        )
    finally:
        store.close()
    with sqlite3.connect(db) as conn:
        # cam-5 and cam-6 delivered their latest hour 2 h 10 min ago; cam-6 stopped sending
        # live counts too (switched off without its last will reaching the broker yet).
        conn.execute("UPDATE hourly SET received = received - 7800 WHERE device IN ('cam-5', 'cam-6')")
        conn.execute("UPDATE live SET received = received - 900 WHERE device = 'cam-6'")
    listener = Listener(broker.url, "aicctv/+/cmd/resync").connect()
    with running(central_config(broker.url, str(db), resync__check_interval_s=0.1)):
        wait_until(lambda: listener.messages, what="a resync request")
        time.sleep(0.5)  # several more checks: one request per latest hour
    listener.disconnect()
    requests = [(name, decode(ResyncRequest, payload)) for name, payload, _ in listener.messages]
    assert requests == [("aicctv/cam-5/cmd/resync", ResyncRequest(hour(3), hour(4)))]


def test_mqtt_3_1_1_and_unshared_subscriptions(tmp_path):
    db = str(tmp_path / "central.db")
    plain = Subscriber(central_config("mqtt://127.0.0.1:1", db, mqtt__version=4))
    shared = Subscriber(central_config("mqtt://127.0.0.1:1", db, mqtt__prefix="site/a"))
    assert [name for name, _ in plain.filters] == [
        "aicctv/+/hourly",
        "aicctv/+/live",
        "aicctv/+/status",
        "aicctv/+/settings",
    ]
    assert [name for name, _ in shared.filters] == [
        "$share/aicctv-central/site/a/+/hourly",
        "$share/aicctv-central/site/a/+/live",
        "site/a/+/status",
        "site/a/+/settings",  # retained: never shared
    ]
    environ = {"AICCTV_MQTT_SHARED_GROUP": "", "AICCTV_STORAGE_BATCH_MAX": "50"}
    config = load(CentralConfig, None, environ=environ)
    assert not config.shared and config.storage.batch_max == 50
    with pytest.raises(ConfigError, match=r"mqtt\.shared_group"):
        load(CentralConfig, None, {"mqtt.shared_group": "a/b"}, environ={})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["central", "run", "--broker", "http://broker"], "error: mqtt.broker:"),
        (["central", "run", "--set", "storage.batch_max=0"], "error: storage.batch_max = 0:"),
        (["central", "export", "--db", "/nonexistent/central.db"], "error: no central log at"),
    ],
)
def test_usage_errors_exit_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_database_connection_lost_is_retried_without_losing_messages(broker, publisher, postgres_url, caplog):
    import psycopg

    with running(central_config(broker.url, postgres_url)):
        publisher.hourly(record(hour=hour(0)))
        wait_until(lambda: len(stored(postgres_url)) == 1, what="the first record")
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        publisher.hourly(*(record(hour=hour(n)) for n in range(1, 5)))
        wait_until(lambda: len(stored(postgres_url)) == 5, what="records after the reconnection")
    assert "database write failed, retrying" in caplog.text


def test_tells_systemd_ready_once_subscribed_and_pings_while_storing(broker, publisher, tmp_path, monkeypatch):
    notify = NotifySocket(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify.path))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # a ping every 0.1 s
    monkeypatch.setattr(subscriber_module, "STATS_EVERY_S", 0.5)
    db = tmp_path / "central.db"
    try:
        with running(central_config(broker.url, str(db))) as subscriber:
            wait_until(lambda: notify.times("READY=1"), what="READY=1")
            assert subscriber.subscribed.is_set()
            wait_until(lambda: any(m.startswith("STATUS=") and "msg/s" in m for _, m in notify.messages), what="rates")
            wait_until(lambda: len(notify.times("WATCHDOG=1")) >= 3, what="watchdog pings")
            # A database that stops answering stops the ingest loop, and with it the pings.
            with sqlite3.connect(db, isolation_level=None) as blocker:
                blocker.execute("BEGIN EXCLUSIVE")
                publisher.hourly(record())
                wait_until(lambda: time.monotonic() - notify.times("WATCHDOG=1")[-1] > 1.0, what="pings to stop")
                stopped_at = time.monotonic()
                blocker.execute("ROLLBACK")
            wait_until(lambda: ("cam-1", HOUR) in stored(str(db)), what="the record once the database answers")
            wait_until(lambda: notify.times("WATCHDOG=1")[-1] > stopped_at, what="pings to resume")
    finally:
        notify.close()
    assert notify.times("STOPPING=1")
    assert len(notify.times("READY=1")) == 1


def inbound(payload: bytes, qos: int) -> Inbound:
    return Inbound("aicctv/cam-1/live", payload, 0, qos, 1, time.monotonic())


def test_inbound_queue_is_bounded_in_bytes_dropping_qos_0_and_holding_back_qos_1():
    q = InboundQueue(max_items=100, max_bytes=40_000)
    big = inbound(b"x" * 16_000, qos=0)
    assert q.put(big) and q.put(big)
    assert not q.put(big) and q.dropped == 1  # a third would pass the budget
    assert q.put(inbound(b"x" * 100, qos=0))  # a small one still fits
    waiting = threading.Thread(target=q.put, args=(inbound(b"y" * 16_000, qos=1),))
    waiting.start()
    waiting.join(0.2)
    assert waiting.is_alive(), "a QoS 1 message waits for room"
    assert q.get(0) is big
    waiting.join(10)
    assert not waiting.is_alive() and q.bytes == 16_000 + 100 + 16_000 + 3 * len("aicctv/cam-1/live")
    blocked = threading.Thread(target=q.put, args=(inbound(b"z" * 16_000, qos=1),))
    blocked.start()
    q.close()  # stopping: the waiting message stays unacknowledged with the broker
    blocked.join(10)
    assert not blocked.is_alive() and q.dropped == 1
    with pytest.raises(queue.Empty):
        InboundQueue(1, 1).get(0)


def test_oversized_payloads_are_cut_before_they_queue(broker, publisher, tmp_path):
    """300 QoS 0 payloads of 1 MB once took central from 132 to 444 MB (resident), each held
    whole in the inbound queue until rejected. Now at most MAX_PAYLOAD_BYTES + 1 of each waits,
    within the queue's byte budget."""
    notify, db = NotifySocket(tmp_path / "notify"), str(tmp_path / "central.db")
    command = [sys.executable, "-m", "edge.cli.main", "central", "run", "--broker", broker.url, "--db", db]
    central = subprocess.Popen(command, env={**os.environ, "NOTIFY_SOCKET": str(notify.path)})

    def peak_mb() -> float:
        with open(f"/proc/{central.pid}/status") as status:
            return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))

    try:
        wait_until(lambda: notify.times("READY=1") or central.poll() is not None, 60, "READY=1")
        publisher.hourly(record("warm-up"))  # the first batch's allocations are not the queue's
        wait_until(lambda: ("warm-up", HOUR) in stored(db), what="the first record")
        before = peak_mb()
        for _ in range(300):
            publisher.client.publish("aicctv/cam-1/live", b"[" + b" " * 1024 * 1024 + b"]", qos=0)
        # Queued after the 300 on the same connection, so stored after they were handled.
        publisher.hourly(record("after"))
        wait_until(lambda: ("after", HOUR) in stored(db), 120, "the record after the 1 MB payloads")
        assert central.poll() is None
        grown = peak_mb() - before
        assert grown < MAX_QUEUED_BYTES / 2**20 + 16, f"peak resident memory grew by {grown:.0f} MB"
        handled = counters(db)
        assert handled.get("rejected.oversized", 0) + handled.get("dropped.qos0", 0) == 300
        central.send_signal(signal.SIGTERM)
        assert central.wait(30) == 0
    finally:
        central.kill()
        notify.close()

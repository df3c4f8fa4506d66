"""End-to-end delivery: an edge record is delivered when central says it stored it, not when the
broker took it. A real Mosquitto (with persistence) and a real `aicctv central run` process; the
devices are the daemon's delivery path in-process: its EdgeStore and Uplink, driven as its
housekeeping drives them (replaying video would only slow this down)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import pytest

from bench.services import Listener, wait_until
from central.store import open_store
from edge.daemon.config import EdgeConfig
from edge.daemon.store import EdgeStore
from edge.daemon.uplink import Uplink
from edge.wire.config import load
from edge.wire.contract import (
    CHANNELS,
    ContractError,
    HourlyRecord,
    Receipt,
    decode,
    empty_counts,
    encode,
    parse_topic,
    topic,
)


def hour(n: int) -> str:
    return f"2026-01-05T{9 + n:02d}:00:00Z"


def record(device: str, n: int, revision: int = 1) -> HourlyRecord:
    counts = empty_counts()
    counts["male"]["30-39"] = n
    return HourlyRecord(device, hour(n), n + 1, counts, 10.0, 3600 * 25, 1.0, revision)


class Central:
    """`aicctv central run` as a child process, so it can be killed like a crashed server."""

    def __init__(self, broker_url: str, db: str, log: Path) -> None:
        self.command = [sys.executable, "-m", "edge.cli.main", "central", "run", "--broker", broker_url, "--db", db]
        self.db, self.log = db, log
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        size = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(self.command, stdout=out, stderr=out)
        wait_until(lambda: b"subscribed (session" in self.log.read_bytes()[size:], 60, "central subscribed")

    def kill(self) -> None:
        if self.process:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)

    def stored(self) -> set[tuple[str, str, int]]:
        store = open_store(self.db)
        try:
            return {(r.device, r.hour, r.revision) for r in store.hourly()}
        finally:
            store.close()


class Device:
    """One edge device's delivery path: its SQLite log and its MQTT uplink, run as the daemon
    runs them (commit, publish, on connection publish the backlog, confirm, resend)."""

    def __init__(self, name: str, broker_url: str, folder: Path, **mqtt: object) -> None:
        self.name = name
        overrides = {"device.id": name, "mqtt.broker": broker_url} | {f"mqtt.{k}": v for k, v in mqtt.items()}
        self.config = load(EdgeConfig, None, overrides, environ={})
        self.db = folder / f"{name}.db"

    def run(
        self, records: list[HourlyRecord], until_delivered: bool = False, seconds: float = 20.0, broker: bool = True
    ) -> int:
        """Commit `records`, then serve deliveries for `seconds` (or until nothing is undelivered)
        and stop cleanly; how many records are still undelivered. `broker`: it is up, so the
        seconds count from the connection."""
        store, uplink = EdgeStore(self.db), Uplink(self.config.mqtt, self.name)
        uplink.start()
        try:
            with store.transaction():
                kept = [r for r in records if store.save_hourly(r)]
            uplink.send(kept)
            if broker:
                wait_until(lambda: uplink.connected, 20, f"{self.name} connected")
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                if uplink.take_reconnect():
                    uplink.send(store.undelivered())
                delivered = uplink.delivered()
                if delivered:
                    with store.transaction():
                        for h, revision in delivered:
                            store.confirm(self.name, h, revision)
                uplink.publish_due()
                if until_delivered and not store.undelivered_count():
                    break
                time.sleep(0.05)
            return store.undelivered_count()
        finally:
            # Publishes `offline` and waits for its PUBACK: the records before it were taken too.
            uplink.stop()
            store.close()

    def hourly(self) -> set[tuple[str, str, int]]:
        with EdgeStore(self.db) as store:
            return {(r.device, r.hour, r.revision) for r in store.hourly()}


def test_the_receipt_is_part_of_the_contract():
    receipt = Receipt(hour(1), 3)
    assert "cmd/receipt" in CHANNELS
    assert parse_topic("aicctv", topic("aicctv", "cam-1", "cmd/receipt")) == ("cam-1", "cmd/receipt")
    assert decode(Receipt, encode(receipt)) == receipt
    for bad in (b'{"schema":2,"hour":"2026-01-05T10:30:00Z","revision":1}', b'{"schema":2,"hour":"x"}'):
        with pytest.raises(ContractError):
            decode(Receipt, bad)


def test_records_survive_a_broker_restart_while_central_is_away(broker, tmp_path):
    """Mosquitto restored from its persistence file keeps central's session but not its shared
    subscriptions, so what devices publish until central subscribes again is dropped after its
    PUBACK. The devices keep those records until central's receipts arrive, and central ends with
    every device-hour without asking for a resync."""
    central = Central(broker.url, str(tmp_path / "central.db"), tmp_path / "central.log")
    devices = [Device(f"cam-{n}", broker.url, tmp_path, resend_after_s=1.0) for n in (1, 2)]
    central.start()
    try:
        for device in devices:  # hour 1: delivered, end to end
            assert device.run([record(device.name, 1)], until_delivered=True) == 0
        assert central.stored() == {(d.name, hour(1), 1) for d in devices}

        broker.stop()  # hour 2 queues on the devices
        for device in devices:
            assert device.run([record(device.name, 2)], seconds=0.5, broker=False) == 1
        central.kill()
        broker.start()
        for device in devices:  # hours 2 and 3 reach the broker, and its PUBACK, but nobody else
            assert device.run([record(device.name, 3)], seconds=2.0) == 2, "PUBACK is not delivery"

        central.start()
        # The broker dropped them: without the receipts they would be lost for good.
        assert central.stored() == {(d.name, hour(1), 1) for d in devices}
        for device in devices:  # a short run of a later hour delivers the backlog with it
            assert device.run([record(device.name, 4)], until_delivered=True) == 0
        assert central.stored() == set().union(*(d.hourly() for d in devices))
        assert len(central.stored()) == 8
        assert b"resync requested" not in central.log.read_bytes(), "delivered without a resync round trip"
    finally:
        central.stop()


def test_unconfirmed_records_go_out_again_with_backoff_and_a_repeat_is_confirmed(broker, tmp_path):
    device = Device("cam-1", broker.url, tmp_path, resend_after_s=0.2)
    listener = Listener(broker.url, "aicctv/cam-1/hourly").connect()
    arrivals: list[float] = []
    listener.client.on_message = lambda _c, _u, _m: arrivals.append(time.monotonic())
    # No central: no receipt, so the record goes out again and again, less and less often.
    assert device.run([record("cam-1", 1)], seconds=4.0) == 1
    waits = [later - earlier for earlier, later in pairwise(arrivals)]
    assert len(arrivals) >= 4, arrivals
    assert waits[-1] > waits[0] and max(waits) <= 32 * 0.2 + 0.5
    listener.disconnect()

    central = Central(broker.url, str(tmp_path / "central.db"), tmp_path / "central.log")
    central.start()
    try:
        assert device.run([], until_delivered=True) == 0
        assert central.stored() == {("cam-1", hour(1), 1)}
        # A receipt lost on its way: the device sends the same revision again; central keeps its
        # row as it is, and confirms it all the same.
        with EdgeStore(device.db) as store:
            store.conn.execute("UPDATE hourly SET delivered = 0")
        assert device.run([], until_delivered=True, seconds=10.0) == 0
        assert central.stored() == {("cam-1", hour(1), 1)}
    finally:
        central.stop()


def test_without_receipts_the_puback_marks_delivered(broker, tmp_path):
    device = Device("solo", broker.url, tmp_path, receipts=False)
    assert device.run([record("solo", 1)], until_delivered=True, seconds=10.0) == 0


def test_a_replay_waits_for_central_and_ends_delivered(sample_clip, broker, tmp_path):
    """The daemon itself: `--until-end` returns once central has confirmed every hour it closed."""
    clip, _ = sample_clip
    central = Central(broker.url, str(tmp_path / "central.db"), tmp_path / "central.log")
    central.start()
    db = tmp_path / "edge.db"
    command = [sys.executable, "-m", "edge.cli.main", "edge", "run", "--source", str(clip), "--device-id", "cam-1"]
    command += ["--broker", broker.url, "--db", str(db), "--replay-start", "2026-01-05T09:59:55Z", "--until-end"]
    try:
        done = subprocess.run([*command, "--set", "hourly.grace_s=1"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "0 records not yet delivered" in done.stderr
        with EdgeStore(db) as store:
            assert store.undelivered_count() == 0
            local = {(r.device, r.hour, r.revision) for r in store.hourly()}
        assert len(local) == 2 and central.stored() == local
    finally:
        central.stop()


def test_a_long_backlog_goes_out_a_window_at_a_time(broker, tmp_path):
    """Two days offline leave 48 hourly records. With central away the device keeps only its
    window (5) of the oldest hours out, resends included, instead of publishing all 48 again and
    again; once central is back, the receipts move the window along until all are stored."""
    backlog = [
        HourlyRecord("cam-1", f"2026-01-{5 + n // 24:02d}T{n % 24:02d}:00:00Z", 0, empty_counts(), 0.0, 0, 0.0, 1)
        for n in range(48)
    ]
    device = Device("cam-1", broker.url, tmp_path, resend_after_s=0.2, window=5)
    listener = Listener(broker.url, "aicctv/cam-1/hourly").connect()
    published: list[str] = []
    listener.client.on_message = lambda _c, _u, m: published.append(decode(HourlyRecord, m.payload).hour)
    assert device.run(backlog, seconds=2.0) == 48
    wait_until(lambda: len(published) > 5, 20, "the window published again")
    listener.disconnect()
    assert set(published) == {r.hour for r in backlog[:5]}, "only the window's oldest hours, resends included"

    central = Central(broker.url, str(tmp_path / "central.db"), tmp_path / "central.log")
    central.start()
    try:
        assert device.run([], until_delivered=True, seconds=60.0) == 0
        assert central.stored() == {("cam-1", r.hour, 1) for r in backlog}
    finally:
        central.stop()


def test_a_queued_hour_goes_out_as_its_newest_revision(broker):
    """With the window full, later revisions of a waiting hour replace it in the outbox: when a
    receipt makes room, only the newest revision is published."""
    config = load(EdgeConfig, None, {"mqtt.broker": broker.url, "mqtt.window": 1, "mqtt.resend_after_s": 600}, {})
    listener = Listener(broker.url, "aicctv/cam-1/hourly").connect()
    uplink = Uplink(config.mqtt, "cam-1")
    uplink.start()
    try:
        wait_until(lambda: uplink.connected and uplink.take_reconnect(), 20, "connected")
        uplink.send([record("cam-1", 1), record("cam-1", 2)])
        uplink.send([record("cam-1", 2, revision=2), record("cam-1", 2, revision=3)])

        def published() -> list[tuple[str, int]]:
            uplink.delivered()
            uplink.publish_due()
            return [(r.hour, r.revision) for r in (decode(HourlyRecord, p) for p in listener.payloads("/hourly"))]

        wait_until(lambda: published() == [(hour(1), 1)], 20, "the window's one record")
        listener.client.publish("aicctv/cam-1/cmd/receipt", encode(Receipt(hour(1), 1)), qos=1)
        wait_until(lambda: published() == [(hour(1), 1), (hour(2), 3)], 20, "the newest revision of hour 2 only")
    finally:
        uplink.stop()
        listener.disconnect()

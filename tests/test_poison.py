"""Poison payloads, each of which once stopped a receiver: `aicctv central run` (exit 2 after a
RecursionError, which systemd does not restart; exit 1 and a crash loop on the redelivery),
`aicctv watch`, and the edge's MQTT thread through `cmd/resync`. Or, where nothing crashed, got
stored: non-finite numbers, hours that are not ASCII or not plausible, a live time in the far
future that froze the device's live row. Against a real Mosquitto, with the real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from bench.services import Listener, Mosquitto, wait_until
from central.store import open_store
from edge.cli.main import main
from edge.daemon.config import MqttSection
from edge.daemon.uplink import Uplink
from edge.wire.contract import MAX_PAYLOAD_BYTES, ContractError, HourlyRecord, LiveCounts, ResyncRequest, decode, encode
from tests.test_central import HOUR, Publisher, counters, record, stored
from tests.test_systemd import NotifySocket

DEEP = b"[" * MAX_PAYLOAD_BYTES  # exactly the size limit: only the nesting is wrong
LONG_INT = "9" * 5000
FAR_FUTURE = time.time() + 10 * 365 * 86400


def with_raw(obj: dict, **raw: str) -> bytes:
    """`obj` as JSON with some fields' values replaced by raw JSON text (json.dumps cannot write
    a 5000-digit integer, 1e999 or a bare Infinity on purpose)."""
    text = json.dumps({name: f"@{name}@" if name in raw else value for name, value in obj.items()})
    for name, value in raw.items():
        text = text.replace(f'"@{name}@"', value)
    return text.encode()


def hourly(device: str, **raw: str) -> bytes:
    return with_raw(asdict(record(device)), **raw)


def live(device: str, **raw: str) -> bytes:
    return with_raw(asdict(LiveCounts(device, time.time(), 1, 2)), **raw)


@dataclass(frozen=True)
class Poison:
    channel: str
    payload: Callable[[str], bytes]  # of the device id in the topic
    reason: str  # the counter it is rejected under


POISON = {
    "deep-hourly": Poison("hourly", lambda _: DEEP, "nesting"),
    "deep-live": Poison("live", lambda _: DEEP, "nesting"),
    "long-int": Poison("hourly", lambda d: hourly(d, visitors=LONG_INT), "number"),
    "counts-list": Poison("hourly", lambda d: hourly(d, counts='["female", "male"]'), "invalid"),
    "infinity": Poison("hourly", lambda d: hourly(d, mean_dwell_s="Infinity"), "number"),
    "1e999": Poison("hourly", lambda d: hourly(d, mean_dwell_s="1e999"), "number"),
    "full-width-digits": Poison("hourly", lambda d: hourly(d, hour='"２０２６-01-05T09:00:00Z"'), "invalid"),
    "year-9999": Poison("hourly", lambda d: hourly(d, hour='"9999-01-05T09:00:00Z"'), "time"),
    "live-from-the-future": Poison("live", lambda d: live(d, time=repr(FAR_FUTURE)), "time"),
    "long-int-live": Poison("live", lambda d: live(d, in_view=LONG_INT), "number"),
    # 32 characters, under the number limit, but past a 32-bit column: PostgreSQL's view would fail.
    "frames-past-int32": Poison("hourly", lambda d: hourly(d, frames="1" + "0" * 31), "invalid"),
}


@pytest.mark.parametrize("name", POISON)
def test_decode_rejects_each_with_its_reason(name):
    poison = POISON[name]
    with pytest.raises(ContractError) as caught:
        decode(HourlyRecord if poison.channel == "hourly" else LiveCounts, poison.payload("cam-1"), "cam-1")
    assert caught.value.reason == poison.reason


@dataclass
class Central:
    process: subprocess.Popen
    db: str
    stderr: Path

    def running(self) -> bool:
        return self.process.poll() is None


@pytest.fixture(scope="module")
def module_broker(tmp_path_factory) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path_factory.mktemp("broker"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def central(module_broker, tmp_path_factory) -> Iterator[Central]:
    """`aicctv central run` as systemd runs it: a process of its own, READY on a notify socket."""
    folder = tmp_path_factory.mktemp("central")
    notify = NotifySocket(folder / "notify")
    db, stderr = str(folder / "central.db"), folder / "stderr.log"
    command = [sys.executable, "-m", "edge.cli.main", "central", "run", "--broker", module_broker.url, "--db", db]
    with open(stderr, "wb") as err:
        process = subprocess.Popen(command, env={**os.environ, "NOTIFY_SOCKET": str(notify.path)}, stderr=err)
    try:
        wait_until(lambda: notify.times("READY=1") or process.poll() is not None, 60, "READY=1 from central")
        assert process.poll() is None, stderr.read_text()
        yield Central(process, db, stderr)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, stderr.read_text()[-2000:]
    finally:
        process.kill()
        notify.close()


@pytest.fixture(scope="module")
def module_publisher(module_broker) -> Iterator[Publisher]:
    publisher = Publisher(module_broker.url)
    yield publisher
    publisher.close()


@pytest.mark.parametrize("name", POISON)
def test_central_rejects_it_keeps_running_and_stores_the_next_good_message(central, module_publisher, name):
    poison, device = POISON[name], f"dev-{name}"
    counter = f"rejected.{poison.reason}"
    before = counters(central.db).get(counter, 0)
    good_hourly, good_live = record(device), LiveCounts(device, round(time.time(), 3), 1, 2)
    # QoS 1 on `hourly`, so the unacknowledged message would be delivered again after a crash.
    module_publisher.send(
        f"aicctv/{device}/{poison.channel}", poison.payload(device), qos=int(poison.channel == "hourly")
    )
    module_publisher.send(f"aicctv/{device}/live", encode(good_live), qos=0)
    module_publisher.hourly(good_hourly)

    def done() -> bool:
        if not central.running():
            return True
        store = open_store(central.db)
        try:
            return device in store.live() and counters(central.db).get(counter, 0) == before + 1
        finally:
            store.close()

    wait_until(lambda: done() and (device, HOUR) in stored(central.db), what="the rejection and the good messages")
    assert central.running(), central.stderr.read_text()[-2000:]
    assert {key: r for key, r in stored(central.db).items() if key[0] == device} == {(device, HOUR): good_hourly}
    store = open_store(central.db)
    try:
        assert store.live()[device][0] == good_live  # not frozen by a time from the future
    finally:
        store.close()


def test_central_reports_a_flood_of_one_reason_once(central, module_publisher):
    def reported() -> list[str]:
        return [line for line in central.stderr.read_text().splitlines() if "(nesting)" in line]

    before, lines_before = counters(central.db).get("rejected.nesting", 0), len(reported())
    for _ in range(50):
        module_publisher.send("aicctv/flood/hourly", DEEP)
    wait_until(lambda: counters(central.db).get("rejected.nesting", 0) == before + 50, what="50 rejections counted")
    # One line a minute per reason: a flood of seconds adds one at most, whatever came before.
    assert len(reported()) - lines_before <= 1, reported()
    assert central.running()


@pytest.mark.parametrize("name", ["deep-live", "long-int-live"])
def test_watch_rejects_it_and_keeps_showing_live_counts(broker, capsys, name):
    publisher, stop = Publisher(broker.url), threading.Event()

    def publish() -> None:
        # Live counts are not retained: keep sending until the watcher has seen some.
        while not stop.is_set():
            publisher.send("aicctv/shop-1/live", POISON[name].payload("shop-1"), qos=0)
            publisher.send("aicctv/shop-1/live", live("shop-1"), qos=0)
            stop.wait(0.1)

    thread = threading.Thread(target=publish)
    thread.start()
    try:
        assert main(["watch", "--broker", broker.url, "--duration", "3"]) == 0
    finally:
        stop.set()
        thread.join()
        publisher.close()
    lines = capsys.readouterr().out.splitlines()
    assert any(f"rejected aicctv/shop-1/live ({POISON[name].reason})" in line for line in lines)
    assert any(" shop-1 ? in_view=1 this_hour=2 " in line for line in lines)
    assert lines[-1].startswith("1 devices, 0 online, 1 people in view; malformed payloads rejected: ")


@pytest.mark.parametrize(
    "payload",
    [
        DEEP,
        with_raw(asdict(ResyncRequest(HOUR, HOUR)), since=LONG_INT),
        with_raw(asdict(ResyncRequest(HOUR, HOUR)), since='["x"]'),
        with_raw(asdict(ResyncRequest(HOUR, HOUR)), until='"9999-01-05T09:00:00Z"'),
    ],
    ids=["deep", "long-int", "list", "year-9999"],
)
def test_edge_rejects_a_poisoned_resync_command_and_keeps_its_link(broker, payload):
    uplink = Uplink(MqttSection(broker=broker.url), "edge-1")
    listener = Listener(broker.url, "aicctv/edge-1/live").connect()
    publisher = Publisher(broker.url)
    uplink.start()
    try:
        # Retained, so it reaches the device whenever its subscription lands, before the good one.
        publisher.send("aicctv/edge-1/cmd/resync", payload, retain=True)
        good = ResyncRequest(HOUR, HOUR)
        received: list[ResyncRequest] = []

        def asked() -> bool:
            publisher.send("aicctv/edge-1/cmd/resync", encode(good))
            received.extend(uplink.resync_requests())
            return bool(received)

        wait_until(asked, what="the good resync command after the poisoned one")
        assert set(received) == {good} and uplink.rejections.total >= 1
        counts = LiveCounts("edge-1", round(time.time(), 3), 1, 2)
        uplink.publish_live(counts)
        wait_until(lambda: listener.payloads("/live"), what="live counts published after the poison")
        assert decode(LiveCounts, listener.payloads("/live")[0]) == counts
    finally:
        uplink.stop()
        listener.disconnect()
        publisher.close()

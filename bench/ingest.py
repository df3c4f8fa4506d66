"""Central ingest: can one `aicctv central run` keep up with a large fleet?

    python -m bench.ingest [--devices 1000] [--seconds 20] [--hours 24] [--db central.db | postgresql://…]

Simulates `--devices` edges through one MQTT connection: each sends live counts every second
(QoS 0) and, spread over the run, a backlog of `--hours` hourly records (QoS 1), as a fleet does
when it comes back after a broker or network outage. Central runs as its own process on a
private Mosquitto (or `--broker`). Prints central's command, the messages per second it stored
while the load lasted, p50/p99 latency from publish to database (live: `received − time`;
hourly: `received` column − publish time), and the rows stored. Use a scratch PostgreSQL
database: the bench reports the rows of its own devices only.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bench.services import Mosquitto
from central.store import CentralStore, open_store
from edge.wire.contract import HourlyRecord, LiveCounts, empty_counts, encode, hour_start, parse_hour
from edge.wire.mqtt import BrokerURL

FIRST_HOUR = parse_hour("2026-01-05T00:00:00Z")
TICK_S = 0.01
SAMPLE_EVERY_S = 0.25


def latency(seconds: list[float]) -> str:
    if len(seconds) < 2:
        return "n/a (too few samples)"
    q = statistics.quantiles(seconds, n=100, method="inclusive")
    return f"p50 {q[49] * 1000:.0f} ms  p99 {q[98] * 1000:.0f} ms"


def central(broker: str, db: str, log: Path) -> tuple[list[str], subprocess.Popen]:
    command = [sys.executable, "-m", "edge.cli.main", "central", "run", "--broker", broker, "--db", db]
    command += ["--client-id", f"bench-{uuid.uuid4().hex[:8]}", "--set", "resync.check_interval_s=3600"]
    with log.open("w") as stderr:
        process = subprocess.Popen(command, stderr=stderr)
    deadline = time.monotonic() + 30
    while "subscribed (session" not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"central did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return command, process


def received_messages(store: CentralStore) -> int:
    return sum(n for name, n in store.counters().items() if name.startswith(("received.", "rejected.")))


class Fleet:
    """The devices' messages, paced: live counts every second, hourly records evenly over the run."""

    def __init__(self, url: str, devices: int, hours: int, seconds: float, prefix: str) -> None:
        self.devices = [f"bench-{uuid.uuid4().hex[:6]}-{n}" for n in range(devices)]
        self.hours, self.seconds, self.prefix = hours, seconds, prefix
        self.published: dict[tuple[str, str], float] = {}
        self.live_sent = 0
        self.counts = empty_counts()
        broker = BrokerURL.parse(url)
        # MQTT 3.1.1: mosquitto gives MQTT 5 clients a receive maximum of 20 unacknowledged messages.
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        self.client.max_inflight_messages_set(0)
        self.client.max_queued_messages_set(0)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def run(self) -> float:
        """Publish for `seconds`; returns when the last message went out (monotonic)."""
        backlog = [(d, hour_start(FIRST_HOUR + 3600 * h)) for h in range(self.hours) for d in self.devices]
        start = time.monotonic()
        hourly_sent = 0
        while (elapsed := time.monotonic() - start) < self.seconds:
            while self.live_sent < int(elapsed * len(self.devices)):
                device = self.devices[self.live_sent % len(self.devices)]
                live = LiveCounts(device, time.time(), 1, self.live_sent // len(self.devices))
                self.client.publish(f"{self.prefix}/{device}/live", encode(live), qos=0)
                self.live_sent += 1
            due = int(len(backlog) * elapsed / self.seconds)
            self._hourly(backlog[hourly_sent:due])
            hourly_sent = max(hourly_sent, due)
            time.sleep(TICK_S)
        self._hourly(backlog[hourly_sent:])
        return time.monotonic()

    def _hourly(self, keys: list[tuple[str, str]]) -> None:
        for device, hour in keys:
            record = HourlyRecord(device, hour, 0, self.counts, 0.0, 0, 0.0, 1)
            self.published[device, hour] = time.time()
            self.client.publish(f"{self.prefix}/{device}/hourly", encode(record), qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the load lasts")
    parser.add_argument("--hours", type=int, default=24, help="hourly records per device, spread over the run")
    parser.add_argument("--db", help="SQLite file or postgresql:// URL (default: a temporary SQLite file)")
    parser.add_argument("--broker", help="mqtt://host:port (default: a private mosquitto)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="aicctv-ingest-") as tmp:
        bench(args, Path(tmp))


def bench(args: argparse.Namespace, folder: Path) -> None:
    broker = None
    if not args.broker:
        broker = Mosquitto(folder / "broker")
        broker.start()
    url = args.broker or broker.url
    db = args.db or str(folder / "central.db")
    command, process = central(url, db, folder / "central.log")
    print("central:", " ".join(command), flush=True)
    store = open_store(db)
    fleet = Fleet(url, args.devices, args.hours, args.seconds, "aicctv")
    try:
        before = received_messages(store)
        start = time.monotonic()
        # The fleet publishes on its own thread; this one samples live latency from the database.
        finished: list[float] = []
        publisher = threading.Thread(target=lambda: finished.append(fleet.run()))
        publisher.start()
        live_latency: list[float] = []
        seen: dict[str, float] = {}
        while publisher.is_alive():
            for device, (counts, received) in store.live().items():
                if seen.get(device) != received:
                    seen[device] = received
                    live_latency.append(received - counts.time)
            time.sleep(SAMPLE_EVERY_S)
        load_end = finished[0]
        during = received_messages(store) - before
        offered = fleet.live_sent + len(fleet.published)
        mine = set(fleet.published)
        deadline = time.monotonic() + 120
        while len(mine & set(store.received())) < len(mine) and time.monotonic() < deadline:
            time.sleep(0.1)
        drained = time.monotonic() - load_end
        arrivals = store.received()
        hourly_latency = [arrivals[key] - t for key, t in fleet.published.items() if key in arrivals]
        total = received_messages(store) - before
    finally:
        fleet.close()
        process.terminate()
        process.wait(10)
        store.close()
        if broker:
            broker.stop()
    seconds = load_end - start
    print(
        f"load: {args.devices} devices, {seconds:.1f} s, {offered} messages offered ({offered / seconds:.0f} msg/s:"
        f" {fleet.live_sent} live QoS 0, {len(fleet.published)} hourly QoS 1)"
    )
    print(
        f"central stored {during / seconds:.0f} msg/s while the load lasted; {total} of {offered} messages"
        f" in, the last {drained:.1f} s after the last publish"
    )
    print(f"live latency    {latency(live_latency)} ({len(live_latency)} samples)")
    print(f"hourly latency  {latency(hourly_latency)}")
    print(f"rows stored: {len(hourly_latency)} of {len(fleet.published)} device-hours")
    for line in re.findall(r"aicctv.central: (\d+ msg/s.*)", (folder / "central.log").read_text()):
        print("  central log:", line)


if __name__ == "__main__":
    main()

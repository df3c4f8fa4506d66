"""Fault scenario: many devices replay footage while the broker restarts and central is killed.

    python -m bench.faults [--devices 20] [--hours 10] [--db central.db | postgresql://…]

Each device replays a short rendered clip once per hour for `--hours` consecutive hours (one
device-hour per replay, real detection, tracking and classification), through a private
Mosquitto, to a central subscriber running as its own process. Meanwhile the broker is stopped
and started `--broker-restarts` times and central is `kill -9`ed `--central-kills` times. At
the end every device drains its backlog and the central export must equal the union of the
edges' local logs, row for row. Prints the schedule, the figures and PASS/FAIL.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.services import Mosquitto
from edge.daemon.config import EdgeConfig
from edge.daemon.daemon import EdgeDaemon
from edge.daemon.store import EdgeStore
from edge.wire.config import load
from edge.wire.contract import encode, parse_hour

FIRST_HOUR = parse_hour("2026-01-05T08:00:00Z")
CLIP_CACHE = Path(".cache/bench/faults")


def clip() -> Path:
    """A 320×240 clip with a few visitors: enough for real tracks, cheap enough for 200 replays."""
    from bench.clipgen import generate

    video = CLIP_CACHE / "clip.mp4"
    if not video.exists():
        faces = Path(__file__).parent.parent / "tests" / "fixtures" / "faces"
        generate(CLIP_CACHE, seed=5, visitors=3, width=320, height=240, data=faces)
    return video


class Central:
    """`aicctv central run` as a child process, so it can be killed like a crashed server."""

    def __init__(self, broker_url: str, db: str, log: Path) -> None:
        self.command = [
            sys.executable,
            *("-m", "edge.cli.main", "central", "run", "--broker", broker_url, "--db", db),
            *("--set", "resync.check_interval_s=2", "--set", "resync.min_interval_s=5"),
        ]
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(self.command, stdout=out, stderr=out)

    def kill(self) -> None:
        if self.process:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


def inject_faults(broker: Mosquitto, central: Central, restarts: int, kills: int, every_s: float, log: list[str]):
    """Alternate broker outages (2 s) and central kills (restarted after 1 s) every `every_s`."""
    start = time.monotonic()
    order = []
    while restarts or kills:  # interleaved: broker, central, broker, central, broker
        if restarts:
            order.append("broker")
            restarts -= 1
        if kills:
            order.append("central")
            kills -= 1
    for kind in order:
        time.sleep(every_s)
        at = time.monotonic() - start
        if kind == "broker":
            broker.stop()
            time.sleep(2)
            broker.start()
            log.append(f"{at:6.1f} s  broker stopped for 2 s, restarted")
        else:
            central.kill()
            time.sleep(1)
            central.start()
            log.append(f"{at:6.1f} s  central killed (-9), restarted after 1 s")


def edge_config(device: int, broker_url: str, folder: Path, source: Path, flush_s: float) -> EdgeConfig:
    return load(
        EdgeConfig,
        overrides={
            "device.id": f"dev-{device:02d}",
            "source.spec": str(source),
            "mqtt.broker": broker_url,
            "mqtt.flush_timeout_s": flush_s,
            "storage.db": str(folder / f"edge-{device:02d}.db"),
        },
        environ={},
    )


def export_lines(db: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "edge.cli.main", "central", "export", "--db", db, "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return sorted(done.stdout.splitlines())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--hours", type=int, default=10, help="replayed device-hours per device")
    parser.add_argument("--broker-restarts", type=int, default=3)
    parser.add_argument("--central-kills", type=int, default=2)
    parser.add_argument("--db", help="central log (default: a fresh SQLite file)")
    args = parser.parse_args(argv)

    import logging

    logging.basicConfig(level=logging.ERROR)  # the faults make the daemons warn, by design
    source = clip()
    folder = Path(tempfile.mkdtemp(prefix="aicctv-faults-"))
    db = args.db or str(folder / "central.db")
    broker = Mosquitto(folder / "broker")
    broker.start()
    central = Central(broker.url, db, folder / "central.log")
    central.start()
    started = time.monotonic()

    faults: list[str] = []
    injector: threading.Thread | None = None
    for hour in range(args.hours):
        for device in range(args.devices):
            config = edge_config(device, broker.url, folder, source, flush_s=1.0)
            EdgeDaemon(config, replay_start=FIRST_HOUR + hour * 3600 + 600, until_end=True).run()
        print(f"  hour {hour + 1}/{args.hours} replayed on {args.devices} devices", file=sys.stderr)
        if injector is None:
            # Spread the faults over the remaining replay, timed by how long this first hour took.
            remaining_s = (time.monotonic() - started) * (args.hours - 1)
            spacing = remaining_s / (args.broker_restarts + args.central_kills + 1)
            fault_args = (broker, central, args.broker_restarts, args.central_kills, spacing, faults)
            injector = threading.Thread(target=inject_faults, args=fault_args)
            injector.start()
    if injector:
        injector.join()
    replayed = time.monotonic() - started

    # Drain: each device runs once more (every frame already accounted for) to deliver its backlog.
    union: list[str] = []
    pending_before = 0
    for device in range(args.devices):
        config = edge_config(device, broker.url, folder, source, flush_s=60.0)
        with EdgeStore(config.storage.db) as store:
            pending_before += store.undelivered_count()
        EdgeDaemon(config, replay_start=FIRST_HOUR, until_end=True).run()
        with EdgeStore(config.storage.db) as store:
            union += [encode(r).decode() for r in store.hourly()]
    union.sort()
    deadline = time.monotonic() + 120
    central_lines = export_lines(db)
    while central_lines != union and time.monotonic() < deadline:
        time.sleep(1)
        central_lines = export_lines(db)
    central.stop()
    broker.stop()

    rows = len(union)
    print(
        f"command: python -m bench.faults --devices {args.devices} --hours {args.hours} "
        f"--broker-restarts {args.broker_restarts} --central-kills {args.central_kills}"
        + (f" --db {args.db}" if args.db else "")
    )
    print("faults:\n" + "\n".join(faults))
    print(f"replay phase {replayed:.0f} s; {pending_before} records still queued on devices before the drain")
    print(f"edge logs: {rows} device-hours; central export: {len(central_lines)} rows")
    missing = len(set(union) - set(central_lines))
    extra = len(set(central_lines) - set(union))
    print(f"missing at central: {missing}, extra or different at central: {extra}")
    verdict = central_lines == union and rows == args.devices * args.hours
    print("PASS: central export equals the union of the edge logs, row for row" if verdict else "FAIL")
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())

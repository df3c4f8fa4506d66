"""`aicctv demo`: the whole product on one machine, with nothing to install or configure.

An MQTT broker (embedded amqtt unless --broker names one), one edge daemon replaying the sample
clip as if filmed across an hour boundary, and one central subscriber; at the end, the central
log's hourly table. Each piece is the real one: the same daemon, uplink, subscriber and stores
that run on devices and servers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import threading
import time
from pathlib import Path

from edge.daemon.config import EdgeConfig
from edge.wire.config import ConfigError, load
from edge.wire.contract import HourlyRecord

DEFAULT_CLIP = Path(".cache/sample/clip.mp4")
DEFAULT_OUT = Path(".cache/demo")
# The sample clip is ~24 s long: starting it 10 s before 10:00 shows two hours, and a visitor
# who crosses the hour mark updating the first hour with a second revision.
REPLAY_START = "2026-01-05T09:59:50Z"
DEVICE = "demo-cam"
# Left in --out: its logs are the demo's own, and the next run may replace them.
DEMO_MARK = ".aicctv-demo"
# A generated clip's ground truth (bench.clipgen's clip.json) is read only up to this size.
TRUTH_LIMIT = 64 * 1024 * 1024


class EmbeddedBroker:
    """amqtt's pure-Python MQTT 3.1.1 broker on a thread, for a demo without a real broker."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="amqtt", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(15) or self._error:
            raise RuntimeError(f"the embedded MQTT broker did not start: {self._error}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _serve(self) -> None:
        try:
            from amqtt.broker import Broker
        except ImportError as exc:
            self._error = RuntimeError("amqtt is not installed: pip install 'aicctv[demo]', or pass --broker URL")
            self._ready.set()
            raise SystemExit from exc

        async def serve() -> None:
            broker = Broker(
                {
                    "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
                    "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
                }
            )
            await broker.start()
            self._ready.set()
            while not self._stop.is_set():
                await asyncio.sleep(0.1)
            await broker.shutdown()

        try:
            asyncio.run(serve())
        except Exception as exc:  # reported by start(); the demo cannot go on without a broker
            self._error = exc
            self._ready.set()


def run_demo(clip: Path, out: Path, broker_url: str | None) -> list[HourlyRecord]:
    from central.config import CentralConfig
    from central.store import open_store
    from central.subscriber import Subscriber
    from edge.cli.common import parse_instant
    from edge.daemon.daemon import EdgeDaemon

    edge_db, central_db = out / "edge.db", out / "central.db"
    logs = [db.with_name(db.name + suffix) for db in (edge_db, central_db) for suffix in ("", "-wal", "-shm")]
    try:
        out.mkdir(parents=True, exist_ok=True)
        # A fresh run (the edge would otherwise resume after its last frame), deleting only logs
        # an earlier demo wrote: an --out holding a device's real log must not lose it.
        ours = (out / DEMO_MARK).exists() or out.resolve() == DEFAULT_OUT.resolve()
        if any(log.exists() for log in logs) and not ours:
            raise ConfigError(f"--out {out} holds logs the demo did not write: give an empty or new folder")
        (out / DEMO_MARK).touch()
        for old in logs:
            old.unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: {exc.strerror or exc}: give a folder the demo may write") from None
    broker = EmbeddedBroker() if broker_url is None else None
    if broker:
        broker.start()
    url = broker.url if broker else broker_url
    version = 4 if broker else 5  # amqtt speaks MQTT 3.1.1 only
    print(f"broker   {url} ({'embedded amqtt' if broker else 'external'})")
    central = Subscriber(
        load(
            CentralConfig,
            overrides={"mqtt.broker": url, "mqtt.version": version, "storage.db": str(central_db)},
            environ={},
        )
    )
    central_thread = threading.Thread(target=central.run, name="central", daemon=True)
    central_thread.start()
    if not central.subscribed.wait(15):
        raise RuntimeError(f"the central subscriber could not subscribe at {url}")
    print(f"central  subscribed, logging to {central_db}")
    edge_config = load(
        EdgeConfig,
        overrides={
            "device.id": DEVICE,
            "source.spec": str(clip),
            "mqtt.broker": url,
            "mqtt.version": version,
            "storage.db": str(edge_db),
            "hourly.grace_s": 2,
        },
        environ={},
    )
    print(f"edge     {DEVICE} replaying {clip} as if filmed from {REPLAY_START}, logging to {edge_db}")
    summary = EdgeDaemon(edge_config, replay_start=parse_instant(REPLAY_START), until_end=True).run()
    print(f"edge     {summary.line()}")
    try:
        edge_records = _edge_log(edge_db)
        store = open_store(central_db)
        deadline = time.monotonic() + 30
        while store.hourly() != edge_records and time.monotonic() < deadline:
            time.sleep(0.1)
        records = store.hourly()
        store.close()
    finally:
        central.stop()
        central_thread.join(10)
        if broker:
            broker.stop()
    if records != edge_records:
        raise RuntimeError(f"the central log has {len(records)} of the edge's {len(edge_records)} hourly records")
    return records


def _edge_log(path: Path) -> list[HourlyRecord]:
    from edge.daemon.store import EdgeStore

    with EdgeStore(path) as store:
        return store.hourly()


def against_truth(clip: Path, records: list[HourlyRecord]) -> str | None:
    """The counts beside a generated clip's ground truth (`bench.clipgen` writes clip.json next to
    clip.mp4), so the demo shows its own errors; None for a clip without one."""
    truth = clip.with_name("clip.json")
    try:
        if truth.stat().st_size > TRUTH_LIMIT:
            return None
        visitors = json.loads(truth.read_text())["visitors"]
        female = sum(1 for v in visitors if v["female"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    counted = sum(r.visitors for r in records)
    judged_female = sum(sum(r.counts["female"].values()) for r in records)
    judged_male = sum(sum(r.counts["male"].values()) for r in records)
    return (
        f"the clip holds {len(visitors)} visitors, {female} of them female (its clip.json); "
        f"counted {counted}, {judged_female} judged female, {judged_male} male, "
        f"{counted - judged_female - judged_male} not judged"
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from edge.cli.stats import tables

    if not args.clip.is_file():
        raise ConfigError(f"no clip at {args.clip}: run `make demo` once (it renders the sample clip) or pass --clip")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    records = run_demo(args.clip, args.out, args.broker)
    print(f"\ncentral log, hourly ({len(records)} device-hours, identical to the edge's local log):\n")
    print(tables(records))
    if (line := against_truth(args.clip, records)) is not None:
        print(f"\n{line}")
    program = _program()
    print(f"\nnext: {program} stats --db {args.out / 'central.db'} --plot hours.png")
    if _interactive():
        serve_dashboard(args.out / "central.db", records)
    else:
        serve = f"{program} central serve --db {args.out / 'central.db'}"
        print(f"dashboard: {serve}, then open {day_link('http://127.0.0.1:8080/', records)}")
    return 0


def day_link(base: str, records: list[HourlyRecord]) -> str:
    """The dashboard's Day page on the demo's replayed day (the dashboard shows it in UTC, as
    the demo configures no time zone), under `base` ('http://host:port/')."""
    return f"{base}day?device={DEVICE}&date={records[0].hour[:10]}" if records else base


def _program() -> str:
    """How to type this command again: `aicctv` where that is what the shell finds, else the path
    it was run as (`make demo` runs `.venv/bin/aicctv`, which is on no PATH until the venv is
    activated)."""
    import shutil
    import sys

    invoked = Path(sys.argv[0])
    found = shutil.which("aicctv")
    if invoked.name != "aicctv" or (found is not None and Path(found).resolve() == invoked.resolve()):
        return "aicctv"
    return str(invoked)


def _interactive() -> bool:
    """A person at a terminal (stdin and stdout are TTYs) and not CI: worth keeping the dashboard up."""
    import os
    import sys

    ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    return not ci and sys.stdin.isatty() and sys.stdout.isatty()


def serve_dashboard(central_db: Path, records: list[HourlyRecord]) -> None:
    """The owner's dashboard over the demo's central log, on a free local port, until Ctrl-C."""
    try:
        import uvicorn

        from central.config import CentralConfig, Places
        from central.web.app import create_app
    except ImportError as exc:
        print(f"\n(the dashboard needs {exc.name}: pip install 'aicctv[central]')")
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = load(CentralConfig, overrides={"storage.db": str(central_db)}, environ={})
    print(f"\ndashboard: {day_link(f'http://127.0.0.1:{port}/', records)}  (the replayed day; Ctrl-C stops it)")
    # uvicorn handles Ctrl-C (SIGINT) itself and returns.
    uvicorn.run(create_app(config, Places()), host="127.0.0.1", port=port, log_level="warning")


def add_commands(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser(
        "demo",
        help="run broker, edge and central together on the sample clip and print the hourly table",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help=f"video to replay (default {DEFAULT_CLIP})")
    demo.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="folder for the two logs (replaced on the next run)"
    )
    demo.add_argument("--broker", metavar="URL", help="use this MQTT 5 broker instead of the embedded one")
    demo.set_defaults(func=cmd_demo)

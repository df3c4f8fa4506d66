"""`aicctv edge run` (the daemon) and `aicctv edge export` (its local log)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from edge.cli.common import config_options, hour_range_options, parse_instant
from edge.daemon.config import EdgeConfig
from edge.wire.config import ConfigError, add_flags, flag_values, load, redact, render
from edge.wire.export import FORMATS, write_records


def edge_options(parser: argparse.ArgumentParser) -> None:
    add_flags(config_options(parser, "TOML file (see deploy/edge.toml)", "vision.threads=2"), EdgeConfig)


def edge_config(args: argparse.Namespace) -> EdgeConfig:
    return load(EdgeConfig, args.config, dict(args.set) | flag_values(args))


def cmd_run(args: argparse.Namespace) -> int:
    from edge.daemon.daemon import EdgeDaemon  # the vision stack loads only when the daemon runs

    config = edge_config(args)
    if args.print_config:
        print(redact(render(config)))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    daemon = EdgeDaemon(config, replay_start=args.replay_start, until_end=args.until_end)
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: daemon.stop())
    c = config
    logging.getLogger("aicctv.edge").info(
        "device %s: source %s → %s, broker %s", c.device.id, redact(c.source.spec), c.storage.db, redact(c.mqtt.broker)
    )
    summary = daemon.run()
    print(summary.line(), file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    # Read-only, like `aicctv stats`: pointed at another kind of log by mistake, it changes nothing.
    from edge.cli.stats import read_hourly

    if not args.db.is_file():
        raise ConfigError(f"no edge log at {args.db}: pass the --db the daemon writes (storage.db)")
    write_records(read_hourly(str(args.db), since=args.since, until=args.until), args.format, sys.stdout)
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    edge = commands.add_parser("edge", help="the on-device daemon and its local log")
    sub = edge.add_subparsers(dest="edge_command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="count visitors from a camera or stream, log locally, publish over MQTT",
        description=(
            "Run the edge daemon: detect, classify and track faces, keep visits and hourly records in\n"
            "a local SQLite log (WAL, crash-safe), and publish live counts and hourly records over\n"
            "MQTT (QoS 1, queued locally while the broker is away). Stops cleanly on SIGTERM/Ctrl-C."
        ),
        epilog=(
            "examples:\n"
            "  aicctv edge run --config /etc/aicctv/edge.toml\n"
            "  aicctv edge run --source /dev/video0 --device-id shop-1 --broker mqtt://central.local\n"
            "  aicctv edge run --source clip.mp4 --replay-start 2026-01-05T09:00:00Z --until-end\n"
            "      replay footage as if filmed from that instant, at full speed, then close every\n"
            "      hour, deliver and exit: hours of footage tested in minutes\n\n"
            "environment: AICCTV_<SECTION>_<KEY> overrides the file, e.g. AICCTV_MQTT_BROKER\n"
            "exit status: 0 stopped cleanly, 1 source unusable, 2 bad configuration or usage, or a file it\n"
            "names unusable (the log: a directory, read-only, disk full, newer release; a damaged model)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    edge_options(run)
    run.add_argument(
        "--replay-start",
        type=parse_instant,
        metavar="T",
        help="treat a video file as filmed from T (ISO 8601 with zone); frame time = T + index / fps",
    )
    run.add_argument(
        "--until-end",
        action="store_true",
        help="after the last frame: close all hours, deliver (up to mqtt.flush_timeout_s), exit",
    )
    run.add_argument("--print-config", action="store_true", help="print the effective configuration as TOML and exit")
    run.set_defaults(func=cmd_run)

    export = sub.add_parser(
        "export",
        help="print the local hourly records as JSON lines or CSV",
        description=(
            "Print the edge's local hourly records, oldest first: JSON lines are the MQTT payloads the\n"
            "device sends (docs/mqtt.md), CSV their columns by UTC hour. `aicctv central export` adds\n"
            "each hour's local start and time zone, and XLSX."
        ),
        epilog="example:\n  aicctv edge export --db aicctv-edge.db --format csv > hours.csv",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("--db", type=Path, default=Path("aicctv-edge.db"), help="the edge's SQLite log")
    export.add_argument("--format", choices=FORMATS, default="json", help="json lines (default) or csv")
    hour_range_options(export)
    export.set_defaults(func=cmd_export)

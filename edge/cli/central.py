"""`aicctv central run` (the subscriber) and `aicctv central export` (its log)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from central.config import POSTGRES_SCHEMES, CentralConfig
from edge.cli.common import EXIT_FAILED, config_options, hour_range_options
from edge.wire.config import ConfigError, add_flags, flag_values, load, render
from edge.wire.export import FORMATS, write_records


def _config_options(parser: argparse.ArgumentParser, flags: tuple[str, ...]) -> None:
    group = config_options(parser, "TOML file (see deploy/central.toml)", "resync.check_interval_s=30")
    add_flags(group, CentralConfig, only=flags)


def central_config(args: argparse.Namespace) -> CentralConfig:
    return load(CentralConfig, args.config, dict(args.set) | flag_values(args))


def cmd_run(args: argparse.Namespace) -> int:
    from central.store import StoreError
    from central.subscriber import Subscriber

    config = central_config(args)
    if args.print_config:
        print(render(config))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    subscriber = Subscriber(config)
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: subscriber.stop())
    try:
        subscriber.run()
    except StoreError as exc:
        print(f"error: cannot open the central log {config.storage.db}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from central.store import StoreError, open_store

    db = central_config(args).storage.db
    if not db.startswith(POSTGRES_SCHEMES) and not Path(db).is_file():
        raise ConfigError(f"no central log at {db}: pass the --db that `aicctv central run` writes (storage.db)")
    try:
        store = open_store(db)
        try:
            records = store.hourly(args.device, args.since, args.until)
        finally:
            store.close()
    except StoreError as exc:
        print(f"error: cannot read the central log {db}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    write_records(records, args.format, sys.stdout)
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    central = commands.add_parser("central", help="the central subscriber and its log of every device")
    sub = central.add_subparsers(dest="central_command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="subscribe to every edge and keep the central log",
        description=(
            "Subscribe to every device's hourly records, live counts and status, and keep one row per\n"
            "device-hour (the highest revision) in SQLite or PostgreSQL. Messages are acknowledged to\n"
            "the broker only once committed, in a persistent session, so a crash or restart loses\n"
            "nothing. Instances sharing a database and mqtt.shared_group split the load (MQTT 5).\n"
            "Missing hours are requested again from their device. Stops cleanly on SIGTERM/Ctrl-C."
        ),
        epilog=(
            "examples:\n"
            "  aicctv central run --broker mqtt://broker.local\n"
            "  aicctv central run --config /etc/aicctv/central.toml\n"
            "  aicctv central run --db postgresql://aicctv@db.local/aicctv --client-id central-2\n"
            "      a second instance beside the first: same database, its own client id\n\n"
            "environment: AICCTV_<SECTION>_<KEY> overrides the file, e.g. AICCTV_STORAGE_DB\n"
            "exit status: 0 stopped cleanly, 1 database unusable, 2 bad configuration or usage"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _config_options(run, ("mqtt.broker", "mqtt.client_id", "storage.db"))
    run.add_argument("--print-config", action="store_true", help="print the effective configuration as TOML and exit")
    run.set_defaults(func=cmd_run)

    export = sub.add_parser(
        "export",
        help="print the central log as JSON lines or CSV",
        description=(
            "Print the central log's hourly records, oldest first: JSON lines are exactly the MQTT\n"
            "payloads (keys sorted), so they compare line for line with `aicctv edge export`."
        ),
        epilog=(
            "examples:\n"
            "  aicctv central export --format csv > hours.csv\n"
            "  aicctv central export --db postgresql://aicctv@db.local/aicctv --device shop-1 \\\n"
            "      --since 2026-01-05T00:00:00Z --until 2026-01-05T23:00:00Z\n\n"
            "exit status: 0 printed, 1 database unreadable, 2 no such log or usage error"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _config_options(export, ("storage.db",))
    export.add_argument("--device", metavar="D", help="only this device")
    hour_range_options(export)
    export.add_argument("--format", choices=FORMATS, default="json", help="json lines (default) or csv")
    export.set_defaults(func=cmd_export)

"""`aicctv central run` (the subscriber), `aicctv central export` (its log), `aicctv central serve`
(the owner's dashboard and API) and `aicctv central hash-password`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from central.config import POSTGRES_SCHEMES, CentralConfig, Places, load_central
from edge.cli.common import EXIT_FAILED, config_options, hour_range_options
from edge.wire.config import ConfigError, add_flags, flag_values, redact, render
from edge.wire.export import ALL_FORMATS, write_records, write_xlsx


def _config_options(parser: argparse.ArgumentParser, flags: tuple[str, ...]) -> None:
    group = config_options(parser, "TOML file (see deploy/central.toml)", "resync.check_interval_s=30")
    add_flags(group, CentralConfig, only=flags)


def central_setup(args: argparse.Namespace) -> tuple[CentralConfig, Places]:
    """The configuration and its [devices.<id>] / [sites.<name>] tables."""
    return load_central(args.config, dict(args.set) | flag_values(args))


def _zone_option(text: str):  # -> ZoneInfo
    from central.localtime import zone

    try:
        return zone(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _delimiter(text: str) -> str:
    text = "\t" if text in ("tab", "\\t") else text
    if len(text) != 1 or text in '\r\n"':
        raise argparse.ArgumentTypeError(f"{text!r}: one character, e.g. ';' or tab")
    return text


def cmd_run(args: argparse.Namespace) -> int:
    from central.store import StoreError
    from central.subscriber import Subscriber

    config, places = central_setup(args)
    if args.print_config:
        print(redact(render(config)))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    subscriber = Subscriber(config, places)
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: subscriber.stop())
    try:
        subscriber.run()
    except StoreError as exc:
        print(f"error: cannot open the central log {redact(config.storage.db)}: {redact(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from central.store import StoreError, open_store

    config, places = central_setup(args)
    db = config.storage.db
    if not db.startswith(POSTGRES_SCHEMES) and not Path(db).is_file():
        raise ConfigError(
            f"no central log at {redact(db)}: pass the --db that `aicctv central run` writes (storage.db)"
        )
    if args.format == "xlsx" and sys.stdout.isatty():
        raise ConfigError("--format xlsx writes a binary file: redirect it, e.g. > hours.xlsx")
    try:
        # An export is a read: it must not create, migrate or need write rights on the log.
        store = open_store(db, read_only=True)
        try:
            records = store.hourly(args.device, args.since, args.until)
        finally:
            store.close()
    except StoreError as exc:
        print(f"error: cannot read the central log {redact(db)}: {redact(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    # JSON lines stay the MQTT payloads unless --tz asks for local times; CSV and XLSX always
    # carry each hour's local start, in --tz or else each device's configured zone.
    zones = {} if args.tz else {r.device: places.local(r.device).tz for r in records}
    if args.format == "xlsx":
        write_xlsx(records, sys.stdout.buffer, args.tz or places.local().tz, zones)
    elif args.format == "json":
        write_records(records, "json", sys.stdout, args.tz)
    else:
        write_records(records, "csv", sys.stdout, args.tz or places.local().tz, args.delimiter, zones)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    config, places = central_setup(args)
    db = config.storage.db
    if args.print_config:
        print(redact(render(config)))
        return 0
    if not db.startswith(POSTGRES_SCHEMES) and not Path(db).is_file():
        raise ConfigError(
            f"no central log at {redact(db)}: pass the --db that `aicctv central run` writes (storage.db)"
        )
    try:
        from central.web.app import check_listen, create_app
    except ImportError as exc:
        raise ConfigError(f"the dashboard needs {exc.name}: pip install 'aicctv[central]'") from None
    import uvicorn

    host, port = check_listen(config.web)
    shown = f"[{host}]" if ":" in host else host
    # Bound before the address is announced, so a port in use is one line and exit 2, not a URL
    # that answers nothing followed by uvicorn's error.
    try:
        listener = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as exc:
        why = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        raise ConfigError(
            f"cannot listen on {shown}:{port}: {why}: stop what uses it or pass --listen HOST:PORT"
        ) from None
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    print(f"dashboard: http://{shown}:{port}/ (central log {redact(db)}); Ctrl-C stops it", file=sys.stderr)
    server = uvicorn.Server(uvicorn.Config(create_app(config, places), log_level="warning", access_log=False))
    with listener:
        server.run(sockets=[listener])
    return 0


def cmd_hash_password(args: argparse.Namespace) -> int:
    from central.config import hash_secret

    if sys.stdin.isatty():
        import getpass

        secret = getpass.getpass("password or token: ")
    else:
        secret = sys.stdin.readline().rstrip("\r\n")
    if len(secret) < 8:
        raise ConfigError("the password or token is shorter than 8 characters")
    print(hash_secret(secret))
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
        help="print the central log as JSON lines, CSV or XLSX",
        description=(
            "Print the central log's hourly records, oldest first: JSON lines are exactly the MQTT\n"
            "payloads (keys sorted), so they compare line for line with `aicctv edge export`; with\n"
            "--tz they gain local_start and timezone. CSV (with a byte-order mark, for spreadsheets)\n"
            "and XLSX (real date cells) carry the UTC hour and its local start, in --tz or else each\n"
            "device's configured zone ([devices.<id>] / [sites.<name>] / [display] timezone)."
        ),
        epilog=(
            "examples:\n"
            "  aicctv central export --format csv > hours.csv\n"
            "  aicctv central export --format csv --delimiter ';' --tz Europe/Berlin > hours.csv\n"
            "  aicctv central export --format xlsx > hours.xlsx\n"
            "  aicctv central export --db postgresql://aicctv@db.local/aicctv --device shop-1 \\\n"
            "      --since 2026-01-05T00:00:00Z --until 2026-01-05T23:00:00Z\n\n"
            "exit status: 0 printed, 1 database unreadable, 2 no such log or usage error"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _config_options(export, ("storage.db",))
    export.add_argument("--device", metavar="D", help="only this device")
    hour_range_options(export)
    export.add_argument(
        "--format", choices=ALL_FORMATS, default="json", help="json lines (default), csv, or xlsx (to a file)"
    )
    export.add_argument(
        "--tz",
        type=_zone_option,
        metavar="ZONE",
        help="local times in this IANA zone, e.g. Asia/Seoul (overrides the config)",
    )
    export.add_argument(
        "--delimiter", type=_delimiter, default=",", metavar="C", help="CSV field separator, e.g. ';' (default ',')"
    )
    export.set_defaults(func=cmd_export)

    serve = sub.add_parser(
        "serve",
        help="the owner's dashboard and read-only JSON API over the central log",
        description=(
            "Serve the dashboard (Now, Day/Week/Month, Devices, Log) and the read-only JSON API\n"
            "(/api/v1/, see docs/api.md), /healthz and /metrics (Prometheus) from the central log,\n"
            "in SQLite or PostgreSQL. Listens on 127.0.0.1:8080 by default; any other address needs\n"
            "web.password_hash or web.token_hash (aicctv central hash-password). Stops on Ctrl-C."
        ),
        epilog=(
            "examples:\n"
            "  aicctv central serve --db aicctv-central.db\n"
            "  aicctv central serve --config /etc/aicctv/central.toml --listen 0.0.0.0:8080\n\n"
            "exit status: 0 stopped, 2 bad configuration or usage (also: a non-local --listen\n"
            "without a credential, or an address already in use)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _config_options(serve, ("storage.db", "web.listen"))
    serve.add_argument("--print-config", action="store_true", help="print the effective configuration as TOML and exit")
    serve.set_defaults(func=cmd_serve)

    hash_password = sub.add_parser(
        "hash-password",
        help="hash a dashboard password or token (read from stdin) for web.password_hash / web.token_hash",
        description=(
            "Read a password or token (one line) from stdin and print its scrypt hash for\n"
            'central.toml: [web] password_hash = "…" (HTTP basic, user web.username) or\n'
            'token_hash = "…" (Authorization: Bearer …). Only the hash is stored.'
        ),
        epilog="example:\n  printf '%s' \"$PASSWORD\" | aicctv central hash-password",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    hash_password.set_defaults(func=cmd_hash_password)

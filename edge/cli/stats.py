"""`aicctv stats`: hourly visitor tables, and a bar chart, from the edge's log or the central log.

Both logs keep one row per device-hour in a table `hourly` whose `record` column holds the
contract's canonical JSON (`HourlyRecord`) and whose `hour` column the contract's hour string, so
one reader serves an edge's SQLite file, the central SQLite file and the central PostgreSQL
database alike. Everything but `read_hourly` is a pure function of the records.
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys
from collections.abc import Iterable, Sequence
from datetime import tzinfo
from pathlib import Path

from central.config import POSTGRES_SCHEMES, check_db
from edge.cli.common import EXIT_FAILED, hour_range_options
from edge.cli.records import by_device, hour_label, hours_between
from edge.wire.config import ConfigError, redact
from edge.wire.contract import AGE_BANDS, GENDERS, ContractError, HourlyRecord
from edge.wire.export import percent_covered
from edge.wire.sqlite import decode_record, hourly_query

log = logging.getLogger("aicctv.stats")

PARTIAL_MARK = "*"
WHAT_TO_PASS = "pass --db an edge log (its storage.db), the central SQLite log or a postgresql:// URL"


class LogError(RuntimeError):
    """The log exists but could not be read (server down, I/O error): a runtime failure."""


# ---- reading -------------------------------------------------------------------------------


def read_hourly(
    db: str, device: str | None = None, since: str | None = None, until: str | None = None
) -> list[HourlyRecord]:
    """Records for hours in [since, until] (hour strings), of one device or all, oldest first.
    `db` is a SQLite file (opened read-only) or a postgresql:// URL.
    Raises ConfigError when `db` is not a log at all, LogError when reading it fails."""
    check_db(db, "--db")
    if db.startswith(POSTGRES_SCHEMES):
        # ::text: the central log may keep `record` as JSONB, which psycopg would hand back parsed.
        query, params = hourly_query(device, since, until, column="record::text")
        texts = _postgres_texts(db, query.replace("?", "%s"), params)
    else:
        texts = _sqlite_texts(Path(db), *hourly_query(device, since, until))
    records = []
    for text in texts:
        try:
            records.append(decode_record(text))
        except ContractError as exc:
            # One damaged or future-schema row must not hide every other hour of the log.
            log.warning("skipping an unreadable hourly record: %s", exc)
    return records


def _sqlite_texts(path: Path, query: str, params: list[str]) -> list[str]:
    if not path.is_file():
        raise ConfigError(f"no log at {redact(str(path))}: {WHAT_TO_PASS}")
    try:
        # Read-only: stats must never create, migrate or lock a log that a daemon is writing
        # (WAL lets this reader run beside that writer).
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise LogError(f"cannot open {path}: {exc}") from None
    try:
        _check_columns(path, {row[1] for row in conn.execute("PRAGMA table_info(hourly)")})
        return [row[0] for row in conn.execute(query, params)]
    except sqlite3.OperationalError as exc:
        raise LogError(f"cannot read {path}: {exc}") from None
    except sqlite3.DatabaseError as exc:
        # "file is not a database" and the like: the user pointed at the wrong file.
        raise ConfigError(f"{path} is not a readable SQLite log ({exc}): {WHAT_TO_PASS}") from None
    finally:
        conn.close()


def _postgres_texts(url: str, query: str, params: list[str]) -> list[str]:
    try:
        import psycopg  # only the central log at scale needs it
    except ImportError:
        raise ConfigError("reading PostgreSQL needs psycopg: pip install 'aicctv[central]'") from None
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            conn.read_only = True
            columns = conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'hourly'"
                " AND table_schema = ANY (current_schemas(false))"
            ).fetchall()
            if not columns:
                # information_schema lists only what the role may use: a table it may not read is absent.
                raise ConfigError(
                    f"{redact(url)} has no table 'hourly' that this role may read: {WHAT_TO_PASS}, "
                    "or GRANT SELECT ON hourly to the role"
                )
            _check_columns(redact(url), {row[0] for row in columns})
            return [row[0] for row in conn.execute(query, params)]
    except psycopg.Error as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LogError(f"cannot read {redact(url)}: {first_line}") from None


def _check_columns(where: object, columns: set[str]) -> None:
    if not {"device", "hour", "record"} <= columns:
        found = "no table 'hourly'" if not columns else "a table 'hourly' without device, hour and record columns"
        raise ConfigError(f"{where} has {found}: {WHAT_TO_PASS}")


# ---- tables --------------------------------------------------------------------------------


def zone_label(tz: tzinfo | None) -> str:
    return "UTC" if tz is None else str(getattr(tz, "key", tz))


def _coverage_cell(coverage: float) -> str:
    return percent_covered(coverage) + (PARTIAL_MARK if coverage < 1 else " ")


def _row(label: str, visitors: int, coverage: float, dwell_s: float, counts: dict[str, dict[str, int]]) -> list[str]:
    bands = [str(counts[gender][band]) for gender in GENDERS for band in AGE_BANDS]
    return [label, str(visitors), _coverage_cell(coverage), f"{dwell_s:.1f}s", *bands]


def _total_row(records: Sequence[HourlyRecord]) -> list[str]:
    visitors = sum(r.visitors for r in records)
    # Coverage over the whole span, hours without any record counting as 0: how complete the
    # data is. Dwell weighted by visitors, because each hour's mean is over its own visitors.
    span = hours_between(records[0].hour, records[-1].hour)
    coverage = sum(r.coverage for r in records) / span
    dwell = sum(r.mean_dwell_s * r.visitors for r in records) / visitors if visitors else 0.0
    counts = {g: {b: sum(r.counts[g][b] for r in records) for b in AGE_BANDS} for g in GENDERS}
    return _row(f"total ({span} h)", visitors, coverage, dwell, counts)


def device_table(records: Sequence[HourlyRecord], tz: tzinfo | None = None) -> str:
    """One device's hours as an aligned table: a line per hour, a line per run of hours without
    a record (the device was off or its log lost them), and a totals line. Hours are labelled
    with their UTC start, or with their local start in `tz`."""
    header = [f"hour ({zone_label(tz)})", "visitors", "coverage", "dwell", *AGE_BANDS, *AGE_BANDS]
    lines: list[list[str] | str] = []
    previous: HourlyRecord | None = None
    for record in records:
        if previous is not None and (missing := hours_between(previous.hour, record.hour) - 2) > 0:
            lines.append(f"  … {missing} hour{'s' if missing > 1 else ''} without a record …")
        lines.append(
            _row(hour_label(record.hour, tz), record.visitors, record.coverage, record.mean_dwell_s, record.counts)
        )
        previous = record
    total = _total_row(records)
    cells = [header, total, *(line for line in lines if isinstance(line, list))]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    # Two spaces between columns, one between the age bands of a gender, to keep lines short.
    seps = ["", "  ", "  ", "  ", *(["  "] + [" "] * (len(AGE_BANDS) - 1)) * len(GENDERS)]

    def aligned(row: list[str]) -> str:
        # The coverage cell carries its own trailing mark column, so right-aligning keeps the
        # digits lined up whether or not a row is marked partial.
        cells = [row[0].ljust(widths[0]), *(cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True))]
        return "".join(sep + cell for sep, cell in zip(seps, cells, strict=True))

    head = aligned(header)
    # A line naming the gender above each group of age-band columns.
    band_start = sum(widths[:4]) + 2 * 4
    group_width = sum(widths[4 : 4 + len(AGE_BANDS)]) + len(AGE_BANDS) - 1
    groups = " " * band_start + "  ".join(gender.center(group_width, "-") for gender in GENDERS)
    first, last = records[0], records[-1]
    partial = sum(r.coverage < 1 for r in records)
    out = [
        f"{first.device}: {len(records)} {'hour' if len(records) == 1 else 'hours'} recorded, "
        f"{hour_label(first.hour, tz)} to {hour_label(last.hour, tz)} {zone_label(tz)}",
        groups,
        head,
        *(aligned(line) if isinstance(line, list) else line for line in lines),
        "-" * len(head),
        aligned(total),
    ]
    if partial:
        out.append(f"{PARTIAL_MARK} partial hour ({partial}): the pipeline ran for only part of it (coverage < 100%)")
    aged = {b: sum(r.without_gender[b] for r in records) for b in AGE_BANDS}
    if any(aged.values()):
        bands = ", ".join(f"{b} {n}" for b, n in aged.items() if n)
        out.append(f"not in the table, no gender (not sure) but an age read: {sum(aged.values())} ({bands})")
    return "\n".join(out)


def tables(records: Iterable[HourlyRecord], tz: tzinfo | None = None, zones: dict[str, tzinfo] | None = None) -> str:
    """Every device's table, separated by a blank line; in `tz`, or per device in `zones`."""
    groups = by_device(records)
    return "\n\n".join(device_table(group, (zones or {}).get(device, tz)) for device, group in groups.items())


# ---- command -------------------------------------------------------------------------------


def cmd_stats(args: argparse.Namespace) -> int:
    if args.plot is not None and args.plot.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise ConfigError(f"--plot {args.plot}: name a .png (or .jpg) file")
    try:
        records = read_hourly(args.db, args.device, args.since, args.until)
        if not records:
            which = f"device {args.device}" if args.device else "any device"
            print(f"no hourly records for {which} in that range of {redact(args.db)}", file=sys.stderr)
            return 0
        print(tables(records, *_zones(args)))
        if args.plot is not None:
            try:
                from edge.cli.plot import plot
            except ImportError:
                needs = "--plot draws with OpenCV, not in a central install: pip install 'aicctv[edge]'"
                raise ConfigError(needs) from None
            try:
                width, height = plot(records, args.plot)
            except OSError as exc:
                # Only the plot's own write: a closed stdout (| head) must end as it does elsewhere.
                raise LogError(str(exc)) from None
            print(f"\nplot: {args.plot} ({width}x{height})")
    except LogError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _zones(args: argparse.Namespace) -> tuple[tzinfo | None, dict[str, tzinfo]]:
    """--tz for every device; else, with --config, each device's configured zone; else UTC."""
    if args.tz is not None:
        return args.tz, {}
    if args.config is None:
        return None, {}
    from central.config import load_central

    _, places = load_central(args.config)
    devices = set(places.devices)
    return places.local().tz, {device: places.local(device).tz for device in devices}


def _zone_option(text: str) -> tzinfo:
    from central.localtime import zone

    try:
        return zone(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_commands(commands: argparse._SubParsersAction) -> None:
    stats = commands.add_parser(
        "stats",
        help="hourly visitor tables (and a chart) from an edge or central log",
        description=(
            "Print hourly visitors by gender and age band, one table per device, from the edge's\n"
            "local SQLite log, the central SQLite log, or the central PostgreSQL database (read-only,\n"
            "safe beside a running daemon). Partial hours (coverage < 100%) are marked with *."
        ),
        epilog=(
            "examples:\n"
            "  aicctv stats --db aicctv-edge.db\n"
            "  aicctv stats --db central.db --device shop-1 --since 2026-01-05T00:00Z --until 2026-01-05T23:00Z\n"
            "  aicctv stats --db postgresql://aicctv@db.local/aicctv --plot week.png\n"
            "  aicctv stats --db central.db --tz Asia/Seoul       hours labelled in local time\n"
            "  aicctv stats --db central.db --config central.toml each device's configured zone\n\n"
            "exit status: 0 ok (also when no record matches), 1 the log could not be read,\n"
            "2 usage error (no such log, not a log, bad option)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stats.add_argument("--db", required=True, metavar="FILE|URL", help="SQLite log file or postgresql:// URL")
    stats.add_argument("--device", metavar="D", help="only this device (default: every device in the log)")
    hour_range_options(stats)
    stats.add_argument("--plot", type=Path, metavar="PNG", help="also draw hourly visitors per device into this image")
    stats.add_argument(
        "--tz",
        type=_zone_option,
        metavar="ZONE",
        help="label hours with their local start in this IANA zone, e.g. Asia/Seoul (default: UTC, or --config's)",
    )
    stats.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="central.toml: label each device's hours in its configured zone ([devices.<id>], [display])",
    )
    stats.set_defaults(func=cmd_stats)

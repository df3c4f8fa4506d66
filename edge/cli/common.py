"""What several commands share: time and hour-range arguments, --config/--set, exit codes."""

from __future__ import annotations

import argparse
import math
from datetime import datetime
from pathlib import Path

from edge.wire.contract import EARLIEST_TIME, LATEST_TIME, hour_start

EXIT_FAILED = 1
EXIT_USAGE = 2


def _instant(text: str) -> float:
    """Unix time of an ISO 8601 instant with a zone; -inf or inf for one no Unix time can hold."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time like 2026-01-05T09:00:00Z") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone: add Z for UTC (2026-01-05T09:00:00Z)")
    try:
        return moment.timestamp()
    except (OverflowError, ValueError):  # year 1 or 9999, moved into UTC
        return -math.inf if moment.year < 2000 else math.inf


def parse_instant(text: str) -> float:
    """Unix time of an ISO 8601 instant with a zone, e.g. 2026-01-05T09:00:00Z, in the years
    hourly records may hold (edge/wire/contract.py): others would be refused by central for good,
    and a replay started decades off would fill every hour between it and today."""
    instant = _instant(text)
    if not EARLIEST_TIME <= instant < LATEST_TIME:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 2020 and 2099, the years hourly records may hold")
    return instant


def _assignment(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or "." not in key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected SECTION.KEY=VALUE, e.g. vision.threads=2")
    return key.strip(), value


def config_options(parser: argparse.ArgumentParser, file_help: str, set_example: str) -> argparse._ArgumentGroup:
    """--config and --set (any setting), in a group the caller adds its settings' flags to."""
    group = parser.add_argument_group("configuration (flags override environment, which overrides the file)")
    group.add_argument("--config", type=Path, metavar="FILE", help=file_help)
    group.add_argument(
        "--set",
        type=_assignment,
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help=f"any setting, e.g. --set {set_example} (repeatable)",
    )
    return group


def hour_filter(text: str) -> str:
    """An hour bound for exports: any ISO 8601 instant, as the hour string the logs sort by. One
    outside the years records may hold (which no hour string can name) is a string sorting
    before or after every hour: "0000" or "9999"."""
    instant = _instant(text)
    if instant < EARLIEST_TIME:
        return "0000"
    return "9999" if instant >= LATEST_TIME else hour_start(instant)


def hour_range_options(parser: argparse.ArgumentParser) -> None:
    """--since and --until, as hour bounds: any ISO 8601 instant with a zone, inclusive."""
    parser.add_argument("--since", type=hour_filter, metavar="T", help="first hour to include (ISO 8601 with zone)")
    parser.add_argument("--until", type=hour_filter, metavar="T", help="last hour to include (ISO 8601 with zone)")

"""The hourly records as `aicctv stats` tabulates them and `stats --plot` draws them: grouped per
device, hours labelled and counted. Pure functions of the contract's records and hour strings."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, tzinfo

from edge.wire.contract import HourlyRecord, parse_hour


def by_device(records: Iterable[HourlyRecord]) -> dict[str, list[HourlyRecord]]:
    """Records grouped per device, each list ordered by hour."""
    groups: dict[str, list[HourlyRecord]] = {}
    for record in sorted(records, key=lambda r: (r.device, r.hour)):
        groups.setdefault(record.device, []).append(record)
    return groups


def hour_label(hour: str, tz: tzinfo | None = None) -> str:
    """'2026-01-05 09:00' in UTC, or the hour's local start in `tz` (09:30 in a half-hour zone)."""
    if tz is None:
        return hour[:10] + " " + hour[11:16]
    return datetime.fromtimestamp(parse_hour(hour), UTC).astimezone(tz).strftime("%Y-%m-%d %H:%M")


def hours_between(first: str, last: str) -> int:
    """How many hours from the start of `first` to the end of `last`."""
    return round((parse_hour(last) - parse_hour(first)) / 3600) + 1


def classified(record: HourlyRecord, gender: str) -> int:
    return sum(record.counts[gender].values())

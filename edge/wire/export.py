"""Hourly records as JSON lines, CSV or XLSX: one format for the edge's log and the central log, so
the two can be compared line for line (JSON lines are exactly the MQTT payloads, keys sorted).

Given a time zone (`tz`, as `aicctv central export` always gives one) CSV and XLSX also carry
each hour's local start and the zone's name, CSV starts with a byte-order mark (so spreadsheets
read it as UTF-8), and JSON lines gain `local_start` and `timezone` (only then: without `tz` they
stay the contract's payloads). XLSX needs XlsxWriter, a central-side dependency.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from datetime import UTC, datetime, tzinfo
from typing import BinaryIO, TextIO

from edge.wire.contract import AGE_BANDS, GENDERS, HourlyRecord, encode, parse_hour

FORMATS = ("json", "csv")
ALL_FORMATS = ("json", "csv", "xlsx")
BOM = "\ufeff"
COUNT_FIELDS = tuple(f"{gender}_{band}" for gender in GENDERS for band in AGE_BANDS)
CSV_FIELDS = ("device", "hour", "visitors", "revision", "frames", "coverage", "mean_dwell_s", *COUNT_FIELDS)
# With a time zone: the hour's local start (ISO 8601 with its offset) and the zone, after the UTC hour.
LOCAL_FIELDS = ("local_start", "timezone")
LOCAL_CSV_FIELDS = (*CSV_FIELDS[:2], *LOCAL_FIELDS, *CSV_FIELDS[2:])


def percent_covered(coverage: float) -> str:
    """Coverage as people read it, the same in `aicctv stats` and on the dashboard: floored, so
    that only a complete hour shows 100%, but a few seconds of footage (a short replay) is not
    nothing, so it shows as <1% rather than 0%."""
    return "<1%" if 0 < coverage < 0.01 else f"{int(coverage * 100)}%"


def local_start(record: HourlyRecord, tz: tzinfo) -> datetime:
    return datetime.fromtimestamp(parse_hour(record.hour), UTC).astimezone(tz)


def zone_name(tz: tzinfo) -> str:
    return str(getattr(tz, "key", None) or tz)


def _values(record: HourlyRecord) -> list:
    r = record
    counts = [r.counts[gender][band] for gender in GENDERS for band in AGE_BANDS]
    return [r.device, r.hour, r.visitors, r.revision, r.frames, r.coverage, r.mean_dwell_s, *counts]


def json_line(record: HourlyRecord, tz: tzinfo | None = None) -> str:
    """The record's JSON: the MQTT payload (keys sorted), plus local_start and timezone given `tz`."""
    if tz is None:
        return encode(record).decode()
    fields = json.loads(encode(record)) | {
        "local_start": local_start(record, tz).isoformat(),
        "timezone": zone_name(tz),
    }
    return json.dumps(fields, separators=(",", ":"), sort_keys=True)


def write_records(
    records: Iterable[HourlyRecord],
    fmt: str,
    out: TextIO,
    tz: tzinfo | None = None,
    delimiter: str = ",",
    zones: dict[str, tzinfo] | None = None,
) -> int:
    """Write records in `fmt` ('json' lines or 'csv' with a header); returns how many. With `tz`
    (or, per device, `zones`, falling back to `tz`) the local start and zone are added."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
    local = tz is not None or bool(zones)
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n") if fmt == "csv" else None
    if writer:
        if local:
            out.write(BOM)
        writer.writerow(LOCAL_CSV_FIELDS if local else CSV_FIELDS)
    written = 0
    for record in records:
        zone = (zones or {}).get(record.device, tz)
        if writer:
            row = _values(record)
            if zone is not None:
                row[2:2] = [local_start(record, zone).isoformat(), zone_name(zone)]
            writer.writerow(row)
        else:
            out.write(json_line(record, zone) + "\n")
        written += 1
    return written


def write_xlsx(
    records: Iterable[HourlyRecord], out: BinaryIO, tz: tzinfo, zones: dict[str, tzinfo] | None = None
) -> int:
    """Write records as an XLSX workbook: one sheet, a header row, the UTC hour and the local start
    as real date cells (spreadsheets have no time zones: the local start is the wall-clock time,
    its zone in the next column), coverage as a percentage. Returns how many."""
    try:
        import xlsxwriter
    except ImportError:
        raise RuntimeError("XLSX export needs XlsxWriter: pip install 'aicctv[central]'") from None
    workbook = xlsxwriter.Workbook(out, {"in_memory": True, "remove_timezone": True})
    sheet = workbook.add_worksheet("hourly")
    bold = workbook.add_format({"bold": True})
    when = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm"})
    percent = workbook.add_format({"num_format": "0%"})
    for col, name in enumerate(LOCAL_CSV_FIELDS):
        sheet.write(0, col, name, bold)
    written = 0
    for row, record in enumerate(records, start=1):
        zone = (zones or {}).get(record.device, tz)
        values = _values(record)
        start = local_start(record, zone)
        sheet.write_string(row, 0, record.device)
        sheet.write_datetime(row, 1, datetime.fromtimestamp(parse_hour(record.hour), UTC).replace(tzinfo=None), when)
        sheet.write_datetime(row, 2, start.replace(tzinfo=None), when)
        sheet.write_string(row, 3, zone_name(zone))
        for col, value in enumerate(values[2:], start=4):
            sheet.write_number(row, col, value, percent if LOCAL_CSV_FIELDS[col] == "coverage" else None)
        written += 1
    sheet.set_column(0, 0, 14)
    sheet.set_column(1, 2, 17)
    sheet.set_column(3, 3, 16)
    sheet.freeze_panes(1, 0)
    sheet.autofilter(0, 0, max(written, 1), len(LOCAL_CSV_FIELDS) - 1)
    workbook.close()
    return written

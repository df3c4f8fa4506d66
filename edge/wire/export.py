"""Hourly records as JSON lines or CSV: one format for the edge's log and the central log, so the
two can be compared line for line (JSON lines are exactly the MQTT payloads, keys sorted)."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import TextIO

from edge.wire.contract import AGE_BANDS, GENDERS, HourlyRecord, encode

FORMATS = ("json", "csv")
CSV_FIELDS = (
    "device",
    "hour",
    "visitors",
    "revision",
    "frames",
    "coverage",
    "mean_dwell_s",
    *(f"{gender}_{band}" for gender in GENDERS for band in AGE_BANDS),
)


def write_records(records: Iterable[HourlyRecord], fmt: str, out: TextIO) -> int:
    """Write records in `fmt` ('json' lines or 'csv' with a header); returns how many."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
    writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
    if writer:
        writer.writerow(CSV_FIELDS)
    written = 0
    for record in records:
        if writer:
            r = record
            counts = [r.counts[gender][band] for gender in GENDERS for band in AGE_BANDS]
            writer.writerow([r.device, r.hour, r.visitors, r.revision, r.frames, r.coverage, r.mean_dwell_s, *counts])
        else:
            out.write(encode(record).decode() + "\n")
        written += 1
    return written

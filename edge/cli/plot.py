"""`aicctv stats --plot`: hourly visitors per device as a stacked bar chart, drawn with OpenCV
(which an edge has anyway; a central-only install has no OpenCV and says so)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from edge.cli.records import by_device, classified, hour_label, hours_between
from edge.wire.contract import HourlyRecord, hour_start, parse_hour

# BGR. Colour-blind-safe pair (orange / blue, Okabe-Ito) for the genders.
FEMALE, MALE, UNCLASSIFIED = (0, 159, 230), (178, 114, 0), (180, 180, 180)
NO_RECORD, PARTIAL, INK, GRID, PAPER = (235, 235, 235), (40, 40, 210), (40, 40, 40), (220, 220, 220), (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX
PANEL_H, LEFT, RIGHT, TOP, BOTTOM = 340, 70, 24, 64, 62
LABEL_STEPS = (1, 2, 3, 4, 6, 12, 24, 48, 168, 336, 672)  # hours: divisors of a day, then whole days


def nice_step(top: float, ticks: int = 5) -> int:
    """A 1, 2 or 5 × 10^k step giving about `ticks` gridlines up to `top`."""
    raw = max(top / ticks, 1)
    magnitude = 10 ** int(np.floor(np.log10(raw)))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)


def _text(
    image: np.ndarray,
    text: str,
    x: float,
    y: float,
    scale: float = 0.45,
    align: str = "left",
    color: tuple[int, int, int] = INK,
    thickness: int = 1,
) -> None:
    """Text vertically centred on y, its left edge, centre or right edge at x."""
    (width, height), _ = cv2.getTextSize(text, FONT, scale, thickness)
    dx = {"left": 0, "center": width / 2, "right": width}[align]
    cv2.putText(image, text, (round(x - dx), round(y + height / 2)), FONT, scale, color, thickness, cv2.LINE_AA)


def _legend(image: np.ndarray, right: int, y: int) -> None:
    entries = [
        ("female", FEMALE),
        ("male", MALE),
        ("unclassified", UNCLASSIFIED),
        ("no record", NO_RECORD),
        ("partial hour", PARTIAL),
    ]
    x = right
    for label, colour in reversed(entries):
        (width, _), _ = cv2.getTextSize(label, FONT, 0.42, 1)
        x -= width
        _text(image, label, x, y, 0.42)
        x -= 18
        if colour == PARTIAL:
            cv2.circle(image, (x + 6, y), 4, colour, -1, cv2.LINE_AA)
        else:
            cv2.rectangle(image, (x, y - 6), (x + 12, y + 6), colour, -1)
            cv2.rectangle(image, (x, y - 6), (x + 12, y + 6), INK, 1)
        x -= 16


def _panel(image: np.ndarray, top: int, device: str, records: list[HourlyRecord], first: str, slots: int) -> None:
    width = image.shape[1]
    x0, x1, y0, y1 = LEFT, width - RIGHT, top + TOP, top + PANEL_H - BOTTOM
    slot_w = (x1 - x0) / slots
    start = parse_hour(first)
    by_slot = {round((parse_hour(r.hour) - start) / 3600): r for r in records}
    peak = max((r.visitors for r in records), default=0)
    step = nice_step(peak)
    y_max = max(step, -(-peak // step) * step)

    def y_of(value: float) -> int:
        return round(y1 - value / y_max * (y1 - y0))

    last = hour_label(hour_start(start + (slots - 1) * 3600))
    total = sum(r.visitors for r in records)
    _text(image, f"{device}   {hour_label(first)} to {last} UTC   {total:,} visitors", x0, top + 18, 0.6, thickness=2)
    _legend(image, x1, top + 44)
    _text(image, "visitors per hour", x0 - 60, top + 44, 0.42)
    for value in range(0, y_max + 1, step):
        cv2.line(image, (x0, y_of(value)), (x1, y_of(value)), GRID, 1)
        _text(image, str(value), x0 - 8, y_of(value), 0.42, align="right")
    for slot in range(slots):
        left, right = x0 + slot * slot_w, x0 + (slot + 1) * slot_w
        record = by_slot.get(slot)
        if record is None:
            cv2.rectangle(image, (round(left), y0), (round(right), y1), NO_RECORD, -1)
            continue
        # A bar fills most of its slot; thin slots (long ranges) get the whole slot.
        pad = slot_w * 0.12 if slot_w >= 6 else 0
        female, male = classified(record, "female"), classified(record, "male")
        base = 0
        for value, colour in ((female, FEMALE), (male, MALE), (record.visitors - female - male, UNCLASSIFIED)):
            if value:
                cv2.rectangle(
                    image, (round(left + pad), y_of(base + value)), (round(right - pad) - 1, y_of(base)), colour, -1
                )
            base += value
        if record.coverage < 1:
            cv2.circle(image, (round((left + right) / 2), y1 + 8), 3, PARTIAL, -1, cv2.LINE_AA)
    cv2.line(image, (x0, y1), (x1, y1), INK, 1)
    cv2.line(image, (x0, y0), (x0, y1), INK, 1)
    # Label every k-th hour, k the smallest step leaving room for "HH:00" under each label.
    every = next((k for k in LABEL_STEPS if k * slot_w >= 46), LABEL_STEPS[-1])
    shown_date = None
    for slot in range(slots):
        moment = datetime.fromtimestamp(start + slot * 3600, UTC)
        if (moment.hour + 24 * moment.toordinal()) % every:
            continue
        x = x0 + (slot + 0.5) * slot_w
        cv2.line(image, (round(x), y1), (round(x), y1 + 4), INK, 1)
        if every >= 24:  # labels fall on midnights: the date alone says it
            _text(image, moment.strftime("%b %d"), x, y1 + 22, 0.4, align="center")
            continue
        _text(image, moment.strftime("%H:00"), x, y1 + 22, 0.4, align="center")
        if moment.date() != shown_date:
            _text(image, moment.strftime("%b %d"), x, y1 + 40, 0.4, align="center", color=(90, 90, 90))
            shown_date = moment.date()
    _text(image, "hour (UTC)", x1, top + PANEL_H - 8, 0.42, align="right")


def plot(records: Iterable[HourlyRecord], path: str | Path) -> tuple[int, int]:
    """Stacked hourly bars (female, male, unclassified) per device, one panel each, on a shared
    hour axis so devices line up; hours without a record shaded, partial hours dotted. Written
    where `path` says (format from its extension); returns the image's (width, height)."""
    groups = by_device(records)
    if not groups:
        raise ValueError("nothing to plot: no hourly records")
    first = min(g[0].hour for g in groups.values())
    slots = hours_between(first, max(g[-1].hour for g in groups.values()))
    # About 22 px an hour, within what a screen or a report page shows without scrolling.
    width = int(np.clip(LEFT + RIGHT + slots * 22, 720, 1800))
    image = np.full((PANEL_H * len(groups), width, 3), PAPER, np.uint8)
    for i, (device, group) in enumerate(groups.items()):
        _panel(image, i * PANEL_H, device, group, first, slots)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write the plot to {path}")
    return width, image.shape[0]

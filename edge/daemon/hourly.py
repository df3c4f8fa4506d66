"""Hourly aggregation: frames and visitors in, one `HourlyRecord` per device-hour out.

Pure and clock-free (time comes from frame timestamps), so it is tested without a camera and
replays of old footage aggregate exactly as live video would. A visitor counts in the hour they
were first seen. An hour is closed `grace_s` after it ends; a visitor who ends later but began in
a closed hour updates that hour as a new revision (the contract's revision rule). Hours with no
frames at all (device down, camera lost) between two known hours get records too, with coverage
0, so the central log has no silent holes (up to a year of them: a longer gap is a clock jump).
`snapshot()`/`restore()` carry the open hours across a restart of the daemon.

An hour's age bands are its visitors' band probabilities summed and rounded to whole visitors
(`apportion`), not each visitor's likeliest band counted: on real photos a single face's band is
right about 6 times in 10, and counting likeliest bands piles people into the commonest band
(20-29). On FairFace's 4,996 val photos the summed probabilities read 2.3 % of people into a
wrong band, the likeliest bands 11.0 % (run 18+22; MODEL_CARD.md, "The age mix an owner reads"). One visitor
alone in an hour still gets their likeliest band.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from edge.vision.analyzer import Visitor
from edge.wire.contract import AGE_BANDS, GENDERS, HourlyRecord, empty_counts, hour_of, hour_start

HOUR = 3600.0
# Closed hours kept (and snapshotted) this long after they end, for late-visitor revisions.
KEEP_CLOSED_S = 2 * HOUR
# The longest gap filled with coverage-0 hours, back from the hour that ends it. A longer one is a
# clock that jumped (a board booted in 1970, a replay started decades off), and filling it would
# build millions of hours in memory; a device really off that long leaves the older hours as a hole.
MAX_FILLED_S = 366 * 24 * HOUR


def apportion(masses: Sequence[float], total: int) -> list[int]:
    """`total` whole visitors shared among the bands in proportion to `masses` (largest remainder:
    each band gets its quota rounded down, then the bands with the largest remainders one more,
    the earlier band first on a tie). Every band ends within one of its quota."""
    weight = math.fsum(masses)
    if total <= 0 or weight <= 0:
        return [0] * len(masses)
    quotas = [m * total / weight for m in masses]
    counts = [math.floor(q) for q in quotas]
    by_remainder = sorted(range(len(masses)), key=lambda i: counts[i] - quotas[i])
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _by_band(masses: Sequence[float], total: int) -> dict[str, int]:
    return dict(zip(AGE_BANDS, apportion(masses, total), strict=True))


def _as_counted(counts: dict[str, dict[str, int]]) -> dict[str, list[float]]:
    """Band masses for an hour snapshotted by a daemon that kept none: its visitors as counted."""
    return {gender: [float(counts[gender][band]) for band in AGE_BANDS] for gender in GENDERS}


def _add(masses: list[float], visitor: Visitor, band: str) -> None:
    """Add a visitor's band probabilities (without them: all on their band) to an hour's sums."""
    for i, mass in enumerate(visitor.age_bands or [float(b == band) for b in AGE_BANDS]):
        masses[i] += mass


@dataclass
class _Hour:
    start: float
    visitors: int = 0
    # Judged visitors by gender and their likeliest band; `masses`: their band probabilities
    # summed, which the record's counts are apportioned from.
    counts: dict[str, dict[str, int]] = field(default_factory=empty_counts)
    masses: dict[str, list[float]] = field(default_factory=lambda: _as_counted(empty_counts()))
    dwell_s: float = 0.0
    frames: int = 0
    covered_s: float = 0.0
    revision: int = 0
    closed: bool = False
    unknown: int = 0
    passing: int = 0
    # Of `unknown`: visitors with an age estimate but no gender, and their band probabilities.
    unsure: int = 0
    unsure_masses: list[float] = field(default_factory=lambda: [0.0] * len(AGE_BANDS))


class HourlyTally:
    """One device's hours. `max_gap_s`: a gap between frames longer than this (camera lost, daemon
    down) does not count as covered time."""

    def __init__(self, device: str, max_gap_s: float = 2.0, grace_s: float = 60.0, entry_line: bool = False) -> None:
        self.device = device
        self.entry_line = entry_line
        self.max_gap_s = max_gap_s
        self.grace_s = grace_s
        self.hours: dict[float, _Hour] = {}
        self.last_frame: float | None = None
        self._latest: float | None = None  # start of the latest hour ever created

    def _hour(self, timestamp: float) -> _Hour:
        start = hour_of(timestamp)  # arithmetic, not the contract's strings: this runs every frame
        if start not in self.hours:
            if self._latest is not None and start > self._latest:
                # Fill the hours nobody saw, so they close (with coverage 0) like any other.
                for gap in range(int(max(self._latest + HOUR, start - MAX_FILLED_S)), int(start), int(HOUR)):
                    self.hours.setdefault(float(gap), _Hour(float(gap)))
            self._latest = start if self._latest is None else max(self._latest, start)
            self.hours[start] = _Hour(start)
        return self.hours[start]

    def frame(self, timestamp: float) -> None:
        self._hour(timestamp).frames += 1
        previous, self.last_frame = self.last_frame, timestamp
        if previous is None or not 0 < timestamp - previous <= self.max_gap_s:
            return
        # Credit the interval to the hours it spans (a frame gap can straddle the hour mark).
        t = previous
        while t < timestamp:
            hour = self._hour(t)
            end = min(timestamp, hour.start + HOUR)
            hour.covered_s += end - t
            t = end

    def visitor(self, visitor: Visitor) -> HourlyRecord | None:
        """Count a visitor; returns the revised record if their hour was already closed."""
        hour = self._hour(visitor.first_seen)
        if visitor.entered is False:
            hour.passing += 1  # seen at the door, but did not come in
        else:
            hour.visitors += 1
            hour.dwell_s += visitor.dwell_s
            gender, band = visitor.gender, visitor.age_band
            if gender is not None and band is not None:
                hour.counts[gender][band] += 1
                _add(hour.masses[gender], visitor, band)
            else:
                hour.unknown += 1
                if band is not None:  # their age was read, their gender left "not sure"
                    hour.unsure += 1
                    _add(hour.unsure_masses, visitor, band)
        return self._record(hour) if hour.closed else None

    def visitors_in_hour(self, timestamp: float) -> int:
        hour = self.hours.get(hour_of(timestamp))
        return hour.visitors if hour else 0

    def close(self, now: float, final: bool = False) -> list[HourlyRecord]:
        """Records of hours that ended at least `grace_s` before `now` (all open hours if `final`)."""
        ready = [h for h in self.hours.values() if not h.closed and (final or h.start + HOUR + self.grace_s <= now)]
        for hour in ready:
            hour.closed = True
        for start in [s for s, h in self.hours.items() if h.closed and s + HOUR + KEEP_CLOSED_S < now]:
            del self.hours[start]
        return [self._record(h) for h in sorted(ready, key=lambda h: h.start)]

    def snapshot(self) -> dict:
        """Everything needed to carry on after a restart, as JSON-ready data."""
        return {
            "device": self.device,
            "last_frame": self.last_frame,
            "latest": self._latest,
            "hours": [asdict(h) for h in sorted(self.hours.values(), key=lambda h: h.start)],
        }

    def restore(self, snapshot: dict) -> None:
        if snapshot.get("device") != self.device:
            return  # another device's state (the database was reused under a new id): start afresh
        self.last_frame = snapshot["last_frame"]
        self._latest = snapshot["latest"]
        self.hours = {h["start"]: _Hour(**{"masses": _as_counted(h["counts"]), **h}) for h in snapshot["hours"]}

    def _record(self, hour: _Hour) -> HourlyRecord:
        hour.revision += 1
        return HourlyRecord(
            device=self.device,
            hour=hour_start(hour.start),
            visitors=hour.visitors,
            counts={g: _by_band(hour.masses[g], sum(hour.counts[g].values())) for g in GENDERS},
            mean_dwell_s=round(hour.dwell_s / hour.visitors, 2) if hour.visitors else 0.0,
            frames=hour.frames,
            coverage=round(min(hour.covered_s / HOUR, 1.0), 4),
            revision=hour.revision,
            unknown=hour.unknown,
            unknown_bands=_by_band(hour.unsure_masses, hour.unsure) if hour.unsure else None,
            visitors_in=hour.visitors if self.entry_line else None,
            passing=hour.passing if self.entry_line else None,
        ).validate()

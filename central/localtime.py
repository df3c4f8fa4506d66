"""Local time for the owner: IANA time zones, opening hours, and local days built from UTC hours.

The central log keeps UTC hours (`HourlyRecord.hour`). An owner thinks in local days: a local day
is every UTC hour that *starts* within it, so a day has 23 or 25 hours when the clocks change. In
a zone whose offset is not a whole number of hours (India +05:30, South Australia +09:30/+10:30)
a UTC hour cannot be split: it belongs to the local day and hour in which it starts, labelled
with its local start (09:30), and a local day then runs from 00:30 to 00:30.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge.wire.config import ConfigError
from edge.wire.contract import hour_start, parse_hour

HOUR_S = 3600
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@cache
def zone(name: str) -> ZoneInfo:
    """The IANA zone `name` (e.g. Asia/Seoul, UTC); ValueError naming it when unknown."""
    try:
        if not name or name != name.strip() or name.startswith(("/", ".")) or ".." in name:
            raise ValueError
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin or Asia/Seoul") from None


def check_timezone(value: str, name: str) -> None:
    try:
        zone(value)
    except ValueError as exc:
        raise ConfigError(f"{name} = {value!r}: {exc}") from None


# ---- opening hours ------------------------------------------------------------------------------

_SPAN = re.compile(r"(?P<days>[a-z]{3}(?:-[a-z]{3})?)\s+(?P<start>\d{1,2}:\d{2})-(?P<end>\d{1,2}:\d{2})")


def _minutes(text: str, spec: str) -> int:
    hours, minutes = (int(part) for part in text.split(":"))
    if not (0 <= hours <= 24 and 0 <= minutes < 60) or (hours == 24 and minutes):
        raise ValueError(f"{spec!r}: {text} is not a time of day (00:00 to 24:00)")
    return hours * 60 + minutes


@dataclass(frozen=True)
class OpeningHours:
    """When the premises are open, e.g. "mon-fri 09:00-18:00, sat 10:00-14:00" (comma-separated
    spans of a day or day range and a local time range; "22:00-02:00" runs past midnight into
    the next day). Empty: always open. A day not named is closed all day."""

    # (weekday 0 = Monday, first minute, last minute + 1), minutes counted from that day's 00:00.
    spans: tuple[tuple[int, int, int], ...] = ()
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> OpeningHours:
        spans: list[tuple[int, int, int]] = []
        for part in (p.strip().lower() for p in text.split(",")):
            if not part:
                continue
            match = _SPAN.fullmatch(part)
            if not match:
                raise ValueError(f"{part!r} is not like 'mon-fri 09:00-18:00' (a day or day range, then a time range)")
            first, _, last = match["days"].partition("-")
            for day in (first, last or first):
                if day not in DAYS:
                    raise ValueError(f"{part!r}: unknown day {day!r} (one of {', '.join(DAYS)})")
            start, end = _minutes(match["start"], part), _minutes(match["end"], part)
            if start == end:
                raise ValueError(f"{part!r}: opens and closes at the same time")
            a, b = DAYS.index(first), DAYS.index(last or first)
            days = range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)]
            for day in days:
                # Past midnight: the rest of the night belongs to the next day (minutes beyond 24 h).
                spans.append((day, start, end if end > start else end + 24 * 60))
        if text.strip() and not spans:
            raise ValueError(f"{text!r} names no opening span")
        return cls(tuple(spans), text.strip())

    @property
    def always(self) -> bool:
        return not self.spans

    def open_during(self, start: datetime, minutes: int = 60) -> bool:
        """Whether the premises are open at any time in [start, start + minutes) (local time)."""
        if self.always:
            return True
        for back in (0, 1):  # a span from the day before may run past midnight
            day = start - timedelta(days=back)
            offset = back * 24 * 60 + start.hour * 60 + start.minute
            for weekday, first, end in self.spans:
                if weekday == day.weekday() and offset < end and offset + minutes > first:
                    return True
        return False

    def open_on(self, day: date) -> bool:
        return self.always or any(weekday == day.weekday() for weekday, _, _ in self.spans)


def check_opening_hours(value: str, name: str) -> None:
    try:
        OpeningHours.parse(value)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


# ---- local days -----------------------------------------------------------------------------------


def local_start(hour: str, tz: tzinfo) -> datetime:
    """The local time at which a UTC hour starts (aware)."""
    return datetime.fromtimestamp(parse_hour(hour), UTC).astimezone(tz)


def local_day(hour: str, tz: tzinfo) -> date:
    """The local day a UTC hour belongs to: the one in which it starts."""
    return local_start(hour, tz).date()


def day_start(day: date, tz: tzinfo) -> float:
    """Unix time of local midnight of `day` (the first instant of the day where midnight is skipped)."""
    naive = datetime(day.year, day.month, day.day)
    moment = naive.replace(tzinfo=tz)
    # A zone that skips midnight (e.g. America/Santiago in spring): the day starts at the first
    # existing local time after it, which is what fold=0 resolves to after a round trip.
    return moment.astimezone(UTC).timestamp()


def day_hours(day: date, tz: tzinfo) -> list[str]:
    """The UTC hours that start within the local `day`: 24 on most days, 23 or 25 when the clocks
    change (and 24 hours starting at hh:30 in a half-hour zone)."""
    start, end = day_start(day, tz), day_start(day + timedelta(days=1), tz)
    first = -(-start // HOUR_S) * HOUR_S  # the first UTC hour starting at or after midnight
    return [hour_start(t) for t in _range(first, end)]


def _range(first: float, end: float) -> Iterator[float]:
    t = first
    while t < end:
        yield t
        t += HOUR_S


def today(tz: tzinfo, now: float) -> date:
    return datetime.fromtimestamp(now, UTC).astimezone(tz).date()


def hour_label(start: datetime, repeated: bool = False) -> str:
    """'09:00' (or '09:30' in a half-hour zone); with the zone's abbreviation when the same
    wall-clock hour occurs twice that day (the clocks went back)."""
    text = start.strftime("%H:%M")
    return f"{text} {start.tzname()}" if repeated else text


def iso_local(hour: str, tz: tzinfo) -> str:
    """The local start of a UTC hour in ISO 8601 with its offset, e.g. 2026-01-05T18:00:00+09:00."""
    return local_start(hour, tz).isoformat()

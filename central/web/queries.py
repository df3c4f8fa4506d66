"""What the dashboard reads from the central log, and how it adds hours up into local days.

`Reader` owns one store connection, opened lazily and used from one thread only (SQLite
connections stay on their thread; a PostgreSQL connection serves one query at a time), and
reopens it after a failure, so a database that comes back is used again. Everything else here is
a pure function of what was read, so the pages, the JSON API and the metrics agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta, tzinfo
from typing import Any, TypeVar

from central.config import CentralConfig, Local, Places
from central.localtime import day_hours, hour_label, local_start, today
from central.store import RUNNING_WITHIN_S, UNREADABLE_KEPT, CentralStore, StoreError, open_store
from edge.wire.contract import AGE_BANDS, GENDERS, HourlyRecord, LiveCounts, hour_of, hour_start, parse_hour

T = TypeVar("T")
HOUR_S = 3600
KINDS = ("day", "week", "month")


class Reader:
    """The central log for the web server: `await reader.run(fn, *args)` calls fn(store, *args) on
    the one database thread. Raises StoreError when the database cannot be reached."""

    def __init__(self, db: str) -> None:
        self.db = db
        self._store: CentralStore | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="aicctv-web-db")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._call, fn, args)

    def _call(self, fn: Callable[..., T], args: tuple) -> T:
        try:
            if self._store is not None and self._store.replaced():
                self._drop()  # the path names another file now (a restored backup): read that one
            if self._store is None:
                self._store = open_store(self.db, read_only=True)
            return fn(self._store, *args)
        except StoreError:
            self._drop()
            raise

    def unreadable(self, examples: bool) -> str | None:
        """What the log holds that this version could not decode, as read so far on the current
        connection (None: nothing), with an example row when `examples`."""
        store = self._store
        found = dict(store.unreadable) if store is not None else {}
        if not found:
            return None
        count = f"{len(found)}{'+' if len(found) >= UNREADABLE_KEPT else ''}"
        text = (
            f"{count} row(s) of the central log cannot be read by this aicctv "
            "(written by a newer one, or damaged) and are left out"
        )
        if examples:
            (device, hour), why = min(found.items())
            text += f"; the first: {device} {hour}: {why}"
        return text

    def _drop(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            # The connection may be broken already; a fresh one comes next time.
            with contextlib.suppress(Exception):
                store.close()

    def close(self) -> None:
        self._executor.submit(self._drop).result(10)
        self._executor.shutdown()


def read(store: CentralStore, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
    """A read through the store's own connection and error handling (`?` placeholders)."""
    return store._read(sql, params)  # type: ignore[attr-defined]


def ping(store: CentralStore) -> bool:
    """The log answers and each device's latest record decodes (where a newer writer shows first)."""
    latest_records(store)
    return True


def latest_records(store: CentralStore) -> dict[str, HourlyRecord]:
    """Each device's latest stored record."""
    rows = read(
        store,
        "SELECT h.device, h.hour, h.record FROM hourly h JOIN (SELECT device, max(hour) AS hour FROM hourly"
        " GROUP BY device) m ON h.device = m.device AND h.hour = m.hour",
    )
    return {r.device: r for r in store.decode_rows(rows)}


# ---- snapshots -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Held:
    """One device's hours in the log."""

    first: str
    latest: str
    count: int
    received: float  # when its latest hourly row was written

    @property
    def missing(self) -> int:
        """Hours missing between its first and latest: lost messages (edges publish every hour)."""
        return round((parse_hour(self.latest) - parse_hour(self.first)) / HOUR_S) + 1 - self.count


@dataclass
class Snapshot:
    """Everything the Now page, the Devices page and the metrics show, read at one moment."""

    now: float
    statuses: dict[str, str]
    live: dict[str, tuple[LiveCounts, float]]
    held: dict[str, Held]
    latest: dict[str, HourlyRecord]
    recent: list[HourlyRecord]  # the last two days' records, for today's totals and coverage
    counters: dict[str, int]
    places: Places = field(default_factory=Places)

    @property
    def devices(self) -> list[str]:
        known = set(self.statuses) | set(self.live) | set(self.held) | set(self.places.devices)
        return sorted(known)


def snapshot(store: CentralStore, places: Places, now: float | None = None) -> Snapshot:
    now = time.time() if now is None else now
    held = {
        device: Held(first, latest, count, received)
        for device, first, latest, count, received in read(
            store, "SELECT device, min(hour), max(hour), count(*), max(received) FROM hourly GROUP BY device"
        )
    }
    latest = latest_records(store)
    # Two days and two hours back covers "today" in every zone (UTC-12 to UTC+14).
    recent = store.hourly(since=hour_start(now - 50 * HOUR_S))
    return Snapshot(now, store.statuses(), store.live(), held, latest, recent, store.counters(), places)


def device_state(status: str | None, live_received: float | None, now: float) -> str:
    """online / source-lost / offline as the device last said, or 'silent' when it says online but
    no live counts came for RUNNING_WITHIN_S, or 'unknown' with no status at all."""
    if status == "online" and (live_received is None or now - live_received > RUNNING_WITHIN_S):
        return "silent"
    return status or "unknown"


def live_rows(snap: Snapshot) -> list[dict[str, Any]]:
    """One row per device for the Now page and /api/v1/live."""
    rows = []
    for device in snap.devices:
        local = snap.places.local(device)
        tz = local.tz
        day = today(tz, snap.now)
        hours = set(day_hours(day, tz))
        stored = {r.hour: r for r in snap.recent if r.device == device and r.hour in hours}
        visitors_today = sum(r.visitors for r in stored.values())
        live = snap.live.get(device)
        in_view = visitors_this_hour = None
        live_time = live_received = None
        if live is not None:
            counts, live_received = live
            live_time = counts.time
            # Live counts are at most a couple of minutes old when the device runs; older ones say
            # nothing about now.
            if snap.now - live_received <= RUNNING_WITHIN_S:
                in_view, visitors_this_hour = counts.in_view, counts.visitors_this_hour
                hour = hour_start(counts.time)
                if hour in hours and hour not in stored:
                    visitors_today += counts.visitors_this_hour
        last = snap.latest.get(device)
        held = snap.held.get(device)
        seen = max((t for t in (live_received, held.received if held else None) if t is not None), default=None)
        rows.append(
            {
                "device": device,
                "name": snap.places.label(device),
                "site": snap.places.site_of(device),
                "timezone": local.timezone,
                "status": snap.statuses.get(device),
                "state": device_state(snap.statuses.get(device), live_received, snap.now),
                "in_view": in_view,
                "visitors_this_hour": visitors_this_hour,
                "visitors_today": visitors_today,
                "today": day.isoformat(),
                "live_time": live_time,
                "last_seen": _iso_utc(seen),
                "last_seen_age_s": None if seen is None else round(snap.now - seen, 1),
                "last_hour": None
                if last is None
                else {
                    "hour": last.hour,
                    "local_start": local_start(last.hour, tz).isoformat(),
                    "visitors": last.visitors,
                    "coverage": last.coverage,
                },
            }
        )
    return rows


def health_rows(snap: Snapshot, overdue_after_s: float) -> list[dict[str, Any]]:
    """One row per device for the Devices page and the metrics."""
    rows = []
    day_ago = hour_of(snap.now) - 24 * HOUR_S
    for row in live_rows(snap):
        device = row["device"]
        held = snap.held.get(device)
        last_day = [r for r in snap.recent if r.device == device and parse_hour(r.hour) >= day_ago]
        overdue = 0
        if held is not None and (live := snap.live.get(device)) is not None:
            due = int((snap.now - held.received - overdue_after_s) // HOUR_S)
            if snap.now - live[1] <= RUNNING_WITHIN_S and due >= 1:
                overdue = due
        row |= {
            "first_hour": held.first if held else None,
            "latest_hour": held.latest if held else None,
            "hours": held.count if held else 0,
            "missing_hours": held.missing if held else 0,
            "overdue_hours": overdue,
            # Over the last 24 complete hours, an hour without a record counting as 0.
            "coverage_24h": round(sum(r.coverage for r in last_day if parse_hour(r.hour) < hour_of(snap.now)) / 24, 4),
            "resync_requests": snap.counters.get(f"resync.{device}"),
        }
        rows.append(row)
    return rows


def _iso_utc(t: float | None) -> str | None:
    return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


# ---- periods: day, week, month, in local time ------------------------------------------------------


@dataclass
class Bucket:
    """One bar of a chart: an hour of a day, or a day of a week or month."""

    label: str
    start: str  # local start, ISO 8601 with offset
    hours: list[str]  # the UTC hours in it
    visitors: int = 0
    female: int = 0
    male: int = 0
    expected: int = 0  # device-hours that have ended (an hour still running or to come does not count)
    covered: float = 0.0  # their summed coverage; a device-hour without a record adds 0
    records: int = 0
    closed: bool = False
    future: bool = False
    compare: int | None = None  # the same bucket a week earlier (for a month, four weeks)

    @property
    def unclassified(self) -> int:
        return self.visitors - self.female - self.male

    @property
    def coverage(self) -> float | None:
        return None if not self.expected else self.covered / self.expected

    @property
    def state(self) -> str:
        """future, nodata (not a single record: unknown, never 'nobody came'), partial, or full."""
        if self.future or not self.expected:
            return "future"
        if not self.records:
            return "nodata"
        return "partial" if self.covered < self.expected - 1e-9 else "full"

    def as_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "start": self.start,
            "hours": len(self.hours),
            "visitors": self.visitors,
            "female": self.female,
            "male": self.male,
            "unclassified": self.unclassified,
            "coverage": None if self.coverage is None else round(self.coverage, 4),
            "state": self.state,
            "closed": self.closed,
            "compare": self.compare,
        }


@dataclass
class Period:
    kind: str
    first: date
    last: date
    timezone: str
    devices: list[str]
    buckets: list[Bucket]
    counts: dict[str, dict[str, int]]
    # Of those not classified, the ones whose age was read but whose gender was not sure.
    unknown_bands: dict[str, int] = field(default_factory=lambda: dict.fromkeys(AGE_BANDS, 0))

    @property
    def visitors(self) -> int:
        return sum(b.visitors for b in self.buckets)

    @property
    def coverage(self) -> float | None:
        expected = sum(b.expected for b in self.buckets)
        return None if not expected else sum(b.covered for b in self.buckets) / expected

    @property
    def compare(self) -> int | None:
        values = [b.compare for b in self.buckets if b.compare is not None]
        return sum(values) if values else None

    @property
    def classified(self) -> int:
        return sum(sum(bands.values()) for bands in self.counts.values())


def add_unknown_bands(into: dict[str, int], record: HourlyRecord) -> None:
    """Add a record's visitors without a gender but with an age, by band."""
    for band, n in record.without_gender.items():
        into[band] += n


def period_span(kind: str, anchor: date) -> tuple[date, date]:
    """First and last local day of the day, week (Monday to Sunday) or month holding `anchor`."""
    if kind == "day":
        return anchor, anchor
    if kind == "week":
        first = anchor - timedelta(days=anchor.weekday())
        return first, first + timedelta(days=6)
    first = anchor.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return first, following - timedelta(days=1)


def shift(kind: str, anchor: date, steps: int) -> date:
    """The anchor of the previous (-1) or next (+1) period."""
    if kind == "day":
        return anchor + timedelta(days=steps)
    if kind == "week":
        return anchor + timedelta(weeks=steps)
    month = anchor.year * 12 + anchor.month - 1 + steps
    return date(month // 12, month % 12 + 1, 1)


def comparison_offset(kind: str) -> timedelta:
    """How far back the comparison goes: the same weekdays, a week earlier (four weeks for a month)."""
    return timedelta(weeks=4 if kind == "month" else 1)


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def range_hours(first: date, last: date, tz: tzinfo) -> tuple[str, str]:
    """The first and last UTC hour of the local days first..last."""
    return day_hours(first, tz)[0], day_hours(last, tz)[-1]


def buckets_for(kind: str, first: date, last: date, local: Local) -> list[Bucket]:
    tz = local.tz
    out: list[Bucket] = []
    if kind == "day":
        hours = day_hours(first, tz)
        starts = [local_start(h, tz) for h in hours]
        labels = [s.strftime("%H:%M") for s in starts]
        for hour, start, label in zip(hours, starts, labels, strict=True):
            out.append(
                Bucket(
                    hour_label(start, labels.count(label) > 1),
                    start.isoformat(),
                    [hour],
                    closed=not local.opening_hours.open_during(start.replace(tzinfo=None)),
                )
            )
        return out
    for day in days(first, last):
        label = day.strftime("%a %d") if kind == "week" else day.strftime("%d")
        start = local_start(day_hours(day, tz)[0], tz)
        out.append(Bucket(label, start.isoformat(), day_hours(day, tz), closed=not local.opening_hours.open_on(day)))
    return out


def build_period(
    kind: str,
    anchor: date,
    devices: Sequence[str],
    local: Local,
    records: Iterable[HourlyRecord],
    earlier: Iterable[HourlyRecord],
    now: float,
) -> Period:
    """Visitors of `devices` (one, or a site's) per hour of a local day, or per day of a week or
    month, in `local`'s time zone; `earlier` holds the comparison period's records."""
    first, last = period_span(kind, anchor)
    buckets = buckets_for(kind, first, last, local)
    wanted = set(devices)
    by_hour: dict[str, list[HourlyRecord]] = {}
    for r in records:
        if r.device in wanted:
            by_hour.setdefault(r.hour, []).append(r)
    counts = {g: dict.fromkeys(AGE_BANDS, 0) for g in GENDERS}
    unknown_bands = dict.fromkeys(AGE_BANDS, 0)
    current = hour_of(now)
    for bucket in buckets:
        for hour in bucket.hours:
            start = parse_hour(hour)
            rows = by_hour.get(hour, [])
            if start >= current and not rows:
                continue  # still running, or to come
            bucket.expected += len(wanted)
            for r in rows:
                bucket.records += 1
                bucket.covered += r.coverage
                bucket.visitors += r.visitors
                bucket.female += sum(r.counts["female"].values())
                bucket.male += sum(r.counts["male"].values())
                for g in GENDERS:
                    for band in AGE_BANDS:
                        counts[g][band] += r.counts[g][band]
                add_unknown_bands(unknown_bands, r)
        bucket.future = bucket.expected == 0
    # The comparison, bucket by bucket: the same weekday (or hour of it) a week earlier.
    back = comparison_offset(kind)
    before = buckets_for(kind, first - back, last - back, local)
    earlier_by_hour: dict[str, int] = {}
    for r in earlier:
        if r.device in wanted:
            earlier_by_hour[r.hour] = earlier_by_hour.get(r.hour, 0) + r.visitors
    for bucket, old in zip(buckets, before, strict=False):
        if any(h in earlier_by_hour for h in old.hours):
            bucket.compare = sum(earlier_by_hour.get(h, 0) for h in old.hours)
    return Period(kind, first, last, local.timezone, sorted(wanted), buckets, counts, unknown_bands)


def period_records(
    store: CentralStore, kind: str, anchor: date, devices: Sequence[str], local: Local
) -> tuple[list[HourlyRecord], list[HourlyRecord]]:
    """The records of a period and of its comparison period (of one device, or all)."""
    first, last = period_span(kind, anchor)
    device = devices[0] if len(devices) == 1 else None
    since, until = range_hours(first, last, local.tz)
    back = comparison_offset(kind)
    old_since, old_until = range_hours(first - back, last - back, local.tz)
    return store.hourly(device, since, until), store.hourly(device, old_since, old_until)


def latest_hour(store: CentralStore, devices: Sequence[str] | None) -> str | None:
    """The latest hour the log holds a record for, of `devices` (None: of any device)."""
    if devices is None:
        rows = read(store, "SELECT max(hour) FROM hourly")
    elif not devices:
        return None
    else:
        rows = read(store, f"SELECT max(hour) FROM hourly WHERE device IN ({', '.join('?' * len(devices))})", devices)
    return rows[0][0] if rows else None


def day_totals(
    records: Iterable[HourlyRecord], tz: tzinfo, group: Callable[[HourlyRecord], str] = lambda r: r.device
) -> list[dict[str, Any]]:
    """Records summed per group (device) and local day, for /api/v1/hourly?by=day."""
    sums: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        day = local_start(r.hour, tz).date().isoformat()
        entry = sums.setdefault(
            (group(r), day),
            {
                "device": group(r),
                "day": day,
                "timezone": str(getattr(tz, "key", tz)),
                "visitors": 0,
                "hours": 0,
                "coverage": 0.0,
                "counts": {g: dict.fromkeys(AGE_BANDS, 0) for g in GENDERS},
                "unknown_bands": dict.fromkeys(AGE_BANDS, 0),
            },
        )
        entry["visitors"] += r.visitors
        entry["hours"] += 1
        entry["coverage"] += r.coverage
        for g in GENDERS:
            for band in AGE_BANDS:
                entry["counts"][g][band] += r.counts[g][band]
        add_unknown_bands(entry["unknown_bands"], r)
    out = []
    for (_, day), entry in sorted(sums.items()):
        # Coverage of the whole local day (23, 24 or 25 hours), hours without a record counting 0.
        entry["day_hours"] = len(day_hours(date.fromisoformat(day), tz))
        entry["coverage"] = round(entry["coverage"] / entry["day_hours"], 4)
        out.append(entry)
    return out


def targets(places: Places, devices: Iterable[str]) -> list[tuple[str, str, str]]:
    """The choices of the period pages: ('', '', 'all devices'), then sites, then devices."""
    known = sorted(set(devices) | set(places.devices))
    sites = sorted(set(places.sites) | {p.site for p in places.devices.values() if p.site})
    return [
        ("", "", "all devices"),
        *(("site", s, f"site {s}") for s in sites),
        *(("device", d, places.label(d)) for d in known),
    ]


def config_places(config: CentralConfig, places: Places) -> Places:
    """`places` with the configuration's [display] defaults (a Places read without a file has none)."""
    if places.display == config.display:
        return places
    return Places(places.devices, places.sites, config.display)

"""/metrics: the central log in the Prometheus text format, read at each scrape.

Per device: last seen (age), coverage of the last complete hour, hours missing or overdue (what
central has not received: lost or undelivered), live counts. For the log: messages received per
channel (rate() of these is the ingest rate), rejected per reason, hourly rows stored in the last
hour, and resync requests where the subscriber counts them (counters named resync.<device>).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from central.config import Places
from central.store import CentralStore
from central.web import queries
from edge.wire.contract import hour_of, hour_start

CONTENT_TYPE = CONTENT_TYPE_LATEST


class _Snapshot:
    """A collector of one snapshot (a fresh registry per scrape: nothing is kept between them)."""

    def __init__(self, snap: queries.Snapshot, overdue_after_s: float, stored_last_hour: int) -> None:
        self.snap = snap
        self.overdue_after_s = overdue_after_s
        self.stored_last_hour = stored_last_hour

    def collect(self) -> Iterator[Metric]:
        snap = self.snap
        rows = queries.health_rows(snap, self.overdue_after_s)
        previous = hour_start(hour_of(snap.now) - 3600)
        covered = {r.device: r.coverage for r in snap.recent if r.hour == previous}
        gauges = {
            "up": ("1 when the device says it is online and its live counts arrive", lambda r: r["state"] == "online"),
            "last_seen_age_seconds": (
                "seconds since anything (live counts or an hourly record) last arrived from the device",
                lambda r: r["last_seen_age_s"],
            ),
            "last_hour_coverage": (
                "coverage of the last complete UTC hour (0 while its record has not arrived)",
                lambda r: covered.get(r["device"], 0.0),
            ),
            "missing_hours": (
                "hours missing between the device's first and latest stored hour (lost, resync pending)",
                lambda r: r["missing_hours"],
            ),
            "overdue_hours": (
                "hours a running device should have delivered by now but has not (undelivered)",
                lambda r: r["overdue_hours"],
            ),
            "in_view": ("people in view now (from live counts less than 2 minutes old)", lambda r: r["in_view"]),
            "visitors_today": ("visitors so far in the device's local day", lambda r: r["visitors_today"]),
            "coverage_24h": (
                "mean coverage of the last 24 complete hours, hours without a record as 0",
                lambda r: r["coverage_24h"],
            ),
        }
        for name, (text, value) in gauges.items():
            family = GaugeMetricFamily(f"aicctv_device_{name}", text, labels=["device"])
            for row in rows:
                v = value(row)
                if v is not None:
                    family.add_metric([row["device"]], float(v))
            yield family
        received = CounterMetricFamily("aicctv_central_received", "messages stored, per channel", labels=["channel"])
        rejected = CounterMetricFamily(
            "aicctv_central_rejected", "messages rejected for breaking the contract, per reason", labels=["reason"]
        )
        resync = CounterMetricFamily(
            "aicctv_central_resync_requests", "resync requests sent, per device", labels=["device"]
        )
        other = CounterMetricFamily("aicctv_central_events", "the central log's other counters", labels=["name"])
        for name, value in sorted(snap.counters.items()):
            kind, _, rest = name.partition(".")
            target = {"received": received, "rejected": rejected, "resync": resync}.get(kind)
            if target is None:
                other.add_metric([name], value)
            else:
                target.add_metric([rest], value)
        yield from (received, rejected, resync, other)
        yield GaugeMetricFamily(
            "aicctv_central_hourly_rows_stored_last_hour",
            "hourly rows inserted or replaced in the last hour (ingest)",
            value=self.stored_last_hour,
        )


def exposition(store: CentralStore, places: Places, overdue_after_s: float) -> bytes:
    snap = queries.snapshot(store, places)
    ((stored,),) = queries.read(store, "SELECT count(*) FROM hourly WHERE received >= ?", [snap.now - 3600])
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(snap, overdue_after_s, stored))
    return generate_latest(registry)

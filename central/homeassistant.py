"""Home Assistant MQTT discovery: every device's counts as sensors, with no YAML on HA's side.

With `[homeassistant] enabled = true` the central subscriber publishes, retained, one discovery
config per sensor and device on `<discovery_prefix>/sensor/<node_id>/<object_id>/config`
(Home Assistant's documented MQTT discovery topic and payload, full key names): people in view
(read by Home Assistant straight from the device's `live` topic), visitors today and the last
hour's visitors by gender and by age band (from a retained JSON state central keeps on
`<prefix>/<device>/ha/state`, updated when hourly records or live counts arrive). Each sensor's
availability is the device's own retained status topic (`online` / `offline`). When Home
Assistant says `online` on `<discovery_prefix>/status` (its birth message, e.g. after a restart)
every config is published again. See docs/central.md, "Home Assistant".

The payload builders are pure functions; `HomeAssistant` is the small publisher the subscriber
calls from its connection thread (`on_connect`, `handles`) and its database thread (`after_commit`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Collection, Iterable
from datetime import date
from typing import Any

import paho.mqtt.client as paho

from central.config import Places
from central.localtime import day_hours, today
from edge.wire.contract import AGE_BANDS, GENDERS, HourlyRecord, LiveCounts, hour_start, topic

log = logging.getLogger("aicctv.homeassistant")

MANUFACTURER = "aicctv"
MODEL = "aicctv edge camera"
STATE_LEVELS = "ha/state"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
# What node_id appends: `_` and 10 hex digits of the id's SHA-256.
_HASHED = re.compile(r".*_[0-9a-f]{10}")


def node_id(device: str) -> str:
    """The discovery topic's node id for a device: `aicctv_<id>` (HA takes `[A-Za-z0-9_-]` there).
    Stable, and one per device: an id that needs a character replaced (`shop.1`), or that looks
    like a replaced one, also gets a hash of itself, so `shop.1` and `shop_1` stay two devices in
    HA. Ids of letters, digits, `_` and `-` (the usual ones) keep their plain node id."""
    safe = _UNSAFE.sub("_", device)
    if safe == device and not _HASHED.fullmatch(device):
        return f"aicctv_{device}"
    return f"aicctv_{safe}_{hashlib.sha256(device.encode()).hexdigest()[:10]}"


def band_key(band: str) -> str:
    return "age_" + band.replace("-", "_").replace("+", "_plus")


def state_topic(prefix: str, device: str) -> str:
    return f"{topic(prefix, device, 'status').rsplit('/', 1)[0]}/{STATE_LEVELS}"


def sensors() -> list[tuple[str, str]]:
    """(object id, which is also its key in the state JSON; name) of each sensor but in-view."""
    rows = [("visitors_today", "Visitors today"), ("last_hour", "Visitors last hour")]
    rows += [(f"last_hour_{g}", f"Visitors last hour, {g}") for g in GENDERS]
    rows += [(f"last_hour_{band_key(b)}", f"Visitors last hour, age {b}") for b in AGE_BANDS]
    return rows


def discovery_configs(prefix: str, discovery_prefix: str, device: str, name: str | None = None) -> dict[str, dict]:
    """{config topic: config payload} of one device's sensors."""
    node = node_id(device)
    device_block = {"identifiers": [node], "name": name or device, "manufacturer": MANUFACTURER, "model": MODEL}
    common = {
        "availability_topic": topic(prefix, device, "status"),
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device_block,
        "origin": {"name": "aicctv"},
    }
    configs: dict[str, dict] = {
        f"{discovery_prefix}/sensor/{node}/in_view/config": {
            **common,
            "name": "People in view",
            "unique_id": f"{node}_in_view",
            "state_topic": topic(prefix, device, "live"),
            "value_template": "{{ value_json.in_view }}",
            "unit_of_measurement": "people",
            "icon": "mdi:account-eye",
            "state_class": "measurement",
        }
    }
    for object_id, label in sensors():
        # Today's running total is a present value; the last hour's figures describe a past
        # hour, which Home Assistant's statistics must not take for a measurement of now. Not
        # total_increasing: a live count replaced by its hour's record may fall by a visitor,
        # which Home Assistant would read as a new cycle and count twice.
        now = {"state_class": "measurement"} if object_id == "visitors_today" else {}
        configs[f"{discovery_prefix}/sensor/{node}/{object_id}/config"] = {
            **common,
            **now,
            "name": label,
            "unique_id": f"{node}_{object_id}",
            "state_topic": state_topic(prefix, device),
            "value_template": f"{{{{ value_json.{object_id} }}}}",
            "unit_of_measurement": "visitors",
            "icon": "mdi:account-group",
        }
    return configs


def state(
    records_today: Iterable[HourlyRecord], today_hours: Collection[str], live: LiveCounts | None = None
) -> dict[str, Any]:
    """The state JSON: visitors today (the stored hours of the local day, plus the live count of
    one of its hours not stored yet: not yesterday's, nor a replay's) and the latest stored hour's
    visitors by gender and age band."""
    by_hour = {r.hour: r for r in records_today}
    total = sum(r.visitors for r in by_hour.values())
    if live is not None and (hour := hour_start(live.time)) in today_hours and hour not in by_hour:
        total += live.visitors_this_hour
    out: dict[str, Any] = {"visitors_today": total}
    last = by_hour[max(by_hour)] if by_hour else None
    out["hour"] = last.hour if last else None
    out["last_hour"] = last.visitors if last else 0
    for g in GENDERS:
        out[f"last_hour_{g}"] = sum(last.counts[g].values()) if last else 0
    for b in AGE_BANDS:
        out[f"last_hour_{band_key(b)}"] = last.in_band(b) if last else 0
    return out


class HomeAssistant:
    """Publishes discovery configs and states on the subscriber's connection (`client()`)."""

    def __init__(self, prefix: str, discovery_prefix: str, places: Places, client: Callable[[], paho.Client]) -> None:
        self.prefix = prefix
        self.discovery_prefix = discovery_prefix
        self.status_topic = f"{discovery_prefix}/status"
        self.places = places  # whose local day "today" is: the device's zone, as on the dashboard
        self.client = client
        self._lock = threading.Lock()
        self._devices: set[str] = set()  # configs published for these (on this connection)
        self._seeded = False
        self._live: dict[str, LiveCounts] = {}
        # device → (day, its hours, its stored records)
        self._today: dict[str, tuple[date, tuple[str, ...], list[HourlyRecord]]] = {}
        self._states: dict[str, dict] = {}

    @classmethod
    def from_config(
        cls, config: Any, client: Callable[[], paho.Client], places: Places | None = None
    ) -> HomeAssistant | None:
        ha = config.homeassistant
        if not ha.enabled:
            return None
        return cls(config.mqtt.prefix, ha.discovery_prefix, places or Places(display=config.display), client)

    # -- the connection thread

    def on_connect(self, _client: paho.Client) -> None:
        """After each connection (the subscriber subscribes to `status_topic` with its filters)."""
        self.publish_all()

    def handles(self, message: paho.MQTTMessage) -> bool:
        """Whether `message` is Home Assistant's status (taken here); `online`: configs again."""
        if message.topic != self.status_topic:
            return False
        if message.payload == b"online":
            log.info("Home Assistant is online: publishing discovery configs again")
            self.publish_all()
        return True

    def publish_all(self) -> None:
        with self._lock:
            devices = sorted(self._devices)
        for device in devices:
            self._publish_configs(device)

    def _publish_configs(self, device: str) -> None:
        label = self.places.label(device)
        for name, config in discovery_configs(self.prefix, self.discovery_prefix, device, label).items():
            self.client().publish(name, json.dumps(config, sort_keys=True), qos=1, retain=True)

    # -- the database thread

    def after_commit(self, batch: Any, store: Any) -> None:
        """After a batch is stored: configs for devices new to us, states that changed."""
        devices = {r.device for r in batch.hourly} | {c.device for c in batch.live} | set(batch.statuses)
        if not self._seeded:
            self._seeded = True
            try:
                devices |= set(store.statuses())
            except Exception as exc:  # a read failing here must not stop the ingest
                log.warning("cannot list devices for Home Assistant: %s", exc)
        with self._lock:
            new = devices - self._devices
            self._devices |= new
        for device in sorted(new):
            self._publish_configs(device)
        for live in batch.live:
            self._live[live.device] = live
        stored = {r.device for r in batch.hourly}
        for device in sorted({r.device for r in batch.hourly} | {c.device for c in batch.live}):
            try:
                hours, records = self._records_today(device, store, reload=device in stored)
            except Exception as exc:
                log.warning("Home Assistant state of %s not updated: %s", device, exc)
                continue
            payload = state(records, hours, self._live.get(device))
            if self._states.get(device) != payload:
                self._states[device] = payload
                self.client().publish(
                    state_topic(self.prefix, device), json.dumps(payload, sort_keys=True), qos=1, retain=True
                )

    def _records_today(self, device: str, store: Any, reload: bool) -> tuple[tuple[str, ...], list[HourlyRecord]]:
        """The device's local day's hours, and its stored records of them: kept until the day or
        the records change, since this runs for every live count."""
        tz = self.places.local(device).tz
        day = today(tz, time.time())
        cached = self._today.get(device)
        if cached is None or cached[0] != day:
            hours = tuple(day_hours(day, tz))
            cached = (day, hours, store.hourly(device, hours[0], hours[-1]))
        elif reload:
            cached = (day, cached[1], store.hourly(device, cached[1][0], cached[1][-1]))
        self._today[device] = cached
        return cached[1], cached[2]

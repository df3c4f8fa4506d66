"""The central subscriber: MQTT in, one row per device-hour out, nothing lost on a crash.

paho's network thread only queues what arrives. `Subscriber.run`, on the caller's thread (the
only one touching the database), takes batches off the queue, validates each message against
the contract, writes the batch in one transaction and only then acknowledges its QoS 1 messages
(manual acks). A `kill -9` before the commit leaves them unacknowledged in the persistent
session, so the broker delivers them again; the revision rule makes the repeat harmless. After
the commit it also sends each device a receipt (`<prefix>/<device>/cmd/receipt`) for every
device-hour revision of the batch: the device's proof of delivery, since a broker restart can
lose what the broker acknowledged (it keeps our session but not our shared subscriptions).

No payload can stop it: `decode` rejects anything outside the contract's limits, and rejections
are counted, acknowledged and reported at most once a minute per reason. The queue between the
two threads is bounded in bytes as well as messages (see `InboundQueue`). For systemd (a
Type=notify unit with a watchdog) it says READY once subscribed, pings the watchdog from the
ingest loop, and puts its rates in STATUS.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, replace
from typing import NamedTuple, cast

import paho.mqtt.client as paho

from central.config import CentralConfig, Places
from central.homeassistant import HomeAssistant
from central.store import Batch, CentralStore, StoreError, open_store
from edge.wire.config import redact
from edge.wire.contract import (
    ContractError,
    HourlyRecord,
    LiveCounts,
    Receipt,
    ResyncRequest,
    SettingsState,
    clipped,
    decode,
    decode_status,
    encode,
    parse_topic,
    topic,
)
from edge.wire.mqtt import Connection, backoff_delay
from edge.wire.rejections import Rejections
from edge.wire.systemd import Notifier

log = logging.getLogger("aicctv.central")

STATS_EVERY_S = 10.0
# With QoS 1 messages waiting for their commit, a pause this long means the broker has sent its
# whole in-flight window (mosquitto's default is 20) and waits for acks: commit now.
WINDOW_IDLE_S = 0.005
# The inbound queue's byte budget. Valid payloads are under 1 KB, so its count bound (4 ×
# storage.batch_max) binds first in normal operation; this one caps what oversized or garbage
# payloads can hold in memory, each `clipped` to at most MAX_PAYLOAD_BYTES + 1 bytes.
MAX_QUEUED_BYTES = 8 * 1024 * 1024


class Inbound(NamedTuple):
    topic: str
    payload: bytes
    mid: int
    qos: int
    session: int  # which connection it came on: acks are only valid on that one
    arrived: float

    @property
    def size(self) -> int:
        return len(self.topic) + len(self.payload)


class InboundQueue:
    """FIFO from paho's thread to the ingest thread, bounded by messages and by bytes. When full,
    `put` of a QoS 0 message drops it (counted in `dropped`: QoS 0 promises no delivery, and live
    counts are superseded a second later); a QoS 1 message waits for room, which blocks paho's
    thread, so the broker holds further messages back (its in-flight window) instead of us
    buffering them. `close` ends the waiting: the message is left unacknowledged with the broker."""

    def __init__(self, max_items: int, max_bytes: int) -> None:
        self.max_items, self.max_bytes = max_items, max_bytes
        self.bytes = 0
        self.dropped = 0
        self._items: deque[Inbound] = deque()
        self._closed = False
        self._changed = threading.Condition()

    def _full(self, item: Inbound) -> bool:
        # An item larger than the whole budget still goes into an empty queue, or it never could.
        return bool(self._items) and (len(self._items) >= self.max_items or self.bytes + item.size > self.max_bytes)

    def put(self, item: Inbound) -> bool:
        """Queue `item`; False if it was dropped (QoS 0, queue full) or the queue is closed."""
        with self._changed:
            while self._full(item) and item.qos and not self._closed:
                self._changed.wait()
            if self._closed:
                return False
            if self._full(item):
                self.dropped += 1
                return False
            self._items.append(item)
            self.bytes += item.size
            self._changed.notify_all()
            return True

    def get(self, timeout: float) -> Inbound:
        """The oldest item, waiting up to `timeout` seconds (0: not at all); queue.Empty if none."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._items, timeout):
                raise queue.Empty
            item = self._items.popleft()
            self.bytes -= item.size
            self._changed.notify_all()
            return item

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()


@dataclass
class Totals:
    """What this instance has handled since it started (the database has the totals of all)."""

    hourly: int = 0
    live: int = 0
    status: int = 0
    settings: int = 0
    stored: int = 0
    rejected: int = 0
    dropped: int = 0  # QoS 0 messages that found the inbound queue full

    @property
    def messages(self) -> int:
        return self.hourly + self.live + self.status + self.settings + self.rejected + self.dropped


class Rejected(Exception):
    """A message that breaks the contract; `reason` names the rule, for the counters."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


Parsed = HourlyRecord | LiveCounts | SettingsState | tuple[str, str]


def parse_message(prefix: str, name: str, payload: bytes) -> Parsed:
    """The contract payload on topic `name`, or (device, status); Rejected if it breaks a rule."""
    try:
        device, channel = parse_topic(prefix, name)
    except ContractError as exc:
        raise Rejected("topic", str(exc)) from None
    try:
        return _parse_payload(device, channel, payload)
    except ContractError as exc:
        raise Rejected(exc.reason, str(exc)) from None


def _parse_payload(device: str, channel: str, payload: bytes) -> Parsed:
    if channel == "status":
        return device, decode_status(payload)
    if channel == "settings":
        return cast(SettingsState, decode(SettingsState, payload, device=device))
    return cast(
        HourlyRecord | LiveCounts, decode(HourlyRecord if channel == "hourly" else LiveCounts, payload, device=device)
    )


class Subscriber:
    """Subscribes to every device's status, live and hourly topics and keeps the central log.
    `run()` blocks until `stop()` (safe from a signal handler or another thread). `places`: the
    configuration's [devices.<id>] / [sites.<name>] tables, for each device's local day."""

    def __init__(self, config: CentralConfig, places: Places | None = None) -> None:
        self.config = config
        m = config.mqtt
        self.totals = Totals()
        self.subscribed = threading.Event()
        self._queue = InboundQueue(4 * config.storage.batch_max, MAX_QUEUED_BYTES)
        self.rejections = Rejections()
        self._stopping = threading.Event()
        self._session = 0
        self._session_present = False
        self._last_resync: dict[str, float] = {}
        self._asked_after: dict[str, str] = {}
        self._store: CentralStore | None = None
        self.notifier = Notifier()
        self._ready = False
        shared = f"$share/{m.shared_group}/" if config.shared else ""
        self.filters = [
            (f"{shared}{m.prefix}/+/hourly", 1),
            (f"{shared}{m.prefix}/+/live", 0),
            # Every instance needs every device's status for its own gap checks: never shared.
            (f"{m.prefix}/+/status", 1),
            # The devices' settings (paused since, until) for the dashboard: retained, and a
            # shared subscription gets no retained messages, so never shared either.
            (f"{m.prefix}/+/settings", 1),
        ]
        self.connection = Connection(
            m.broker_url(),
            m.client_id,
            version=m.version,
            persistent_session_s=m.session_expiry_s,
            manual_ack=True,
            keepalive_s=m.keepalive_s,
            ca_file=m.ca_file,
            on_connect=self._on_connect,
            on_message=self._on_message,
        )
        self.connection.client.on_subscribe = self._on_subscribe
        # Home Assistant discovery ([homeassistant] enabled): None when off.
        self.homeassistant = HomeAssistant.from_config(config, lambda: self.connection.client, places)
        if self.homeassistant:
            self.filters.append((self.homeassistant.status_topic, 0))

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        """Open the store, connect, and ingest until `stop()`. Raises StoreError if the database
        cannot be opened at all; later database failures are retried with backoff."""
        self._store = open_store(self.config.storage.db)
        log.info(
            "central: broker %s, db %s, subscribing %s",
            self.connection.broker,
            redact(self.config.storage.db),
            ", ".join(name for name, _ in self.filters),
        )
        self.connection.start()
        last_stats = time.monotonic()
        next_check = last_stats + self.config.resync.check_interval_s
        logged = Totals()
        try:
            while not self._stopping.is_set():
                # From this loop (and its retry waits) only: a stuck database call stops the pings.
                self.notifier.alive()
                if self.subscribed.is_set() and not self._ready:
                    self._ready = True
                    self.notifier.ready(f"subscribed to {self.connection.broker}, storing")
                batch = self._collect(min(last_stats + STATS_EVERY_S, next_check))
                if batch and not self._commit(batch):
                    break
                now = time.monotonic()
                if now >= next_check:
                    next_check = now + self.config.resync.check_interval_s
                    self._check_gaps()
                if now - last_stats >= STATS_EVERY_S:
                    self._log_stats(logged, now - last_stats)
                    logged, last_stats = replace(self.totals), now
        finally:
            self.notifier.stopping()
            # Whatever is still queued was never acknowledged: the broker keeps it for us.
            self._queue.close()
            self.connection.stop()
            if self._store:
                self._store.close()

    def _on_connect(self, client: paho.Client, session_present: bool) -> None:
        # Messages of an earlier connection are redelivered on this one with the same or new
        # packet ids; acknowledging their old ids here could acknowledge an uncommitted message.
        self._session += 1
        self._session_present = session_present
        client.subscribe(self.filters)
        if self.homeassistant:
            self.homeassistant.on_connect(client)

    def _on_subscribe(self, _client: paho.Client, _userdata: object, _mid: int, reasons: list, _props: object) -> None:
        for (name, _qos), reason in zip(self.filters, reasons, strict=False):
            if reason.is_failure:
                log.error("broker refused subscription %s: %s", name, reason)
        log.info("subscribed (session %s)", "resumed" if self._session_present else "new")
        self.subscribed.set()

    def _on_message(self, message: paho.MQTTMessage) -> None:
        if self.homeassistant and self.homeassistant.handles(message):
            return
        payload = clipped(message.payload)  # an oversized payload waits only as what rejects it
        self._queue.put(Inbound(message.topic, payload, message.mid, message.qos, self._session, time.monotonic()))

    def _collect(self, until: float) -> list[Inbound]:
        """Messages for one transaction: up to batch_max of them, arriving within
        batch_interval_s of the first, or fewer once the broker waits for our acks."""
        try:
            first = self._queue.get(max(0.0, min(until - time.monotonic(), 0.5)))
        except queue.Empty:
            return []
        batch = [first]
        deadline = first.arrived + self.config.storage.batch_interval_s
        last_qos1 = first.arrived if first.qos else None
        while len(batch) < self.config.storage.batch_max:
            wait = deadline - time.monotonic()
            if last_qos1 is not None:
                wait = min(wait, last_qos1 + WINDOW_IDLE_S - time.monotonic())
            try:
                item = self._queue.get(max(wait, 0.0))
            except queue.Empty:
                break
            batch.append(item)
            if item.qos:
                last_qos1 = item.arrived
        return batch

    def _commit(self, messages: list[Inbound]) -> bool:
        """Store `messages` in one transaction, retrying while the database fails, then
        acknowledge them; False if stopped before it could be stored."""
        batch = Batch()
        kinds: Counter[str] = Counter()
        prefix = self.config.mqtt.prefix
        for message in messages:
            try:
                payload = parse_message(prefix, message.topic, message.payload)
            except Rejected as exc:
                batch.counters[f"rejected.{exc.reason}"] += 1
                if report := self.rejections.add(message.topic, exc.reason, str(exc)):
                    log.warning("rejected %s", report)
                continue
            if isinstance(payload, HourlyRecord):
                batch.hourly.append(payload)
                kinds["hourly"] += 1
            elif isinstance(payload, LiveCounts):
                batch.live.append(payload)
                kinds["live"] += 1
            elif isinstance(payload, SettingsState):
                batch.settings[payload.device] = payload
                kinds["settings"] += 1
            else:
                batch.statuses[payload[0]] = payload[1]
                kinds["status"] += 1
        batch.counters.update({f"received.{kind}": n for kind, n in kinds.items()})
        # Read once: paho's thread may drop more meanwhile; those go with the next batch.
        dropped = self._queue.dropped - self.totals.dropped
        if dropped:
            batch.counters["dropped.qos0"] += dropped
        stored = self._write(batch)
        if stored is None:
            return False
        for message in messages:
            if message.qos and message.session == self._session:
                self.connection.client.ack(message.mid, message.qos)
        self._send_receipts(batch.hourly)
        if self.homeassistant:
            self.homeassistant.after_commit(batch, self._store)
        t = self.totals
        t.hourly, t.live, t.status = t.hourly + kinds["hourly"], t.live + kinds["live"], t.status + kinds["status"]
        t.settings += kinds["settings"]
        t.stored += stored
        t.rejected += len(messages) - sum(kinds.values())
        t.dropped += dropped
        return True

    def _send_receipts(self, records: list[HourlyRecord]) -> None:
        """Confirm each committed device-hour revision to its device (QoS 1, not retained). Sent
        for a repeat or an older revision too (the log holds it, or a later one), so a device
        stops resending; a lost receipt only means the record comes again and gets another."""
        latest: dict[tuple[str, str], int] = {}
        for record in records:
            key = (record.device, record.hour)
            latest[key] = max(record.revision, latest.get(key, -1))
        prefix = self.config.mqtt.prefix
        for (device, hour), revision in sorted(latest.items()):
            receipt = encode(Receipt(hour, revision))
            self.connection.client.publish(topic(prefix, device, "cmd/receipt"), receipt, qos=1)

    def _write(self, batch: Batch) -> int | None:
        attempt = 0
        while not self._stopping.is_set():
            try:
                if self._store is None:
                    self._store = open_store(self.config.storage.db)
                return self._store.write(batch)
            except StoreError as exc:
                delay = backoff_delay(attempt)
                log.error("database write failed, retrying in %.1f s: %s", delay, exc)
                self.notifier.status(f"database write failed, retrying: {exc}")
                if self._store:
                    self._store.close()
                    self._store = None
                attempt += 1
                self._retry_after(delay)
        return None

    def _retry_after(self, seconds: float) -> None:
        """Wait out a backoff delay. Retrying an unreachable database is the loop working, not
        hanging, so the watchdog is still pinged (a restart would not bring the database back);
        a database call that never returns still stops the pings."""
        end = time.monotonic() + seconds
        while not self._stopping.is_set() and (left := end - time.monotonic()) > 0:
            self.notifier.alive()
            self._stopping.wait(min(left, 1.0))

    def _check_gaps(self) -> None:
        """Ask devices to republish the hours the log lacks (edges publish every hour, idle or
        not, so a lacking hour is a lost message): holes between stored hours, at most once per
        resync.min_interval_s per device; and hours overdue after the latest, once per latest hour
        (a finished replay has no later hours: asking again would only repeat the silence)."""
        if self._store is None or not self.connection.connected.is_set():
            return
        try:
            held_hours = self._store.held_hours()
        except StoreError as exc:
            log.error("gap check failed: %s", exc)
            return
        r = self.config.resync
        now, tick = time.time(), time.monotonic()
        asked: Counter[str] = Counter()
        for device, held in sorted(held_hours.items()):
            if held.missing and tick - self._last_resync.get(device, -float("inf")) >= r.min_interval_s:
                self._last_resync[device] = tick
                self._request_resync(device, held.missing, "is missing")
                asked[f"resync.{device}"] += 1
            overdue = held.overdue(now, r.overdue_after_s)
            if overdue and self._asked_after.get(device) != held.latest:
                self._asked_after[device] = held.latest
                self._request_resync(device, overdue, "is running but has not delivered")
                asked[f"resync.{device}"] += 1
        if asked:
            # Read by the Devices page and /metrics (aicctv_central_resync_requests_total).
            try:
                self._store.write(Batch(counters=asked))
            except StoreError as exc:
                log.error("resync requests not counted: %s", exc)

    def _request_resync(self, device: str, hours: tuple[str, str], why: str) -> None:
        request = ResyncRequest(*hours)
        self.connection.client.publish(topic(self.config.mqtt.prefix, device, "cmd/resync"), encode(request), qos=1)
        log.info("device %s %s hours %s .. %s: resync requested", device, why, *hours)

    def _log_stats(self, before: Totals, seconds: float) -> None:
        t = self.totals
        line = (
            f"{(t.messages - before.messages) / seconds:.0f} msg/s (hourly {t.hourly - before.hourly}, "
            f"live {t.live - before.live}, status {t.status - before.status}), stored {t.stored - before.stored}, "
            f"rejected {t.rejected - before.rejected}, dropped {t.dropped - before.dropped} in {seconds:.0f} s; "
            f"broker {'connected' if self.connection.connected.is_set() else 'unreachable'}"
        )
        log.info("%s", line)
        self.notifier.status(line)

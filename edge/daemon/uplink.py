"""The edge's MQTT side: retained status with a last will, live counts, hourly records, resync.

Hourly records are published from the local store (never from memory only) and marked delivered
only when central's receipt (`cmd/receipt`) for that revision, or a later one, arrives: a broker
is a relay, not a ledger (a restarted Mosquitto keeps sessions but not shared subscriptions, and
drops what arrives meanwhile after its PUBACK). A record without a receipt is published again
after `mqtt.resend_after_s`, the wait doubling up to 32 times that; on every (re)connection the
daemon publishes everything still undelivered, oldest first, so an outage of any length, of the
broker or of central, loses nothing; duplicates are harmless by the contract's revision rule.
At most `mqtt.window` records are out unconfirmed at a time and the rest wait in an outbox, so
after a month offline a device does not publish 720 records at once, nor republish them all
every time their receipts are late: a fleet reconnecting together paces itself to what central
confirms.
With `mqtt.receipts = false` (a device with no central) the broker's PUBACK for that exact
revision marks it delivered instead.

Paho's callbacks run on the connection thread; they only fill queues. The daemon's thread, the
only one touching SQLite, the in-flight maps and the outbox, drains them with `delivered()`,
`publish_due()`, `take_reconnect()` and `resync_requests()`.
"""

from __future__ import annotations

import heapq
import logging
import queue
import threading
import time

import paho.mqtt.client as paho

from edge.daemon.config import MqttSection
from edge.wire.contract import (
    STATUS_OFFLINE,
    ContractError,
    HourlyRecord,
    LiveCounts,
    Receipt,
    ResyncRequest,
    decode,
    encode,
    topic,
)
from edge.wire.mqtt import Connection, backoff_delay
from edge.wire.rejections import Rejections

log = logging.getLogger("aicctv.uplink")

# Unconfirmed records go out again after resend_after_s, then 2×, 4× … up to this many times it.
RESEND_CAP_FACTOR = 32


class Uplink:
    def __init__(self, config: MqttSection, device: str) -> None:
        self.device = device
        self.prefix = config.prefix
        self._status = topic(config.prefix, device, "status")
        self._resync = topic(config.prefix, device, "cmd/resync")
        self._receipt = topic(config.prefix, device, "cmd/receipt")
        self.receipts = config.receipts
        self.resend_after_s = config.resend_after_s
        self.window = config.window
        # The daemon's thread only: mid → record (PUBACK mode), hour → (record, attempt, resend at),
        # and hour → newest revision waiting for room in the window.
        self._in_flight: dict[int, HourlyRecord] = {}
        self._unconfirmed: dict[str, tuple[HourlyRecord, int, float]] = {}
        self._outbox: dict[str, HourlyRecord] = {}
        self._acked: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._confirmed: queue.SimpleQueue[Receipt] = queue.SimpleQueue()
        self._resyncs: queue.SimpleQueue[ResyncRequest] = queue.SimpleQueue()
        self._reconnected = threading.Event()
        self.rejections = Rejections()  # paho's thread only
        self.current_status = "online"
        self.connection = Connection(
            config.broker_url(),
            client_id=f"aicctv-edge-{device}",
            version=config.version,
            will=(self._status, STATUS_OFFLINE.encode()),
            keepalive_s=config.keepalive_s,
            ca_file=config.ca_file,
            on_connect=self._on_connect,
            on_message=self._on_message,
            on_publish=None if config.receipts else self._on_publish,
        )

    @property
    def connected(self) -> bool:
        return self.connection.connected.is_set()

    def start(self) -> None:
        self.connection.start()

    def stop(self) -> None:
        """Say `offline` ourselves (a clean disconnect does not fire the will) and disconnect."""
        if self.connected:
            self.connection.client.publish(self._status, STATUS_OFFLINE, qos=1, retain=True).wait_for_publish(2)
        self.connection.stop()

    def set_status(self, status: str) -> None:
        self.current_status = status
        if self.connected:
            self.connection.client.publish(self._status, status, qos=1, retain=True)

    def publish_live(self, counts: LiveCounts) -> None:
        if self.connected:
            self.connection.client.publish(topic(self.prefix, self.device, "live"), encode(counts), qos=0)

    def send(self, records: list[HourlyRecord]) -> None:
        """Queue hourly records in order and publish them (QoS 1) as far as the window has room;
        each is confirmed via `delivered()`. A newer revision of a queued hour replaces it."""
        if not self.connected:
            return  # they stay undelivered in the store and go out on reconnection
        for record in records:
            queued = self._outbox.get(record.hour)
            if queued is None or queued.revision < record.revision:
                self._outbox[record.hour] = record
        self._fill_window()

    def _fill_window(self) -> None:
        room = self.window - len(self._unconfirmed if self.receipts else self._in_flight)
        if room <= 0 or not self._outbox:
            return
        # Oldest hour first: after a reconnection the store's backlog joins what was queued before.
        self._publish([self._outbox.pop(hour) for hour in heapq.nsmallest(room, self._outbox)])

    def _publish(self, records: list[HourlyRecord]) -> None:
        name = topic(self.prefix, self.device, "hourly")
        now = time.monotonic()
        for record in records:
            info = self.connection.client.publish(name, encode(record), qos=1)
            if not self.receipts:
                if info.rc == paho.MQTT_ERR_SUCCESS:
                    self._in_flight[info.mid] = record
                continue
            # Kept even if paho refused it: then the resend is what gets it out.
            earlier = self._unconfirmed.get(record.hour)
            attempt = earlier[1] + 1 if earlier and earlier[0].revision == record.revision else 0
            wait = backoff_delay(attempt, base_s=self.resend_after_s, cap_s=RESEND_CAP_FACTOR * self.resend_after_s)
            self._unconfirmed[record.hour] = (record, attempt, now + wait)

    def delivered(self) -> list[tuple[str, int]]:
        """(hour, revision) pairs delivered since the last call: central's receipts (each confirms
        that revision and any earlier one), or without receipts the PUBACKs of exact revisions."""
        done = []
        while not self._confirmed.empty():
            receipt = self._confirmed.get()
            earlier = self._unconfirmed.get(receipt.hour)
            if earlier and earlier[0].revision <= receipt.revision:
                del self._unconfirmed[receipt.hour]
            done.append((receipt.hour, receipt.revision))
        while not self._acked.empty():
            record = self._in_flight.pop(self._acked.get(), None)
            if record is not None:
                done.append((record.hour, record.revision))
        return done

    def publish_due(self) -> int:
        """Publish again the records whose receipt is overdue (backoff per record), then queued
        ones while the window has room; how many were published again."""
        if not self.connected:
            return 0
        now = time.monotonic()
        due = [record for record, _, at in self._unconfirmed.values() if at <= now]
        if due:
            log.info("%d hourly records without a receipt from central: publishing them again", len(due))
            self._publish(sorted(due, key=lambda r: r.hour))
        self._fill_window()
        return len(due)

    def take_reconnect(self) -> bool:
        """True once after each successful connection: time to publish the backlog."""
        if self._reconnected.is_set():
            self._reconnected.clear()
            # A new session: whatever was in flight or unconfirmed goes out again, from the store.
            self._in_flight.clear()
            self._unconfirmed.clear()
            return True
        return False

    def resync_requests(self) -> list[ResyncRequest]:
        requests = []
        while not self._resyncs.empty():
            requests.append(self._resyncs.get())
        return requests

    def _on_connect(self, client: paho.Client, _session_present: bool) -> None:
        client.publish(self._status, self.current_status, qos=1, retain=True)
        client.subscribe([(self._resync, 1), (self._receipt, 1)] if self.receipts else [(self._resync, 1)])
        self._reconnected.set()

    def _on_publish(self, mid: int) -> None:
        # Only the mid crosses threads: paho calls this holding its own lock, and the daemon's
        # thread owns the mid-to-record map, so neither waits on the other.
        self._acked.put(mid)

    def _on_message(self, message: paho.MQTTMessage) -> None:
        # decode raises nothing else, whatever the payload: an exception here would end paho's
        # thread, and with it every publication and reconnection of this daemon.
        receipt = message.topic == self._receipt
        try:
            payload = decode(Receipt if receipt else ResyncRequest, message.payload)
        except ContractError as exc:
            if report := self.rejections.add(message.topic, exc.reason, str(exc)):
                log.warning("rejected a %s on %s", "receipt" if receipt else "resync command", report)
            return
        if receipt:
            self._confirmed.put(payload)  # type: ignore[arg-type]
        else:
            self._resyncs.put(payload)  # type: ignore[arg-type]

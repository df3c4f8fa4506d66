"""The edge's MQTT side: retained status with a last will, live counts, hourly records, resync.

Hourly records are published from the local store (never from memory only) and marked delivered
when the broker's PUBACK for that exact revision arrives. On every (re)connection the daemon
publishes everything still undelivered, oldest first, so an outage of any length loses nothing;
duplicates are harmless by the contract's revision rule.

Paho's callbacks run on the connection thread; they only fill queues. The daemon's thread, the
only one touching SQLite and the in-flight map, drains them with `acknowledged()`,
`take_reconnect()` and `resync_requests()`.
"""

from __future__ import annotations

import logging
import queue
import threading

import paho.mqtt.client as paho

from edge.daemon.config import MqttSection
from edge.wire.contract import (
    STATUS_OFFLINE,
    ContractError,
    HourlyRecord,
    LiveCounts,
    ResyncRequest,
    decode,
    encode,
    topic,
)
from edge.wire.mqtt import Connection
from edge.wire.rejections import Rejections

log = logging.getLogger("aicctv.uplink")


class Uplink:
    def __init__(self, config: MqttSection, device: str) -> None:
        self.device = device
        self.prefix = config.prefix
        self._status = topic(config.prefix, device, "status")
        self._in_flight: dict[int, HourlyRecord] = {}  # mid → record; the daemon's thread only
        self._acked: queue.SimpleQueue[int] = queue.SimpleQueue()
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
            on_publish=self._on_publish,
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
        """Publish hourly records in order (QoS 1); each is acknowledged via `acknowledged()`."""
        if not self.connected:
            return  # they stay undelivered in the store and go out on reconnection
        name = topic(self.prefix, self.device, "hourly")
        for record in records:
            info = self.connection.client.publish(name, encode(record), qos=1)
            if info.rc == paho.MQTT_ERR_SUCCESS:
                self._in_flight[info.mid] = record

    def acknowledged(self) -> list[HourlyRecord]:
        """Records whose PUBACK arrived since the last call."""
        done = []
        while not self._acked.empty():
            record = self._in_flight.pop(self._acked.get(), None)
            if record is not None:
                done.append(record)
        return done

    def take_reconnect(self) -> bool:
        """True once after each successful connection: time to publish the backlog."""
        if self._reconnected.is_set():
            self._reconnected.clear()
            self._in_flight.clear()  # a new session: whatever was in flight goes out again
            return True
        return False

    def resync_requests(self) -> list[ResyncRequest]:
        requests = []
        while not self._resyncs.empty():
            requests.append(self._resyncs.get())
        return requests

    def _on_connect(self, client: paho.Client, _session_present: bool) -> None:
        client.publish(self._status, self.current_status, qos=1, retain=True)
        client.subscribe(topic(self.prefix, self.device, "cmd/resync"), qos=1)
        self._reconnected.set()

    def _on_publish(self, mid: int) -> None:
        # Only the mid crosses threads: paho calls this holding its own lock, and the daemon's
        # thread owns the mid-to-record map, so neither waits on the other.
        self._acked.put(mid)

    def _on_message(self, message: paho.MQTTMessage) -> None:
        # decode raises nothing else, whatever the payload: an exception here would end paho's
        # thread, and with it every publication and reconnection of this daemon.
        try:
            request = decode(ResyncRequest, message.payload)
        except ContractError as exc:
            if report := self.rejections.add(message.topic, exc.reason, str(exc)):
                log.warning("rejected a resync command on %s", report)
            return
        self._resyncs.put(request)  # type: ignore[arg-type]

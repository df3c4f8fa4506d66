"""MQTT connections for the edge daemon and the central subscriber (paho-mqtt 2).

`Connection` owns one client's life cycle on a background thread: connect, run the network
loop, and after any failure (broker down, connection refused, network lost) reconnect after an
exponentially growing, jittered delay, so a fleet does not hammer a broker that comes back.
Callbacks run on that thread; owners hand work to their own thread through queues.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

log = logging.getLogger("aicctv.mqtt")

# One DNS label (RFC 1123; underscores too, which some LAN names carry).
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def _valid_host(host: str) -> bool:
    """A name a resolver can take, or an IP address: `a..b` or `-x` would only fail later, deep in
    the connection thread, so they are refused with the setting that holds them."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        labels = host.removesuffix(".").split(".")
        return len(host) <= 253 and all(_LABEL.fullmatch(label) for label in labels)


@dataclass(frozen=True)
class BrokerURL:
    """`mqtt://[user[:password]@]host[:port]`, or `mqtts://` for TLS (default port 8883)."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> BrokerURL:
        """Raises ValueError saying what is wrong; the message leaves the URL out, since it may
        hold a password: callers name the setting or flag it came from."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("a broker URL must look like mqtt://host:1883 or mqtts://host:8883")
        if not _valid_host(parts.hostname):
            raise ValueError(f"the broker host {parts.hostname!r} is not a valid host name or IP address")
        if parts.path not in ("", "/") or parts.query:
            raise ValueError("the broker URL has a path or query; use only scheme, credentials, host and port")
        try:
            port = parts.port
        except ValueError:
            raise ValueError("the broker URL has an invalid port") from None
        if port == 0:
            raise ValueError("the broker URL has port 0: leave the port out for the default (1883, mqtts 8883)")
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname,
            port=port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def __str__(self) -> str:
        # Never print the password (logs end up in journald and bug reports).
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def backoff_delay(
    attempt: int, base_s: float = 0.5, cap_s: float = 30.0, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before reconnect attempt `attempt` (0, 1, …): doubling from `base_s` up to
    `cap_s`, then a uniformly random point in its upper half ("equal jitter"), so devices that
    lost the broker together do not all return in the same instant, yet none retries at once."""
    ceiling = min(cap_s, base_s * 2 ** min(attempt, 32))
    return ceiling / 2 + rand() * ceiling / 2


class Connection:
    """A paho client kept connected. `on_connect(client, session_present)` runs after every
    successful CONNACK: subscribe and (re)publish there. `persistent_session_s`: MQTT 5 clean
    start off with this session expiry, so the broker queues QoS 1 messages while we are away."""

    def __init__(
        self,
        broker: BrokerURL,
        client_id: str,
        *,
        version: int = 5,
        will: tuple[str, bytes] | None = None,
        persistent_session_s: int | None = None,
        manual_ack: bool = False,
        keepalive_s: int = 30,
        max_backoff_s: float = 30.0,
        ca_file: str | None = None,
        on_connect: Callable[[paho.Client, bool], None] | None = None,
        on_message: Callable[[paho.MQTTMessage], None] | None = None,
        on_publish: Callable[[int], None] | None = None,
    ) -> None:
        if version not in (4, 5):
            raise ValueError("MQTT protocol version must be 4 (3.1.1) or 5")
        self.broker = broker
        self.client_id = client_id
        self.version = version
        self.keepalive_s = keepalive_s
        self.max_backoff_s = max_backoff_s
        self.persistent_session_s = persistent_session_s
        self.connected = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_connects = [on_connect] if on_connect else []
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5 if version == 5 else paho.MQTTv311,
            clean_session=None if version == 5 else persistent_session_s is None,
            manual_ack=manual_ack,
        )
        if broker.username:
            client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            client.tls_set(ca_certs=ca_file)
        if will:
            client.will_set(will[0], will[1], qos=1, retain=True)
        # Our own loop reconnects; paho must not queue unacknowledged messages without bound.
        client.max_queued_messages_set(10_000)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        if on_message:
            client.on_message = lambda _c, _u, message: on_message(message)
        if on_publish:
            client.on_publish = lambda _c, _u, mid, _rc, _p: on_publish(mid)
        self.client = client

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"mqtt-{self.client_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Disconnect cleanly (so the broker does not fire the last will) and end the thread."""
        self._stopping.set()
        if self.connected.is_set():
            self.client.disconnect()
        if self._thread:
            self._thread.join(timeout_s)

    def _connect_kwargs(self) -> dict:
        if self.version != 5:
            return {}
        if self.persistent_session_s is None:
            return {"clean_start": True}
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.persistent_session_s
        return {"clean_start": False, "properties": properties}

    def _run(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            try:
                self.client.connect(self.broker.host, self.broker.port, self.keepalive_s, **self._connect_kwargs())
            except OSError as exc:
                log.warning("cannot reach broker %s: %s", self.broker, exc)
            else:
                while self.client.loop(timeout=0.2) == paho.MQTT_ERR_SUCCESS:
                    if self.connected.is_set():
                        attempt = 0
                    if self._stopping.is_set() and not self.connected.is_set():
                        break
                self.connected.clear()
            if self._stopping.is_set():
                break
            delay = backoff_delay(attempt, cap_s=self.max_backoff_s)
            attempt += 1
            log.info("reconnecting to %s in %.1f s", self.broker, delay)
            self._stopping.wait(delay)

    def add_on_connect(self, callback: Callable[[paho.Client, bool], None]) -> None:
        """Also run `callback(client, session_present)` after every CONNACK (e.g. to subscribe)."""
        self._on_connects.append(callback)

    def _on_connect(self, client: paho.Client, _userdata: object, flags: paho.ConnectFlags, reason, _props) -> None:
        if reason.is_failure:
            log.warning("broker %s refused the connection: %s", self.broker, reason)
            return
        log.info("connected to %s", self.broker)
        self.connected.set()
        for callback in self._on_connects:
            callback(client, flags.session_present)

    def _on_disconnect(self, _client: paho.Client, _userdata: object, _flags, reason, _props) -> None:
        self.connected.clear()
        if not self._stopping.is_set():
            log.warning("lost broker %s: %s", self.broker, reason)

"""Real services for tests and benchmarks: a Mosquitto broker of our own on a free port, and
PostgreSQL. The one module both `tests/` and `bench/` import (benchmarks never import tests).

Nothing here is mocked: the edge and the central subscriber talk to a real broker that the
tests start, stop and restart, and the PostgreSQL backend writes to a real server.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import typing
import uuid
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
POSTGRES_URL = os.environ.get("AICCTV_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def missing(what: str, how: str) -> typing.NoReturn:
    """In a test: skip on a developer's machine without the service, fail in CI, which must
    have it. In a benchmark: stop with one line saying what to install."""
    message = f"{what} is not available: {how}"
    if "pytest" in sys.modules:
        import pytest

        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    raise SystemExit(f"error: {message}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout_s} s")


class Mosquitto:
    """A broker with persistence in its own folder, so `stop()` then `start()` keeps sessions
    and queued QoS 1 messages, like a production broker restart."""

    def __init__(self, folder: Path) -> None:
        if MOSQUITTO is None:
            missing("mosquitto", "install the Debian package (apt install mosquitto)")
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.config = folder / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {folder}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 100000\n"
            "log_dest none\n"
            # Started as root, mosquitto switches to user `mosquitto`, which could not write the
            # persistence file into our private folder.
            f"user {getpass.getuser()}\n"
        )
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.folder / "mosquitto.log", "ab") as log:
            self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=log, stderr=log)
        try:
            wait_for_port(self.port)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; mosquitto said: {(self.folder / 'mosquitto.log').read_text()[-500:]}") from None

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


def postgres_database() -> str:
    """URL of a fresh, empty database on the test server (dropped by `drop_database`)."""
    try:
        import psycopg
    except ImportError:
        missing("psycopg", "pip install 'aicctv[central]'")
    name = f"aicctv_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE DATABASE {name}")
    except psycopg.OperationalError as exc:
        missing("PostgreSQL", f"{POSTGRES_URL}: {str(exc).strip().splitlines()[0]} (set AICCTV_TEST_POSTGRES)")
    return POSTGRES_URL.rsplit("/", 1)[0] + "/" + name


def drop_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class Listener:
    """A plain paho subscriber that records (topic, payload) pairs, for checking what reached
    the broker. `session`: a persistent session name, so messages published while it is
    disconnected (or while the broker restarts) are kept for it."""

    def __init__(self, url: str, topics: str, session: str | None = None) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.url, self.topics = url, topics
        self.messages: list[tuple[str, bytes, bool]] = []
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=session or f"listener-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv311,
            clean_session=session is None,
        )
        self.subscribed = threading.Event()
        self.client.on_message = lambda _c, _u, m: self.messages.append((m.topic, m.payload, m.retain))
        self.client.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe(topics, qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()

    def connect(self) -> Listener:
        """Connect and return once subscribed (so nothing published afterwards is missed)."""
        port = int(self.url.rsplit(":", 1)[1])
        self.subscribed.clear()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise TimeoutError(f"no SUBACK from {self.url}")
        return self

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def payloads(self, suffix: str) -> list[bytes]:
        return [payload for name, payload, _ in self.messages if name.endswith(suffix)]


def wait_until(condition, timeout_s: float = 30.0, what: str = "condition") -> None:
    """Poll `condition()` until true; a deadline, not a fixed sleep, so slow machines pass."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)

"""The systemd notify protocol: READY, STATUS, and watchdog pings that stop when frames stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from edge.wire.systemd import Notifier

WIDTH, HEIGHT = 320, 240


class NotifySocket:
    """What systemd listens on: a datagram socket; records (arrival time, message) pairs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            for line in data.decode().splitlines():
                self.messages.append((time.monotonic(), line))

    def times(self, message: str) -> list[float]:
        return [t for t, m in self.messages if m == message]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def test_notifier_is_a_no_op_outside_systemd():
    notifier = Notifier(environ={})
    assert not notifier.active
    notifier.ready("x")
    notifier.alive()


def test_notifier_speaks_the_protocol(tmp_path):
    listener = NotifySocket(tmp_path / "notify")
    notifier = Notifier(environ={"NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": "400000"})
    notifier.ready("warming up")
    notifier.alive()
    notifier.alive()  # too soon after the last: not sent
    time.sleep(0.15)
    notifier.alive()
    deadline = time.monotonic() + 5
    while len(listener.messages) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    listener.close()
    assert [m for _, m in listener.messages] == ["READY=1", "STATUS=warming up", "WATCHDOG=1", "WATCHDOG=1"]


def stream_with_a_stall(fifo: Path, seconds: float, stall_s: float, stop: threading.Event, log: dict) -> None:
    """A live y4m stream into a FIFO: frames for `seconds`, then silence for `stall_s` (the
    writer hangs on, like a camera whose driver froze), then frames again until `stop`. `log`
    gets the monotonic times at which frames started, stalled and resumed."""
    frame = b"FRAME\n" + bytes([90]) * (WIDTH * HEIGHT) + bytes([128]) * (WIDTH * HEIGHT // 2)
    with open(fifo, "wb") as out:
        out.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F25:1 Ip A1:1 C420jpeg\n".encode())
        log["started"] = time.monotonic()  # the open above waits for the daemon to open its end
        stall_at = log["started"] + seconds
        while not stop.is_set():
            if stall_at is not None and time.monotonic() >= stall_at:
                log["stalled"] = time.monotonic()
                time.sleep(stall_s)
                log["resumed"] = time.monotonic()
                stall_at = None
            try:
                out.write(frame)
                out.flush()
            except BrokenPipeError:
                return
            time.sleep(0.04)


def test_watchdog_pings_while_frames_flow_and_stop_when_they_stop(broker, tmp_path):
    listener = NotifySocket(tmp_path / "notify")
    fifo = tmp_path / "camera.y4m"
    os.mkfifo(fifo)
    env = {**os.environ, "NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": "1000000"}
    command = [sys.executable, "-m", "edge.cli.main", "edge", "run", "--source", str(fifo), "--device-id", "cam-w"]
    daemon = subprocess.Popen(
        [*command, "--broker", broker.url, "--db", str(tmp_path / "e.db")], env=env, stderr=subprocess.DEVNULL
    )
    frames_s, stall_s = 4.0, 4.0
    stop = threading.Event()
    timeline: dict[str, float] = {}
    writer = threading.Thread(target=stream_with_a_stall, args=(fifo, frames_s, stall_s, stop, timeline))
    try:
        writer.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and time.monotonic() < timeline.get("resumed", float("inf")) + 2.0:
            time.sleep(0.1)
        # Stop while frames flow: a read blocked in the driver cannot see the signal (systemd
        # would escalate to SIGKILL after TimeoutStopSec; state is checkpointed for that).
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        stop.set()
        daemon.kill()
        writer.join()
        listener.close()
    assert listener.times("READY=1"), "READY=1 once the models are loaded"
    assert listener.times("STOPPING=1")
    pings = listener.times("WATCHDOG=1")
    stall_start, stall_end = timeline["stalled"], timeline["resumed"]
    while_flowing = [t for t in pings if timeline["started"] + 1.5 < t < stall_start]
    assert len(while_flowing) >= 3, "pings every 0.25 s while frames flow"
    # A frame or two may still be in flight when the stream freezes; after that, silence.
    assert not [t for t in pings if stall_start + 1.0 < t < stall_end], "no pings while no frame arrives"
    assert [t for t in pings if t > stall_end], "pings resume when frames come back"

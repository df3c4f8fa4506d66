"""The systemd notify protocol: READY, STATUS, and watchdog pings that stop when frames stop."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.services import wait_until
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
                self._record(self.sock.recv(4096))
            except TimeoutError:
                continue

    def _record(self, data: bytes) -> None:
        for line in data.decode().splitlines():
            self.messages.append((time.monotonic(), line))

    def times(self, message: str) -> list[float]:
        return [t for t, m in self.messages if m == message]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        # What arrived after the reader's last look is still queued on the socket: keep it too.
        self.sock.setblocking(False)
        while True:
            try:
                self._record(self.sock.recv(4096))
            except BlockingIOError:
                break
        self.sock.close()


def test_notifier_is_a_no_op_outside_systemd():
    notifier = Notifier(environ={})
    assert not notifier.active
    notifier.ready("x")
    notifier.alive()


def test_notifier_speaks_the_protocol(tmp_path):
    listener = NotifySocket(tmp_path / "notify")
    # Pings every second at most: long enough that no pause of a busy machine lets the second
    # call below through, which must be refused as too soon after the first.
    notifier = Notifier(environ={"NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": "4000000"})
    notifier.ready("warming up")
    notifier.alive()
    notifier.alive()
    time.sleep(notifier.ping_every_s)  # the interval itself is what is tested: a sleep lasts at least this
    notifier.alive()
    wait_until(lambda: len(listener.messages) >= 4, 10, "four messages")
    listener.close()
    assert [m for _, m in listener.messages] == ["READY=1", "STATUS=warming up", "WATCHDOG=1", "WATCHDOG=1"]


def stream_with_a_stall(fifo: Path, stall: threading.Event, resume: threading.Event, stop: threading.Event) -> dict:
    """A live y4m stream into a FIFO: frames until `stall` is set, then silence (the writer hangs
    on, like a camera whose driver froze) until `resume`, then frames until `stop`. Returns the
    monotonic times at which it stalled and resumed (filled in as it goes)."""
    frame = b"FRAME\n" + bytes([90]) * (WIDTH * HEIGHT) + bytes([128]) * (WIDTH * HEIGHT // 2)
    timeline: dict[str, float] = {}

    def write() -> None:
        with open(fifo, "wb") as out:  # waits for the daemon to open its end
            out.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F25:1 Ip A1:1 C420jpeg\n".encode())
            while not stop.is_set():
                if stall.is_set() and "stalled" not in timeline:
                    timeline["stalled"] = time.monotonic()
                    resume.wait()
                    timeline["resumed"] = time.monotonic()
                try:
                    out.write(frame)
                    out.flush()
                except BrokenPipeError:
                    return
                time.sleep(0.04)

    threading.Thread(target=write, daemon=True).start()
    return timeline


def test_watchdog_pings_while_frames_flow_and_stop_when_they_stop(broker, tmp_path):
    listener = NotifySocket(tmp_path / "notify")
    fifo = tmp_path / "camera.y4m"
    os.mkfifo(fifo)
    watchdog_s = 4.0  # WatchdogSec=4: the daemon pings every second while frames flow
    env = {**os.environ, "NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": str(int(watchdog_s * 1e6))}
    command = [sys.executable, "-m", "edge.cli.main", "edge", "run", "--source", str(fifo), "--device-id", "cam-w"]
    daemon = subprocess.Popen(
        [*command, "--broker", broker.url, "--db", str(tmp_path / "e.db")], env=env, stderr=subprocess.DEVNULL
    )
    stall, resume, stop = threading.Event(), threading.Event(), threading.Event()
    timeline = stream_with_a_stall(fifo, stall, resume, stop)

    def pings() -> list[float]:
        return listener.times("WATCHDOG=1")

    try:
        wait_until(lambda: len(pings()) >= 5, 120, "five watchdog pings while frames flow")
        stall.set()
        # Silence well past the deadline: systemd would restart the service by now.
        wait_until(lambda: "stalled" in timeline, 10, "the stream stalls")
        time.sleep(2 * watchdog_s)
        resume.set()
        wait_until(
            lambda: "resumed" in timeline and any(t > timeline["resumed"] for t in pings()),
            60,
            "pings after the stream resumes",
        )
        # Stop while frames flow: a read blocked in the driver cannot see the signal (systemd
        # would escalate to SIGKILL after TimeoutStopSec; state is checkpointed for that).
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        stop.set()
        resume.set()
        daemon.kill()
        listener.close()
    assert listener.times("READY=1"), "READY=1 once the models are loaded"
    assert listener.times("STOPPING=1")
    stall_start, stall_end = timeline["stalled"], timeline["resumed"]
    flowing = [t for t in pings() if t < stall_start]
    # What systemd needs: a ping at least every WatchdogSec/2 while frames flow.
    assert max(b - a for a, b in itertools.pairwise(flowing)) <= watchdog_s / 2, flowing
    # The frames in flight when the stream froze are processed (a slow machine may lag by a
    # second or two); after them, silence until frames come back.
    assert not [t for t in pings() if stall_start + watchdog_s / 2 < t < stall_end], "no pings without frames"

"""systemd's notify protocol (sd_notify) in a few lines: READY, STATUS and watchdog pings.

Outside systemd (no NOTIFY_SOCKET) every call is a no-op, so the daemons call it
unconditionally. The watchdog is petted from the daemon's main loop only: if that loop hangs
(a stream read that never returns, a stuck inference), the pings stop and systemd restarts the
service after `WatchdogSec=`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        # "@name" is a socket in the abstract namespace (leading NUL byte).
        self.address = "\0" + address[1:] if address.startswith("@") else address
        watchdog_usec = int(env.get("WATCHDOG_USEC", "0") or 0)
        # Ping at four times the deadline's rate: one late ping is never fatal.
        self.ping_every_s = watchdog_usec / 4e6 if watchdog_usec else None
        self._last_ping = 0.0
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) if self.address else None

    @property
    def active(self) -> bool:
        return self._socket is not None

    def notify(self, *fields: str) -> None:
        if self._socket is None:
            return
        # systemd gone (e.g. shutting down): nothing useful to do about it.
        with contextlib.suppress(OSError):
            self._socket.sendto("\n".join(fields).encode(), self.address)

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.notify(f"STATUS={status}")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def alive(self) -> None:
        """Call from the main loop whenever it makes progress; pings at most at the needed rate."""
        if self.ping_every_s is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.ping_every_s:
            self._last_ping = now
            self.notify("WATCHDOG=1")

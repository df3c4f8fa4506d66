"""`aicctv watch`: every device's live counts and status, from the broker, in the terminal.

`LiveBoard` is the whole state and its rendering, fed (topic, payload) pairs and a clock, so it
is tested without a broker; `watch` is the thin MQTT adapter around it. Statuses are retained,
so a fresh watcher learns every known device's status the moment it subscribes; live counts
are not, so a device's numbers appear with its next live message (about a second).
"""

from __future__ import annotations

import argparse
import math
import queue
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TextIO

import paho.mqtt.client as paho

from edge.wire.config import ConfigError
from edge.wire.contract import (
    DEFAULT_PREFIX,
    STATUS_ONLINE,
    ContractError,
    LiveCounts,
    check_prefix,
    clipped,
    decode,
    decode_status,
    parse_topic,
)
from edge.wire.mqtt import BrokerURL, Connection
from edge.wire.rejections import Rejections

EXIT_FAILED = 1
STALE_S = 5.0  # live counts come about once a second: five missed in a row means trouble
REFRESH_S = 0.5  # terminal redraw period, so ages keep ticking when nothing arrives
COLUMNS = ("device", "status", "in view", "this hour", "last live")
# Cursor home, clear to end of line / of screen, hide / show cursor. Redrawing over the old
# table instead of clearing first keeps the screen from flickering.
HOME, CLEAR_LINE, CLEAR_DOWN, HIDE_CURSOR, SHOW_CURSOR = "\x1b[H", "\x1b[K", "\x1b[J", "\x1b[?25l", "\x1b[?25h"


@dataclass
class DeviceView:
    status: str | None = None
    live: LiveCounts | None = None
    received: float | None = None  # our clock at the last live message, not the device's


class LiveBoard:
    """Devices seen on `<prefix>/+/status` and `<prefix>/+/live`, and the messages rejected.

    Ages are measured on the watcher's own clock (`now` passed in, monotonic in practice): a
    device's clock may be off, and what matters here is how long since we last heard from it."""

    def __init__(self, prefix: str = DEFAULT_PREFIX, stale_s: float = STALE_S) -> None:
        self.prefix = check_prefix(prefix)
        self.stale_s = stale_s
        self.devices: dict[str, DeviceView] = {}
        self.rejections = Rejections()
        # The line to print for the latest message if it was rejected; None if it was not, or
        # if a rejection for the same reason was printed within the last minute.
        self.report: str | None = None

    def update(self, topic: str, payload: bytes, now: float) -> str | None:
        """Apply one message; the device it updated, or None if it broke the contract (counted)."""
        self.report = None
        try:
            device, channel = parse_topic(self.prefix, topic)
            if channel == "status":
                status = decode_status(payload)
                self.devices.setdefault(device, DeviceView()).status = status
            elif channel == "live":
                live = decode(LiveCounts, payload, device)
                view = self.devices.setdefault(device, DeviceView())
                view.live, view.received = live, now
            else:
                raise ContractError(f"channel {channel!r} is neither status nor live")
        except ContractError as exc:
            self.report = self.rejections.add(topic, exc.reason, str(exc))
            return None
        return device

    def stale(self, device: str, now: float) -> bool:
        received = self.devices[device].received
        return received is None or now - received > self.stale_s

    def cells(self, device: str, now: float) -> list[str]:
        """The device's row: status, in view, visitors this hour, age of the last live message."""
        view = self.devices[device]
        if view.live is None or view.received is None:
            return [view.status or "?", "-", "-", "never"]
        age = f"{now - view.received:.1f} s" + (" STALE" if self.stale(device, now) else "")
        return [view.status or "?", str(view.live.in_view), str(view.live.visitors_this_hour), age]

    def line(self, device: str, now: float) -> str:
        """One device as a single greppable line, for output that is not a terminal."""
        status, in_view, hour, age = self.cells(device, now)
        return f"{device} {status} in_view={in_view} this_hour={hour} last_live={age.replace(' ', '')}"

    def footer(self, now: float) -> str:
        online = [d for d, v in self.devices.items() if v.status == STATUS_ONLINE]
        # People in view only where the count is current: a stale number is not "now".
        in_view = sum(v.live.in_view for d, v in self.devices.items() if v.live and not self.stale(d, now))
        text = f"{len(self.devices)} devices, {len(online)} online, {in_view} people in view"
        if self.rejections.total:
            text += f"; malformed payloads rejected: {self.rejections.total} (last: {self.rejections.last[:100]})"
        return text

    def render(self, now: float) -> str:
        """All devices as an aligned table, sorted by id, with the footer."""
        rows = [list(COLUMNS), *([d, *self.cells(d, now)] for d in sorted(self.devices))]
        widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
        # Counts right-aligned, so their digits line up.
        justify = [str.ljust, str.ljust, str.rjust, str.rjust, str.ljust]
        lines = ["  ".join(j(c, w) for j, c, w in zip(justify, row, widths, strict=True)).rstrip() for row in rows]
        if not self.devices:
            lines.append("(no device has published yet)")
        return "\n".join([*lines, "", self.footer(now)])


def _take(messages: queue.Queue[tuple[str, bytes]], timeout_s: float) -> list[tuple[str, bytes]]:
    """Wait up to `timeout_s` for a message, then take every one already queued."""
    try:
        batch = [messages.get(timeout=max(timeout_s, 0))]
    except queue.Empty:
        return []
    while True:
        try:
            batch.append(messages.get_nowait())
        except queue.Empty:
            return batch


def watch(broker: BrokerURL, prefix: str, duration_s: float | None, out: TextIO) -> int:
    """Show the board until Ctrl-C or `duration_s`: redrawn in place on a terminal, otherwise
    one line per message. Returns the exit status (1 if the broker was never reached)."""
    board = LiveBoard(prefix)
    tty = out.isatty()
    messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
    reached = threading.Event()

    def subscribe(client: paho.Client, _session_present: bool) -> None:
        reached.set()
        client.subscribe([(f"{prefix}/+/status", 1), (f"{prefix}/+/live", 0)])

    # A random client id: two watchers with the same id would keep disconnecting each other.
    connection = Connection(
        broker,
        f"aicctv-watch-{uuid.uuid4().hex[:8]}",
        version=4,  # MQTT 3.1.1: every broker speaks it, the demo's embedded one only that
        on_connect=subscribe,
        on_message=lambda message: messages.put((message.topic, clipped(message.payload))),
    )
    connection.start()
    deadline = None if duration_s is None else time.monotonic() + duration_s
    next_draw = 0.0
    if tty:
        out.write(HIDE_CURSOR + "\x1b[2J")
    # Ctrl-C sets a flag rather than raising KeyboardInterrupt, which could land inside the
    # message queue's lock and leave the MQTT thread, and so the exit, waiting on it for ever.
    stop = threading.Event()
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set()) if on_main_thread else None
    try:
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            now = time.monotonic()
            wait = REFRESH_S if deadline is None else min(REFRESH_S, deadline - now)
            for topic, payload in _take(messages, min(wait, next_draw - now) if tty else wait):
                device = board.update(topic, payload, time.monotonic())
                if not tty and (device or board.report):
                    text = board.line(device, time.monotonic()) if device else f"rejected {board.report}"
                    out.write(f"{time.strftime('%H:%M:%S')} {text}\n")
                    out.flush()
            if tty and time.monotonic() >= next_draw:
                state = "connected" if connection.connected.is_set() else "connecting…"
                header = f"aicctv watch  {broker}  {prefix}/+  {state}  {time.strftime('%H:%M:%S')}  (Ctrl-C quits)"
                screen = [header, "", *board.render(time.monotonic()).splitlines()]
                out.write(HOME + "".join(line + CLEAR_LINE + "\n" for line in screen) + CLEAR_DOWN)
                out.flush()
                next_draw = time.monotonic() + REFRESH_S
    finally:
        if on_main_thread:
            signal.signal(signal.SIGINT, previous)
        connection.stop()
        if tty:
            out.write(SHOW_CURSOR)
            out.flush()
    if not reached.is_set():
        print(f"error: could not connect to the broker at {broker}", file=sys.stderr)
        return EXIT_FAILED
    if not tty:
        out.write(board.footer(time.monotonic()) + "\n")
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    try:
        broker = BrokerURL.parse(args.broker)
        prefix = check_prefix(args.prefix)
    except ValueError as exc:  # ContractError is a ValueError too
        raise ConfigError(str(exc)) from None
    if args.duration is not None and not 0 < args.duration < math.inf:
        raise ConfigError(f"--duration {args.duration:g}: give a positive number of seconds")
    return watch(broker, prefix, args.duration, sys.stdout)


def add_commands(commands: argparse._SubParsersAction) -> None:
    watch_parser = commands.add_parser(
        "watch",
        help="live counts and status of every device, from the broker",
        description=(
            "Subscribe to every device's status (retained: online, source-lost, offline) and live\n"
            "counts, and show them as a table redrawn in place. Live counts older than 5 s are\n"
            "marked STALE; payloads that break the MQTT contract are counted, never shown.\n"
            "When stdout is not a terminal, print one line per message instead (for pipes and logs;\n"
            "rejections: one line per reason a minute at most)."
        ),
        epilog=(
            "examples:\n"
            "  aicctv watch --broker mqtt://central.local\n"
            "  aicctv watch --broker mqtts://viewer:secret@broker.example:8883 --prefix shops/eu\n"
            "  aicctv watch --broker mqtt://localhost:1883 --duration 10 > live.log\n\n"
            "exit status: 0 stopped (Ctrl-C or --duration), 1 the broker was never reached,\n"
            "2 usage error (bad broker URL or prefix)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    watch_parser.add_argument("--broker", required=True, metavar="URL", help="mqtt://HOST:PORT or mqtts://…")
    watch_parser.add_argument(
        "--prefix", default=DEFAULT_PREFIX, help=f"topic prefix the devices publish under (default {DEFAULT_PREFIX})"
    )
    watch_parser.add_argument(
        "--duration", type=float, metavar="S", help="exit after S seconds (default: until Ctrl-C)"
    )
    watch_parser.set_defaults(func=cmd_watch)

"""Settings from the dashboard, applied on the device without a restart (docs/mqtt.md, "Settings").

Central retains a `Settings` command on `<prefix>/<device>/cmd/settings`; the uplink hands it to
the daemon's thread, which checks it exactly as its config file's values are checked (the
`[vision]` declarations: bounds, then the section's own checks), applies it or rejects it, and
answers with a retained `SettingsState` on `<prefix>/<device>/settings`. A rejected command
changes nothing. Being retained, the latest command arrives again on every connection: applying
the same settings twice changes nothing either.

- `paused`: the daemon skips its frames (no analysis, no counting); the paused time is not
  covered, so the hour's `coverage` says how much of it was counted. With `paused_until` the
  pause ends by itself at that time, without central: the link says so (`PauseOver`) and the
  device, if that pause is still the one in force, counts again and answers so. A command that
  arrives after its pause's end applies as counting at once. The answer says since when the
  device is paused (`paused_since`, its own clock).
- `min_face`: the detector is rebuilt with the new smallest face (the models stay loaded).
- `opening_hours`: kept for display (central's dashboard uses its own copy).
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import time
from typing import Any

import paho.mqtt.client as paho

from edge.vision.config import VisionConfig
from edge.wire.config import ConfigError, validate
from edge.wire.contract import ContractError, Settings, SettingsState, decode, encode, topic
from edge.wire.mqtt import Connection
from edge.wire.rejections import Rejections

log = logging.getLogger("aicctv.settings")


def checked_vision(vision: VisionConfig, min_face: int) -> VisionConfig:
    """`vision` with `min_face`, validated like the config file's [vision]; raises ConfigError."""
    changed = dataclasses.replace(vision, min_face=min_face)
    validate(changed, "vision")
    for check in changed.checks():
        check()
    return changed


@dataclasses.dataclass(frozen=True)
class PauseOver:
    """From the link: the end of a pause some command asked for has come. Only the pause in
    force ends; one that a later command replaced has nothing left to end."""

    at: float


class DeviceSettings:
    """What the dashboard has set on this device; `configured`: the config file's [vision]."""

    def __init__(self, device: str, configured: VisionConfig) -> None:
        self.device = device
        self.configured = configured
        self.vision = configured
        self.paused = False
        self.paused_since: float | None = None
        self.paused_until: float | None = None
        self.opening_hours = ""
        self.issued: float | None = None  # the command in force

    def apply(self, command: Settings | PauseOver | str) -> SettingsState:
        """Check and apply `command` (or a rejection's reason, or a pause's end, from the link);
        the state to publish says whether it was applied."""
        now = time.time()
        if isinstance(command, str):
            return self.state(now, command)
        if isinstance(command, PauseOver):
            if self.paused and self.paused_until is not None and self.paused_until <= command.at:
                log.info("pause over: counting again")
                self.paused, self.paused_since, self.paused_until = False, None, None
            return self.state(self.issued or now, "")
        try:
            min_face = self.configured.min_face if command.min_face is None else command.min_face
            vision = self.vision if min_face == self.vision.min_face else checked_vision(self.configured, min_face)
        except ConfigError as exc:
            log.warning("rejected settings issued at %.0f: %s", command.issued, exc)
            return self.state(command.issued, f"settings: {exc}")
        paused = command.paused and (command.paused_until is None or now < command.paused_until)
        until = command.paused_until if paused else None
        if (
            vision is not self.vision
            or (paused, until) != (self.paused, self.paused_until)
            or command.opening_hours != self.opening_hours
        ):
            log.info(
                "settings applied: %s, min_face %d, opening hours %r",
                ("paused" + (f" until {until:.0f}" if until else "")) if paused else "counting",
                vision.min_face,
                command.opening_hours,
            )
        if paused and not self.paused:
            self.paused_since = now
        self.vision, self.paused, self.paused_until = vision, paused, until
        self.opening_hours, self.issued = command.opening_hours, command.issued
        if not paused:
            self.paused_since = None
        return self.state(command.issued, "")

    def state(self, issued: float, error: str) -> SettingsState:
        return SettingsState(
            self.device,
            issued,
            not error,
            error,
            self.paused,
            self.vision.min_face,
            self.opening_hours,
            paused_since=self.paused_since if self.paused else None,
            paused_until=self.paused_until if self.paused else None,
        ).validate()


def apply_vision(analyzer: Any, vision: VisionConfig) -> None:
    """Give a running Analyzer (edge.vision.analyzer) a new smallest face: its detector searches
    with the new windows from the next frame on; models are not reloaded."""
    if analyzer.config.min_face == vision.min_face:
        analyzer.config = vision
        return
    detector = analyzer.detector
    detector.min_face_px = vision.min_face
    # Its windows per frame size were computed for the old smallest face.
    detector._pyramids.clear()
    analyzer.config = vision


class SettingsLink:
    """The settings topics on the uplink's connection: subscribes to `cmd/settings` on every
    connection, queues what arrives for the daemon's thread (paho's thread only decodes), and
    publishes the answer, retained, on `settings`. Attached beside the Uplink, which keeps its
    own topics; a topic-specific callback takes this topic's messages before the uplink's."""

    def __init__(self, connection: Connection, prefix: str, device: str) -> None:
        self.connection = connection
        self.command_topic = topic(prefix, device, "cmd/settings")
        self.state_topic = topic(prefix, device, "settings")
        self.rejections = Rejections()  # paho's thread only
        # A command, or why one was rejected.
        self._commands: queue.SimpleQueue[Settings | str] = queue.SimpleQueue()
        # When the pauses asked for end, those still to come (the daemon's thread only).
        self._pause_ends: list[float] = []
        connection.client.message_callback_add(self.command_topic, self._on_message)
        connection.add_on_connect(lambda client, _session: client.subscribe(self.command_topic, qos=1))

    def commands(self) -> list[Settings | PauseOver | str]:
        """What arrived since the last call, then a PauseOver once a pause asked for has ended."""
        out: list[Settings | PauseOver | str] = []
        while not self._commands.empty():
            out.append(self._commands.get())
        now = time.time()
        self._pause_ends += [c.paused_until for c in out if isinstance(c, Settings) and c.paused_until is not None]
        if any(end <= now for end in self._pause_ends):
            self._pause_ends = [end for end in self._pause_ends if end > now]
            out.append(PauseOver(now))
        return out

    def answer(self, state: SettingsState) -> None:
        if self.connection.connected.is_set():
            self.connection.client.publish(self.state_topic, encode(state), qos=1, retain=True)

    def _on_message(self, _client: paho.Client, _userdata: object, message: paho.MQTTMessage) -> None:
        if not message.payload:
            return  # the retained command was cleared
        try:
            command = decode(Settings, message.payload)
        except ContractError as exc:
            if report := self.rejections.add(message.topic, exc.reason, str(exc)):
                log.warning("rejected a settings command on %s", report)
            self._commands.put(f"rejected: {exc}"[:800])  # answered with the settings kept
            return
        self._commands.put(command)  # type: ignore[arg-type]

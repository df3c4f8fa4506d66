"""The edge daemon: camera → vision → hourly tally → local SQLite → MQTT, until stopped.

One thread does the work (frames, SQLite, hour closing); the MQTT connection runs on its own
thread and hands acknowledgements and commands back through queues (see uplink.py).

Crash safety: every ended visitor is written together with the tally's state in one transaction,
and the state is also checkpointed every few seconds, so after a `kill -9` the daemon resumes from
its last checkpoint: closed hours are never recounted, and undelivered records go out on
reconnection. A replayed file also checkpoints its tracking state (the people in view and their
estimates) and skips the frames already accounted for, so a killed replay ends with the same log
as an uninterrupted one. A live camera starts tracking afresh: its frames from the time the daemon
was down are gone, and a person still in view is counted once, by the new run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.daemon.commands import DeviceSettings, SettingsLink, apply_vision
from edge.daemon.config import EdgeConfig
from edge.daemon.hourly import HourlyTally
from edge.daemon.store import EdgeStore
from edge.daemon.uplink import Uplink
from edge.vision.analyzer import Analyzer, FrameResult
from edge.vision.sources import Camera, Frame, FrameSource, SourceError, open_source
from edge.wire.config import redact
from edge.wire.contract import EARLIEST_TIME, STATUS_ONLINE, STATUS_SOURCE_LOST, HourlyRecord, LiveCounts
from edge.wire.mqtt import backoff_delay
from edge.wire.systemd import Notifier

log = logging.getLogger("aicctv.edge")

TALLY_STATE = "tally"
TRACKING_STATE = "tracking"
CHECKPOINT_EVERY_S = 5.0
STATUS_EVERY_S = 5.0
PRUNE_EVERY_S = 86400.0
# Smaller frames cannot hold a face the detector finds; they come from broken streams.
MIN_FRAME_SIDE = 16


def usable_image(image: np.ndarray | None) -> bool:
    """Whether a decoded frame is a colour image the detector can take (H×W×3, not tiny)."""
    return image is not None and image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) >= MIN_FRAME_SIDE


class _ReplayStopped(Exception):
    """Raised through the analyzer to stop a replay without ending the tracks in view."""


@dataclass
class RunSummary:
    frames: int = 0
    bad_frames: int = 0
    visitors: int = 0
    hours_closed: int = 0
    undelivered: int = 0
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        seconds = time.monotonic() - self.started
        return (
            f"{self.frames} frames in {seconds:.1f} s ({self.frames / max(seconds, 1e-9):.1f} fps), "
            f"{self.visitors} visitors, {self.hours_closed} {'hour' if self.hours_closed == 1 else 'hours'} closed, "
            f"{self.undelivered} records not yet delivered"
        )


class EdgeDaemon:
    """`replay_start`: Unix time at which a video file is treated as filmed (frame time = start +
    index / fps); `until_end`: after the source's last frame close every hour, deliver, exit."""

    def __init__(
        self,
        config: EdgeConfig,
        replay_start: float | None = None,
        until_end: bool = False,
    ) -> None:
        self.config = config
        self.device = config.device.id
        self.replay = replay_start is not None or Path(config.source.spec).is_file()
        self.replay_start = replay_start if replay_start is not None else time.time()
        self.until_end = until_end
        self.store = EdgeStore.open_or_replace(config.storage.db)
        # The source may hold camera credentials: logs, events and STATUS show it redacted.
        self.source_name = redact(config.source.spec)
        self.tally = HourlyTally(
            self.device,
            max_gap_s=config.hourly.max_gap_s,
            grace_s=config.hourly.grace_s,
            entry_line=config.vision.zones().entry_line is not None,
        )
        snapshot = self.store.load_state(TALLY_STATE)
        if snapshot:
            self.tally.restore(snapshot)
        self.uplink = Uplink(config.mqtt, self.device)
        # Settings from the dashboard (pause, min_face, opening hours): see commands.py.
        self.settings = DeviceSettings(self.device, config.vision)
        self.settings_link = SettingsLink(self.uplink.connection, config.mqtt.prefix, self.device)
        self.analyzer = Analyzer(config.vision)
        self.tracking = self.analyzer.tracking()
        tracking = self.store.load_state(TRACKING_STATE) if self.replay else None
        # Saved with the tally in one transaction; the frame check skips another device's state.
        if tracking and tracking["tracker"]["last_time"] == self.tally.last_frame:
            self.tracking.restore(tracking)
        self.summary = RunSummary()
        self.notifier = Notifier()
        self.stopping = False
        self.source_state = "opening"
        self._in_view = 0
        self._clock_warned = False
        self._last_checkpoint = self._last_live = self._last_status = time.monotonic()
        self._frames_at_status = 0
        self._next_prune = 0.0

    def stop(self) -> None:
        """Finish the current frame, checkpoint and exit (signal-safe). A live source counts the
        people in view as visitors; a replay keeps them in its tracking state for the next run."""
        self.stopping = True

    def run(self) -> RunSummary:
        self._prune()
        self.store.add_event("started", f"source {self.source_name}")
        self.uplink.start()
        # READY once the models are loaded, not once the camera opens: a camera missing at boot
        # must not fail the start (and loop restarts); STATUS and the MQTT status say "source lost".
        self.notifier.ready(f"models loaded, opening {self.source_name}")
        try:
            self._run_source()
            if self.until_end and not self.stopping:
                self._flush()
            else:
                self._serve_until_stopped()
        finally:
            self.notifier.stopping()
            self._checkpoint()
            self.summary.undelivered = self.store.undelivered_count()
            self.store.add_event("stopped", self.summary.line())
            self.uplink.stop()
            self.store.close()
        return self.summary

    # -- the source and its frames -----------------------------------------------------------

    def _run_source(self) -> None:
        """Process the source until it ends (a file) or we are stopped; a live source that fails
        is reopened with backoff, and its status and the local log say so meanwhile."""
        s = self.config.source
        camera = Camera(s.width, s.height, s.fps, s.rotate, s.flip)
        attempt = 0
        while not self.stopping:
            try:
                source = open_source(self.config.source.spec, start=self.replay_start, camera=camera)
            except SourceError as exc:
                if self.replay:
                    raise SourceError(redact(str(exc))) from None
                self._source_lost(redact(str(exc)), attempt)
                attempt += 1
                continue
            if attempt:
                self.store.add_event("source back", self.source_name)
                self.uplink.set_status(STATUS_ONLINE)
            attempt = 0
            self.source_state = "ok"
            try:
                self._process(source)
            finally:
                source.close()
                self._in_view = 0  # nobody is seen once the source is gone (live counts, Home Assistant)
            if self.replay:
                return
            if not self.stopping:
                self._source_lost("the stream ended", attempt)
                attempt += 1

    def _source_lost(self, reason: str, attempt: int) -> None:
        self.source_state = "lost"
        if attempt == 0:
            log.warning("source %s lost: %s", self.source_name, reason)
            self.store.add_event("source lost", reason)
            self.uplink.set_status(STATUS_SOURCE_LOST)
        delay = backoff_delay(attempt, base_s=1.0, cap_s=self.config.source.reconnect_max_s)
        deadline = time.monotonic() + delay
        while not self.stopping and time.monotonic() < deadline:
            self._close_hours(time.time())  # hours keep closing on the wall clock, with the gap in coverage
            self._housekeeping(time.time())
            time.sleep(0.1)

    def _frames(self, source: FrameSource) -> Iterator[Frame]:
        """The source's usable frames; skips frames already accounted for before a restart (a
        replay resumes where its last checkpoint left off) and frames that are not images."""
        resume_after = self.tally.last_frame if self.replay else None
        for frame in source:
            if self.stopping:
                # Returning ends the analyzer's tracks, so the people in view are counted; raising
                # leaves them in the tracking state for the next run (also while still skipping).
                if self.replay:
                    raise _ReplayStopped
                return
            if resume_after is not None and frame.timestamp <= resume_after:
                continue
            if self.settings.paused:
                self._paused(frame.timestamp)
                continue
            if frame.timestamp < EARLIEST_TIME:
                self._clock_not_set(frame.timestamp)
                continue
            if not usable_image(frame.image):
                self.summary.bad_frames += 1
                if self.summary.bad_frames in (1, 10, 100, 1000):
                    log.warning("skipped %d unusable frames (not a colour image)", self.summary.bad_frames)
                continue
            yield frame

    def _process(self, source: FrameSource) -> None:
        try:
            for result in self.analyzer.track(self._frames(source), self.tracking):
                self._account(result)
        except _ReplayStopped:
            pass

    def _account(self, result: FrameResult) -> None:
        if result.frame is not None:
            now = result.frame.timestamp
            self.tally.frame(now)
            self.summary.frames += 1
            self._in_view = result.in_view
        else:
            now = self.tally.last_frame or time.time()
        if result.ended:
            revised: list[HourlyRecord] = []
            with self.store.transaction():
                for visitor in result.ended:
                    self.store.add_visit(self.device, visitor)
                    record = self.tally.visitor(visitor)
                    if record is not None and self.store.save_hourly(record):
                        revised.append(record)
                self._save_state()
            self.summary.visitors += len(result.ended)
            self.uplink.send(revised)
        self._close_hours(now)
        self._housekeeping(now)

    # -- hours, state and delivery -----------------------------------------------------------

    def _close_hours(self, now: float, final: bool = False) -> None:
        records = self.tally.close(now, final=final)
        if not records:
            return
        with self.store.transaction():
            kept = [r for r in records if self.store.save_hourly(r)]
            self._save_state()
        self.summary.hours_closed += len(records)
        for record in records:
            log.info("hour %s closed: %d visitors, coverage %.2f", record.hour, record.visitors, record.coverage)
        self.uplink.send(kept)

    def _prune(self) -> None:
        removed = self.store.prune(self.config.storage.retention_days * 86400)
        if removed:
            log.info("removed %d visits and events older than %d days", removed, self.config.storage.retention_days)
        self._next_prune = time.monotonic() + PRUNE_EVERY_S

    def _save_state(self) -> None:
        self.store.save_state(TALLY_STATE, self.tally.snapshot())
        if self.replay:
            self.store.save_state(TRACKING_STATE, self.tracking.snapshot())
        self._last_checkpoint = time.monotonic()

    def _checkpoint(self) -> None:
        with self.store.transaction():
            self._save_state()

    def _housekeeping(self, now: float) -> None:
        """Per frame (or per tick without frames): watchdog, deliveries and commands; every few
        seconds: checkpoint, live counts and the status line systemd shows."""
        self.notifier.alive()
        self._apply_settings()
        if self.uplink.take_reconnect():
            self.uplink.send(self.store.undelivered())
        delivered = self.uplink.delivered()
        if delivered:
            with self.store.transaction():
                for hour, revision in delivered:
                    self.store.confirm(self.device, hour, revision)
        self.uplink.publish_due()
        for request in self.uplink.resync_requests():
            records = self.store.hourly(self.device, request.since, request.until)
            self.store.add_event("resync", f"{request.since} .. {request.until}: {len(records)} records")
            self.uplink.send(records)
        tick = time.monotonic()
        if tick - self._last_checkpoint >= CHECKPOINT_EVERY_S:
            self._checkpoint()
        if tick >= self._next_prune:
            self._prune()
        if tick - self._last_status >= STATUS_EVERY_S:
            fps = (self.summary.frames - self._frames_at_status) / (tick - self._last_status)
            self._last_status, self._frames_at_status = tick, self.summary.frames
            self.notifier.status(
                f"{fps:.1f} fps, {self._in_view} in view, {self.tally.visitors_in_hour(now)} visitors this hour, "
                f"source {self.source_state}, broker {'up' if self.uplink.connected else 'down'}"
            )
        if tick - self._last_live >= self.config.mqtt.live_interval_s:
            self._last_live = tick
            # A replay's counts belong to the replayed time: stamped with the wall clock, central
            # would add the replayed hour's visitors to today's.
            stamp = now if self.replay else time.time()
            self.uplink.publish_live(
                LiveCounts(self.device, round(stamp, 3), self._in_view, self.tally.visitors_in_hour(now))
            )

    def _clock_not_set(self, now: float) -> None:
        """A live frame while the clock is before 2020: a board without a real-time clock, booted
        before NTP has set it. Its hours would be refused by central for good, and the jump to the
        right time would leave decades between two hours: nothing is counted until the clock is
        right, and hours, commands and the watchdog carry on meanwhile."""
        if not self._clock_warned:
            self._clock_warned = True
            when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(now))
            log.warning("the clock says %s UTC: not counting until it is set (NTP)", when)
            self.store.add_event("clock not set", f"frames at {when} UTC are not counted")
        self._paused(time.time())

    def _paused(self, now: float) -> None:
        """A frame skipped while paused: nothing is analysed or counted, so the paused time is
        not covered; hours still close and commands (a resume) are still served."""
        self._in_view = 0
        self._close_hours(now)
        self._housekeeping(now)

    def _apply_settings(self) -> None:
        for command in self.settings_link.commands():
            state = self.settings.apply(command)
            apply_vision(self.analyzer, self.settings.vision)
            self.settings_link.answer(state)
            self.store.add_event(
                "settings",
                f"{'applied' if state.applied else 'rejected'}: {'paused' if state.paused else 'counting'}, "
                f"min_face {state.min_face}" + (f"; {state.error}" if state.error else ""),
            )

    def _flush(self) -> None:
        """End of a replay: close every hour, then wait (bounded) for their delivery: central's
        receipts (or, with mqtt.receipts = false, the broker's PUBACKs)."""
        self._close_hours(self.tally.last_frame or time.time(), final=True)
        deadline = time.monotonic() + self.config.mqtt.flush_timeout_s
        while not self.stopping and time.monotonic() < deadline:
            self._housekeeping(self.tally.last_frame or time.time())
            if not self.store.undelivered_count():
                return
            time.sleep(0.05)
        log.warning(
            "%d hourly records not delivered yet (broker or central unreachable?): they stay queued in %s "
            "and go out on the next run",
            self.store.undelivered_count(),
            self.config.storage.db,
        )

    def _serve_until_stopped(self) -> None:
        """The source ended (a file without --until-end) or we were asked to stop: keep serving
        deliveries and resync commands until stopped; hours stay open for the next run."""
        if not self.stopping:
            log.info("source ended; still serving MQTT until stopped (use --until-end to exit here)")
        while not self.stopping:
            self._housekeeping(self.tally.last_frame or time.time())
            time.sleep(0.1)

"""The aim preview's frame loop: a thread keeps the source's newest frame, and the loop analyses
it, draws the preview and hands it to the server; frames that arrive meanwhile are dropped."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import cv2
import numpy as np

from edge.aim.draw import render
from edge.aim.summary import Recent, Summary

if TYPE_CHECKING:
    from edge.aim.mask import FaceMask
    from edge.aim.server import Preview
    from edge.vision.analyzer import Analyzer, Visitor
    from edge.vision.sources import Frame, FrameSource

JPEG_QUALITY = 80


class Newest:
    """Reads a source on its own thread and keeps only its newest frame: the analysis, slower
    than the camera, takes the latest and the rest are dropped. A video file is played at its
    own rate and looped. The thread owns the source and closes it when it stops."""

    def __init__(self, source: FrameSource, reopen: Callable[[], FrameSource] | None = None) -> None:
        self.source = source
        self.reopen = reopen
        self.frame: Frame | None = None
        self.seq = 0
        self.ended = False
        self.error: BaseException | None = None
        self.stopping = threading.Event()
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._read, name="aim-frames", daemon=True)

    def start(self) -> Newest:
        self.thread.start()
        return self

    def _read(self) -> None:
        try:
            while not self.stopping.is_set():
                started, count = time.monotonic(), 0
                for frame in self.source:
                    if self.reopen is not None and self.source.fps:
                        # A file: played in real time, like the camera it stands in for.
                        self.stopping.wait(max(0.0, started + count / self.source.fps - time.monotonic()))
                    if self.stopping.is_set():
                        return
                    with self.changed:
                        self.frame, self.seq = frame, self.seq + 1
                        self.changed.notify_all()
                    count += 1
                if self.reopen is None or count == 0:
                    return
                self.source.close()
                self.source = self.reopen()
        except Exception as exc:  # reported by the caller, which stops
            self.error = exc
        finally:
            self.source.close()
            with self.changed:
                self.ended = True
                self.changed.notify_all()

    def next(self, after: int, timeout: float) -> tuple[int, Frame] | None:
        """The newest frame if newer than sequence number `after`, waiting up to `timeout`."""
        with self.changed:
            self.changed.wait_for(lambda: self.seq > after or self.ended, timeout)
            if self.seq > after and self.frame is not None:
                return self.seq, self.frame
            return None

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        self.thread.join(timeout)

    def first(self, stop: threading.Event, timeout: float) -> Frame | None:
        """The first frame, waiting up to `timeout` s; None if none came, the source ended or `stop` was set."""
        waited = time.monotonic() + timeout
        while not stop.is_set() and not self.ended and time.monotonic() < waited:
            got = self.next(0, 0.25)
            if got is not None:
                return got[1]
        return None


def label(verdict: Visitor) -> str:
    """A followed person's label: their track, gender and age band, "unknown" where not judged."""
    return f"#{verdict.track} {verdict.gender or 'unknown'} {verdict.age_band or 'unknown'}"


def newest(frames: Newest, until: float, stop: threading.Event) -> Iterator[Frame]:
    """The newest frame each time the analysis asks, until monotonic time `until` or `stop`."""
    seen = 0
    while not stop.is_set() and time.monotonic() < until:
        got = frames.next(seen, min(0.25, max(0.0, until - time.monotonic())))
        if got is None:
            if frames.ended:
                return
            continue
        seen, frame = got
        yield frame


def run(
    frames: Newest,
    analyzer: Analyzer,
    preview: Preview | None,
    until: float,
    stop: threading.Event,
    mask: FaceMask | None = None,
    labels: bool = False,
    report: Callable[[Summary], None] | None = None,
) -> bool:
    """Follow people through the newest frames as the daemon does (`Analyzer.track`), publish
    each frame's preview (when serving) with every face-like thing hidden by `mask` (None: shown,
    --no-pixelate), each followed person labelled as judged so far if `labels`, and, once a second,
    `report` the summary; until monotonic time `until` or `stop`. False when the frames ended first."""
    min_classify = analyzer.config.min_classify
    recent = Recent(min_classify, labels=labels)
    tracking = analyzer.tracking()
    next_report = time.monotonic() + 1.0
    for result in analyzer.track(newest(frames, until, stop), tracking):
        if result.frame is None:
            break
        image, boxes = result.frame.image, result.detections.boxes
        now = time.monotonic()
        people = texts = listed = None
        if labels:
            followed = {t.id: analyzer.so_far(tracking, t) for t in tracking.tracker.tracks if t.confirmed}
            people = {track: v.gender is not None and v.age_band is not None for track, v in followed.items()}
            texts = [label(followed[int(i)]) if int(i) in followed else "unknown" for i in result.track_ids]
            listed = {"followed": [label(v) for _, v in sorted(followed.items())]}
        recent.add(now, [float(b[2] - b[0]) for b in boxes], (image.shape[1], image.shape[0]), people)
        summary = recent.summary(now)
        if preview is not None:
            shown = image if mask is None else mask.hide(image, boxes)
            jpeg = encode(render(shown, boxes, analyzer.zones, min_classify, summary.text(), texts))
            if jpeg is not None:
                preview.publish(jpeg, summary.to_json() | (listed or {}))
        if report is not None and now >= next_report:
            report(summary)
            next_report = max(next_report + 1.0, now + 0.5)
    return not frames.ended or stop.is_set() or time.monotonic() >= until


def encode(image: np.ndarray) -> bytes | None:
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    return jpeg.tobytes() if ok else None

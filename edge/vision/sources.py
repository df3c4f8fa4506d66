"""Frame sources behind one interface: each yields `Frame`s (BGR image, timestamp, index).

`open_source(spec)` picks the adapter from the spec (`source_kind`): `picamera2` (Raspberry Pi
camera), a V4L2 device (`/dev/video0`, `/dev/v4l/by-id/…` or `0`), a stream URL (`rtsp://`,
`http(s)://`, …), a GStreamer pipeline (Jetson; contains `!`), or a video file.

`Camera` holds what is asked of the source: a frame size and rate, which cameras are asked for
(V4L2, picamera2), and a rotation and mirroring, which picamera2 does in the sensor where it can
and everything else in software (`orient`).
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit
from urllib.request import getproxies

import cv2
import numpy as np

from edge.wire.config import redact

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv"}
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}

# A stream that does not answer must fail well within the daemon's 30 s watchdog, and a CLI
# user should not wait FFmpeg's default 30 s to learn that a camera is off.
OPEN_TIMEOUT_S = 10.0
# Streams whose server we can reach with a plain TCP connection first, and their default ports.
TCP_STREAM_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443, "rtmp": 1935}
# Clockwise degrees → OpenCV's rotation; mirroring → cv2.flip's axis code.
ROTATIONS = {0: None, 90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
FLIPS = {"none": None, "horizontal": 1, "vertical": 0}
# picamera2 before these settings existed always captured this size; unset width/height keep it.
PICAMERA2_SIZE = (640, 480)

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class Kind(StrEnum):
    PICAMERA2 = "picamera2"
    DEVICE = "device"
    URL = "url"
    PIPELINE = "pipeline"
    FILE = "file"


def source_kind(spec: str) -> Kind:
    """What `spec` names. An existing file wins (a file may be called `0` or contain `!`); a URL
    is told by its scheme, before `!` (which a URL may hold); a device is a number or a /dev path."""
    if spec == "picamera2":
        return Kind.PICAMERA2
    if Path(spec).is_file():
        return Kind.FILE
    if _URL.match(spec):
        return Kind.URL
    if "!" in spec:
        return Kind.PIPELINE
    if spec.isdigit() or spec.startswith("/dev/"):
        return Kind.DEVICE
    return Kind.FILE


@dataclass(frozen=True)
class Frame:
    """One frame: BGR pixels, time in seconds (video time for files, Unix time for live sources,
    or the replay clock), and its index from the start of the source."""

    image: np.ndarray
    timestamp: float
    index: int


class SourceError(RuntimeError):
    """The source cannot be opened or stopped delivering frames."""

    # What `aicctv` exits with: the input failed, the command was right.
    exit_code = 1


@dataclass(frozen=True)
class Camera:
    """What is asked of a source (the `[source]` settings). `width`/`height`: the frame as
    captured, before `rotate`: a camera is asked for it, a file or stream is scaled to it.
    `fps`: asked of a camera; a file keeps its own rate. `rotate` (clockwise degrees) is applied
    before `flip` (mirroring the rotated image)."""

    width: int | None = None
    height: int | None = None
    fps: float | None = None
    rotate: int = 0
    flip: str = "none"

    def __post_init__(self) -> None:
        if self.rotate not in ROTATIONS:
            raise ValueError(f"rotate = {self.rotate!r}: must be one of {', '.join(map(str, ROTATIONS))}")
        if self.flip not in FLIPS:
            raise ValueError(f"flip = {self.flip!r}: must be one of {', '.join(FLIPS)}")
        if (self.width is None) != (self.height is None):
            raise ValueError("width and height go together: set both, or neither")

    @property
    def size(self) -> tuple[int, int] | None:
        return None if self.width is None or self.height is None else (self.width, self.height)


# Nothing asked, nothing changed: frames as the source delivers them.
AS_IS = Camera()


def orient(image: np.ndarray, rotate: int = 0, flip: str = "none", size: tuple[int, int] | None = None) -> np.ndarray:
    """`image` scaled to `size` (width, height), then rotated clockwise, then mirrored."""
    if size is not None and (image.shape[1], image.shape[0]) != size:
        shrink = size[0] * size[1] < image.shape[0] * image.shape[1]
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    if ROTATIONS[rotate] is not None:
        image = cv2.rotate(image, ROTATIONS[rotate])
    if FLIPS[flip] is not None:
        image = cv2.flip(image, FLIPS[flip])
    return image


def sensor_flips(rotate: int, flip: str) -> tuple[bool, bool] | None:
    """(hflip, vflip) that a sensor doing only mirroring must apply for `rotate` then `flip`, or
    None where a quarter turn needs software. A half turn is both mirrors."""
    if rotate not in (0, 180):
        return None
    half = rotate == 180
    return half ^ (flip == "horizontal"), half ^ (flip == "vertical")


class FrameSource(Protocol):
    fps: float | None
    # Frames in a file; None for a live source.
    frame_count: int | None

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


def _check_reachable(spec: str, timeout_s: float) -> None:
    """Fail in one line, before FFmpeg, when a stream's server cannot be reached: FFmpeg would
    say why only in its own log and, for a host that drops packets, after its timeout."""
    parts = urlsplit(spec)
    port = TCP_STREAM_PORTS.get(parts.scheme.lower())
    # Through a proxy (FFmpeg honours http_proxy) the server may be out of our direct reach.
    if port is None or not parts.hostname or parts.scheme.lower() in getproxies():
        return
    try:
        port = parts.port or port
    except ValueError:
        raise SourceError(f"cannot open stream {redact(spec)}: the port is not a number") from None
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
    except TimeoutError:
        reason = f"no answer within {timeout_s:g} s"
    except socket.gaierror:
        reason = f"unknown host {parts.hostname}"
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
    else:
        return
    raise SourceError(f"cannot open stream {redact(spec)}: {reason}")


class Newest:
    """Reads a live capture on its own thread and keeps only the newest frame.

    A pipeline slower than its camera (a busy scene on a Pi) then analyses the latest picture
    rather than falling ever further behind: an RTSP client buffers without bound and a V4L2
    driver hands out frames several periods old. The frames it had no time for are `dropped`."""

    def __init__(self, read: Callable[[], tuple[bool, np.ndarray | None]]) -> None:
        self._read = read
        self._ready = threading.Condition()
        self._frame: tuple[np.ndarray, float] | None = None
        self._ended = self._stopping = False
        self.frames_read = self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="frame-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stopping:
                ok, image = self._read()
                stamp = time.time()
                if not ok or image is None:
                    return
                with self._ready:
                    self.frames_read += 1
                    self.dropped += self._frame is not None
                    self._frame = (image, stamp)
                    self._ready.notify_all()
        finally:
            # However the capture ends (even by an exception), the pipeline waiting on it must learn so.
            with self._ready:
                self._ended = True
                self._ready.notify_all()

    def next(self) -> tuple[np.ndarray, float] | None:
        """The newest frame not yet taken and its capture time; None once the capture has ended."""
        with self._ready:
            self._ready.wait_for(lambda: self._frame is not None or self._ended)
            frame, self._frame = self._frame, None
            return frame

    def stop(self, timeout_s: float) -> bool:
        """Ask the reader to stop after its current read; whether it did within `timeout_s`."""
        self._stopping = True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()


class VideoSource:
    """OpenCV capture for files, URLs, V4L2 devices and GStreamer pipelines.

    Timestamps: for files, `start + index / fps` (video time, or a replay clock when `start` is a
    Unix time); for live sources, the wall clock at capture. A live source is read on its own
    thread (`Newest`): when frames come faster than they are analysed, the newest is analysed and
    the rest are dropped; indexes count the frames analysed."""

    def __init__(
        self, spec: str, start: float = 0.0, camera: Camera = AS_IS, timeout_s: float = OPEN_TIMEOUT_S
    ) -> None:
        self.spec = spec
        self.kind = source_kind(spec)
        self.live = self.kind is not Kind.FILE
        self.reader: Newest | None = None
        self.capture = self._open(camera, timeout_s)
        if not self.capture.isOpened():
            raise SourceError(self._failure(timeout_s))
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 0 < fps < 1000 else None
        self.frame_count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT)) if not self.live else None
        self.start = start
        self.camera = camera
        # A camera was asked for the size; files and streams are scaled to it; a pipeline sets
        # its own in its caps.
        self.size = camera.size if self.kind in (Kind.FILE, Kind.URL) else None

    def _failure(self, timeout_s: float) -> str:
        name = redact(self.spec)
        return {
            Kind.FILE: f"cannot open video file {name!r}: no such file, or not a video OpenCV can read",
            Kind.DEVICE: f"cannot open camera {name}: not connected, busy, or not a capture device "
            "(list them: v4l2-ctl --list-devices)",
            Kind.URL: f"cannot open stream {name}: the server gave no video within {timeout_s:g} s "
            "(wrong path or credentials?)",
            Kind.PIPELINE: f"cannot open GStreamer pipeline {name!r}: try it with gst-launch-1.0 "
            "(and OpenCV must be built with GStreamer)",
        }[self.kind]

    def _open(self, camera: Camera, timeout_s: float) -> cv2.VideoCapture:
        if self.kind is Kind.DEVICE:
            capture = cv2.VideoCapture(int(self.spec) if self.spec.isdigit() else self.spec, cv2.CAP_V4L2)
            if capture.isOpened():
                self._ask(capture, camera)
            return capture
        if self.kind is Kind.PIPELINE:
            if camera.size or camera.fps:
                log.warning("width, height and fps are not applied to a GStreamer pipeline: set them in its caps")
            return cv2.VideoCapture(self.spec, cv2.CAP_GSTREAMER)
        if self.kind is Kind.URL:
            _check_reachable(self.spec, timeout_s)
            ms = int(timeout_s * 1000)
            # Bounds both the connection and each read: a stream that hangs ends, and is reopened.
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
            return cv2.VideoCapture(self.spec, cv2.CAP_FFMPEG, params)
        return cv2.VideoCapture(self.spec)

    def _ask(self, capture: cv2.VideoCapture, camera: Camera) -> None:
        """Request the camera's size and rate; a driver picks the nearest it has, so say what it gave."""
        if camera.size:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, camera.size[0])
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, camera.size[1])
        if camera.fps:
            capture.set(cv2.CAP_PROP_FPS, camera.fps)
        got = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        rate = capture.get(cv2.CAP_PROP_FPS)
        if (camera.size and got != camera.size) or (camera.fps and abs(rate - camera.fps) > 0.5):
            log.warning(
                "camera %s gives %dx%d at %.3g fps (asked %s at %s fps)",
                self.spec,
                *got,
                rate,
                "x".join(map(str, camera.size)) if camera.size else "its default size",
                f"{camera.fps:g}" if camera.fps else "its default",
            )

    def __iter__(self) -> Iterator[Frame]:
        if self.live:
            yield from self._newest()
            return
        index = 0
        while True:
            ok, image = self.capture.read()
            if not ok or image is None:
                return
            timestamp = self.start + index / (self.fps or 25.0)
            yield Frame(orient(image, self.camera.rotate, self.camera.flip, self.size), timestamp, index)
            index += 1

    def _newest(self) -> Iterator[Frame]:
        self.reader = reader = Newest(self.capture.read)
        index, told = 0, False
        while (got := reader.next()) is not None:
            image, timestamp = got
            if reader.dropped and not told:
                told = True
                log.info("%s: frames come faster than they are analysed; the newest is analysed", redact(self.spec))
            yield Frame(orient(image, self.camera.rotate, self.camera.flip, self.size), timestamp, index)
            index += 1

    def close(self) -> None:
        # Releasing a capture that another thread is reading from can crash OpenCV: stop the
        # reader first (a read is bounded by the stream timeout or one frame period).
        if self.reader is not None and not self.reader.stop(OPEN_TIMEOUT_S + 1):
            log.warning("%s: the frame reader did not stop; leaving the capture open", redact(self.spec))
            return
        self.capture.release()


class Picamera2Source:
    """The Raspberry Pi camera through picamera2 (present only on Raspberry Pi OS). Size and frame
    rate are configured in the camera; mirroring and half turns are done by the sensor, quarter
    turns in software."""

    def __init__(self, camera: Camera = AS_IS) -> None:
        try:
            from libcamera import Transform
            from picamera2 import Picamera2
        except ImportError as exc:
            raise SourceError("picamera2 is not installed: on Raspberry Pi OS, apt install python3-picamera2") from exc
        flips = sensor_flips(camera.rotate, camera.flip)
        hflip, vflip = flips or (False, False)
        controls = {}
        if camera.fps:
            frame_us = round(1_000_000 / camera.fps)
            controls["FrameDurationLimits"] = (frame_us, frame_us)
        self.camera = Picamera2()
        config = self.camera.create_video_configuration(
            main={"size": camera.size or PICAMERA2_SIZE, "format": "BGR888"},
            transform=Transform(hflip=hflip, vflip=vflip),
            controls=controls,
        )
        self.camera.configure(config)
        self.camera.start()
        self.fps = camera.fps
        self.frame_count = None
        # What the sensor did not do is left to software.
        self.rotate, self.flip = (0, "none") if flips else (camera.rotate, camera.flip)

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        while True:
            # picamera2's "BGR888" is stored B, G, R in memory order for OpenCV: no conversion.
            image = self.camera.capture_array("main")
            yield Frame(orient(image, self.rotate, self.flip), time.time(), index)
            index += 1

    def close(self) -> None:
        self.camera.stop()


def open_source(spec: str, start: float = 0.0, camera: Camera = AS_IS) -> FrameSource:
    if source_kind(spec) is Kind.PICAMERA2:
        return Picamera2Source(camera)
    return VideoSource(spec, start=start, camera=camera)

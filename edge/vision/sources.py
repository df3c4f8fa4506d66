"""Frame sources behind one interface: each yields `Frame`s (BGR image, timestamp, index).

`open_source(spec)` picks the adapter from the spec: `picamera2` (Raspberry Pi camera), a V4L2
device (`/dev/video0` or `0`), an RTSP/HTTP URL, a GStreamer pipeline (Jetson; contains `!`),
or a video file.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv"}
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


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


class FrameSource(Protocol):
    fps: float | None

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


class VideoSource:
    """OpenCV capture for files, URLs, V4L2 devices and GStreamer pipelines.

    Timestamps: for files, `start + index / fps` (video time, or a replay clock when `start` is a
    Unix time); for live sources, the wall clock at capture."""

    def __init__(self, spec: str, start: float = 0.0) -> None:
        self.spec = spec
        self.live = not Path(spec).is_file()
        if spec.isdigit():
            self.capture = cv2.VideoCapture(int(spec), cv2.CAP_V4L2)
        elif "!" in spec:
            self.capture = cv2.VideoCapture(spec, cv2.CAP_GSTREAMER)
        else:
            self.capture = cv2.VideoCapture(spec)
        if not self.capture.isOpened():
            raise SourceError(f"cannot open video source {spec!r}: check the path, URL or device")
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 0 < fps < 1000 else None
        self.frame_count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT)) if not self.live else None
        self.start = start

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        while True:
            ok, image = self.capture.read()
            if not ok or image is None:
                return
            timestamp = time.time() if self.live else self.start + index / (self.fps or 25.0)
            yield Frame(image, timestamp, index)
            index += 1

    def close(self) -> None:
        self.capture.release()


class Picamera2Source:
    """The Raspberry Pi camera through picamera2 (present only on Raspberry Pi OS)."""

    def __init__(self, width: int = 640, height: int = 480) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise SourceError("picamera2 is not installed: on Raspberry Pi OS, apt install python3-picamera2") from exc
        self.camera = Picamera2()
        config = self.camera.create_video_configuration(main={"size": (width, height), "format": "BGR888"})
        self.camera.configure(config)
        self.camera.start()
        self.fps = None

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        while True:
            # picamera2's "BGR888" is stored B, G, R in memory order for OpenCV: no conversion.
            image = self.camera.capture_array("main")
            yield Frame(image, time.time(), index)
            index += 1

    def close(self) -> None:
        self.camera.stop()


def open_source(spec: str, start: float = 0.0) -> FrameSource:
    if spec == "picamera2":
        return Picamera2Source()
    return VideoSource(spec, start=start)

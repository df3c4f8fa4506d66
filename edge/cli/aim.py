"""`aicctv edge aim`: point the camera before counting. It takes the camera for a few minutes and
shows, on a live preview served to localhost only (open it over an SSH tunnel), the faces it finds,
green where they are large enough to classify and red where they are too small, each with its
width in pixels, the zones and the entry line from the configuration, and a running summary.
Faces are pixelated in the preview; nothing is written to disk. `--text` prints the summary instead.

The drawing helpers are pure functions on NumPy images; the rest is a frame loop that analyses the
newest frame and drops the others, and a stdlib HTTP server.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import getpass
import html
import json
import math
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from edge.cli.common import EXIT_FAILED, EXIT_USAGE, config_options
from edge.daemon.config import EdgeConfig
from edge.vision.config import VisionConfig
from edge.wire.config import ConfigError, add_flags, flag_values, load, redact
from edge.wire.listen import is_loopback, split_listen

if TYPE_CHECKING:
    import numpy as np

    from edge.vision.sources import Frame, FrameSource
    from edge.vision.zones import Zones

DEFAULT_LISTEN = "127.0.0.1:8081"
MAX_MINUTES = 60.0
SERVICE = "aicctv-edge"
# The summary covers the frames of the last few seconds, so one missed detection does not flicker it.
WINDOW_S = 3.0
# The preview is scaled down to this width: a Pi encodes it every frame.
PREVIEW_MAX_WIDTH = 960
JPEG_QUALITY = 80
# Pixelation: about this many blocks across a face (never smaller than MIN_BLOCK_PX), over the
# face box grown by MARGIN on each side, so hair and the box's slack are covered too.
BLOCKS_ACROSS = 5
MIN_BLOCK_PX = 6
MARGIN = 0.15
# A camera that opens but sends nothing for this long is treated as not opened.
FIRST_FRAME_S = 10.0
# Colours (BGR).
GREEN = (60, 200, 60)
RED = (40, 40, 230)
INCLUDE_COLOUR = (0, 200, 255)
EXCLUDE_COLOUR = (150, 150, 150)
LINE_COLOUR = (255, 200, 0)


# ---- the summary -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """What the last few seconds showed: the most faces in one frame (and the most too small to
    classify in one frame), the median face width over every sighting, and the frames analysed."""

    faces: int
    too_small: int
    median_px: float | None
    frames: int
    fps: float
    min_classify: int
    size: tuple[int, int] | None = None

    def text(self) -> str:
        if self.frames == 0:
            return "waiting for frames"
        if self.faces == 0:
            return f"no faces (a face needs {self.min_classify} px to be classified)"
        noun = "face" if self.faces == 1 else "faces"
        small = f"{self.too_small} too small (< {self.min_classify} px)" if self.too_small else "none too small"
        return f"{self.faces} {noun}, median {self.median_px:.0f} px, {small}"

    def to_json(self) -> dict:
        return {
            "faces": self.faces,
            "too_small": self.too_small,
            "median_px": None if self.median_px is None else round(self.median_px, 1),
            "min_classify": self.min_classify,
            "frames": self.frames,
            "fps": round(self.fps, 2),
            "window_s": WINDOW_S,
            "size": None if self.size is None else list(self.size),
            "text": self.text(),
        }


def summarize(
    widths_per_frame: Sequence[Sequence[float]],
    min_classify: int,
    fps: float = 0.0,
    size: tuple[int, int] | None = None,
) -> Summary:
    """The summary of some frames' face widths (pixels), analysed at `fps` frames a second."""
    every = sorted(w for widths in widths_per_frame for w in widths)
    median = None
    if every:
        middle = len(every) // 2
        median = every[middle] if len(every) % 2 else (every[middle - 1] + every[middle]) / 2
    return Summary(
        faces=max((len(w) for w in widths_per_frame), default=0),
        too_small=max((sum(x < min_classify for x in w) for w in widths_per_frame), default=0),
        median_px=median,
        frames=len(widths_per_frame),
        fps=fps,
        min_classify=min_classify,
        size=size,
    )


class Recent:
    """The face widths of the frames analysed in the last `window_s` seconds."""

    def __init__(self, min_classify: int, window_s: float = WINDOW_S) -> None:
        self.min_classify = min_classify
        self.window_s = window_s
        self.frames: deque[tuple[float, tuple[float, ...]]] = deque()
        self.size: tuple[int, int] | None = None

    def add(self, now: float, widths: Iterable[float], size: tuple[int, int] | None = None) -> None:
        self.frames.append((now, tuple(widths)))
        self.size = size or self.size

    def summary(self, now: float) -> Summary:
        while self.frames and self.frames[0][0] < now - self.window_s:
            self.frames.popleft()
        span = self.frames[-1][0] - self.frames[0][0] if self.frames else 0.0
        fps = (len(self.frames) - 1) / span if span > 0 else 0.0
        return summarize([w for _, w in self.frames], self.min_classify, fps, self.size)


# ---- drawing: pure functions on BGR images -----------------------------------------------------


def face_colour(width: float, min_classify: int) -> tuple[int, int, int]:
    """Green for a face wide enough to classify, red for one too small."""
    return GREEN if width >= min_classify else RED


def _grown(box: Sequence[float], width: int, height: int, margin: float) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (float(v) for v in box)
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    return (
        max(0, math.floor(x1 - dx)),
        max(0, math.floor(y1 - dy)),
        min(width, math.ceil(x2 + dx)),
        min(height, math.ceil(y2 + dy)),
    )


def pixelate(image: np.ndarray, boxes: Iterable[Sequence[float]], margin: float = MARGIN) -> np.ndarray:
    """A copy of `image` with each box (x1, y1, x2, y2 pixels, grown by `margin`) replaced by large
    blocks of its mean colours: about BLOCKS_ACROSS across, at least MIN_BLOCK_PX each."""
    import cv2

    out = image.copy()
    height, width = out.shape[:2]
    for box in boxes:
        x1, y1, x2, y2 = _grown(box, width, height, margin)
        w, h = x2 - x1, y2 - y1
        if w <= 0 or h <= 0:
            continue
        block = max(MIN_BLOCK_PX, round(max(w, h) / BLOCKS_ACROSS))
        blocks = (max(1, round(w / block)), max(1, round(h / block)))
        small = cv2.resize(out[y1:y2, x1:x2], blocks, interpolation=cv2.INTER_AREA)
        out[y1:y2, x1:x2] = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    return out


def _font_scale(image: np.ndarray) -> float:
    return max(0.4, image.shape[1] / 1280)


def _label(image: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int]) -> None:
    """Text on a filled box in `colour`, its bottom-left corner at (x, y), kept inside the image."""
    import cv2

    scale = _font_scale(image)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x = min(max(0, x), max(0, image.shape[1] - tw - 4))
    y = min(max(th + base + 2, y), image.shape[0])
    cv2.rectangle(image, (x, y - th - base - 2), (x + tw + 4, y), colour, cv2.FILLED)
    cv2.putText(image, text, (x + 2, y - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)


def draw_faces(
    image: np.ndarray, boxes: Iterable[Sequence[float]], min_classify: int, scale: float = 1.0
) -> np.ndarray:
    """A copy of `image` with each face box (in source pixels, drawn at `scale`) outlined in
    green or red by its width, and labelled with that width in source pixels."""
    import cv2

    out = image.copy()
    thickness = max(1, round(_font_scale(out) * 2))
    for box in boxes:
        x1, y1, x2, y2 = (float(v) for v in box)
        colour = face_colour(x2 - x1, min_classify)
        p1, p2 = (round(x1 * scale), round(y1 * scale)), (round(x2 * scale), round(y2 * scale))
        cv2.rectangle(out, p1, p2, colour, thickness)
        _label(out, f"{x2 - x1:.0f} px", p1[0], p1[1] - thickness, colour)
    return out


def _pixels(points: Iterable[tuple[float, float]], width: int, height: int) -> np.ndarray:
    import numpy as np

    return np.array([[round(x * (width - 1)), round(y * (height - 1))] for x, y in points], np.int32)


def draw_zones(image: np.ndarray, zones: Zones) -> np.ndarray:
    """A copy of `image` with the include areas outlined, the exclude areas shaded, and the entry
    line drawn with an arrow pointing to its inside (zones are relative, 0..1)."""
    import cv2
    import numpy as np

    out = image.copy()
    height, width = out.shape[:2]
    thickness = max(1, round(_font_scale(out) * 2))
    if zones.exclude:
        shade = out.copy()
        polygons = [_pixels(p, width, height) for p in zones.exclude]
        cv2.fillPoly(shade, polygons, (40, 40, 40))
        out = cv2.addWeighted(shade, 0.6, out, 0.4, 0)
        cv2.polylines(out, polygons, True, EXCLUDE_COLOUR, thickness, cv2.LINE_AA)
        for polygon in polygons:
            _label(out, "exclude", int(polygon[:, 0].min()) + 4, int(polygon[:, 1].min()) + 20, EXCLUDE_COLOUR)
    for polygon in (_pixels(p, width, height) for p in zones.include):
        cv2.polylines(out, [polygon], True, INCLUDE_COLOUR, thickness, cv2.LINE_AA)
        _label(out, "include", int(polygon[:, 0].min()) + 4, int(polygon[:, 1].min()) + 20, INCLUDE_COLOUR)
    if zones.entry_line is not None and zones.inside_point is not None:
        a, b = (p.astype(np.float64) for p in _pixels(zones.entry_line, width, height))
        inside = _pixels([zones.inside_point], width, height)[0].astype(np.float64)
        cv2.line(out, tuple(map(int, a)), tuple(map(int, b)), LINE_COLOUR, thickness + 1, cv2.LINE_AA)
        middle = (a + b) / 2
        normal = np.array([-(b - a)[1], (b - a)[0]])
        if np.dot(normal, inside - middle) < 0:
            normal = -normal
        length = max(20.0, 0.1 * min(width, height))
        tip = middle + normal / max(np.linalg.norm(normal), 1e-9) * length
        start, end = tuple(map(round, middle)), tuple(map(round, tip))
        cv2.arrowedLine(out, start, end, LINE_COLOUR, thickness + 1, cv2.LINE_AA, tipLength=0.3)
        _label(out, "in", end[0] + 4, end[1] + 8, LINE_COLOUR)
    return out


def draw_summary(image: np.ndarray, text: str) -> np.ndarray:
    """A copy of `image` with `text` on a dark band along its bottom."""
    import cv2

    out = image.copy()
    scale = _font_scale(out)
    (_, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    band = th + base + 10
    out[-band:] = (out[-band:] * 0.3).astype(out.dtype)
    cv2.putText(
        out, text, (6, out.shape[0] - base - 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA
    )
    return out


def render(
    image: np.ndarray,
    boxes: Sequence[Sequence[float]],
    zones: Zones,
    min_classify: int,
    text: str,
    hide_faces: bool = True,
    max_width: int = PREVIEW_MAX_WIDTH,
) -> np.ndarray:
    """The preview of one frame: faces pixelated (unless `hide_faces` is off) at full resolution,
    scaled to at most `max_width`, then zones, face boxes and the summary drawn over it."""
    import cv2

    out = pixelate(image, boxes) if hide_faces else image
    scale = min(1.0, max_width / out.shape[1])
    if scale < 1.0:
        size = (round(out.shape[1] * scale), round(out.shape[0] * scale))
        out = cv2.resize(out, size, interpolation=cv2.INTER_AREA)
    return draw_summary(draw_faces(draw_zones(out, zones), boxes, min_classify, scale), text)


# ---- the camera: busy or not -------------------------------------------------------------------


def active_services() -> list[str]:
    """The aicctv-edge units running now: the single service and any template instance."""
    command = ["systemctl", "list-units", "--type=service", "--state=active", "--no-legend", "--plain"]
    try:
        done = subprocess.run(
            [*command, f"{SERVICE}.service", f"{SERVICE}@*.service"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split()[0].removesuffix(".service") for line in done.stdout.splitlines() if line.strip()]


def device_busy(spec: str) -> bool:
    """Whether a V4L2 device node refuses to open because another program holds it (EBUSY)."""
    import os

    path = f"/dev/video{spec}" if spec.isdigit() else spec
    if not path.startswith("/dev/"):
        return False
    try:
        os.close(os.open(path, os.O_RDWR | os.O_NONBLOCK))
    except OSError as exc:
        return exc.errno == errno.EBUSY
    return False


def busy_message(spec: str, error: BaseException | None, services: Sequence[str], ebusy: bool) -> str | None:
    """One line telling the user to stop the daemon, when a camera that failed to open is held by
    it (a service is active) or by anyone (EBUSY); None when nothing says the camera is busy."""
    if services:
        units = " ".join(services)
        return (
            f"the camera is busy: {', '.join(services)} is using it. Stop it first: sudo systemctl stop {units} "
            f"(and start it again when done: sudo systemctl start {units})"
        )
    busy = ebusy or getattr(error, "errno", None) == errno.EBUSY or "resource busy" in str(error).lower()
    if busy:
        return (
            f"the camera {redact(spec)} is busy: another program holds it; if it is the daemon, stop it "
            f"first: sudo systemctl stop {SERVICE}"
        )
    return None


# ---- the frames ---------------------------------------------------------------------------------


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


# ---- the preview server -------------------------------------------------------------------------


class Preview:
    """The newest preview JPEG and summary, shared with the HTTP handlers."""

    def __init__(self, summary: dict) -> None:
        self.jpeg: bytes | None = None
        self.summary = summary
        self.seq = 0
        self.closed = False
        self.changed = threading.Condition()

    def publish(self, jpeg: bytes, summary: dict) -> None:
        with self.changed:
            self.jpeg, self.summary, self.seq = jpeg, summary, self.seq + 1
            self.changed.notify_all()

    def next(self, after: int, timeout: float) -> tuple[int, bytes] | None:
        with self.changed:
            self.changed.wait_for(lambda: self.seq > after or self.closed, timeout)
            if self.seq > after and self.jpeg is not None and not self.closed:
                return self.seq, self.jpeg
            return None

    def close(self) -> None:
        with self.changed:
            self.closed = True
            self.changed.notify_all()


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>aicctv aim</title>
<style>body{background:#111;color:#eee;font:16px sans-serif;margin:1em}img{max-width:100%}</style>
</head><body>
<p id="summary">{summary}</p>
<img src="/stream.mjpg" alt="live preview">
<p>Green: a face wide enough to classify (at least {min_classify} px); red: too small, counted but never
classified. Faces are pixelated{unpixelated}. Nothing is recorded. The preview stops after {minutes:g} min.</p>
<script>
setInterval(() => fetch("/summary").then(r => r.json())
  .then(j => { document.getElementById("summary").textContent = j.text; }).catch(() => {}), 1000);
</script>
</body></html>
"""


LOCAL_NAMES = {"127.0.0.1", "localhost", "[::1]"}


def local_host_header(value: str) -> bool:
    """Whether a Host header names this machine, as a browser here or through an SSH tunnel (any
    local port) sends it: any other name is a web page trying to read the preview by DNS rebinding."""
    name = value.lower()
    if not name.startswith("["):
        name = name.partition(":")[0]
    elif "]" in name:
        name = name[: name.index("]") + 1]
    return name in LOCAL_NAMES


def handler_for(preview: Preview, page: str, check_host: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "aicctv-aim"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass  # nothing is logged: a request log is no use here

        def _send(self, status: int, kind: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if check_host and not local_host_header(self.headers.get("Host") or ""):
                self._send(403, "text/plain", b"open the preview as http://127.0.0.1:PORT/ (an SSH tunnel)\n")
            elif path == "/":
                text = html.escape(preview.summary.get("text", ""))
                self._send(200, "text/html; charset=utf-8", page.replace("{summary}", text).encode())
            elif path == "/summary":
                self._send(200, "application/json", json.dumps(preview.summary).encode())
            elif path == "/frame.jpg":
                got = preview.next(-1, 0)
                if got is None:
                    self.send_response(503)
                    self.send_header("Retry-After", "1")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self._send(200, "image/jpeg", got[1])
            elif path == "/stream.mjpg":
                self._stream()
            else:
                self._send(404, "text/plain", b"not found: try / /stream.mjpg /frame.jpg /summary\n")

        def _stream(self) -> None:
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            seq = 0
            while not preview.closed:
                got = preview.next(seq, 1.0)
                if got is None:
                    continue
                seq, jpeg = got
                head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                try:
                    self.wfile.write(head + jpeg + b"\r\n")
                    self.wfile.flush()
                except OSError:  # the viewer left
                    return

    return Handler


def parse_listen(text: str) -> tuple[str, int]:
    try:
        return split_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def serve(host: str, port: int, preview: Preview, page: str, public: bool) -> ThreadingHTTPServer:
    """Bound (not yet serving) server; raises OSError when the address is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server_class = type("AimServer", (ThreadingHTTPServer,), {"address_family": family, "daemon_threads": True})
    return server_class((host, port), handler_for(preview, page, check_host=not public))


# ---- the command --------------------------------------------------------------------------------

# Settings aim does not use: their problems (e.g. a log or a password file only the daemon's user
# may write or read) do not stop it.
UNUSED_SECTIONS = ("device.", "mqtt.", "storage.", "hourly.")
AIM_SETTINGS = ["source.spec", *(f"vision.{f.name}" for f in dataclasses.fields(VisionConfig))]


def aim_config(args: argparse.Namespace) -> EdgeConfig:
    problems: list[str] = []
    config = load(EdgeConfig, args.config, dict(args.set) | flag_values(args), problems=problems)
    relevant = [p for p in problems if not p.startswith(UNUSED_SECTIONS)]
    if relevant:
        raise ConfigError(relevant[0])
    return config


def minutes_type(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of minutes") from None
    if not 0 < value <= MAX_MINUTES:
        raise argparse.ArgumentTypeError(f"{text}: between 0 and {MAX_MINUTES:g} minutes (it holds the camera)")
    return value


def _fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def cmd_aim(args: argparse.Namespace) -> int:
    host, port = args.listen
    if not args.text and not args.public and not is_loopback(host):
        return _fail(
            f"--listen {host}:{port} is not a loopback address: anyone on that network could watch the "
            f"camera; keep {DEFAULT_LISTEN} and use an SSH tunnel, or add --public if you must",
            EXIT_USAGE,
        )
    config = aim_config(args)
    from edge.vision.analyzer import Analyzer
    from edge.vision.sources import Camera, Kind, open_source, source_kind

    vision = config.vision
    zones = vision.zones()
    analyzer = Analyzer(vision)  # before the camera is taken: it is held as briefly as can be
    spec, s = config.source.spec, config.source
    camera = Camera(s.width, s.height, s.fps, s.rotate, s.flip)
    kind = source_kind(spec)
    held = kind in (Kind.DEVICE, Kind.PICAMERA2, Kind.PIPELINE)

    def camera_failed(error: BaseException | None, fallback: str) -> int:
        busy = busy_message(spec, error, active_services() if held else [], held and device_busy(spec))
        return _fail(busy or fallback)

    server = preview = None
    if not args.text:
        page = (
            PAGE.replace("{min_classify}", str(vision.min_classify))
            .replace("{unpixelated}", "" if args.pixelate else " (not now: --no-pixelate is on)")
            .replace("{minutes}", f"{args.minutes:g}")
        )
        preview = Preview(summarize([], vision.min_classify).to_json())
        try:
            server = serve(host, port, preview, page, args.public)
        except OSError as exc:
            return _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc} (pick another with --listen)")

    try:
        try:
            source = open_source(spec, camera=camera)
        except (RuntimeError, OSError, IndexError) as exc:  # SourceError, and picamera2's own
            if not held:
                raise
            return camera_failed(exc, redact(str(exc)))
        reopen = (lambda: open_source(spec, camera=camera)) if kind is Kind.FILE else None
        frames = Newest(source, reopen).start()
        try:
            return _run(args, frames, analyzer, zones, vision.min_classify, server, preview, camera_failed, spec)
        finally:
            frames.stop()
            if held:
                print(
                    f"the camera is free again (restart the daemon if you stopped it: sudo systemctl start {SERVICE})"
                )
    finally:
        if server is not None and preview is not None:
            preview.close()
            server.shutdown()
            server.server_close()


def _run(
    args: argparse.Namespace,
    frames: Newest,
    analyzer,
    zones: Zones,
    min_classify: int,
    server: ThreadingHTTPServer | None,
    preview: Preview | None,
    camera_failed: Callable[[BaseException | None, str], int],
    spec: str,
) -> int:
    import cv2

    stop = threading.Event()
    previous = {n: signal.signal(n, lambda *_: stop.set()) for n in (signal.SIGTERM, signal.SIGINT)}
    try:
        first, waited = None, time.monotonic() + FIRST_FRAME_S
        while first is None and not stop.is_set() and not frames.ended and time.monotonic() < waited:
            first = frames.next(0, 0.25)
        if stop.is_set():
            return 0
        if first is None:
            if frames.error is not None:
                return camera_failed(frames.error, f"{redact(spec)}: {redact(str(frames.error))}")
            return camera_failed(None, f"{redact(spec)} sent no frames within {FIRST_FRAME_S:g} s")
        start = time.monotonic()
        deadline = start + args.minutes * 60
        h, w = first[1].image.shape[:2]
        print(f"aim: {redact(spec)} at {w}x{h}, for {args.minutes:g} min (Ctrl-C stops); nothing is recorded")
        if server is not None:
            threading.Thread(target=server.serve_forever, name="aim-server", daemon=True).start()
            host, port = server.server_address[:2]
            shown = f"[{host}]" if ":" in host else host
            target = shown if is_loopback(host) else "127.0.0.1"
            print(f"on your computer: ssh -L {port}:{target}:{port} {getpass.getuser()}@{socket.gethostname()}")
            print(f"then open http://127.0.0.1:{port}/")
            if not is_loopback(host):
                print(f"or, from the network (--public): http://{shown}:{port}/")
        sys.stdout.flush()
        recent = Recent(min_classify)
        seen, next_print = 0, start + 1.0
        while not stop.is_set():
            now = time.monotonic()
            if now >= deadline:
                break
            got = frames.next(seen, min(0.25, deadline - now))
            if got is None and frames.ended:
                if frames.error is not None:
                    return _fail(f"{redact(spec)} failed: {redact(str(frames.error))}")
                return _fail(f"{redact(spec)} stopped sending frames")
            if got is not None:
                seen, frame = got
                boxes = [face.box for face in analyzer.faces(frame.image)]
                now = time.monotonic()
                size = (frame.image.shape[1], frame.image.shape[0])
                recent.add(now, [float(b[2] - b[0]) for b in boxes], size)
                summary = recent.summary(now)
                if preview is not None:
                    image = render(frame.image, boxes, zones, min_classify, summary.text(), args.pixelate)
                    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                    if ok:
                        preview.publish(jpeg.tobytes(), summary.to_json())
            if args.text and now >= next_print:
                print(f"{time.strftime('%H:%M:%S')}  {recent.summary(now).text()}", flush=True)
                next_print = max(next_print + 1.0, now + 0.5)
        print("aim: time is up" if not stop.is_set() else "aim: stopped", flush=True)
        return 0
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def add_commands(commands: argparse._SubParsersAction) -> None:
    """`aicctv edge aim`, added to `aicctv edge` (registered after edge.py's commands)."""
    edge = commands.choices["edge"]
    sub = next(a for a in edge._actions if isinstance(a, argparse._SubParsersAction))
    aim = sub.add_parser(
        "aim",
        help="point the camera: a live preview of faces, their size and the zones, for a few minutes",
        description=(
            "Take the camera for a few minutes and show what the daemon would see: faces (green:\n"
            "wide enough to classify; red: too small) with their width in pixels, the include and\n"
            "exclude zones, the entry line with an arrow to its inside, and a summary of the last few\n"
            "seconds. The preview is served on localhost only, for a browser through an SSH tunnel;\n"
            "faces in it are pixelated. Nothing is written to disk. Stop the daemon first: it holds\n"
            "the camera (sudo systemctl stop aicctv-edge)."
        ),
        epilog=(
            "examples:\n"
            "  sudo systemctl stop aicctv-edge\n"
            "  aicctv edge aim --config /etc/aicctv/edge.toml\n"
            "      then, on your computer: ssh -L 8081:127.0.0.1:8081 pi@shop-1\n"
            "      and open http://127.0.0.1:8081/\n"
            "  aicctv edge aim --config /etc/aicctv/edge.toml --text     (no browser: a summary a second)\n"
            "  sudo systemctl start aicctv-edge\n\n"
            "pages: / (preview and summary), /stream.mjpg, /frame.jpg (one frame), /summary (JSON)\n"
            "exit status: 0 time up or stopped, 1 camera busy or unusable, 2 bad configuration or usage"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    group = config_options(
        aim, "TOML file, e.g. /etc/aicctv/edge.toml (its [source] and [vision])", "vision.min_face=32"
    )
    add_flags(group, EdgeConfig, only=AIM_SETTINGS)
    aim.add_argument(
        "--minutes", type=minutes_type, default=10.0, metavar="M", help="stop after this many minutes (default 10)"
    )
    aim.add_argument(
        "--listen",
        type=parse_listen,
        default=parse_listen(DEFAULT_LISTEN),
        metavar="HOST:PORT",
        help=f"where to serve the preview (default {DEFAULT_LISTEN}; port 0: any free port)",
    )
    aim.add_argument(
        "--public",
        action="store_true",
        help="allow a --listen address other than loopback: anyone on that network can then watch",
    )
    aim.add_argument("--text", action="store_true", help="no preview: print the summary once a second")
    aim.add_argument(
        "--no-pixelate",
        dest="pixelate",
        action="store_false",
        help="show faces unpixelated in the preview: for the installer's own eyes only, and only with a "
        "reason (e.g. to tell a face from a poster); still nothing is recorded",
    )
    aim.set_defaults(func=cmd_aim)

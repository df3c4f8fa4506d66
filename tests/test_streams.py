"""Cameras and streams: a URL or device reaches OpenCV as given, a real HTTP (MJPEG) stream is
analysed like a video, and an unreachable one fails fast in one line without its password."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest

from edge.cli.analyze import expand_inputs
from edge.cli.main import build_parser, main
from edge.vision.sources import Kind, SourceError, VideoSource, source_kind
from edge.wire.config import flag_values

RTSP = "rtsp://admin:s3cret@192.0.2.7:8554/Streaming/Channels/101?transport=tcp"


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        (RTSP, Kind.URL),
        ("rtsps://cam.local/live", Kind.URL),
        ("http://cam.local:8080/video.mjpg", Kind.URL),
        ("https://cam.local/stream", Kind.URL),
        ("/dev/video0", Kind.DEVICE),
        ("/dev/v4l/by-id/usb-Logitech_C920-video-index0", Kind.DEVICE),
        ("0", Kind.DEVICE),
        ("picamera2", Kind.PICAMERA2),
        ("v4l2src device=/dev/video0 ! videoconvert ! appsink", Kind.PIPELINE),
        ("rtspsrc location=rtsp://cam/x latency=0 ! decodebin ! videoconvert ! appsink", Kind.PIPELINE),
        ("clip.mp4", Kind.FILE),
    ],
)
def test_sources_are_told_apart(spec, kind):
    assert source_kind(spec) is kind


def test_an_existing_file_is_a_file_whatever_its_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("0", "wow!.mp4"):
        (tmp_path / name).write_bytes(b"")
        assert source_kind(name) is Kind.FILE


def test_urls_and_devices_reach_the_source_as_given():
    """argparse's Path would fold `rtsp://host` into `rtsp:/host`: the inputs stay strings."""
    args = build_parser().parse_args(["analyze", RTSP, "/dev/video0", "0"])
    assert list(expand_inputs(args.inputs)) == [RTSP, "/dev/video0", "0"]
    edge = build_parser().parse_args(["edge", "run", "--source", RTSP])
    assert flag_values(edge)["source.spec"] == RTSP


class MjpegCamera:
    """A network camera on a free port: a live HTTP MJPEG stream at `fps` behind Basic
    authentication, as many IP cameras serve, until the client leaves. Records each request's
    path and Authorization header."""

    def __init__(self, fps: float = 50.0) -> None:
        jpeg = cv2.imencode(".jpg", np.full((120, 160, 3), 128, np.uint8))[1].tobytes()
        part = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n" % (len(jpeg), jpeg)
        self.requests: list[tuple[str, str | None]] = []
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                camera.requests.append((self.path, self.headers.get("Authorization")))
                if self.headers.get("Authorization") is None:
                    # As a camera with a password does: the client then sends its credentials.
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace;boundary=frame")
                self.end_headers()
                # The client leaves once it has what it wanted.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    while True:
                        self.wfile.write(part)
                        self.wfile.flush()
                        time.sleep(1 / fps)  # the camera's frame period

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> MjpegCamera:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def http_camera() -> Iterator[MjpegCamera]:
    with MjpegCamera() as camera:
        yield camera


def test_a_stream_url_reaches_opencv_intact(http_camera):
    url = f"http://viewer:pa%3Ass@127.0.0.1:{http_camera.port}/cam/1/video.mjpg?resolution=vga&fps=5"
    source = VideoSource(url)
    try:
        frames = [f for f, _ in zip(source, range(10), strict=False)]
    finally:
        source.close()
    assert len(frames) == 10 and frames[0].image.shape == (120, 160, 3)
    assert source.live and frames[1].timestamp >= frames[0].timestamp > 1e9  # wall clock
    path, authorization = http_camera.requests[-1]
    assert path == "/cam/1/video.mjpg?resolution=vga&fps=5"
    assert authorization == "Basic " + base64.b64encode(b"viewer:pa:ss").decode()


def test_a_slow_reader_gets_the_newest_frame_and_the_rest_are_dropped(http_camera):
    source = VideoSource(f"http://viewer:pw@127.0.0.1:{http_camera.port}/video.mjpg")
    try:
        frames = iter(source)
        first = next(frames)
        # Busy elsewhere while the camera sends five more frames.
        deadline = time.monotonic() + 30
        while source.reader.frames_read < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
        second = next(frames)
    finally:
        source.close()
    assert (first.index, second.index) == (0, 1)  # indexes count the frames analysed
    assert source.reader.dropped >= 4 and second.timestamp >= first.timestamp


def test_analyze_tracks_a_stream_like_a_video(http_camera, capsys):
    url = f"http://viewer:hunter2@127.0.0.1:{http_camera.port}/video.mjpg"
    assert main(["analyze", url, "--frames", "12", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["file"] == f"http://viewer:***@127.0.0.1:{http_camera.port}/video.mjpg"
    assert (summary["frames"], summary["visitors"]) == (12, 0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_stream_fails_fast_in_one_line():
    port = free_port()
    url = f"rtsp://admin:hunter2@127.0.0.1:{port}/live/ch1"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "edge.cli.main", "analyze", url], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr == f"error: cannot open stream rtsp://admin:***@127.0.0.1:{port}/live/ch1: connection refused\n"
    assert "hunter2" not in done.stdout + done.stderr
    # Loading the models takes the time; the stream itself fails at once, not after a timeout.
    assert time.monotonic() - started < 60


def test_a_server_that_never_answers_times_out():
    """A host that takes the connection and sends nothing: FFmpeg's open is bounded."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"rtsp://admin:hunter2@127.0.0.1:{silent.getsockname()[1]}/x"
        started = time.monotonic()
        with pytest.raises(SourceError) as caught:
            VideoSource(url, timeout_s=0.5)
        assert time.monotonic() - started < 20
    assert str(caught.value).startswith("cannot open stream rtsp://admin:***@127.0.0.1:")
    assert "within 0.5 s" in str(caught.value)

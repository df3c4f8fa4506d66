"""`aicctv edge aim`: the preview pixelates faces and draws their boxes, the summary counts them,
nothing is written to disk, it stops by itself, and it refuses what it must. The drawing helpers
are tested as pure functions."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import background, place

from edge.aim import draw, mask
from edge.aim.server import local_host_header
from edge.aim.summary import Recent, summarize
from edge.cli import aim
from edge.cli.main import main
from edge.vision.zones import Zones

REPO = Path(__file__).resolve().parent.parent
FACE_AT = (240, 120, 140)  # x, y, width of the face pasted into every frame
SIZE = (640, 480)


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.fixture
def scene(faces, tmp_path) -> dict:
    """A 2 s video of one face, a config whose log must never appear, an empty cwd and TMPDIR."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    frame = background(*SIZE, seed=1)
    box = place(frame, faces[0], *FACE_AT)
    video = inputs / "door.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, SIZE)
    for _ in range(20):
        writer.write(frame)
    writer.release()
    db = tmp_path / "var" / "edge.db"
    config = inputs / "edge.toml"
    config.write_text(
        f'[source]\nspec = "{video}"\n[storage]\ndb = "{db}"\n[vision]\n'
        'exclude = "0.8,0.0 1.0,0.0 1.0,0.3 0.8,0.3"\nentry_line = "0.1,0.8 0.9,0.8"\nentry_inside = "0.5,0.95"\n'
    )
    for name in ("cwd", "tmp"):
        (tmp_path / name).mkdir()
    return {"frame": frame, "box": box, "video": video, "config": config, "db": db, "root": tmp_path}


def start(scene: dict, *args: str) -> subprocess.Popen:
    env = os.environ | {"TMPDIR": str(scene["root"] / "tmp"), "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "edge.cli.main", "edge", "aim", "--config", str(scene["config"]), *args]
    return subprocess.Popen(
        command, cwd=scene["root"] / "cwd", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def lines_of(process: subprocess.Popen) -> queue.Queue:
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


def preview_url(lines: queue.Queue, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        assert line is not None, "aim exited before serving"
        if line.startswith("then open "):
            return line.split()[-1].rstrip("/")
    raise AssertionError("no preview URL printed")


def fetch(url: str, timeout: float = 60, host: str | None = None) -> tuple[int, str, bytes]:
    """The first answer that is not 503 (no frame yet), polling until one comes."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    while True:
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, answer.headers["Content-Type"], answer.read()
        except urllib.error.HTTPError as error:
            if error.code != 503 or time.monotonic() > deadline:
                return error.code, error.headers["Content-Type"] or "", error.read()
        time.sleep(0.1)


def detail(image: np.ndarray, tile: int = 6) -> float:
    """Fine detail: the median spread of grey levels within small tiles (0 inside blocks of one colour)."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(float)
    h, w = grey.shape
    return float(
        np.median(
            [
                grey[y : y + tile, x : x + tile].std()
                for y in range(0, h - tile + 1, tile)
                for x in range(0, w - tile + 1, tile)
            ]
        )
    )


def test_the_preview_pixelates_faces_draws_their_boxes_and_writes_nothing(scene):
    before = files_under(scene["root"])
    process = start(scene, "--listen", "127.0.0.1:0", "--minutes", "1")
    try:
        lines = lines_of(process)
        url = preview_url(lines)
        status, kind, body = fetch(url + "/frame.jpg")
        assert (status, kind) == (200, "image/jpeg")
        served = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        assert served.shape[:2] == (SIZE[1] + draw.summary_band(SIZE[0]), SIZE[0])

        x1, y1, x2, y2 = scene["box"]
        # The face's middle (clear of the box outline and its label) has lost its detail.
        inner = (slice(y1 + 25, y2 - 25), slice(x1 + 25, x2 - 25))
        original = detail(scene["frame"][inner])
        assert original > 3 and detail(served[inner]) < 0.2 * original, (detail(served[inner]), original)
        # The overlay: a green outline (large enough to classify) around the face, and nowhere else.
        b, g, r = (served[..., i].astype(int) for i in range(3))
        green = (g > 150) & (r < 120) & (b < 120)
        near = np.zeros_like(green)
        near[y1 - 30 : y2 + 30, x1 - 30 : x2 + 30] = True
        assert green[near].sum() > 200 and green[~near].sum() < 20

        summary = json.loads(fetch(url + "/summary")[2])
        assert summary["faces"] == 1 and summary["too_small"] == 0 and summary["text"].startswith("1 face, median")
        page = fetch(url + "/")[2].decode()
        assert '<img src="/stream.mjpg"' in page and "1 face" in page
        with urllib.request.urlopen(url + "/stream.mjpg", timeout=10) as stream:
            assert stream.headers["Content-Type"].startswith("multipart/x-mixed-replace")
            assert stream.read(200).startswith(b"--frame\r\nContent-Type: image/jpeg")
        # A page elsewhere reaching the preview by DNS rebinding is refused.
        assert fetch(url + "/frame.jpg", host="attacker.example:8081")[0] == 403

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        process.kill()
        process.wait()
    assert files_under(scene["root"]) == before
    assert not scene["db"].exists()


def test_text_mode_prints_the_summary_and_stops_when_time_is_up(scene):
    before = files_under(scene["root"])
    began = time.monotonic()
    process = start(scene, "--text", "--minutes", "0.07")
    try:
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    summaries = [line for line in out.splitlines() if "1 face, median" in line]
    assert len(summaries) >= 2, out
    assert "time is up" in out and "http" not in out
    assert time.monotonic() - began < 45
    assert files_under(scene["root"]) == before


def test_a_non_local_listen_address_needs_public(scene, capsys):
    code = main(["edge", "aim", "--source", str(scene["video"]), "--listen", "0.0.0.0:8081"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "--public" in err and "SSH tunnel" in err


def test_a_camera_held_by_the_daemon_says_stop_it_first(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(aim, "active_services", lambda: ["aicctv-edge"])
    code = main(["edge", "aim", "--source", "/dev/video99", "--text"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "sudo systemctl stop aicctv-edge" in err, err


def test_busy_messages():
    held = aim.busy_message("/dev/video0", None, ["aicctv-edge@door"], ebusy=False)
    assert "sudo systemctl stop aicctv-edge@door" in held and "\n" not in held
    ebusy = aim.busy_message("/dev/video0", OSError(16, "Device or resource busy"), [], ebusy=False)
    assert "sudo systemctl stop aicctv-edge" in ebusy
    assert aim.busy_message("0", None, [], ebusy=True) is not None
    # A camera that is simply absent is not called busy.
    assert aim.busy_message("/dev/video9", RuntimeError("cannot open camera: not connected"), [], ebusy=False) is None


# ---- the drawing helpers and the summary, as pure functions ------------------------------------


def noise(width: int = 200, height: int = 160) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (height, width, 3), np.uint8)


def test_blank_fills_each_grown_box_with_one_colour_and_leaves_the_rest():
    image = noise()
    out = mask.blank(image, [np.array([50, 40, 150, 140], np.float32)], margin=0.0)
    face = out[40:140, 50:150]
    assert face.reshape(-1, 3).std(axis=0).max() == 0
    outside = np.ones(image.shape[:2], bool)
    outside[40:140, 50:150] = False
    assert np.array_equal(out[outside], image[outside])
    assert np.array_equal(image, noise()), "the input is left as it was"
    grown = mask.blank(image, [np.array([-20, -20, 40, 40], np.float32)])
    assert not np.array_equal(grown[40:45, 0:40], image[40:45, 0:40]), "the margin below the box is covered"
    assert np.array_equal(grown[100:, 100:], image[100:, 100:])


def test_unturn_maps_boxes_back_from_each_quarter_turn():
    image = np.zeros((100, 160), np.uint8)
    image[10:30, 40:80] = 255  # a 40 x 20 box at x 40..80, y 10..30
    for turn in mask.TURNS:
        turned = image if turn is None else cv2.rotate(image, turn)
        ys, xs = np.nonzero(turned)
        box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
        assert mask.unturn(box, turn, 160, 100).tolist() == [[40, 10, 80, 30]], turn


def test_the_mask_finds_a_sideways_face_and_holds_it_a_few_frames(faces):
    frame = background(*SIZE, seed=2)
    x1, y1, x2, y2 = place(frame, np.ascontiguousarray(np.rot90(faces[1])), 300, 200, 96)
    empty = background(*SIZE, seed=2)
    face_mask = mask.FaceMask()
    found = face_mask(frame)
    assert any(b[0] <= x1 + 10 and b[1] <= y1 + 10 and b[2] >= x2 - 10 and b[3] >= y2 - 10 for b in found), found
    held = [len(face_mask(empty)) for _ in range(mask.HOLD_FRAMES + 1)]
    assert all(held[: mask.HOLD_FRAMES]) and held[-1] == 0, held


def test_merged_boxes_cover_every_guess():
    boxes = np.array([[10, 10, 50, 50], [14, 8, 52, 46], [200, 200, 220, 220]], np.float32)
    assert mask.merged(boxes).tolist() == [[10, 8, 52, 50], [200, 200, 220, 220]]


def test_face_colours_follow_min_classify():
    assert draw.face_colour(48, 48) == draw.GREEN
    assert draw.face_colour(47.9, 48) == draw.RED


def test_draw_faces_outlines_by_size_and_labels_the_width():
    image = np.full((200, 300, 3), 128, np.uint8)
    out = draw.draw_faces(image, [(20, 60, 80, 120), (200, 100, 220, 120)], min_classify=40)
    assert tuple(out[90, 20]) == draw.GREEN  # the big face's left edge
    assert tuple(out[110, 200]) == draw.RED  # the small one's
    assert np.array_equal(image, np.full((200, 300, 3), 128, np.uint8))
    scaled = draw.draw_faces(image, [(40, 120, 160, 240)], min_classify=40, scale=0.5)
    assert tuple(scaled[90, 20]) == draw.GREEN


def near(pixel: np.ndarray, colour: tuple[int, int, int], tolerance: int = 40) -> bool:
    """Whether a pixel is (about: lines are anti-aliased) this colour."""
    return int(np.abs(pixel.astype(int) - colour).max()) <= tolerance


def test_draw_zones_outlines_include_shades_exclude_and_points_inside():
    image = np.full((200, 200, 3), 200, np.uint8)
    zones = Zones.parse(
        include="0.1,0.1 0.9,0.1 0.9,0.9 0.1,0.9",
        exclude="0.6,0.6 0.9,0.6 0.9,0.9 0.6,0.9",
        entry_line="0.0,0.5 1.0,0.5",
        entry_inside="0.5,0.1",
    )
    out = draw.draw_zones(image, zones)
    assert out[170, 150].mean() < 120  # shaded
    assert near(out[60, 20], draw.INCLUDE_COLOUR)  # the include outline's left side, x = 0.1
    assert near(out[100, 10], draw.LINE_COLOUR)
    # The arrow leaves the line's middle towards the inside (up), not away from it.
    assert near(out[90, 100], draw.LINE_COLOUR) and not near(out[110, 100], draw.LINE_COLOUR)
    assert np.array_equal(draw.draw_zones(image, Zones()), image)


def test_render_draws_labels_and_scales_down():
    image = np.full((300, 400, 3), 128, np.uint8)
    box = np.array([100, 100, 200, 200], np.float32)
    plain = draw.render(image, [box], Zones(), 24, "1 face")
    labelled = draw.render(image, [box], Zones(), 24, "1 face", labels=["#3 female 20-29"])
    label_band = (slice(60, 100), slice(100, 300))
    assert (labelled[label_band] != plain[label_band]).any(axis=2).sum() > (plain[label_band] != image[label_band]).any(
        axis=2
    ).sum()
    small = draw.render(noise(1920, 1080), [], Zones(), 24, "no faces", max_width=960)
    assert small.shape[:2] == (540 + draw.summary_band(960), 960)


def test_summary_text():
    assert summarize([[52, 60, 20], [50]], 24).text() == "3 faces, median 51 px, 1 too small (< 24 px)"
    assert summarize([[80]], 24).text() == "1 face, median 80 px, none too small"
    assert summarize([[], []], 24).text().startswith("no faces")
    assert summarize([], 24).text() == "waiting for frames"
    assert summarize([[52, 20]], 24).to_json()["too_small"] == 1


def test_the_summary_covers_the_last_few_seconds():
    recent = Recent(min_classify=24, window_s=3.0)
    recent.add(0.0, [100, 110, 120])
    recent.add(1.0, [10])
    assert recent.summary(2.0).faces == 3
    summary = recent.summary(3.5)
    assert (summary.faces, summary.too_small, summary.median_px, summary.frames) == (1, 1, 10, 1)


def test_the_summary_adds_the_judged_share_of_people_followed():
    recent = Recent(min_classify=24, labels=True)
    recent.add(0.0, [100, 90], people={1: False, 2: True})
    recent.add(1.0, [100, 90], people={1: True, 2: True, 3: False})
    summary = recent.summary(1.5)
    assert (summary.people, summary.judged) == (3, 2)
    assert summary.text().endswith("; judged 2 of 3 followed (67 %)")
    assert summary.to_json()["judged"] == 2
    assert "judged" not in Recent(24).summary(0.0).to_json()


def test_listen_addresses():
    assert aim.parse_listen("127.0.0.1:8081") == ("127.0.0.1", 8081)
    assert aim.parse_listen("[::1]:9000") == ("::1", 9000)
    assert aim.parse_listen("8082") == ("127.0.0.1", 8082)
    for loopback in ("127.0.0.1", "::1", "localhost", "127.0.1.1"):
        assert aim.is_loopback(loopback)
    for other in ("0.0.0.0", "192.168.1.5", "::", "shop-1.local"):
        assert not aim.is_loopback(other)
    assert local_host_header("127.0.0.1:9000") and local_host_header("[::1]:8081")
    assert not local_host_header("127.0.0.1.evil.example") and not local_host_header("")
    # --public: by the address the connection came in on, never by a name (a rebinding page's).
    assert local_host_header("192.168.1.5:8090", "192.168.1.5")
    assert local_host_header("[fe80::1]:8090", "fe80::1%eth0")
    assert not local_host_header("evil.example:8090", "192.168.1.5")
    assert not local_host_header("192.168.1.6:8090", "192.168.1.5")

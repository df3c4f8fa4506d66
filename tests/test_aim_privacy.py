"""The aim preview serves no face that a face detector can still find: faces of 24-200 px, turned
0, 90, 180 and 270 degrees (a camera mounted sideways or upside down before `rotate` is set), some
half outside the frame, pasted into a clip that the real `aicctv edge aim` plays; every JPEG read
from its real server is searched by the short-range BlazeFace model at a low score, at every
quarter turn, and no detection may lie on a pasted face."""

from __future__ import annotations

import time
import urllib.request

import cv2
import numpy as np
import pytest
from conftest import background
from test_aim import lines_of, preview_url, start

from edge.aim import draw
from edge.aim.mask import TURNS
from edge.vision.detect import FaceDetector

SIZE = W, H = 640, 480
SIZES = (24, 32, 40, 48, 64, 96, 128, 200)
SPOTS = ((20, 30), (470, 30), (20, 300), (470, 300))
SCENES = 16
FPS = 10
SCENE_FRAMES = 20  # each scene stays 2 s
# Each scene says which it is by the grey of a stripe between the faces (kept through the blur;
# a patch there looked enough like a face to be hidden now and then: the median reads past that).
MARKER = (slice(0, H), slice(250, 390))
MARKER_CORE = (slice(20, H - 40), slice(295, 345))
# The oracle: the short-range model, its own bar lowered, no second look, windows down to 20 px.
ORACLE_SCORE = 0.3


def marker_grey(n: int) -> int:
    return 20 + 14 * n


def paste(frame: np.ndarray, face: np.ndarray, x: int, y: int, width: int, turns: int) -> np.ndarray:
    """Paste `face` at `width` px, turned `turns` quarter turns clockwise, at (x, y), cut by the
    frame's edge where it reaches past it; returns where it lies as a 0/255 mask of the frame."""
    turned = np.rot90(cv2.resize(face, (width, width), interpolation=cv2.INTER_AREA), -turns)
    where = np.zeros(frame.shape[:2], np.uint8)
    x1, y1, x2, y2 = max(x, 0), max(y, 0), min(x + width, W), min(y + width, H)
    frame[y1:y2, x1:x2] = turned[y1 - y : y2 - y, x1 - x : x2 - x]
    where[y1:y2, x1:x2] = 255
    return where


def scenes(faces: list[np.ndarray]) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """16 frames of four faces each: every size at every quarter turn, one face per frame cut in
    half by an edge (each edge in turn)."""
    out = []
    for n in range(SCENES):
        frame = background(W, H, seed=n)
        frame[MARKER] = marker_grey(n)
        where = []
        for k, (x, y) in enumerate(SPOTS):
            size, turns = SIZES[(n * 4 + k) % len(SIZES)], (n + k) % 4
            if k == n % 4:
                x, y = [(-size // 2, y), (W - size // 2, y), (x, -size // 2), (x, H - size // 2)][n // 4]
            else:
                size = min(size, 150)  # whole faces keep clear of the marker
            where.append(paste(frame, faces[(n + k) % len(faces)], x, y, size, turns))
        out.append((frame, where))
    return out


def without_overlay(image: np.ndarray) -> np.ndarray:
    """The preview with the boxes and labels it draws (green or red, black text on them) painted
    out: at a low score the model reads a face into a box and its label drawn on a flat patch,
    which says nothing about what the patch hides; a face left clear inside a box keeps its middle."""
    pixels = image.astype(int)

    def near(limit: int) -> np.ndarray:
        masks = [np.abs(pixels - colour).max(axis=2) < limit for colour in (draw.GREEN, draw.RED)]
        return np.logical_or.reduce(masks).astype(np.uint8)

    # A box's 1 px outline loses about half its colour to JPEG's chroma subsampling, and an
    # outline left over is inpainted into a smudge that can read as a face: outlines are taken
    # as thin straight runs of coloured pixels nearer the colours as drawn.
    coloured = near(120) & (pixels.max(axis=2) - pixels.min(axis=2) > 40)
    thin = coloured & ~cv2.morphologyEx(coloured, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    lines = [cv2.morphologyEx(thin, cv2.MORPH_OPEN, np.ones(shape, np.uint8)) for shape in ((1, 9), (9, 1))]
    drawn = near(60) | lines[0] | lines[1]
    # JPEG keeps colour at half resolution in 8 px blocks, so a drawing's colour bleeds further
    # than its brightness: colour is painted out wider.
    luma, *chroma = cv2.split(cv2.cvtColor(image, cv2.COLOR_BGR2YCrCb))
    luma = cv2.inpaint(luma, cv2.dilate(drawn, np.ones((7, 7), np.uint8)), 3, cv2.INPAINT_TELEA)
    wide = cv2.dilate(drawn, np.ones((17, 17), np.uint8))
    chroma = [cv2.inpaint(c, wide, 3, cv2.INPAINT_TELEA) for c in chroma]
    return cv2.cvtColor(cv2.merge([luma, *chroma]), cv2.COLOR_YCrCb2BGR)


def faces_kept(oracle: FaceDetector, image: np.ndarray, where: list[np.ndarray]) -> list[int]:
    """The pasted faces on which the oracle finds a face, at any quarter turn of `image` (its
    drawings painted out): a detection mostly inside a face's square."""
    image = without_overlay(image)
    kept = set()
    for turn in TURNS:
        turned = image if turn is None else cv2.rotate(image, turn)
        for box in oracle(turned).boxes:
            x1, y1, x2, y2 = (max(round(float(v)), 0) for v in box)
            for i, mask in enumerate(where):
                region = (mask if turn is None else cv2.rotate(mask, turn))[y1:y2, x1:x2]
                if region.size and (region > 0).mean() > 0.5:
                    kept.add(i)
    return sorted(kept)


def jpegs(url: str):
    """The JPEGs of the preview's MJPEG stream, as they come."""
    with urllib.request.urlopen(url + "/stream.mjpg", timeout=60) as stream:
        while True:
            assert stream.readline() == b"--frame\r\n"
            headers = {}
            while (line := stream.readline().strip()) != b"":
                name, _, value = line.decode().partition(":")
                headers[name.lower()] = value.strip()
            body = stream.read(int(headers["content-length"]))
            stream.readline()
            yield cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)


@pytest.fixture(scope="module")
def oracle() -> FaceDetector:
    return FaceDetector("short", score_threshold=ORACLE_SCORE, min_face_px=20, verify=0)


def test_the_oracle_finds_every_pasted_face_unhidden(faces, oracle):
    """Otherwise the test below would prove nothing about the faces it misses."""
    for frame, where in scenes(faces)[:4]:
        assert faces_kept(oracle, frame, where) == [0, 1, 2, 3]


def test_no_served_jpeg_keeps_a_face_the_detector_can_find(faces, oracle, tmp_path):
    built = scenes(faces)
    inputs = tmp_path / "in"
    inputs.mkdir()
    video = inputs / "turned.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), float(FPS), SIZE)
    for frame, _ in built:
        for _ in range(SCENE_FRAMES):
            writer.write(frame)
    writer.release()
    config = inputs / "edge.toml"
    config.write_text(f'[source]\nspec = "{video}"\n')
    for name in ("cwd", "tmp"):
        (tmp_path / name).mkdir()
    scene = {"config": config, "root": tmp_path}
    process = start(scene, "--listen", "127.0.0.1:0", "--minutes", "10")
    checked: set[int] = set()
    leaks = []
    previous = -1
    try:
        url = preview_url(lines_of(process))
        deadline = time.monotonic() + 300
        for served in jpegs(url):
            if time.monotonic() > deadline:
                break
            assert served.shape[:2] == (H + draw.summary_band(W), W)
            served = served[:H]  # the view; below it, the summary's band holds only its text
            grey = float(np.median(served[MARKER_CORE]))
            n = round((grey - 20) / 14)
            steady, previous = n == previous, n
            # A frame between scenes (the codec blends them, and a face fading in at low contrast
            # sits outside what this test poses), the first of a scene (it may be such a blend
            # with the marker already through), or a scene seen enough.
            if abs(grey - marker_grey(n)) > 5 or not 0 <= n < SCENES or not steady or n in checked:
                continue
            checked.add(n)
            leaks += [(n, i) for i in faces_kept(oracle, served, built[n][1])]
            if len(checked) == SCENES:
                break
    finally:
        process.kill()
        process.wait()
    assert len(checked) == SCENES, f"only scenes {sorted(checked)} were served"
    assert not leaks, f"faces served clear (scene, face): {leaks}"

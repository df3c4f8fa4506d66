"""Deterministic synthetic surveillance clips for measuring unique-visitor counts and per-visitor gender accuracy.

Each visitor is one UTKFace *validation* face (never a training face), pasted as a feathered elliptical "head"
that walks once across a static synthetic shop scene: in from the left or right edge, out through the opposite
edge or, walking toward the camera, through the bottom. Several visitors are on screen at once (at most five),
paths cross, a column and a hanging sign hide some of them briefly, and every frame gets sensor noise and JPEG
compression before it is written.

Usage (from the project root)::

    python -m bench.clipgen --out DIR [--seed 0] [--visitors 40] [--width 640] [--height 480] [--fps 25] [--data PATH]

or ``from bench.clipgen import generate; truth = generate(out_dir, seed=0)``. Writes ``DIR/clip.mp4`` (mp4v) and
``DIR/clip.json``, a single-line JSON ground truth::

    {"fps": F, "width": W, "height": H, "frames": N, "seed": S,
     "visitors": [{"id": i, "file": UTKFace name, "female": 0|1, "age": A, "first_frame": f0, "last_frame": f1}, ...],
     "boxes": [[frame, visitor_id, x, y, w, h, visible_fraction], ...]}

A box is the pasted face square (w == h, the whole 200x200 UTKFace crop, so a detector's box is a bit smaller) for
every frame in which it overlaps the frame; it may reach past the border. visible_fraction is the share of the
square neither behind a pillar nor outside the frame; overlap between visitors is not subtracted (the larger,
nearer face is drawn in front). Boxes are sorted by frame, then visitor id; visitor ids follow entry order.
The same arguments always give the same JSON and the same frames (a byte-identical clip.mp4 with the same OpenCV).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import dataclass, replace
from itertools import combinations, pairwise
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from conversion.data import DEFAULT_DATA, load_faces, validation_rows

REF_WIDTH, REF_HEIGHT = 640, 480  # sizes below are in pixels at this resolution and scale with the frame
FACE_PX = (60.0, 150.0)
CROSSING_S = (2.0, 8.0)
ENTRY_GAP_S = (0.3, 3.0)  # with the crossing times above, about three visitors are on screen on average
MAX_ON_SCREEN = 5
MAX_HIDDEN_S = 0.6  # pillar occlusions must stay short enough for a tracker to bridge them
LEAD_S = 0.5  # empty scene at both ends, e.g. for trackers or background models to settle
MIN_AGE = 10
JPEG_QUALITY = (40, 75)
NOISE_SIGMA = 3.0
NOISE_BANK = 6  # noise frames drawn once and reused at random offsets: fresh noise per frame costs ~10 ms
NOISE_PAD = 32
CROP = 200  # UTKFace crop side
VIDEO_NAME, TRUTH_NAME = "clip.mp4", "clip.json"

Colour = tuple[int, int, int]


@dataclass(frozen=True)
class Rect:
    """Axis-aligned pixel rectangle, x1 and y1 exclusive."""

    x0: int
    y0: int
    x1: int
    y1: int


@dataclass(frozen=True)
class Track:
    """One visitor's walk: one entry per frame in which the face square overlaps the frame, from frame `start`."""

    start: int
    x: np.ndarray  # top-left corner of the face square (int)
    y: np.ndarray
    size: np.ndarray  # side of the face square (int)
    angle: np.ndarray  # in-plane rotation, degrees
    gain: np.ndarray  # brightness multiplier

    @property
    def last(self) -> int:
        return self.start + len(self.x) - 1


def scale_of(width: int, height: int) -> float:
    return min(width / REF_WIDTH, height / REF_HEIGHT)


# ---------------------------------------------------------------- faces


def pick_faces(rows: list[dict[str, str]], n: int, rng: np.random.Generator) -> list[dict[str, str]]:
    """n faces, half of them female (the RNG decides an odd one), ages >= MIN_AGE unless a gender
    runs out of them, in random order; distinct while there are enough of a gender, then the same
    faces again (the few committed fixture faces, tests/fixtures/faces)."""
    # sorted first, so that the manifest's row order does not matter
    pool = sorted(rows, key=lambda r: r["file"])
    pool = [pool[i] for i in rng.permutation(len(pool))]
    pool.sort(key=lambda r: int(r["age"]) < MIN_AGE)  # stable, so the order stays random within adults and children
    n_female = n // 2 + int(n % 2 == 1 and rng.random() < 0.5)
    picked: list[dict[str, str]] = []
    for gender, count in (("1", n_female), ("0", n - n_female)):
        group = [r for r in pool if r["gender"] == gender]
        if count and not group:
            raise ValueError(f"no faces of gender {gender} in the face folder, {count} needed")
        picked += [group[i % len(group)] for i in range(count)]
    return [picked[i] for i in rng.permutation(n)]


def face_rows(data: Path) -> list[dict[str, str]]:
    """Candidate faces: UTKFace's validation split when `data` holds the dataset (manifest.csv and
    shards), else every image in the folder, labelled by its UTKFace-style name AGE_GENDER_RACE_*."""
    if (data / "manifest.csv").is_file():
        return validation_rows(data)
    rows = []
    for path in sorted(data.glob("*.jp*g")):
        age, gender, race = path.name.split("_")[:3]
        rows.append({"file": path.name, "age": age, "gender": gender, "race": race, "shard": ""})
    if not rows:
        raise FileNotFoundError(f"{data} has neither manifest.csv nor UTKFace-named images")
    return rows


def read_faces(data: Path, rows: list[dict[str, str]]) -> list[np.ndarray]:
    """The BGR crops of `rows`, at CROP x CROP."""
    if (data / "manifest.csv").is_file():
        images = load_faces(rows, data)
    else:
        images = [cv2.imread(str(data / row["file"]), cv2.IMREAD_COLOR) for row in rows]
    for row, image in zip(rows, images, strict=True):
        if image is None:
            raise ValueError(f"{row['file']} in {data} is not a readable image")
    return [cv2.resize(image, (CROP, CROP), interpolation=cv2.INTER_AREA) for image in images]


def head_mask(side: int = CROP) -> np.ndarray:
    """Feathered ellipse (uint8 alpha) over an aligned crop. The ellipse plus its feather fits the square's
    inscribed circle, so rotating the sprite never cuts it and no square corner of the crop ever shows."""
    mask = np.zeros((side, side), np.uint8)
    cv2.ellipse(mask, (side // 2, side // 2), (round(side * 0.38), round(side * 0.44)), 0, 0, 360, 255, -1, cv2.LINE_AA)
    return cv2.GaussianBlur(mask, (0, 0), side * 0.025)


# ---------------------------------------------------------------- scene


def make_pillars(width: int, height: int, rng: np.random.Generator) -> list[Rect]:
    """A floor-to-ceiling column in the left half, which hides everyone walking past it, and a sign hanging from
    the ceiling in the right half, which hides only far (small, high) faces and clips the tops of nearer ones."""
    column_w, sign_w = round(0.10 * width), round(0.11 * width)
    column_x = round(rng.uniform(0.22, 0.36) * width) - column_w // 2
    sign_x = round(rng.uniform(0.60, 0.74) * width) - sign_w // 2
    sign_bottom = round(rng.uniform(0.36, 0.42) * height)
    return [Rect(column_x, 0, column_x + column_w, height), Rect(sign_x, 0, sign_x + sign_w, sign_bottom)]


def _vertical_gradient(top: Colour, bottom: Colour, rows: int, width: int) -> np.ndarray:
    return np.repeat(np.linspace(top, bottom, rows, dtype=np.float32)[:, None, :], width, axis=1)


def _draw_shelf(image: np.ndarray, x0: int, x1: int, y0: int, y1: int, k: float, rng: np.random.Generator) -> None:
    cv2.rectangle(image, (x0, y0), (x1, y1), (92, 104, 120), -1)
    boards = np.linspace(y0, y1, 5).round().astype(int)
    for top, bottom in pairwise(boards):
        x = x0 + 3
        while True:
            w, h = int(rng.integers(6, 18) * k) + 1, int((bottom - top) * rng.uniform(0.4, 0.85))
            if x + w > x1 - 3:
                break
            colour = tuple(int(c) for c in rng.integers(40, 230, 3))
            cv2.rectangle(image, (x, bottom - h), (x + w, bottom - 1), colour, -1)
            x += w + int(rng.integers(1, 4))
        cv2.line(image, (x0, bottom), (x1, bottom), (200, 205, 210), max(1, round(3 * k)))


def make_background(width: int, height: int, pillars: list[Rect], rng: np.random.Generator) -> np.ndarray:
    """Static shop scene (BGR uint8): wall and floor gradients, shelves, a door, the pillars, soft texture."""
    k = scale_of(width, height)
    horizon = round(0.58 * height)
    image = np.concatenate(
        [
            _vertical_gradient((205, 200, 190), (168, 170, 165), horizon, width),
            _vertical_gradient((120, 122, 125), (78, 82, 88), height - horizon, width),
        ]
    )
    image = np.ascontiguousarray(image.round().astype(np.uint8))
    for y in np.geomspace(8, height - horizon, 6).round().astype(int):  # floor tile seams, closer together far away
        cv2.line(image, (0, horizon + y - 1), (width, horizon + y - 1), (100, 104, 108), 1)
    door_x = round(rng.uniform(0.42, 0.5) * width)
    door = (door_x, round(0.12 * height)), (door_x + round(0.12 * width), horizon)
    cv2.rectangle(image, *door, (60, 80, 105), -1)
    cv2.rectangle(image, *door, (40, 50, 60), max(1, round(3 * k)))
    shelf_top = round(0.18 * height)
    _draw_shelf(image, round(0.03 * width), round(0.2 * width), shelf_top, horizon, k, rng)
    _draw_shelf(image, round(0.76 * width), round(0.97 * width), shelf_top, horizon, k, rng)
    column, sign = pillars
    column_w = column.x1 - column.x0
    shade = np.where(np.arange(column_w) < 0.65 * column_w, 1.0, 0.72)  # a lit face and a side in shadow
    image[column.y0 : column.y1, column.x0 : column.x1] = (np.array([178, 182, 186]) * shade[:, None]).astype(np.uint8)
    cv2.rectangle(image, (sign.x0, sign.y0), (sign.x1 - 1, sign.y1 - 1), (120, 50, 20), -1)
    sign_h = sign.y1 - sign.y0
    for i, y in enumerate(np.linspace(sign.y1 - 0.45 * sign_h, sign.y1 - 0.12 * sign_h, 3)):  # lines of "text"
        left, right = sign.x0 + round(6 * k), sign.x1 - round((6 + 12 * i) * k)
        cv2.rectangle(image, (left, round(y)), (right, round(y + 4 * k)), (235, 235, 235), -1)
    # low-frequency mottling plus fine grain, so the scene is not a perfectly flat target for a detector
    coarse = rng.normal(0, 3, (max(1, height // 16), max(1, width // 16))).astype(np.float32)
    mottle = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    grain = rng.normal(0, 2, (height, width)).astype(np.float32)
    return np.clip(image + (mottle + grain)[..., None], 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- path planning


def _bezier(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, t: np.ndarray) -> np.ndarray:
    t = t[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def sample_walk(width: int, height: int, fps: int, rng: np.random.Generator) -> Track | None:
    """One random walk from a side edge to the opposite edge or (toward the camera) to the bottom, trimmed to the
    frames in which the face overlaps the frame; None if it would leave and come back."""
    k = scale_of(width, height)
    lo, hi = FACE_PX[0] * k, FACE_PX[1] * k
    toward = rng.random() < 0.25
    if toward:
        s0, s1 = rng.uniform(lo, lo + 0.4 * (hi - lo)), rng.uniform(lo + 0.65 * (hi - lo), hi)
    else:
        s0 = rng.uniform(lo, hi)
        s1 = float(np.clip(s0 * rng.uniform(0.8, 1.25), lo, hi))
    offset = rng.uniform(-0.05, 0.05) * height  # people differ in height and in how far from the wall they walk

    def head_y(side: float) -> float:  # perspective: farther faces are smaller and higher in the image
        return height * (0.25 + 0.33 * (side - lo) / (hi - lo)) + offset

    from_left = rng.random() < 0.5
    p0 = np.array([-s0 / 2 if from_left else width + s0 / 2, head_y(s0)])
    if toward:
        p2 = np.array([rng.uniform(0.3, 0.7) * width, height + s1 / 2])
        p1 = np.array([p0[0] + 0.7 * (p2[0] - p0[0]), p0[1]])  # walks in along the wall, then turns to the camera
    else:
        p2 = np.array([width + s1 / 2 if from_left else -s1 / 2, head_y(s1)])
        p1 = (p0 + p2) / 2 + [0, rng.uniform(-0.08, 0.08) * height]
    n = max(2, round(rng.uniform(*CROSSING_S) * fps))
    t = np.linspace(0, 1, n)
    seconds = np.arange(n) / fps
    size = s0 + (s1 - s0) * (t**2 if toward else t)  # an approaching face grows fastest near the camera
    centre = _bezier(p0, p1, p2, t)
    step_hz, phase = rng.uniform(1.6, 2.2), rng.uniform(0, 2 * np.pi, 3)
    centre[:, 1] += 0.025 * size * np.sin(2 * np.pi * step_hz * seconds + phase[0])  # head bob, one per step
    angle = np.clip(rng.uniform(-4, 4) + 3 * np.sin(np.pi * step_hz * seconds + phase[1]), -8, 8)  # sway per stride
    gain = rng.uniform(0.85, 1.1) * (1 + 0.04 * np.sin(2 * np.pi * seconds / rng.uniform(1.5, 4) + phase[2]))

    side = size.round().astype(int)
    x = (centre[:, 0] - size / 2).round().astype(int)
    y = (centre[:, 1] - size / 2).round().astype(int)
    inside = np.flatnonzero((x + side > 0) & (x < width) & (y + side > 0) & (y < height))
    if len(inside) == 0 or inside[-1] - inside[0] + 1 != len(inside):
        return None
    keep = slice(inside[0], inside[-1] + 1)
    return Track(0, x[keep], y[keep], side[keep], angle[keep], gain[keep])


def _overlap(x: np.ndarray, y: np.ndarray, side: np.ndarray, rect: Rect) -> np.ndarray:
    width = np.clip(np.minimum(x + side, rect.x1) - np.maximum(x, rect.x0), 0, None)
    height = np.clip(np.minimum(y + side, rect.y1) - np.maximum(y, rect.y0), 0, None)
    return width * height


def pillar_cover(track: Track, pillars: list[Rect]) -> np.ndarray:
    """Per frame, the fraction of the face square behind a pillar (pillars lie inside the frame and are disjoint)."""
    return sum(_overlap(track.x, track.y, track.size, p) for p in pillars) / track.size**2


def visible_fraction(track: Track, width: int, height: int, pillars: list[Rect]) -> np.ndarray:
    inside = _overlap(track.x, track.y, track.size, Rect(0, 0, width, height)) / track.size**2
    return inside - pillar_cover(track, pillars)


def longest_run(mask: np.ndarray) -> int:
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return int((edges[1::2] - edges[::2]).max(initial=0))


def plan_walk(width: int, height: int, fps: int, pillars: list[Rect], rng: np.random.Generator) -> Track:
    """A walk that stays behind a pillar (more than half hidden) for at most MAX_HIDDEN_S at a time; slow walkers
    and paths running along a pillar are redrawn."""
    for _ in range(1000):
        track = sample_walk(width, height, fps, rng)
        if track is not None and longest_run(pillar_cover(track, pillars) > 0.5) <= MAX_HIDDEN_S * fps:
            return track
    raise RuntimeError("no acceptable walk in 1000 tries: is the frame too small for the pillars?")


def schedule(tracks: list[Track], fps: int, rng: np.random.Generator) -> list[Track]:
    """Start frames: each entry a random gap after the previous one, but before everyone has left (the scene never
    empties mid-clip) and later when MAX_ON_SCREEN visitors would otherwise be on screen at once."""
    lead = round(LEAD_S * fps)
    occupancy = np.zeros(lead + sum(len(t.x) for t in tracks) + 1, np.int32)  # the clip cannot be longer than this
    placed: list[Track] = []
    start = lead
    for track in tracks:
        if placed:
            start = min(start + round(rng.uniform(*ENTRY_GAP_S) * fps), max(p.last for p in placed))
        while occupancy[start : start + len(track.x)].max() >= MAX_ON_SCREEN:
            start += 1
        occupancy[start : start + len(track.x)] += 1
        placed.append(replace(track, start=start))
    return placed


def plan_visitors(
    n: int, width: int, height: int, fps: int, pillars: list[Rect], rng: np.random.Generator
) -> list[Track]:
    return schedule([plan_walk(width, height, fps, pillars, rng) for _ in range(n)], fps, rng)


def ground_truth_boxes(tracks: list[Track], width: int, height: int, pillars: list[Rect]) -> list[list[int | float]]:
    boxes = []
    for vid, track in enumerate(tracks):
        visible = visible_fraction(track, width, height, pillars)
        for j in range(len(track.x)):
            x, y, side = int(track.x[j]), int(track.y[j]), int(track.size[j])
            boxes.append([track.start + j, vid, x, y, side, side, round(float(visible[j]), 3)])
    boxes.sort()
    return boxes


def clip_stats(tracks: list[Track], pillars: list[Rect], boxes: list[list[int | float]]) -> dict[str, int]:
    """Numbers for the summary line: the most visitors on screen at once, visitor pairs whose faces overlap by at
    least a quarter of the smaller face in some frame (one passing in front of the other), and visitors more than
    half hidden by a pillar at some point."""
    per_frame: dict[int, list[list[int | float]]] = defaultdict(list)
    for box in boxes:
        per_frame[int(box[0])].append(box)
    crossing = set()
    for frame_boxes in per_frame.values():
        for (_, a, ax, ay, aw, _, _), (_, b, bx, by, bw, _, _) in combinations(frame_boxes, 2):
            ix = min(ax + aw, bx + bw) - max(ax, bx)
            iy = min(ay + aw, by + bw) - max(ay, by)
            if ix > 0 and iy > 0 and ix * iy >= 0.25 * min(aw, bw) ** 2:
                crossing.add((a, b))
    return {
        "max_on_screen": max(len(b) for b in per_frame.values()),
        "crossing_pairs": len(crossing),
        "hidden": sum(bool((pillar_cover(t, pillars) > 0.5).any()) for t in tracks),
    }


# ---------------------------------------------------------------- rendering


def paste(frame: np.ndarray, sprite: np.ndarray, x: int, y: int, side: int, angle: float, gain: float) -> None:
    """Alpha-blend a BGRA sprite into `frame` (in place), scaled to the side x side square at (x, y), rotated about
    its centre and scaled in brightness by `gain`; parts outside the frame are dropped."""
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + side, width), min(y + side, height)
    if x0 >= x1 or y0 >= y1:
        return
    scaled = cv2.resize(sprite, (side, side), interpolation=cv2.INTER_AREA)  # area filter: no aliasing when shrinking
    rotation = cv2.getRotationMatrix2D(((side - 1) / 2, (side - 1) / 2), angle, 1.0)
    scaled = cv2.warpAffine(scaled, rotation, (side, side), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0, 0))
    part = scaled[y0 - y : y1 - y, x0 - x : x1 - x].astype(np.float32)
    alpha = part[..., 3:] / 255
    roi = frame[y0:y1, x0:x1].astype(np.float32)
    frame[y0:y1, x0:x1] = np.clip(roi + alpha * (part[..., :3] * gain - roi), 0, 255).astype(np.uint8)


def degrade(frame: np.ndarray, noise: np.ndarray, quality: int) -> np.ndarray:
    """Sensor noise, then a JPEG round trip: what an IP camera's stream looks like before the video codec."""
    noisy = np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    ok, jpeg = cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.imdecode(jpeg, cv2.IMREAD_COLOR)


def render(
    path: Path,
    background: np.ndarray,
    pillars: list[Rect],
    tracks: list[Track],
    sprites: list[np.ndarray],
    frames: int,
    fps: int,
    rng: np.random.Generator,
) -> None:
    """Draw every frame (faces far to near, then the pillars over them), degrade it and append it to an mp4v file."""
    height, width = background.shape[:2]
    on_screen: list[list[tuple[int, int]]] = [[] for _ in range(frames)]
    for vid, track in enumerate(tracks):
        for j in range(len(track.x)):
            on_screen[track.start + j].append((vid, j))
    noise_bank = rng.standard_normal((NOISE_BANK, height + NOISE_PAD, width + NOISE_PAD, 3), np.float32)
    noise_bank = (noise_bank * NOISE_SIGMA).round().astype(np.int16)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cv2.VideoWriter cannot write {path} with mp4v")
    try:
        for f in tqdm(range(frames), desc="clipgen", unit="frame", disable=None):
            frame = background.copy()
            # larger faces are nearer the camera, so they are drawn last and pass in front of smaller ones
            for vid, j in sorted(on_screen[f], key=lambda e: tracks[e[0]].size[e[1]]):
                t = tracks[vid]
                x, y, side = int(t.x[j]), int(t.y[j]), int(t.size[j])
                paste(frame, sprites[vid], x, y, side, float(t.angle[j]), float(t.gain[j]))
            for p in pillars:  # pillars stand in front of every visitor
                frame[p.y0 : p.y1, p.x0 : p.x1] = background[p.y0 : p.y1, p.x0 : p.x1]
            dy, dx = rng.integers(NOISE_PAD, size=2)
            noise = noise_bank[rng.integers(NOISE_BANK), dy : dy + height, dx : dx + width]
            writer.write(degrade(frame, noise, int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))))
    finally:
        writer.release()


def probe(path: Path) -> tuple[int, int, int]:
    """(frames, width, height) of a video as cv2.VideoCapture reads it back."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise RuntimeError(f"cv2.VideoCapture cannot open {path}")
        frames, width, height = (
            int(capture.get(p)) for p in (cv2.CAP_PROP_FRAME_COUNT, cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT)
        )
        return frames, width, height
    finally:
        capture.release()


# ---------------------------------------------------------------- entry points


def generate(
    out_dir: Path | str,
    seed: int = 0,
    visitors: int = 40,
    width: int = REF_WIDTH,
    height: int = REF_HEIGHT,
    fps: int = 25,
    data: Path | str = DEFAULT_DATA,
) -> Path:
    """Write clip.mp4 and clip.json into out_dir, print a summary line and return the JSON's path."""
    # mp4v silently drops an odd last row or column, which would shift the frame away from the ground truth
    if visitors < 1 or width < 160 or height < 120 or width % 2 or height % 2 or fps < 1:
        raise ValueError("need visitors >= 1, an even width >= 160, an even height >= 120 and fps >= 1")
    data, out_dir = Path(data), Path(out_dir)
    if not data.is_dir():
        raise FileNotFoundError(f"face folder {data} not found: pass --data DIR (UTKFace, or UTKFace-named images)")
    # independent streams, so that e.g. asking for more visitors leaves the scene and the pillars as they were
    face_rng, scene_rng, path_rng, noise_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
    rows = pick_faces(face_rows(data), visitors, face_rng)
    mask = head_mask()
    sprites = [np.dstack([face, mask]) for face in read_faces(data, rows)]
    pillars = make_pillars(width, height, scene_rng)
    background = make_background(width, height, pillars, scene_rng)
    tracks = plan_visitors(visitors, width, height, fps, pillars, path_rng)
    frames = max(t.last for t in tracks) + 1 + round(LEAD_S * fps)
    boxes = ground_truth_boxes(tracks, width, height, pillars)

    out_dir.mkdir(parents=True, exist_ok=True)
    video = out_dir / VIDEO_NAME
    render(video, background, pillars, tracks, sprites, frames, fps, noise_rng)
    if (read_back := probe(video)) != (frames, width, height):
        raise RuntimeError(f"{video} reads back as (frames, width, height) {read_back}, not {(frames, width, height)}")
    truth = {
        "fps": fps,
        "width": width,
        "height": height,
        "frames": frames,
        "seed": seed,
        "visitors": [
            {
                "id": vid,
                "file": row["file"],
                "female": int(row["gender"]),
                "age": int(row["age"]),
                "first_frame": t.start,
                "last_frame": t.last,
            }
            for vid, (row, t) in enumerate(zip(rows, tracks, strict=True))
        ],
        "boxes": boxes,
    }
    truth_path = out_dir / TRUTH_NAME
    truth_path.write_text(json.dumps(truth, separators=(",", ":")) + "\n")
    stats = clip_stats(tracks, pillars, boxes)
    females = sum(int(r["gender"]) for r in rows)
    print(
        f"clipgen: {visitors} visitors ({females} female), {frames} frames = {frames / fps:.1f} s at {fps} fps, "
        f"up to {stats['max_on_screen']} on screen, {stats['crossing_pairs']} crossing pairs, "
        f"{stats['hidden']} hidden by a pillar -> {truth_path}"
    )
    return truth_path


def empty_scene(out_dir: Path | str, seed: int = 0, seconds: float = 20.0, lights_at_s: float | None = None) -> Path:
    """The scene of `generate(out_dir, seed)` with nobody in it, the same size, noise and JPEG
    artefacts: the idle half of the busy/idle speed comparison. `lights_at_s`: the light level
    jumps by a third at that moment, as when the lights are switched on."""
    _, scene_rng, _, noise_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
    pillars = make_pillars(REF_WIDTH, REF_HEIGHT, scene_rng)
    background = make_background(REF_WIDTH, REF_HEIGHT, pillars, scene_rng)
    fps = 25
    frames = round(seconds * fps)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    video = out_dir / VIDEO_NAME
    if lights_at_s is None:
        render(video, background, pillars, [], [], frames, fps, noise_rng)
        return video
    # Two renders joined: before the switch, then the brighter scene.
    before = round(lights_at_s * fps)
    brighter = np.clip(background.astype(np.float32) * 1.33, 0, 255).astype(np.uint8)
    parts = [out_dir / "before.mp4", out_dir / "after.mp4"]
    render(parts[0], background, pillars, [], [], before, fps, noise_rng)
    render(parts[1], brighter, pillars, [], [], frames - before, fps, noise_rng)
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), fps, (REF_WIDTH, REF_HEIGHT))
    for part in parts:
        capture = cv2.VideoCapture(str(part))
        while (frame := capture.read())[0]:
            writer.write(frame[1])
        capture.release()
        part.unlink()
    writer.release()
    return video


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.clipgen", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder for clip.mp4 and clip.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--visitors", type=int, default=40)
    parser.add_argument("--width", type=int, default=REF_WIDTH)
    parser.add_argument("--height", type=int, default=REF_HEIGHT)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="UTKFace folder, or a folder of UTKFace-named face images"
    )
    args = parser.parse_args(argv)
    try:
        generate(args.out, args.seed, args.visitors, args.width, args.height, args.fps, args.data)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()

"""Things that never move are not visitors: a poster beside the door is never counted, while a
person who stands still but shifts and turns their head is."""

from __future__ import annotations

import cv2
import numpy as np
from conftest import background, place

from edge import Analyzer, VisionConfig
from edge.vision.sources import Frame
from edge.vision.still import StillFilter, moved

FPS = 10
STATIC_AFTER_S = 4.0


def turned(face: np.ndarray, degrees: float) -> np.ndarray:
    """The face rotated in the image plane and squeezed sideways: a head tilting and turning."""
    h, w = face.shape[:2]
    rotation = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    squeezed = cv2.resize(face, (int(w * (1 - abs(degrees) / 60)), h))
    canvas = cv2.resize(squeezed, (w, h))
    return cv2.warpAffine(canvas, rotation, (w, h), borderMode=cv2.BORDER_REPLICATE)


def scene(faces: list[np.ndarray], seconds: float = 16.0) -> list[Frame]:
    """A poster (fixed face) at the left; two people walking across, the second in front of the
    poster; a person standing at the right who shifts a little and turns their head now and then."""
    rng = np.random.default_rng(3)
    base = background(640, 480, seed=5)
    frames = []
    for index in range(int(seconds * FPS)):
        t = index / FPS
        image = base.copy()
        place(image, faces[0], 40, 60, 90)  # the poster
        if 1.0 <= t < 15.0:  # the person at the counter
            step = int(t / 0.8)
            dx, dy = (step % 3 - 1) * 9, (step % 2) * 6
            place(image, turned(faces[7], (-14, 0, 14, 0)[step % 4]), 440 + dx, 120 + dy, 100)
        for start, face, y in ((1.5, faces[3], 300), (8.0, faces[5], 70)):  # walkers, left to right
            if start <= t < start + 4.0:
                place(image, face, int((t - start) * 136), y, 95)
        noisy = np.clip(image.astype(np.int16) + rng.integers(-4, 5, image.shape), 0, 255).astype(np.uint8)
        frames.append(Frame(noisy, t, index))
    return frames


def test_a_poster_is_not_counted_and_a_person_standing_still_is(faces):
    analyzer = Analyzer(VisionConfig(static_after_s=STATIC_AFTER_S))
    visitors, static, in_view = [], [], []
    for result in analyzer.track(scene(faces)):
        visitors += result.ended
        static += result.static
        in_view.append(result.in_view)
    counted = sorted((round(v.first_seen), round(v.last_seen)) for v in visitors)
    assert len(visitors) == 3, counted  # two walkers and the person at the counter
    assert len(static) == 1, [s.to_json() for s in static]  # the poster, reported once
    x, y, w, _ = static[0].to_json()["box"]
    assert abs(x - 40) < 15 and abs(y - 60) < 15 and 70 < w < 120
    assert max(in_view) <= 3
    # Each visit spans its person's time in view, even the walker who took over the poster's track.
    spans = [(v.first_seen, v.last_seen) for v in sorted(visitors, key=lambda v: v.first_seen)]
    for (first, last), (start, end) in zip(spans, [(1.0, 15.0), (1.5, 5.5), (8.0, 12.0)], strict=True):
        assert abs(first - start) <= 1.0 and abs(last - end) <= 1.0, spans
    assert all(v.samples > 0 for v in visitors)


def test_moved_compares_with_where_the_still_period_began():
    box = np.array([100, 100, 200, 200], np.float32)
    keypoints = np.array([[130, 130], [170, 130], [150, 150], [150, 175], [105, 140], [195, 140]], np.float32)
    landmarks = (keypoints[:4] - box[:2]) / 100
    assert not moved(box, landmarks, box + 3, keypoints + 3)  # detector jitter
    assert moved(box, landmarks, box + 10, keypoints + 10)  # a step aside
    turned_head = keypoints.copy()
    turned_head[2] += (12, 0)  # the nose moves towards one side of the face
    assert moved(box, landmarks, box, turned_head)


def test_still_filter_state_survives_a_json_round_trip():
    import json

    still = StillFilter(static_after_s=1.0)
    box = np.array([10, 10, 60, 60], np.float32)
    points = np.full((6, 2), 30.0, np.float32)
    for t in (0.0, 0.5, 1.2):
        still.observe(7, box, points, t)
    again = StillFilter(static_after_s=1.0)
    again.restore(json.loads(json.dumps(still.snapshot())))
    assert again.is_static(7) and not again.countable(7) and again.spots == still.spots

"""Motion gating: an empty scene runs the face detector on a fraction of frames, a light switched
on does not start a run on every frame, and a person walking in is still found at once."""

from __future__ import annotations

import numpy as np
from conftest import background, place

from edge import Analyzer, VisionConfig
from edge.vision.detect import STILL_PASS_EVERY, pyramid_window, pyramid_windows
from edge.vision.motion import MotionGate
from edge.vision.sources import Frame

FPS = 10


def noisy(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(image.astype(np.int16) + rng.integers(-6, 7, image.shape), 0, 255).astype(np.uint8)


def test_noise_is_not_motion_a_moving_thing_is_and_light_is_not():
    rng = np.random.default_rng(0)
    scene = background(640, 480, seed=2)
    gate = MotionGate()
    assert gate.moved(noisy(scene, rng))  # the first frame: nothing to compare with yet
    assert not any(gate.moved(noisy(scene, rng)) for _ in range(20))
    brighter = np.clip(scene.astype(np.int16) * 4 // 3, 0, 255).astype(np.uint8)
    assert not gate.moved(noisy(brighter, rng))
    assert not any(gate.moved(noisy(brighter, rng)) for _ in range(5))
    walker = brighter.copy()
    walker[200:280, 300:360] = 20
    assert gate.moved(noisy(walker, rng))


def test_an_empty_scene_runs_the_detector_on_a_fraction_of_frames_and_a_visitor_is_found(faces):
    rng = np.random.default_rng(1)
    scene = background(640, 480, seed=2)
    brighter = np.clip(scene.astype(np.int16) * 4 // 3, 0, 255).astype(np.uint8)
    frames = []
    for index in range(140):
        t = index / FPS
        image = (scene if t < 6 else brighter).copy()  # lights on at 6 s
        if t >= 11:  # someone walks in at 11 s
            place(image, faces[4], int(40 + (t - 11) * 150), 150, 110)
        frames.append(Frame(noisy(image, rng), t, index))
    analyzer = Analyzer(VisionConfig(sweep_s=1.0))
    visitors = [v for result in analyzer.track(frames[:110]) for v in result.ended]
    # 11 s empty: the first frame, a sweep a second, and at most one frame for the light.
    assert visitors == [] and analyzer.times.detected <= 14, analyzer.times.detected
    analyzer = Analyzer(VisionConfig(sweep_s=1.0))
    first_seen = [v.first_seen for result in analyzer.track(frames) for v in result.ended]
    assert len(first_seen) == 1 and first_seen[0] <= 11.15


def test_new_motion_is_motion_not_explained_by_the_people_already_followed():
    rng = np.random.default_rng(3)
    scene = background(640, 480, seed=2)
    gate = MotionGate()
    gate.moved(noisy(scene, rng))
    walker = scene.copy()
    walker[100:300, 400:460] = 20  # a face at 100-160 and the body below it
    assert gate.moved(noisy(walker, rng))
    left, right = (0, 0, 240, 240), (320, 0, 320, 480)
    moving = gate.new_motion(np.zeros((0, 4), np.float32), 640, 480)
    assert moving(right) and not moving(left)
    # Once that face is followed, its head and body explain the motion: no window needs a search.
    followed = gate.new_motion(np.array([[400, 100, 460, 160]], np.float32), 640, 480)
    assert not followed(right)
    # A second person beside the first, at face height, is not explained by the first.
    pair = noisy(walker, rng)
    pair[100:160, 540:600] = 230
    gate.moved(pair)
    assert gate.new_motion(np.array([[400, 100, 460, 160]], np.float32), 640, 480)(right)


def test_the_pyramid_searches_where_something_new_moved_and_everywhere_on_a_still_pass():
    pyramid = pyramid_windows(640, 480, 40, 1 / 6)
    rotation = [pyramid_window(pyramid, index, None) for index in range(len(pyramid))]
    assert rotation == pyramid
    still_pass = [pyramid_window(pyramid, index, lambda w: False) for index in range(len(pyramid))]
    assert still_pass == pyramid  # pass 0 is a still pass
    later = range(len(pyramid), len(pyramid) * STILL_PASS_EVERY)
    assert all(pyramid_window(pyramid, index, lambda w: False) is None for index in later)
    # Motion in the right half only: every window searched lies there, and each of them in turn.
    right = [pyramid_window(pyramid, index, lambda w: w[0] >= 320) for index in later]
    assert {w[0] >= 320 for w in right} == {True}
    assert set(right) == {w for w in pyramid if w[0] >= 320}

"""A face too small for the age/gender model is counted but never given an age or a gender."""

from __future__ import annotations

import numpy as np
from conftest import background, place

from edge import Analyzer, VisionConfig


def test_a_tiny_face_is_found_but_not_judged(faces):
    image = background(120, 120, seed=4)
    place(image, faces[2], 50, 50, 20)
    analyzer = Analyzer(VisionConfig(min_face=16))
    found = analyzer.faces(image)
    assert len(found) == 1
    face = found[0].to_json()
    assert face["too_small"] is True and face["box"][2] < 24
    assert face["gender"] is face["age"] is face["age_band"] is face["p_female"] is None


def test_the_same_face_large_enough_is_judged(faces):
    image = background(120, 120, seed=4)
    place(image, faces[2], 30, 30, 60)
    face = Analyzer().faces(image)[0].to_json()
    assert face["too_small"] is False and face["gender"] in ("female", "male") and 0 <= face["age"] <= 100


def test_a_visitor_seen_only_small_is_never_classified(faces):
    from edge.vision.sources import Frame

    analyzer = Analyzer(VisionConfig(min_face=16))
    frames = []
    for index in range(30):
        image = background(160, 120, seed=4)
        place(image, faces[5], 20 + 3 * index, 50, 20)
        frames.append(Frame(image, index / 10, index))
    visitors = [v for result in analyzer.track(frames) for v in result.ended]
    assert len(visitors) == 1
    assert visitors[0].samples == 0 and visitors[0].gender is None and visitors[0].age is None
    assert np.isfinite(visitors[0].first_seen)

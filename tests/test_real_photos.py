"""Real photographs with known face counts (public domain or CC0, see tests/fixtures/README.md):
each face is found and judged, and a cat or a coffee cup is no face."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

PHOTOS = Path(__file__).parent / "fixtures" / "photos"


@pytest.mark.parametrize(("name", "faces", "gender"), [("astronaut", 1, "female"), ("camera", 1, "male")])
def test_each_face_in_a_real_photo_is_found_and_judged(analyzer, name, faces, gender):
    found = [f.to_json() for f in analyzer.faces(cv2.imread(str(PHOTOS / f"{name}.jpg")))]
    assert len(found) == faces, found
    assert found[0]["gender"] == gender and 18 <= found[0]["age"] <= 60 and not found[0]["too_small"]


@pytest.mark.parametrize("name", ["chelsea", "coffee"])
def test_a_cat_and_a_coffee_cup_are_no_faces(analyzer, name):
    assert analyzer.faces(cv2.imread(str(PHOTOS / f"{name}.jpg"))) == []


def test_the_face_or_not_classifier_tells_a_real_face_from_what_surrounds_it():
    """Our second-look classifier on a real photo: the face, not the sleeve below it nor the
    background beside it; a box off the frame is judged on padding without failing."""
    from edge.vision.detect import BlazeFace
    from edge.vision.faceness import Faceness

    image = cv2.imread(str(PHOTOS / "astronaut.jpg"))
    face = BlazeFace("full", 0.5, 1)(image).boxes[0]
    side = face[2] - face[0]
    faceness = Faceness()
    below, beside = np.array([0, 2.5, 0, 2.5]) * side, np.array([1.7, 0, 1.7, 0]) * side
    assert faceness(image, face) > 0.9
    assert faceness(image, face + below) < 0.5
    assert faceness(image, face + beside) < 0.5
    assert 0.0 <= faceness(image, face - 1000) <= 1.0


def test_a_face_crop_is_centred_on_its_box_whatever_the_scale():
    from edge.vision.faceness import face_crop

    image = np.zeros((400, 600, 3), np.uint8)
    image[100:300, 200:400] = 255  # a white square; the box below is exactly it
    for box in ([200, 100, 400, 300], [250, 150, 350, 250]):
        crop = face_crop(image, np.array(box, np.float32), size=40, margin=1.0)
        white = crop[..., 0] > 127
        assert crop.shape == (40, 40, 3)
        assert abs(np.argwhere(white).mean(0) - 19.5).max() < 1.0

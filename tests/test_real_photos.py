"""Real photographs with known face counts (public domain or CC0, see tests/fixtures/README.md):
each face is found and judged, and a cat or a coffee cup is no face."""

from __future__ import annotations

from pathlib import Path

import cv2
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

"""Counting only what should count: include/exclude areas and an entry line, as pure geometry and
on a clip where people walk in, walk out and pass by."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import background, place

from edge import Analyzer, VisionConfig
from edge.vision.sources import Frame
from edge.vision.zones import Path, ZoneError, Zones, inside
from edge.wire.config import ConfigError, validate

DOOR = Zones.parse(entry_line="0.0,0.5 1.0,0.5", entry_inside="0.5,0.9")  # inside: the lower half


def walk(zones: Zones, points: list[tuple[float, float]]) -> str:
    path = Path()
    for x, y in points:
        path.add(zones, x, y)
    return path.verdict(zones)


def test_polygons_and_areas():
    square = ((0.2, 0.2), (0.6, 0.2), (0.6, 0.6), (0.2, 0.6))
    assert inside(square, 0.4, 0.4) and not inside(square, 0.7, 0.4)
    zones = Zones.parse(include="0.0,0.0 1.0,0.0 1.0,1.0 0.0,1.0", exclude="0.2,0.2 0.6,0.2 0.6,0.6 0.2,0.6")
    assert zones.in_area(0.9, 0.9) and not zones.in_area(0.4, 0.4)
    assert walk(zones, [(0.3, 0.3), (0.4, 0.4), (0.5, 0.5)]) == "outside"
    assert walk(zones, [(0.8, 0.8), (0.9, 0.9)]) == "in"


def test_entry_line_counts_only_people_walking_in():
    assert walk(DOOR, [(0.5, 0.2), (0.5, 0.4), (0.5, 0.6), (0.5, 0.8)]) == "in"
    assert walk(DOOR, [(0.5, 0.8), (0.5, 0.6), (0.5, 0.3)]) == "passing"  # leaving
    assert walk(DOOR, [(0.1, 0.3), (0.5, 0.3), (0.9, 0.3)]) == "passing"  # passing outside
    assert walk(DOOR, [(0.5, 0.3), (0.5, 0.7), (0.5, 0.3)]) == "passing"  # came in and went out again


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"include": "0.1,0.1 0.2,0.2"}, "at least 3 points"),
        ({"exclude": "0.1,0.1 2,0.2 0.3,0.4"}, "between 0 and 1"),
        ({"entry_line": "0.1,0.5 0.9,0.5"}, "go together"),
        ({"entry_line": "0.1,0.5 0.9,0.5", "entry_inside": "0.5,0.5"}, "lies on the entry line"),
        ({"entry_line": "0.1 0.9,0.5", "entry_inside": "0.5,0.9"}, "is not x,y"),
    ],
)
def test_bad_zones_are_one_line_naming_the_setting(settings, message):
    with pytest.raises(ZoneError, match=message):
        Zones.parse(**settings)
    config = VisionConfig(**settings)
    with pytest.raises(ConfigError, match=message):
        validate(config, "vision")
        for check in config.checks():
            check()


def frames_of(faces: list[np.ndarray], walks: list[tuple[int, float, int, int, int, int]]) -> list[Frame]:
    """Frames at 10 fps; each walk is (face, start s, x0, y0, x1, y1) over 2 s at 100 px."""
    out = []
    for index in range(90):
        t = index / 10
        image = background(640, 480, seed=7)
        for face, start, x0, y0, x1, y1 in walks:
            if start <= t < start + 2.0:
                share = (t - start) / 2.0
                place(image, faces[face], int(x0 + share * (x1 - x0)), int(y0 + share * (y1 - y0)), 100)
        out.append(Frame(image, t, index))
    return out


def test_a_clip_through_a_door_counts_who_came_in(faces):
    walks = [
        (1, 0.5, 120, 10, 120, 370),  # walks in: top to bottom across the middle line
        (3, 3.5, 420, 370, 420, 10),  # walks out, elsewhere and later
        (6, 6.5, 10, 40, 530, 40),  # passes by outside, along the top
    ]
    config = VisionConfig(entry_line="0.0,0.5 1.0,0.5", entry_inside="0.5,0.95")
    visitors = [v for r in Analyzer(config).track(frames_of(faces, walks)) for v in r.ended]
    assert sorted(v.entered for v in visitors) == [False, False, True], [v.to_json() for v in visitors]


def test_a_track_in_an_exclude_zone_is_not_counted(faces):
    walks = [(2, 0.5, 20, 20, 120, 40), (5, 0.5, 380, 300, 520, 340)]
    config = VisionConfig(exclude="0.0,0.0 0.4,0.0 0.4,0.4 0.0,0.4")
    visitors = [v for r in Analyzer(config).track(frames_of(faces, walks)) for v in r.ended]
    assert len(visitors) == 1 and visitors[0].first_seen >= 0.5 and visitors[0].entered is None

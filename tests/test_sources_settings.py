"""The `[source]` camera settings: their validation, the frame transform, and a video file that
honours rotate, flip, width and height."""

from __future__ import annotations

import dataclasses
import itertools

import cv2
import numpy as np
import pytest

from edge.daemon.config import EdgeConfig, SourceSection
from edge.vision.sources import FLIPS, ROTATIONS, Camera, VideoSource, orient, sensor_flips
from edge.wire.config import ConfigError, load

# What each setting means, said with NumPy (image rows are y, columns are x).
TURN = {0: lambda a: a, 90: lambda a: np.rot90(a, k=-1), 180: lambda a: np.rot90(a, k=2), 270: np.rot90}
MIRROR = {"none": lambda a: a, "horizontal": lambda a: a[:, ::-1], "vertical": lambda a: a[::-1]}
COMBINATIONS = list(itertools.product(TURN, MIRROR))


def pattern(height: int = 6, width: int = 8) -> np.ndarray:
    """An image with no symmetry: every pixel different."""
    return np.arange(height * width * 3, dtype=np.uint16).reshape(height, width, 3).astype(np.uint8)


@pytest.mark.parametrize(("rotate", "flip"), COMBINATIONS)
def test_orient_turns_clockwise_then_mirrors(rotate, flip):
    image = pattern()
    assert np.array_equal(orient(image, rotate, flip), MIRROR[flip](TURN[rotate](image)))


def test_orient_scales_before_turning():
    image = np.zeros((48, 64, 3), np.uint8)
    assert orient(image, 90, "none", size=(32, 24)).shape == (32, 24, 3)
    assert orient(image) is image  # nothing asked: the frame itself, not a copy


@pytest.mark.parametrize(("rotate", "flip"), COMBINATIONS)
def test_sensor_mirrors_do_what_software_would(rotate, flip):
    """picamera2's Transform can only mirror: a half turn is both mirrors, a quarter turn is left
    to software."""
    flips = sensor_flips(rotate, flip)
    if rotate in (90, 270):
        assert flips is None
        return
    image = pattern()
    hflip, vflip = flips
    sensor = image[:, ::-1] if hflip else image
    sensor = sensor[::-1] if vflip else sensor
    assert np.array_equal(sensor, orient(image, rotate, flip))


def test_settings_offer_what_the_sources_do():
    choices = {f.name: f.metadata["setting"].choices for f in dataclasses.fields(SourceSection)}
    assert choices["rotate"] == tuple(ROTATIONS)
    assert choices["flip"] == tuple(FLIPS)


def test_camera_settings_load_from_file_and_environment(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_text('[source]\nspec = "/dev/video0"\nwidth = 1280\nheight = 720\nfps = 15\nflip = "horizontal"\n')

    def camera(section: SourceSection) -> tuple:
        return section.width, section.height, section.fps, section.rotate, section.flip

    assert camera(load(EdgeConfig, path, environ={"AICCTV_SOURCE_ROTATE": "180"}).source) == (
        1280, 720, 15.0, 180, "horizontal"
    )  # fmt: skip
    assert camera(load(EdgeConfig, environ={}).source) == (None, None, None, 0, "none")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"source.rotate": "45"}, "source.rotate = 45: must be one of 0, 90, 180, 270"),
        ({"source.flip": "diagonal"}, "source.flip = 'diagonal': must be one of none, horizontal, vertical"),
        ({"source.width": "1280"}, "source.width and source.height go together"),
        ({"source.width": "8", "source.height": "8"}, "source.width = 8: must be between 16 and 8192"),
        ({"source.fps": "0"}, "source.fps = 0.0: must be between 0.1 and 240"),
        ({"source.rotate": "upside down"}, "source.rotate = 'upside down' (command line): expected int"),
    ],
)
def test_bad_camera_settings_are_named(values, message):
    with pytest.raises(ConfigError) as caught:
        load(EdgeConfig, environ={}, overrides=values)
    assert message in str(caught.value)


@pytest.mark.parametrize("bad", [{"rotate": 45}, {"flip": "both"}, {"width": 640}])
def test_camera_rejects_what_the_settings_would(bad):
    with pytest.raises(ValueError):
        Camera(**bad)


@pytest.fixture(scope="module")
def small_video(tmp_path_factory) -> tuple[str, list[np.ndarray]]:
    """A 64x48 video of 5 frames, each different and without symmetry, and its decoded frames."""
    path = str(tmp_path_factory.mktemp("video") / "small.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    assert writer.isOpened()
    for i in range(5):
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[: 24 - i, : 32 + 3 * i] = (255, 255, 255)  # a block off-centre: turns and mirrors show
        frame[40:, 50:] = (0, 0, 255)
        writer.write(frame)
    writer.release()
    source = VideoSource(path)
    plain = [f.image for f in source]
    source.close()
    assert len(plain) == 5 and plain[0].shape == (48, 64, 3)
    return path, plain


def read(path: str, camera: Camera) -> list[np.ndarray]:
    source = VideoSource(path, camera=camera)
    try:
        return [f.image for f in source]
    finally:
        source.close()


@pytest.mark.parametrize(("rotate", "flip"), [(90, "none"), (180, "vertical"), (270, "horizontal"), (0, "vertical")])
def test_a_video_file_is_turned_and_mirrored(small_video, rotate, flip):
    path, plain = small_video
    turned = read(path, Camera(rotate=rotate, flip=flip))
    assert len(turned) == len(plain)
    for got, original in zip(turned, plain, strict=True):
        assert np.array_equal(got, MIRROR[flip](TURN[rotate](original)))


def test_a_video_file_is_scaled_to_width_and_height_before_turning(small_video):
    path, _ = small_video
    frames = read(path, Camera(width=32, height=24, rotate=90, flip="horizontal"))
    assert [f.shape for f in frames] == [(32, 24, 3)] * 5
    # The red corner (bottom right) ends, after a clockwise turn and a mirror, at the bottom right.
    b, g, r = frames[0][-2, -2]
    assert r > 200 and b < 80 and g < 80

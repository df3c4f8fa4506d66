import numpy as np
import pytest

from conversion.robustness import CONDITIONS, jitter_keypoints
from edge.vision.align import ALIGN_KEYPOINTS, align_face, template_keypoints

CORRUPTIONS = {name: corruption for name, corruption in CONDITIONS.items() if corruption is not None}


@pytest.fixture(scope="module")
def crops(faces):
    return [align_face(face, template_keypoints(200, 200), 64) for face in faces]


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corruption_keeps_shape_and_dtype_and_changes_the_crop(crops, name):
    for i, crop in enumerate(crops):
        before = crop.copy()
        out = CORRUPTIONS[name](crop, np.random.default_rng(i))
        assert out.shape == crop.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - crop.astype(int)).mean() > 0.5, f"{name} barely changed face {i}"
        np.testing.assert_array_equal(crop, before)  # pure: the input is untouched


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corruption_is_a_function_of_crop_and_rng(crops, name):
    first = CORRUPTIONS[name](crops[0], np.random.default_rng(7))
    np.testing.assert_array_equal(first, CORRUPTIONS[name](crops[0], np.random.default_rng(7)))


def test_keypoint_jitter_moves_keypoints_within_bounds():
    keypoints = template_keypoints(200, 200)
    eye_distance = keypoints[1, 0] - keypoints[0, 0]
    for seed in range(20):
        moved = jitter_keypoints(keypoints, np.random.default_rng(seed))
        assert moved.shape == keypoints.shape and moved.dtype == keypoints.dtype
        offset = np.abs(moved - keypoints)[list(ALIGN_KEYPOINTS)].max()
        # ±5 % shift, ±5 % scale and ±10° about the centroid move no point by more than ~0.4 eye distances.
        assert 0 < offset < 0.4 * eye_distance

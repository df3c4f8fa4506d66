"""`conversion.context`: how much of a wider view a photo really shows (pure functions, no data)."""

import numpy as np
import pytest

from conversion.context import outside_share, smear_ring
from edge.vision.align import FACE_SIZE, template_keypoints


def test_a_photo_cut_at_the_face_framing_leaves_the_wider_views_ring_outside():
    # A photo framed as UTKFace's crops are: the face's 64 px framing is the whole photo.
    keypoints = template_keypoints(FACE_SIZE, FACE_SIZE)
    assert outside_share((FACE_SIZE, FACE_SIZE, 3), keypoints, FACE_SIZE) == 0.0
    # An 80 px view adds 8 px on each side, none of it in the photo: 1 - (64/80)^2.
    assert outside_share((FACE_SIZE, FACE_SIZE, 3), keypoints, 80) == pytest.approx(0.36)


def test_a_photo_with_room_around_the_face_leaves_nothing_outside():
    keypoints = template_keypoints(FACE_SIZE, FACE_SIZE) + 100
    assert outside_share((300, 300, 3), keypoints, 112) == 0.0


def test_smearing_the_ring_repeats_the_pixels_inside_it():
    crop = np.random.default_rng(0).integers(0, 256, (80, 80, 3), dtype=np.uint8)
    assert smear_ring(crop, 0) is crop
    smeared = smear_ring(crop, 8)
    assert smeared.shape == crop.shape and smeared.dtype == crop.dtype
    np.testing.assert_array_equal(smeared[8:-8, 8:-8], crop[8:-8, 8:-8])
    np.testing.assert_array_equal(smeared[0, 8:-8], crop[8, 8:-8])  # the top ring: the first row inside
    np.testing.assert_array_equal(smeared[8:-8, -1], crop[8:-8, -9])  # the right ring: the last column inside

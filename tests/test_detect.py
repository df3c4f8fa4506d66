import numpy as np
import pytest
from conftest import background, place

from edge.vision.detect import DETECTORS, FaceDetector, decode_boxes, ssd_anchor_centers, tile_windows, weighted_nms
from edge.vision.detections import Detections, iou_matrix


def test_anchor_counts_match_mediapipe_models():
    full, short = DETECTORS["full"], DETECTORS["short"]
    assert len(ssd_anchor_centers(full.input_size, full.strides, full.extra_interpolated_anchor)) == 2304
    assert len(ssd_anchor_centers(short.input_size, short.strides, short.extra_interpolated_anchor)) == 896


def test_decode_places_box_and_keypoints_relative_to_anchor():
    anchors = np.array([[0.25, 0.5], [0.75, 0.75]], np.float32)
    raw = np.zeros((2, 16), np.float32)
    raw[1, :4] = [19.2, -19.2, 38.4, 57.6]  # shift +0.1, -0.1; size 0.2 x 0.3 at input 192
    raw[1, 4:6] = [9.6, 0.0]  # first keypoint 0.05 right of the anchor
    found = decode_boxes(raw, np.array([-5.0, 5.0]), anchors, 192, score_threshold=0.5)
    assert len(found) == 1
    np.testing.assert_allclose(found.boxes[0], [0.75, 0.5, 0.95, 0.8], atol=1e-6)
    np.testing.assert_allclose(found.keypoints[0, 0], [0.8, 0.75], atol=1e-6)
    assert found.scores[0] == pytest.approx(1 / (1 + np.exp(-5)))


def test_weighted_nms_merges_a_cluster_and_keeps_separate_faces():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.6, 0.8], np.float32)
    kps = np.zeros((3, 6, 2), np.float32)
    merged = weighted_nms(Detections(boxes, scores, kps), 0.3)
    assert len(merged) == 2
    assert merged.scores[0] == pytest.approx(0.9)
    assert merged.boxes[0, 0] == pytest.approx(0.6 / 1.5)  # score-weighted mean of x1 = 0 and 1


def test_iou_matrix():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    np.testing.assert_allclose(iou_matrix(a, b)[0], [1.0, 1 / 3, 0.0], atol=1e-6)


def test_tiles_cover_the_frame_with_overlap():
    windows = tile_windows(1920, 1080, 480, overlap=0.25)
    covered = np.zeros((1080, 1920), bool)
    for x, y, w, h in windows:
        covered[y : y + h, x : x + w] = True
        assert w == h == 480
    assert covered.all()
    assert tile_windows(400, 300, 480, overlap=0.25) == [(0, 0, 400, 300)]


def test_detects_each_fixture_face_in_a_larger_frame(faces):
    detector = FaceDetector()
    for i, face in enumerate(faces):
        frame = background(640, 480, seed=i)
        x1, y1, x2, y2 = place(frame, face, 200, 120, 160)
        found = detector(frame)
        assert len(found) == 1, f"fixture {i}: {len(found)} faces"
        assert iou_matrix(found.boxes, np.array([[x1, y1, x2, y2]], np.float32))[0, 0] > 0.5


def test_small_face_in_a_1080p_frame_is_found_by_tiling(faces):
    frame = background(1920, 1080)
    place(frame, faces[4], 1300, 700, 44)
    assert len(FaceDetector()(frame)) == 1
    assert len(FaceDetector(tiles=False)(frame)) == 0


def test_blank_frame_has_no_face():
    assert len(FaceDetector()(background(640, 480))) == 0


def test_several_faces_come_largest_first(faces):
    frame = background(960, 540)
    place(frame, faces[0], 40, 100, 90)
    place(frame, faces[5], 350, 80, 200)
    place(frame, faces[7], 700, 200, 130)
    found = FaceDetector()(frame)
    assert len(found) == 3
    assert list(found.widths) == sorted(found.widths, reverse=True)


def test_unknown_detector_model_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown detector"):
        FaceDetector("medium")

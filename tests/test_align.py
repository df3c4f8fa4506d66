import cv2
import numpy as np

from edge.vision.align import TEMPLATE, align_face, similarity_transform, template_keypoints


def test_similarity_transform_recovers_rotation_scale_and_shift():
    src = np.array([[10, 10], [50, 12], [30, 40], [31, 60]], np.float64)
    truth = cv2.getRotationMatrix2D((0, 0), 20, 1.7)
    truth[:, 2] = [5, -3]
    dst = src @ truth[:, :2].T + truth[:, 2]
    np.testing.assert_allclose(similarity_transform(src, dst), truth, atol=1e-9)


def test_template_face_is_the_whole_image(faces):
    face = faces[0]
    crop = align_face(face, template_keypoints(200, 200), 64)
    expected = cv2.resize(face, (64, 64), interpolation=cv2.INTER_AREA)
    assert np.abs(crop.astype(int) - expected.astype(int)).mean() < 6


def test_rotated_face_is_levelled(faces):
    face = faces[3]
    big = cv2.copyMakeBorder(face, 100, 100, 100, 100, cv2.BORDER_REPLICATE)
    rotation = cv2.getRotationMatrix2D((200, 200), 25, 1.0)
    rotated = cv2.warpAffine(big, rotation, (400, 400))
    keypoints = template_keypoints(200, 200) + 100
    keypoints = keypoints @ rotation[:, :2].T + rotation[:, 2]
    straight = align_face(big, template_keypoints(200, 200) + 100, 64)
    levelled = align_face(rotated, keypoints.astype(np.float32), 64)
    assert np.abs(straight.astype(int) - levelled.astype(int)).mean() < 8


def test_template_is_mirror_symmetric():
    mirrored = TEMPLATE.copy()
    mirrored[:, 0] = 1 - mirrored[:, 0]
    np.testing.assert_allclose(mirrored[[1, 0, 2, 3]], TEMPLATE, atol=1e-6)

"""Face alignment: the one preprocessing step shared by the runtime pipeline and model training.

A face is mapped by the least-squares similarity transform (rotation, uniform scale, shift) that
puts its eyes, nose tip and mouth onto `TEMPLATE`, the median keypoint layout BlazeFace finds on
UTKFace's aligned crops. Training crops UTKFace images through this same function with detected
keypoints, so training and inference framing cannot drift apart.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.vision.detections import LEFT_EYE, MOUTH, NOSE_TIP, RIGHT_EYE

FACE_SIZE = 64
ALIGN_KEYPOINTS = (RIGHT_EYE, LEFT_EYE, NOSE_TIP, MOUTH)
# Normalized to the crop (0..1), mirror-symmetric so that horizontal flips stay aligned. Measured
# with `python -m conversion.prepare --measure-template` (median over UTKFace, both detectors).
TEMPLATE = np.array([[0.296, 0.295], [0.704, 0.295], [0.5, 0.526], [0.5, 0.716]], np.float32)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 matrix of the similarity transform that maps points `src` (K, 2) onto `dst` in least
    squares (Umeyama without reflection)."""
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    s, d = src - src_mean, dst - dst_mean
    var = (s**2).sum()
    if var < 1e-12:
        raise ValueError("degenerate keypoints: all at one point")
    a = (s * d).sum() / var  # scale * cos
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum() / var  # scale * sin
    rotation = np.array([[a, -b], [b, a]], np.float64)
    shift = dst_mean - rotation @ src_mean
    return np.hstack([rotation, shift[:, None]])


def face_transform(
    keypoints: np.ndarray, size: int = FACE_SIZE, jitter: np.ndarray | None = None, context: float = 1.0
) -> np.ndarray:
    """Frame → crop transform for one face's (6, 2) BlazeFace keypoints.

    `jitter` (training augmentation) is (angle_degrees, log_scale, shift_x, shift_y), shifts as a
    fraction of the crop; it perturbs the template so augmentation stays in the aligned frame.
    `context` > 1 widens the view about the crop's centre by that factor (more hair, ears, chin)."""
    dst = ((TEMPLATE - 0.5) / context + 0.5) * size
    if jitter is not None:
        angle, log_scale, dx, dy = jitter
        centre = (size / 2, size / 2)
        perturb = cv2.getRotationMatrix2D(centre, float(angle), float(np.exp(log_scale)))
        dst = dst @ perturb[:, :2].T + perturb[:, 2] + np.array([dx, dy]) * size
    return similarity_transform(keypoints[list(ALIGN_KEYPOINTS)].astype(np.float64), dst)


def context_of(size: int) -> float:
    """How much wider than UTKFace's framing a model with a `size`-pixel input looks: the face
    itself always spans FACE_SIZE pixels of its framing, so a larger input sees more around it
    (hair, ears, chin), not the same face in more pixels."""
    return size / FACE_SIZE


def template_keypoints(width: int, height: int) -> np.ndarray:
    """Keypoints of a face that fills an image the way UTKFace's aligned crops do (`--assume-face`)."""
    keypoints = np.zeros((6, 2), np.float32)
    keypoints[list(ALIGN_KEYPOINTS)] = TEMPLATE * np.array([width, height], np.float32)
    return keypoints


def align_face(
    image: np.ndarray,
    keypoints: np.ndarray,
    size: int = FACE_SIZE,
    jitter: np.ndarray | None = None,
    context: float = 1.0,
) -> np.ndarray:
    """The aligned `size`×`size` BGR crop of the face with these keypoints."""
    return warp_to_crop(image, face_transform(keypoints, size, jitter, context), size)


def warp_to_crop(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The `size`×`size` crop that the frame → crop affine `matrix` (2x3, a similarity) maps
    `image` to, the frame's edge pixels repeated beyond it."""
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    source = image
    if scale < 0.5:
        # Bilinear warping alone aliases when shrinking; shrink the crop's region with area
        # averaging first, so large (close) faces look like the small ones.
        inverse = cv2.invertAffineTransform(matrix)
        corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64) @ inverse.T
        h, w = image.shape[:2]
        x0, y0 = np.clip(np.floor(corners.min(0)).astype(int), 0, [w - 1, h - 1])
        x1, y1 = np.clip(np.ceil(corners.max(0)).astype(int) + 1, 1, [w, h])
        shrink = 2 * scale
        region = image[y0:y1, x0:x1]
        rw, rh = max(1, round(region.shape[1] * shrink)), max(1, round(region.shape[0] * shrink))
        source = cv2.resize(region, (rw, rh), interpolation=cv2.INTER_AREA)
        fx, fy = rw / region.shape[1], rh / region.shape[0]
        to_region = np.array([[fx, 0, -x0 * fx], [0, fy, -y0 * fy], [0, 0, 1]], np.float64)
        matrix = matrix @ np.linalg.inv(to_region)
    return cv2.warpAffine(source, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

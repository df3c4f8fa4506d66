"""Synthetic corruptions of an aligned face crop: occlusion (masks, sunglasses), light, blur,
compression, small faces, turned heads, and detector keypoint error. Each is a pure function of
(crop, rng), drawn at the alignment template's keypoints (keypoint jitter acts on the keypoints
before alignment). Training augments with them (`conversion.augment`) and
`conversion.robustness` measures the model under them."""

from __future__ import annotations

import cv2
import numpy as np

from edge.vision.align import ALIGN_KEYPOINTS, TEMPLATE, template_keypoints
from edge.vision.detections import LEFT_EYE, MOUTH, NOSE_TIP, RIGHT_EYE

SHIFT = 4  # fixed-point bits for sub-pixel, anti-aliased drawing
EYE_DISTANCE = float(TEMPLATE[1, 0] - TEMPLATE[0, 0])  # fraction of the crop


def _points(crop: np.ndarray) -> dict[str, np.ndarray]:
    """Template keypoints of an aligned crop, and the eye distance, in its pixels."""
    size = crop.shape[1]
    kp = template_keypoints(size, size)
    return {"right_eye": kp[RIGHT_EYE], "left_eye": kp[LEFT_EYE], "nose": kp[NOSE_TIP], "mouth": kp[MOUTH]}


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points) * (1 << SHIFT)).astype(np.int32)


def surgical_mask(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A light-blue or white mask from the nose tip to the chin, with pleats and ear loops."""
    p = _points(crop)
    size = crop.shape[1]
    d = EYE_DISTANCE * size
    nose, mouth = p["nose"], p["mouth"]
    cx, top = nose[0], nose[1] - 0.05 * d * rng.uniform(0, 1)
    chin = mouth[1] + 1.2 * (mouth[1] - nose[1])
    half = 0.85 * d * rng.uniform(0.95, 1.05)  # half-width at the cheeks
    outline = np.array(
        [
            (cx - 0.6 * half, top + 0.05 * d),
            (cx, top),
            (cx + 0.6 * half, top + 0.05 * d),
            (cx + half, mouth[1] - 0.1 * d),
            (cx + 0.7 * half, chin - 0.1 * d),
            (cx, chin + 0.05 * d),
            (cx - 0.7 * half, chin - 0.1 * d),
            (cx - half, mouth[1] - 0.1 * d),
        ]
    )
    colour = (235, 205, 160) if rng.random() < 0.6 else (235, 235, 235)  # BGR light blue / white
    light = rng.uniform(0.85, 1.05)
    colour = tuple(float(c * light) for c in colour)
    out = crop.copy()
    cv2.fillPoly(out, [_fixed(outline)], colour, cv2.LINE_AA, SHIFT)
    shade = tuple(0.8 * c for c in colour)
    for k in (0.3, 0.5, 0.7):  # pleats
        y = top + k * (chin - top)
        cv2.line(out, _fixed((cx - 0.8 * half, y)), _fixed((cx + 0.8 * half, y)), shade, 1, cv2.LINE_AA, SHIFT)
    for side in (-1, 1):  # ear loops
        start = (cx + side * half, mouth[1] - 0.1 * d)
        cv2.line(out, _fixed(start), _fixed((cx + side * 1.45 * d, nose[1] - 0.3 * d)), colour, 1, cv2.LINE_AA, SHIFT)
    return out


def sunglasses(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dark elliptical lenses over both eyes and a bridge between them."""
    p = _points(crop)
    d = EYE_DISTANCE * crop.shape[1]
    axes = _fixed((0.4 * d * rng.uniform(0.9, 1.1), 0.28 * d * rng.uniform(0.9, 1.1)))
    colour = (float(rng.uniform(10, 40)),) * 3
    out = crop.copy()
    for eye in (p["right_eye"], p["left_eye"]):
        cv2.ellipse(out, _fixed(eye), tuple(axes), 0, 0, 360, colour, -1, cv2.LINE_AA, SHIFT)
    thickness = max(1, round(0.04 * d))
    cv2.line(out, _fixed(p["right_eye"]), _fixed(p["left_eye"]), colour, thickness, cv2.LINE_AA, SHIFT)
    return out


def low_light(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dark exposure (gamma 1.6-2.2, gain 0.35-0.6) with sensor noise (Gaussian, sigma 4-7)."""
    linear = (crop.astype(np.float32) / 255) ** rng.uniform(1.6, 2.2) * rng.uniform(0.35, 0.6) * 255
    noisy = linear + rng.normal(0, rng.uniform(4, 7), crop.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def motion_blur(crop: np.ndarray, rng: np.random.Generator, fraction: float = 0.11) -> np.ndarray:
    """Linear motion blur over `fraction` of the crop width (a walking face at about 1/100 s), any direction."""
    length = max(3, round(fraction * crop.shape[1]))
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2] = 1
    rotation = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), float(rng.uniform(0, 180)), 1.0)
    kernel = cv2.warpAffine(kernel, rotation, (length, length))
    return cv2.filter2D(crop, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REPLICATE)


def defocus_blur(crop: np.ndarray, rng: np.random.Generator, fraction: float = 0.04) -> np.ndarray:
    """Defocus: a disk of radius `fraction` of the crop width (about 2.5 px at 64 px)."""
    radius = fraction * crop.shape[1] * rng.uniform(0.9, 1.1)
    r = int(np.ceil(radius))
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    kernel = np.clip(radius + 0.5 - np.hypot(x, y), 0, 1).astype(np.float32)
    return cv2.filter2D(crop, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REPLICATE)


def jpeg(crop: np.ndarray, rng: np.random.Generator, quality: int = 20) -> np.ndarray:
    """JPEG at `quality`, at the crop's own resolution (a face this size in a compressed frame)."""
    _, data = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def small_face(crop: np.ndarray, rng: np.random.Generator, pixels: int = 32) -> np.ndarray:
    """The face seen `pixels` wide, upsampled to the crop size (as `conversion.evaluate` does)."""
    return low_resolution(crop, pixels)


def turned_head(crop: np.ndarray, rng: np.random.Generator, yaw: float = 30.0) -> np.ndarray:
    """Profile-ish approximation: the frontal face mapped onto a vertical cylinder (radius 0.5 of
    the crop) and turned by `yaw` degrees, either way: one half is squeezed, the other stretched.
    A frontal photo warped, not a real turned head: no self-occlusion of the far cheek, the nose
    keeps its frontal shape, and the keypoints stay where alignment put them."""
    size = crop.shape[1]
    radius = 0.5 * size
    angle = np.radians(yaw) * (1 if rng.random() < 0.5 else -1)
    u = (np.arange(size, dtype=np.float32) + 0.5 - size / 2) / radius  # output column, on the cylinder
    phi = np.arcsin(np.clip(u, -1, 1)) - angle
    # Beyond the turned face's silhouette the crop's own background and hair stay where they were.
    source_x = np.where(np.abs(phi) < np.pi / 2, np.sin(phi) * radius + size / 2 - 0.5, u * radius + size / 2 - 0.5)
    map_x = np.repeat(source_x[None].astype(np.float32), crop.shape[0], axis=0)
    map_y = np.repeat(np.arange(crop.shape[0], dtype=np.float32)[:, None], size, axis=1)
    return cv2.remap(crop, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def jitter_keypoints(
    keypoints: np.ndarray, rng: np.random.Generator, shift: float = 0.05, angle: float = 10.0, scale: float = 0.05
) -> np.ndarray:
    """Keypoints moved together as a detector's error would move them: rotated by up to ±`angle`
    degrees, scaled by up to ±`scale` and shifted by up to ±`shift` eye distances per axis."""
    eyes = keypoints[[RIGHT_EYE, LEFT_EYE]].astype(np.float64)
    d = float(np.hypot(*(eyes[1] - eyes[0])))
    centre = keypoints[list(ALIGN_KEYPOINTS)].astype(np.float64).mean(0)
    turn, zoom = float(rng.uniform(-angle, angle)), float(np.exp(rng.uniform(-scale, scale)))
    matrix = cv2.getRotationMatrix2D(tuple(centre), turn, zoom)
    moved = keypoints @ matrix[:, :2].T + matrix[:, 2] + rng.uniform(-shift, shift, 2) * d
    return moved.astype(keypoints.dtype)


def low_resolution(crop: np.ndarray, pixels: int) -> np.ndarray:
    """Evaluation: the crop as if the face had been `pixels` wide, upsampled to the model input."""
    size = crop.shape[0]
    small = cv2.resize(crop, (pixels, pixels), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)

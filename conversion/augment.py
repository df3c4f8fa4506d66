"""Training-time augmentation, applied to faces through the runtime's own `align_face`."""

from __future__ import annotations

import cv2
import numpy as np

from edge.vision.align import align_face


def augmented_crop(image: np.ndarray, keypoints: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """One aligned crop with geometric jitter, flip, colour, blur, CCTV-like low resolution and JPEG."""
    jitter = np.array([rng.uniform(-12, 12), rng.normal(0, 0.08), rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05)])
    crop = align_face(image, keypoints, size, jitter)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    crop = crop.astype(np.float32)
    # Colour: brightness, contrast, per-channel gain (white balance), sometimes grey.
    crop = (crop - crop.mean()) * rng.uniform(0.6, 1.4) + crop.mean() + rng.uniform(-40, 40)
    crop *= rng.uniform(0.85, 1.15, size=3)
    if rng.random() < 0.1:
        crop[:] = crop.mean(axis=2, keepdims=True)
    crop = np.clip(crop, 0, 255).astype(np.uint8)
    if rng.random() < 0.35:
        # A face seen at 14..40 px, upsampled back: what a CCTV camera's far faces look like.
        low = int(rng.integers(14, 41))
        small = cv2.resize(crop, (low, low), interpolation=cv2.INTER_AREA)
        crop = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
    elif rng.random() < 0.2:
        crop = cv2.GaussianBlur(crop, (0, 0), rng.uniform(0.5, 1.3))
    if rng.random() < 0.3:
        _, jpeg = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 90))])
        crop = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
    return crop


def low_resolution(crop: np.ndarray, pixels: int) -> np.ndarray:
    """Evaluation: the crop as if the face had been `pixels` wide, upsampled to the model input."""
    size = crop.shape[0]
    small = cv2.resize(crop, (pixels, pixels), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)

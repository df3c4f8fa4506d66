"""Training-time augmentation, applied to faces through the runtime's own `align_face`."""

from __future__ import annotations

import cv2
import numpy as np

from conversion.corrupt import low_light, motion_blur, sunglasses, surgical_mask, turned_head
from edge.vision.align import align_face

# `robust`: what detector crops of real faces show and UTKFace's studio-like photos rarely do; each
# share of crops (times `robust`, a multiplier) gets that corruption, drawn independently. Shares
# are kept small so the clean faces still dominate training. Trained from scratch with them, the
# network lost clean gender accuracy (runs 5 and 6 in the model card), so the shipped model uses
# them only in a short second stage from the clean network's weights (run 7, conversion.pipeline).
TURNED = 0.15  # a cylinder-warped head turn of 10-45 degrees
MASKED = 0.10
SUNGLASSES = 0.06
DARK = 0.10  # low light with sensor noise
MOTION = 0.08


def augmented_crop(
    image: np.ndarray,
    keypoints: np.ndarray,
    size: int,
    rng: np.random.Generator,
    robust: float = 0.0,
    context: float = 1.0,
) -> np.ndarray:
    """One aligned crop with geometric jitter, flip, colour, blur, CCTV-like low resolution and JPEG;
    `robust` > 0 adds turned heads, masks, sunglasses, low light and motion blur, at `robust` times
    the shares above."""
    # The geometric jitter (sd ~7 degrees, 8 % scale, ±5 % shift) is several times BlazeFace's own
    # keypoint noise (1.3 degrees, 2 %, 2 % of the eye distance: conversion/robustness.py).
    jitter = np.array([rng.uniform(-12, 12), rng.normal(0, 0.08), rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05)])
    crop = align_face(image, keypoints, size, jitter, context)
    if robust:
        # Masks and sunglasses are drawn on the face's own framing: the crop's centre when it has
        # `context` around the face.
        inner = round(size / context)
        at = (size - inner) // 2
        face = crop[at : at + inner, at : at + inner]
        if rng.random() < MASKED * robust:
            face[:] = surgical_mask(face, rng)
        elif rng.random() < SUNGLASSES * robust:
            face[:] = sunglasses(face, rng)
        # After the occlusion, which turns with the head.
        if rng.random() < TURNED * robust:
            crop = turned_head(crop, rng, yaw=float(rng.uniform(10, 45)))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    crop = crop.astype(np.float32)
    # Colour: brightness, contrast, per-channel gain (white balance), sometimes grey.
    crop = (crop - crop.mean()) * rng.uniform(0.6, 1.4) + crop.mean() + rng.uniform(-40, 40)
    crop *= rng.uniform(0.85, 1.15, size=3)
    if rng.random() < 0.1:
        crop[:] = crop.mean(axis=2, keepdims=True)
    crop = np.clip(crop, 0, 255).astype(np.uint8)
    if robust and rng.random() < DARK * robust:
        crop = low_light(crop, rng)
    if rng.random() < 0.35:
        # A face seen at 14..40 px, upsampled back: what a CCTV camera's far faces look like.
        low = round(int(rng.integers(14, 41)) * context)
        small = cv2.resize(crop, (low, low), interpolation=cv2.INTER_AREA)
        crop = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
    elif rng.random() < 0.2:
        crop = cv2.GaussianBlur(crop, (0, 0), rng.uniform(0.5, 1.3))
    elif robust and rng.random() < MOTION * robust:
        crop = motion_blur(crop, rng, fraction=float(rng.uniform(0.04, 0.11)))
    if rng.random() < 0.3:
        _, jpeg = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 90))])
        crop = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
    return crop

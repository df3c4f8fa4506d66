"""Face or not: our own small classifier, the last part of a candidate face's second look.

BlazeFace scores a candidate by how face-like its texture is at one framing; on real photos hands,
letters, jacket buttons and helmets reach the same scores as turned, blurred or small real faces
(bench/real_faces.py), and re-scoring the candidate in other crops cannot tell them apart. A
classifier trained for exactly that question can: positives are real faces as the detector frames
them, negatives the detector's own false candidates on real photos and parts of faces
(`python -m conversion.faceness`, models/tflite/FACENESS_CARD.md).
"""

from __future__ import annotations

import numpy as np

from edge.vision.align import warp_to_crop
from edge.vision.model_files import FACENESS_MODEL, model_path
from edge.vision.runtime import TFLiteModel

# The crop the classifier sees: the box's longer side times this, centred on the box. Little
# margin: UTKFace's training faces fill their images, so more would show only padding there.
CROP_MARGIN = 1.05
CROP_SIZE = 40


def face_crop(image: np.ndarray, box: np.ndarray, size: int = CROP_SIZE, margin: float = CROP_MARGIN) -> np.ndarray:
    """The square `size`×`size` BGR crop centred on `box` (x1, y1, x2, y2), its side `margin` times
    the box's longer side, warped as aligned faces are (`warp_to_crop`). Training crops through
    this same function."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1, 1.0) * margin
    left, top = (x1 + x2 - side) / 2, (y1 + y2 - side) / 2
    scale = size / side
    return warp_to_crop(image, np.array([[scale, 0, -left * scale], [0, scale, -top * scale]], np.float64), size)


class Faceness:
    """p(face) for candidate boxes in a frame (the shipped float TFLite model, ~70k parameters):
    the mean over the crop and its mirror image, which a face and its mirror share and a texture
    often does not (a model of the space shuttle scores 0.93 one way, 0.05 the other)."""

    def __init__(self, num_threads: int = 1) -> None:
        self.net = TFLiteModel(model_path(FACENESS_MODEL), num_threads=num_threads)
        self.size = self.net.input_shape[1]

    def __call__(self, image: np.ndarray, box: np.ndarray) -> float:
        crop = face_crop(image, box, self.size).astype(np.float32)
        looks = [self.net(self.net.quantize_input(c[None]))[0] for c in (crop, crop[:, ::-1])]
        return float(np.mean(looks))

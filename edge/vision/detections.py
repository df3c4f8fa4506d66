"""The one value passed between pipeline stages: a set of face detections in frame pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# BlazeFace keypoint order; "right" is the subject's right, which appears on the image's left.
RIGHT_EYE, LEFT_EYE, NOSE_TIP, MOUTH, RIGHT_EAR, LEFT_EAR = range(6)
NUM_KEYPOINTS = 6
# The keypoint order of a mirrored face: right and left swap.
MIRRORED_KEYPOINTS = [LEFT_EYE, RIGHT_EYE, NOSE_TIP, MOUTH, LEFT_EAR, RIGHT_EAR]
Window = tuple[int, int, int, int]  # a part of a frame: x, y, width, height in pixels


@dataclass(frozen=True)
class Detections:
    """N faces: `boxes` (N, 4) as x1, y1, x2, y2; `scores` (N,); `keypoints` (N, 6, 2) as x, y."""

    boxes: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            np.zeros((0, 4), np.float32),
            np.zeros((0,), np.float32),
            np.zeros((0, NUM_KEYPOINTS, 2), np.float32),
        )

    @classmethod
    def concatenate(cls, parts: list[Detections]) -> Detections:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.boxes for p in parts]),
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.keypoints for p in parts]),
        )

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, index: np.ndarray | slice | list[int]) -> Detections:
        return Detections(self.boxes[index], self.scores[index], self.keypoints[index])

    @property
    def widths(self) -> np.ndarray:
        return self.boxes[:, 2] - self.boxes[:, 0]

    @property
    def areas(self) -> np.ndarray:
        return self.widths * (self.boxes[:, 3] - self.boxes[:, 1])

    def largest_first(self) -> Detections:
        return self[np.argsort(-self.areas, kind="stable")]

    def transformed(self, scale: float, offset_x: float, offset_y: float) -> Detections:
        """Map coordinates by p' = p * scale + offset (e.g. from a tile or a letterbox back to the frame)."""
        offset = np.array([offset_x, offset_y], np.float32)
        boxes = self.boxes * scale + np.tile(offset, 2)
        return Detections(boxes.astype(np.float32), self.scores, (self.keypoints * scale + offset).astype(np.float32))


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes (N, 4) and (M, 4) given as x1, y1, x2, y2."""
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def containment(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """For each of `boxes`, the fraction of its area inside `box`."""
    tl = np.maximum(box[:2], boxes[:, :2])
    br = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=1)
    return inter / np.maximum(np.prod(boxes[:, 2:] - boxes[:, :2], axis=1), 1e-9)

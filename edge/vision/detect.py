"""BlazeFace face detection: letterbox, SSD anchor decoding, weighted NMS, and tiling for large frames.

Decoding follows MediaPipe's face_detection graphs (SsdAnchorsCalculator with fixed anchor size,
TensorsToDetectionsCalculator with reversed x/y output order, weighted NonMaxSuppression).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from edge.vision.detections import NUM_KEYPOINTS, Detections, containment, iou_matrix
from edge.vision.model_files import model_path
from edge.vision.runtime import TFLiteModel

# MediaPipe clips raw scores at ±100 before the sigmoid; 80 keeps float32 exp() finite.
_RAW_SCORE_LIMIT = 80.0


@dataclass(frozen=True)
class DetectorSpec:
    file: str
    input_size: int
    strides: tuple[int, ...]
    extra_interpolated_anchor: bool
    default_score_threshold: float


# MediaPipe's graphs use 0.6 (full) and 0.5 (short); 0.5 for both finds many more small faces at no
# measurable cost in false detections (bench/detection_recall.py), and the tracker's confirmation
# step removes one-frame false detections in video.
DETECTORS = {
    "full": DetectorSpec("face_detection_full_range_sparse.tflite", 192, (4,), False, 0.5),
    "short": DetectorSpec("face_detection_short_range.tflite", 128, (8, 16, 16, 16), True, 0.5),
}
# Both models find ≥ 98 % of faces at least this wide in their input (measured on UTKFace faces).
RELIABLE_FACE_AT_INPUT = 32
Window = tuple[int, int, int, int]  # x, y, width, height in frame pixels


def ssd_anchor_centers(input_size: int, strides: tuple[int, ...], extra_interpolated_anchor: bool) -> np.ndarray:
    """Anchor centres (A, 2) in normalized x, y; layers sharing a stride share one grid."""
    centers = []
    layer = 0
    while layer < len(strides):
        same = layer
        per_cell = 0
        while same < len(strides) and strides[same] == strides[layer]:
            per_cell += 2 if extra_interpolated_anchor else 1
            same += 1
        grid = math.ceil(input_size / strides[layer])
        ys, xs = np.meshgrid((np.arange(grid) + 0.5) / grid, (np.arange(grid) + 0.5) / grid, indexing="ij")
        cell = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centers.append(np.repeat(cell, per_cell, axis=0))
        layer = same
    return np.concatenate(centers).astype(np.float32)


def decode_boxes(
    raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, input_size: int, score_threshold: float
) -> Detections:
    """Raw model outputs (A, 16) and (A,) to detections in normalized [0, 1] input coordinates."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores, -_RAW_SCORE_LIMIT, _RAW_SCORE_LIMIT)))
    keep = scores >= score_threshold
    if not keep.any():
        return Detections.empty()
    raw = raw_boxes[keep] / input_size
    centers = anchors[keep]
    cxcy = raw[:, 0:2] + centers
    half = raw[:, 2:4] / 2
    boxes = np.concatenate([cxcy - half, cxcy + half], axis=1)
    keypoints = raw[:, 4 : 4 + 2 * NUM_KEYPOINTS].reshape(-1, NUM_KEYPOINTS, 2) + centers[:, None, :]
    return Detections(boxes.astype(np.float32), scores[keep].astype(np.float32), keypoints.astype(np.float32))


def weighted_nms(detections: Detections, iou_threshold: float = 0.3, contained: float = 0.7) -> Detections:
    """MediaPipe's weighted NMS: each cluster around the best remaining box is replaced by the
    score-weighted mean of its boxes and keypoints, keeping the best score. Boxes lying mostly
    (`contained`) inside a better one are dropped without averaging: a part of a face (seen in a
    window, or half hidden) is not another face, and faces do not sit inside faces."""
    if len(detections) == 0:
        return detections
    order = np.argsort(-detections.scores, kind="stable")
    remaining = detections[order]
    boxes, scores, keypoints = [], [], []
    while len(remaining):
        overlap = iou_matrix(remaining.boxes[:1], remaining.boxes)[0]
        cluster = overlap > iou_threshold
        cluster[0] = True
        inside = containment(remaining.boxes[0], remaining.boxes) > contained
        inside[0] = False
        inside &= ~cluster
        weights = remaining.scores[cluster][:, None]
        total = weights.sum()
        boxes.append((remaining.boxes[cluster] * weights).sum(0) / total)
        keypoints.append((remaining.keypoints[cluster] * weights[:, :, None]).sum(0) / total)
        scores.append(remaining.scores[0])
        remaining = remaining[~(cluster | inside)]
    return Detections(np.asarray(boxes, np.float32), np.asarray(scores, np.float32), np.asarray(keypoints, np.float32))


def tile_windows(width: int, height: int, tile: int, overlap: float) -> list[Window]:
    """Windows of side `tile` (cut to the frame) covering it, neighbours sharing at least `overlap`."""

    def starts(length: int) -> list[int]:
        if tile >= length:
            return [0]
        step = tile * (1 - overlap)
        count = math.ceil((length - tile) / step) + 1
        return [round(i * (length - tile) / (count - 1)) for i in range(count)]

    return [(x, y, min(tile, width), min(tile, height)) for y in starts(height) for x in starts(width)]


def pyramid_windows(width: int, height: int, min_face_px: float, reliable_fraction: float) -> list[Window]:
    """Windows, smallest level first, in which every face from `min_face_px` up to what the whole
    frame shows reliably lies entirely inside a window where it spans at least `reliable_fraction`
    of the side. Each level doubles the side, so it covers faces of 1x..2x its smallest; windows
    overlap by that largest face (a third of the side when the fraction is 1/6)."""
    windows: list[Window] = []
    side = min_face_px / reliable_fraction
    while side < max(width, height):
        windows += tile_windows(width, height, round(side), overlap=min(2 * reliable_fraction, 0.5))
        side *= 2
    return windows


def drop_cut_faces(found: Detections, window: Window, width: int, height: int, margin: float = 2.0) -> Detections:
    """Drop detections touching a window edge that lies inside the frame: such a face is cut, and
    the overlap guarantees a neighbouring window holds it whole."""
    x, y, w, h = window
    b = found.boxes
    cut = np.zeros(len(found), bool)
    if x > 0:
        cut |= b[:, 0] <= x + margin
    if y > 0:
        cut |= b[:, 1] <= y + margin
    if x + w < width:
        cut |= b[:, 2] >= x + w - margin
    if y + h < height:
        cut |= b[:, 3] >= y + h - margin
    return found[~cut]


class BlazeFace:
    """One BlazeFace model: letterboxes an image into its input and decodes its faces."""

    def __init__(self, name: str, score_threshold: float | None, num_threads: int) -> None:
        if name not in DETECTORS:
            raise ValueError(f"unknown detector model {name!r}: choose one of {', '.join(DETECTORS)}")
        self.spec = DETECTORS[name]
        self.score_threshold = self.spec.default_score_threshold if score_threshold is None else score_threshold
        self.reliable_fraction = RELIABLE_FACE_AT_INPUT / self.spec.input_size
        self.net = TFLiteModel(model_path(self.spec.file), num_threads=num_threads)
        self.anchors = ssd_anchor_centers(self.spec.input_size, self.spec.strides, self.spec.extra_interpolated_anchor)
        shapes = self.net.output_shapes
        self._box_output = next(i for i, s in enumerate(shapes) if s[-1] == 16)
        self._score_output = 1 - self._box_output
        if shapes[self._box_output][1] != len(self.anchors):
            raise RuntimeError(f"{self.spec.file}: expected {len(self.anchors)} anchors, model has {shapes}")

    def __call__(self, image: np.ndarray) -> Detections:
        """Faces in `image` (letterboxed into the model input), in `image` pixels."""
        size = self.spec.input_size
        h, w = image.shape[:2]
        scale = size / max(h, w)
        rw, rh = max(1, round(w * scale)), max(1, round(h * scale))
        resized = shrink(image, rw, rh)
        pad_x, pad_y = (size - rw) // 2, (size - rh) // 2
        canvas = np.zeros((size, size, 3), np.uint8)
        canvas[pad_y : pad_y + rh, pad_x : pad_x + rw] = resized
        rgb = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)
        tensor = (rgb.astype(np.float32) / 127.5 - 1.0)[None]
        outputs = self.net(tensor)
        found = decode_boxes(
            outputs[self._box_output][0],
            outputs[self._score_output][0, :, 0],
            self.anchors,
            size,
            self.score_threshold,
        )
        # Normalized letterbox coordinates back to image pixels.
        return found.transformed(size / scale, -pad_x / scale, -pad_y / scale)


class FaceDetector:
    """BlazeFace on a whole frame plus square windows of it, merged by weighted NMS.

    Called on a still image, it searches the whole window pyramid (see `pyramid_windows`), so faces
    down to `min_face_px` wide are found however large the frame. On video, `detect_stream` looks
    at a few windows per frame instead.

    The short-range model is not used for zoom windows although it is 3x cheaper: on generated
    clips it lost fully visible faces for seconds that full-range kept (bench/counting.py)."""

    def __init__(
        self,
        model: str = "full",
        score_threshold: float | None = None,
        nms_threshold: float = 0.3,
        num_threads: int = 1,
        min_face_px: int = 40,
        tiles: bool = True,
    ) -> None:
        self.model = BlazeFace(model, score_threshold, num_threads)
        self.nms_threshold = nms_threshold
        self.min_face_px = min_face_px
        self.tiles = tiles
        self._pyramids: dict[tuple[int, int], list[Window]] = {}

    def windows(self, width: int, height: int) -> list[Window]:
        """The window pyramid for this frame size (empty when tiling is off)."""
        if not self.tiles:
            return []
        if (width, height) not in self._pyramids:
            fraction = self.model.reliable_fraction
            self._pyramids[width, height] = pyramid_windows(width, height, self.min_face_px, fraction)
        return self._pyramids[width, height]

    def reliable_in_frame(self, width: int, height: int) -> float:
        """Face width the whole-frame pass alone finds reliably."""
        return max(width, height) * self.model.reliable_fraction

    def zoom_window(self, box: np.ndarray, width: int, height: int) -> Window | None:
        """A window around a (tracked) face too small for the whole-frame pass, sized so the face
        spans 1.5x the reliable fraction of it; None if the face needs no zoom."""
        face = float(max(box[2] - box[0], box[3] - box[1]))
        if face >= self.reliable_in_frame(width, height) or not self.tiles:
            return None
        side = min(round(face / (1.5 * self.model.reliable_fraction)), width, height)
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        x = int(np.clip(round(cx - side / 2), 0, width - side))
        y = int(np.clip(round(cy - side / 2), 0, height - side))
        return x, y, side, side

    def _detect_windows(self, image: np.ndarray, whole: Detections, windows: list[Window]) -> Detections:
        h, w = image.shape[:2]
        found = [whole]
        for window in windows:
            x, y, tw, th = window
            in_window = self.model(image[y : y + th, x : x + tw]).transformed(1.0, x, y)
            found.append(drop_cut_faces(in_window, window, w, h))
        merged = weighted_nms(Detections.concatenate(found), self.nms_threshold)
        return _clip_to_frame(merged, w, h).largest_first()

    def __call__(self, image: np.ndarray) -> Detections:
        """Faces in a BGR image, in pixels, largest first: the whole image and its window pyramid."""
        h, w = image.shape[:2]
        return self._detect_windows(image, self.model(image), self.windows(w, h))

    def detect_stream(self, image: np.ndarray, index: int, tracked: np.ndarray, zoom: np.ndarray) -> Detections:
        """Faces in frame `index` of a video, given the boxes (N, 4) of faces being tracked and
        whether each may get a zoom window this frame.

        Besides the whole frame: one window of the pyramid in turn, so new small faces are found
        within one cycle (14 frames at 640x480); and a zoom window around each tracked face that
        the whole-frame pass missed and is too small for it, so small faces stay tracked. (Visiting
        the pyramid only every other frame saves 15 % but swapped more identities on generated
        clips, bench/counting.py.)"""
        h, w = image.shape[:2]
        whole = self.model(image)
        pyramid = self.windows(w, h)
        windows = [pyramid[index % len(pyramid)]] if pyramid else []
        if len(tracked):
            seen = iou_matrix(tracked, whole.boxes).max(axis=1) if len(whole) else np.zeros(len(tracked))
            for box in tracked[(seen < 0.3) & zoom]:
                zoom = self.zoom_window(box, w, h)
                if zoom is not None:
                    windows.append(zoom)
        return self._detect_windows(image, whole, windows)


def shrink(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize to (width, height) without aliasing: Gaussian halvings while more than 2x too big,
    then one bilinear step. OpenCV's area resize does the same job but costs ~20x more at
    non-integer ratios, and this runs on every frame."""
    while image.shape[1] >= 2 * width and image.shape[0] >= 2 * height:
        image = cv2.pyrDown(image)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def _clip_to_frame(detections: Detections, width: int, height: int) -> Detections:
    boxes = detections.boxes.copy()
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, width)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, height)
    keep = (boxes[:, 2] - boxes[:, 0] > 1) & (boxes[:, 3] - boxes[:, 1] > 1)
    return Detections(boxes, detections.scores, detections.keypoints)[keep]

"""BlazeFace face detection: letterbox, SSD anchor decoding, weighted NMS, and tiling for large frames.

Decoding follows MediaPipe's face_detection graphs (SsdAnchorsCalculator with fixed anchor size,
TensorsToDetectionsCalculator with reversed x/y output order, weighted NonMaxSuppression).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from edge.vision.config import VisionConfig
from edge.vision.detections import MIRRORED_KEYPOINTS, NUM_KEYPOINTS, Detections, Window, containment, iou_matrix
from edge.vision.faceness import Faceness
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
# Video: the short-range pass for close-ups runs every this many frames, and every frame while a
# tracked face is at least LARGE_FACE of the frame's width (the full-range model starts missing
# faces above ~60 % of the width, bench/closeups.py).
CLOSE_UP_EVERY = 4
LARGE_FACE = 0.35
# The close-up pass keeps faces at least this share of the frame's longer side.
CLOSE_UP = 0.2
# With the second look on, candidates start this low: it rejects what the lower bar lets in, and
# faces scoring 0.3-0.5 are found (bench/real_faces.py).
CANDIDATE_SCORE = 0.3
# A second look scores every face the model sees in the crop down to this, and takes the best one
# overlapping the candidate this much.
VERIFY_FLOOR = 0.05
VERIFY_IOU = 0.4
# Video: a candidate that failed its second look is not looked at again for this many frames.
REMEMBER_REJECTED = 12
# Video with motion gating: one pass over the window pyramid in this many visits every window in
# turn, moving or not (the others go where something new moved), so a face that came in and
# stopped is still found.
STILL_PASS_EVERY = 4


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


def pyramid_window(
    pyramid: list[Window], index: int, moving: Callable[[Window], bool] | None, stride: int = 1
) -> Window | None:
    """The window of the pyramid that video frame `index` searches for new faces. In turn; or,
    given `moving` (whether a window holds motion that no followed face explains), in turn among
    the windows where someone new may be, none if there are none, except on every
    `STILL_PASS_EVERY`-th pass, which visits them all so a face that came in and stopped is found;
    and then only every `stride`-th frame. Looking where the motion is finds a newcomer within a
    frame or two, which matters most on a board that analyses only a few frames a second
    (bench/counting.py --every)."""
    if not pyramid:
        return None
    if moving is None or (index // len(pyramid)) % STILL_PASS_EVERY == 0:
        return pyramid[index % len(pyramid)]
    if index % stride:
        return None
    news = [window for window in pyramid if moving(window)]
    return news[index // stride % len(news)] if news else None


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

    def __call__(self, image: np.ndarray, score_threshold: float | None = None) -> Detections:
        """Faces in `image` (letterboxed into the model input), in `image` pixels; scoring at least
        `score_threshold` (default: the model's)."""
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
            self.score_threshold if score_threshold is None else score_threshold,
        )
        # Normalized letterbox coordinates back to image pixels.
        return found.transformed(size / scale, -pad_x / scale, -pad_y / scale)


class FaceDetector:
    """Faces in frames: candidates from BlazeFace on the whole frame, on square windows of it and
    (for close-ups) from the short-range model, merged by weighted NMS, then each new candidate
    verified by a second look.

    Called on a still image, it searches the whole window pyramid (see `pyramid_windows`), so faces
    down to `min_face_px` wide are found however large the frame. On video, `detect_stream` looks
    at a few windows per frame instead.

    Close-ups: the full-range model misses faces filling most of the frame (a counter, a kiosk, a
    doorway camera mounted low), which the short-range model finds; stills always get both, video
    gets the short-range pass every `CLOSE_UP_EVERY` frames and every frame while a large face is
    tracked. The short-range model is not used for zoom windows although it is 3x cheaper: on
    generated clips it lost fully visible faces for seconds that full-range kept (bench/counting.py).

    Verification (`verify` > 0): each candidate not already tracked is looked at again by our
    face-or-not classifier (`Faceness`) and, centred in a crop three times its width, by the
    full-range model and, in one twice its width, by the short-range model; it stays a face if the
    mean of its score, p(face) and the two crops' scores reaches `verify` (`_looks_like_a_face`)."""

    def __init__(
        self,
        model: str = "full",
        score_threshold: float | None = None,
        nms_threshold: float = 0.3,
        num_threads: int = 1,
        min_face_px: int = 40,
        tiles: bool = True,
        verify: float = 0.0,
    ) -> None:
        if score_threshold is None and verify > 0:
            score_threshold = CANDIDATE_SCORE
        self.model = BlazeFace(model, score_threshold, num_threads)
        other = "short" if model == "full" else "full"
        # The second model: close-ups (when `model` is full-range) and the second look.
        self.other = BlazeFace(other, score_threshold, num_threads)
        self.near = self.other if model == "full" else None
        self.verify_threshold = verify
        self.faceness = Faceness(num_threads) if verify > 0 else None
        self.nms_threshold = nms_threshold
        self.min_face_px = min_face_px
        self.tiles = tiles
        self._pyramids: dict[tuple[int, int], list[Window]] = {}

    @classmethod
    def configured(cls, c: VisionConfig) -> FaceDetector:
        """The detector as `[vision]` settings (the pipeline's and `aicctv analyze`'s) make it."""
        return cls(
            c.detector,
            score_threshold=c.score,
            num_threads=c.threads,
            min_face_px=c.min_face,
            tiles=c.tiles,
            verify=c.verify,
        )

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

    def _detect_windows(
        self,
        image: np.ndarray,
        found: list[Detections],
        windows: list[Window],
        known: np.ndarray,
        stream: tuple[int, list[tuple[list[float], int]]] | None = None,
    ) -> Detections:
        """Merge `found` with what the model sees in `windows`, then verify each candidate that no
        `known` box (a face being tracked) vouches for. `stream`: the video frame's index and the
        candidates rejected lately (a still has neither)."""
        h, w = image.shape[:2]
        for window in windows:
            x, y, tw, th = window
            in_window = self.model(image[y : y + th, x : x + tw]).transformed(1.0, x, y)
            found.append(drop_cut_faces(in_window, window, w, h))
        merged = _clip_to_frame(weighted_nms(Detections.concatenate(found), self.nms_threshold), w, h)
        if self.verify_threshold <= 0 or not len(merged):
            return merged.largest_first()
        keep = np.zeros(len(merged), bool)
        if len(known):
            keep = iou_matrix(merged.boxes, known).max(axis=1) >= 0.3
        # A texture rejected in a recent frame is still there: do not pay for a second look again.
        index, memory = stream if stream is not None else (0, [])
        memory[:] = [(box, until) for box, until in memory if until > index]
        rejected = np.array([box for box, _ in memory], np.float32).reshape(-1, 4)
        for i in np.flatnonzero(~keep):
            if len(rejected) and iou_matrix(merged.boxes[i : i + 1], rejected).max() >= 0.5:
                continue
            box = merged.boxes[i]
            # Video: mirrored looks for close-ups only, which are rare, so they cost little.
            mirrors = stream is None or box[2] - box[0] >= CLOSE_UP * max(h, w)
            keep[i] = self._looks_like_a_face(image, box, merged.scores[i], mirrors)
            if not keep[i] and stream is not None:
                memory.append((merged.boxes[i].tolist(), index + REMEMBER_REJECTED))
        return merged[keep].largest_first()

    def _looks_like_a_face(self, image: np.ndarray, box: np.ndarray, score: float, mirrors: bool) -> bool:
        """The second look: `score`, our face-or-not classifier's p(face) for the box
        (`Faceness`), the short-range model's best score on a crop twice the box's width and the
        full-range model's on one three times it must average `verify_threshold`. A texture one
        window reads as a face rarely survives the crops, and hands, letters and buttons that do
        are what the classifier was trained to reject (bench/real_faces.py). With `mirrors`
        (stills) each crop's score is the better of it and its mirror image: a face turned one way
        is often scored higher mirrored, and a still has no next frame to show it better. (In
        video they would cost ~10 % of the frame rate for little: a face turns or comes closer;
        close-ups get them, bench/closeups.py.)"""
        full, short = (self.model, self.other) if self.near is not None else (self.other, self.model)
        need = 4 * self.verify_threshold
        known = score + self.faceness(image, box)
        looks = [(short, 2.0, False), (full, 3.0, False)]
        if mirrors:
            looks[1:1] = [(short, 2.0, True)]
            looks.append((full, 3.0, True))
        best = {2.0: 0.0, 3.0: 0.0}
        # Cheapest first, stopping as soon as the verdict is settled whatever the rest score (0..1).
        for n, (model, factor, mirror) in enumerate(looks):
            best[factor] = max(best[factor], crop_score(model, image, box, factor, mirror))
            if known + sum(best.values()) >= need:
                return True
            pending = {f for _, f, _ in looks[n + 1 :]}
            if known + sum(1.0 if f in pending else value for f, value in best.items()) < need:
                return False
        return False

    def _near(self, image: np.ndarray) -> list[Detections]:
        """Close-ups from the short-range model; smaller faces are the full-range passes' to find."""
        if self.near is None:
            return []
        found = self.near(image)
        return [found[found.widths >= CLOSE_UP * max(image.shape[:2])]]

    def __call__(self, image: np.ndarray) -> Detections:
        """Faces in a BGR image, in pixels, largest first: the whole image, its mirror image (a
        profile the model misses one way round it often finds the other), close-ups, and the
        window pyramid."""
        h, w = image.shape[:2]
        found = [self.model(image), mirrored(self.model(image[:, ::-1]), w), *self._near(image)]
        return self._detect_windows(image, found, self.windows(w, h), np.zeros((0, 4), np.float32))

    def detect_stream(
        self,
        image: np.ndarray,
        index: int,
        tracked: np.ndarray,
        zoom: np.ndarray,
        rejected: list[tuple[list[float], int]] | None = None,
        moving: Callable[[Window], bool] | None = None,
        search_stride: int = 1,
    ) -> Detections:
        """Faces in frame `index` of a video, given the boxes (N, 4) of faces being tracked and
        whether each may get a zoom window this frame. `rejected`: the stream's candidates that
        failed their second look lately, (box, until frame index), kept up to date here.
        `moving(window)` and `search_stride`: where something new moved, and how often to look
        there (`pyramid_window`).

        Besides the whole frame: at most one window of the pyramid (`pyramid_window`), so new
        small faces are found; a zoom window around each tracked face that the whole-frame pass
        missed and is too small for it, so small faces stay tracked; and the close-up pass on
        schedule. (Visiting the pyramid in plain turns only every other frame saved 15 % but
        swapped more identities on generated clips, bench/counting.py; looking where something
        new moved lets it skip frames.)"""
        h, w = image.shape[:2]
        whole = self.model(image)
        found = [whole]
        large = len(tracked) and (tracked[:, 2] - tracked[:, 0]).max() >= LARGE_FACE * w
        if index % CLOSE_UP_EVERY == 0 or large:
            # Only what the full-range pass missed: averaging both models' boxes for the same face
            # every few frames would make its box jump, and the tracker lose or swap it.
            for near in self._near(image):
                found.append(near[iou_matrix(near.boxes, whole.boxes).max(axis=1) < 0.3] if len(whole) else near)
        pyramid = self.windows(w, h)
        window = pyramid_window(pyramid, index, moving, search_stride)
        windows = [] if window is None else [window]
        if len(tracked):
            seen = iou_matrix(tracked, whole.boxes).max(axis=1) if len(whole) else np.zeros(len(tracked))
            for box in tracked[(seen < 0.3) & zoom]:
                zoom_window = self.zoom_window(box, w, h)
                if zoom_window is not None:
                    windows.append(zoom_window)
        return self._detect_windows(image, found, windows, tracked, (index, [] if rejected is None else rejected))


def mirrored(found: Detections, width: int) -> Detections:
    """Detections made on a horizontally flipped image, in the original image's coordinates (the
    left and right eye and ear swap places)."""
    boxes = found.boxes.copy()
    boxes[:, [0, 2]] = width - found.boxes[:, [2, 0]]
    keypoints = found.keypoints.copy()
    keypoints[..., 0] = width - keypoints[..., 0]
    return Detections(boxes, found.scores, keypoints[:, MIRRORED_KEYPOINTS])


def crop_score(model: BlazeFace, image: np.ndarray, box: np.ndarray, factor: float, mirror: bool = False) -> float:
    """The best score `model` gives the face at `box` when it is centred in a square crop `factor`
    times its width (black beyond the frame), or in that crop's mirror image: a second look at a
    candidate face."""
    x1, y1, x2, y2 = box
    side = max(round(max(x2 - x1, y2 - y1) * factor), 2)
    left, top = round((x1 + x2 - side) / 2), round((y1 + y2 - side) / 2)
    h, w = image.shape[:2]
    crop = np.zeros((side, side, 3), np.uint8)
    sx, sy = max(left, 0), max(top, 0)
    ex, ey = min(left + side, w), min(top + side, h)
    if ex <= sx or ey <= sy:
        return 0.0
    crop[sy - top : ey - top, sx - left : ex - left] = image[sy:ey, sx:ex]
    target = np.array([[x1 - left, y1 - top, x2 - left, y2 - top]], np.float32)
    if mirror:
        crop = np.ascontiguousarray(crop[:, ::-1])
        target[:, [0, 2]] = side - target[:, [2, 0]]
    found = model(crop, VERIFY_FLOOR)
    if not len(found):
        return 0.0
    overlap = iou_matrix(target, found.boxes)[0] >= VERIFY_IOU
    return float(found.scores[overlap].max()) if overlap.any() else 0.0


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

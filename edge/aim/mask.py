"""The preview's privacy pass: every box that might be a face, found for hiding, not for counting.

The counting detector is tuned to be right (a score bar, a second look, faces the size the
pipeline looks for, upright). Hiding needs the opposite: anything face-like at any size the
preview can show, however the camera is turned, whole or cut by the frame's edge. So this pass
runs the short-range BlazeFace model at a low score with no second look, on the frame turned
0, 90, 180 and 270 degrees, over windows small enough to find faces down to `smallest` px, on a
frame padded by its own mirror image so a face cut by the edge is seen whole; each box is held for
a few frames so one miss does not unmask a face. Faces narrower than `smallest` are not promised
by the search: `soften` blurs the whole frame just enough that nothing that narrow keeps a face.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import cv2
import numpy as np

from edge.vision.detect import BlazeFace, tile_windows
from edge.vision.detections import Detections, iou_matrix

# The search: windows where a face spans at least SHARE of the side (the model's own reliable
# share is 1/4; at this low a score it finds faces at 1/6 as well), down to the smallest face.
# On the test's pasted faces, those of 40 px and more scored at least 0.42 somewhere.
SCORE = 0.2
SHARE = 1 / 6
FIRM_SCORE = 0.3
MIN_SMALLEST = 24
SMALLEST_PER_SIDE = 13
# A box stays hidden this many frames after its last sighting.
HOLD_FRAMES = 4
# cv2.rotate codes for a quarter turn clockwise, a half turn and a quarter turn anticlockwise.
TURNS = (None, cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_180, cv2.ROTATE_90_COUNTERCLOCKWISE)


def unturn(boxes: np.ndarray, turn: int | None, width: int, height: int) -> np.ndarray:
    """Boxes found in the frame turned by `turn`, in the (width x height) frame as it was."""
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    if turn == cv2.ROTATE_90_CLOCKWISE:
        out = (y1, height - x2, y2, height - x1)
    elif turn == cv2.ROTATE_180:
        out = (width - x2, height - y2, width - x1, height - y1)
    elif turn == cv2.ROTATE_90_COUNTERCLOCKWISE:
        out = (width - y2, x1, width - y1, x2)
    else:
        out = (x1, y1, x2, y2)
    return np.stack(out, axis=1).astype(np.float32)


def smallest_searched(width: int, height: int) -> int:
    """The narrowest face the search promises to find in a frame this size: a fixed share of its
    longer side, so the search has as many windows at any resolution, and never below MIN_SMALLEST."""
    return max(MIN_SMALLEST, math.ceil(max(width, height) / SMALLEST_PER_SIDE))


class FaceMask:
    """Boxes (x1, y1, x2, y2 pixels) of everything that might be a face in each frame of a stream,
    including those of the last `hold` frames; `hide` blanks them in a frame softened for the rest."""

    def __init__(self, score: float = SCORE, hold: int = HOLD_FRAMES, threads: int = 1, share: float = SHARE) -> None:
        self.model = BlazeFace("short", score, threads)
        self.share = share
        self.hold = hold
        self.held: list[tuple[np.ndarray, int]] = []
        self.index = 0

    def windows(self, width: int, height: int, smallest: int) -> list[tuple[int, int, int, int]]:
        """Square windows in which every face from `smallest` up to the frame's size spans at
        least `share` of the side and lies whole in one of them."""
        windows, side = [], smallest / self.share
        while True:
            windows += tile_windows(width, height, round(side), overlap=0.5)
            if side >= max(width, height):
                return windows
            side *= 2

    def _look(self, image: np.ndarray, window: tuple[int, int, int, int], smallest: int) -> Detections:
        """Faces in one window, in `image` pixels. A face near the smallest searched scores low
        when it is hard (small, cut, turned, compressed); larger ones score higher, and at the low
        score the model also reads faces into plain shading as large as the window, so a box
        wider than twice the smallest face must score FIRM_SCORE."""
        x, y, w, h = window
        found = self.model(image[y : y + h, x : x + w])
        plausible = (found.widths <= 2 * smallest) | (found.scores >= FIRM_SCORE)
        return found[plausible].transformed(1.0, x, y)

    def find(self, image: np.ndarray) -> np.ndarray:
        """Every face-like box in one frame, at any quarter turn, cut by the edge or not."""
        height, width = image.shape[:2]
        smallest = smallest_searched(width, height)
        # A face cut by the edge (up to half) is completed by its mirror image.
        pad = 2 * smallest
        padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REFLECT)
        found = []
        for turn in TURNS:
            turned = padded if turn is None else cv2.rotate(padded, turn)
            th, tw = turned.shape[:2]
            windows = self.windows(tw, th, smallest)
            seen = Detections.concatenate([self._look(turned, window, smallest) for window in windows])
            if len(seen):
                found.append(unturn(seen.boxes, turn, width + 2 * pad, height + 2 * pad) - pad)
        if not found:
            return np.zeros((0, 4), np.float32)
        boxes = np.concatenate(found)
        inside = (boxes[:, 2] > 0) & (boxes[:, 3] > 0) & (boxes[:, 0] < width) & (boxes[:, 1] < height)
        return merged(boxes[inside])

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """This frame's face-like boxes and those held from the last `hold` frames."""
        self.index += 1
        fresh = self.find(image)
        self.held = [(b, until) for b, until in self.held if until >= self.index]
        self.held += [(box, self.index + self.hold) for box in fresh]
        return np.array([b for b, _ in self.held], np.float32).reshape(-1, 4)

    def hide(self, image: np.ndarray, counted: np.ndarray) -> np.ndarray:
        """The frame as the preview may show it: softened below the search's smallest face, and
        blanked over every face-like box found now or lately and every face being counted."""
        height, width = image.shape[:2]
        boxes = np.concatenate([self(image), np.asarray(counted, np.float32).reshape(-1, 4)])
        return blank(soften(image, smallest_searched(width, height)), boxes)


def merged(boxes: np.ndarray, overlap: float = 0.3) -> np.ndarray:
    """Boxes overlapping each other (the model's many anchors on one face, its turns) as the box
    around all of them: a face is hidden by its widest guess, not by an average."""
    out = []
    remaining = boxes[np.argsort(-(boxes[:, 2] - boxes[:, 0]), kind="stable")]
    while len(remaining):
        cluster = iou_matrix(remaining[:1], remaining)[0] > overlap
        cluster[0] = True
        group = remaining[cluster]
        out.append([group[:, 0].min(), group[:, 1].min(), group[:, 2].max(), group[:, 3].max()])
        remaining = remaining[~cluster]
    return np.array(out, np.float32).reshape(-1, 4)


def soften(image: np.ndarray, smallest: int) -> np.ndarray:
    """The frame blurred (Gaussian, sigma `smallest`/4) so that no face narrower than `smallest`
    px keeps its features. The blur runs on the frame shrunk by about half the sigma, which only
    adds to it, at a small fraction of the cost (a 1080p frame: 11 ms instead of 343)."""
    sigma = smallest / 4
    factor = max(1, int(sigma // 2))
    height, width = image.shape[:2]
    small = cv2.resize(image, (max(1, width // factor), max(1, height // factor)), interpolation=cv2.INTER_AREA)
    blurred = cv2.GaussianBlur(small, (0, 0), sigma / factor)
    return cv2.resize(blurred, (width, height), interpolation=cv2.INTER_LINEAR)


def blank(image: np.ndarray, boxes: Iterable[np.ndarray], margin: float = 0.25) -> np.ndarray:
    """A copy of `image` with each box, grown by `margin` on each side, filled with its mean
    colour: unlike pixelation, no coarse layout of eyes and mouth survives for a detector (or a
    person) to read."""
    out = image.copy()
    height, width = out.shape[:2]
    for box in boxes:
        x1, y1, x2, y2 = (float(v) for v in box)
        dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
        a, b = max(0, math.floor(x1 - dx)), max(0, math.floor(y1 - dy))
        c, d = min(width, math.ceil(x2 + dx)), min(height, math.ceil(y2 + dy))
        if c > a and d > b:
            out[b:d, a:c] = out[b:d, a:c].reshape(-1, 3).mean(axis=0)
    return out

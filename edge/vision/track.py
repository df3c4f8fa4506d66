"""Multi-face tracking: one id per person across frames (SORT-style, with a colour cue).

Each track carries a Kalman filter over its box and a hue/saturation histogram of its face.
Detections are matched to predicted boxes first by IoU (weighted by colour similarity, which
settles crossings), then, for fast or briefly hidden faces whose boxes no longer overlap, by
centre distance in face widths with a gate that widens the longer a track has been unseen; these
riskier matches must also look alike. A track becomes a visitor after `min_hits` matched frames
and ends once unseen for `forget_after_s` seconds; a person who comes back later counts again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from edge.vision.detections import containment, iou_matrix

# Kalman noise, relative to the face's size (a face's apparent motion scales with its size).
_POSITION_STD = 1 / 20
_VELOCITY_STD = 1 / 8  # per second
_MEASUREMENT_STD = 1 / 20


# Bhattacharyya similarity of face colour histograms: 98 % of same-person pairs score at least this
# on generated clips, and two thirds of different-person pairs below it (bench/counting.py clips).
MIN_APPEARANCE = 0.8
# A matched box narrower than this share of its track's is a partial view.
PARTIAL_VIEW = 0.7
# How far (in face widths, widening by one width per second unseen) a newly confirmed track may be
# from a lost one to continue it.
REVIVE_GATE = 0.75
# A tentative track unseen for longer than this is dropped (see `Tracker._retire`).
TENTATIVE_GRACE_S = 0.3


def appearance(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Hue/saturation histogram (16x8, sums to 1) of the middle of a face box: skin, hair and
    glasses colours, little background."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    left, top = max(int(x1 + 0.2 * w), 0), max(int(y1 + 0.2 * h), 0)
    right, bottom = min(int(x2 - 0.2 * w), image.shape[1]), min(int(y2 - 0.2 * h), image.shape[0])
    if right - left < 2 or bottom - top < 2:
        return np.full(128, 1 / 128, np.float32)
    hsv = cv2.cvtColor(image[top:bottom, left:right], cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [16, 8], [0, 180, 0, 256]).ravel()
    return hist / max(float(hist.sum()), 1e-6)


def appearances(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """`appearance` of each box, as an (N, 128) array."""
    return np.array([appearance(image, box) for box in boxes], np.float32).reshape(len(boxes), 128)


def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bhattacharyya coefficients between histograms (N, D) and (M, D): 1 identical, 0 disjoint."""
    return np.sqrt(a) @ np.sqrt(b).T


def _width(box: np.ndarray) -> float:
    return float(box[2] - box[0])


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def _to_state(box: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = box
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], np.float64)


def _to_box(state: np.ndarray) -> np.ndarray:
    cx, cy, w, h = state[:4]
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float32)


class KalmanBox:
    """Kalman filter over (cx, cy, w, h, vx, vy): constant velocity for the centre, a random walk
    for the size. Size gets no velocity on purpose: a face sliding behind an obstacle shrinks, and
    extrapolating that would collapse the box while it is hidden."""

    def __init__(self, box: np.ndarray) -> None:
        self.x = np.concatenate([_to_state(box), np.zeros(2)])
        size = max(self.x[2], self.x[3])
        self.P = np.diag(
            np.r_[np.full(4, (2 * _POSITION_STD * size) ** 2), np.full(2, (10 * _VELOCITY_STD * size) ** 2)]
        )

    def predict(self, dt: float) -> np.ndarray:
        F = np.eye(6)
        F[0, 4] = F[1, 5] = dt
        size = max(self.x[2], self.x[3])
        q = np.r_[np.full(4, (_POSITION_STD * size) ** 2 * dt), np.full(2, (_VELOCITY_STD * size) ** 2 * dt)]
        self.x = F @ self.x
        self.P = F @ self.P @ F.T + np.diag(q)
        return _to_box(self.x)

    def update(self, box: np.ndarray) -> None:
        z = _to_state(box)
        R = np.diag(np.full(4, (_MEASUREMENT_STD * max(z[2], z[3])) ** 2))
        S = self.P[:4, :4] + R
        K = self.P[:, :4] @ np.linalg.inv(S)
        self.x = self.x + K @ (z - self.x[:4])
        self.P = self.P - K @ self.P[:4, :]

    @property
    def box(self) -> np.ndarray:
        return _to_box(self.x)

    @classmethod
    def from_state(cls, x: list[float], P: list[list[float]]) -> KalmanBox:
        kalman = cls.__new__(cls)
        kalman.x, kalman.P = np.array(x, np.float64), np.array(P, np.float64)
        return kalman


@dataclass(eq=False)
class Track:
    """One person being followed. `id` is 0 until the track is confirmed, then 1, 2, 3, ..."""

    box: np.ndarray
    first_seen: float
    last_seen: float
    kalman: KalmanBox
    feature: np.ndarray
    id: int = 0
    hits: int = 1

    @property
    def confirmed(self) -> bool:
        return self.id > 0


def match(
    tracks: list[Track], boxes: np.ndarray, features: np.ndarray, now: float, iou_threshold: float, distance_gate: float
) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Pairs (track index, detection index), then unmatched track and detection indices: first by
    overlap, then the rest by distance (fast or briefly hidden faces)."""
    if not tracks or not len(boxes):
        return [], list(range(len(tracks))), list(range(len(boxes)))
    looks = similarity(np.stack([t.feature for t in tracks]), features)
    pairs = _overlap_pairs(tracks, boxes, looks, iou_threshold)
    free_tracks, free_boxes = _unpaired(len(tracks), len(boxes), pairs)
    if free_tracks and free_boxes:
        pairs += _nearby_pairs(tracks, boxes, looks, free_tracks, free_boxes, now, distance_gate)
        free_tracks, free_boxes = _unpaired(len(tracks), len(boxes), pairs)
    return pairs, free_tracks, free_boxes


def _unpaired(tracks: int, boxes: int, pairs: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    paired_tracks, paired_boxes = {t for t, _ in pairs}, {b for _, b in pairs}
    return [i for i in range(tracks) if i not in paired_tracks], [j for j in range(boxes) if j not in paired_boxes]


def _overlap_pairs(
    tracks: list[Track], boxes: np.ndarray, looks: np.ndarray, iou_threshold: float
) -> list[tuple[int, int]]:
    """Cost: IoU weighted by colour similarity, which settles crossings. Gate: enough overlap."""
    iou = iou_matrix(np.stack([t.box for t in tracks]), boxes)
    rows, cols = linear_sum_assignment(-iou * looks)
    return [(r, c) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= iou_threshold]


def _nearby_pairs(
    tracks: list[Track],
    boxes: np.ndarray,
    looks: np.ndarray,
    free_tracks: list[int],
    free_boxes: list[int],
    now: float,
    distance_gate: float,
) -> list[tuple[int, int]]:
    """Cost: centre distance in face widths. Gate: within a distance that widens the longer a
    track has been unseen, of a similar size, and alike in colour (these matches are riskier)."""
    pred = np.stack([tracks[i].box for i in free_tracks])
    det = boxes[free_boxes]
    width = np.maximum((pred[:, 2] - pred[:, 0])[:, None], (det[:, 2] - det[:, 0])[None, :])
    pred_c = (pred[:, :2] + pred[:, 2:]) / 2
    det_c = (det[:, :2] + det[:, 2:]) / 2
    distance = np.linalg.norm(pred_c[:, None] - det_c[None], axis=2) / np.maximum(width, 1.0)
    ratio = (det[:, 2] - det[:, 0])[None, :] / np.maximum(pred[:, 2] - pred[:, 0], 1.0)[:, None]
    unseen = np.array([now - tracks[i].last_seen for i in free_tracks])[:, None]
    # A track seen once has no velocity estimate yet, so its prediction lags a moving face.
    unknown_velocity = np.array([tracks[i].hits == 1 for i in free_tracks])[:, None]
    gate = distance_gate * (1 + unseen) * np.where(unknown_velocity, 2.0, 1.0)
    alike = looks[np.ix_(free_tracks, free_boxes)] >= MIN_APPEARANCE
    allowed = (distance <= gate) & (ratio > 0.5) & (ratio < 2.0) & alike
    rows, cols = linear_sum_assignment(np.where(allowed, distance, 1e6))
    return [(free_tracks[r], free_boxes[c]) for r, c in zip(rows, cols, strict=True) if allowed[r, c]]


class MultiTracker(Protocol):
    """What the analyzer needs of a tracker, so another one (e.g. ByteTrack-style) can be swapped in.
    Ids are 0 while a track is tentative; ended tracks are returned once, when they end."""

    visitors: int

    def update(
        self, boxes: np.ndarray, timestamp: float, features: np.ndarray | None = None
    ) -> tuple[np.ndarray, list[Track]]: ...

    def finish(self) -> list[Track]: ...

    def snapshot(self) -> dict: ...

    def restore(self, snapshot: dict) -> None: ...

    @property
    def in_view(self) -> list[Track]: ...


class Tracker:
    """Assigns track ids to each frame's face boxes.

    `update(boxes, timestamp, features)` returns one id per box (0 while its track is still
    tentative) and the confirmed tracks that ended; `finish()` ends all remaining confirmed tracks.
    `features` are the boxes' `appearance` histograms; without them, tracking is by motion alone."""

    def __init__(
        self,
        iou_threshold: float = 0.2,
        distance_gate: float = 1.0,
        min_hits: int = 3,
        forget_after_s: float = 1.5,
    ) -> None:
        self.iou_threshold = iou_threshold
        self.distance_gate = distance_gate
        self.min_hits = min_hits
        self.forget_after_s = forget_after_s
        self.tracks: list[Track] = []
        self.visitors = 0
        self.last_time: float | None = None

    def update(
        self, boxes: np.ndarray, timestamp: float, features: np.ndarray | None = None
    ) -> tuple[np.ndarray, list[Track]]:
        if features is None:
            features = np.full((len(boxes), 1), 1.0, np.float32)
        self._predict(timestamp)
        pairs, free_tracks, free_boxes = match(
            self.tracks, boxes, features, timestamp, self.iou_threshold, self.distance_gate
        )
        ids = np.zeros(len(boxes), np.int64)
        absorbed = self._follow(pairs, boxes, features, timestamp, ids)
        self._spawn(free_boxes, boxes, features, timestamp, ids)
        return ids, self._retire(timestamp, set(free_tracks), absorbed)

    def _predict(self, timestamp: float) -> None:
        dt = 0.0 if self.last_time is None else max(timestamp - self.last_time, 0.0)
        self.last_time = timestamp
        for track in self.tracks:
            track.box = track.kalman.predict(dt)

    def _follow(
        self, pairs: list[tuple[int, int]], boxes: np.ndarray, features: np.ndarray, now: float, ids: np.ndarray
    ) -> list[Track]:
        """Move matched tracks to their boxes and confirm those seen often enough; returns the lost
        tracks that confirmed ones revived (to be dropped). Fills `ids` for the matched boxes."""
        matched = {t for t, _ in pairs}
        absorbed: list[Track] = []
        for t, b in pairs:
            track = self.tracks[t]
            # A box much smaller than the track is a partial view (half hidden, or cut by a
            # window): it shows the person is there, but would corrupt size and velocity.
            if _width(boxes[b]) >= PARTIAL_VIEW * _width(track.box):
                track.kalman.update(boxes[b])
                track.box = track.kalman.box
                track.feature = 0.7 * track.feature + 0.3 * features[b]
            track.last_seen = now
            track.hits += 1
            if not track.confirmed and track.hits >= self.min_hits:
                lost = [other for i, other in enumerate(self.tracks) if i not in matched and other not in absorbed]
                absorbed += self._confirm(track, lost, now)
            ids[b] = track.id
        return absorbed

    def _spawn(
        self, free_boxes: list[int], boxes: np.ndarray, features: np.ndarray, now: float, ids: np.ndarray
    ) -> None:
        """A tentative track for each unmatched box, unless the box is mostly inside a live track's
        box: that is part of the same person (half hidden, or a partial detection), not someone new."""
        live = [t.box for t in self.tracks if t.confirmed]
        for b in free_boxes:
            if live and max(containment(box, boxes[b : b + 1])[0] for box in live) > 0.5:
                continue
            self.tracks.append(Track(boxes[b].astype(np.float32), now, now, KalmanBox(boxes[b]), features[b]))
            if self.min_hits <= 1:
                self.visitors += 1
                self.tracks[-1].id = self.visitors
                ids[b] = self.visitors

    def _retire(self, now: float, missed: set[int], absorbed: list[Track]) -> list[Track]:
        """Drop revived and lost tracks; the confirmed ones among the lost have ended."""
        ended, kept = [], []
        for i, track in enumerate(self.tracks):
            if track in absorbed:
                continue
            # A tentative track unseen for a moment was most likely a false detection. (A moment,
            # not a frame: a board analysing four frames a second must not lose a newcomer to one
            # missed frame, bench/counting.py --every.)
            lost = now - track.last_seen > self.forget_after_s or (
                not track.confirmed and i in missed and now - track.last_seen > TENTATIVE_GRACE_S
            )
            if not lost:
                kept.append(track)
            elif track.confirmed:
                ended.append(track)
        self.tracks = kept
        return ended

    def _confirm(self, track: Track, unmatched: list[Track], now: float) -> list[Track]:
        """Make a tentative track a visitor, unless it continues a confirmed track lost moments
        ago nearby (a person reappearing from behind something): then it takes over that id, and
        the lost track is returned to be dropped."""
        lost = [t for t in unmatched if t.confirmed]
        if lost:
            width = _width(track.box)
            centre = _centre(track.box)
            best, best_distance = None, np.inf
            for candidate in lost:
                ratio = width / max(_width(candidate.box), 1.0)
                distance = float(np.linalg.norm(centre - _centre(candidate.box))) / max(width, 1.0)
                gate = REVIVE_GATE * (1 + (now - candidate.last_seen))
                alike = similarity(track.feature[None], candidate.feature[None])[0, 0] >= MIN_APPEARANCE
                if alike and 1 / 1.6 < ratio < 1.6 and distance < gate and distance < best_distance:
                    best, best_distance = candidate, distance
            if best is not None:
                track.id, track.first_seen, track.hits = best.id, best.first_seen, track.hits + best.hits
                return [best]
        self.visitors += 1
        track.id = self.visitors
        return []

    def snapshot(self) -> dict:
        """The tracker's state as JSON-ready data; floats survive JSON exactly, so a tracker
        restored from it continues as if never stopped."""
        return {
            "visitors": self.visitors,
            "last_time": self.last_time,
            "tracks": [
                {
                    "box": t.box.tolist(),
                    "first_seen": t.first_seen,
                    "last_seen": t.last_seen,
                    "x": t.kalman.x.tolist(),
                    "P": t.kalman.P.tolist(),
                    "feature": t.feature.tolist(),
                    "id": t.id,
                    "hits": t.hits,
                }
                for t in self.tracks
            ],
        }

    def restore(self, snapshot: dict) -> None:
        self.visitors = snapshot["visitors"]
        self.last_time = snapshot["last_time"]
        self.tracks = [
            Track(
                box=np.array(t["box"], np.float32),
                first_seen=t["first_seen"],
                last_seen=t["last_seen"],
                kalman=KalmanBox.from_state(t["x"], t["P"]),
                feature=np.array(t["feature"], np.float32),
                id=t["id"],
                hits=t["hits"],
            )
            for t in snapshot["tracks"]
        ]

    def finish(self) -> list[Track]:
        ended = [t for t in self.tracks if t.confirmed]
        self.tracks = []
        return ended

    @property
    def in_view(self) -> list[Track]:
        """Confirmed tracks seen in the latest frame."""
        return [t for t in self.tracks if t.confirmed and t.last_seen == self.last_time]

"""Things that never move are not visitors: a poster, a logo or a mannequin the detector takes for
a face would otherwise be counted all day.

A track is *static* once its face has stayed put for `static_after_s`: its box neither moved nor
changed size by more than `MOVE_TOLERANCE` of its width, and its eyes, nose and mouth kept their
places in the box (a real person standing at a counter turns their head and shifts). Each
observation is compared with the one that started the still period, so a slow drift adds up and
ends it. A static track is never counted; its place is remembered as a static spot, so when the
same thing is picked up again (after someone walked in front of it) the new track is not counted
either unless it moves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge.vision.detections import iou_matrix

# On a fixed face with sensor noise, the detector's box centre and the eyes, nose and mouth stay
# within 5 % of the face width of their mean (95th percentile 4 %), its width within 10 %; a person
# standing at a counter shifts by about 9 % and turns their head by more (tests/test_static.py).
MOVE_TOLERANCE = 0.075
RESIZE_TOLERANCE = 0.15
# Eyes, nose tip and mouth: the ear points (tragions) are too noisy to tell a turn from jitter.
STEADY_LANDMARKS = slice(0, 4)
# A new track this close to a static spot (IoU) is the same thing seen again.
SPOT_IOU = 0.5
MAX_SPOTS = 32


@dataclass
class _Still:
    box: np.ndarray  # the mean box of the still period
    landmarks: np.ndarray  # the mean keypoints relative to the box, in box widths
    since: float
    seen: int  # sightings in the still period
    at_spot: bool = False  # seen only on a known static spot so far: the same thing again
    static: bool = False
    # When a static track moved off: someone passing in front took the track over, and their
    # visit starts there (the tracker cannot tell them from the thing they covered).
    left_at: float | None = None


def _relative(box: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    width = max(float(box[2] - box[0]), 1.0)
    return (keypoints[STEADY_LANDMARKS] - box[:2]) / width


def moved(anchor: np.ndarray, landmarks: np.ndarray, box: np.ndarray, keypoints: np.ndarray) -> bool:
    """Whether a face at `box` with `keypoints` has moved from the still period's mean `anchor`
    box and relative `landmarks`: stepped aside, come closer, or turned its head."""
    width = max(float(anchor[2] - anchor[0]), 1.0)
    shift = np.abs((box[:2] + box[2:]) / 2 - (anchor[:2] + anchor[2:]) / 2).max() / width
    turn = float(np.abs(_relative(box, keypoints) - landmarks).max())
    resize = abs(float(box[2] - box[0]) / width - 1.0)
    return shift > MOVE_TOLERANCE or turn > MOVE_TOLERANCE or resize > RESIZE_TOLERANCE


@dataclass
class StillFilter:
    """Per-track stillness; `observe` each matched detection, then ask `countable`."""

    static_after_s: float
    tracks: dict[int, _Still] = field(default_factory=dict)
    spots: list[list[float]] = field(default_factory=list)

    def observe(self, track_id: int, box: np.ndarray, keypoints: np.ndarray, now: float) -> bool:
        """Record a sighting of a confirmed track; True when it has just become static at a spot not
        known yet (so each static thing is reported once, however often its track restarts)."""
        state = self.tracks.get(track_id)
        if state is None:
            self.tracks[track_id] = _Still(box.copy(), _relative(box, keypoints), now, 1, self._on_spot(box))
            return False
        # Judged against the spot itself, not the first sighting: the thing is often picked up
        # again while someone still half covers it.
        state.at_spot = state.at_spot and self._on_spot(box)
        if moved(state.box, state.landmarks, box, keypoints):
            if state.static and state.left_at is None:
                state.left_at = now
            state.box, state.landmarks, state.since, state.seen = box.copy(), _relative(box, keypoints), now, 1
            state.static = False
            return False
        # A running mean: the anchor settles on where the face really is, whatever its jitter.
        state.seen += 1
        state.box = state.box + (box - state.box) / state.seen
        state.landmarks = state.landmarks + (_relative(box, keypoints) - state.landmarks) / state.seen
        if not state.static and now - state.since >= self.static_after_s:
            state.static = True
            return self._remember(state.box)
        return False

    def countable(self, track_id: int) -> bool:
        """Whether the track is a person: not static now, and not a static spot's thing seen
        again that never left the spot."""
        state = self.tracks.get(track_id)
        return state is None or not (state.static or state.at_spot)

    def first_seen(self, track_id: int, tracked_since: float) -> float:
        """When the person behind a countable track arrived: when they took it over from a static
        thing, or when the track began."""
        state = self.tracks.get(track_id)
        return tracked_since if state is None or state.left_at is None else state.left_at

    def is_static(self, track_id: int) -> bool:
        state = self.tracks.get(track_id)
        return state is not None and state.static

    def forget(self, track_id: int) -> None:
        self.tracks.pop(track_id, None)

    def _on_spot(self, box: np.ndarray) -> bool:
        return bool(self.spots) and bool(iou_matrix(np.array(self.spots, np.float32), box[None]).max() >= SPOT_IOU)

    def _remember(self, box: np.ndarray) -> bool:
        if self._on_spot(box):
            return False
        self.spots = [*self.spots, box.tolist()][-MAX_SPOTS:]
        return True

    def snapshot(self) -> dict:
        return {
            "spots": self.spots,
            "tracks": {
                str(track_id): {
                    "box": s.box.tolist(),
                    "landmarks": s.landmarks.tolist(),
                    "since": s.since,
                    "seen": s.seen,
                    "at_spot": s.at_spot,
                    "static": s.static,
                    "left_at": s.left_at,
                }
                for track_id, s in self.tracks.items()
            },
        }

    def restore(self, snapshot: dict) -> None:
        self.spots = snapshot["spots"]
        self.tracks = {
            int(track_id): _Still(
                np.array(s["box"], np.float32),
                np.array(s["landmarks"], np.float64),
                s["since"],
                s["seen"],
                s["at_spot"],
                s["static"],
                s["left_at"],
            )
            for track_id, s in snapshot["tracks"].items()
        }

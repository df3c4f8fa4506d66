"""The vision pipeline as one object: frames in, faces and visitors out.

    from edge import Analyzer
    analyzer = Analyzer()
    faces = analyzer.faces(bgr_image)              # per-image: detect, align, classify
    for result in analyzer.track(frames):          # streaming: + tracking, per-person estimates
        for visitor in result.ended: ...

Each tracked person is classified a bounded number of times, on their largest and most frontal
crops, and the estimates are averaged: better than any single frame's guess, and far cheaper
than classifying every face in every frame.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np

from edge.vision.align import align_face, template_keypoints
from edge.vision.classify import AgeGender, AgeGenderModel
from edge.vision.config import VisionConfig
from edge.vision.detect import FaceDetector
from edge.vision.detections import LEFT_EYE, NOSE_TIP, RIGHT_EYE, Detections
from edge.vision.motion import MotionGate
from edge.vision.sources import Frame
from edge.vision.still import StillFilter
from edge.vision.track import MultiTracker, Track, Tracker, appearances
from edge.vision.zones import Path, centre
from edge.wire.contract import AGE_BANDS, age_band, judged_gender, likeliest_band

# A pipeline analysing fewer frames a second than this interval allows is slow (a busy scene on
# a Pi, the live source dropping frames).
SLOW_FRAME_S = 0.1
STAGES = ("decode", "motion", "detect", "align", "classify", "track")


@dataclass(frozen=True)
class Face:
    """One face in one image: box as x1, y1, x2, y2 pixels, and its age/gender estimate; None for
    a face too small to judge (narrower than `vision.min_classify`), which is never guessed."""

    box: np.ndarray
    score: float
    keypoints: np.ndarray
    estimate: AgeGender | None
    # Within this of p(female) = 0.5 the gender is "not sure" (None): `vision.gender_margin`.
    gender_margin: float = 0.0

    @property
    def gender(self) -> str | None:
        return None if self.estimate is None else judged_gender(self.estimate.p_female, self.gender_margin)

    def to_json(self) -> dict:
        x1, y1, x2, y2 = (float(v) for v in self.box)
        e = self.estimate
        return {
            "box": [round(x1, 1), round(y1, 1), round(x2 - x1, 1), round(y2 - y1, 1)],
            "score": round(self.score, 3),
            "gender": self.gender,
            "p_female": None if e is None else round(e.p_female, 3),
            "age": None if e is None else round(e.age, 1),
            "age_band": None if e is None else e.age_band,
            "too_small": e is None,
        }


@dataclass
class Visitor:
    """One tracked person, with estimates combined over their best crops."""

    track: int
    first_seen: float
    last_seen: float
    frames: int
    p_female: float | None
    age: float | None
    samples: int
    # With an entry line: True if they walked in across it, False if they passed by or left;
    # None without one.
    entered: bool | None = None
    # Within this of p(female) = 0.5, over all their views combined, the gender is "not sure"
    # (None): the hourly record counts them as unknown. `vision.gender_margin`.
    gender_margin: float = 0.0
    # The probability of each age band over their views (see `AgeGender.age_band`); without it,
    # the band of the mean age.
    age_bands: tuple[float, ...] | None = None

    @property
    def gender(self) -> str | None:
        return None if self.p_female is None else judged_gender(self.p_female, self.gender_margin)

    @property
    def age_band(self) -> str | None:
        if self.age_bands is not None:
            return likeliest_band(self.age_bands)
        return None if self.age is None else age_band(self.age)

    @property
    def dwell_s(self) -> float:
        return self.last_seen - self.first_seen

    def to_json(self) -> dict:
        return {
            "track": self.track,
            "first_seen": round(self.first_seen, 3),
            "last_seen": round(self.last_seen, 3),
            "frames": self.frames,
            "gender": self.gender,
            "p_female": None if self.p_female is None else round(self.p_female, 3),
            "age": None if self.age is None else round(self.age, 1),
            "age_band": self.age_band,
            **({} if self.entered is None else {"entered": self.entered}),
        }


@dataclass(frozen=True)
class StaticFace:
    """A face-like thing that stayed put for `static_after_s`: where, and since when."""

    track: int
    box: np.ndarray
    since: float

    def to_json(self) -> dict:
        x1, y1, x2, y2 = (round(float(v), 1) for v in self.box)
        return {"static_track": self.track, "box": [x1, y1, round(x2 - x1, 1), round(y2 - y1, 1)], "since": self.since}


@dataclass
class FrameResult:
    """What one frame produced: its detections, the track id of each (0 = not yet confirmed),
    the people in view, and the visitors whose tracks ended at this frame. The end-of-stream
    result, which ends every track still open, has `frame=None`."""

    frame: Frame | None
    detections: Detections
    track_ids: np.ndarray
    in_view: int
    ended: list[Visitor]
    # Tracks found static at this frame (a poster, a mannequin): never counted, reported once.
    static: list[StaticFace] = field(default_factory=list)


@dataclass
class StageTimes:
    """Seconds spent per pipeline stage, for the per-stage speed breakdown."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    frames: int = 0
    detected: int = 0  # frames the face detector ran on (the rest: nothing moved, nobody tracked)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def summary(self) -> dict[str, float]:
        """Milliseconds per frame for each stage, and the total."""
        per_frame = {k: 1000 * v / max(self.frames, 1) for k, v in self.seconds.items()}
        per_frame["total"] = sum(per_frame.values())
        return per_frame


def frontal_quality(keypoints: np.ndarray, box: np.ndarray, width: int, height: int) -> float:
    """Crop quality for choosing which views to classify: face width times frontalness (the nose
    centred between the eyes gives 1, a profile ~0), halved for a face cut by the frame edge."""
    right = np.linalg.norm(keypoints[NOSE_TIP] - keypoints[RIGHT_EYE])
    left = np.linalg.norm(keypoints[NOSE_TIP] - keypoints[LEFT_EYE])
    symmetry = 1.0 - abs(right - left) / max(right + left, 1e-6)
    at_edge = box[0] <= 1 or box[1] <= 1 or box[2] >= width - 1 or box[3] >= height - 1
    return float((box[2] - box[0]) * symmetry * (0.5 if at_edge else 1.0))


@dataclass
class _TrackSamples:
    since_sample: int = 0
    attempts: int = 0
    best_quality: float = 0.0
    samples: list[tuple[float, AgeGender]] = field(default_factory=list)

    def combined(self, keep: int) -> AgeGender | None:
        """The mean of the `keep` best-quality estimates, None without any."""
        if not self.samples:
            return None
        best = [estimate for _, estimate in sorted(self.samples, key=lambda s: -s[0])[:keep]]
        return AgeGender(
            float(np.mean([e.p_female for e in best])),
            float(np.mean([e.age for e in best])),
            tuple(float(m) for m in np.mean([e.bands for e in best], axis=0)),
        )


def _estimate(p_female: float, age: float, bands: list[float] | None = None) -> AgeGender:
    """A checkpointed estimate; checkpoints written before band probabilities were kept carry
    only the mean age, taken as certain of its band."""
    if bands is None:
        bands = [float(band == age_band(age)) for band in AGE_BANDS]
    return AgeGender(p_female, age, tuple(bands))


@dataclass
class Tracking:
    """What `Analyzer.track` carries from frame to frame: the tracker and each track's
    classification samples. It round-trips through JSON exactly (`snapshot`, `restore`), so a
    replay stopped or killed mid-visit resumes with the people in view instead of losing them."""

    tracker: MultiTracker
    still: StillFilter
    gate: MotionGate | None = None
    samples: defaultdict[int, _TrackSamples] = field(default_factory=lambda: defaultdict(_TrackSamples))
    # When the detector last ran on a frame (the motion gate's sweeps count from there).
    last_detected: float = -np.inf
    # Candidates that failed their second look lately: (box, until frame index).
    rejected: list[tuple[list[float], int]] = field(default_factory=list)
    # Where each confirmed track has been, for the include/exclude areas and the entry line.
    paths: defaultdict[int, Path] = field(default_factory=lambda: defaultdict(Path))

    def snapshot(self) -> dict:
        return {
            "tracker": self.tracker.snapshot(),
            "still": self.still.snapshot(),
            "gate": None if self.gate is None else self.gate.snapshot(),
            "last_detected": None if self.last_detected == -np.inf else self.last_detected,
            "rejected": self.rejected,
            "paths": {str(track_id): asdict(path) for track_id, path in self.paths.items()},
            "samples": {
                str(track_id): {
                    "since_sample": state.since_sample,
                    "attempts": state.attempts,
                    "best_quality": state.best_quality,
                    "samples": [[quality, est.p_female, est.age, list(est.bands)] for quality, est in state.samples],
                }
                for track_id, state in self.samples.items()
            },
        }

    def restore(self, snapshot: dict) -> None:
        self.tracker.restore(snapshot["tracker"])
        # Checkpoints written before static detection and motion gating have none of their state.
        if "still" in snapshot:
            self.still.restore(snapshot["still"])
        if self.gate is not None and snapshot.get("gate") is not None:
            self.gate.restore(snapshot["gate"])
        last = snapshot.get("last_detected")
        self.last_detected = -np.inf if last is None else last
        self.rejected = [(box, until) for box, until in snapshot.get("rejected", [])]
        self.paths.clear()
        self.paths.update({int(k): Path(**v) for k, v in snapshot.get("paths", {}).items()})
        self.samples.clear()
        for track_id, state in snapshot["samples"].items():
            self.samples[int(track_id)] = _TrackSamples(
                state["since_sample"],
                state["attempts"],
                state["best_quality"],
                [(sample[0], _estimate(*sample[1:])) for sample in state["samples"]],
            )


class Analyzer:
    """Face detection → alignment → age/gender → tracking, on one thread by default."""

    def __init__(self, config: VisionConfig | None = None) -> None:
        self.config = config or VisionConfig()
        c = self.config
        self.detector = FaceDetector.configured(c)
        self.classifier = AgeGenderModel(num_threads=c.threads, flip=c.flip)
        self.zones = c.zones()
        self.times = StageTimes()

    def reset_times(self) -> None:
        self.times = StageTimes()

    def estimate(self, image: np.ndarray, keypoints: np.ndarray) -> AgeGender:
        with self.times.stage("align"):
            crop = align_face(image, keypoints, self.classifier.size, context=self.classifier.context)
        with self.times.stage("classify"):
            return self.classifier(crop)

    def faces(self, image: np.ndarray, assume_face: bool = False) -> list[Face]:
        """All faces in a BGR image, largest first. `assume_face`: the image is one face crop."""
        if assume_face:
            h, w = image.shape[:2]
            keypoints = template_keypoints(w, h)
            box = np.array([0, 0, w, h], np.float32)
            return [Face(box, 1.0, keypoints, self.estimate(image, keypoints), self.config.gender_margin)]
        with self.times.stage("detect"):
            found = self.detector(image)
        c = self.config
        return [
            Face(box, float(score), kps, self.estimate(image, kps) if self.judgeable(box) else None, c.gender_margin)
            for box, score, kps in zip(found.boxes, found.scores, found.keypoints, strict=True)
        ]

    def judgeable(self, box: np.ndarray) -> bool:
        """Whether a face is wide enough for the age/gender model (bench/face_size.py)."""
        return float(box[2] - box[0]) >= self.config.min_classify

    def tracking(self) -> Tracking:
        """A fresh tracking state for `track`, with this analyzer's tracker settings."""
        tracker = Tracker(min_hits=self.config.min_hits, forget_after_s=self.config.forget_after_s)
        return Tracking(tracker, StillFilter(self.config.static_after_s), MotionGate() if self.config.motion else None)

    def track(self, frames: Iterable[Frame], tracking: Tracking | None = None) -> Iterator[FrameResult]:
        """Follow people through a stream of frames; the last result carries every visitor still in
        view as ended. Stage times accumulate in `self.times` (decode = waiting on `frames`).

        `tracking` (from `tracking()`, possibly restored) continues an earlier run; it is updated
        in place, so after each result it holds the state at that result's frame. Closing the
        generator early leaves the people in view in it rather than ending them."""
        tracking = tracking or self.tracking()
        tracker, still, samples = tracking.tracker, tracking.still, tracking.samples
        iterator = iter(frames)
        while True:
            with self.times.stage("decode"):
                frame = next(iterator, None)
            if frame is None:
                break
            self.times.frames += 1
            with self.times.stage("motion"):
                moved = tracking.gate is None or tracking.gate.moved(frame.image)
            # Someone being followed needs every frame; a thing that never moves does not.
            people = any(still.countable(t.id) for t in tracker.tracks)
            since = frame.timestamp - tracking.last_detected
            if moved or people or since >= self.config.sweep_s:
                tracking.last_detected = frame.timestamp
                self.times.detected += 1
                with self.times.stage("detect"):
                    found = self._detect(frame, tracking, slow=since > SLOW_FRAME_S)
            else:
                found = Detections.empty()
            with self.times.stage("track"):
                features = appearances(frame.image, found.boxes)
                ids, ended = tracker.update(found.boxes, frame.timestamp, features)
            static = []
            height, width = frame.image.shape[:2]
            for i in np.flatnonzero(ids):
                track_id = int(ids[i])
                if self.zones.active:
                    tracking.paths[track_id].add(self.zones, *centre(found.boxes[i], width, height))
                if still.observe(track_id, found.boxes[i], found.keypoints[i], frame.timestamp):
                    static.append(StaticFace(track_id, found.boxes[i].copy(), still.tracks[track_id].since))
                if still.countable(track_id) and self.judgeable(found.boxes[i]):
                    self._maybe_classify(samples[track_id], frame.image, found.keypoints[i], found.boxes[i])
            in_view = sum(still.countable(t.id) for t in tracker.in_view)
            yield FrameResult(frame, found, ids, in_view, self._visitors(ended, tracking), static)
        leftover = self._visitors(tracker.finish(), tracking)
        yield FrameResult(None, Detections.empty(), np.zeros(0, np.int64), 0, leftover)

    def _detect(self, frame: Frame, tracking: Tracking, slow: bool) -> Detections:
        tracks = tracking.tracker.tracks
        tracked = np.array([t.box for t in tracks], np.float32).reshape(-1, 4)
        # A confirmed track rides out a missed frame on its prediction, so its zoom window (if it
        # needs one) runs every other frame, staggered across tracks; a tentative track is dropped
        # when unseen for a moment, so it is zoomed every frame.
        zoom = np.array([not t.confirmed or (frame.index + t.id) % 2 == 0 for t in tracks], bool)
        moving = None
        if tracking.gate is not None:
            height, width = frame.image.shape[:2]
            moving = tracking.gate.new_motion(tracked, width, height)
        # Newcomers are looked for every other frame; every frame when frames come slowly (a busy
        # scene on a slow board), where waiting a frame lets a passer-by through (bench/counting.py).
        stride = 1 if slow else 2
        return self.detector.detect_stream(frame.image, frame.index, tracked, zoom, tracking.rejected, moving, stride)

    def _maybe_classify(self, state: _TrackSamples, image: np.ndarray, keypoints: np.ndarray, box: np.ndarray) -> None:
        state.since_sample += 1
        if state.attempts >= self.config.max_classifications:
            return
        quality = frontal_quality(keypoints, box, image.shape[1], image.shape[0])
        # The first sighting, then at doubling intervals (so samples spread over a long visit
        # instead of its first second), or at once when a clearly better view appears.
        interval = self.config.classify_every * 2 ** max(state.attempts - 1, 0)
        if state.attempts and state.since_sample < interval and quality < 1.25 * state.best_quality:
            return
        state.attempts += 1
        state.since_sample = 0
        state.best_quality = max(state.best_quality, quality)
        state.samples.append((quality, self.estimate(image, keypoints)))

    def _visitor(self, track: Track, first_seen: float, state: _TrackSamples, entered: bool | None) -> Visitor:
        """The person behind `track`, their estimates combined over the best-quality samples."""
        estimate = state.combined(keep=max(1, self.config.max_classifications // 2 + 1))
        return Visitor(
            track.id,
            first_seen,
            track.last_seen,
            track.hits,
            None if estimate is None else estimate.p_female,
            None if estimate is None else estimate.age,
            len(state.samples),
            entered,
            self.config.gender_margin,
            None if estimate is None else estimate.bands,
        )

    def so_far(self, tracking: Tracking, track: Track) -> Visitor:
        """A person still in view as the pipeline judges them so far: the estimates their visit
        would end with now (gender and age band None where not judged; zones not applied)."""
        state = tracking.samples.get(track.id) or _TrackSamples()
        return self._visitor(track, tracking.still.first_seen(track.id, track.first_seen), state, None)

    def _visitors(self, ended: list[Track], tracking: Tracking) -> list[Visitor]:
        """Ended tracks as visitors, their estimates combined over the best-quality samples;
        static things are not visitors."""
        visitors = []
        for track in ended:
            state = tracking.samples.pop(track.id, _TrackSamples())
            countable = tracking.still.countable(track.id)
            first_seen = tracking.still.first_seen(track.id, track.first_seen)
            tracking.still.forget(track.id)
            verdict = tracking.paths.pop(track.id, Path()).verdict(self.zones) if self.zones.active else "in"
            if not countable or verdict == "outside":
                continue
            entered = None if self.zones.entry_line is None else verdict == "in"
            visitors.append(self._visitor(track, first_seen, state, entered))
        return visitors

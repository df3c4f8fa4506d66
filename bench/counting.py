"""Unique-visitor counting and per-visitor vs per-frame accuracy on a generated clip.

    python -m bench.counting [--seeds 0 1 2] [--visitors 40] [--clips .cache/clips]

Renders each seed's clip with `bench.clipgen` (once; cached in CLIPS/seedN), runs the tracked
pipeline, and matches each track to the ground-truth visitor whose pasted square holds the
track's face centres most often. Reports, per clip and pooled: the count error, fragmented and
merged visitors, and gender accuracy and age error per visitor (the track's combined estimate)
against per frame (every detected face classified on its own, as a pipeline without tracking
would); and the mix of age bands the hourly record reads from the matched visitors (each clip one
hour, `edge.daemon.hourly`) against counting their likeliest bands. Single clips are noisy (one
visitor is 2.5 %): judge by the pooled figures.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bench.clipgen import generate
from edge import Analyzer, open_source
from edge.daemon.config import EdgeConfig
from edge.daemon.hourly import HourlyTally
from edge.vision.sources import Frame
from edge.wire.config import load
from edge.wire.contract import AGE_BANDS, age_band


def truth_at(truth: dict) -> dict[int, list[tuple[int, float, float, float, float]]]:
    """Frame index -> [(visitor id, x1, y1, x2, y2)]."""
    boxes: dict[int, list] = defaultdict(list)
    for frame, vid, x, y, w, h, _visible in truth["boxes"]:
        boxes[frame].append((vid, x, y, x + w, y + h))
    return boxes


def owner(box: np.ndarray, candidates: list) -> int | None:
    """The ground-truth visitor whose square holds this detection's centre (the nearest centre wins)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    inside = [
        (abs(cx - (x1 + x2) / 2) + abs(cy - (y1 + y2) / 2), vid)
        for vid, x1, y1, x2, y2 in candidates
        if x1 <= cx <= x2 and y1 <= cy <= y2
    ]
    return min(inside)[1] if inside else None


@dataclass
class ClipResult:
    truth_visitors: int
    counted: int
    fragmented: int
    missed: int
    unmatched_tracks: int
    per_visitor: list[tuple[bool, float]]
    per_frame: list[tuple[bool, float]]
    # Of the matched visitors whose age was read (with a gender or not), per band: how many truly
    # in it, how many the hourly record counts there, and how many have it as their likeliest band.
    true_bands: Counter
    hourly_bands: Counter
    likeliest_bands: Counter


def subsampled(frames: Iterable[Frame], every: int) -> Iterator[Frame]:
    """Every `every`-th frame, numbered consecutively: what a pipeline keeping up with only that
    share of a live camera's frames sees (the source drops the rest, `edge.vision.sources`)."""
    for frame in frames:
        if frame.index % every == 0:
            yield replace(frame, index=frame.index // every)


def evaluate_clip(clip: Path, analyzer: Analyzer, every: int = 1) -> ClipResult:
    truth = json.loads((clip / "clip.json").read_text())
    gt_boxes = truth_at(truth)
    gt = {v["id"]: v for v in truth["visitors"]}
    votes: dict[int, Counter] = defaultdict(Counter)
    per_frame: list[tuple[bool, float]] = []  # (gender right, age error) for every matched face
    visitors = []
    source = open_source(str(clip / "clip.mp4"))
    for result in analyzer.track(subsampled(source, every)):
        visitors += result.ended
        if result.frame is None:
            continue
        candidates = gt_boxes.get(result.frame.index * every, [])
        for box, keypoints, track in zip(
            result.detections.boxes, result.detections.keypoints, result.track_ids, strict=True
        ):
            vid = owner(box, candidates)
            if vid is None:
                continue
            if track:
                votes[int(track)][vid] += 1
            estimate = analyzer.estimate(result.frame.image, keypoints)
            per_frame.append((estimate.gender == _gender(gt[vid]), abs(estimate.age - gt[vid]["age"])))
    source.close()
    matched = {v.track: votes[v.track].most_common(1)[0][0] for v in visitors if votes[v.track]}
    tracks_per_visitor = Counter(matched.values())
    aged = [v for v in visitors if v.track in matched and v.age_band is not None]
    tally = HourlyTally("bench")
    for v in aged:
        tally.visitor(replace(v, first_seen=0.0, entered=None))  # the clip as one hour
    hourly = Counter()
    for record in tally.close(0.0, final=True):
        hourly.update({band: record.in_band(band) for band in AGE_BANDS})
    per_visitor = [
        (v.gender == _gender(gt[matched[v.track]]), abs(v.age - gt[matched[v.track]]["age"]))
        for v in visitors
        if v.track in matched and v.gender is not None
    ]
    return ClipResult(
        truth_visitors=len(gt),
        counted=len(visitors),
        fragmented=sum(1 for n in tracks_per_visitor.values() if n > 1),
        missed=len(gt) - len(tracks_per_visitor),
        unmatched_tracks=len(visitors) - len(matched),
        per_visitor=per_visitor,
        per_frame=per_frame,
        true_bands=Counter(age_band(gt[matched[v.track]]["age"]) for v in aged),
        hourly_bands=hourly,
        likeliest_bands=Counter(v.age_band for v in aged),
    )


BAND_FIELDS = ("true_bands", "hourly_bands", "likeliest_bands")


def _gender(visitor: dict) -> str:
    return "female" if visitor["female"] else "male"


def mix_off(read: Counter, truth: Counter) -> float:
    """The share of people read into a wrong band (total variation between the two mixes)."""
    total = max(sum(truth.values()), 1)
    return sum(abs(read[band] - truth[band]) for band in AGE_BANDS) / total / 2


def report(name: str, results: list[ClipResult]) -> str:
    truth = sum(r.truth_visitors for r in results)
    counted = sum(r.counted for r in results)
    per_visitor = [x for r in results for x in r.per_visitor]
    per_frame = [x for r in results for x in r.per_frame]
    truth_bands, hourly, likeliest = (sum((getattr(r, k) for r in results), Counter()) for k in BAND_FIELDS)
    return (
        f"{name}: {truth} visitors, counted {counted}, count error {100 * abs(counted - truth) / truth:.1f} %; "
        f"fragmented {sum(r.fragmented for r in results)}, merged away {sum(r.missed for r in results)}, "
        f"phantom {sum(r.unmatched_tracks for r in results)}\n"
        f"  gender accuracy per visitor {100 * np.mean([c for c, _ in per_visitor]):.1f} % "
        f"({len(per_visitor)} tracks) vs per frame {100 * np.mean([c for c, _ in per_frame]):.1f} % "
        f"({len(per_frame)} faces); age MAE per visitor {np.mean([e for _, e in per_visitor]):.2f} y "
        f"vs per frame {np.mean([e for _, e in per_frame]):.2f} y\n"
        f"  age mix off (people in a wrong band), the clip as one hour: {100 * mix_off(hourly, truth_bands):.1f} % "
        f"as the hourly record reads it, {100 * mix_off(likeliest, truth_bands):.1f} % counting likeliest bands"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--visitors", type=int, default=40)
    parser.add_argument("--clips", type=Path, default=Path(".cache/clips"), help="where clips are cached")
    parser.add_argument("--clip", type=Path, help="evaluate this one clip folder instead")
    parser.add_argument(
        "--set", action="append", default=[], metavar="vision.KEY=VALUE", help="a vision setting, e.g. vision.verify=0"
    )
    parser.add_argument(
        "--every",
        type=int,
        default=1,
        metavar="K",
        help="analyse every K-th frame only: a slow board that keeps up with 1/K of the camera's rate",
    )
    args = parser.parse_args(argv)
    if args.every < 1:
        parser.error("--every must be at least 1")
    settings = dict(item.split("=", 1) for item in args.set)
    config = load(EdgeConfig, overrides=settings, environ={}).vision
    clips = [args.clip] if args.clip else [args.clips / f"seed{seed}" for seed in args.seeds]
    for seed, clip in zip(args.seeds, clips, strict=False):
        if not (clip / "clip.json").is_file():
            generate(clip, seed=seed, visitors=args.visitors)
    analyzer = Analyzer(config)
    results = []
    for clip in clips:
        results.append(evaluate_clip(clip, analyzer, args.every))
        print(report(str(clip), results[-1:]), flush=True)
    if len(results) > 1:
        print(report(f"pooled over {len(results)} clips", results))


if __name__ == "__main__":
    main()

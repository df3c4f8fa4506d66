"""Unique-visitor counting and per-visitor vs per-frame accuracy on a generated clip.

    python -m bench.counting [--clip .cache/clips/default] [--visitors 40] [--seed 0]

Renders the clip with `bench.clipgen` if it is not there yet, runs the tracked pipeline, and
matches each track to the ground-truth visitor whose pasted square holds the track's face
centres most often. Reports the count error, fragmented and merged visitors, and gender accuracy
and age error per visitor (the track's combined estimate) against per frame (every detected
face classified on its own, as a pipeline without tracking would).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from bench.clipgen import generate
from edge import Analyzer, open_source


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=Path(".cache/clips/default"))
    parser.add_argument("--visitors", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not (args.clip / "clip.json").is_file():
        generate(args.clip, seed=args.seed, visitors=args.visitors)
    truth = json.loads((args.clip / "clip.json").read_text())
    gt_boxes = truth_at(truth)
    gt = {v["id"]: v for v in truth["visitors"]}

    analyzer = Analyzer()
    votes: dict[int, Counter] = defaultdict(Counter)
    per_frame: list[tuple[bool, float]] = []  # (gender right, age error) for every matched face
    visitors = []
    source = open_source(str(args.clip / "clip.mp4"))
    for result in analyzer.track(source):
        visitors += result.ended
        if result.frame is None:
            continue
        candidates = gt_boxes.get(result.frame.index, [])
        for box, keypoints, track in zip(
            result.detections.boxes, result.detections.keypoints, result.track_ids, strict=True
        ):
            vid = owner(box, candidates)
            if vid is None:
                continue
            if track:
                votes[int(track)][vid] += 1
            estimate = analyzer.estimate(result.frame.image, keypoints)
            per_frame.append(
                (estimate.gender == ("female" if gt[vid]["female"] else "male"), abs(estimate.age - gt[vid]["age"]))
            )
    source.close()

    matched = {v.track: votes[v.track].most_common(1)[0][0] for v in visitors if votes[v.track]}
    tracks_per_visitor = Counter(matched.values())
    fragmented = sum(1 for n in tracks_per_visitor.values() if n > 1)
    missed = len(gt) - len(tracks_per_visitor)
    unmatched_tracks = len(visitors) - len(matched)
    per_visitor = [
        (v.gender == ("female" if gt[matched[v.track]]["female"] else "male"), abs(v.age - gt[matched[v.track]]["age"]))
        for v in visitors
        if v.track in matched and v.gender is not None
    ]
    count_error = abs(len(visitors) - len(gt)) / len(gt)
    print(f"clip {args.clip}: {len(gt)} visitors, {truth['frames']} frames")
    print(f"counted {len(visitors)} visitors: count error {100 * count_error:.1f} %")
    print(
        f"  fragmented visitors (>1 track): {fragmented}; missed visitors: {missed}; tracks matching no one: "
        f"{unmatched_tracks}"
    )
    acc_v = np.mean([r for r, _ in per_visitor])
    acc_f = np.mean([r for r, _ in per_frame])
    print(
        f"gender accuracy per visitor {100 * acc_v:.1f} % ({len(per_visitor)} tracks) vs per frame "
        f"{100 * acc_f:.1f} % ({len(per_frame)} faces)"
    )
    print(
        f"age MAE per visitor {np.mean([e for _, e in per_visitor]):.2f} y vs per frame "
        f"{np.mean([e for _, e in per_frame]):.2f} y"
    )


if __name__ == "__main__":
    main()

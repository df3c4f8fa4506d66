"""Face detection on real photos: recall, precision and false faces per image, per source and per
face-size band, on ../shared/datasets/faces-in-the-wild (the protocol in its README).

    python -m bench.real_faces [--data ../shared/datasets/faces-in-the-wild] [--source fddb]
                               [--detector full] [--score S] [--min-face 40] [--held-out] [--list-false]

A labelled face counts for recall when it is at least 40 px wide; a detection is a true positive
when it overlaps any labelled face (of any size) at IoU >= 0.3, otherwise a false positive. The
detector runs as `aicctv analyze` runs it on a still image (whole image plus window pyramid).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from conversion.faceness import held_out
from edge.vision.config import VisionConfig
from edge.vision.detect import FaceDetector
from edge.vision.detections import iou_matrix

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "faces-in-the-wild"
RECALL_MIN_PX = 40
MATCH_IOU = 0.3
BANDS = ((40, 64), (64, 128), (128, 256), (256, 100_000))
# MediaPipe's own face-detection solution on the FDDB rows (the dataset's README).
MEDIAPIPE_FDDB = "recall 88.8 %, precision 100 %, 0.00 false faces/image"


def xywh_to_xyxy(boxes: list[list[float]]) -> np.ndarray:
    b = np.array(boxes, np.float32).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def score_image(truth: np.ndarray, found: np.ndarray) -> tuple[list[tuple[float, bool]], int, int]:
    """For each labelled face ≥ RECALL_MIN_PX wide: (width, found?); then the true and the false
    positives (a detection overlapping any labelled face, of any size, is true)."""
    iou = iou_matrix(truth, found) if len(truth) and len(found) else np.zeros((len(truth), len(found)))
    used: set[int] = set()
    recalls = []
    for i in np.argsort(-(truth[:, 2] - truth[:, 0])) if len(truth) else []:
        width = float(truth[i, 2] - truth[i, 0])
        if width < RECALL_MIN_PX:
            continue
        candidates = [(iou[i, j], j) for j in range(len(found)) if j not in used and iou[i, j] >= MATCH_IOU]
        if candidates:
            used.add(max(candidates)[1])
        recalls.append((width, bool(candidates)))
    true = sum(1 for j in range(len(found)) if j in used or (iou[:, j] >= MATCH_IOU).any())
    return recalls, true, len(found) - true


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--source", choices=("fddb", "facemask_kaggle", "all"), default="all")
    parser.add_argument("--detector", choices=("full", "short"), default=VisionConfig.detector)
    parser.add_argument("--score", type=float, default=None)
    parser.add_argument("--min-face", type=int, default=VisionConfig.min_face)
    parser.add_argument("--verify", type=float, default=VisionConfig.verify, help="0: no second look")
    parser.add_argument(
        "--held-out",
        action="store_true",
        help="mask rows: only the fifth of the photos the face-or-not classifier never trained on",
    )
    parser.add_argument("--list-false", action="store_true", help="print each false positive (file, box, score)")
    args = parser.parse_args(argv)
    rows = [json.loads(line) for line in (args.data / "boxes.jsonl").read_text().splitlines() if line.strip()]
    if args.source != "all":
        rows = [r for r in rows if r["source"] == args.source]
    if args.held_out:
        mask = [r for r in rows if r["source"] == "facemask_kaggle"]
        rows = [r for r in rows if r["source"] != "facemask_kaggle"] + [r for n, r in enumerate(mask) if held_out(n)]
    config = replace(
        VisionConfig(), detector=args.detector, score=args.score, min_face=args.min_face, verify=args.verify
    )
    detector = FaceDetector.configured(config)
    per_source: dict[str, dict] = defaultdict(
        lambda: {"images": 0, "true": 0, "false": 0, "recalls": [], "seconds": 0.0}
    )
    for row in rows:
        image = cv2.imread(str(args.data / "images" / row["file"]), cv2.IMREAD_COLOR)
        start = time.perf_counter()
        found = detector(image)
        stats = per_source[row["source"]]
        stats["seconds"] += time.perf_counter() - start
        recalls, true, false = score_image(xywh_to_xyxy(row["boxes"]), found.boxes)
        stats["images"] += 1
        stats["true"] += true
        stats["false"] += false
        stats["recalls"] += recalls
        if args.list_false and false:
            truth = xywh_to_xyxy(row["boxes"])
            for box, score in zip(found.boxes, found.scores, strict=True):
                if not len(truth) or iou_matrix(truth, box[None]).max() < MATCH_IOU:
                    print(f"false: {row['file']} box {np.round(box).astype(int).tolist()} score {score:.2f}")
    print(f"detector {args.detector}, score {args.score or 'default'}, verify {args.verify}, min face {args.min_face}")
    for source, s in sorted(per_source.items()):
        hits = sum(found for _, found in s["recalls"])
        precision = s["true"] / max(s["true"] + s["false"], 1)
        print(
            f"{source:<16} {s['images']:>4} images  recall {hits / max(len(s['recalls']), 1):6.1%} "
            f"({hits}/{len(s['recalls'])})  precision {precision:6.1%}  "
            f"{s['false'] / max(s['images'], 1):.2f} false faces/image  "
            f"{1000 * s['seconds'] / s['images']:.0f} ms/image"
        )
        bands = []
        for low, high in BANDS:
            band = [found for width, found in s["recalls"] if low <= width < high]
            if band:
                label = f"{low}+" if high > 10_000 else f"{low}-{high}"
                bands.append(f"{label} px {sum(band) / len(band):.1%} of {len(band)}")
        print(f"{'':<16} recall by face width: " + ", ".join(bands))
    if "fddb" in per_source:
        print(f"MediaPipe's own pipeline on the FDDB rows: {MEDIAPIPE_FDDB}")


if __name__ == "__main__":
    main()

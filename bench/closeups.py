"""Close-ups: faces 40-95 % of the frame's width, as at a counter, a kiosk or a doorway camera
mounted low. Recall per size, for stills and for video frames, and the detector's cost per frame.

    python -m bench.closeups [--faces 300] [--utkface DIR] [--fddb DIR]

UTKFace validation crops are scaled so the face (the aligned crop's square) spans each fraction of
a 640x480 frame's width, centred, cut at the top and bottom where it does not fit. FDDB faces at
least 60 px wide are cut out of their photos with the surroundings that make each fraction (the
photo's border pixels repeated where it ends) and scaled to 640x480. A face is found when a
detection overlaps its box with IoU >= 0.3. For FDDB, recall is also given over the faces the
detector finds in the photo as it is: what a close-up loses, apart from the faces it misses at
any size.
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np

from bench.real_faces import DEFAULT_DATA as DEFAULT_FDDB
from bench.real_faces import xywh_to_xyxy
from conversion.data import DEFAULT_DATA as DEFAULT_UTKFACE
from conversion.data import load_faces, validation_rows
from edge.vision.config import VisionConfig
from edge.vision.detect import FaceDetector
from edge.vision.detections import Detections, iou_matrix

FRACTIONS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
WIDTH, HEIGHT = 640, 480
MATCH_IOU = 0.3


def utkface_frame(face: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    side = round(fraction * WIDTH)
    frame = np.clip(rng.normal(120, 30, (HEIGHT, WIDTH, 3)), 0, 255).astype(np.uint8)
    scaled = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    x, y = (WIDTH - side) // 2, (HEIGHT - side) // 2
    top = max(0, -y)
    frame[max(y, 0) : max(y, 0) + min(side, HEIGHT), x : x + side] = scaled[top : top + min(side, HEIGHT)]
    box = np.array([[x, y, x + side, y + side]], np.float32)
    return frame, np.clip(box, 0, [WIDTH, HEIGHT, WIDTH, HEIGHT]).astype(np.float32)


def fddb_frame(image: np.ndarray, box: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    x1, y1, x2, y2 = box
    span_w = (x2 - x1) / fraction
    span_h = span_w * HEIGHT / WIDTH
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = cx - span_w / 2, cy - span_h / 2
    scale = WIDTH / span_w
    # One affine warp does the cut, the padding (border pixels repeated) and the scaling.
    matrix = np.array([[scale, 0, -left * scale], [0, scale, -top * scale]], np.float32)
    frame = cv2.warpAffine(image, matrix, (WIDTH, HEIGHT), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    moved = (box.reshape(2, 2) - [left, top]) * scale
    return frame, np.clip(moved.reshape(1, 4), 0, [WIDTH, HEIGHT, WIDTH, HEIGHT]).astype(np.float32)


def found_in(truth: np.ndarray, detections: Detections) -> bool:
    return bool(len(detections)) and iou_matrix(truth, detections.boxes).max() >= MATCH_IOU


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=300, help="UTKFace validation faces to use")
    parser.add_argument("--utkface", default=DEFAULT_UTKFACE)
    parser.add_argument("--fddb", default=DEFAULT_FDDB)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = validation_rows(args.utkface)
    rows = [rows[i] for i in rng.choice(len(rows), args.faces, replace=False)]
    detector = FaceDetector.configured(VisionConfig())
    # (source, fraction, frame, face box, whether the face is found in its own photo as it is)
    cases: list[tuple[str, float, np.ndarray, np.ndarray, bool]] = []
    for face in load_faces(rows, args.utkface):
        for fraction in FRACTIONS:
            cases.append(("utkface", fraction, *utkface_frame(face, fraction, rng), True))
    for line in (args.fddb / "boxes.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["source"] != "fddb":
            continue
        image = cv2.imread(str(args.fddb / "images" / row["file"]), cv2.IMREAD_COLOR)
        in_photo = detector(image)
        for box in xywh_to_xyxy(row["boxes"]):
            if box[2] - box[0] >= 60:
                known = found_in(box[None], in_photo)
                for fraction in FRACTIONS:
                    cases.append(("fddb", fraction, *fddb_frame(image, box, fraction), known))
    print(f"{len(cases)} close-up frames ({WIDTH}x{HEIGHT}), detector as configured by default")
    for mode in ("still", "video"):
        found: dict[tuple[str, float], list[bool]] = {}
        seconds = 0.0
        for source, fraction, frame, truth, _ in cases:
            start = time.perf_counter()
            if mode == "still":
                detections = detector(frame)
            else:
                detections = detector.detect_stream(frame, 0, np.zeros((0, 4), np.float32), np.zeros(0, bool))
            seconds += time.perf_counter() - start
            found.setdefault((source, fraction), []).append(found_in(truth, detections))
        print(f"{mode}: {1000 * seconds / len(cases):.1f} ms/frame")
        for source in ("utkface", "fddb"):
            cells = [f"{f:.0%} {np.mean(found[source, f]):6.1%}" for f in FRACTIONS if (source, f) in found]
            count = len(found.get((source, FRACTIONS[0]), []))
            print(f"  {source:<8} ({count} faces): " + "  ".join(cells))
        seen = np.array([in_photo for source, f, *_, in_photo in cases if source == "fddb" and f == FRACTIONS[0]])
        cells = [f"{f:.0%} {np.array(found['fddb', f])[seen].mean():6.1%}" for f in FRACTIONS]
        print(f"  fddb, of the {seen.sum()} found in their photo as it is: " + "  ".join(cells))


if __name__ == "__main__":
    main()

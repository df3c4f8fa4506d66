"""Detection recall on validation-split UTKFace faces pasted into larger frames at several scales.

    python -m bench.detection_recall [--faces 240] [--data DIR]

Each face is pasted (scaled to a given width) at a random place in a textured frame of each size;
a face counts as found when a detection overlaps its pasted square with IoU ≥ 0.4 (BlazeFace
boxes are slightly tighter than UTKFace's crops). Prints recall per face width and frame size.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
from tqdm import tqdm

from conversion.data import DEFAULT_DATA, load_faces, validation_rows
from edge.vision.detect import FaceDetector
from edge.vision.detections import iou_matrix

FACE_WIDTHS = (40, 48, 64, 96, 160)
FRAMES = ((640, 480), (1280, 720), (1920, 1080))


def scene(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    base = rng.uniform(40, 200, 3)
    ramp = np.linspace(0.7, 1.3, width)[None, :, None] * base[None, None, :]
    noise = cv2.GaussianBlur(rng.normal(0, 25, (height, width, 3)), (0, 0), 3)
    return np.clip(ramp + noise, 0, 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=240)
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--detector", default="full", choices=("full", "short"))
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = validation_rows(args.data)
    rows = [rows[i] for i in rng.choice(len(rows), args.faces, replace=False)]
    faces = load_faces(rows, args.data)
    detector = FaceDetector(args.detector)
    found = {(f, w): 0 for f in FRAMES for w in FACE_WIDTHS}
    false_positives = 0
    seconds = {f: 0.0 for f in FRAMES}
    trials = len(faces)
    for face in tqdm(faces, unit="face", disable=None):
        for frame_size in FRAMES:
            for width in FACE_WIDTHS:
                frame = scene(*frame_size, rng)
                x = int(rng.integers(0, frame_size[0] - width))
                y = int(rng.integers(0, frame_size[1] - width))
                frame[y : y + width, x : x + width] = cv2.resize(face, (width, width), interpolation=cv2.INTER_AREA)
                start = time.perf_counter()
                detections = detector(frame)
                seconds[frame_size] += time.perf_counter() - start
                truth = np.array([[x, y, x + width, y + width]], np.float32)
                hit = len(detections) and iou_matrix(detections.boxes, truth).max() >= 0.4
                found[frame_size, width] += int(bool(hit))
                false_positives += len(detections) - int(bool(hit))
    sizes = f"{len(FACE_WIDTHS)} widths x {len(FRAMES)} frame sizes"
    print(f"{trials} validation faces x {sizes}, detector {args.detector}")
    print("recall by face width:  " + "".join(f"{w:>8}px" for w in FACE_WIDTHS) + "   ms/frame")
    for frame_size in FRAMES:
        cells = "".join(f"{100 * found[frame_size, w] / trials:9.1f}%" for w in FACE_WIDTHS)
        ms = 1000 * seconds[frame_size] / (trials * len(FACE_WIDTHS))
        print(f"  {frame_size[0]}x{frame_size[1]:<12}{cells}   {ms:6.1f}")
    total = sum(found.values()) / (trials * len(FACE_WIDTHS) * len(FRAMES))
    print(f"overall recall (faces >= 40 px): {100 * total:.2f} %; false detections: {false_positives}")


if __name__ == "__main__":
    main()

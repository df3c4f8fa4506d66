"""Train the face-or-not classifier (edge/vision/faceness.py) and export it as TFLite.

    python -m conversion.faceness [--utkface-faces 7000] [--epochs 16] [--out models/tflite/faceness.tflite]

Data (never FDDB: its rows stay a clean test of the whole detector, bench/real_faces.py):
- faces: UTKFace training-split images as BlazeFace frames them, and the labelled faces of the
  Face Mask Detection photos (CC0), each twice with the box jittered the way detector boxes
  wander; in training, some are turned, masked, in sunglasses, dark or blurred (`corrupt`);
- not faces: the detector's own candidates on those street photos that overlap no labelled face,
  the chest below each face, random patches, and parts of UTKFace heads (an eye and a brow, hair,
  a collar): what the pyramid's windows mistake for faces.
One photo in five of the mask set and UTKFace's validation split are held out; the script prints
accuracy on them each epoch. The mined crops are cached in .cache/faceness/; the shipped model was
made without that cache (the cache changes the random draws that follow).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from conversion import corrupt
from conversion.data import DEFAULT_CACHE, DEFAULT_DATA, is_validation, load_faces, read_manifest
from edge.vision.detections import iou_matrix
from edge.vision.faceness import CROP_SIZE, face_crop
from edge.vision.model_files import FACENESS_MODEL, models_dir

WILD = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "faces-in-the-wild"
# Detector boxes on the same face move by a few percent of its size between looks and models.
JITTER_SHIFT, JITTER_SCALE = 0.06, 0.1
# A crop counts as "not a face" when it overlaps every labelled face less than this.
NEGATIVE_IOU = 0.2
RANDOM_PATCHES = 30
# Share of training faces given one corruption each epoch.
FACE_CORRUPTION = 0.3
CORRUPTIONS = (
    lambda crop, rng: corrupt.turned_head(crop, rng, yaw=float(rng.uniform(15, 50))),
    corrupt.surgical_mask,
    corrupt.sunglasses,
    corrupt.low_light,
    corrupt.motion_blur,
)


def held_out(index: int) -> bool:
    """Whether the mask rows' `index`-th photo (in boxes.jsonl order) is kept out of training, so
    bench/real_faces.py --held-out can score the detector on street photos it never learnt from."""
    return index % 5 == 0


def jittered(box: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    side = float(max(box[2] - box[0], box[3] - box[1]))
    cx = (box[0] + box[2]) / 2 + rng.normal(0, JITTER_SHIFT) * side
    cy = (box[1] + box[3]) / 2 + rng.normal(0, JITTER_SHIFT) * side
    half = side * float(np.exp(rng.normal(0, JITTER_SCALE))) / 2
    return np.array([cx - half, cy - half, cx + half, cy + half], np.float32)


def away_from(boxes: np.ndarray, width: int, height: int, rng: np.random.Generator, low: float, high: float):
    """A random square box of side in [low, high] px inside the frame overlapping none of `boxes`
    at NEGATIVE_IOU; None after a few tries."""
    for _ in range(20):
        side = float(np.exp(rng.uniform(np.log(low), np.log(min(high, width, height)))))
        x, y = rng.uniform(0, width - side), rng.uniform(0, height - side)
        box = np.array([[x, y, x + side, y + side]], np.float32)
        if not len(boxes) or iou_matrix(box, boxes).max() < NEGATIVE_IOU:
            return box[0]
    return None


def mine_utkface(data: Path, faces: int, rng: np.random.Generator) -> dict[str, list]:
    from edge.vision.detect import BlazeFace

    # UTKFace's faces fill the frame: the short-range model's case (the full-range one misses many).
    detector = BlazeFace("short", 0.5, num_threads=2)
    rows = read_manifest(data)
    out: dict[str, list] = {"x": [], "y": [], "val": []}
    for validation, count in ((False, faces), (True, faces // 5)):
        split = [r for r in rows if is_validation(r["file"]) == validation]
        chosen = [split[i] for i in rng.choice(len(split), min(count, len(split)), replace=False)]
        for image in load_faces(chosen, data):
            found = detector(image)
            if not len(found):
                continue
            box = found.boxes[int(np.argmax(found.scores))]
            side = float(box[2] - box[0])
            crops = [(face_crop(image, jittered(box, rng)), 1) for _ in range(2)]
            for _ in range(2):
                part = away_from(box[None], *image.shape[1::-1], rng, 0.25 * side, 1.2 * side)
                if part is not None:
                    crops.append((face_crop(image, part), 0))
            for crop, label in crops:
                out["x"].append(crop)
                out["y"].append(label)
                out["val"].append(validation)
    return out


def mine_street(wild: Path, rng: np.random.Generator) -> dict[str, list]:
    from edge.vision.detect import FaceDetector

    detector = FaceDetector("full", score_threshold=0.1, verify=0.0)
    rows = [json.loads(line) for line in (wild / "boxes.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["source"] == "facemask_kaggle"]
    out: dict[str, list] = {"x": [], "y": [], "val": []}
    for n, row in enumerate(rows):
        image = cv2.imread(str(wild / "images" / row["file"]), cv2.IMREAD_COLOR)
        boxes = np.array(row["boxes"], np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        crops = []
        for box in boxes:
            if box[2] - box[0] >= 16:
                crops += [(face_crop(image, jittered(box, rng)), 1) for _ in range(2)]
        candidates = detector(image).boxes
        # Below each face, a chest, a collar, a necklace or hands, the same size as the face.
        for box in boxes:
            drop = (box[3] - box[1]) * rng.uniform(1.2, 3.0)
            candidates = np.concatenate([candidates, (box + np.array([0, drop, 0, drop], np.float32))[None]])
        if len(candidates) and len(boxes):
            candidates = candidates[iou_matrix(candidates, boxes).max(axis=1) < NEGATIVE_IOU]
        crops += [(face_crop(image, box), 0) for box in candidates]
        for _ in range(RANDOM_PATCHES):
            patch = away_from(boxes, *image.shape[1::-1], rng, 16, min(image.shape[:2]))
            if patch is not None:
                crops.append((face_crop(image, patch), 0))
        for crop, label in crops:
            out["x"].append(crop)
            out["y"].append(label)
            out["val"].append(held_out(n))
        if n % 50 == 0:
            print(f"street photos: {n}/{len(rows)}", flush=True)
    return out


def augment(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mirror, light, contrast, blur and grey, per crop: what cameras and news photos vary; and
    faces turned, masked or in sunglasses (`conversion.corrupt`, drawn at the template's
    keypoints, which a face crop roughly shares), the faces real photos have and UTKFace lacks."""
    x = x.copy()
    for i in np.flatnonzero((y == 1) & (rng.random(len(x)) < FACE_CORRUPTION)):
        corruption = CORRUPTIONS[rng.integers(len(CORRUPTIONS))]
        x[i] = corruption(x[i], rng)
    x = x.astype(np.float32)
    flip = rng.random(len(x)) < 0.5
    x[flip] = x[flip, :, ::-1]
    gain = rng.uniform(0.5, 1.4, (len(x), 1, 1, 1))
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    x = (x - mean) * rng.uniform(0.6, 1.3, (len(x), 1, 1, 1)) + mean * gain
    for i in np.flatnonzero(rng.random(len(x)) < 0.2):
        x[i] = cv2.GaussianBlur(x[i], (0, 0), rng.uniform(0.5, 1.5))
    grey = rng.random(len(x)) < 0.1
    x[grey] = x[grey].mean(axis=3, keepdims=True)
    x += rng.normal(0, 3, x.shape)
    return np.clip(x, 0, 255)


def build():
    import keras
    from keras import layers

    inputs = keras.Input((CROP_SIZE, CROP_SIZE, 3), name="crop_bgr")
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    for channels, stride in ((16, 2), (32, 1), (32, 2), (64, 1), (64, 2)):
        x = layers.Conv2D(channels, 3, strides=stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(1, activation="sigmoid", name="p_face")(x)
    return keras.Model(inputs, outputs, name="faceness")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utkface", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--wild", type=Path, default=WILD, help="faces-in-the-wild (its mask rows are used)")
    parser.add_argument("--utkface-faces", type=int, default=7000)
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE / "faceness")
    parser.add_argument("--out", type=Path, default=models_dir() / FACENESS_MODEL)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    cached = args.cache / "crops.npz"
    if cached.is_file():
        data = dict(np.load(cached))
    else:
        parts = [mine_utkface(args.utkface, args.utkface_faces, rng), mine_street(args.wild, rng)]
        data = {k: np.array([v for p in parts for v in p[k]]) for k in ("x", "y", "val")}
        args.cache.mkdir(parents=True, exist_ok=True)
        np.savez(cached, **data)
    x, y, val = data["x"], data["y"].astype(np.float32), data["val"].astype(bool)
    faces, others = int(y[~val].sum()), int((1 - y[~val]).sum())
    print(f"crops: {faces} faces, {others} not faces to train; {int(val.sum())} held out")

    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(args.seed)
    model = build()
    steps = args.epochs * int(np.ceil((~val).sum() / 128))
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, steps)
    model.compile(keras.optimizers.Adam(schedule), "binary_crossentropy", metrics=["accuracy"])
    weight = {0: 0.5 / max(1e-9, 1 - y[~val].mean()), 1: 0.5 / max(1e-9, y[~val].mean())}
    for epoch in range(args.epochs):
        model.fit(augment(x[~val], y[~val], rng), y[~val], batch_size=128, epochs=1, class_weight=weight, verbose=0)
        p = model.predict(x[val].astype(np.float32), batch_size=512, verbose=0)[:, 0]
        faces, others = p[y[val] == 1], p[y[val] == 0]
        print(
            f"epoch {epoch + 1}/{args.epochs}: held out faces >= 0.5 {np.mean(faces >= 0.5):.1%}, "
            f"not faces < 0.5 {np.mean(others < 0.5):.1%}",
            flush=True,
        )
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    args.out.write_bytes(converter.convert())
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()

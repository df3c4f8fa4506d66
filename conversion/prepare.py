"""Prepare UTKFace for training: decode the shards, find each face's keypoints with the runtime's
own detector, and cache images, labels and keypoints.

    python -m conversion.prepare [--data DIR] [--cache DIR]

Keypoints come from BlazeFace full-range on the crop padded into a larger frame (the runtime
default), else short-range on the crop itself, else the alignment template (the crop as it is).
"""

from __future__ import annotations

import argparse
import sys
import tarfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from conversion.data import DEFAULT_CACHE, DEFAULT_DATA, IMAGE_SIZE, is_validation, read_manifest
from edge.vision.align import template_keypoints

PAD = IMAGE_SIZE  # the crop padded to 3x its size: the face then spans ~64 of 192 input pixels
SOURCES = ("full", "short", "template")
# The detectors (LiteRT) load on first use, so that a machine without the runtime's stack can
# import this module (training on an accelerator host: conversion/pack.py).
_detectors: dict[str, Any] = {}


def find_keypoints(image: np.ndarray) -> tuple[np.ndarray, int]:
    """The central face's keypoints in `image`, and which of SOURCES found them."""
    if not _detectors:
        from edge.vision.detect import FaceDetector

        _detectors["full"] = FaceDetector("full", tiles=False)
        _detectors["short"] = FaceDetector("short", tiles=False)
    padded = cv2.copyMakeBorder(image, PAD, PAD, PAD, PAD, cv2.BORDER_CONSTANT)
    found = _detectors["full"](padded)
    if len(found):
        return found.keypoints[0] - PAD, 0
    found = _detectors["short"](image)
    if len(found):
        return found.keypoints[0], 1
    h, w = image.shape[:2]
    return template_keypoints(w, h), 2


def _decode_and_find(item: tuple[str, bytes]) -> tuple[str, np.ndarray, np.ndarray, int]:
    name, data = item
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot decode {name}")
    if image.shape[:2] != (IMAGE_SIZE, IMAGE_SIZE):
        image = cv2.resize(image, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
    keypoints, source = find_keypoints(image)
    return name, image, keypoints, source


def _read_shards(data: Path, shards: list[str]):
    for shard in shards:
        with tarfile.open(data / shard) as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(".jpg"):
                    yield Path(member.name).name, tar.extractfile(member).read()


def prepare(data: Path, cache: Path, workers: int) -> None:
    rows = read_manifest(data)
    index = {row["file"]: i for i, row in enumerate(rows)}
    out = cache / "utkface"
    out.mkdir(parents=True, exist_ok=True)
    images = np.lib.format.open_memmap(
        out / "images.npy.partial", mode="w+", dtype=np.uint8, shape=(len(rows), IMAGE_SIZE, IMAGE_SIZE, 3)
    )
    keypoints = np.zeros((len(rows), 6, 2), np.float32)
    source = np.full(len(rows), -1, np.int8)
    shards = sorted({row["shard"] for row in rows})
    with ProcessPoolExecutor(workers) as pool:
        results = pool.map(_decode_and_find, _read_shards(data, shards), chunksize=64)
        for name, image, kps, src in tqdm(results, total=len(rows), desc="detect keypoints", unit="face", disable=None):
            i = index[name]
            images[i], keypoints[i], source[i] = image, kps, src
    if (source < 0).any():
        missing = [rows[i]["file"] for i in np.flatnonzero(source < 0)[:3]]
        sys.exit(f"error: {int((source < 0).sum())} manifest files not found in the shards, e.g. {missing}")
    images.flush()
    del images
    (out / "images.npy.partial").replace(out / "images.npy")
    files = np.array([row["file"] for row in rows])
    np.savez(
        out / "meta.npz",
        files=files,
        age=np.array([int(row["age"]) for row in rows], np.int16),
        female=np.array([int(row["gender"]) for row in rows], np.int8),
        race=np.array([int(row["race"]) for row in rows], np.int8),
        keypoints=keypoints,
        keypoint_source=source,
        validation=np.array([is_validation(f) for f in files]),
    )
    counts = Counter(SOURCES[s] for s in source)
    print(f"prepared {len(rows)} faces in {out}: keypoints from {dict(counts)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="UTKFace folder (manifest.csv + shards)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where prepared arrays go")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        prepare(args.data, args.cache, args.workers)
    except FileNotFoundError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()

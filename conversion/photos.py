"""LFW news photos with gender (../shared/datasets/lfw-gender), prepared for training the gender
head on real photos: each photo's centre face found by the pipeline's own detector (as
`aicctv analyze` finds it), so the crops are framed as the runtime frames real faces.

    python -m conversion.lfw [--data DIR] [--cache DIR]

Gender labels come from first names (some are wrong); there is no age. A person is in validation
when sha1(their name)[0] % 5 == 0: every photo of one person sits on one side of the split.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from conversion.data import DEFAULT_CACHE

DEFAULT_DATA = Path(os.environ.get("AICCTV_LFW", Path(__file__).resolve().parents[2] / "shared/datasets/lfw-gender"))
IMAGE_SIZE = 250
_analyzer: list = []


def person(file_name: str) -> str:
    """`Aaron_Peirsol_0001.jpg` → `Aaron_Peirsol`."""
    return file_name.rsplit("_", 1)[0]


def is_validation(file_name: str) -> bool:
    return hashlib.sha1(person(file_name).encode()).digest()[0] % 5 == 0


@dataclass
class LFW:
    """The prepared photos: images (N, 250, 250, 3) BGR uint8 (memory-mapped), gender, keypoints."""

    files: np.ndarray
    images: np.ndarray
    female: np.ndarray
    keypoints: np.ndarray
    validation: np.ndarray

    @classmethod
    def load(cls, cache: Path = DEFAULT_CACHE) -> LFW:
        meta_path = cache / "lfw" / "meta.npz"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path} missing: run `python -m conversion.lfw` first")
        meta = np.load(meta_path)
        images = np.load(cache / "lfw" / "images.npy", mmap_mode="r")
        return cls(images=images, **{k: meta[k] for k in meta.files})

    def split(self, validation: bool) -> np.ndarray:
        return np.flatnonzero(self.validation == validation)


def _centre_face(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    import cv2

    if not _analyzer:
        from edge.vision.config import VisionConfig
        from edge.vision.detect import FaceDetector

        _analyzer.append(FaceDetector.configured(VisionConfig()))
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot decode {path}")
    if image.shape[:2] != (IMAGE_SIZE, IMAGE_SIZE):
        image = cv2.resize(image, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
    found = _analyzer[0](image)
    if not len(found):
        return image, None
    centres = (found.boxes[:, :2] + found.boxes[:, 2:]) / 2
    nearest = int(np.argmin(np.linalg.norm(centres - IMAGE_SIZE / 2, axis=1)))
    return image, found.keypoints[nearest]


def prepare(data: Path, cache: Path, workers: int) -> None:
    labels = data / "labels.csv"
    if not labels.is_file():
        raise FileNotFoundError(f"{labels} not found: pass --data DIR (the lfw-gender folder)")
    with labels.open() as f:
        rows = list(csv.DictReader(f))
    out = cache / "lfw"
    out.mkdir(parents=True, exist_ok=True)
    images = np.lib.format.open_memmap(
        out / "images.npy.partial", mode="w+", dtype=np.uint8, shape=(len(rows), IMAGE_SIZE, IMAGE_SIZE, 3)
    )
    keypoints = np.zeros((len(rows), 6, 2), np.float32)
    found = np.zeros(len(rows), bool)
    paths = [data / "images" / row["file"] for row in rows]
    with ProcessPoolExecutor(workers) as pool:
        results = pool.map(_centre_face, paths, chunksize=32)
        for i, (image, kps) in enumerate(tqdm(results, total=len(rows), desc="find faces", unit="photo")):
            images[i] = image
            if kps is not None:
                keypoints[i], found[i] = kps, True
    images.flush()
    del images
    (out / "images.npy.partial").replace(out / "images.npy")
    files = np.array([row["file"] for row in rows])
    np.savez(
        out / "meta.npz",
        files=files,
        female=np.array([row["gender"] == "female" for row in rows], np.int8),
        keypoints=keypoints,
        # A photo whose face the detector misses is never used: it is kept out of both sides.
        validation=np.where(found, [is_validation(f) for f in files], -1).astype(np.int8),
    )
    print(f"prepared {len(rows)} photos in {out}: a face found in {int(found.sum())}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the lfw-gender folder (labels.csv, images/)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where prepared arrays go")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        prepare(args.data, args.cache, args.workers)
    except (FileNotFoundError, ValueError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()

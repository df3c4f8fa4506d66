"""UTKFace data: reading the shards, the fixed validation split, and the prepared cache."""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.wire.contract import AGE_BANDS

DEFAULT_DATA = Path(os.environ.get("AICCTV_UTKFACE", Path(__file__).resolve().parents[2] / "shared/datasets/utkface"))
DEFAULT_CACHE = Path(os.environ.get("AICCTV_CACHE", Path(__file__).resolve().parents[1] / ".cache"))
IMAGE_SIZE = 200
RACES = ("white", "black", "asian", "indian", "other")


def is_validation(file_name: str) -> bool:
    """The fixed split: a face is in validation when sha1(file name)'s first byte is ≡ 0 mod 5
    (about 20 %). Name-based, so it does not depend on file order or a random state."""
    return hashlib.sha1(file_name.encode()).digest()[0] % 5 == 0


def age_band_index(age: np.ndarray | float) -> np.ndarray:
    return np.minimum(np.asarray(age) // 10, len(AGE_BANDS) - 1).astype(np.int64)


def age_mix_error(masses: np.ndarray, truth: np.ndarray, weights: np.ndarray | None = None) -> dict[str, float]:
    """How far the share of people in each of our age bands, as read from the estimates, sits from
    the true shares: the total variation distance (half the summed differences; 0.05 means 5 % of
    the people are read into the wrong band), `likeliest` counting each face in its likeliest band,
    `summed` adding up their band probabilities (`masses`, one row per face), which the hourly
    record does (`edge.daemon.hourly.apportion`: with 5 or more visitors an hour, within about a
    point of the sum). `truth` holds band indices; `weights` weigh the faces (default: alike)."""
    weights = np.ones(len(truth)) if weights is None else np.asarray(weights, np.float64)
    bands = len(AGE_BANDS)
    true_share = np.bincount(truth, weights=weights, minlength=bands) / weights.sum()
    likeliest = np.bincount(masses.argmax(1), weights=weights, minlength=bands) / weights.sum()
    summed = (masses * weights[:, None]).sum(0) / (masses.sum(1) * weights).sum()
    return {
        "likeliest": float(np.abs(likeliest - true_share).sum() / 2),
        "summed": float(np.abs(summed - true_share).sum() / 2),
    }


@dataclass
class Prepared:
    """The prepared cache: images (N, 200, 200, 3) BGR uint8 (memory-mapped), labels and keypoints."""

    files: np.ndarray
    images: np.ndarray
    age: np.ndarray
    female: np.ndarray
    race: np.ndarray
    keypoints: np.ndarray
    keypoint_source: np.ndarray
    validation: np.ndarray

    @classmethod
    def load(cls, cache: Path = DEFAULT_CACHE) -> Prepared:
        meta_path = cache / "utkface" / "meta.npz"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path} missing: run `python -m conversion.prepare` first")
        meta = np.load(meta_path)
        images = np.load(cache / "utkface" / "images.npy", mmap_mode="r")
        return cls(images=images, **{k: meta[k] for k in meta.files})

    def split(self, validation: bool) -> np.ndarray:
        return np.flatnonzero(self.validation == validation)


def read_manifest(data: Path) -> list[dict[str, str]]:
    manifest = data / "manifest.csv"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} not found: pass --data DIR (the UTKFace folder with manifest.csv)")
    with manifest.open() as f:
        return list(csv.DictReader(f))


def validation_rows(data: Path = DEFAULT_DATA) -> list[dict[str, str]]:
    return [row for row in read_manifest(data) if is_validation(row["file"])]


def load_faces(rows: list[dict[str, str]], data: Path = DEFAULT_DATA) -> list[np.ndarray]:
    """Decode the named manifest rows' images straight from the tar shards, in the given order."""
    import tarfile

    import cv2

    wanted: dict[str, list[str]] = {}
    for row in rows:
        wanted.setdefault(row["shard"], []).append(row["file"])
    images: dict[str, np.ndarray] = {}
    for shard, names in wanted.items():
        with tarfile.open(data / shard) as tar:
            for name in names:
                member = tar.extractfile(name)
                if member is None:
                    raise FileNotFoundError(f"{name} is not in {data / shard}")
                images[name] = cv2.imdecode(np.frombuffer(member.read(), np.uint8), cv2.IMREAD_COLOR)
    return [images[row["file"]] for row in rows]

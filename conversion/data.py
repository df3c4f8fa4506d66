"""UTKFace data: reading the shards, the fixed validation split, and the prepared cache."""

from __future__ import annotations

import csv
import hashlib
import os
import zipfile
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


class CacheError(FileNotFoundError):
    """A cache folder that is missing, or not as `conversion.prepare` or `conversion.photos` wrote
    it (cut short, or another file in its place): either way the remedy is to make it again, so
    every caller that already handles a missing cache handles this one too."""


def load_cache(folder: Path, command: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A cache folder's labels (`meta.npz`, as arrays) and images (`images.npy`, memory-mapped),
    or a `CacheError` naming the `command` that makes it."""
    try:
        with np.load(folder / "meta.npz") as meta:
            arrays = {k: meta[k] for k in meta.files}
        images = np.load(folder / "images.npy", mmap_mode="r")
    except FileNotFoundError as error:
        raise CacheError(f"{error.filename} missing: run `{command}` first") from error
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise CacheError(f"{folder} is not a readable cache ({error}): run `{command}` again") from error
    return arrays, images


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
        arrays, images = load_cache(cache / "utkface", "python -m conversion.prepare")
        return cls(images=images, **arrays)

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

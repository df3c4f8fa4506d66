"""Real photos with labels, prepared for training beside UTKFace: each photo's centre face found by
the pipeline's own detector (as `aicctv analyze` finds it), so the crops are framed as the runtime
frames real faces, with whatever context the photo has around the face.

    python -m conversion.photos lfw [--data DIR] [--cache DIR]
    python -m conversion.photos fairface [--data DIR] [--cache DIR]
    python -m conversion.photos aaf [--data DIR] [--cache DIR]

- `lfw`: ../shared/datasets/lfw-gender, 6,045 LFW news photos with gender from first names (some
  wrong); no age. A person is held out when sha1(their name)[0] % 5 == 0, so every photo of one
  person sits on one side.
- `fairface`: FairFace (Kärkkäinen & Joo, WACV 2021; CC BY 4.0), its margin-0.25 224x224 crops
  with gender, age band and race: train images numbered above 7688 (those up to 7688 overlap a
  hidden test set and are never used) for training, its val images held out. A folder with
  `labels.csv` (file,gender,age,race), or FairFace's own `fairface_label_train.csv` and
  `fairface_label_val.csv`, and the images under it (train/, val/); `AICCTV_FAIRFACE` or --data. A
  photo that is one of ../shared/datasets/fairface-dev's (the measurement set) is dropped.
- `aaf`: All-Age-Faces (Cheng et al., Tsinghua Science and Technology 2019; research use, no licence
  stated), 13,322 web photos of different people, mostly Asian, aged 2-80, with gender and age in
  years: its `original images/` (portraits with hair and shoulders) and `image sets/` (name gender,
  0 female) under one folder, `AICCTV_AAF` or --data. A fifth of the people held out, by file name.

Photos of different shapes are padded to squares (their edges repeated) before the face is found.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from conversion.data import DEFAULT_CACHE, RACES, load_cache
from conversion.prepare import SOURCES, find_keypoints

WORK = Path(__file__).resolve().parents[2]
DEFAULT_DATA = {
    "lfw": Path(os.environ.get("AICCTV_LFW", WORK / "shared/datasets/lfw-gender")),
    "fairface": Path(os.environ.get("AICCTV_FAIRFACE", WORK / "extra-faces/fairface")),
    "aaf": Path(os.environ.get("AICCTV_AAF", WORK / "extra-faces/aaf")),
}
# The sets the shipped recipe's fine-tune adds to UTKFace (conversion.pipeline; All-Age-Faces was
# tried in run 22, model card).
REAL_PHOTOS = ("lfw", "fairface")
# Where the images lie under the folder (labels.csv names them relative to it).
IMAGES = {"lfw": "images", "fairface": "", "aaf": "original images"}
FAIRFACE_DEV = WORK / "shared/datasets/fairface-dev"
FAIRFACE_HIDDEN_TEST_IDS = 7688
# FairFace's age bands as (first, last) year; "more than 70" taken as 70-90.
AGE_BANDS = {
    "0-2": (0, 2),
    "3-9": (3, 9),
    "10-19": (10, 19),
    "20-29": (20, 29),
    "30-39": (30, 39),
    "40-49": (40, 49),
    "50-59": (50, 59),
    "60-69": (60, 69),
    "more than 70": (70, 90),
    "70+": (70, 90),
}
SPREADSHEET_BANDS = {"03-Sep": "3-9", "Sep-03": "3-9", "Oct-19": "10-19", "19-Oct": "10-19"}
# FairFace's seven groups onto UTKFace's five (the race head is a training aid only).
RACE = {
    "White": "white",
    "Black": "black",
    "East Asian": "asian",
    "Southeast Asian": "asian",
    "Indian": "indian",
    "Latino_Hispanic": "other",
    "Middle Eastern": "other",
}
# A fairface-dev photo's centre, as a margin-0.25 crop, correlates at ~0.997 with its copy and at
# most ~0.95 with any other photo.
DUPLICATE = 0.97
_detector: list = []


@dataclass
class Photos:
    """Prepared photos: images (N, S, S, 3) BGR uint8 (memory-mapped), gender, age as a band of
    years (first = last = -1: unknown), race (-1: unknown), keypoints, and the split (1 held out,
    0 training, -1 unused: no face found, or excluded)."""

    files: np.ndarray
    images: np.ndarray
    female: np.ndarray
    age_first: np.ndarray
    age_last: np.ndarray
    race: np.ndarray
    keypoints: np.ndarray
    validation: np.ndarray

    @classmethod
    def load(cls, name: str, cache: Path = DEFAULT_CACHE) -> Photos:
        arrays, images = load_cache(cache / name, f"python -m conversion.photos {name}")
        return cls(images=images, **arrays)

    @staticmethod
    def prepared(name: str, cache: Path = DEFAULT_CACHE) -> bool:
        return (cache / name / "meta.npz").is_file()

    def split(self, validation: bool) -> np.ndarray:
        return np.flatnonzero(self.validation == validation)


def _thumb(image: np.ndarray) -> np.ndarray:
    import cv2

    grey = cv2.cvtColor(cv2.resize(image, (24, 24), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
    v = grey.astype(np.float32).ravel()
    v -= v.mean()
    return v / (np.linalg.norm(v) + 1e-6)


def _square(image: np.ndarray, size: int) -> np.ndarray:
    """The photo padded to a square by repeating its edges, at `size` pixels: every photo of a set
    is stored at one size, without squeezing a face."""
    import cv2

    h, w = image.shape[:2]
    if h != w:
        top, left = (max(h, w) - h) // 2, (max(h, w) - w) // 2
        image = cv2.copyMakeBorder(image, top, max(h, w) - h - top, left, max(h, w) - w - left, cv2.BORDER_REPLICATE)
    if image.shape[0] != size:
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return image


def _centre_face(path: Path, size: int) -> tuple[np.ndarray, np.ndarray | None]:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot decode {path}")
    image = _square(image, size)
    # FairFace's crops are framed around one face, as UTKFace's are: found as UTKFace's are
    # (padded, one pass), several times faster than the pipeline's search.
    if path.parent.name in ("train", "val"):
        keypoints, source = find_keypoints(image)
        return image, None if SOURCES[source] == "template" else keypoints
    if not _detector:
        from edge.vision.config import VisionConfig
        from edge.vision.detect import FaceDetector

        _detector.append(FaceDetector.configured(VisionConfig()))
    found = _detector[0](image)
    if not len(found):
        return image, None
    centres = (found.boxes[:, :2] + found.boxes[:, 2:]) / 2
    nearest = int(np.argmin(np.linalg.norm(centres - np.array(image.shape[1::-1]) / 2, axis=1)))
    return image, found.keypoints[nearest]


def _rows(name: str, data: Path) -> list[dict[str, str]]:
    """The folder's labels: labels.csv, or for FairFace and All-Age-Faces their own releases'."""
    labels = [data / "labels.csv"]
    if name == "aaf" and not labels[0].is_file():
        return _aaf_rows(data)
    if name == "fairface" and not labels[0].is_file():
        labels = [data / f"fairface_label_{split}.csv" for split in ("train", "val")]
    missing = [str(path) for path in labels if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]} not found: pass --data DIR (the {name} folder with labels.csv)")
    rows = []
    for path in labels:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            lacking = {"file", "gender"} - set(reader.fieldnames or ())
            if lacking:
                raise ValueError(f"{path} has no {', '.join(sorted(lacking))} column: it needs file,gender[,age,race]")
            rows += list(reader)
    for row in rows:
        # Copies of FairFace's CSV that went through a spreadsheet read two bands as dates.
        row["age"] = SPREADSHEET_BANDS.get(row.get("age", ""), row.get("age", ""))
    if name == "fairface":
        rows = [
            r for r in rows if not (r["file"].startswith("train/") and _number(r["file"]) <= FAIRFACE_HIDDEN_TEST_IDS)
        ]
    return rows


def _aaf_rows(data: Path) -> list[dict[str, str]]:
    """All-Age-Faces' `image sets/{train,val}.txt` (`00000A02.jpg 0`: the person's serial, then the
    age in years after the A; gender 0 female, 1 male). Its own split is not used: a fifth is held
    out as for the other sets."""
    lists = [data / "image sets" / f"{split}.txt" for split in ("train", "val")]
    missing = [str(path) for path in lists if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]} not found: pass --data DIR (All-Age-Faces' folder, with image sets/)")
    rows = []
    for path in lists:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            stem = Path(fields[0]).stem
            years = stem.partition("A")[2]
            if len(fields) != 2 or fields[1] not in ("0", "1") or not years.isdigit():
                raise ValueError(f"{path}:{number}: expected `NNNNNAyy.jpg 0|1`, got {line[:80]!r}")
            gender = "Female" if fields[1] == "0" else "Male"
            rows.append({"file": f"{stem}.jpg", "gender": gender, "age": str(int(years))})
    return rows


def _number(file: str) -> int:
    return int(Path(file).stem)


def _held_out(name: str, file: str) -> bool:
    if name == "fairface":
        return file.startswith("val/")
    if name == "aaf":  # one person per photo
        return hashlib.sha1(file.encode()).digest()[0] % 5 == 0
    person = Path(file).name.rsplit("_", 1)[0]  # Aaron_Peirsol_0001.jpg -> Aaron_Peirsol
    return hashlib.sha1(person.encode()).digest()[0] % 5 == 0


def _years(age: str) -> tuple[int, int]:
    """An age label as its first and last year: a FairFace band, or years (All-Age-Faces); (-1, -1)
    when there is none."""
    if age.isdigit():
        return int(age), int(age)
    return AGE_BANDS.get(age, (-1, -1))


def _dev_thumbs() -> np.ndarray:
    """fairface-dev's photos as margin-0.25 crops' thumbnails (their 448 px margin-1.25 crops'
    centre 1.5/3.5), to drop their copies from training."""
    import cv2

    labels = FAIRFACE_DEV / "labels.json"
    if not labels.is_file():
        return np.zeros((0, 576), np.float32)
    thumbs = []
    for label in json.loads(labels.read_text()):
        image = cv2.imread(str(FAIRFACE_DEV / "images" / label["filename"]), cv2.IMREAD_COLOR)
        side = round(image.shape[0] * 1.5 / 3.5)
        at = (image.shape[0] - side) // 2
        thumbs.append(_thumb(image[at : at + side, at : at + side]))
    return np.stack(thumbs)


def prepare(name: str, data: Path, cache: Path, workers: int) -> None:
    import cv2

    rows = _rows(name, data)
    paths = [data / IMAGES[name] / row["file"] for row in rows]
    first = cv2.imread(str(paths[0]), cv2.IMREAD_COLOR)
    if first is None:
        raise FileNotFoundError(f"cannot read {paths[0]}: is --data the {name} folder?")
    size = max(first.shape[:2])
    out = cache / name
    out.mkdir(parents=True, exist_ok=True)
    images = np.lib.format.open_memmap(
        out / "images.npy.partial", mode="w+", dtype=np.uint8, shape=(len(rows), size, size, 3)
    )
    keypoints = np.zeros((len(rows), 6, 2), np.float32)
    found = np.zeros(len(rows), bool)
    dev = _dev_thumbs() if name == "fairface" else np.zeros((0, 576), np.float32)
    duplicates = np.zeros(len(rows), bool)
    with ProcessPoolExecutor(workers) as pool:
        results = pool.map(partial(_centre_face, size=size), paths, chunksize=32)
        for i, (image, kps) in enumerate(tqdm(results, total=len(rows), desc="find faces", unit="photo")):
            images[i] = image
            if kps is not None:
                keypoints[i], found[i] = kps, True
            duplicates[i] = len(dev) > 0 and float((dev @ _thumb(image)).max()) >= DUPLICATE
    images.flush()
    del images
    (out / "images.npy.partial").replace(out / "images.npy")
    files = np.array([row["file"] for row in rows])
    bands = np.array([_years(row.get("age", "")) for row in rows], np.int16)
    race = np.array([RACES.index(RACE[row["race"]]) if row.get("race") in RACE else -1 for row in rows], np.int8)
    held_out = np.array([_held_out(name, f) for f in files])
    np.savez(
        out / "meta.npz",
        files=files,
        female=np.array([row["gender"].strip().lower() == "female" for row in rows], np.int8),
        age_first=bands[:, 0],
        age_last=bands[:, 1],
        race=race,
        keypoints=keypoints,
        validation=np.where(found & ~duplicates, held_out, -1).astype(np.int8),
    )
    print(
        f"prepared {len(rows)} {name} photos in {out}: a face found in {int(found.sum())}, "
        f"{int(duplicates.sum())} dropped as copies of fairface-dev photos"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=sorted(DEFAULT_DATA), help="which photo set")
    parser.add_argument("--data", type=Path, help="its folder (labels.csv and the images); default: see above")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where prepared arrays go")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        prepare(args.name, args.data or DEFAULT_DATA[args.name], args.cache, args.workers)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

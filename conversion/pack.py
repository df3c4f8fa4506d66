"""A compact, portable copy of the prepared training caches, for training on another machine (an
accelerator host) that has neither the data sets nor room to send gigabytes of them.

    python -m conversion.pack pack --out DIR [--sets utkface lfw fairface] [--face 64] [--context 1.6]
    python -m conversion.pack unpack DIR|FILE.npz ... --cache CACHE

`pack` keeps each set's training faces and a sample of its held-out ones, each re-framed to the
runtime's alignment with `--context` times UTKFace's framing around it (room for training's
geometric jitter and a wider input) and WebP-compressed, one file per set (DIR/<set>.npz).
`unpack` turns them back into caches that `conversion.train --cache CACHE` reads as it reads the
originals; the keypoints are moved into
the new frame, so a crop made from the copy matches one made from the original up to resampling.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from conversion.data import DEFAULT_CACHE, Prepared
from conversion.photos import DEFAULT_DATA, REAL_PHOTOS, Photos
from edge.vision.align import align_face, face_transform

SETS = ("utkface", *DEFAULT_DATA)


def _load(name: str, cache: Path) -> Prepared | Photos:
    return Prepared.load(cache) if name == "utkface" else Photos.load(name, cache)


def spaced(rows: np.ndarray, most: int | None) -> np.ndarray:
    """At most `most` of `rows`, evenly spaced through them: a set's file-name order is, for
    UTKFace, age order, so its first rows would be a biased sample."""
    if most is None or most >= len(rows):
        return rows
    return rows[np.linspace(0, len(rows) - 1, most).astype(int)] if most else rows[:0]


def kept_rows(data: Prepared | Photos, held_out: int, limit: int | None = None) -> np.ndarray:
    """The training faces (at most `limit` of them) and `held_out` held-out ones."""
    return np.sort(np.concatenate([spaced(data.split(False), limit), spaced(data.split(True), held_out)]))


def pack_set(
    name: str, cache: Path, out: Path, face: int, context: float, quality: int, held_out: int, limit: int | None
) -> int:
    import cv2

    data = _load(name, cache)
    rows = kept_rows(data, held_out, limit)
    frame = round(face * context)
    blobs, keypoints = [], np.zeros((len(rows), *data.keypoints.shape[1:]), np.float32)
    for n, row in enumerate(tqdm(rows, desc=f"pack {name}", unit="face")):
        matrix = face_transform(data.keypoints[row], frame, None, context)
        keypoints[n] = data.keypoints[row] @ matrix[:, :2].T + matrix[:, 2]
        crop = align_face(data.images[row], data.keypoints[row], frame, None, context)
        ok, blob = cv2.imencode(".webp", crop, [cv2.IMWRITE_WEBP_QUALITY, quality])
        if not ok:
            raise RuntimeError(f"cannot encode {name} face {row} as WebP")
        blobs.append(blob.ravel())
    meta = {
        field: getattr(data, field)[rows] for field in data.__dataclass_fields__ if field not in ("images", "keypoints")
    }
    offsets = np.cumsum([0] + [len(b) for b in blobs])
    np.savez_compressed(out / f"{name}.npz", blob=np.concatenate(blobs), offsets=offsets, keypoints=keypoints, **meta)
    return int(offsets[-1])


class NotPacked(ValueError):
    """A file that is not a set `pack` wrote (or was damaged on the way)."""


def unpack_set(path: Path, cache: Path) -> int:
    import cv2

    def decode(n: int) -> np.ndarray:
        image = cv2.imdecode(blob[offsets[n] : offsets[n + 1]], cv2.IMREAD_COLOR)
        if image is None or image.shape != shape[1:]:
            raise NotPacked(f"{path}: face {n} is damaged")
        return image

    hint = "write one with `python -m conversion.pack pack`"
    try:
        packed = np.load(path)  # no pickles: a packed set holds plain arrays only
        blob, offsets = packed["blob"], packed["offsets"].astype(np.int64)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise NotPacked(f"{path} is not a packed set ({e}): {hint}") from None
    if len(offsets) < 2 or offsets[0] != 0 or (np.diff(offsets) <= 0).any() or offsets[-1] != len(blob):
        raise NotPacked(f"{path} is not a packed set (its offsets do not index its images): {hint}")
    first = cv2.imdecode(blob[: offsets[1]], cv2.IMREAD_COLOR)
    if first is None:
        raise NotPacked(f"{path}: face 0 is damaged")
    shape = (len(offsets) - 1, *first.shape)
    out = cache / path.stem
    out.mkdir(parents=True, exist_ok=True)
    images = np.lib.format.open_memmap(out / "images.npy", mode="w+", dtype=np.uint8, shape=shape)
    for n in range(len(offsets) - 1):
        images[n] = decode(n)
    images.flush()
    np.savez(out / "meta.npz", **{k: packed[k] for k in packed.files if k not in ("blob", "offsets")})
    return len(offsets) - 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True)
    pack = verbs.add_parser("pack", help="write DIR/<set>.npz from the prepared caches")
    pack.add_argument("--out", type=Path, required=True)
    pack.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    pack.add_argument("--sets", nargs="+", choices=SETS, default=["utkface", *REAL_PHOTOS])
    pack.add_argument("--face", type=int, default=64, help="pixels across UTKFace's framing of the face")
    pack.add_argument("--context", type=float, default=1.6, help="the frame, in UTKFace framings")
    pack.add_argument("--quality", type=int, default=80, help="WebP quality, 1..100")
    pack.add_argument("--held-out", type=int, default=1000, help="held-out faces kept per set (per-epoch figures)")
    pack.add_argument("--limit", type=int, help="training faces kept per set (default all; fewer for a trial run)")
    unpack = verbs.add_parser("unpack", help="turn packed sets (DIR/*.npz, or files) into caches under --cache")
    unpack.add_argument("parts", nargs="+", type=Path, metavar="PATH")
    unpack.add_argument("--cache", type=Path, required=True)
    args = parser.parse_args(argv)

    try:
        if args.verb == "pack":
            if not 1 <= args.quality <= 100 or args.face < 16 or args.context < 1:
                parser.error("--quality must be 1..100, --face at least 16 and --context at least 1")
            args.out.mkdir(parents=True, exist_ok=True)
            for name in args.sets:
                size = pack_set(
                    name, args.cache, args.out, args.face, args.context, args.quality, args.held_out, args.limit
                )
                print(f"{name}: {size / 2**20:.1f} MiB of images -> {args.out / name}.npz")
        else:
            parts = [p for path in args.parts for p in (sorted(path.glob("*.npz")) if path.is_dir() else [path])]
            if not parts:
                parser.error(f"no packed sets (.npz) in {' '.join(map(str, args.parts))}")
            for path in parts:
                print(f"{path.stem}: {unpack_set(path, args.cache)} faces -> {args.cache / path.stem}")
    except (FileNotFoundError, NotPacked) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

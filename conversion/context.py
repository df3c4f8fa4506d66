"""How much real context around the face each training set's photos hold, and what the model makes
of it.

    python -m conversion.context [--model FILE.tflite] [--sizes 80 96 112] [--photos N] [--cache DIR]

A model with an input wider than UTKFace's 64 px framing (`align.context_of`) sees a ring of hair,
ears, chin and background around the face. Where the photo ends inside that ring, `align_face`
repeats the photo's edge pixels, so the ring shows smears, not context. For each prepared set
(UTKFace and every real photo set `conversion.photos` has prepared) this prints:

- for each input size, the mean share of the crop that lies outside the photo, and the share of
  photos with more than 5 % of it outside (on up to `--photos` training photos);
- on the held-out photos, the model's gender accuracy (and share in our age band, where the set
  has ages) as the runtime frames them, and with a ring of 4 and 8 px of its own crop replaced by
  the edge pixels inside it (`smear_ring`), as a photo cut at the face's framing would give.

Why: the wider view (80 px, run 13b; 96 px tried as run 24) is meant to teach cues a tight face
loses. Those cues can only be taught by photos that show them: a set cut close to the face teaches
smears. Where the model answers alike with its ring smeared, it has not learned to use the ring.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from conversion.data import DEFAULT_CACHE, Prepared, age_band_index
from conversion.evaluate import predict
from conversion.photos import DEFAULT_DATA, Photos
from conversion.train import aligned_crops
from edge.vision.align import context_of, face_transform
from edge.vision.classify import AgeGenderModel
from edge.vision.runtime import ModelError

RINGS = (0, 4, 8)
# Crop pixels sampled for the outside share: every 4th in each direction is exact to a fraction of a
# percent and 16 times faster than every pixel.
STEP = 4


def outside_share(image_shape: tuple[int, ...], keypoints: np.ndarray, size: int) -> float:
    """The share of the `size`-pixel aligned crop of the face with these keypoints that lies outside
    an image of this shape (where `align_face` repeats the image's edge pixels)."""
    inverse = cv2.invertAffineTransform(face_transform(keypoints, size, context=context_of(size)))
    centres = np.arange(0, size, STEP) + STEP / 2
    grid = np.stack(np.meshgrid(centres, centres), -1).reshape(-1, 2)
    x, y = (grid @ inverse[:, :2].T + inverse[:, 2]).T
    height, width = image_shape[:2]
    return float(((x < 0) | (x > width - 1) | (y < 0) | (y > height - 1)).mean())


def smear_ring(crop: np.ndarray, ring: int) -> np.ndarray:
    """The crop with its outer `ring` pixels replaced by the edge pixels just inside them, as a
    photo that ends there would be framed."""
    if ring == 0:
        return crop
    inner = crop[ring:-ring, ring:-ring]
    return cv2.copyMakeBorder(inner, ring, ring, ring, ring, cv2.BORDER_REPLICATE)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="int8 age/gender model (default: the shipped one)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[80, 96, 112], metavar="PX", help="input sizes")
    parser.add_argument("--photos", type=int, default=4000, metavar="N", help="training photos per set to measure")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args(argv)
    if min(args.sizes) < 16 or args.photos < 1:
        parser.error("--sizes must be 16 px or more and --photos at least 1")
    try:
        sets: dict[str, Prepared | Photos] = {"utkface": Prepared.load(args.cache)}
        sets |= {name: Photos.load(name, args.cache) for name in DEFAULT_DATA if Photos.prepared(name, args.cache)}
        model = AgeGenderModel(args.model, num_threads=1, flip=True)
    except (FileNotFoundError, ModelError) as error:  # a model or cache missing or unreadable
        parser.error(str(error))

    for name, data in sets.items():
        sample = data.split(False)[: args.photos]
        shape = data.images[sample[0]].shape
        print(f"[{name}] photos {shape[1]}x{shape[0]}, {len(sample)} training photos measured")
        for size in args.sizes:
            outside = np.array([outside_share(data.images[i].shape, data.keypoints[i], size) for i in sample])
            print(
                f"[{name}]   {size} px view: {100 * outside.mean():.1f} % of the crop outside the photo, "
                f"{100 * (outside > 0.05).mean():.1f} % of photos more than 5 % outside"
            )
        held_out = data.split(True)
        crops = aligned_crops(data, held_out, model.size)
        female = data.female[held_out]
        first = data.age[held_out] if isinstance(data, Prepared) else data.age_first[held_out]
        true_band = age_band_index(first) if (first >= 0).all() else None
        for ring in RINGS:
            inputs = np.stack([smear_ring(crop, ring) for crop in crops])
            p_female, _, band, _ = predict(model, inputs, f"{name} ring {ring}")
            right = (p_female >= 0.5) == (female == 1)
            line = (
                f"[{name}]   held out ({len(held_out)}), {model.size} px, "
                + (f"outer {ring} px smeared: " if ring else "as framed:          ")
                + f"gender {100 * right.mean():.2f} % (women {100 * right[female == 1].mean():.1f}, "
                f"men {100 * right[female == 0].mean():.1f})"
            )
            if true_band is not None:
                line += f", our band {100 * (band == true_band).mean():.1f} %"
            print(line, flush=True)


if __name__ == "__main__":
    main()

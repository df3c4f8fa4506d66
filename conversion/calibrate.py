"""Shift the gender decision so that women and men of every age are judged alike on real photos.

    python -m conversion.calibrate --init RUN/model.keras --run OUT [--cache DIR]

Fits one number, an offset added to the gender logit, on FairFace's held-out val photos (never
fairface-dev's), each photo weighted so that every FairFace age band x gender weighs alike (as
`conversion.evaluate`'s balanced figures), by the weighted log loss of p(female) averaged over the
crop and its mirror as the product judges it; writes OUT/model.keras with the offset folded into
the gender head's bias, and prints the offset and the balanced figures before and after.

Then the "not sure" margin (`vision.gender_margin`): the smallest at which, on the same photos
weighted the same way, at least RIGHT_OF_JUDGED of the faces given a gender are right (issue 21's
bar). It is printed, not written: the default lives in `edge/vision/config.py` and is set from it
when a model ships, because a margin belongs to the model whose confidence it reads. This is the
Keras model's answer; the int8 model's can be a few steps away (run 18: 0.115 here, 0.12 on the
int8 file; runs 18+22: 0.11 and 0.095), and the int8 file is what ships: `conversion.evaluate
--int8` prints its own answer, which is the one to set.

Why: a network trained with women and men weighted alike still leans to "man" on photos it has
not seen, most for older women (run 16 on FairFace val, balanced: women 85.2 %, men 92.0 %; women
40+ 86.9 %, men 40+ 97.3 %), while on its own training photos it leans far less (its offset there
is 0.11 against 0.26 on val), so the offset is taken from held-out photos. One parameter on
thousands of photos: fitted on one half of val and measured on the other, the gap closes as much
as fitted on all of it (models/tflite/MODEL_CARD.md).
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

import numpy as np

from conversion.data import DEFAULT_CACHE
from conversion.evaluate import MARGIN_STEPS, RIGHT_OF_JUDGED, balanced, balanced_weights, gender_margin
from conversion.photos import Photos
from conversion.train import aligned_crops
from edge.vision.config import VisionConfig

# Offsets searched, in logit units: wider than any seen (run 16: 0.26), fine enough to be exact
# for the purpose (a step moves p(female) near 0.5 by at most 0.00125).
OFFSETS = np.linspace(-2.0, 2.0, 801)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def gender_offset(logits: np.ndarray, female: np.ndarray, weights: np.ndarray) -> float:
    """The offset to add to the gender logit that minimises the weighted log loss of p(female),
    p being the mean over views (`logits` is faces x views: the crop and its mirror)."""
    p = sigmoid(logits[None] + OFFSETS[:, None, None]).mean(axis=2).clip(1e-6, 1 - 1e-6)
    loss = -(weights * np.where(female == 1, np.log(p), np.log(1 - p))).sum(axis=1)
    return float(OFFSETS[int(np.argmin(loss))])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", type=Path, required=True, help="the trained model.keras")
    parser.add_argument("--run", type=Path, required=True, help="folder to write the calibrated model.keras into")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args(argv)
    if not zipfile.is_zipfile(args.init):
        parser.error(f"{args.init} is not a Keras model file: pass --init RUN/model.keras from conversion.train")
    if not Photos.prepared("fairface", args.cache):
        parser.error("FairFace is not prepared: run python -m conversion.photos fairface first")

    import keras

    try:
        model = keras.models.load_model(args.init, compile=False)
        bias = model.get_layer("gender_logit").bias
    except (ValueError, KeyError, OSError) as error:
        parser.error(f"{args.init} is not an age/gender model from conversion.train ({error})")
    photos = Photos.load("fairface", args.cache)
    held_out = photos.split(True)
    crops = aligned_crops(photos, held_out, model.input.shape[1]).astype(np.float32)
    views = [crops, crops[:, :, ::-1]]
    logits = np.stack([keras.ops.convert_to_numpy(model.predict(v, verbose=0)["gender"])[:, 0] for v in views], 1)
    female, first = photos.female[held_out], photos.age_first[held_out]
    offset = gender_offset(logits, female, balanced_weights(first, female))

    bias.assign(bias.numpy() + offset)
    args.run.mkdir(parents=True, exist_ok=True)
    model.save(args.run / "model.keras")

    margin = VisionConfig.gender_margin
    for name, shift in (("before", 0.0), ("after", offset)):
        p = sigmoid(logits + shift).mean(axis=1)
        b = balanced(p, np.zeros_like(first), female, first, margin)
        print(
            f"FairFace val, balanced, margin {margin}, {name}: women {100 * b['women']:.1f} %, "
            f"men {100 * b['men']:.1f} %, right of judged {100 * b['right_of_judged']:.1f} % "
            f"({100 * b['judged']:.1f} % judged)"
        )
    p = sigmoid(logits + offset).mean(axis=1)
    suggested = gender_margin(p, female, first)
    if suggested is None:
        print(f"no margin up to {MARGIN_STEPS[-1]} gets {100 * RIGHT_OF_JUDGED:.0f} % of judged faces right")
    else:
        b = balanced(p, np.zeros_like(first), female, first, suggested)
        print(
            f"vision.gender_margin for {100 * RIGHT_OF_JUDGED:.0f} % right of judged: {suggested} "
            f"({100 * b['judged']:.1f} % judged, {100 * b['right_of_judged']:.1f} % right, "
            f"women {100 * b['women']:.1f} %, men {100 * b['men']:.1f} %)"
        )
    print(f"wrote {args.run / 'model.keras'}: gender logit offset {offset:+.3f}")


if __name__ == "__main__":
    main()

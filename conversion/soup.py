"""The mean of the weights of networks fine-tuned from one start (a "model soup": Wortsman et al.,
ICML 2022): often better on photos none of them was chosen on than each one, at one network's cost.

    python -m conversion.soup --run RUN A/model.keras B/model.keras [...]

Writes RUN/model.keras; then the pipeline's last stages as for any trained network (the model
card's "Retrain"): the age head, the gender offset, int8. Tried as runs 18+22 and 18+26.
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

import numpy as np


def mean_weights(weights: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Each tensor averaged over the networks; ValueError when their shapes differ."""
    shapes = {tuple(w.shape for w in one) for one in weights}
    if len(shapes) != 1:
        raise ValueError("the networks differ in shape: a soup needs the same architecture and input size")
    return [np.mean(tensors, axis=0).astype(tensors[0].dtype) for tensors in zip(*weights, strict=True)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="folder to write the mean model.keras into")
    parser.add_argument("models", type=Path, nargs="+", help="two or more model.keras from conversion.train")
    args = parser.parse_args(argv)
    if len(args.models) < 2:
        parser.error("a soup needs at least two models")
    for path in args.models:
        if not zipfile.is_zipfile(path):
            parser.error(f"{path} is not a Keras model file: pass RUN/model.keras files from conversion.train")

    import keras

    models = [keras.models.load_model(path, compile=False) for path in args.models]
    try:
        mean = mean_weights([m.get_weights() for m in models])
    except ValueError as error:
        parser.error(f"{error} ({', '.join(map(str, args.models))})")
    models[0].set_weights(mean)
    args.run.mkdir(parents=True, exist_ok=True)
    models[0].save(args.run / "model.keras")
    print(f"the mean of {len(models)} networks -> {args.run / 'model.keras'}")


if __name__ == "__main__":
    main()

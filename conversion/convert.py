"""Full-integer int8 conversion: int8 input and outputs, integer-only ops, no float fallback.

    python -m conversion.convert --run runs/base [--out models/tflite/age_gender_int8.tflite]

Calibrates with aligned training-split crops (the representative dataset), and also writes the
float32 TFLite model beside the int8 one for the side-by-side evaluation.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from conversion.data import DEFAULT_CACHE, Prepared
from conversion.train import aligned_crops

CALIBRATION_FACES = 400


def convert(run: Path, out: Path, cache: Path = DEFAULT_CACHE) -> tuple[Path, Path]:
    import keras
    import tensorflow as tf

    from conversion.model import inference_model

    model = inference_model(keras.models.load_model(run / "model.keras", compile=False))
    size = model.input.shape[1]
    data = Prepared.load(cache)
    rng = np.random.default_rng(0)
    calibration_index = rng.choice(data.split(False), CALIBRATION_FACES, replace=False)
    calibration = aligned_crops(data, calibration_index, size).astype(np.float32)

    def representative():
        for crop in calibration:
            yield [crop[None]]

    with tempfile.TemporaryDirectory() as saved:
        model.export(saved, format="tf_saved_model", verbose=False)
        float_model = tf.lite.TFLiteConverter.from_saved_model(saved).convert()
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        int8_model = converter.convert()
    out.parent.mkdir(parents=True, exist_ok=True)
    float_path = run / "age_gender_float32.tflite"
    float_path.write_bytes(float_model)
    out.write_bytes(int8_model)
    return float_path, out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="training run folder (holds model.keras)")
    parser.add_argument("--out", type=Path, help="int8 model path (default: RUN/age_gender_int8.tflite)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args(argv)
    float_path, int8_path = convert(args.run, args.out or args.run / "age_gender_int8.tflite", args.cache)
    for path in (float_path, int8_path):
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()

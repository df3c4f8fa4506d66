"""A trainable Keras model recovered from a shipped full-integer TFLite model, so that training can
go on from the model people run even where its `model.keras` is gone (a fresh clone, another
machine): only `models/tflite/age_gender_int8.tflite` is committed.

    python -m conversion.recover --run RUN [--model FILE.tflite] [--cache DIR]

Writes RUN/model.keras, ready for `python -m conversion.train --init RUN/model.keras`. The int8
weights are dequantized (per output channel); each convolution's batch normalization, folded into
its bias by the converter, is unfolded again with the statistics of its output on UTKFace training
crops, so the model computes the same function in inference mode and nearly the same in training
mode (batch statistics). The race head, never shipped, starts at zero: it passes no gradient to
the backbone until it has learned something. Prints how far the recovered model's answers are
from the int8 model's on validation crops.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from conversion.data import DEFAULT_CACHE, Prepared
from edge.vision.model_files import AGE_GENDER_MODEL, model_path
from edge.wire.contract import MAX_AGE

STATISTICS_FACES = 512


class NotRecoverable(ValueError):
    """The TFLite file is not an int8 age/gender model of `conversion.model`'s architecture."""


@dataclass(frozen=True)
class Layer:
    """One convolution or dense layer as float arrays, in Keras's layouts."""

    kernel: np.ndarray  # conv (kh, kw, in, out); dense (in, out)
    bias: np.ndarray


def _dequantized(interpreter, details: dict[int, dict], tensor: int) -> np.ndarray:
    detail = details[tensor]
    scales = np.asarray(detail["quantization_parameters"]["scales"], np.float64)
    values = interpreter.get_tensor(tensor).astype(np.float64)
    if values.ndim == 0 or not len(scales):
        raise NotRecoverable(f"tensor {detail['name']} is not quantized: not a full-integer age/gender model")
    # Per output channel (the first axis) or one scale for the whole tensor.
    return values * scales.reshape((-1,) + (1,) * (values.ndim - 1)) if len(scales) > 1 else values * scales[0]


def read_layers(path: Path) -> tuple[list[Layer], Layer, Layer, int]:
    """The convolutions in graph order, the gender and age heads, and the input size."""
    from edge.vision.runtime import _interpreter_class

    interpreter_class = _interpreter_class()
    try:
        from ai_edge_litert.interpreter import OpResolverType

        interpreter = interpreter_class(
            str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        )
    except ImportError:  # tflite_runtime: the same interpreter, under its old name
        interpreter = interpreter_class(str(path))
    except ValueError as e:
        raise NotRecoverable(f"{path}: not a TFLite model ({e})") from e
    interpreter.allocate_tensors()
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    convs, heads = [], {}
    for op in interpreter._get_ops_details():
        if op["op_name"] not in ("CONV_2D", "FULLY_CONNECTED"):
            continue
        _, weights, bias = op["inputs"]
        try:
            kernel, b = _dequantized(interpreter, details, weights), _dequantized(interpreter, details, bias)
        except NotRecoverable as e:
            raise NotRecoverable(f"{path}: {e}") from None
        if op["op_name"] == "CONV_2D":
            convs.append(Layer(kernel.transpose(1, 2, 3, 0), b))  # TFLite's (out, kh, kw, in)
        else:
            heads[kernel.shape[0]] = Layer(kernel.T, b)  # TFLite's (out, in)
    if set(heads) != {1, MAX_AGE + 1}:
        raise NotRecoverable(f"{path}: expected a gender head (1 output) and an age head ({MAX_AGE + 1})")
    size = int(interpreter.get_input_details()[0]["shape"][1])
    return convs, heads[1], heads[MAX_AGE + 1], size


def unfolded_batch_norm(bias: np.ndarray, mean: np.ndarray, var: np.ndarray, epsilon: float) -> list[np.ndarray]:
    """Batch normalization weights (gamma, beta, moving mean, moving variance) under which a
    bias-free convolution followed by them computes conv + `bias` in inference mode, given the
    convolution's output `mean` and `var` per channel: in training mode the batch's statistics
    then stand in for those, and the layer starts out doing what the shipped one does."""
    gamma = np.sqrt(var + epsilon)
    return [gamma, bias + mean, mean, var]


def recover(path: Path, cache: Path = DEFAULT_CACHE):
    """The Keras training model (`conversion.model.build`) carrying the TFLite model's weights."""
    convs, gender, age, size = read_layers(path)  # before Keras starts: a bad file fails fast
    import keras

    from conversion.model import build
    from conversion.train import aligned_crops

    model = build(size)
    conv_layers = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    if [c.kernel.shape for c in convs] != [tuple(layer.kernel.shape) for layer in conv_layers]:
        raise NotRecoverable(f"{path}: its convolutions do not match conversion.model's at {size} px")
    norms = [model.get_layer(f"{layer.name}_bn") for layer in conv_layers]
    data = Prepared.load(cache)
    rng = np.random.default_rng(0)
    crops = aligned_crops(data, rng.choice(data.split(False), STATISTICS_FACES, replace=False), size)
    # Set each layer in turn: a convolution's input statistics depend on the layers before it.
    for conv, layer, norm in zip(convs, conv_layers, norms, strict=True):
        layer.set_weights([conv.kernel])
        probe = keras.Model(model.input, layer.output)
        out = np.asarray(probe.predict(crops.astype(np.float32), batch_size=128, verbose=0), np.float64)
        mean, var = out.mean(axis=(0, 1, 2)), out.var(axis=(0, 1, 2))
        norm.set_weights(unfolded_batch_norm(conv.bias, mean, var, norm.epsilon))
    model.get_layer("gender_logit").set_weights([gender.kernel, gender.bias])
    model.get_layer("age_logits").set_weights([age.kernel, age.bias])
    race = model.get_layer("race_logits")
    race.set_weights([np.zeros(w.shape) for w in race.get_weights()])
    return model


def agreement(model, path: Path, cache: Path = DEFAULT_CACHE, faces: int = 500) -> tuple[float, float]:
    """Mean |Δ p(female)| and mean |Δ age| between the recovered model and the TFLite one (no
    flip) on UTKFace validation crops."""
    from scipy.special import expit, softmax

    from conversion.train import aligned_crops
    from edge.vision.classify import AgeGenderModel

    tflite = AgeGenderModel(path, flip=False)
    data = Prepared.load(cache)
    crops = aligned_crops(data, data.split(True)[:faces], tflite.size)
    out = model.predict(crops.astype(np.float32), batch_size=128, verbose=0)
    p_keras = expit(out["gender"][:, 0])
    age_keras = softmax(out["age"], axis=1) @ np.arange(MAX_AGE + 1)
    estimates = [tflite(crop) for crop in crops]
    p_tflite = np.array([e.p_female for e in estimates])
    age_tflite = np.array([e.age for e in estimates])
    return float(np.abs(p_keras - p_tflite).mean()), float(np.abs(age_keras - age_tflite).mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="folder to write model.keras into")
    parser.add_argument("--model", type=Path, help="an int8 age/gender .tflite (default: the shipped one)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="prepared UTKFace (conversion.prepare)")
    args = parser.parse_args(argv)
    path = args.model or model_path(AGE_GENDER_MODEL)
    if not path.is_file():
        parser.error(f"{path} not found: pass --model, an int8 age/gender .tflite")
    try:
        model = recover(path, args.cache)
        p_diff, age_diff = agreement(model, path, args.cache)
    except (NotRecoverable, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    args.run.mkdir(parents=True, exist_ok=True)
    model.save(args.run / "model.keras")
    agree = f"mean |Δp(female)| {p_diff:.4f}, mean |Δage| {age_diff:.2f} y"
    print(f"wrote {args.run / 'model.keras'}: against {path.name}, {agree}")


if __name__ == "__main__":
    main()

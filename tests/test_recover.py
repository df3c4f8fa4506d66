"""conversion.recover reads the shipped int8 model back into float layers that compute what it
computes (checked here in NumPy: the Keras side needs the train extra)."""

from pathlib import Path

import numpy as np
import pytest

from conversion.recover import NotRecoverable, read_layers, unfolded_batch_norm
from edge.vision.align import align_face, template_keypoints
from edge.vision.classify import AgeGenderModel
from edge.vision.model_files import AGE_GENDER_MODEL, model_path

# conversion.model's stages: (residual blocks) after each stride-2 convolution.
BLOCKS = (1, 2, 2, 1)


def conv(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, stride: int) -> np.ndarray:
    """A 3x3 convolution with TensorFlow's "same" padding."""
    h, w, _ = x.shape
    out_h, out_w = -(-h // stride), -(-w // stride)
    pad_h, pad_w = max((out_h - 1) * stride + 3 - h, 0), max((out_w - 1) * stride + 3 - w, 0)
    x = np.pad(x, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(0, 1))[::stride, ::stride]
    return np.einsum("hwcij,ijco->hwo", windows, kernel) + bias


def forward(path: Path, crop: np.ndarray) -> tuple[float, float]:
    convs, gender, age, _ = read_layers(path)
    layers = iter(convs)
    x = crop.astype(np.float64) / 127.5 - 1
    for blocks in BLOCKS:
        down = next(layers)
        x = np.maximum(conv(x, down.kernel, down.bias, 2), 0)
        for _ in range(blocks):
            block = next(layers)
            x = np.maximum(x + conv(x, block.kernel, block.bias, 1), 0)
    features = x.mean(axis=(0, 1))
    logits = features @ age.kernel + age.bias
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    return float(1 / (1 + np.exp(-(features @ gender.kernel + gender.bias)[0]))), float(probs @ np.arange(len(probs)))


def test_the_recovered_layers_compute_what_the_int8_model_does(faces):
    model = AgeGenderModel(flip=False)
    for face in faces[:4]:
        crop = align_face(face, template_keypoints(*face.shape[1::-1]), model.size, context=model.context)
        estimate = model(crop)
        p_female, age = forward(model_path(AGE_GENDER_MODEL), crop)
        # The int8 model rounds every activation; the float layers do not.
        assert abs(p_female - estimate.p_female) < 0.02
        assert abs(age - estimate.age) < 1.0


def test_batch_norm_is_unfolded_to_the_same_function():
    rng = np.random.default_rng(0)
    out = rng.normal(3.0, 2.0, (1000, 4))
    bias = rng.normal(size=4)
    gamma, beta, mean, var = unfolded_batch_norm(bias, out.mean(0), out.var(0), 1e-3)
    assert np.allclose(gamma * (out - mean) / np.sqrt(var + 1e-3) + beta, out + bias)


@pytest.mark.parametrize("name", ["faceness.tflite", "not-a-model.tflite"])
def test_a_file_that_is_not_the_age_gender_model_is_refused(name: str, tmp_path: Path):
    path = model_path(AGE_GENDER_MODEL).parent / name
    if not path.exists():
        path = tmp_path / name
        path.write_text("not a model")
    with pytest.raises(NotRecoverable, match=name):
        read_layers(path)

"""Age and gender from an aligned face crop, with our own int8 TFLite model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.vision.align import context_of
from edge.vision.model_files import AGE_GENDER_MODEL, model_path
from edge.vision.runtime import TFLiteModel
from edge.wire.contract import AGE_BANDS, MAX_AGE, gender_of, likeliest_band

# The first year of each of AGE_BANDS (decades, the last open-ended).
BAND_STARTS = np.arange(len(AGE_BANDS)) * 10


def band_masses(age_probs: np.ndarray) -> tuple[float, ...]:
    """The probability of each age band, from a distribution over 0..MAX_AGE years."""
    masses = np.add.reduceat(age_probs.astype(np.float64), BAND_STARTS)
    return tuple(float(m) for m in masses / max(float(masses.sum()), 1e-12))


@dataclass(frozen=True)
class AgeGender:
    """One estimate: probability the person is female, age in years (the distribution's mean), and
    the probability of each age band."""

    p_female: float
    age: float
    bands: tuple[float, ...]

    @property
    def gender(self) -> str:
        return gender_of(self.p_female)

    @property
    def age_band(self) -> str:
        # The likeliest band, not the band of the mean age: a mean is pulled towards the middle
        # years, so children and the old landed a band too near 30 (on FairFace's val photos,
        # weighted band by band as fairface-dev is, 57.3 → 60.4 % in our band).
        return likeliest_band(self.bands)


class AgeGenderModel:
    """Runs the shipped model on aligned BGR crops (see `edge.align.align_face`).

    `flip=True` averages the crop and its mirror image (test-time flip): two inferences per face,
    measurably more accurate (see models/tflite/MODEL_CARD.md)."""

    def __init__(self, path: str | Path | None = None, num_threads: int = 1, flip: bool = True) -> None:
        self.net = TFLiteModel(path or model_path(AGE_GENDER_MODEL), num_threads=num_threads)
        self.size = self.net.input_shape[1]
        self.context = context_of(self.size)
        self.flip = flip
        self._bins = np.arange(MAX_AGE + 1, dtype=np.float32)
        gender_output = [i for i, shape in enumerate(self.net.output_shapes) if shape[-1] == 1]
        if len(gender_output) != 1:
            raise RuntimeError(f"{self.net.path}: expected outputs (1, 1) and (1, {MAX_AGE + 1})")
        self._gender_output = gender_output[0]

    def probabilities(self, crop: np.ndarray) -> tuple[float, np.ndarray]:
        """p(female) and the age distribution over 0..MAX_AGE for one crop (no flip)."""
        outputs = self.net(self.net.quantize_input(crop[None].astype(np.float32)))
        return float(outputs[self._gender_output][0, 0]), outputs[1 - self._gender_output][0]

    def __call__(self, crop: np.ndarray) -> AgeGender:
        if crop.shape[:2] != (self.size, self.size):
            raise ValueError(f"crop is {crop.shape[:2]}, the model expects {self.size}x{self.size}")
        p_female, age_probs = self.probabilities(crop)
        if self.flip:
            p_mirror, age_mirror = self.probabilities(np.ascontiguousarray(crop[:, ::-1]))
            p_female, age_probs = (p_female + p_mirror) / 2, (age_probs + age_mirror) / 2
        age = float(age_probs @ self._bins / max(float(age_probs.sum()), 1e-6))
        return AgeGender(p_female, age, band_masses(age_probs))

"""Where shipped models live, and the detector files' provenance (extracted at set-up, hash-checked)."""

from __future__ import annotations

import os
from pathlib import Path

# The detector is MediaPipe's BlazeFace (Apache-2.0), taken from this exact wheel at set-up.
MEDIAPIPE_WHEEL = "mediapipe==0.10.14"
MEDIAPIPE_MEMBER_DIR = "mediapipe/modules/face_detection/"
DETECTOR_FILES = {
    "face_detection_full_range_sparse.tflite": "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
    "face_detection_short_range.tflite": "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
}
AGE_GENDER_MODEL = "age_gender_int8.tflite"
# Our face-or-not classifier, the second look's last check (edge/vision/faceness.py).
FACENESS_MODEL = "faceness.tflite"
# Our models and their cards: they ship in the checkout's models/tflite (deploy/install.sh copies them).
OWN_MODEL_FILES = (AGE_GENDER_MODEL, "MODEL_CARD.md", FACENESS_MODEL, "FACENESS_CARD.md")


def models_dir() -> Path:
    """`AICCTV_MODELS_DIR` if set, else the repository's (or installed tree's) `models/tflite`."""
    override = os.environ.get("AICCTV_MODELS_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "models" / "tflite"


def model_path(name: str) -> Path:
    return models_dir() / name

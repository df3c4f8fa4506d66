import hashlib
import zipfile

import pytest

from edge.vision import fetch
from edge.vision.model_files import DETECTOR_FILES, MEDIAPIPE_MEMBER_DIR, models_dir


def test_installed_detector_models_match_their_pinned_hashes():
    assert fetch.missing_models(models_dir()) == []


def test_fetch_extracts_from_a_wheel_and_checks_hashes(tmp_path, monkeypatch):
    wheel = tmp_path / "wheels" / "mediapipe-0.10.14-test.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as archive:
        for name in DETECTOR_FILES:
            archive.writestr(MEDIAPIPE_MEMBER_DIR + name, (models_dir() / name).read_bytes())
    dest = tmp_path / "models"
    assert sorted(fetch.fetch(dest, cache=wheel.parent)) == sorted(DETECTOR_FILES)
    assert fetch.missing_models(dest) == []
    assert fetch.fetch(dest, cache=wheel.parent) == []  # already there: nothing to do


def test_a_tampered_model_is_refused(tmp_path):
    wheel = tmp_path / "mediapipe-0.10.14-bad.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name in DETECTOR_FILES:
            archive.writestr(MEDIAPIPE_MEMBER_DIR + name, b"not the model")
    with pytest.raises(RuntimeError, match=hashlib.sha256(b"not the model").hexdigest()):
        fetch.fetch(tmp_path / "models", cache=tmp_path)

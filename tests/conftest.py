from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
FACE_FILES = sorted((FIXTURES / "faces").glob("*.jpg"))


def face_label(path: Path) -> tuple[int, int]:
    """(age, female) from a UTKFace-style file name."""
    age, female = path.name.split("_")[:2]
    return int(age), int(female)


# Each fixture face, then each one's mirror image: the tests need more faces than the few
# public-domain portraits there are (tests/fixtures/README.md).
FACE_LABELS = [face_label(p) for p in FACE_FILES] * 2


def background(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A plain, textured, face-free scene."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(60, 160, width, dtype=np.float32)[None, :, None]
    image = np.repeat(np.repeat(ramp, height, axis=0), 3, axis=2) + rng.normal(0, 6, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def place(frame: np.ndarray, face: np.ndarray, x: int, y: int, width: int) -> tuple[int, int, int, int]:
    """Paste a face crop scaled to `width` at (x, y); returns its square (x1, y1, x2, y2)."""
    interpolation = cv2.INTER_AREA if width < face.shape[1] else cv2.INTER_LINEAR
    frame[y : y + width, x : x + width] = cv2.resize(face, (width, width), interpolation=interpolation)
    return x, y, x + width, y + width


@pytest.fixture(scope="session")
def faces() -> list[np.ndarray]:
    """The fixture faces, then their mirror images (labelled by `FACE_LABELS`)."""
    assert FACE_FILES, "tests/fixtures/faces is empty"
    originals = [cv2.imread(str(p)) for p in FACE_FILES]
    return originals + [np.ascontiguousarray(face[:, ::-1]) for face in originals]


@pytest.fixture(scope="session")
def sample_clip(tmp_path_factory) -> tuple[Path, dict]:
    """A 6-visitor clip rendered from the fixture faces, and its ground truth."""
    import json

    from bench.clipgen import generate

    truth = generate(tmp_path_factory.mktemp("clip"), seed=2, visitors=6, data=FIXTURES / "faces")
    return truth.with_name("clip.mp4"), json.loads(truth.read_text())


@pytest.fixture(scope="session")
def analyzer():
    from edge import Analyzer

    return Analyzer()


@pytest.fixture
def broker(tmp_path):
    """A real Mosquitto broker of our own on a free port (see tests/services.py)."""
    from bench.services import Mosquitto

    mosquitto = Mosquitto(tmp_path / "broker")
    mosquitto.start()
    yield mosquitto
    mosquitto.stop()


@pytest.fixture
def postgres_url():
    """A fresh database on a real PostgreSQL server, dropped afterwards."""
    from bench.services import drop_database, postgres_database

    url = postgres_database()
    yield url
    drop_database(url)


CACHE_SIZE = 200


def write_caches(cache: Path, fairface: bool = False) -> None:
    """Training caches (`conversion.prepare`, `conversion.photos`) of the fixture faces, the last
    face of each held out: UTKFace-like and LFW-like (no age or race), and with `fairface` a
    FairFace-like set whose ages are the faces' decades and whose races are all "white"."""
    from edge.vision.align import template_keypoints

    images = np.stack([cv2.resize(cv2.imread(str(f)), (CACHE_SIZE, CACHE_SIZE)) for f in FACE_FILES])
    n = len(images)
    keypoints = np.repeat(template_keypoints(CACHE_SIZE, CACHE_SIZE)[None], n, axis=0)
    ages = np.array([age for age, _ in FACE_LABELS[:n]], np.int16)
    female = np.array([f for _, f in FACE_LABELS[:n]], np.int8)
    held_out = np.arange(n) == n - 1
    sets = {
        "utkface": {
            "age": ages,
            "race": np.zeros(n, np.int8),
            "keypoint_source": np.full(n, 2, np.int8),
            "validation": held_out,
        },
        "lfw": {
            "age_first": np.full(n, -1, np.int16),
            "age_last": np.full(n, -1, np.int16),
            "race": np.full(n, -1, np.int8),
            "validation": held_out.astype(np.int8),
        },
    }
    if fairface:
        sets["fairface"] = {
            "age_first": ages // 10 * 10,
            "age_last": ages // 10 * 10 + 9,
            "race": np.zeros(n, np.int8),
            "validation": np.ones(n, np.int8),
        }
    for name, meta in sets.items():
        (cache / name).mkdir(parents=True)
        np.save(cache / name / "images.npy", images)
        files = np.array([f.name for f in FACE_FILES])
        np.savez(cache / name / "meta.npz", files=files, female=female, keypoints=keypoints, **meta)

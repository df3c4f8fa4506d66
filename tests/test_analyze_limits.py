"""`aicctv analyze` on hostile input: every bad option is a usage error (exit 2, one line), an
oversized image is refused under a cap, and odd file names or cut files never crash the run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import FACE_FILES

REPO = Path(__file__).resolve().parent.parent


def analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli.main", "analyze", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--min-face", "0"], "vision.min_face = 0: must be between 8 and 4096"),
        (["--min-face", "-5"], "vision.min_face = -5: must be between 8 and 4096"),
        (["--threads", "0"], "vision.threads = 0: must be between 1 and 64"),
        (["--threads", "100000"], "vision.threads = 100000: must be between 1 and 64"),
        (["--score", "5"], "vision.score = 5.0: must be between 0 and 1"),
        (["--score", "nan"], "vision.score = nan: must be between 0 and 1"),
        (["--max-pixels", "0"], "--max-pixels 0: must be between 1 and"),
    ],
)
def test_bad_options_are_usage_errors(tmp_path, option, message):
    done = analyze(str(FACE_FILES[0]), *option, cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_file_name_that_is_not_utf8_is_analysed(tmp_path):
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.jpg"))
    shutil.copy(FACE_FILES[0], odd)
    done = analyze(os.fsdecode(bytes(tmp_path)), "--json", "--assume-face", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert '"gender"' in done.stdout and "caf\\udce9.jpg" in done.stdout


def test_an_image_over_the_pixel_cap_is_refused_quickly(tmp_path):
    big = tmp_path / "big.png"
    cv2.imwrite(str(big), np.zeros((6000, 6000, 3), np.uint8))  # 36 Mpx, a small file
    done = analyze(str(big), "--max-pixels", "10000000", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: {big}: more than 10,000,000 pixels (--max-pixels); raise it to analyse this image"
    )


def test_a_cut_file_is_never_analysed_silently(tmp_path):
    data = Path(FACE_FILES[0]).read_bytes()
    for share in (0.3, 0.9, 0.99):
        cut = tmp_path / f"cut{share}.jpg"
        cut.write_bytes(data[: int(len(data) * share)])
        done = analyze(str(cut), "--json", "--assume-face", cwd=tmp_path)
        said = done.stderr.strip().splitlines()
        assert said and said[-1].endswith(("the file is cut short; analysed what could be decoded", "format)")), said

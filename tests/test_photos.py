"""Reading real photo sets' labels for training (`conversion.photos`)."""

import re
from pathlib import Path

import numpy as np
import pytest

from conversion.photos import _rows, _square, _years


def test_fairface_is_read_from_its_own_release(tmp_path: Path):
    """FairFace's two CSVs as released (or as a spreadsheet saved them), with the train images
    that overlap its hidden test set (numbers up to 7,688) left out."""
    header = "file,age,gender,race,service_test\n"
    (tmp_path / "fairface_label_train.csv").write_text(
        header + "train/7688.jpg,20-29,Male,White,True\ntrain/7689.jpg,03-Sep,Female,Indian,False\n"
    )
    (tmp_path / "fairface_label_val.csv").write_text(header + "val/1.jpg,Oct-19,Male,East Asian,False\n")
    rows = _rows("fairface", tmp_path)
    assert [(r["file"], r["age"], r["gender"]) for r in rows] == [
        ("train/7689.jpg", "3-9", "Female"),
        ("val/1.jpg", "10-19", "Male"),
    ]


def test_a_folder_without_labels_is_refused_with_the_fix(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="pass --data DIR"):
        _rows("lfw", tmp_path)


def test_labels_without_a_gender_column_are_refused(tmp_path: Path):
    (tmp_path / "labels.csv").write_text("file,age\ntrain/9000.jpg,20-29\n")
    with pytest.raises(ValueError, match="no gender column"):
        _rows("fairface", tmp_path)


def test_all_age_faces_is_read_from_its_image_sets(tmp_path: Path):
    """All-Age-Faces' own lists: the age in years is in the file name, gender 0 is female."""
    (tmp_path / "image sets").mkdir()
    (tmp_path / "image sets" / "train.txt").write_text("00000A02.jpg 0\n07381A65.jpg 1\n")
    (tmp_path / "image sets" / "val.txt").write_text("00004A31.jpg 0\n\n")
    rows = _rows("aaf", tmp_path)
    assert [(r["file"], r["age"], r["gender"]) for r in rows] == [
        ("00000A02.jpg", "2", "Female"),
        ("07381A65.jpg", "65", "Male"),
        ("00004A31.jpg", "31", "Female"),
    ]
    assert [_years(r["age"]) for r in rows] == [(2, 2), (65, 65), (31, 31)]
    assert _years("more than 70") == (70, 90) and _years("") == (-1, -1)


def test_a_malformed_all_age_faces_line_is_named(tmp_path: Path):
    (tmp_path / "image sets").mkdir()
    (tmp_path / "image sets" / "train.txt").write_text("00000A02.jpg 0\n00001.jpg female\n")
    (tmp_path / "image sets" / "val.txt").write_text("")
    with pytest.raises(ValueError, match=r"train.txt:2: expected"):
        _rows("aaf", tmp_path)


def test_photos_of_other_shapes_are_padded_to_squares_not_squeezed():
    """A portrait's face keeps its proportions: the sides are filled with the edge pixels."""
    portrait = np.zeros((340, 300, 3), np.uint8)
    portrait[:, 0] = 50
    portrait[:, 150] = 255
    square = _square(portrait, 340)
    assert square.shape == (340, 340, 3)
    assert (square[:, :21] == 50).all() and (square[:, 170] == 255).all()
    assert _square(square, 170).shape == (170, 170, 3)


@pytest.mark.parametrize("meta", [None, b"garbage", b"PK\x03\x04 cut short"])
def test_a_missing_or_broken_cache_names_the_command_that_makes_it(tmp_path: Path, meta: bytes | None):
    """Missing, written by something else, or cut short: one error that says how to make it again."""
    from conversion.data import CacheError, Prepared
    from conversion.photos import Photos

    for folder in (tmp_path / "utkface", tmp_path / "lfw"):
        folder.mkdir()
        if meta is not None:
            (folder / "meta.npz").write_bytes(meta)
    with pytest.raises(CacheError, match=re.escape("run `python -m conversion.prepare`")):
        Prepared.load(tmp_path)
    with pytest.raises(CacheError, match=re.escape("run `python -m conversion.photos lfw`")):
        Photos.load("lfw", tmp_path)

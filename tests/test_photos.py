"""Reading real photo sets' labels for training (`conversion.photos`)."""

from pathlib import Path

import pytest

from conversion.photos import _rows


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

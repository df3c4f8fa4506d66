"""conversion.soup: the mean of networks' weights (checked in NumPy: the Keras side needs the train extra)."""

from pathlib import Path

import numpy as np
import pytest

from conversion.soup import main, mean_weights


def test_each_tensor_is_the_mean_of_the_networks():
    a = [np.zeros((2, 3), np.float32), np.array([1, 3], np.int64)]
    b = [np.full((2, 3), 2, np.float32), np.array([3, 5], np.int64)]
    mean = mean_weights([a, b])
    assert np.array_equal(mean[0], np.ones((2, 3))) and mean[0].dtype == np.float32
    assert np.array_equal(mean[1], [2, 4])


def test_networks_of_different_shapes_do_not_mix():
    with pytest.raises(ValueError, match="same architecture"):
        mean_weights([[np.zeros(3)], [np.zeros(4)]])


def test_a_file_that_is_no_model_is_refused_in_one_line(tmp_path: Path, capsys):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a model")
    with pytest.raises(SystemExit) as exit_:
        main(["--run", str(tmp_path / "soup"), str(bad), str(bad)])
    assert exit_.value.code == 2
    assert "is not a Keras model file" in capsys.readouterr().err


def test_one_model_is_no_soup(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--run", str(tmp_path / "soup"), str(tmp_path / "a.keras")])
    assert exit_.value.code == 2 and "at least two models" in capsys.readouterr().err


def test_the_pipeline_refuses_a_seed_given_twice_before_any_work(tmp_path: Path, capsys):
    from conversion.pipeline import main as pipeline

    with pytest.raises(SystemExit) as exit_:
        pipeline(["--run", str(tmp_path / "run"), "--cache", str(tmp_path / "no-cache"), "--seeds", "7", "8", "7"])
    assert exit_.value.code == 2 and "give each seed once" in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not (tmp_path / "no-cache").exists()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--child-weight", "0"], "--child-weight: must be a finite number above 0"),
        (["--seeds", "7", "-1"], "--seeds: must be 0 or more"),
    ],
)
def test_the_pipeline_refuses_a_bad_number_before_any_work(option: list[str], message: str, tmp_path: Path, capsys):
    from conversion.pipeline import main as pipeline

    with pytest.raises(SystemExit) as exit_:
        pipeline(["--run", str(tmp_path / "run"), "--cache", str(tmp_path / "no-cache"), *option])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not (tmp_path / "no-cache").exists()


def test_the_pipeline_will_not_pass_off_a_fine_tune_made_with_other_seeds(tmp_path: Path, capsys):
    from conversion.pipeline import SEEDS_RECORD
    from conversion.pipeline import main as pipeline

    robust = tmp_path / "run" / "robust"
    robust.mkdir(parents=True)
    (robust / "model.keras").write_bytes(b"a soup of seeds 7 and 8")
    (robust / SEEDS_RECORD).write_text("7 8\n")
    with pytest.raises(SystemExit) as exit_:
        pipeline(["--run", str(tmp_path / "run"), "--cache", str(tmp_path / "no-cache"), "--seeds", "7", "8", "9"])
    assert exit_.value.code == 2
    assert f"{robust} was fine-tuned with --seeds 7 8, not 7 8 9" in capsys.readouterr().err
    assert not (tmp_path / "no-cache").exists()

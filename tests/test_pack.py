"""Training's data path without TensorFlow: the compact cache copy an accelerator host trains from
(`conversion.pack`) and the augmented batches, made in worker processes or not."""

import argparse
from pathlib import Path

import numpy as np
import pytest
from conftest import FACE_FILES, write_caches

from conversion.data import Prepared
from conversion.pack import main as pack_main
from conversion.photos import Photos
from conversion.train import Batches, Pool
from edge.vision.align import align_face, context_of


@pytest.fixture
def caches(tmp_path: Path) -> Path:
    write_caches(tmp_path / "cache")
    return tmp_path / "cache"


def test_a_packed_cache_trains_like_the_original(caches: Path, tmp_path: Path):
    pack_main(["pack", "--out", str(tmp_path / "pack"), "--cache", str(caches), "--sets", "utkface", "lfw"])
    pack_main(["unpack", str(tmp_path / "pack"), "--cache", str(tmp_path / "copy")])
    before, after = Prepared.load(caches), Prepared.load(tmp_path / "copy")
    assert list(after.files) == list(before.files)
    assert (after.age == before.age).all() and (after.validation == before.validation).all()
    assert Photos.load("lfw", tmp_path / "copy").split(True).tolist() == [len(FACE_FILES) - 1]
    # The keypoints moved into the smaller frame: the runtime's crop of the copy is the crop of
    # the original, up to resampling and compression.
    for i in range(len(before.files)):
        crops = [align_face(d.images[i], d.keypoints[i], 80, context=context_of(80)) for d in (before, after)]
        assert np.abs(crops[0].astype(int) - crops[1]).mean() < 6


def test_pack_refuses_a_missing_cache(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as stop:
        pack_main(["pack", "--out", str(tmp_path / "pack"), "--cache", str(tmp_path / "none"), "--sets", "lfw"])
    assert stop.value.code == 2
    assert "conversion.photos lfw" in capsys.readouterr().err


def test_batches_are_the_same_however_many_workers_make_them(caches: Path):
    args = argparse.Namespace(
        cache=caches, photos=["lfw"], balance=True, child_weight=2.0, photo_ages=True, batch=2, seed=3, size=64,
        robust=1.0, epochs=2, balance_bands=True, turned_weight=1.0,
    )  # fmt: skip
    pool = Pool.assemble(args, quiet=True)
    alone = list(Batches(pool, args, workers=1))
    assert len(alone) == 2 * Batches(pool, args, workers=1).steps
    shared = list(Batches(pool, args, workers=2))
    for (x1, y1, w1), (x2, y2, w2) in zip(alone, shared, strict=True):
        assert x1.dtype == np.uint8 and (x1 == x2).all()
        assert all((y1[k] == y2[k]).all() for k in y1) and all((w1[k] == w2[k]).all() for k in w1)
    # LFW has no ages: its faces teach the age head nothing.
    assert pool.sample_weight is not None and pool.sample_weight["age"][pool.source == 1].sum() == 0


def test_unpack_refuses_what_pack_did_not_write(caches: Path, tmp_path: Path, capsys):
    """Random bytes, and a real pack whose images were damaged on the way: one line, exit 2."""
    (tmp_path / "noise.npz").write_bytes(np.random.default_rng(0).bytes(5000))
    pack_main(["pack", "--out", str(tmp_path / "pack"), "--cache", str(caches), "--sets", "lfw"])
    packed = dict(np.load(tmp_path / "pack" / "lfw.npz"))
    packed["blob"] = np.zeros_like(packed["blob"])
    np.savez(tmp_path / "damaged.npz", **packed)
    for name, says in (("noise.npz", "is not a packed set"), ("damaged.npz", "face 0 is damaged")):
        with pytest.raises(SystemExit) as stop:
            pack_main(["unpack", str(tmp_path / name), "--cache", str(tmp_path / "copy")])
        assert stop.value.code == 2
        assert says in capsys.readouterr().err


def test_band_balance_weighs_every_band_of_a_set_alike():
    from conversion.train import band_balance

    sets = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1])
    bands = np.array([2, 2, 2, 2, 0, 6, -1, -1, 3])
    w = band_balance(sets, bands)
    # Set 0: 6 faces over 3 bands, 2 faces' worth per band.
    assert np.allclose(w[:6], [0.5, 0.5, 0.5, 0.5, 2.0, 2.0])
    # Faces without a band keep 1; a band of one face in a set of one is not weighted more.
    assert np.allclose(w[6:], [1.0, 1.0, 1.0])
    many = np.r_[np.zeros(100, int), [1]]
    assert band_balance(np.zeros(101, int), many)[-1] == 4.0


def test_faces_turned_aside_weigh_more_in_gender_loss(caches: Path):
    from conversion.train import TURNED_AT, head_turn

    meta = dict(np.load(caches / "lfw" / "meta.npz"))
    keypoints = meta["keypoints"].copy()
    eyes = keypoints[0, :2]
    # The nose moved a quarter of the eye distance aside: a face turned about 15 degrees.
    keypoints[0, 2, 0] += 0.25 * np.linalg.norm(eyes[1] - eyes[0])
    np.savez(caches / "lfw" / "meta.npz", **{**meta, "keypoints": keypoints})
    turn = head_turn(keypoints)
    assert turn[0] == pytest.approx(0.25, abs=0.02) and (turn[1:] < TURNED_AT).all()

    def gender_weights(turned_weight: float) -> np.ndarray:
        args = argparse.Namespace(
            cache=caches, photos=["lfw"], balance=False, child_weight=1.0, photo_ages=True, balance_bands=False,
            turned_weight=turned_weight,
        )  # fmt: skip
        pool = Pool.assemble(args, quiet=True)
        assert pool.sample_weight is not None
        return pool.sample_weight["gender"][(pool.source == 1) & (pool.rows == 0)], pool.sample_weight["gender"]

    turned, weights = gender_weights(3.0)
    low, high = np.unique(weights)
    assert turned[0] == high == pytest.approx(3 * low)
    assert weights.mean() == pytest.approx(1.0)
    assert (gender_weights(1.0)[1] == 1).all()


@pytest.mark.parametrize("option", ["--turned-weight", "--child-weight"])
@pytest.mark.parametrize("weight", ["0", "-1", "nan", "inf", "two"])
def test_a_loss_weight_that_is_not_a_positive_number_is_refused(option: str, weight: str, capsys):
    from conversion.train import main as train_main

    with pytest.raises(SystemExit) as stop:
        train_main(["--run", "unused", option, weight])
    assert stop.value.code == 2
    expected = "is not a number" if weight == "two" else "must be a finite number above 0"
    assert f"{option}: " in (err := capsys.readouterr().err) and expected in err

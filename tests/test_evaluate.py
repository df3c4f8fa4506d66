"""conversion.evaluate's figures weighted as fairface-dev is built (each age band x gender alike), and
by how far the face is turned."""

import json

import numpy as np
import pytest

from conversion.evaluate import balanced, bar_odds, gender_margin, odds_margin


def test_every_band_and_gender_weighs_alike_however_many_photos_it_has():
    # 0-2 year olds: 2 girls, both wrong, and 1 boy, right; 20-29: 6 women and 1 man, all right.
    first = np.array([0, 0, 0, 20, 20, 20, 20, 20, 20, 20])
    female = np.array([1, 1, 0, 1, 1, 1, 1, 1, 1, 0])
    p_female = np.array([0.1, 0.2, 0.1, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.1])
    band = np.array([0, 1, 0, 2, 2, 2, 2, 2, 2, 2])  # ours: 0-9 twice right, 20-29 all right
    b = balanced(p_female, band, female, first, margin=0.1)
    assert b["judged"] == 1.0
    # Four cells, one of them all wrong: 3 of 4 whatever the cells' sizes (unweighted: 8 of 10).
    assert b["right_of_judged"] == pytest.approx(0.75)
    assert b["women"] == pytest.approx(0.5)
    assert b["men"] == 1.0
    assert b["children_0_9"] == pytest.approx(0.5)
    assert b["our_age_band"] == pytest.approx((0.5 + 1 + 1 + 1) / 4)


def test_ages_in_years_weigh_as_the_fairface_band_that_holds_them():
    """All-Age-Faces gives years, not bands: three women of 21, 25 and 29 are one 20-29 cell."""
    first = np.array([21, 25, 29, 5])
    female = np.ones(4, int)
    p_female = np.array([0.9, 0.9, 0.9, 0.1])
    b = balanced(p_female, np.array([2, 2, 2, 0]), female, first, margin=0.1)
    assert b["right_of_judged"] == pytest.approx(0.5)


def test_a_face_within_the_margin_is_not_judged_and_not_scored():
    first = np.array([30, 30, 30, 30])
    female = np.array([1, 1, 0, 0])
    p_female = np.array([0.55, 0.9, 0.45, 0.7])  # the first and third not sure; the last wrong
    b = balanced(p_female, np.full(4, 3), female, first, margin=0.1)
    assert b["judged"] == pytest.approx(0.5)
    assert b["right_of_judged"] == pytest.approx(0.5)
    assert (b["women"], b["men"]) == (1.0, 0.0)


def test_the_gender_offset_undoes_a_lean_to_men():
    from conversion.calibrate import gender_offset, sigmoid

    rng = np.random.default_rng(0)
    female = rng.integers(0, 2, 4000)
    # Logits of a model sure in proportion to the truth, then leaning 0.5 to "man"; two views.
    truth = np.where(female == 1, 2.0, -2.0)
    logits = truth[:, None] + rng.normal(0, 2.0, (4000, 2)) - 0.5
    offset = gender_offset(logits, female, np.full(4000, 1 / 4000))
    assert offset == pytest.approx(0.5, abs=0.15)
    p = sigmoid(logits + offset).mean(axis=1)
    right = (p >= 0.5) == (female == 1)
    assert abs(right[female == 1].mean() - right[female == 0].mean()) < 0.03


def test_the_margin_is_the_smallest_that_gets_nine_in_ten_judged_faces_right():
    # Four women and five men, one of each wrong and doubtful: the woman 0.063 from 0.5, the man 0.077.
    female = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0])
    p_female = np.array([0.9, 0.8, 0.7, 0.437, 0.1, 0.2, 0.3, 0.577, 0.35])
    first = np.full(9, 30)
    # Margin 0: 77.5 % right (women and men weigh alike); from 0.065 the woman is not judged
    # (88.6 %); from 0.08 neither is, and every face judged is right.
    assert gender_margin(p_female, female, first) == pytest.approx(0.08)
    assert gender_margin(p_female, female, first, right=0.8) == pytest.approx(0.065)
    assert gender_margin(np.full(4, 0.9), np.array([0, 0, 1, 1]), np.full(4, 30)) is None


@pytest.mark.parametrize("content", [None, b"not a model"])
def test_calibrate_refuses_a_file_that_is_no_keras_model_in_one_line(tmp_path, capsys, content):
    from conversion.calibrate import main

    init = tmp_path / "model.keras"
    if content is not None:
        init.write_bytes(content)
    with pytest.raises(SystemExit) as exit_:
        main(["--init", str(init), "--run", str(tmp_path / "out"), "--cache", str(tmp_path)])
    assert exit_.value.code == 2
    assert "is not a Keras model file" in capsys.readouterr().err


def test_real_photos_are_scored_by_how_far_the_face_is_turned():
    from conversion.evaluate import by_turn

    right = np.array([True, True, False, True, False])
    turn = np.array([0.0, 0.05, 0.15, 0.25, 0.6])
    cells = by_turn(right, None, turn)
    assert list(cells) == ["head turn 0-0.1", "head turn 0.1-0.2", "head turn 0.2-0.3", "head turn 0.3+"]
    assert [c["faces"] for c in cells.values()] == [2, 1, 1, 1]
    assert [c["gender_accuracy"] for c in cells.values()] == [1.0, 0.0, 1.0, 0.0]
    assert "our_age_band" not in cells["head turn 0-0.1"]
    empty = by_turn(right[:2], right[:2], turn[:2])["head turn 0.3+"]
    assert empty == {"faces": 0, "gender_accuracy": None, "our_age_band": None}


def test_the_report_scores_real_photos_by_head_turn_and_race(tmp_path):
    """The shipped model through `evaluate` and `report` on caches of the fixture faces."""
    from conftest import FACE_FILES, write_caches

    from conversion.evaluate import evaluate, report
    from edge.vision.model_files import AGE_GENDER_MODEL, model_path

    write_caches(tmp_path, fairface=True)
    results = evaluate({"int8": model_path(AGE_GENDER_MODEL)}, flip=False, cache=tmp_path)
    fairface = results["models"]["int8"]["fairface"]
    # The fixture faces are framed as UTKFace's: frontal, every one in the first group.
    assert fairface["by_turn"]["head turn 0-0.1"]["faces"] == len(FACE_FILES)
    assert fairface["by_race"]["white"]["faces"] == len(FACE_FILES)
    assert "by_race" not in results["models"]["int8"]["lfw"]
    text = report(results)
    assert "[fairface] by turn" in text and "[fairface] by race" in text and "[lfw] by turn" in text
    assert f"[fairface]   head turn 0-0.1 ({len(FACE_FILES)})" in text
    assert "[fairface]   head turn 0.3+ (0)" in text
    assert "[fairface] age mix off: likeliest / summed" in text and "[lfw] age mix" not in text
    assert "[fairface] age read (true), per band" in text and "[lfw] age read" not in text
    for mix in (results["models"]["int8"]["age_mix"], fairface["age_mix"]):
        assert 0 <= mix["likeliest"] <= 1 and 0 <= mix["summed"] <= 1


def test_every_model_is_scored_on_the_same_faces_race_by_race(tmp_path):
    """Two models, as the pipeline evaluates float32 and int8: the second one's UTKFace race
    groups are UTKFace's, not the last real photo set's (that crashed the pipeline once All-Age-
    Faces, another size, was prepared)."""
    from conftest import write_caches

    from conversion.evaluate import evaluate
    from edge.vision.model_files import AGE_GENDER_MODEL, model_path

    write_caches(tmp_path, fairface=True)
    model = model_path(AGE_GENDER_MODEL)
    results = evaluate({"first": model, "second": model}, flip=False, cache=tmp_path)
    # As JSON: an empty group's figures are NaN, which equals no other NaN.
    first, second = (json.dumps(results["models"][name]["by_race"]) for name in ("first", "second"))
    assert first == second


def test_the_age_mix_error_is_how_many_people_are_read_into_the_wrong_band():
    from conversion.data import AGE_BANDS, age_mix_error

    # Four people in their twenties and four in their thirties, each read 60 / 40 % towards the
    # twenties: counting likeliest bands puts all eight in their twenties, half of them wrongly;
    # summing the probabilities reads 5 of 8 there, one person too many.
    masses = np.zeros((8, len(AGE_BANDS)))
    masses[:, 2], masses[:, 3] = 0.6, 0.4
    truth = np.array([2] * 4 + [3] * 4)
    assert age_mix_error(masses, truth) == pytest.approx({"likeliest": 0.5, "summed": 0.1})
    # Weighted: the thirties count three times, so the truth is a quarter twenties.
    weights = np.array([1.0] * 4 + [3.0] * 4)
    assert age_mix_error(masses, truth, weights) == pytest.approx({"likeliest": 0.75, "summed": 0.35})


def test_the_age_read_per_band_is_the_mean_estimate_beside_the_mean_truth():
    from conversion.evaluate import age_read_by_band

    read = age_read_by_band(np.array([5.0, 9.0, 30.0, 40.0]), np.array([4.0, 6.0, 45.0, 45.0]))
    assert read["0-9"] == [7.0, 5.0]
    assert read["40-49"] == [35.0, 45.0]  # the middle-aged read young
    assert read["20-29"] is None


def dev_like(n_per_cell: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Photos in every FairFace age band (their first years) x gender, `n_per_cell` each."""
    firsts = np.array([0, 3, 10, 20, 30, 40, 50, 60, 70])
    first = np.repeat(firsts, 2 * n_per_cell)
    female = np.tile(np.repeat([0, 1], n_per_cell), len(firsts))
    return first, female


def test_a_model_right_and_sure_on_every_photo_meets_every_bar_on_every_draw():
    first, female = dev_like()
    p_female = np.where(female == 1, 0.95, 0.05)
    every_band_right = np.ones(len(first), bool)
    odds = bar_odds(p_female, female, first, np.array([0.0, 0.1]), every_band_right, draws=50)
    bars = ("judged", "right_of_judged", "children_0_9", "women_men", "gender", "our_age_band", "all")
    assert odds == {0.0: dict.fromkeys(bars, 1.0), 0.1: dict.fromkeys(bars, 1.0)}


def test_the_age_bar_is_met_on_the_draws_with_six_in_ten_bands_right():
    first, female = dev_like(n_per_cell=10)
    p_female = np.where(female == 1, 0.95, 0.05)
    # Exactly 6 in 10 of every cell in our band: every draw near 60 %, about half of them at or over it.
    band_right = np.arange(len(first)) % 10 < 6
    odds = bar_odds(p_female, female, first, np.array([0.1]), band_right, draws=400)[0.1]
    assert odds["gender"] == 1.0
    assert 0.3 < odds["our_age_band"] < 0.7
    assert odds["all"] == odds["our_age_band"]
    # Without band answers, no age bar and no "all".
    assert "all" not in bar_odds(p_female, female, first, np.array([0.1]), draws=10)[0.1]


def test_wrong_children_fail_their_bar_alone_and_a_margin_past_every_face_fails_judged():
    first, female = dev_like()
    right = np.where(female == 1, 0.95, 0.05)
    p_female = np.where(first < 10, 1 - right, right)  # every child wrong, every adult right
    odds = bar_odds(p_female, female, first, np.array([0.0, 0.46]), draws=50)
    # 2 of 9 bands are children: 78 % right of judged falls short of 90 % as well.
    assert odds[0.0] == {"judged": 1.0, "right_of_judged": 0.0, "children_0_9": 0.0, "women_men": 1.0, "gender": 0.0}
    # Nobody judged: nothing shown right, so every bar but nothing-to-compare fails.
    assert odds[0.46]["judged"] == 0.0 and odds[0.46]["gender"] == 0.0


def test_a_margin_that_leaves_the_unsure_mistakes_unjudged_raises_the_odds():
    first, female = dev_like(n_per_cell=8)
    p_female = np.where(female == 1, 0.9, 0.1)
    # One photo in eight wrong but unsure (p 0.45 or 0.55): a margin of 0.1 sets them aside.
    unsure = np.arange(len(first)) % 8 == 0
    p_female[unsure] = np.where(female[unsure] == 1, 0.45, 0.55)
    odds = bar_odds(p_female, female, first, np.array([0.0, 0.1]), draws=400)
    # Judged alike, 87.5 % right: short of 90 % on most draws.
    assert odds[0.0]["judged"] == 1.0 and odds[0.0]["right_of_judged"] < 0.3
    # All judged right, on the draws that leave 85 % of the faces judged.
    assert odds[0.1]["right_of_judged"] == 1.0 and odds[0.1]["judged"] > 0.7
    assert odds[0.1]["gender"] > odds[0.0]["gender"] + 0.4


def test_the_margin_to_set_is_the_smallest_about_as_good_as_the_best():
    odds = {m: {"gender": g} for m, g in ((0.1, 0.39), (0.11, 0.435), (0.12, 0.42), (0.145, 0.44), (0.2, 0.05))}
    assert odds_margin(odds) == 0.11
    assert odds_margin(odds, slack=0.0) == 0.145
    # Within a point of the best counts, the edge included.
    assert odds_margin({0.1: {"gender": 0.43}, 0.2: {"gender": 0.44}}) == 0.1


def test_evaluate_refuses_a_file_that_is_no_model_in_one_line_before_reading_any_data(tmp_path, capsys):
    from conversion.evaluate import main

    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"not a flatbuffer")
    with pytest.raises(SystemExit) as exit_info:
        main(["--int8", str(bad), "--cache", str(tmp_path / "no-cache")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "is not a usable TFLite model" in err.strip().splitlines()[-1] and "Traceback" not in err


def test_evaluate_names_a_model_path_that_is_no_file_instead_of_sending_to_make_setup(tmp_path, capsys):
    from conversion.evaluate import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--int8", str(tmp_path), "--cache", str(tmp_path / "no-cache")])
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"model path {tmp_path} is not a file" in last and "make setup" not in last

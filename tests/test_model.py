"""The shipped age/gender model, loaded with the runtime and checked on committed fixtures."""

import numpy as np
from conftest import FACE_LABELS

from edge.vision.align import align_face, template_keypoints
from edge.vision.classify import AgeGenderModel
from edge.vision.model_files import AGE_GENDER_MODEL, model_path
from edge.vision.runtime import TFLiteModel


def test_model_is_full_integer_and_small():
    path = model_path(AGE_GENDER_MODEL)
    assert path.stat().st_size <= 2 * 1024 * 1024
    net = TFLiteModel(path)
    assert net.input_dtype == np.int8
    assert all(o["dtype"] == np.int8 for o in net.interpreter.get_output_details())
    ops = {op["op_name"] for op in net.interpreter._get_ops_details()}
    assert not ops & {"DEQUANTIZE", "QUANTIZE"}, f"float fallback ops in the graph: {ops}"


def test_estimates_on_fixture_faces(faces, analyzer):
    """Detected, aligned and judged as in a frame: the three easy portraits (and their mirror
    images) judged the right gender, age within the model's validation error on average. The
    hard one is Hopper, 77, in a naval cap: a woman over 60, the model card's weakest cell. No
    release has been sure of her: runs 8 and 11d gave p(female) 0.40-0.60, run 13b 0.46 and 0.31,
    run 16 0.40 and 0.35, run 17 0.35 and 0.43, run 18 0.35 and 0.42, run 18+22 0.41 and 0.34 (one view
    past the 0.1 margin: judged a man).
    She must never be judged a man with confidence."""
    found = [analyzer.faces(face) for face in faces]
    assert all(len(f) == 1 for f in found), [len(f) for f in found]
    estimates = [f[0].to_json() for f in found]
    hard = [age >= 60 and female for age, female in FACE_LABELS]
    truth = [("female" if female else "male") for _, female in FACE_LABELS]
    easy = [(e["gender"], t) for e, t, h in zip(estimates, truth, hard, strict=True) if not h]
    assert all(gender == t for gender, t in easy), easy
    assert all(e["p_female"] >= 0.3 for e, h in zip(estimates, hard, strict=True) if h), estimates
    errors = [abs(e["age"] - age) for e, (age, _) in zip(estimates, FACE_LABELS, strict=True)]
    assert np.mean(errors) < 9, f"age MAE {np.mean(errors):.1f} on fixture faces"
    for e in estimates:
        assert 0 <= e["age"] <= 100


def test_flip_averages_the_mirror_image(faces):
    plain, flipped = AgeGenderModel(flip=False), AgeGenderModel(flip=True)
    crop = align_face(faces[2], template_keypoints(200, 200), plain.size, context=plain.context)
    mirror = np.ascontiguousarray(crop[:, ::-1])
    expected = (plain(crop).p_female + plain(mirror).p_female) / 2
    assert abs(flipped(crop).p_female - expected) < 1e-6


def test_a_face_within_the_gender_margin_is_not_sure(faces, analyzer):
    """`vision.gender_margin`: a face whose p(female) is that close to 0.5 gets no gender (it is
    counted as unknown), and the others keep theirs."""
    from dataclasses import replace

    from edge import Analyzer

    p = np.array([analyzer.faces(face)[0].estimate.p_female for face in faces])
    margin = float(np.median(np.abs(p - 0.5)))
    unsure = Analyzer(replace(analyzer.config, gender_margin=margin))
    judged = [unsure.faces(face)[0].to_json() for face in faces]
    assert [j["gender"] is None for j in judged] == list(np.abs(p - 0.5) < margin)
    assert all(j["age"] is not None for j in judged)


def test_the_age_band_is_the_likeliest_band_not_the_mean_ages(faces):
    """A distribution split between a child and an old person has its mean in the middle years;
    the band reported is the one with the most probability."""
    from edge.vision.classify import AgeGender, band_masses
    from edge.wire.contract import AGE_BANDS, MAX_AGE

    probs = np.zeros(MAX_AGE + 1)
    probs[5], probs[75] = 0.6, 0.4
    masses = band_masses(probs)
    assert masses == (0.6, 0.0, 0.0, 0.0, 0.0, 0.0, 0.4)
    split = AgeGender(0.5, float(probs @ np.arange(MAX_AGE + 1)), masses)
    assert (split.age, split.age_band) == (33.0, "0-9")
    model = AgeGenderModel()
    estimate = model(align_face(faces[0], template_keypoints(200, 200), model.size, context=model.context))
    assert abs(sum(estimate.bands) - 1) < 1e-6
    assert estimate.age_band == AGE_BANDS[int(np.argmax(estimate.bands))]

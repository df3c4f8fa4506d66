"""bench.fairface's scoring, on predictions as --dump writes them (the photos are not needed)."""

import json
from pathlib import Path

import pytest

from bench.fairface import main


def dump(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_scores_the_band_the_product_reports(tmp_path: Path, capsys):
    rows = [
        # The mean age (33) falls in 30-39; the product reports its likeliest band, 0-9.
        {"file": "1.jpg", "band": "3-9", "female": True, "p_female": 0.9, "age": 33.0, "age_band": "0-9"},
        {"file": "2.jpg", "band": "70+", "female": False, "p_female": 0.45, "age": 64.0, "age_band": "60+"},
        {"file": "3.jpg", "band": "20-29", "female": False, "p_female": None, "age": None, "age_band": None},
    ]
    main(["--load", str(dump(tmp_path / "p.jsonl", rows)), "--margin", "0.1"])
    out = capsys.readouterr().out
    assert "gender judged                             33.3 % (1/3)" in out
    assert "age in our band                           66.7 % (2/3)" in out
    assert "age in the FairFace band                   0.0 % (0/3)" in out


@pytest.mark.parametrize("text", ["not json\n", '{"file": "1.jpg"}\n', "\xff\n"])
def test_a_file_not_written_by_dump_is_refused_in_one_line(tmp_path: Path, capsys, text: str):
    path = tmp_path / "p.jsonl"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(SystemExit) as exit:
        main(["--load", str(path)])
    assert exit.value.code == 2
    assert "pass a file written by --dump" in capsys.readouterr().err


def test_each_band_says_where_its_misses_were_placed(tmp_path: Path, capsys):
    rows = [
        {"file": "1.jpg", "band": "30-39", "female": True, "p_female": 0.9, "age": 27.0, "age_band": "20-29"},
        {"file": "2.jpg", "band": "30-39", "female": True, "p_female": 0.9, "age": 35.0, "age_band": "30-39"},
        {"file": "3.jpg", "band": "70+", "female": False, "p_female": None, "age": None, "age_band": None},
    ]
    main(["--load", str(dump(tmp_path / "p.jsonl", rows))])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines if line.startswith("    30-39")] == [
        ["30-39", "50.0", "%", "(1/2)", "20-29", "1"]
    ]
    assert [line.split() for line in lines if line.startswith("    60+")] == [["60+", "0.0", "%", "(0/1)", "none", "1"]]
    assert [line.split() for line in lines if line.startswith("    0-9")] == [["0-9", "-"]]


def test_the_age_mix_is_read_by_likeliest_band_and_by_summed_probabilities(tmp_path: Path, capsys):
    leaning_young = [0, 0, 0.6, 0.4, 0, 0, 0]
    rows = [
        {"file": f"{i}.jpg", "band": band, "female": True, "p_female": 0.9, "age": 29.0, "age_band": "20-29"}
        | {"bands": leaning_young}
        for i, band in enumerate(["20-29", "20-29", "30-39", "30-39"])
    ]
    main(["--load", str(dump(tmp_path / "p.jsonl", rows))])
    out = capsys.readouterr().out
    assert "age mix off (people read into a wrong band): 50.0 % counting likeliest bands, 10.0 % summing" in out


def test_predictions_dumped_without_band_probabilities_still_score(tmp_path: Path, capsys):
    rows = [{"file": "1.jpg", "band": "3-9", "female": True, "p_female": 0.9, "age": 6.0, "age_band": "0-9"}]
    main(["--load", str(dump(tmp_path / "p.jsonl", rows))])
    out = capsys.readouterr().out
    assert "age in our band                          100.0 % (1/1)" in out and "age mix" not in out


def test_the_bars_figures_come_with_their_95_percent_interval(tmp_path: Path, capsys):
    from bench.fairface import wilson

    low, high = wilson(216, 241)  # run 18's right of judged on fairface-dev
    assert round(100 * low, 1) == 85.1 and round(100 * high, 1) == 92.9
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0
    rows = [{"file": "1.jpg", "band": "30-39", "female": True, "p_female": 0.9, "age": 35.0, "age_band": "30-39"}]
    main(["--load", str(dump(tmp_path / "p.jsonl", rows))])
    line = next(x for x in capsys.readouterr().out.splitlines() if "95 % intervals" in x)
    # No child among the photos: no interval for children, not a division by zero.
    assert "right of judged 20.7–100.0 %" in line and "children" not in line


def test_two_models_are_compared_photo_by_photo(tmp_path: Path, capsys):
    from bench.fairface import mcnemar

    assert mcnemar(0, 0) == 1.0 and mcnemar(5, 5) == 1.0
    assert round(mcnemar(0, 10), 4) == 0.002 and round(mcnemar(2, 8), 3) == 0.109
    row = {"band": "30-39", "age": 35.0, "age_band": "30-39"}
    this = [
        row | {"file": "1.jpg", "female": True, "p_female": 0.9},
        row | {"file": "2.jpg", "female": False, "p_female": 0.55, "age_band": "20-29"},
    ]
    that = [
        row | {"file": "2.jpg", "female": False, "p_female": 0.1},
        row | {"file": "1.jpg", "female": True, "p_female": 0.58},
    ]

    def compared(*extra: str) -> list[str]:
        main(["--load", str(a), "--margin", "0.1", "--against", str(b), *extra])
        return [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()[-3:]]

    a, b = dump(tmp_path / "a.jsonl", this), dump(tmp_path / "b.jsonl", that)
    # At 0.1, photo 2 is "not sure" here and photo 1 there: one right gender each, never on the same photo.
    assert compared() == [
        f"against {b} (margin 0.1), photo by photo:",
        "right gender 1 against 1 photos; right only here 1, only there 1; exact McNemar p = 1.00",
        "our band 1 against 2 photos; right only here 0, only there 1; exact McNemar p = 1.00",
    ]
    # With that model's own, smaller margin photo 1 is judged there too.
    assert compared("--against-margin", "0.05")[1].startswith("right gender 1 against 2 photos; right only here 0,")


def test_predictions_of_other_photos_are_refused_in_one_line(tmp_path: Path, capsys):
    rows = [{"file": "1.jpg", "band": "3-9", "female": True, "p_female": 0.9, "age": 6.0, "age_band": "0-9"}]
    other = [rows[0] | {"file": "2.jpg"}]
    with pytest.raises(SystemExit) as exit:
        main(["--load", str(dump(tmp_path / "a.jsonl", rows)), "--against", str(dump(tmp_path / "b.jsonl", other))])
    assert exit.value.code == 2
    assert "not of the same photos" in capsys.readouterr().err

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from conftest import FACE_FILES, background, place

from edge.cli.main import main
from edge.vision.config import VisionConfig

AGE_BANDS = {"0-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60+"}


def run_cli(capsys, *args: str) -> tuple[int, list[dict], str]:
    code = main(["analyze", *args])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.strip()], err


def check_face(face: dict) -> None:
    assert set(face) == {"box", "score", "gender", "p_female", "age", "age_band", "too_small"}
    assert face["too_small"] is False
    assert len(face["box"]) == 4 and face["box"][2] > 0 and face["box"][3] > 0
    assert face["gender"] in {"male", "female"}
    assert (face["gender"] == "female") == (face["p_female"] >= 0.5)
    assert 0 <= face["age"] <= 100 and face["age_band"] in AGE_BANDS


@pytest.fixture()
def scene_dir(tmp_path: Path, faces) -> Path:
    frame = background(800, 450)
    place(frame, faces[1], 60, 120, 100)
    place(frame, faces[6], 420, 60, 220)
    cv2.imwrite(str(tmp_path / "two.jpg"), frame)
    cv2.imwrite(str(tmp_path / "empty.png"), background(320, 240))
    return tmp_path


def test_images_and_folders_give_one_line_per_image_largest_face_first(capsys, scene_dir):
    code, lines, _ = run_cli(capsys, str(scene_dir), "--json")
    assert code == 0
    by_name = {Path(line["file"]).name: line for line in lines}
    assert set(by_name) == {"two.jpg", "empty.png"}
    assert by_name["empty.png"]["faces"] == []
    two = by_name["two.jpg"]["faces"]
    assert len(two) == 2
    for face in two:
        check_face(face)
    assert two[0]["box"][2] > two[1]["box"][2]


def test_assume_face_gives_exactly_one_face_per_crop(capsys):
    code, lines, _ = run_cli(capsys, *map(str, FACE_FILES[:3]), "--json", "--assume-face")
    assert code == 0 and len(lines) == 3
    for line in lines:
        assert len(line["faces"]) == 1
        check_face(line["faces"][0])
        assert line["faces"][0]["box"] == [0.0, 0.0, 200.0, 200.0]


def test_corrupt_file_is_reported_and_the_others_still_processed(capsys, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    code, lines, err = run_cli(capsys, str(bad), str(FACE_FILES[0]), "--json", "--assume-face")
    assert code == 1
    assert len(lines) == 1 and lines[0]["file"] == str(FACE_FILES[0])
    assert err.count("\n") == 1 and "broken.jpg" in err


def test_missing_path_is_a_usage_error():
    result = subprocess.run(
        [sys.executable, "-m", "edge.cli.main", "analyze", "/no/such/file.jpg"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "usage:" in result.stderr and "/no/such/file.jpg" in result.stderr


def test_table_output_is_readable(capsys, scene_dir):
    code = main(["analyze", str(scene_dir / "two.jpg")])
    out = capsys.readouterr().out
    assert code == 0
    assert "two.jpg" in out and "age" in out and out.count("\n") == 2


def test_video_gives_one_line_per_visitor_then_a_summary(capsys, sample_clip):
    clip, truth = sample_clip
    code, lines, _ = run_cli(capsys, str(clip), "--json")
    assert code == 0
    *visitors, summary = lines
    assert summary["file"] == str(clip)
    assert summary["frames"] == truth["frames"]
    assert summary["visitors"] == len(visitors) == len(truth["visitors"])
    assert summary["fps"] > 0
    for visitor in visitors:
        assert {"track", "first_seen", "last_seen", "frames", "gender", "p_female", "age", "age_band"} <= set(visitor)
        assert 0 <= visitor["first_seen"] <= visitor["last_seen"]
        # A gender, unless the visitor's views left it not sure (vision.gender_margin).
        assert visitor["gender"] in {"male", "female"} or abs(visitor["p_female"] - 0.5) < VisionConfig.gender_margin


def test_the_demo_sets_its_counts_beside_a_generated_clips_truth(tmp_path):
    from edge.cli.demo import against_truth
    from edge.wire.contract import AGE_BANDS, HourlyRecord

    def hour(visitors: int, female_30s: int) -> HourlyRecord:
        counts = {g: dict.fromkeys(AGE_BANDS, 0) for g in ("female", "male")}
        counts["female"]["30-39"] = female_30s
        counts["male"]["60+"] = visitors - female_30s
        return HourlyRecord("cam", "2026-01-05T09:00:00Z", visitors, counts, 3.0, 100, 1.0, 1)

    clip = tmp_path / "clip.mp4"
    assert against_truth(clip, [hour(2, 1)]) is None  # a clip of one's own has no clip.json
    (tmp_path / "clip.json").write_text('{"visitors": [{"female": 1}, {"female": 0}, {"female": 1}]}')
    unsure = hour(2, 0)
    unsure.counts["male"]["60+"] = 1  # the other one not sure: in unknown, not in counts
    line = against_truth(clip, [hour(2, 1), unsure])
    assert line == (
        "the clip holds 3 visitors, 2 of them female (its clip.json); counted 4, 1 judged female, 2 male, 1 not judged"
    )
    (tmp_path / "clip.json").write_text('{"visitors": "garbled"')
    assert against_truth(clip, [hour(2, 1)]) is None


def test_the_demo_names_the_command_as_the_shell_will_find_it(tmp_path, monkeypatch):
    from edge.cli.demo import _program

    script = tmp_path / "venv" / "bin" / "aicctv"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setattr("sys.argv", [".venv/bin/aicctv", "demo"])
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert _program() == ".venv/bin/aicctv"  # make demo's venv, not activated
    monkeypatch.setattr("sys.argv", [str(script), "demo"])
    monkeypatch.setenv("PATH", str(script.parent))
    assert _program() == "aicctv"  # activated, or installed on PATH
    monkeypatch.setattr("sys.argv", ["/src/edge/cli/__main__.py", "demo"])
    assert _program() == "aicctv"  # python -m edge.cli: no script to name


def test_the_demo_replaces_only_logs_it_wrote(tmp_path, capsys):
    """--out naming a device's folder must not delete its log; a file there is one line, exit 2."""
    clip = FACE_FILES[0]  # refused before it is read
    (tmp_path / "edge.db").write_bytes(b"a device's own log")
    assert main(["demo", "--clip", str(clip), "--out", str(tmp_path)]) == 2
    assert "holds logs the demo did not write" in capsys.readouterr().err
    assert (tmp_path / "edge.db").read_bytes() == b"a device's own log"
    (tmp_path / "file").write_text("")
    assert main(["demo", "--clip", str(clip), "--out", str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err.count("\n") == 1

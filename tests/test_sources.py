import pytest

from edge.vision.sources import SourceError, VideoSource, open_source


def test_file_frames_carry_video_time(sample_clip):
    clip, truth = sample_clip
    source = open_source(str(clip))
    frames = [f for f, _ in zip(source, range(30), strict=False)]
    source.close()
    assert [f.index for f in frames] == list(range(30))
    assert frames[25].timestamp == pytest.approx(25 / truth["fps"])
    assert frames[0].image.shape == (truth["height"], truth["width"], 3)


def test_replay_clock_starts_at_the_given_instant(sample_clip):
    clip, truth = sample_clip
    start = 1767603600.0  # 2026-01-05T09:00:00Z
    source = VideoSource(str(clip), start=start)
    frames = [f for f, _ in zip(source, range(11), strict=False)]
    source.close()
    assert frames[10].timestamp == pytest.approx(start + 10 / truth["fps"])


def test_unopenable_source_is_a_clear_error(tmp_path):
    bad = tmp_path / "not-a-video.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(SourceError, match=r"not-a-video\.mp4"):
        list(open_source(str(bad)))

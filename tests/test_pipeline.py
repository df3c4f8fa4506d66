"""The tracked pipeline end to end on a rendered clip, with real detection and classification."""

import numpy as np

from edge import Analyzer, VisionConfig, open_source


def test_counts_the_visitors_of_a_clip_and_estimates_each(sample_clip):
    clip, truth = sample_clip
    analyzer = Analyzer(VisionConfig(max_classifications=4))
    visitors, frames, in_view = [], 0, []
    source = open_source(str(clip))
    for result in analyzer.track(source):
        visitors += result.ended
        if result.frame is not None:
            frames += 1
            in_view.append(result.in_view)
    source.close()
    assert frames == truth["frames"]
    assert abs(len(visitors) - len(truth["visitors"])) <= 1
    assert max(in_view) >= 2
    duration = truth["frames"] / truth["fps"]
    for visitor in visitors:
        assert 1 <= visitor.samples <= 4
        assert 0 <= visitor.first_seen <= visitor.last_seen <= duration
        assert visitor.gender in {"male", "female"} and 0 <= visitor.age <= 100
    assert sorted(v.track for v in visitors) == list(range(1, len(visitors) + 1))
    times = analyzer.times.summary()
    assert times["detect"] > 0 and times["total"] >= sum(v for k, v in times.items() if k != "total") - 1e-6


def test_the_last_result_ends_everyone_still_in_view(sample_clip):
    clip, _ = sample_clip
    source = open_source(str(clip))
    results = list(Analyzer().track(frame for frame in source if frame.index < 150))
    source.close()
    assert results[-1].frame is None
    assert np.array_equal(results[-1].track_ids, np.zeros(0))

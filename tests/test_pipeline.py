"""The tracked pipeline end to end on a rendered clip, with real detection and classification."""

import json
import time

import numpy as np
import pytest

from edge import Analyzer, VisionConfig, open_source


def test_counts_the_visitors_of_a_clip_and_estimates_each(sample_clip):
    clip, truth = sample_clip
    analyzer = Analyzer(VisionConfig(max_classifications=4))
    visitors, frames, in_view = [], 0, []
    source = open_source(str(clip))
    started = time.perf_counter()
    for result in analyzer.track(source):
        visitors += result.ended
        if result.frame is not None:
            frames += 1
            in_view.append(result.in_view)
    wall_ms = 1000 * (time.perf_counter() - started)
    source.close()
    assert frames == truth["frames"]
    assert abs(len(visitors) - len(truth["visitors"])) <= 1
    assert max(in_view) >= 2
    duration = truth["frames"] / truth["fps"]
    for visitor in visitors:
        assert 1 <= visitor.samples <= 4
        assert 0 <= visitor.first_seen <= visitor.last_seen <= duration
        assert visitor.p_female is not None and 0 <= visitor.age <= 100
        # A gender for each, unless their views together left it not sure (vision.gender_margin).
        assert visitor.gender in {"male", "female"} or abs(visitor.p_female - 0.5) < visitor.gender_margin
    assert sorted(v.track for v in visitors) == list(range(1, len(visitors) + 1))
    times = analyzer.times.summary()
    stages = {k: v for k, v in times.items() if k != "total"}
    assert all(stages[k] > 0 for k in ("decode", "detect", "align", "classify", "track")), stages
    assert times["total"] == pytest.approx(sum(stages.values()))
    # The stages never overlap and all run inside the loop: together at most its wall time, and
    # most of it (the rest is bookkeeping between stages), so no stage is missed or counted twice.
    assert 0.5 * wall_ms <= times["total"] * frames <= wall_ms


def test_the_last_result_ends_everyone_still_in_view(sample_clip):
    clip, _ = sample_clip
    source = open_source(str(clip))
    results = list(Analyzer().track(frame for frame in source if frame.index < 150))
    source.close()
    assert results[-1].frame is None
    assert np.array_equal(results[-1].track_ids, np.zeros(0))


def test_a_run_resumed_from_a_snapshot_ends_like_the_uninterrupted_one(sample_clip):
    """The whole per-stream state (tracks, stillness, motion background, rejected candidates)
    round-trips through JSON: a replay killed mid-visit ends exactly as if it had not been."""
    clip, _ = sample_clip
    source = open_source(str(clip))
    frames = [frame for frame in source if frame.index < 200]
    source.close()

    def visits(results) -> list[tuple]:
        return [
            (v.track, v.first_seen, v.last_seen, v.frames, v.p_female, v.age, v.age_bands)
            for r in results
            for v in r.ended
        ]

    whole = visits(Analyzer().track(frames))
    first = Analyzer()
    tracking = first.tracking()
    before = []
    run = first.track(frames, tracking)
    for result in run:
        before.append(result)
        if result.frame is not None and result.frame.index == 120:
            break
    run.close()
    resumed = Analyzer()
    again = resumed.tracking()
    again.restore(json.loads(json.dumps(tracking.snapshot())))
    after = resumed.track(frames[121:], again)
    assert visits(before) + visits(after) == whole


def test_a_checkpoint_without_band_probabilities_resumes_with_its_mean_ages_band():
    """Checkpoints written before estimates kept their age-band probabilities hold only the mean
    age: a person resumed from one is given the band of that age."""
    analyzer = Analyzer()
    tracking = analyzer.tracking()
    old = tracking.snapshot()
    old["samples"] = {"7": {"since_sample": 0, "attempts": 1, "best_quality": 40.0, "samples": [[40.0, 0.8, 34.0]]}}
    tracking.restore(old)
    estimate = tracking.samples[7].combined(keep=1)
    assert (estimate.p_female, estimate.age, estimate.age_band) == (0.8, 34.0, "30-39")
    again = analyzer.tracking()
    again.restore(json.loads(json.dumps(tracking.snapshot())))
    assert again.samples[7].combined(keep=1) == estimate

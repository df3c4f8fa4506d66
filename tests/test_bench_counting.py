"""bench.counting's report, on results as evaluate_clip makes them (no clip needed)."""

from collections import Counter

from bench.counting import ClipResult, mix_off, report


def test_the_age_mix_is_reported_as_the_hourly_record_reads_it_and_by_likeliest_bands():
    truth = Counter({"20-29": 2, "30-39": 2})
    result = ClipResult(
        truth_visitors=4,
        counted=4,
        fragmented=0,
        missed=0,
        unmatched_tracks=0,
        per_visitor=[(True, 3.0)] * 4,
        per_frame=[(True, 4.0)] * 8,
        true_bands=truth,
        hourly_bands=Counter({"20-29": 3, "30-39": 1}),
        likeliest_bands=Counter({"20-29": 4}),
    )
    assert mix_off(result.hourly_bands, truth) == 0.25 and mix_off(result.likeliest_bands, truth) == 0.5
    text = report("clip", [result, result])
    assert "age mix off (people in a wrong band), the clip as one hour: 25.0 % as the hourly record reads it" in text
    assert "50.0 % counting likeliest bands" in text

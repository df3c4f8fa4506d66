import json

import pytest

from edge.daemon.hourly import MAX_FILLED_S, HourlyTally, apportion
from edge.vision.analyzer import Visitor
from edge.wire.contract import AGE_BANDS, hour_start

NINE = 1767603600.0  # 2026-01-05T09:00:00Z


def visitor(first: float, last: float, p_female: float | None = 0.9, age: float | None = 25.0) -> Visitor:
    return Visitor(track=1, first_seen=first, last_seen=last, frames=10, p_female=p_female, age=age, samples=1)


def run_frames(tally: HourlyTally, start: float, end: float, fps: float = 5) -> None:
    t = start
    while t < end:
        tally.frame(t)
        t += 1 / fps


def test_a_full_hour_of_frames_and_visitors():
    tally = HourlyTally("shop-1")
    run_frames(tally, NINE, NINE + 3600)
    tally.visitor(visitor(NINE + 10, NINE + 40))
    tally.visitor(visitor(NINE + 100, NINE + 110, p_female=0.2, age=67))
    assert tally.close(NINE + 3600) == []  # not before the grace period
    (record,) = tally.close(NINE + 3600 + 60)
    assert record.hour == "2026-01-05T09:00:00Z" and record.revision == 1
    assert record.visitors == 2 and record.mean_dwell_s == 20.0
    assert record.counts["female"]["20-29"] == 1 and record.counts["male"]["60+"] == 1
    assert record.frames == 18000
    assert record.coverage == pytest.approx(1.0, abs=1e-3)


def test_a_gap_in_frames_shows_in_coverage():
    tally = HourlyTally("shop-1", max_gap_s=2)
    run_frames(tally, NINE, NINE + 1800)
    run_frames(tally, NINE + 2700, NINE + 3600)  # camera lost for 15 minutes
    (record,) = tally.close(0, final=True)
    assert record.coverage == pytest.approx(0.75, abs=1e-3)


def test_a_visitor_ending_after_the_hour_closed_revises_it():
    tally = HourlyTally("shop-1")
    run_frames(tally, NINE + 3500, NINE + 3700)
    assert [r.hour for r in tally.close(NINE + 3600 + 61)] == ["2026-01-05T09:00:00Z"]
    revised = tally.visitor(visitor(NINE + 3590, NINE + 3700))
    assert revised is not None and revised.revision == 2 and revised.visitors == 1
    assert tally.visitors_in_hour(NINE + 3600) == 0


def test_an_unclassified_visitor_counts_only_in_the_total():
    tally = HourlyTally("shop-1")
    tally.frame(NINE)
    tally.visitor(visitor(NINE, NINE + 1, p_female=None, age=None))
    (record,) = tally.close(0, final=True)
    assert record.visitors == 1 and sum(sum(b.values()) for b in record.counts.values()) == 0


def test_hours_without_frames_close_with_zero_coverage():
    tally = HourlyTally("shop-1", grace_s=0)
    run_frames(tally, NINE, NINE + 60)
    run_frames(tally, NINE + 3 * 3600, NINE + 3 * 3600 + 60)  # the device was off for two hours
    records = tally.close(NINE + 3 * 3600 + 60, final=True)
    assert [r.hour[11:13] for r in records] == ["09", "10", "11", "12"]
    assert [r.frames for r in records][1:3] == [0, 0] and [r.coverage for r in records][1:3] == [0.0, 0.0]


def test_a_clock_that_jumps_decades_fills_at_most_a_year_of_hours():
    """A board that counted in 1970 before its clock was set, or a replay started far off, then
    frames at today's time: filling every hour between built millions in memory."""
    tally = HourlyTally("shop-1", grace_s=0)
    run_frames(tally, 3600.0, 3660.0)  # 1970-01-01T01:00Z
    run_frames(tally, NINE, NINE + 60)
    assert len(tally.hours) == 1 + MAX_FILLED_S / 3600 + 1
    records = tally.close(NINE + 60, final=True)
    assert records[1].hour == hour_start(NINE - MAX_FILLED_S) and records[-2].coverage == 0.0


def test_snapshot_restores_open_hours_and_revisions():
    tally = HourlyTally("shop-1", grace_s=10)
    run_frames(tally, NINE, NINE + 3610, fps=1)
    tally.visitor(visitor(NINE + 5, NINE + 9))
    (closed,) = tally.close(NINE + 3610)
    tally.visitor(visitor(NINE + 3605, NINE + 3608))  # the open hour
    restored = HourlyTally("shop-1", grace_s=10)
    restored.restore(json.loads(json.dumps(tally.snapshot())))  # as stored: through JSON
    assert restored.last_frame == tally.last_frame
    # A late visitor of the closed hour still makes revision 2, not a second revision 1.
    late = restored.visitor(visitor(NINE + 3500, NINE + 3620))
    assert late is not None and late.hour == closed.hour and late.revision == 2 and late.visitors == 2
    (ten,) = restored.close(0, final=True)
    assert ten.hour.endswith("10:00:00Z") and ten.visitors == 1


def test_another_devices_snapshot_is_ignored():
    tally = HourlyTally("shop-1")
    run_frames(tally, NINE, NINE + 10)
    other = HourlyTally("shop-2")
    other.restore(tally.snapshot())
    assert other.last_frame is None and other.hours == {}


def test_visitors_too_small_to_judge_count_as_unknown_never_guessed():
    tally = HourlyTally("shop-1")
    run_frames(tally, NINE, NINE + 60)
    tally.visitor(visitor(NINE + 1, NINE + 5))
    tally.visitor(visitor(NINE + 2, NINE + 6, p_female=None, age=None))
    (record,) = tally.close(NINE + 7200, final=True)[:1]
    assert (record.visitors, record.unknown, sum(record.counts["female"].values())) == (2, 1, 1)
    assert record.visitors_in is None and record.passing is None  # no entry line


def test_with_an_entry_line_people_passing_are_not_visitors():
    from dataclasses import replace

    tally = HourlyTally("shop-1", entry_line=True)
    run_frames(tally, NINE, NINE + 60)
    tally.visitor(replace(visitor(NINE + 1, NINE + 5), entered=True))
    tally.visitor(replace(visitor(NINE + 2, NINE + 6), entered=False))
    tally.visitor(replace(visitor(NINE + 3, NINE + 9, p_female=None, age=None), entered=False))
    (record,) = tally.close(NINE + 7200, final=True)[:1]
    assert (record.visitors, record.visitors_in, record.passing, record.unknown) == (1, 1, 2, 0)


def test_a_visitor_the_device_is_not_sure_of_counts_as_unknown():
    tally = HourlyTally("shop-1")
    tally.frame(NINE)
    unsure = Visitor(1, NINE, NINE + 5, 10, p_female=0.6, age=30.0, samples=3, gender_margin=0.2)
    sure = Visitor(2, NINE, NINE + 5, 10, p_female=0.8, age=30.0, samples=3, gender_margin=0.2)
    assert unsure.gender is None and sure.gender == "female"
    tally.visitor(unsure)
    tally.visitor(sure)
    (record,) = tally.close(0, final=True)
    assert record.visitors == 2 and record.unknown == 1 and record.counts["female"]["30-39"] == 1


def unsure_of_age(track: int, bands: tuple[float, ...], p_female: float = 0.9) -> Visitor:
    return Visitor(track, NINE + track, NINE + track + 5, 10, p_female, age=30.0, samples=3, age_bands=bands)


def test_an_hours_age_bands_are_its_visitors_band_probabilities_summed_not_their_likeliest_bands():
    # Ten women each 60 % likely in their twenties, 40 % in their thirties: counting likeliest
    # bands says all ten are in their twenties; their probabilities say six and four.
    tally = HourlyTally("shop-1")
    tally.frame(NINE)
    for track in range(10):
        tally.visitor(unsure_of_age(track, (0, 0, 0.6, 0.4, 0, 0, 0)))
    tally.visitor(unsure_of_age(11, (0, 0, 0, 0, 0.2, 0.3, 0.5), p_female=0.1))
    (record,) = tally.close(0, final=True)
    assert record.counts["female"] == {**dict.fromkeys(AGE_BANDS, 0), "20-29": 6, "30-39": 4}
    # One visitor alone keeps their likeliest band.
    assert record.counts["male"] == {**dict.fromkeys(AGE_BANDS, 0), "60+": 1}
    assert record.visitors == 11 and record.unknown == 0


@pytest.mark.parametrize(
    ("masses", "total", "expected"),
    [
        ((0.6, 0.4), 10, [6, 4]),
        ((0.2, 0.3, 0.5), 1, [0, 0, 1]),  # one visitor: their likeliest band
        ((0.5, 0.5), 1, [1, 0]),  # a tie goes to the earlier band
        ((1.0, 1.0, 1.0), 2, [1, 1, 0]),
        ((2.6, 0.3, 0.1), 3, [3, 0, 0]),
        ((0.0, 0.0), 0, [0, 0]),
        ((0.0, 0.0), 2, [0, 0]),  # no probability to share: nothing made up
    ],
)
def test_apportion_shares_whole_visitors_by_largest_remainder(masses, total, expected):
    assert apportion(masses, total) == expected


def test_apportion_keeps_every_band_within_one_of_its_share():
    import random

    rng = random.Random(7)
    for _ in range(500):
        masses = [rng.random() ** 3 for _ in AGE_BANDS]
        total = rng.randrange(1, 40)
        counts = apportion(masses, total)
        assert sum(counts) == total
        for count, mass in zip(counts, masses, strict=True):
            assert abs(count - mass * total / sum(masses)) < 1


def test_an_hour_snapshotted_without_band_probabilities_restores_as_counted():
    tally = HourlyTally("shop-1", grace_s=10)
    run_frames(tally, NINE, NINE + 60, fps=1)
    tally.visitor(visitor(NINE + 5, NINE + 9, age=45.0))
    snapshot = json.loads(json.dumps(tally.snapshot()))
    for hour in snapshot["hours"]:
        del hour["masses"]  # as a daemon before band probabilities were kept wrote it
    restored = HourlyTally("shop-1", grace_s=10)
    restored.restore(snapshot)
    restored.visitor(unsure_of_age(2, (0, 0, 0, 0, 0.3, 0.7, 0)))
    (record,) = restored.close(0, final=True)
    assert record.counts["female"]["40-49"] == 1 and record.counts["female"]["50-59"] == 1


def test_the_age_of_a_visitor_whose_gender_is_not_sure_is_kept_beside_unknown():
    tally = HourlyTally("shop-1")
    tally.frame(NINE)
    child = Visitor(
        1, NINE, NINE + 5, 10, 0.55, age=5.0, samples=3, gender_margin=0.12, age_bands=(0.9, 0.1, 0, 0, 0, 0, 0)
    )
    tally.visitor(child)
    tally.visitor(visitor(NINE + 1, NINE + 2, p_female=None, age=None))  # too small: no age either
    (record,) = tally.close(0, final=True)
    assert record.unknown == 2 and sum(sum(b.values()) for b in record.counts.values()) == 0
    assert record.unknown_bands == {**dict.fromkeys(AGE_BANDS, 0), "0-9": 1}


def test_an_hour_without_such_visitors_has_no_unknown_bands():
    tally = HourlyTally("shop-1")
    tally.frame(NINE)
    tally.visitor(visitor(NINE, NINE + 1))
    (record,) = tally.close(0, final=True)
    assert record.unknown_bands is None

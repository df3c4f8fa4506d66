import json

import numpy as np

from edge.vision.track import Tracker


def box(cx: float, cy: float, size: float = 60) -> list[float]:
    return [cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2]


def feed(
    tracker: Tracker, frames: list[list[list[float]]], fps: float = 25, start: int = 0
) -> tuple[list[np.ndarray], list]:
    """Frames `start`, `start + 1`, ... at `fps`: each frame's ids and the tracks that ended."""
    ids, ended = [], []
    for i, boxes in enumerate(frames, start=start):
        frame_ids, frame_ended = tracker.update(np.array(boxes, np.float32).reshape(-1, 4), i / fps)
        ids.append(frame_ids)
        ended += frame_ended
    return ids, ended


def run(tracker: Tracker, frames: list[list[list[float]]], fps: float = 25) -> tuple[list[np.ndarray], list]:
    ids, ended = feed(tracker, frames, fps)
    return ids, ended + tracker.finish()


def test_one_walking_person_is_one_visitor():
    ids, ended = run(Tracker(), [[box(50 + 8 * i, 200)] for i in range(60)])
    assert len(ended) == 1
    assert {int(i[0]) for i in ids[3:]} == {1}


def test_a_few_missed_frames_keep_the_same_id():
    frames = [[box(50 + 8 * i, 200)] if not 20 <= i < 26 else [] for i in range(60)]
    _, ended = run(Tracker(), frames)
    assert len(ended) == 1


def test_crossing_people_keep_their_ids():
    frames = [[box(50 + 10 * i, 200), box(550 - 10 * i, 215)] for i in range(50)]
    ids, ended = run(Tracker(), frames)
    assert len(ended) == 2
    first = ids[5][np.argmin([b[0] for b in frames[5]])]
    last = ids[45][np.argmax([b[0] for b in frames[45]])]
    assert first == last  # the one who started on the left ends on the right


def test_someone_gone_longer_than_forget_time_counts_again():
    frames = [[box(300, 200)]] * 20 + [[]] * 50 + [[box(300, 200)]] * 20  # gone 2 s at 25 fps
    _, ended = run(Tracker(forget_after_s=1.0), frames)
    assert len(ended) == 2


def test_a_one_frame_false_detection_is_not_a_visitor():
    frames = [[]] * 10 + [[box(100, 100)]] + [[]] * 10
    _, ended = run(Tracker(), frames)
    assert ended == []


def test_fast_face_with_no_overlap_between_frames_is_followed():
    # 70 px per frame, more than the face is wide: IoU is 0, the distance stage matches it.
    frames = [[box(40 + 70 * i, 200, 50)] for i in range(9)]
    _, ended = run(Tracker(), frames, fps=10)
    assert len(ended) == 1


def colour(hue_bin: int) -> np.ndarray:
    feature = np.zeros(128, np.float32)
    feature[hue_bin * 8 : hue_bin * 8 + 8] = 1 / 8
    return feature


def run_with_looks(frames: list[list[tuple[list[float], np.ndarray]]], fps: float = 25) -> list:
    tracker, ended = Tracker(), []
    for i, faces in enumerate(frames):
        boxes = np.array([b for b, _ in faces], np.float32).reshape(-1, 4)
        looks = np.array([f for _, f in faces], np.float32).reshape(-1, 128)
        ended += tracker.update(boxes, i / fps, looks)[1]
    return ended + tracker.finish()


def test_someone_reappearing_nearby_after_a_short_hide_is_the_same_visitor():
    before = [[(box(300, 200), colour(3))]] * 15
    hidden = [[]] * 12
    after = [[(box(300 + 80, 200), colour(3))]] * 15  # 1.3 face widths away: beyond plain matching
    assert len(run_with_looks(before + hidden + after)) == 1


def test_someone_who_looks_different_at_the_same_place_is_someone_else():
    before = [[(box(300, 200), colour(3))]] * 15
    hidden = [[]] * 12
    after = [[(box(300 + 80, 200), colour(11))]] * 15
    assert len(run_with_looks(before + hidden + after)) == 2


def test_appearance_of_a_face_box(faces):
    from edge.vision.track import appearance, similarity

    face = faces[0]
    whole = np.array([0, 0, 200, 200], np.float32)
    a, b = appearance(face, whole), appearance(face[:, ::-1].copy(), whole)
    assert a.shape == (128,) and abs(a.sum() - 1) < 1e-5
    assert similarity(a[None], b[None])[0, 0] > 0.95  # mirror image: same colours
    assert similarity(a[None], appearance(faces[5], whole)[None])[0, 0] < 1.0


def test_a_restored_snapshot_continues_exactly():
    # Two crossing people, one of them briefly hidden: stop mid-crossing, go through JSON, go on.
    frames = [[box(50 + 10 * i, 200), *([] if 18 <= i < 22 else [box(550 - 10 * i, 215)])] for i in range(50)]
    whole_ids, whole_ended = run(Tracker(), frames)

    first = Tracker()
    ids, ended = feed(first, frames[:20])
    second = Tracker()
    second.restore(json.loads(json.dumps(first.snapshot())))
    more_ids, more_ended = feed(second, frames[20:], start=20)
    ids, ended = ids + more_ids, ended + more_ended + second.finish()

    assert [list(i) for i in ids] == [list(i) for i in whole_ids]
    assert [(t.id, t.first_seen, t.last_seen, t.hits) for t in ended] == [
        (t.id, t.first_seen, t.last_seen, t.hits) for t in whole_ended
    ]
    assert np.array_equal(ended[0].kalman.P, whole_ended[0].kalman.P)

import numpy as np

from edge.track import Tracker


def box(cx: float, cy: float, size: float = 60) -> list[float]:
    return [cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2]


def run(tracker: Tracker, frames: list[list[list[float]]], fps: float = 25) -> tuple[list[np.ndarray], list]:
    ids, ended = [], []
    for i, boxes in enumerate(frames):
        frame_ids, frame_ended = tracker.update(np.array(boxes, np.float32).reshape(-1, 4), i / fps)
        ids.append(frame_ids)
        ended += frame_ended
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

"""The aim preview's running summary: how many faces the last few seconds showed, how wide, and
how many too small to classify. Pure Python: nothing heavy is imported."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# The summary covers the frames of the last few seconds, so one missed detection does not flicker it.
WINDOW_S = 3.0


@dataclass(frozen=True)
class Summary:
    """What the last few seconds showed: the most faces in one frame (and the most too small to
    classify in one frame), the median face width over every sighting, and the frames analysed."""

    faces: int
    too_small: int
    median_px: float | None
    frames: int
    fps: float
    min_classify: int
    size: tuple[int, int] | None = None
    # With labels: the people followed in these seconds, and how many of them the pipeline judged
    # (a gender and an age band); None without.
    people: int | None = None
    judged: int | None = None

    def text(self) -> str:
        if self.frames == 0:
            return "waiting for frames"
        if self.faces == 0:
            return f"no faces (a face needs {self.min_classify} px to be classified)"
        noun = "face" if self.faces == 1 else "faces"
        small = f"{self.too_small} too small (< {self.min_classify} px)" if self.too_small else "none too small"
        text = f"{self.faces} {noun}, median {self.median_px:.0f} px, {small}"
        if self.people:
            text += f"; judged {self.judged} of {self.people} followed ({100 * (self.judged or 0) / self.people:.0f} %)"
        return text

    def to_json(self) -> dict:
        return {
            "faces": self.faces,
            "too_small": self.too_small,
            "median_px": None if self.median_px is None else round(self.median_px, 1),
            "min_classify": self.min_classify,
            "frames": self.frames,
            "fps": round(self.fps, 2),
            "window_s": WINDOW_S,
            "size": None if self.size is None else list(self.size),
            **({} if self.people is None else {"people": self.people, "judged": self.judged}),
            "text": self.text(),
        }


def summarize(
    widths_per_frame: Sequence[Sequence[float]],
    min_classify: int,
    fps: float = 0.0,
    size: tuple[int, int] | None = None,
    people: dict[int, bool] | None = None,
) -> Summary:
    """The summary of some frames' face widths (pixels), analysed at `fps` frames a second;
    `people`: each followed person's track and whether they are judged, when labelling."""
    every = sorted(w for widths in widths_per_frame for w in widths)
    median = None
    if every:
        middle = len(every) // 2
        median = every[middle] if len(every) % 2 else (every[middle - 1] + every[middle]) / 2
    return Summary(
        faces=max((len(w) for w in widths_per_frame), default=0),
        too_small=max((sum(x < min_classify for x in w) for w in widths_per_frame), default=0),
        median_px=median,
        frames=len(widths_per_frame),
        fps=fps,
        min_classify=min_classify,
        size=size,
        people=None if people is None else len(people),
        judged=None if people is None else sum(people.values()),
    )


class Recent:
    """The face widths of the frames analysed in the last `window_s` seconds."""

    def __init__(self, min_classify: int, window_s: float = WINDOW_S, labels: bool = False) -> None:
        self.min_classify = min_classify
        self.window_s = window_s
        self.labels = labels
        self.frames: deque[tuple[float, tuple[float, ...], dict[int, bool]]] = deque()
        self.size: tuple[int, int] | None = None

    def add(
        self,
        now: float,
        widths: Iterable[float],
        size: tuple[int, int] | None = None,
        people: dict[int, bool] | None = None,
    ) -> None:
        """One frame's face widths, and the people followed in it (track: judged) when labelling."""
        self.frames.append((now, tuple(widths), people or {}))
        self.size = size or self.size

    def summary(self, now: float) -> Summary:
        while self.frames and self.frames[0][0] < now - self.window_s:
            self.frames.popleft()
        span = self.frames[-1][0] - self.frames[0][0] if self.frames else 0.0
        fps = (len(self.frames) - 1) / span if span > 0 else 0.0
        # Each person as last judged: a verdict only grows firmer as their views are added.
        people = {track: judged for _, _, seen in self.frames for track, judged in seen.items()}
        return summarize(
            [w for _, w, _ in self.frames], self.min_classify, fps, self.size, people if self.labels else None
        )

"""The `[vision]` settings: the face pipeline's knobs, declared once for the config file, the
environment, `aicctv analyze`'s flags and the `Analyzer` itself. Imports nothing heavy, so a
configuration can be checked without loading OpenCV or TFLite."""

from __future__ import annotations

from dataclasses import dataclass

from edge.vision.zones import ZoneError, Zones
from edge.wire.config import Check, ConfigError, setting
from edge.wire.contract import MIN_FACE_RANGE


def _check_zones(value: str, name: str) -> None:
    try:
        Zones.parse(**{name.partition(".")[2]: value})
    except ZoneError as exc:
        # entry_line and entry_inside are checked as a pair once both are known (VisionConfig.checks).
        if "go together" not in str(exc):
            raise ConfigError(str(exc)) from None


@dataclass(frozen=True)
class VisionConfig:
    detector: str = setting(
        "full",
        choices=("full", "short"),
        flag="--detector",
        help='BlazeFace model: "full" range (faces up to ~5 m) or "short" range (~2 m, faster)',
    )
    score: float | None = setting(
        None,
        ge=0.0,
        le=1.0,
        flag="--score",
        metavar="S",
        example=0.5,
        help="detection score threshold for candidate faces; higher: fewer false faces, more missed (unset: 0.3 "
        "with verify on, which checks each candidate again; the detector's own 0.5 with verify off)",
    )
    verify: float = setting(
        0.52,
        ge=0.0,
        le=1.0,
        flag="--verify",
        metavar="V",
        help="second look at each new face: the mean of its score, two re-centred crops' scores and our "
        "face-or-not classifier's p(face) must reach this; higher: fewer false faces, more missed (0: off)",
    )
    min_face: int = setting(
        40,
        ge=MIN_FACE_RANGE[0],
        le=MIN_FACE_RANGE[1],
        flag="--min-face",
        metavar="PX",
        help="smallest face width in pixels to look for; large frames are searched in windows to reach it",
    )
    min_classify: int = setting(
        24,
        ge=8,
        le=4096,
        flag="--min-classify",
        metavar="PX",
        help="smallest face width in pixels given an age and a gender: below it, gender accuracy falls from 93.5 % "
        "towards 88 % at 12 px and age error grows (bench/face_size.py); such faces are counted but never guessed",
    )
    tiles: bool = setting(
        True, flag="--tiles", help="search large frames in windows to reach min_face (off: faster, misses small faces)"
    )
    threads: int = setting(1, ge=1, le=64, flag="--threads", metavar="N", help="TFLite threads per model")
    flip: bool = setting(
        True, flag="--flip", help="classify each crop and its mirror image, averaged (off: once, faster)"
    )
    gender_margin: float = setting(
        0.1,
        ge=0.0,
        le=0.49,
        flag="--gender-margin",
        metavar="M",
        help="say 'not sure' rather than guess: a face or visitor whose p(female) is within M of 0.5 gets no "
        "gender and is counted as unknown; 0.1 judges 91 % of FairFace's held-out photos weighted as its dev set "
        "(every age band and gender alike), 90.1 % of them right (0: every face, 86.7 %): the smallest margin "
        "that gets 9 in 10 right there (conversion.calibrate, conversion.evaluate, bench.fairface)",
    )
    max_classifications: int = setting(6, ge=1, le=100, help="age/gender estimates at most per tracked person")
    classify_every: int = setting(4, ge=1, le=1000, help="frames between a person's estimates, doubling after each one")
    forget_after_s: float = setting(
        1.5, ge=0.1, le=60.0, help="a person unseen this many seconds has left: their visit ends"
    )
    min_hits: int = setting(3, ge=1, le=100, help="frames a face must be seen in before it counts as a person")
    motion: bool = setting(
        True,
        flag="--motion",
        help="run the face detector only on frames where something moved or someone is tracked (plus a sweep "
        "every sweep_s): an empty scene costs a small fraction of a busy one",
    )
    sweep_s: float = setting(
        1.0, ge=0.04, le=60.0, help="with motion gating, the detector still looks at the whole frame this often"
    )
    include: str = setting(
        "",
        check=_check_zones,
        flag="--include",
        metavar="POLYGONS",
        example="0.05,0.1 0.95,0.1 0.95,0.95 0.05,0.95",
        help='where counting happens: polygons "x,y x,y x,y ..." relative to the frame (0..1), joined by ";" '
        "(empty: the whole frame); a visitor counts only if their face stays mostly inside",
    )
    exclude: str = setting(
        "",
        check=_check_zones,
        flag="--exclude",
        metavar="POLYGONS",
        example="0.7,0.0 1.0,0.0 1.0,0.4 0.7,0.4",
        help="where never to count, e.g. a poster, the shop window or the staff counter: polygons like include",
    )
    entry_line: str = setting(
        "",
        check=_check_zones,
        flag="--entry-line",
        metavar="LINE",
        example="0.1,0.55 0.9,0.55",
        help='a door line, two points "x,y x,y": only people crossing it towards entry_inside count as '
        "visitors; the rest are reported as passing",
    )
    entry_inside: str = setting(
        "",
        check=_check_zones,
        flag="--entry-inside",
        metavar="POINT",
        example="0.5,0.9",
        help='a point "x,y" on the inside (the shop\'s side) of entry_line',
    )
    static_after_s: float = setting(
        120.0,
        ge=1.0,
        le=86400.0,
        help="a face that has not moved for this many seconds is a thing (a poster, a mannequin): it is "
        "never counted, and logged once so an exclusion zone can be drawn around it",
    )

    def zones(self) -> Zones:
        return Zones.parse(self.include, self.exclude, self.entry_line, self.entry_inside)

    def checks(self) -> list[Check]:
        return [self._check_zone_pair]

    def _check_zone_pair(self) -> None:
        try:
            self.zones()
        except ZoneError as exc:
            raise ConfigError(str(exc)) from None

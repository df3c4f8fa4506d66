"""Where counting happens: include and exclude areas, and an entry line, in relative coordinates
(0..1 of the frame's width and height, so they survive a change of resolution).

    [vision]
    include = "0.05,0.1 0.95,0.1 0.95,0.95 0.05,0.95"     # polygons: "x,y x,y x,y ..." joined by ";"
    exclude = "0.7,0.0 1.0,0.0 1.0,0.4 0.7,0.4"          # e.g. a poster, the staff counter
    entry_line = "0.1,0.55 0.9,0.55"                      # two points
    entry_inside = "0.5,0.9"                              # a point on the shop's side of the line

A track counts as a visitor only if it spends its life in the include area (all of the frame when
none is set) and outside every exclude area: at least `INSIDE_SHARE` of its sightings. With an
entry line, it counts only when it crossed the line towards the inside; a track that crossed
outwards, or never crossed, is a passer-by (people leaving mostly show the back of their head,
which a face detector cannot see at all). Pure functions; the analyzer applies them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Point = tuple[float, float]
Polygon = tuple[Point, ...]
INSIDE_SHARE = 0.5


class ZoneError(ValueError):
    """A zone setting that does not parse; the message says what is expected."""


def parse_points(text: str, what: str, at_least: int) -> tuple[Point, ...]:
    points = []
    for pair in text.split():
        x, sep, y = pair.partition(",")
        try:
            point = (float(x), float(y))
        except ValueError:
            raise ZoneError(f"{what}: {pair!r} is not x,y (e.g. 0.25,0.5)") from None
        if not sep or not all(0.0 <= v <= 1.0 for v in point):
            raise ZoneError(f"{what}: {pair!r} must be x,y with both between 0 and 1 (relative to the frame)")
        points.append(point)
    if len(points) < at_least:
        raise ZoneError(f"{what}: needs at least {at_least} points like 0.1,0.2 (relative x,y), got {len(points)}")
    return tuple(points)


def parse_polygons(text: str, what: str) -> tuple[Polygon, ...]:
    """Polygons from "x,y x,y x,y; x,y ..." (empty: none)."""
    return tuple(parse_points(part, what, 3) for part in text.split(";") if part.strip())


def inside(polygon: Polygon, x: float, y: float) -> bool:
    """Whether (x, y) lies inside `polygon` (even-odd rule; the edge counts as inside on one side)."""
    hit = False
    for (x1, y1), (x2, y2) in zip(polygon, polygon[1:] + polygon[:1], strict=True):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            hit = not hit
    return hit


def side(line: tuple[Point, Point], x: float, y: float) -> float:
    """Positive on one side of the line, negative on the other, 0 on it."""
    (x1, y1), (x2, y2) = line
    return (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1)


@dataclass(frozen=True)
class Zones:
    include: tuple[Polygon, ...] = ()
    exclude: tuple[Polygon, ...] = ()
    entry_line: tuple[Point, Point] | None = None
    inside_point: Point | None = None

    @classmethod
    def parse(cls, include: str = "", exclude: str = "", entry_line: str = "", entry_inside: str = "") -> Zones:
        """From the `[vision]` settings' text; raises ZoneError naming the setting."""
        line = parse_points(entry_line, "vision.entry_line", 2) if entry_line.strip() else None
        if line is not None and len(line) != 2:
            raise ZoneError("vision.entry_line: exactly two points, e.g. 0.1,0.6 0.9,0.6")
        point = parse_points(entry_inside, "vision.entry_inside", 1)[0] if entry_inside.strip() else None
        if (line is None) != (point is None):
            raise ZoneError("vision.entry_line and vision.entry_inside go together: set both, or neither")
        if line is not None and point is not None and side((line[0], line[1]), *point) == 0:
            raise ZoneError("vision.entry_inside lies on the entry line: pick a point on the shop's side of it")
        return cls(
            parse_polygons(include, "vision.include"),
            parse_polygons(exclude, "vision.exclude"),
            None if line is None else (line[0], line[1]),
            point,
        )

    @property
    def active(self) -> bool:
        return bool(self.include or self.exclude or self.entry_line)

    def in_area(self, x: float, y: float) -> bool:
        """Whether a relative point is where counting happens."""
        if self.include and not any(inside(p, x, y) for p in self.include):
            return False
        return not any(inside(p, x, y) for p in self.exclude)

    def inward(self, x: float, y: float) -> bool:
        """Whether a relative point is on the inside of the entry line."""
        if self.entry_line is None or self.inside_point is None:
            raise ValueError("no entry line is set")
        return side(self.entry_line, x, y) * side(self.entry_line, *self.inside_point) > 0


@dataclass
class Path:
    """What the zones need to know of one track: relative centres, in order of sighting."""

    in_area: int = 0
    seen: int = 0
    first_inward: bool | None = None
    last_inward: bool | None = None
    crossed_in: bool = False
    crossed_out: bool = False

    def add(self, zones: Zones, x: float, y: float) -> None:
        self.seen += 1
        self.in_area += zones.in_area(x, y)
        if zones.entry_line is None:
            return
        now = zones.inward(x, y)
        if self.last_inward is not None and now != self.last_inward:
            if now:
                self.crossed_in = True
            else:
                self.crossed_out = True
        if self.first_inward is None:
            self.first_inward = now
        self.last_inward = now

    def verdict(self, zones: Zones) -> str:
        """ "in" (a visitor), "passing" (seen, but not coming in), or "outside" (not in the area)."""
        if self.seen == 0 or self.in_area < INSIDE_SHARE * self.seen:
            return "outside"
        if zones.entry_line is None:
            return "in"
        # Came from the outside and ended inside: walked in. Anything else passed by or left.
        return "in" if self.crossed_in and self.first_inward is False and self.last_inward else "passing"


def centre(box: Sequence[float], width: int, height: int) -> tuple[float, float]:
    """A box's centre (x1, y1, x2, y2 in pixels) relative to the frame. (No NumPy: the settings,
    which parse zones, load without it.)"""
    return float((box[0] + box[2]) / 2 / width), float((box[1] + box[3]) / 2 / height)

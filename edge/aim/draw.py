"""Drawing the aim preview: pure functions on BGR NumPy images (pixelation, face boxes, zones, the
summary band)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from edge.vision.zones import Zones

# The preview is scaled down to this width: a Pi encodes it every frame.
PREVIEW_MAX_WIDTH = 960
# Colours (BGR).
GREEN = (60, 200, 60)
RED = (40, 40, 230)
INCLUDE_COLOUR = (0, 200, 255)
EXCLUDE_COLOUR = (150, 150, 150)
LINE_COLOUR = (255, 200, 0)


def face_colour(width: float, min_classify: int) -> tuple[int, int, int]:
    """Green for a face wide enough to classify, red for one too small."""
    return GREEN if width >= min_classify else RED


def _font_scale(image: np.ndarray) -> float:
    return max(0.4, image.shape[1] / 1280)


def _label(image: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int]) -> None:
    """Text on a filled box in `colour`, its bottom-left corner at (x, y), kept inside the image."""

    scale = _font_scale(image)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x = min(max(0, x), max(0, image.shape[1] - tw - 4))
    y = min(max(th + base + 2, y), image.shape[0])
    cv2.rectangle(image, (x, y - th - base - 2), (x + tw + 4, y), colour, cv2.FILLED)
    cv2.putText(image, text, (x + 2, y - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)


def draw_faces(
    image: np.ndarray,
    boxes: Iterable[Sequence[float]],
    min_classify: int,
    scale: float = 1.0,
    labels: Sequence[str] | None = None,
) -> np.ndarray:
    """A copy of `image` with each face box (in source pixels, drawn at `scale`) outlined in
    green or red by its width, and labelled with its label (if given) and that width in source
    pixels."""
    out = image.copy()
    thickness = max(1, round(_font_scale(out) * 2))
    for i, box in enumerate(boxes):
        x1, y1, x2, y2 = (float(v) for v in box)
        colour = face_colour(x2 - x1, min_classify)
        p1, p2 = (round(x1 * scale), round(y1 * scale)), (round(x2 * scale), round(y2 * scale))
        cv2.rectangle(out, p1, p2, colour, thickness)
        text = f"{x2 - x1:.0f} px" if labels is None else f"{labels[i]}, {x2 - x1:.0f} px"
        _label(out, text, p1[0], p1[1] - thickness, colour)
    return out


def _pixels(points: Iterable[tuple[float, float]], width: int, height: int) -> np.ndarray:

    return np.array([[round(x * (width - 1)), round(y * (height - 1))] for x, y in points], np.int32)


def draw_zones(image: np.ndarray, zones: Zones) -> np.ndarray:
    """A copy of `image` with the include areas outlined, the exclude areas shaded, and the entry
    line drawn with an arrow pointing to its inside (zones are relative, 0..1)."""

    out = image.copy()
    height, width = out.shape[:2]
    thickness = max(1, round(_font_scale(out) * 2))
    if zones.exclude:
        shade = out.copy()
        polygons = [_pixels(p, width, height) for p in zones.exclude]
        cv2.fillPoly(shade, polygons, (40, 40, 40))
        out = cv2.addWeighted(shade, 0.6, out, 0.4, 0)
        cv2.polylines(out, polygons, True, EXCLUDE_COLOUR, thickness, cv2.LINE_AA)
        for polygon in polygons:
            _label(out, "exclude", int(polygon[:, 0].min()) + 4, int(polygon[:, 1].min()) + 20, EXCLUDE_COLOUR)
    for polygon in (_pixels(p, width, height) for p in zones.include):
        cv2.polylines(out, [polygon], True, INCLUDE_COLOUR, thickness, cv2.LINE_AA)
        _label(out, "include", int(polygon[:, 0].min()) + 4, int(polygon[:, 1].min()) + 20, INCLUDE_COLOUR)
    if zones.entry_line is not None and zones.inside_point is not None:
        a, b = (p.astype(np.float64) for p in _pixels(zones.entry_line, width, height))
        inside = _pixels([zones.inside_point], width, height)[0].astype(np.float64)
        cv2.line(out, tuple(map(int, a)), tuple(map(int, b)), LINE_COLOUR, thickness + 1, cv2.LINE_AA)
        middle = (a + b) / 2
        normal = np.array([-(b - a)[1], (b - a)[0]])
        if np.dot(normal, inside - middle) < 0:
            normal = -normal
        length = max(20.0, 0.1 * min(width, height))
        tip = middle + normal / max(np.linalg.norm(normal), 1e-9) * length
        start, end = tuple(map(round, middle)), tuple(map(round, tip))
        cv2.arrowedLine(out, start, end, LINE_COLOUR, thickness + 1, cv2.LINE_AA, tipLength=0.3)
        _label(out, "in", end[0] + 4, end[1] + 8, LINE_COLOUR)
    return out


def summary_band(width: int) -> int:
    """The height of the summary's band under a preview this wide."""
    (_, th), base = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, max(0.4, width / 1280), 1)
    return th + base + 10


def draw_summary(image: np.ndarray, text: str) -> np.ndarray:
    """`image` with `text` on a dark band added below it: the band hides no part of the view (a
    face at the bottom edge, the entry line), and holds nothing but the text."""
    scale = _font_scale(image)
    _, base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    band = np.full((summary_band(image.shape[1]), image.shape[1], 3), 30, image.dtype)
    out = np.concatenate([image, band])
    cv2.putText(
        out, text, (6, out.shape[0] - base - 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA
    )
    return out


def render(
    image: np.ndarray,
    boxes: Sequence[Sequence[float]],
    zones: Zones,
    min_classify: int,
    text: str,
    labels: Sequence[str] | None = None,
    max_width: int = PREVIEW_MAX_WIDTH,
) -> np.ndarray:
    """The preview of one frame (its faces already hidden, `edge.aim.mask`): scaled to at most
    `max_width`, then zones, face boxes (with their labels) and the summary drawn over it."""
    out = image
    scale = min(1.0, max_width / out.shape[1])
    if scale < 1.0:
        size = (round(out.shape[1] * scale), round(out.shape[0] * scale))
        out = cv2.resize(out, size, interpolation=cv2.INTER_AREA)
    return draw_summary(draw_faces(draw_zones(out, zones), boxes, min_classify, scale, labels), text)

"""`aicctv analyze`: faces, gender and age in images, folders and videos."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from edge.cli.common import EXIT_FAILED
from edge.vision.config import VisionConfig
from edge.wire.config import add_flags, load_section

if TYPE_CHECKING:
    import numpy as np

    from edge.vision.analyzer import Analyzer, Face, Visitor

# A 50-megapixel image is a large photo; a decoded 30000x30000 PNG would take 2.7 GB.
DEFAULT_MAX_PIXELS = 50_000_000
# OpenCV's own hard limit (2^30 pixels).
MAX_PIXELS_CEILING = 1 << 30


def expand_inputs(paths: list[Path]) -> Iterator[Path]:
    """Files as given; folders expanded to their images and videos, sorted, recursively."""
    from edge.vision.sources import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and child.suffix.lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS:
                    yield child
        else:
            yield path


def _face_rows(path: Path, faces: list[Face]) -> list[str]:
    if not faces:
        return [f"{path}  no face"]
    rows = []
    for i, face in enumerate(faces):
        j = face.to_json()
        x, y, w, h = j["box"]
        name = str(path) if i == 0 else ""
        rows.append(
            f"{name:<40} #{i + 1} box {x:6.0f},{y:<5.0f} {w:4.0f}x{h:<4.0f} "
            f"{j['gender']:<6} (p_female {j['p_female']:.2f})  age {j['age']:5.1f}  band {j['age_band']}"
        )
    return rows


def _visitor_row(visitor: Visitor) -> str:
    j = visitor.to_json()
    gender = j["gender"] or "-"
    age = "-" if j["age"] is None else f"{j['age']:5.1f}"
    return (
        f"  visitor {j['track']:>4}  {j['first_seen']:8.2f}s → {j['last_seen']:8.2f}s  {j['frames']:>5} frames  "
        f"{gender:<6} age {age}  band {j['age_band'] or '-'}"
    )


def analyze_video(analyzer: Analyzer, path: Path, as_json: bool, progress: bool) -> None:
    from tqdm import tqdm

    from edge.vision.sources import SourceError, VideoSource

    if shown(path) != str(path):
        raise SourceError(f"{shown(path)}: a video's file name must be valid UTF-8 for OpenCV: rename it")
    source = VideoSource(str(path))
    try:
        frames_total = source.frame_count or None
        bar = tqdm(total=frames_total, unit="frame", desc=path.name, disable=not progress, leave=False)
        analyzer.reset_times()
        visitors = 0
        for result in analyzer.track(source):
            if result.frame is not None:
                bar.update(1)
            for visitor in result.ended:
                visitors += 1
                if as_json:
                    print(json.dumps({"file": str(path), **visitor.to_json()}), flush=True)
                else:
                    bar.clear()
                    print(_visitor_row(visitor))
        bar.close()
    finally:
        source.close()
    times = analyzer.times.summary()
    fps = 1000 / times["total"] if times["total"] else 0.0
    frames = analyzer.times.frames
    if frames == 0:
        raise SourceError(f"{path}: no frame could be decoded")
    if as_json:
        print(json.dumps({"file": str(path), "visitors": visitors, "frames": frames, "fps": round(fps, 1)}), flush=True)
    else:
        stages = ", ".join(f"{k} {v:.2f}" for k, v in times.items() if k != "total")
        print(f"{path}: {visitors} visitors in {frames} frames at {fps:.1f} fps (ms/frame: {stages})")


def shown(path: Path) -> str:
    """A file name fit to print: bytes that are not UTF-8 (kept by Python as surrogates) replaced."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def read_image(path: Path, max_pixels: int) -> np.ndarray:
    """Decode an image file under a pixel cap. The bytes are read by Python, so OpenCV never sees
    a file name (one that is not UTF-8 crashed it); a file cut short is decoded as far as it goes,
    with a warning on stderr."""
    import cv2
    import numpy as np

    from edge.vision.sources import SourceError

    data = path.read_bytes()
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        if "MAX_IMAGE_PIXELS" not in str(exc):
            raise SourceError(f"{shown(path)}: not a readable image ({str(exc).strip().splitlines()[-1]})") from None
        raise SourceError(
            f"{shown(path)}: more than {max_pixels:,} pixels (--max-pixels); raise it to analyse this image"
        ) from None
    if image is None:
        raise SourceError(f"{shown(path)}: not a readable image (corrupt or unsupported format)")
    if _truncated(data):
        print(f"warning: {shown(path)}: the file is cut short; analysed what could be decoded", file=sys.stderr)
    return image


def _truncated(data: bytes) -> bool:
    """A JPEG without its end-of-image marker, or a PNG without its IEND chunk."""
    if data.startswith(b"\xff\xd8"):
        return not data.rstrip(b"\0").endswith(b"\xff\xd9")
    if data.startswith(b"\x89PNG"):
        return not data.endswith(b"IEND\xaeB`\x82")
    return False


def cmd_analyze(args: argparse.Namespace) -> int:
    missing = [shown(p) for p in args.paths if not p.exists()]
    if missing:
        args.parser.error(f"no such file or folder: {', '.join(missing)}")
    if not 1 <= args.max_pixels <= MAX_PIXELS_CEILING:
        args.parser.error(f"--max-pixels {args.max_pixels}: must be between 1 and {MAX_PIXELS_CEILING:,}")
    config = load_section(VisionConfig, "vision", args)
    # Read by OpenCV at its first decode: set before any image is decoded in this process.
    os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = str(args.max_pixels)
    from tqdm import tqdm

    from edge.vision.analyzer import Analyzer
    from edge.vision.sources import VIDEO_EXTENSIONS, SourceError

    files = list(expand_inputs(args.paths))
    analyzer = Analyzer(config)
    interactive = sys.stderr.isatty()
    failed = 0
    images = [f for f in files if f.suffix.lower() not in VIDEO_EXTENSIONS]
    bar = tqdm(total=len(images), unit="image", disable=not interactive or len(images) < 20, leave=False)
    for path in files:
        try:
            if path.suffix.lower() in VIDEO_EXTENSIONS:
                analyze_video(analyzer, path, args.json, interactive)
                continue
            bar.update(1)
            image = read_image(path, args.max_pixels)
            faces = analyzer.faces(image, assume_face=args.assume_face)
            if args.json:
                print(json.dumps({"file": str(path), "faces": [f.to_json() for f in faces]}), flush=True)
            else:
                bar.clear()
                print("\n".join(_face_rows(Path(shown(path)), faces)))
        except SourceError as exc:
            failed += 1
            bar.clear()
            print(f"error: {exc}", file=sys.stderr)
    bar.close()
    return EXIT_FAILED if failed else 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    analyze = commands.add_parser(
        "analyze",
        help="estimate gender and age in images, folders and videos",
        description=(
            "Detect faces and estimate gender and age. Images give one result per image;\n"
            "videos are tracked, giving one result per visitor (person) and a summary line."
        ),
        epilog=(
            "examples:\n"
            "  aicctv analyze photo.jpg                 readable table\n"
            "  aicctv analyze shots/ --json             one JSON line per image\n"
            "  aicctv analyze crop.jpg --assume-face    the image is already a face crop\n"
            "  aicctv analyze clip.mp4 --json           one JSON line per visitor, then a summary\n\n"
            "exit status: 0 all inputs processed, 1 some could not be read, 2 usage error"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    analyze.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image, video or folder")
    analyze.add_argument("--json", action="store_true", help="JSON lines on stdout instead of a table")
    analyze.add_argument(
        "--assume-face",
        action="store_true",
        help="each image is one face crop (skip detection; still aligned like training data)",
    )
    analyze.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"refuse images larger than this many pixels (default {DEFAULT_MAX_PIXELS:,}: 50 Mpx, "
        "about 600 MB while decoding)",
    )
    add_flags(analyze.add_argument_group("vision pipeline"), VisionConfig, section="vision")
    analyze.set_defaults(func=cmd_analyze, parser=analyze)

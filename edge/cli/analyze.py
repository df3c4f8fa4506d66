"""`aicctv analyze`: faces, gender and age in images, folders and videos."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from edge.cli.common import EXIT_FAILED
from edge.vision.config import VisionConfig
from edge.wire.config import add_flags, load_section

if TYPE_CHECKING:
    import numpy as np

    from edge.vision.analyzer import Analyzer, Face, Visitor
    from edge.vision.sources import Frame, FrameSource

# A 50-megapixel image is a large photo; a decoded 30000x30000 PNG would take 2.7 GB.
DEFAULT_MAX_PIXELS = 50_000_000
# OpenCV's own hard limit (2^30 pixels).
MAX_PIXELS_CEILING = 1 << 30


def is_live(arg: str) -> bool:
    """Whether an argument names a camera or stream (analysed until stopped), not a file or folder."""
    from edge.vision.sources import Kind, source_kind

    return not Path(arg).is_dir() and source_kind(arg) is not Kind.FILE


def expand_inputs(args: list[str]) -> Iterator[str | Path]:
    """Cameras and streams as given (a string); files as given; folders expanded to their images
    and videos, sorted, recursively."""
    from edge.vision.sources import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

    for arg in args:
        if is_live(arg):
            yield arg
            continue
        path = Path(arg)
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
        where = f"{name:<40} #{i + 1} box {x:6.0f},{y:<5.0f} {w:4.0f}x{h:<4.0f} "
        if j["too_small"]:
            rows.append(f"{where}too small to judge gender and age")
            continue
        rows.append(
            f"{where}{j['gender'] or 'unsure':<6} (p_female {j['p_female']:.2f})  age {j['age']:5.1f}  "
            f"band {j['age_band']}"
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


@dataclass(frozen=True)
class Limit:
    """Where a video or stream is cut short (--seconds, --frames); a stream also ends at Ctrl-C."""

    seconds: float | None = None
    frames: int | None = None

    def total(self, frame_count: int | None) -> int | None:
        """The frames the progress bar expects: the file's, or the limit's, whichever is fewer."""
        known = [n for n in (frame_count, self.frames) if n]
        return min(known) if known else None


NO_LIMIT = Limit()


class _Interrupted:
    """With `catch` (a live stream), the first Ctrl-C ends the stream as its end would (the people
    in view are counted, the summary printed) and a second one aborts; without, Ctrl-C aborts."""

    def __init__(self, catch: bool) -> None:
        self.catch = catch
        self.seen = False

    def __enter__(self) -> _Interrupted:
        if self.catch:
            self.previous = signal.signal(signal.SIGINT, self._first)
        return self

    def _first(self, signum: int, frame: object) -> None:
        self.seen = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc: object) -> None:
        if self.catch:
            signal.signal(signal.SIGINT, self.previous)


def _limited(frames: Iterable[Frame], limit: Limit, live: bool, interrupted: _Interrupted) -> Iterator[Frame]:
    """The frames up to the limit. A live source's Unix times become seconds since its first
    frame, as a video's are seconds into it."""
    first: float | None = None
    for count, frame in enumerate(frames):
        if interrupted.seen or (limit.frames is not None and count >= limit.frames):
            return
        first = frame.timestamp if first is None else first
        if limit.seconds is not None and frame.timestamp - first >= limit.seconds:
            return
        yield replace(frame, timestamp=frame.timestamp - first) if live else frame


def analyze_video(analyzer: Analyzer, path: Path, as_json: bool, progress: bool, limit: Limit = NO_LIMIT) -> None:
    from edge.vision.sources import SourceError, VideoSource

    if shown(path) != str(path):
        raise SourceError(f"{shown(path)}: a video's file name must be valid UTF-8 for OpenCV: rename it")
    source = VideoSource(str(path))
    try:
        _track(analyzer, str(path), path.name, source, as_json, progress, limit, live=False)
    finally:
        source.close()


def analyze_stream(analyzer: Analyzer, spec: str, as_json: bool, progress: bool, limit: Limit) -> None:
    """A camera or stream, tracked like a video until it ends, the limit, or Ctrl-C."""
    from edge.vision.sources import open_source
    from edge.wire.config import redact

    source = open_source(spec)
    name = redact(spec)
    try:
        _track(analyzer, name, name, source, as_json, progress, limit, live=True)
    finally:
        source.close()


def _track(
    analyzer: Analyzer,
    name: str,
    label: str,
    source: FrameSource,
    as_json: bool,
    progress: bool,
    limit: Limit,
    live: bool,
) -> None:
    """One line per visitor as their track ends, then a summary line for the input `name`."""
    from tqdm import tqdm

    from edge.vision.sources import SourceError

    total = limit.total(source.frame_count)
    bar = tqdm(total=total, unit="frame", desc=label, disable=not progress, leave=False)
    analyzer.reset_times()
    visitors = 0
    with _Interrupted(catch=live) as interrupted:
        for result in analyzer.track(_limited(source, limit, live, interrupted)):
            if result.frame is not None:
                bar.update(1)
            for visitor in result.ended:
                visitors += 1
                if as_json:
                    print(json.dumps({"file": name, **visitor.to_json()}), flush=True)
                else:
                    bar.clear()
                    print(_visitor_row(visitor))
    bar.close()
    times = analyzer.times.summary()
    fps = 1000 / times["total"] if times["total"] else 0.0
    frames = analyzer.times.frames
    if frames == 0:
        raise SourceError(f"{name}: no frame could be decoded")
    if as_json:
        print(json.dumps({"file": name, "visitors": visitors, "frames": frames, "fps": round(fps, 1)}), flush=True)
    else:
        stages = ", ".join(f"{k} {v:.2f}" for k, v in times.items() if k != "total")
        print(f"{name}: {visitors} visitors in {frames} frames at {fps:.1f} fps (ms/frame: {stages})")


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

    # No image of max_pixels is larger than uncompressed 32-bit pixels and some metadata.
    limit = 4 * max_pixels + (1 << 20)
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise SourceError(f"{shown(path)}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise SourceError(f"{shown(path)}: over {limit:,} bytes, more than any image of --max-pixels {max_pixels:,}")
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
    missing = [shown(Path(p)) for p in args.inputs if not Path(p).exists() and not is_live(p)]
    if missing:
        args.parser.error(f"no such file or folder: {', '.join(missing)}")
    if args.seconds is not None and not args.seconds > 0:
        args.parser.error(f"--seconds {args.seconds}: must be more than 0")
    if args.frames is not None and args.frames < 1:
        args.parser.error(f"--frames {args.frames}: must be at least 1")
    if not 1 <= args.max_pixels <= MAX_PIXELS_CEILING:
        args.parser.error(f"--max-pixels {args.max_pixels}: must be between 1 and {MAX_PIXELS_CEILING:,}")
    config = load_section(VisionConfig, "vision", args)
    # Read by OpenCV at its first decode: set before any image is decoded in this process.
    os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = str(args.max_pixels)
    from tqdm import tqdm

    from edge.vision.analyzer import Analyzer
    from edge.vision.sources import VIDEO_EXTENSIONS, SourceError

    empty = [shown(Path(p)) for p in args.inputs if Path(p).is_dir() and next(expand_inputs([p]), None) is None]
    if empty:
        args.parser.error(f"no images or videos in folder: {', '.join(empty)}")
    inputs = list(expand_inputs(args.inputs))
    analyzer = Analyzer(config)
    interactive = sys.stderr.isatty()
    limit = Limit(args.seconds, args.frames)
    failed = 0
    images = [f for f in inputs if isinstance(f, Path) and f.suffix.lower() not in VIDEO_EXTENSIONS]
    bar = tqdm(total=len(images), unit="image", disable=not interactive or len(images) < 20, leave=False)
    for path in inputs:
        try:
            if isinstance(path, str):
                bar.clear()
                analyze_stream(analyzer, path, args.json, interactive, limit)
                continue
            if path.suffix.lower() in VIDEO_EXTENSIONS:
                analyze_video(analyzer, path, args.json, interactive, limit)
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
            "videos, cameras and streams are tracked, giving one result per visitor (person)\n"
            "and a summary line. A camera or stream runs until it ends, --seconds/--frames,\n"
            "or Ctrl-C (the people in view are then counted; a second Ctrl-C aborts)."
        ),
        epilog=(
            "examples:\n"
            "  aicctv analyze photo.jpg                 readable table\n"
            "  aicctv analyze shots/ --json             one JSON line per image\n"
            "  aicctv analyze crop.jpg --assume-face    the image is already a face crop\n"
            "  aicctv analyze clip.mp4 --json           one JSON line per visitor, then a summary\n"
            "  aicctv analyze rtsp://cam.local/stream   a network camera, until Ctrl-C\n"
            "  aicctv analyze /dev/video0 --seconds 60  a USB camera for a minute\n\n"
            "exit status: 0 all inputs processed, 1 some could not be read, 2 usage error"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Strings, not Paths: a Path would fold rtsp://host/x into rtsp:/host/x.
    analyze.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image, video, folder, camera (/dev/video0, 0, picamera2) or stream URL (rtsp://, http(s)://)",
    )
    analyze.add_argument(
        "--seconds", type=float, metavar="N", help="stop each video or stream after N seconds (of video time)"
    )
    analyze.add_argument("--frames", type=int, metavar="N", help="stop each video or stream after N frames")
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

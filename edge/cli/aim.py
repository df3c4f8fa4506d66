"""`aicctv edge aim`: point the camera before counting. It takes the camera for a few minutes and
shows, on a live preview served to localhost only (open it over an SSH tunnel), the faces it finds,
green where they are large enough to classify and red where they are too small, each with its
width in pixels, the zones and the entry line from the configuration, and a running summary.
Everything that might be a face is hidden in the preview (`edge.aim.mask`; docs/security.md says
what that promises); nothing is written to disk. `--labels` adds each followed person's track,
gender and age band as the pipeline judges them. `--text` prints the summary instead.

This module is the command line: the frame loop, drawing and server are `edge.aim`'s.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import getpass
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from edge.cli.common import EXIT_FAILED, EXIT_USAGE, config_options
from edge.daemon.config import EdgeConfig
from edge.vision.config import VisionConfig
from edge.wire.config import ConfigError, add_flags, flag_values, load, redact
from edge.wire.listen import is_loopback, split_listen

if TYPE_CHECKING:
    from http.server import ThreadingHTTPServer

    from edge.aim.live import Newest
    from edge.aim.server import Preview
    from edge.aim.summary import Summary
    from edge.vision.analyzer import Analyzer

DEFAULT_LISTEN = "127.0.0.1:8081"
MAX_MINUTES = 60.0
SERVICE = "aicctv-edge"
# A camera that opens but sends nothing for this long is treated as not opened.
FIRST_FRAME_S = 10.0


# ---- the camera: busy or not -------------------------------------------------------------------


def active_services() -> list[str]:
    """The aicctv-edge units running now: the single service and any template instance."""
    command = ["systemctl", "list-units", "--type=service", "--state=active", "--no-legend", "--plain"]
    try:
        done = subprocess.run(
            [*command, f"{SERVICE}.service", f"{SERVICE}@*.service"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split()[0].removesuffix(".service") for line in done.stdout.splitlines() if line.strip()]


def device_busy(spec: str) -> bool:
    """Whether a V4L2 device node refuses to open because another program holds it (EBUSY)."""
    import os

    path = f"/dev/video{spec}" if spec.isdigit() else spec
    if not path.startswith("/dev/"):
        return False
    try:
        os.close(os.open(path, os.O_RDWR | os.O_NONBLOCK))
    except OSError as exc:
        return exc.errno == errno.EBUSY
    return False


def busy_message(spec: str, error: BaseException | None, services: Sequence[str], ebusy: bool) -> str | None:
    """One line telling the user to stop the daemon, when a camera that failed to open is held by
    it (a service is active) or by anyone (EBUSY); None when nothing says the camera is busy."""
    if services:
        units = " ".join(services)
        return (
            f"the camera is busy: {', '.join(services)} is using it. Stop it first: sudo systemctl stop {units} "
            f"(and start it again when done: sudo systemctl start {units})"
        )
    busy = ebusy or getattr(error, "errno", None) == errno.EBUSY or "resource busy" in str(error).lower()
    if busy:
        return (
            f"the camera {redact(spec)} is busy: another program holds it; if it is the daemon, stop it "
            f"first: sudo systemctl stop {SERVICE}"
        )
    return None


def parse_listen(text: str) -> tuple[str, int]:
    try:
        return split_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# ---- the command --------------------------------------------------------------------------------

# Settings aim does not use: their problems (e.g. a log or a password file only the daemon's user
# may write or read) do not stop it.
UNUSED_SECTIONS = ("device.", "mqtt.", "storage.", "hourly.")
AIM_SETTINGS = ["source.spec", *(f"vision.{f.name}" for f in dataclasses.fields(VisionConfig))]


def aim_config(args: argparse.Namespace) -> EdgeConfig:
    problems: list[str] = []
    config = load(EdgeConfig, args.config, dict(args.set) | flag_values(args), problems=problems)
    relevant = [p for p in problems if not p.startswith(UNUSED_SECTIONS)]
    if relevant:
        raise ConfigError(relevant[0])
    return config


def minutes_type(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of minutes") from None
    if not 0 < value <= MAX_MINUTES:
        raise argparse.ArgumentTypeError(f"{text}: between 0 and {MAX_MINUTES:g} minutes (it holds the camera)")
    return value


def _fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def cmd_aim(args: argparse.Namespace) -> int:
    host, port = args.listen
    if not args.text and not args.public and not is_loopback(host):
        return _fail(
            f"--listen {host}:{port} is not a loopback address: anyone on that network could watch the "
            f"camera; keep {DEFAULT_LISTEN} and use an SSH tunnel, or add --public if you must",
            EXIT_USAGE,
        )
    config = aim_config(args)
    from edge.aim.live import Newest
    from edge.aim.server import Preview, page, serve
    from edge.aim.summary import summarize
    from edge.vision.analyzer import Analyzer
    from edge.vision.sources import Camera, Kind, open_source, source_kind

    vision = config.vision
    analyzer = Analyzer(vision)  # before the camera is taken: it is held as briefly as can be
    spec, s = config.source.spec, config.source
    camera = Camera(s.width, s.height, s.fps, s.rotate, s.flip)
    kind = source_kind(spec)
    held = kind in (Kind.DEVICE, Kind.PICAMERA2, Kind.PIPELINE)

    def camera_failed(error: BaseException | None, fallback: str) -> int:
        busy = busy_message(spec, error, active_services() if held else [], held and device_busy(spec))
        return _fail(busy or fallback)

    server = preview = None
    if not args.text:
        preview = Preview(summarize([], vision.min_classify).to_json())
        try:
            server = serve(host, port, preview, page(vision.min_classify, args.pixelate, args.minutes, args.labels))
        except OSError as exc:
            return _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc} (pick another with --listen)")

    try:
        try:
            source = open_source(spec, camera=camera)
        except (RuntimeError, OSError, IndexError) as exc:  # SourceError, and picamera2's own
            if not held:
                raise
            return camera_failed(exc, redact(str(exc)))
        reopen = (lambda: open_source(spec, camera=camera)) if kind is Kind.FILE else None
        frames = Newest(source, reopen).start()
        try:
            return _run(args, frames, analyzer, server, preview, camera_failed, spec)
        finally:
            frames.stop()
            if held:
                print(
                    f"the camera is free again (restart the daemon if you stopped it: sudo systemctl start {SERVICE})"
                )
    finally:
        if server is not None and preview is not None:
            preview.close()
            server.shutdown()
            server.server_close()


def _run(
    args: argparse.Namespace,
    frames: Newest,
    analyzer: Analyzer,
    server: ThreadingHTTPServer | None,
    preview: Preview | None,
    camera_failed: Callable[[BaseException | None, str], int],
    spec: str,
) -> int:
    from edge.aim.live import run

    stop = threading.Event()
    previous = {n: signal.signal(n, lambda *_: stop.set()) for n in (signal.SIGTERM, signal.SIGINT)}
    try:
        first = frames.first(stop, FIRST_FRAME_S)
        if stop.is_set():
            return 0
        if first is None:
            if frames.error is not None:
                return camera_failed(frames.error, f"{redact(spec)}: {redact(str(frames.error))}")
            return camera_failed(None, f"{redact(spec)} sent no frames within {FIRST_FRAME_S:g} s")
        h, w = first.image.shape[:2]
        print(f"aim: {redact(spec)} at {w}x{h}, for {args.minutes:g} min (Ctrl-C stops); nothing is recorded")
        if server is not None:
            threading.Thread(target=server.serve_forever, name="aim-server", daemon=True).start()
            host, port = server.server_address[:2]
            shown = f"[{host}]" if ":" in host else host
            target = shown if is_loopback(host) else "127.0.0.1"
            print(f"on your computer: ssh -L {port}:{target}:{port} {getpass.getuser()}@{socket.gethostname()}")
            print(f"then open http://127.0.0.1:{port}/")
            if not is_loopback(host):
                print(f"or, from the network (--public): http://{shown}:{port}/")
        sys.stdout.flush()

        def report(summary: Summary) -> None:
            print(f"{time.strftime('%H:%M:%S')}  {summary.text()}", flush=True)

        until = time.monotonic() + args.minutes * 60
        mask = None
        if preview is not None and args.pixelate:
            from edge.aim.mask import FaceMask

            mask = FaceMask(threads=analyzer.config.threads)
        if not run(frames, analyzer, preview, until, stop, mask, args.labels, report if args.text else None):
            if frames.error is not None:
                return _fail(f"{redact(spec)} failed: {redact(str(frames.error))}")
            return _fail(f"{redact(spec)} stopped sending frames")
        print("aim: time is up" if not stop.is_set() else "aim: stopped", flush=True)
        return 0
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def add_commands(commands: argparse._SubParsersAction) -> None:
    """`aicctv edge aim`, added to `aicctv edge` (registered after edge.py's commands)."""
    edge = commands.choices["edge"]
    sub = next(a for a in edge._actions if isinstance(a, argparse._SubParsersAction))
    aim = sub.add_parser(
        "aim",
        help="point the camera: a live preview of faces, their size and the zones, for a few minutes",
        description=(
            "Take the camera for a few minutes and show what the daemon would see: faces (green:\n"
            "wide enough to classify; red: too small) with their width in pixels, the include and\n"
            "exclude zones, the entry line with an arrow to its inside, and a summary of the last few\n"
            "seconds. The preview is served on localhost only, for a browser through an SSH tunnel;\n"
            "everything that might be a face is hidden in it (any size, turned or cut by the edge),\n"
            "the rest softened. Nothing is written to disk. Stop the daemon first: it holds\n"
            "the camera (sudo systemctl stop aicctv-edge)."
        ),
        epilog=(
            "examples:\n"
            "  sudo systemctl stop aicctv-edge\n"
            "  aicctv edge aim --config /etc/aicctv/edge.toml\n"
            "      then, on your computer: ssh -L 8081:127.0.0.1:8081 pi@shop-1\n"
            "      and open http://127.0.0.1:8081/\n"
            "  aicctv edge aim --config /etc/aicctv/edge.toml --text     (no browser: a summary a second)\n"
            "  aicctv edge aim --config /etc/aicctv/edge.toml --labels   (live analysis: track, gender, age band)\n"
            "  sudo systemctl start aicctv-edge\n\n"
            "pages: / (preview and summary), /stream.mjpg, /frame.jpg (one frame), /summary (JSON)\n"
            "exit status: 0 time up or stopped, 1 camera busy or unusable, 2 bad configuration or usage"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    group = config_options(
        aim, "TOML file, e.g. /etc/aicctv/edge.toml (its [source] and [vision])", "vision.min_face=32"
    )
    add_flags(group, EdgeConfig, only=AIM_SETTINGS)
    aim.add_argument(
        "--minutes", type=minutes_type, default=10.0, metavar="M", help="stop after this many minutes (default 10)"
    )
    aim.add_argument(
        "--listen",
        type=parse_listen,
        default=parse_listen(DEFAULT_LISTEN),
        metavar="HOST:PORT",
        help=f"where to serve the preview (default {DEFAULT_LISTEN}; port 0: any free port)",
    )
    aim.add_argument(
        "--public",
        action="store_true",
        help="allow a --listen address other than loopback: anyone on that network can then watch",
    )
    aim.add_argument("--text", action="store_true", help="no preview: print the summary once a second")
    aim.add_argument(
        "--labels",
        action="store_true",
        help="live analysis: label each followed person with their track number, gender and age band as the "
        "pipeline judges them so far (unknown where it does not), and add the judged share to the summary",
    )
    aim.add_argument(
        "--no-pixelate",
        dest="pixelate",
        action="store_false",
        help="show faces unhidden in the preview: for the installer's own eyes only, and only with a "
        "reason (e.g. to tell a face from a poster); still nothing is recorded",
    )
    aim.set_defaults(func=cmd_aim)

"""Pipeline speed on an emulated Raspberry Pi core: the tracked pipeline (`bench.speed`'s busy and idle
clips, one TFLite thread, as the daemon runs it) in a child process held to a share of one core of
this machine, the share calibrated so that BlazeFace runs as slowly here as on a Pi 4 or a Pi 5.

    python -m bench.pi [--board pi4 pi5] [--quota Q] [--cameras 1 2] [--frames 400] [--clip DIR]
                       [--mobilenet mobilenet_v2.tflite]

How the share is enforced, best first (the one used is printed):
  cgroup v2   a child cgroup with cpu.max "Q*100000 100000" (needs root and the cpu controller)
  cgroup v1   a child of the cpu hierarchy with cpu.cfs_quota_us / cpu.cfs_period_us (root)
  duty cycle  the parent stops and continues the child (SIGSTOP/SIGCONT) every 20 ms (anyone)
The child is also pinned to one core (sched_setaffinity), so the share is of one core.

Calibration: this machine's milliseconds per BlazeFace call (a 640x480 frame letterboxed, inferred,
decoded) against the same call's assumed milliseconds on one core of the board (PI_MS below, with
their sources); quota = here / Pi. Then, at that quota: busy and idle fps, CPU per frame (here,
and scaled to the Pi core), and whether one and two 15 fps cameras keep up (two: two daemons at
once, each on its own core with its own quota, as aicctv-edge@.service runs them on a 4-core Pi).

Emulation by quota is not an ARM core: memory bandwidth and caches, NEON against AVX2 kernels
(XNNPACK, OpenCV), and video decoding differ; see bench/RESULTS-pi.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

REALTIME_FPS = 15.0
PERIOD_US = 100_000
DUTY_PERIOD_S = 0.02

# One core of each board, FP32, one thread, XNNPACK. No published per-call BlazeFace timing on a Pi
# was found, so the BlazeFace figures are derived from a published MobileNet v2 figure:
#  - Pi 4 (BCM2711, Cortex-A72, 64-bit OS): XNNPACK's README (github.com/google/XNNPACK,
#    end2end_bench, 2020) gives FP32 MobileNet v2 1.0 at 46 ms with 4 threads. One thread, at
#    ~88 % parallel efficiency (the same README's Pixel phones: 49 ms on one big core, 26 on two):
#    46 * 4 * 0.875 = 161 ms.
#  - Pi 5 (BCM2712, Cortex-A76 at 2.4 GHz): Raspberry Pi Ltd's launch figure, "a 2-3x increase in
#    CPU performance relative to Raspberry Pi 4"; 2.5x is assumed: 64 ms.
#  - BlazeFace per call (letterbox, inference, decode of a 640x480 frame) measured against MobileNet
#    v2 (224x224, random weights, tf.keras.applications) on this project's x86 build machine, same
#    runtime, one thread, CPU time: full 0.55x, short 0.22x of a MobileNet v2 (three runs, +-10 %).
#    On the Pi 4: 89 and 35 ms; on the Pi 5: 36 and 14 ms.
# `--mobilenet FILE` calibrates on MobileNet v2 itself instead (where a .tflite of it is at hand).
PI_MOBILENET_V2_MS = {"pi4": 161.0, "pi5": 64.0}
PI_MS = {
    "pi4": {"full": 89.0, "short": 35.0},
    "pi5": {"full": 36.0, "short": 14.0},
}
BOARD_NAMES = {"pi4": "Raspberry Pi 4", "pi5": "Raspberry Pi 5"}


# ---- calibration ------------------------------------------------------------------------------------


def blazeface_ms(model: str, calls: int = 300) -> dict[str, float]:
    """CPU milliseconds per `BlazeFace(model, 0.5, 1)` call on a 640x480 frame of the busy clip (or
    noise), and per bare interpreter call, on one thread of this machine, unthrottled: the 10th
    percentile, which other processes sharing the machine (caches, memory) disturb least."""
    import numpy as np

    from edge.vision.detect import BlazeFace

    detector = BlazeFace(model, 0.5, 1)
    frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    clip = Path(".cache/clips/seed0/clip.mp4")
    if clip.is_file():
        import cv2

        capture = cv2.VideoCapture(str(clip))
        capture.set(cv2.CAP_PROP_POS_FRAMES, 300)
        ok, image = capture.read()
        capture.release()
        if ok:
            frame = cv2.resize(image, (640, 480))
    for _ in range(20):
        detector(frame)
    whole, bare = [], []
    size = detector.spec.input_size
    tensor = np.zeros((1, size, size, 3), np.float32)
    # CPU time of this thread (one TFLite thread runs in the caller): what a quota limits, and
    # unaffected by other processes competing for the core.
    for _ in range(calls):
        start = time.thread_time()
        detector(frame)
        whole.append(time.thread_time() - start)
        start = time.thread_time()
        detector.net(tensor)
        bare.append(time.thread_time() - start)
    return {"call": 1000 * float(np.percentile(whole, 10)), "invoke": 1000 * float(np.percentile(bare, 10))}


def mobilenet_ms(path: Path, calls: int = 60) -> float:
    """CPU milliseconds per inference of a .tflite model (random input), one thread: 10th percentile."""
    import numpy as np

    from edge.vision.runtime import TFLiteModel

    net = TFLiteModel(path, num_threads=1)
    tensor = np.random.default_rng(0).random(net.input_shape).astype(np.float32)
    for _ in range(5):
        net(tensor)
    times = []
    for _ in range(calls):
        start = time.thread_time()
        net(tensor)
        times.append(time.thread_time() - start)
    return 1000 * float(np.percentile(times, 10))


# ---- throttling ---------------------------------------------------------------------------------------


def _cgroup_v2_root() -> Path | None:
    root = Path("/sys/fs/cgroup")
    for candidate in (root, root / "unified"):
        controllers = candidate / "cgroup.controllers"
        if controllers.is_file() and "cpu" in controllers.read_text().split():
            return candidate
    return None


class Throttle:
    """Holds child processes to `quota` of one core: cgroup v2, cgroup v1, or a SIGSTOP/SIGCONT
    duty cycle from this (unthrottled) process. `quota` None or >= 1: no limit."""

    def __init__(self, quota: float | None, name: str) -> None:
        self.quota = quota if quota is not None and quota < 1 else None
        self.name = name
        self.cgroup: Path | None = None
        self.method = "none (whole core)"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        if self.quota is None:
            return
        quota_us = max(1000, round(self.quota * PERIOD_US))
        if os.geteuid() == 0:
            v2 = _cgroup_v2_root()
            if v2 is not None:
                with contextlib.suppress(OSError):
                    subtree = v2 / "cgroup.subtree_control"
                    if "cpu" not in subtree.read_text().split():
                        subtree.write_text("+cpu")
                    path = v2 / name
                    path.mkdir(exist_ok=True)
                    (path / "cpu.max").write_text(f"{quota_us} {PERIOD_US}")
                    self.cgroup, self.method = path, f'cgroup v2 cpu.max "{quota_us} {PERIOD_US}"'
                    return
            v1 = Path("/sys/fs/cgroup/cpu")
            if self.cgroup is None and (v1 / "cpu.cfs_quota_us").is_file():
                with contextlib.suppress(OSError):
                    path = v1 / name
                    path.mkdir(exist_ok=True)
                    (path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                    (path / "cpu.cfs_quota_us").write_text(str(quota_us))
                    self.cgroup = path
                    self.method = f"cgroup v1 cpu.cfs_quota_us {quota_us} / cpu.cfs_period_us {PERIOD_US}"
                    return
        self.method = f"SIGSTOP/SIGCONT duty cycle, {self.quota:.0%} of every {DUTY_PERIOD_S * 1000:.0f} ms"

    def attach(self, process: subprocess.Popen) -> None:
        """Start limiting `process` (pid written into the cgroup, or a duty-cycle thread)."""
        if self.quota is None:
            return
        if self.cgroup is not None:
            (self.cgroup / "cgroup.procs").write_text(str(process.pid))
            return
        thread = threading.Thread(target=self._duty_cycle, args=(process,), daemon=True)
        thread.start()
        self._threads.append(thread)

    def _duty_cycle(self, process: subprocess.Popen) -> None:
        assert self.quota is not None
        run_s, stop_s = DUTY_PERIOD_S * self.quota, DUTY_PERIOD_S * (1 - self.quota)
        with contextlib.suppress(ProcessLookupError):
            while process.poll() is None and not self._stop.is_set():
                time.sleep(run_s)
                os.kill(process.pid, signal.SIGSTOP)
                time.sleep(stop_s)
                os.kill(process.pid, signal.SIGCONT)

    def stats(self) -> str:
        if self.cgroup is None:
            return ""
        for name in ("cpu.stat",):
            with contextlib.suppress(OSError):
                stat = dict(line.split() for line in (self.cgroup / name).read_text().splitlines())
                periods, throttled = stat.get("nr_periods", "0"), stat.get("nr_throttled", "0")
                return f"throttled in {throttled} of {periods} periods"
        return ""

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        if self.cgroup is not None:
            # Empty by now (the children have exited); a cgroup with no tasks can be removed.
            for _ in range(50):
                try:
                    self.cgroup.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)


@contextlib.contextmanager
def throttle(quota: float | None, name: str) -> Iterator[Throttle]:
    limiter = Throttle(quota, name)
    try:
        yield limiter
    finally:
        limiter.close()


# ---- the measured child -------------------------------------------------------------------------------


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def worker(clips: list[Path], cpu: int | None, frames: int | None, detector: str) -> None:
    """In the child: pin to `cpu`, wait for the parent to attach the limit, run each clip, print
    one JSON line per clip."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    from edge import Analyzer, VisionConfig, open_source

    analyzer = Analyzer(VisionConfig(threads=1, detector=detector))
    sys.stdin.readline()  # the parent has moved this process into its cgroup
    for clip in clips:
        analyzer.reset_times()
        source = open_source(str(clip))
        start, cpu0 = time.perf_counter(), cpu_s()
        tracks = analyzer.track(source)
        for _ in tracks:
            if frames and analyzer.times.frames >= frames:
                break
        tracks.close()
        wall, used = time.perf_counter() - start, cpu_s() - cpu0
        source.close()
        n = analyzer.times.frames
        result = {"clip": str(clip), "frames": n, "fps": n / wall, "cpu_ms": 1000 * used / n}
        result["detected"] = analyzer.times.detected / n
        print(json.dumps(result), flush=True)


def measure(
    quota: float | None, clips: list[Path], cameras: int, frames: int | None, detector: str
) -> tuple[list[list[dict]], str, str]:
    """Run `cameras` children at once, each on its own core under its own limit of `quota`;
    returns their results per camera, the limiting method and the cgroup's throttling stats."""
    ncpu = len(os.sched_getaffinity(0))
    cpus = sorted(os.sched_getaffinity(0))
    with contextlib.ExitStack() as stack:
        limiters = [stack.enter_context(throttle(quota, f"aicctv-bench-pi-{os.getpid()}-{i}")) for i in range(cameras)]
        children = []
        for i in range(cameras):
            command = [sys.executable, "-m", "bench.pi", "--worker", "--detector", detector]
            command += ["--cpu", str(cpus[(ncpu - 1 - i) % ncpu])]
            if frames:
                command += ["--frames", str(frames)]
            command += [str(c) for c in clips]
            child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            limiters[i].attach(child)
            children.append(child)
        for child in children:  # start all at once
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        results = []
        for child in children:
            out, _ = child.communicate()
            if child.returncode != 0:
                raise SystemExit(f"bench.pi: a measuring child failed (exit {child.returncode})")
            results.append([json.loads(line) for line in out.splitlines() if line.startswith("{")])
        stats = limiters[0].stats()
        return results, limiters[0].method, stats


# ---- report -----------------------------------------------------------------------------------------


def ensure_clips(clip: Path) -> list[Path]:
    from bench.clipgen import empty_scene, generate

    idle = clip.with_name(clip.name + "-empty")
    if not (clip / "clip.mp4").is_file():
        generate(clip)
    if not (idle / "clip.mp4").is_file():
        empty_scene(idle)
    return [clip / "clip.mp4", idle / "clip.mp4"]


def verdict(fps: float) -> str:
    return f"{'keeps up' if fps >= REALTIME_FPS else 'FALLS BEHIND'} ({fps:.1f} fps {'≥' if fps >= 15 else '<'} 15)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--board", nargs="+", choices=sorted(PI_MS), default=sorted(PI_MS), help="boards to emulate")
    parser.add_argument("--quota", type=float, help="share of one core instead of the calibrated one (e.g. 0.25)")
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 2], help="daemons at once (each on a core)")
    parser.add_argument("--clip", type=Path, default=Path(".cache/clips/seed0"))
    parser.add_argument(
        "--frames", type=int, default=400, help="stop each clip after N frames (default 400; 0: whole clips)"
    )
    parser.add_argument("--mobilenet", type=Path, metavar="FILE", help="calibrate on this FP32 MobileNet v2 .tflite")
    parser.add_argument("--detector", choices=("full", "short"), default="full", help="BlazeFace model (daemon: full)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    parser.add_argument("clips", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.clips, args.cpu, args.frames, args.detector)
        return

    clips = ensure_clips(args.clip)
    print("calibration (one thread, unthrottled, a 640x480 frame):")
    here = {}
    for model in ("full", "short"):
        here[model] = blazeface_ms(model)
        assumed = ", ".join(f"{BOARD_NAMES[b]} {PI_MS[b][model]:.1f} ms" for b in sorted(PI_MS))
        print(
            f"  BlazeFace {model:5s}: this machine {here[model]['call']:.2f} ms per call "
            f"({here[model]['invoke']:.2f} ms inference alone); assumed {assumed}"
        )
    mobilenet = mobilenet_ms(args.mobilenet) if args.mobilenet else None
    if mobilenet is not None:
        assumed = ", ".join(f"{BOARD_NAMES[b]} {PI_MOBILENET_V2_MS[b]:.0f} ms" for b in sorted(PI_MS))
        print(f"  MobileNet v2 ({args.mobilenet}): this machine {mobilenet:.2f} ms; assumed {assumed}")
    runs: list[tuple[str, float | None]] = []
    if args.quota is not None:
        runs.append((f"quota {args.quota:g}", args.quota))
    else:
        for board in args.board:
            if mobilenet is not None:
                here_ms, pi_ms, what = mobilenet, PI_MOBILENET_V2_MS[board], "MobileNet v2"
            else:
                here_ms, pi_ms, what = here[args.detector]["call"], PI_MS[board][args.detector], args.detector
            quota = here_ms / pi_ms
            print(
                f"  {BOARD_NAMES[board]}: quota = {here_ms:.2f} / {pi_ms:.1f} ms ({what}) = {quota:.3f} of one core "
                f"(this core is {1 / quota:.1f}x the board's)"
            )
            runs.append((BOARD_NAMES[board], min(quota, 1.0)))
    unthrottled, _, _ = measure(None, clips, 1, args.frames, args.detector)
    busy0 = unthrottled[0][0]
    need = REALTIME_FPS * busy0["cpu_ms"] / 1000
    print(
        f"this machine, one whole core: busy {busy0['fps']:.1f} fps, {busy0['cpu_ms']:.2f} ms CPU/frame; "
        f"a 15 fps camera needs {need:.1%} of this core when busy (the slowest real-time quota)"
    )
    for label, quota in runs:
        for cameras in args.cameras:
            results, method, stats = measure(quota, clips, cameras, args.frames, args.detector)
            scale = 1 / quota if quota else 1.0
            print(f"\n{label}, {cameras} camera{'s' if cameras > 1 else ''} (quota {quota:.3f} of a core each):")
            print(f"  limit: {method}{'; ' + stats if stats else ''}")
            for i, camera in enumerate(results):
                busy, idle = camera[0], camera[1]
                prefix = f"  camera {i + 1}: " if cameras > 1 else "  "
                for name, r in (("busy", busy), ("idle", idle)):
                    print(
                        f"{prefix}{name}: {r['frames']} frames, {r['fps']:.1f} fps, "
                        f"CPU {r['cpu_ms']:.2f} ms/frame here = {r['cpu_ms'] * scale:.1f} ms on the emulated core; "
                        f"detector on {r['detected']:.0%}"
                    )
                print(f"{prefix}busy: {verdict(busy['fps'])}; idle: {verdict(idle['fps'])}")
            worst = min(c[0]["fps"] for c in results)
            print(f"  {cameras} × 15 fps camera{'s' if cameras > 1 else ''}, busy: {verdict(worst)}")
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"\npeak memory of a measuring process {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()

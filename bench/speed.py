"""Pipeline speed, busy and idle: a 640x480 clip with 1-5 faces in view, and the same scene empty
(and with the lights switched on halfway), one thread, per stage.

    python -m bench.speed [--clip .cache/clips/seed0] [--threads 1] [--no-motion]

Runs the tracked pipeline (decode, motion, detect, align, classify, track) over every frame and
prints milliseconds per frame for each stage, frames per second, the CPU time per frame (the
process's user + system time, which is what a board pays in heat and power), the share of frames
the detector ran on, and the process's peak memory. The idle clips cost a fraction of the busy one
because the detector runs only where something moved (`vision.motion`).
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from bench.clipgen import empty_scene, generate
from edge import Analyzer, VisionConfig, open_source


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(clip: Path, config: VisionConfig) -> dict:
    analyzer = Analyzer(config)
    source = open_source(str(clip))
    visitors = 0
    start, cpu = time.perf_counter(), cpu_s()
    for result in analyzer.track(source):
        visitors += len(result.ended)
    wall, cpu = time.perf_counter() - start, cpu_s() - cpu
    source.close()
    frames = analyzer.times.frames
    return {
        "frames": frames,
        "visitors": visitors,
        "stages": analyzer.times.summary(),
        "fps": frames / wall,
        "cpu_ms": 1000 * cpu / frames,
        "detected": analyzer.times.detected / frames,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=Path(".cache/clips/seed0"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-motion", action="store_true", help="run the detector on every frame")
    args = parser.parse_args(argv)
    if not (args.clip / "clip.mp4").is_file():
        generate(args.clip)
    idle, lights = args.clip.with_name(args.clip.name + "-empty"), args.clip.with_name(args.clip.name + "-lights")
    if not (idle / "clip.mp4").is_file():
        empty_scene(idle)
    if not (lights / "clip.mp4").is_file():
        empty_scene(lights, lights_at_s=10.0)
    config = VisionConfig(threads=args.threads, motion=not args.no_motion)
    busy = None
    for name, folder in (("busy", args.clip), ("idle", idle), ("idle, lights on at 10 s", lights)):
        r = run(folder / "clip.mp4", config)
        busy = busy or r
        print(f"{name}: {folder / 'clip.mp4'}: {r['frames']} frames, {r['visitors']} visitors")
        print("  ms per frame: " + ", ".join(f"{k} {v:.2f}" for k, v in r["stages"].items()))
        print(
            f"  throughput {r['fps']:.1f} fps (wall clock); CPU {r['cpu_ms']:.2f} ms/frame "
            f"({r['cpu_ms'] / busy['cpu_ms']:.0%} of busy); detector ran on {r['detected']:.0%} of frames"
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()

"""Pipeline speed on a 640x480 clip with 1-5 faces in view, one thread, per stage.

    python -m bench.speed [--clip .cache/clips/default] [--threads 1]

Runs the tracked pipeline (decode, detect, align, classify, track) over every frame and prints
milliseconds per frame for each stage, frames per second, and the process's peak memory.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from bench.clipgen import generate
from edge import Analyzer, VisionConfig, open_source


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=Path(".cache/clips/seed0"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if not (args.clip / "clip.mp4").is_file():
        generate(args.clip)
    analyzer = Analyzer(VisionConfig(threads=args.threads))
    source = open_source(str(args.clip / "clip.mp4"))
    visitors = 0
    start = time.perf_counter()
    for result in analyzer.track(source):
        visitors += len(result.ended)
    wall = time.perf_counter() - start
    source.close()
    stages = analyzer.times.summary()
    frames = analyzer.times.frames
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.clip / 'clip.mp4'}: {frames} frames, {visitors} visitors, {args.threads} thread(s)")
    print("ms per frame: " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))
    print(f"throughput {frames / wall:.1f} fps (wall clock), peak memory {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()

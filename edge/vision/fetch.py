"""Set-up step: extract the BlazeFace detector models from the pinned mediapipe wheel.

    python -m edge.vision.fetch [--dest DIR]

The wheel is downloaded once with `pip download --no-deps` (any platform's wheel holds the same
files), each model's sha256 is checked against `edge.models.DETECTOR_FILES`, and the files are
written atomically. Already-present files with the right hash are left alone, so this is cheap
to re-run. The mediapipe package itself is never installed or imported.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from edge.vision.model_files import DETECTOR_FILES, MEDIAPIPE_MEMBER_DIR, MEDIAPIPE_WHEEL, models_dir

WHEEL_CACHE = Path(os.environ.get("AICCTV_WHEEL_CACHE", Path.home() / ".cache" / "aicctv" / "wheels"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def missing_models(dest: Path) -> list[str]:
    return [
        name for name, digest in DETECTOR_FILES.items() if not (dest / name).is_file() or sha256(dest / name) != digest
    ]


def download_wheel(cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob("mediapipe-0.10.14-*.whl"))
    if wheels:
        return wheels[0]
    print(f"downloading {MEDIAPIPE_WHEEL} (about 35 MB, once) to take the BlazeFace models from it", file=sys.stderr)
    # A fixed platform tag: the models are the same in every wheel, and this works on any host.
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--quiet",
        "--platform",
        "manylinux_2_17_x86_64",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "-d",
        str(cache),
        MEDIAPIPE_WHEEL,
    ]
    subprocess.run(command, check=True)
    wheels = sorted(cache.glob("mediapipe-0.10.14-*.whl"))
    if not wheels:
        raise RuntimeError(f"pip download left no mediapipe wheel in {cache}")
    return wheels[0]


def fetch(dest: Path, cache: Path = WHEEL_CACHE) -> list[str]:
    """Make sure every detector model is in `dest` with the right hash; returns the names written."""
    todo = missing_models(dest)
    if not todo:
        return []
    wheel = download_wheel(cache)
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for name in todo:
            data = archive.read(MEDIAPIPE_MEMBER_DIR + name)
            digest = hashlib.sha256(data).hexdigest()
            if digest != DETECTOR_FILES[name]:
                raise RuntimeError(f"{wheel.name}: {name} has sha256 {digest}, expected {DETECTOR_FILES[name]}")
            with tempfile.NamedTemporaryFile(dir=dest, delete=False) as tmp:
                tmp.write(data)
            # Temporary files are private (0600); a model must be readable by the service's user.
            Path(tmp.name).chmod(0o644)
            Path(tmp.name).replace(dest / name)
    return todo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", type=Path, default=models_dir(), help="models folder (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        written = fetch(args.dest)
    except (subprocess.CalledProcessError, RuntimeError, KeyError) as exc:
        print(f"error: could not get the detector models: {exc}", file=sys.stderr)
        return 1
    state = f"extracted {', '.join(written)}" if written else "already present"
    print(f"detector models in {args.dest}: {state} (sha256 verified)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

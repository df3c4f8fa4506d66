"""The `aicctv` command line: a thin skin over the Python API. Each command's module declares its
arguments with light imports only and loads its stack (OpenCV, TFLite, databases) when it runs,
so `aicctv central --help` never touches the vision stack."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from edge.cli import aim, analyze, central, config, demo, edge, stats, watch
from edge.cli.common import EXIT_USAGE
from edge.wire.config import ConfigError

# What `pip install 'aicctv[edge]'` adds: a command that imports one of these needs the edge install.
VISION_MODULES = {"cv2", "numpy", "scipy", "ai_edge_litert", "tqdm"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aicctv",
        description="Privacy-preserving audience counting: faces, gender and age on the device.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (analyze, edge, aim, stats, watch, central, demo, config):
        module.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, RuntimeError) as exc:
        # RuntimeErrors that are the input's fault rather than the command's carry their own code.
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_USAGE)
    except ModuleNotFoundError as exc:
        if exc.name not in VISION_MODULES:
            raise
        print(
            f"error: `aicctv {args.command}` needs the vision stack ({exc.name} is missing), which a central "
            "install leaves out: pip install 'aicctv[edge]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `aicctv stats | head`: the reader left. Point stdout at /dev/null so the interpreter's
        # final flush does not fail again, and exit as a program killed by SIGPIPE would.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())

"""`aicctv config check FILE`: validate an edge or central configuration before deploying it;
`aicctv config defaults edge|central`: the documented defaults file, from the declarations."""

from __future__ import annotations

import argparse
import sys
import tempfile
import tomllib
from dataclasses import fields
from pathlib import Path

from edge.daemon import config as edge_config
from edge.daemon.config import EdgeConfig
from edge.wire.config import document, load, read_config_bytes, redact, render

KINDS = ("edge", "central")


def config_class(kind: str) -> type:
    if kind == "central":
        from central.config import CentralConfig

        return CentralConfig
    return EdgeConfig


def defaults_file(kind: str) -> str:
    """The documented defaults of `kind`, as shipped in deploy/<kind>.toml."""
    if kind == "central":
        from central import config as central_config

        return document(central_config.CentralConfig, central_config.HEADER)
    return document(EdgeConfig, edge_config.HEADER)


def cmd_defaults(args: argparse.Namespace) -> int:
    sys.stdout.write(defaults_file(args.kind))
    return 0


def guess_kind(path: Path) -> str:
    """'central' if the file has a table only a central file has ([resync], [display], [web],
    [devices.<id>], [sites.<name>]) and none only an edge file has, else 'edge'."""
    try:
        sections = set(tomllib.loads(path.read_text()))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return "edge"  # load() will report the actual problem
    central = config_class("central")
    edge_names, central_names = {f.name for f in fields(EdgeConfig)}, {f.name for f in fields(central)}
    central_only = (central_names | set(central.extra_tables)) - edge_names
    return "central" if sections & central_only and not sections & (edge_names - central_names) else "edge"


def check_file(kind: str, path: Path, problems: list[str], environ: dict[str, str] | None) -> object:
    """The configuration in `path` as the daemon of `kind` would load it, its problems collected:
    central's with its per-device and per-site tables."""
    if kind == "central":
        from central.config import load_central

        return load_central(path, environ=environ, problems=problems)[0]
    return load(config_class(kind), path, problems=problems, environ=environ)


def cmd_check(args: argparse.Namespace) -> int:
    # Before anything else: a file that cannot be read is a usage error (2), not a problem in it (1).
    data = read_config_bytes(args.file)
    if not args.file.is_file():
        # /dev/stdin, a pipe: it can be read only once, and the check reads it twice.
        with tempfile.TemporaryDirectory() as folder:
            copy = Path(folder) / "config.toml"
            copy.write_bytes(data)
            return _check(args, copy)
    return _check(args, args.file)


def _check(args: argparse.Namespace, path: Path) -> int:
    kind = args.kind or guess_kind(path)
    problems: list[str] = []
    config = check_file(kind, path, problems, {} if args.ignore_env else None)
    problems = [problem.replace(str(path), str(args.file)) for problem in problems]
    if problems:
        print(f"{args.file}: {len(problems)} problem(s) in this {kind} configuration:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(f"{args.file}: a valid {kind} configuration")
    if args.show:
        print(redact(render(config)))
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    config = commands.add_parser("config", help="validate configuration files")
    sub = config.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    check = sub.add_parser(
        "check",
        help="validate an edge or central TOML file; list every problem with its key and a fix",
        description=(
            "Validate a configuration file as the daemon would at start (types, ranges, ids, broker URL,\n"
            "files it names), but report every problem instead of stopping at the first. Environment\n"
            "variables AICCTV_<SECTION>_<KEY> are applied too, as under systemd, unless --ignore-env."
        ),
        epilog=(
            "examples:\n"
            "  aicctv config check /etc/aicctv/edge.toml\n"
            "  aicctv config check central.toml --show      also print the effective settings\n\n"
            "exit status: 0 valid, 1 problems found, 2 usage error"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("file", type=Path, metavar="FILE")
    check.add_argument("--kind", choices=KINDS, help="edge or central (default: guessed from the sections)")
    check.add_argument("--show", action="store_true", help="print the effective configuration when valid")
    check.add_argument("--ignore-env", action="store_true", help="check the file alone, without AICCTV_* variables")
    check.set_defaults(func=cmd_check)

    defaults = sub.add_parser(
        "defaults",
        help="print every setting with its default, bounds and help, as a TOML file",
        description=(
            "Print the documented defaults file of the edge daemon or the central subscriber: every\n"
            "setting with its help, what is allowed, its environment variable and flag, and its\n"
            "default. deploy/edge.toml and deploy/central.toml are this output (a test checks it)."
        ),
        epilog="example:\n  aicctv config defaults edge > deploy/edge.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults.add_argument("kind", choices=KINDS)
    defaults.set_defaults(func=cmd_defaults)

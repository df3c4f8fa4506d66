"""Small promises of the command line: a config piped on stdin is checked as written, an export
never writes to the log it reads, and a command's stderr carries only what it has to say."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import FACE_FILES

REPO = Path(__file__).resolve().parent.parent
FIXTURE_CENTRAL = REPO / "tests" / "fixtures" / "logs" / "central-v0.1.0.db"


def aicctv(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli.main", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )


def test_config_check_reads_stdin_once():
    bad = aicctv("config", "check", "--ignore-env", "/dev/stdin", stdin="[vision]\nthreads = 0\n")
    assert bad.returncode == 1 and "vision.threads = 0" in bad.stderr, bad.stderr
    good = aicctv("config", "check", "--ignore-env", "/dev/stdin", stdin="[vision]\nthreads = 2\n")
    assert good.returncode == 0 and "/dev/stdin: a valid edge configuration" in good.stdout


def test_edge_export_leaves_the_log_it_reads_untouched(tmp_path):
    central = Path(shutil.copy(FIXTURE_CENTRAL, tmp_path))
    before = hashlib.sha256(central.read_bytes()).hexdigest()
    done = aicctv("edge", "export", "--db", str(central))
    assert done.returncode == 0 and done.stdout.count("\n") == 2, done.stderr
    assert hashlib.sha256(central.read_bytes()).hexdigest() == before
    assert not Path(f"{central}-wal").exists()


def test_analyze_says_nothing_on_stderr_when_all_is_well():
    done = aicctv("analyze", str(FACE_FILES[0]), "--json")
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_every_command_explains_itself():
    import pytest

    from edge.cli.main import build_parser

    commands = [
        ["analyze"], ["edge", "run"], ["edge", "export"], ["edge", "aim"], ["stats"], ["watch"],
        ["central", "run"], ["central", "export"], ["central", "serve"], ["demo"], ["config", "check"],
        ["config", "defaults"],
    ]  # fmt: skip
    for command in commands:
        with pytest.raises(SystemExit) as done:
            build_parser().parse_args([*command, "--help"])
        assert done.value.code == 0, command


def test_a_replay_start_outside_the_years_records_may_hold_is_a_usage_error():
    """A replay in year 1 crashed at its end and left a log whose next run filled every hour since."""
    import argparse

    import pytest

    from edge.cli.common import hour_filter, parse_instant

    for text in ("0001-01-01T00:00:00+05:00", "1970-01-01T00:00:00Z", "2100-01-01T00:00:00Z", "9999-12-31T23:59:50Z"):
        with pytest.raises(argparse.ArgumentTypeError, match="not between 2020 and 2099"):
            parse_instant(text)
    assert parse_instant("2026-01-05T10:00:00+01:00") == parse_instant("2026-01-05T09:00:00Z")
    # An export's bounds may be anything: beyond the years, they sort before or after every hour.
    assert hour_filter("0001-01-01T00:00:00+05:00") == "0000" < "2020-01-01T00:00:00Z"
    assert hour_filter("9999-12-31T23:00:00-05:00") == "9999" > "2099-12-31T23:00:00Z"
    assert hour_filter("2026-01-05T10:30:00+01:00") == "2026-01-05T09:00:00Z"
    until_2019 = aicctv("edge", "export", "--db", str(FIXTURE_CENTRAL), "--until", "2019-06-01T00:00:00Z")
    assert until_2019.returncode == 0 and until_2019.stdout == "", until_2019.stderr
    done = aicctv("edge", "run", "--source", "clip.mp4", "--replay-start", "0001-01-01T00:00:00Z", "--print-config")
    assert done.returncode == 2 and "--replay-start" in done.stderr and "Traceback" not in done.stderr

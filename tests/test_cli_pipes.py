"""Commands whose output is piped into `head` stop quietly when the reader leaves."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from central.store import Batch, SQLiteStore
from edge.wire.contract import HourlyRecord, empty_counts, hour_start

REPO = Path(__file__).resolve().parent.parent


def test_stats_into_head_exits_quietly(tmp_path):
    db = tmp_path / "central.db"
    store = SQLiteStore(db)
    hours = [
        HourlyRecord("shop-1", hour_start(1767600000 + i * 3600), 1, empty_counts(), 1.0, 1, 1.0, 1)
        for i in range(2000)
    ]
    store.write(Batch(hourly=hours))
    store.close()
    command = [sys.executable, "-m", "edge.cli.main", "stats", "--db", str(db)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as process:
        assert process.stdout is not None and process.stderr is not None
        process.stdout.readline()
        process.stdout.close()  # what `head -1` does after its line
        err = process.stderr.read().decode()
        code = process.wait(60)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert code == 141

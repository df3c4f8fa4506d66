"""`kill -9` of the central subscriber, again and again, while devices publish: nothing lost."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from bench.services import wait_until
from tests.test_central import Publisher, hour, record, stored

DEVICES, HOURS, REVISIONS = 8, 25, 3
KILLS = 20


def central(broker_url: str, db: Path, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "edge.cli.main", "central", "run", "--broker", broker_url, "--db", str(db)]
    with log.open("a") as stderr:
        return subprocess.Popen([*command, "--set", "resync.check_interval_s=3600"], stderr=stderr)


def test_kill_9_at_random_moments_loses_and_duplicates_nothing(broker, tmp_path):
    db, log = tmp_path / "central.db", tmp_path / "central.log"
    rng = random.Random(7)
    publisher = Publisher(broker.url)
    process = central(broker.url, db, log)
    # The first start creates the persistent session; from then on the broker keeps our messages.
    probe = record("probe")

    def stores(r) -> bool:
        publisher.hourly(r)
        return db.exists() and stored(str(db)).get((r.device, r.hour)) == r

    wait_until(lambda: stores(probe), what=f"central to subscribe (log: {log})")

    records = [
        record(f"cam-{d}", hour(h), r, visitors=r)
        for d in range(DEVICES)
        for h in range(HOURS)
        for r in range(1, REVISIONS + 1)
    ]
    rng.shuffle(records)  # revisions arrive out of order too
    done = threading.Event()

    def publish() -> None:
        for r in records:
            publisher.hourly(r)
            time.sleep(0.03)
        done.set()

    thread = threading.Thread(target=publish)
    thread.start()
    kills = 0
    try:
        while kills < KILLS or not done.is_set():
            time.sleep(rng.uniform(0.3, 1.5))
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
            process = central(broker.url, db, log)
        thread.join()
        # A newer probe revision stored means the last instance runs (the others are dead).
        probe = replace(probe, revision=2)
        wait_until(lambda: stores(probe), what="the last instance")
        expected = {(r.device, r.hour): r for r in records if r.revision == REVISIONS} | {("probe", probe.hour): probe}
        wait_until(lambda: stored(str(db)) == expected, timeout_s=60, what="every device-hour at its last revision")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
        publisher.close()
    assert kills >= KILLS
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("SELECT count(*) FROM hourly").fetchone()[0] == len(expected)

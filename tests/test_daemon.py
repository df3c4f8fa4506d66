"""The edge daemon end to end: real video, real TFLite, a real Mosquitto broker, real kills."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from bench.services import Listener, wait_until
from edge.daemon.daemon import usable_image
from edge.daemon.store import EdgeStore
from edge.wire.contract import HourlyRecord, LiveCounts, decode, hour_start

START = "2026-01-05T09:59:55Z"  # the sample clip straddles 10:00, so two hours close mid-replay


def aicctv(*args: str) -> list[str]:
    return [sys.executable, "-m", "edge.cli.main", *args]


def edge_command(clip: Path, broker_url: str, db: Path, *extra: str) -> list[str]:
    return aicctv(
        "edge",
        "run",
        "--source",
        str(clip),
        "--device-id",
        "cam-1",
        "--broker",
        broker_url,
        "--db",
        str(db),
        "--replay-start",
        START,
        "--set",
        "hourly.grace_s=1",
        # No central here: delivered means the broker's PUBACK (tests/test_receipts.py runs receipts).
        "--set",
        "mqtt.receipts=false",
        *extra,
    )


def local_log(db: Path) -> list[HourlyRecord]:
    with EdgeStore(db) as store:
        return store.hourly()


def undelivered(db: Path) -> int | None:
    """Hourly records not yet delivered (here: acknowledged by the broker); None while the daemon is still creating
    the log (the file appears before its tables)."""
    if not db.exists():
        return None
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute("SELECT count(*) FROM hourly WHERE delivered = 0").fetchone()[0]
        except sqlite3.OperationalError:
            return None


def latest_by_hour(payloads: list[bytes]) -> dict[str, HourlyRecord]:
    latest: dict[str, HourlyRecord] = {}
    for payload in payloads:
        record = decode(HourlyRecord, payload)
        if record.hour not in latest or record.revision > latest[record.hour].revision:
            latest[record.hour] = record
    return latest


def test_replay_logs_publishes_and_exits(sample_clip, broker, tmp_path):
    clip, truth = sample_clip
    listener = Listener(broker.url, "aicctv/cam-1/#").connect()
    db = tmp_path / "edge.db"
    done = subprocess.run(edge_command(clip, broker.url, db, "--until-end"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    records = local_log(db)
    assert [r.hour for r in records] == ["2026-01-05T09:00:00Z", "2026-01-05T10:00:00Z"]
    assert sum(r.visitors for r in records) == pytest.approx(len(truth["visitors"]), abs=1)
    assert undelivered(db) == 0
    wait_until(lambda: listener.payloads("/status")[-1:] == [b"offline"], 10, "status offline")
    # What reached the broker is the local log, revision for revision.
    assert latest_by_hour(listener.payloads("/hourly")) == {r.hour: r for r in records}
    assert b"online" in listener.payloads("/status")
    # Live counts carry the replayed time, so central never adds them to the real today's visitors.
    replayed = datetime.fromisoformat(START).timestamp()
    lives = [decode(LiveCounts, payload) for payload in listener.payloads("/live")]
    assert lives and all(replayed <= live.time <= replayed + 60 for live in lives)
    listener.disconnect()


def test_broker_outage_queues_then_delivers_in_order(sample_clip, broker, tmp_path):
    clip, _ = sample_clip
    # A persistent session, so what the broker takes while we are away is kept for us.
    listener = Listener(broker.url, "aicctv/cam-1/hourly", session="outage-check").connect()
    listener.disconnect()
    broker.stop()
    db = tmp_path / "edge.db"
    daemon = subprocess.Popen(
        edge_command(clip, broker.url, db, "--until-end", "--set", "mqtt.flush_timeout_s=120"),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The whole clip is processed and both hours closed while the broker is down.
        wait_until(lambda: undelivered(db) == 2 and daemon.poll() is None, 120, "two queued hours")
        time.sleep(2)  # a longer outage: backoff has grown
        broker.start()
        assert daemon.wait(120) == 0, daemon.stderr.read() if daemon.stderr else ""
    finally:
        daemon.kill()
    assert undelivered(db) == 0
    listener.connect()
    wait_until(lambda: len(listener.payloads("hourly")) >= 2, 20, "queued records")
    hours = [decode(HourlyRecord, p).hour for p in listener.payloads("hourly")]
    assert hours == sorted(hours), "backlog delivered oldest first"
    assert latest_by_hour(listener.payloads("hourly")) == {r.hour: r for r in local_log(db)}
    listener.disconnect()


def test_kill_9_twenty_times_loses_and_doubles_nothing(sample_clip, broker, tmp_path):
    clip, _ = sample_clip
    reference_db = tmp_path / "reference.db"
    subprocess.run(edge_command(clip, broker.url, reference_db, "--until-end"), check=True, capture_output=True)
    reference = {r.hour: r for r in local_log(reference_db)}

    listener = Listener(broker.url, "aicctv/cam-1/hourly", session="kill-check").connect()
    db = tmp_path / "edge.db"
    rng = random.Random(7)
    for kill in range(25):
        daemon = subprocess.Popen(edge_command(clip, broker.url, db), stderr=subprocess.PIPE, text=True)
        # The kill must land mid-work, not during start-up (imports alone take a second on a slow
        # machine): the clock starts at the daemon's first line, logged once its log is open and
        # its models loaded, just before it opens the source.
        assert any("device cam-1: source" in line for line in daemon.stderr), "the daemon did not start"
        time.sleep(rng.uniform(0.1, 2.5))
        # Every fifth a polite stop, which must checkpoint the people in view, not count them.
        daemon.send_signal(signal.SIGTERM if kill % 5 == 4 else signal.SIGKILL)
        daemon.wait()
        daemon.stderr.close()
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    done = subprocess.run(edge_command(clip, broker.url, db, "--until-end"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

    records = {r.hour: r for r in local_log(db)}
    assert set(records) == set(reference), "no closed hour lost"
    # Each hour's count is exactly its committed visits: no hour was tallied twice over a restart.
    with sqlite3.connect(db) as conn:
        first_seen = [row[0] for row in conn.execute("SELECT first_seen FROM visits")]
    for hour, record in records.items():
        assert record.visitors == sum(1 for t in first_seen if hour_start(t) == hour), f"{hour} out of step"
    # The people in view at a checkpoint are in it too, so every restart resumes them: twenty kills
    # later the log is the uninterrupted run's (revisions aside: a kill can come between two).
    assert {h: replace(r, revision=0) for h, r in records.items()} == {
        h: replace(r, revision=0) for h, r in reference.items()
    }
    assert undelivered(db) == 0
    wait_until(lambda: set(latest_by_hour(listener.payloads("hourly"))) == set(records), 20, "every hour at the broker")
    assert latest_by_hour(listener.payloads("hourly")) == records
    listener.disconnect()


def test_lost_source_says_so_and_keeps_running(broker, tmp_path):
    listener = Listener(broker.url, "aicctv/cam-9/status").connect()
    db = tmp_path / "edge.db"
    env = {**os.environ, "AICCTV_SOURCE_RECONNECT_MAX_S": "1"}
    daemon = subprocess.Popen(
        aicctv(
            "edge",
            "run",
            "--source",
            "rtsp://127.0.0.1:9/x",
            "--device-id",
            "cam-9",
            "--broker",
            broker.url,
            "--db",
            str(db),
        ),
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: b"source-lost" in listener.payloads("status"), 60, "status source-lost")
        time.sleep(2)  # several reconnection attempts
        assert daemon.poll() is None, "the daemon must not exit when its source fails"
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        daemon.kill()
    wait_until(lambda: listener.payloads("status")[-1:] == [b"offline"], 10, "status offline")
    kinds = [kind for _, kind, _ in EdgeStore(db).events()]
    assert kinds[0] == "started" and kinds[-1] == "stopped"
    assert kinds.count("source lost") == 1, "one event per outage, not one per attempt"
    listener.disconnect()


@pytest.mark.parametrize(
    ("image", "usable"),
    [
        (np.zeros((48, 64, 3), np.uint8), True),
        (np.zeros((16, 16, 3), np.uint8), True),
        (None, False),  # the decoder gave nothing
        (np.zeros((48, 64), np.uint8), False),  # grey
        (np.zeros((48, 64, 4), np.uint8), False),  # with alpha
        (np.zeros((0, 0, 3), np.uint8), False),
        (np.zeros((15, 64, 3), np.uint8), False),  # too small to hold a face
    ],
)
def test_only_colour_images_of_some_size_are_usable_frames(image, usable):
    assert usable_image(image) is usable


def test_print_config_shows_effective_settings(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_text('[device]\nid = "from-file"\n[vision]\nthreads = 2\n')
    env = {**os.environ, "AICCTV_VISION_THREADS": "3"}
    out = subprocess.run(
        aicctv("edge", "run", "--config", str(path), "--print-config"),
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert 'id = "from-file"' in out and "threads = 3" in out
    bad = subprocess.run(
        aicctv("edge", "run", "--config", str(path), "--set", "vision.detector=tiny"),
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == ["error: vision.detector = 'tiny': must be one of full, short"]


def test_export_matches_the_log(sample_clip, broker, tmp_path):
    clip, _ = sample_clip
    db = tmp_path / "edge.db"
    subprocess.run(edge_command(clip, broker.url, db, "--until-end"), check=True, capture_output=True)
    lines = subprocess.run(
        aicctv("edge", "export", "--db", str(db), "--format", "json"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert [json.loads(line)["hour"] for line in lines] == [r.hour for r in local_log(db)]
    csv = subprocess.run(
        aicctv("edge", "export", "--db", str(db), "--format", "csv"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert csv[0].startswith("device,hour,visitors,revision") and len(csv) == 3

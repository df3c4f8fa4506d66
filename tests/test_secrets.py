"""No password reaches a log, an event or an error message: the daemons run with known secrets in
the broker URL, the camera's RTSP URL and the PostgreSQL URL, and their output is searched."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from edge.daemon.store import EdgeStore
from edge.wire.config import redact

AICCTV = [sys.executable, "-m", "edge.cli.main"]
BROKER_SECRET, CAMERA_SECRET, DB_SECRET = "br0ker-s3cret", "c4mera-s3cret", "d4tabase-s3cret"
SECRETS = (BROKER_SECRET, CAMERA_SECRET, DB_SECRET)


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("mqtt://cam:pw@broker:1883", "mqtt://cam:***@broker:1883"),
        ("postgresql://central:p%40ss@db.local/aicctv", "postgresql://central:***@db.local/aicctv"),
        ("rtsp://admin:p@ss:w0rd@10.0.0.9:554/stream1", "rtsp://admin:***@10.0.0.9:554/stream1"),
        (
            "rtspsrc location=rtsp://admin:pw@cam/s latency=0 ! decodebin ! videoconvert ! appsink",
            "rtspsrc location=rtsp://admin:***@cam/s latency=0 ! decodebin ! videoconvert ! appsink",
        ),
        ("rtspsrc location=rtsp://cam/s user-pw=pw ! sink", "rtspsrc location=rtsp://cam/s user-pw=*** ! sink"),
        (
            "postgresql://central@db/aicctv?password=pw&sslmode=x",
            "postgresql://central@db/aicctv?password=***&sslmode=x",
        ),
        ("cannot open video source 'rtsp://u:pw@cam/1'", "cannot open video source 'rtsp://u:***@cam/1'"),
        # Typed unencoded, or quoted in printed TOML: nothing of the password may show.
        ("rtsp://admin:pa'ss@cam/s", "rtsp://admin:***@cam/s"),
        ('broker = "mqtt://u:pa\\"ss@h"', 'broker = "mqtt://u:***@h"'),
        ("postgresql://u:p@ss/w@db", "postgresql://u:***@db"),
        ("rtsp://admin:pa/ss?#x@cam/s", "rtsp://admin:***@cam/s"),
        ('rtspsrc location=rtsp://cam/s user-pw="s3 cret" ! sink', "rtspsrc location=rtsp://cam/s user-pw=*** ! sink"),
        ('spec = "rtspsrc user-pw=\\"s3cret\\" ! sink"', 'spec = "rtspsrc user-pw=*** ! sink"'),
        ("host=db password='se cret' dbname=x", "host=db password=*** dbname=x"),
        # Nothing to hide: a user without a password, a host and port, a file.
        ("postgresql://central@db.local/aicctv", "postgresql://central@db.local/aicctv"),
        ("mqtt://broker.local:1883", "mqtt://broker.local:1883"),
        ("/var/lib/aicctv/edge.db", "/var/lib/aicctv/edge.db"),
    ],
)
def test_redact_hides_the_password_of_any_url_in_a_text(text, redacted):
    assert redact(text) == redacted


def until_line(process: subprocess.Popen, marker: str) -> list[str]:
    """stderr lines up to the first containing `marker` (the process's sign of progress)."""
    lines = []
    for line in process.stderr:
        lines.append(line)
        if marker in line:
            return lines
    raise AssertionError(f"exited before logging {marker!r}:\n{''.join(lines)}")


def stop(process: subprocess.Popen, lines: list[str]) -> str:
    """SIGTERM, then everything it printed."""
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=60)
    assert process.returncode == 0, "".join(lines) + rest
    return "".join(lines) + rest


def assert_no_secret(text: str) -> None:
    assert not [secret for secret in SECRETS if secret in text], text


def test_the_edge_daemon_logs_no_password(broker, tmp_path):
    host_port = broker.url.removeprefix("mqtt://")
    db = tmp_path / "edge.db"
    daemon = subprocess.Popen(
        [
            *AICCTV,
            "edge",
            "run",
            "--device-id",
            "cam-x",
            "--source",
            f"rtsp://admin:{CAMERA_SECRET}@127.0.0.1:9/stream1",
            "--broker",
            f"mqtt://cam-x:{BROKER_SECRET}@{host_port}",
            "--db",
            str(db),
            "--set",
            "source.reconnect_max_s=1",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The start line names source and broker; the camera then fails, and its error names it.
        lines = until_line(daemon, "source rtsp://admin:***@")
        lines += until_line(daemon, " lost: ")
        output = stop(daemon, lines)
    finally:
        daemon.kill()
    assert_no_secret(output)
    with EdgeStore(db) as store:
        events = store.events()
    assert {"started", "source lost", "stopped"} <= {kind for _, kind, _ in events}
    assert_no_secret(repr(events))

    # A bad value is reported with the setting it came from, not with the password in it.
    bad = subprocess.run(
        [*AICCTV, "edge", "run", "--broker", f"mqtt://cam-x:{BROKER_SECRET}@a..b", "--db", str(db)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "mqtt.broker:" in bad.stderr and "'mqtt://cam-x:***@a..b'" in bad.stderr, bad.stderr
    assert_no_secret(bad.stderr)


def test_the_central_subscriber_logs_no_password(broker, tmp_path):
    host_port = broker.url.removeprefix("mqtt://")
    central = subprocess.Popen(
        [
            *AICCTV,
            "central",
            "run",
            "--broker",
            f"mqtt://central:{BROKER_SECRET}@{host_port}",
            "--db",
            str(tmp_path / "central.db"),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert_no_secret(stop(central, until_line(central, "subscribed")))
    finally:
        central.kill()

    # A database that does not answer (nothing listens on port 1): its URL is in the error.
    postgres = f"postgresql://central:{DB_SECRET}@127.0.0.1:1/aicctv"
    for command in ("run", "export"):
        failed = subprocess.run([*AICCTV, "central", command, "--db", postgres], capture_output=True, text=True)
        assert failed.returncode == 1 and "postgresql://central:***@127.0.0.1:1/aicctv" in failed.stderr, failed.stderr
        assert "Traceback" not in failed.stderr
        assert_no_secret(failed.stderr)

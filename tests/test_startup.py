"""Start-up failures are one line naming the setting or file, and exit 2, never a traceback
(systemd's Restart= would replay that traceback every few seconds, forever); `aicctv config
check` reports what it can of them beforehand; and a damaged edge log is set aside, not fatal."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edge.daemon.store import EdgeStore, set_aside
from edge.vision.model_files import AGE_GENDER_MODEL, models_dir
from edge.wire.sqlite import CorruptLog, LogError

AICCTV = [sys.executable, "-m", "edge.cli.main"]


@dataclass
class Start:
    """How one failing start is set up: extra arguments, environment, and a command prefix."""

    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    prefix: list[str] = field(default_factory=list)


def edge_run(tmp_path: Path, start: Start, **kwargs) -> subprocess.Popen | subprocess.CompletedProcess:
    """`aicctv edge run` on a camera that is not there and a broker that does not answer: every
    case below fails before either matters."""
    command = [
        *start.prefix,
        *AICCTV,
        "edge",
        "run",
        "--source",
        str(tmp_path / "no-camera"),
        "--device-id",
        "cam-s",
        "--broker",
        "mqtt://127.0.0.1:1",
        "--db",
        str(tmp_path / "edge.db"),
        *start.args,
    ]
    env = {**os.environ, **start.env}
    if kwargs.pop("background", False):
        return subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    # A start that does not fail would retry the camera forever: the timeout ends the test then.
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def assert_one_line(done: subprocess.CompletedProcess, *names: str) -> None:
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: ") and all(name in line for name in names), line


# ---- file systems: real ones, in a private mount namespace ----------------------------------------


def private_tmpfs(mount_point: Path, options: str, then: str = "") -> list[str]:
    """A command prefix that runs the rest with a fresh tmpfs mounted at `mount_point`, in a mount
    namespace of its own (unprivileged, through a user namespace): a real read-only or full file
    system, without touching the machine's."""
    script = f'mount -t tmpfs -o {options} tmpfs "$0" && {then} exec "$@"'
    return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, str(mount_point)]


def can_mount(tmp_path: Path) -> bool:
    point = tmp_path / "probe"
    point.mkdir()
    try:
        return subprocess.run([*private_tmpfs(point, "size=64k"), "true"], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


@pytest.fixture
def mountable(tmp_path: Path) -> Path:
    if not can_mount(tmp_path):
        pytest.skip("cannot mount a tmpfs in a user namespace here (unshare missing or not allowed)")
    point = tmp_path / "disk"
    point.mkdir()
    return point


def test_a_read_only_file_system(mountable, tmp_path):
    # Where an SD card that threw errors is remounted read-only: the log cannot be created.
    start = Start(["--db", str(mountable / "aicctv" / "edge.db")], prefix=private_tmpfs(mountable, "ro"))
    assert_one_line(edge_run(tmp_path, start), "storage.db", "read-only")


def test_a_full_disk(mountable, tmp_path):
    # Filled to the last block before the daemon starts: SQLite cannot write the log's first page.
    fill = 'dd if=/dev/zero of="$0/fill" bs=4k 2>/dev/null; test -s "$0/fill" &&'
    start = Start(["--db", str(mountable / "edge.db")], prefix=private_tmpfs(mountable, "size=256k", fill))
    assert_one_line(edge_run(tmp_path, start), "storage.db", str(mountable / "edge.db"), "full")


# ---- settings and files named in them --------------------------------------------------------------


def truncated_model(tmp_path: Path) -> Start:
    """The shipped models, but the classifier cut short, as by an interrupted download."""
    models = tmp_path / "models"
    models.mkdir()
    for model in models_dir().glob("*.tflite"):
        (models / model.name).symlink_to(model)
    (models / AGE_GENDER_MODEL).unlink()
    (models / AGE_GENDER_MODEL).write_bytes((models_dir() / AGE_GENDER_MODEL).read_bytes()[:50_000])
    return Start(env={"AICCTV_MODELS_DIR": str(models)})


def not_a_certificate(tmp_path: Path) -> Path:
    path = tmp_path / "ca.crt"
    path.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    return path


def latin1_password(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_bytes("pässwörd\n".encode("latin-1"))
    return path


STARTS: dict[str, tuple[Callable[[Path], Start], tuple[str, ...]]] = {
    "the database path is a directory": (lambda t: Start(["--db", str(t)]), ("storage.db", "is a directory")),
    "the broker host is a..b": (lambda t: Start(["--broker", "mqtt://a..b:1883"]), ("mqtt.broker", "a..b")),
    "ca_file is not a certificate": (
        lambda t: Start(["--broker", "mqtts://127.0.0.1:1", "--set", f"mqtt.ca_file={not_a_certificate(t)}"]),
        ("mqtt.ca_file", "ca.crt", "certificate"),
    ),
    "the password file is not UTF-8": (
        lambda t: Start(["--set", "mqtt.username=cam", "--set", f"mqtt.password_file={latin1_password(t)}"]),
        ("mqtt.password_file", "UTF-8"),
    ),
    "the model file is truncated": (truncated_model, (AGE_GENDER_MODEL, "not a usable TFLite model")),
}


@pytest.mark.parametrize("case", list(STARTS))
def test_a_bad_start_is_one_line_and_exit_2(case, tmp_path):
    setup, names = STARTS[case]
    assert_one_line(edge_run(tmp_path, setup(tmp_path)), *names)


def test_config_check_finds_them_before_deployment(tmp_path):
    file = tmp_path / "edge.toml"
    file.write_text(
        f'[mqtt]\nbroker = "mqtt://a..b"\nca_file = "{not_a_certificate(tmp_path)}"\nusername = "cam"\n'
        f'password_file = "{latin1_password(tmp_path)}"\n[storage]\ndb = "{tmp_path}"\n'
    )
    done = subprocess.run([*AICCTV, "config", "check", str(file), "--ignore-env"], capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    problems = [line for line in done.stderr.splitlines() if line.startswith("  - ")]
    named = sorted(problem.split()[1].rstrip(":") for problem in problems)
    assert named == ["mqtt.broker", "mqtt.ca_file", "mqtt.password_file", "storage.db"], done.stderr


# ---- the edge log ----------------------------------------------------------------------------------


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def a_log(path: Path) -> None:
    """An edge log of several pages, closed (so its WAL is checkpointed into it)."""
    with EdgeStore(path) as store, store.transaction():
        for n in range(300):
            store.add_event("test", f"event {n} " + "x" * 100)
        store.save_state("tally", {"hours": {}})


def random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(64 * 1024))


def truncated(path: Path) -> None:
    a_log(path)
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size // 2)


def bad_json_in_state(path: Path) -> None:
    a_log(path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE state SET value = '{\"hours\": ' WHERE key = 'tally'")
    conn.close()


def bad_json_in_an_hourly_record(path: Path) -> None:
    a_log(path)
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO hourly VALUES ('cam-s', '2026-01-05T09:00:00Z', 1, '{\"device\": [', 0)")
    conn.close()


DAMAGE = [random_bytes, truncated, bad_json_in_state, bad_json_in_an_hourly_record]


@pytest.mark.parametrize("damage", DAMAGE, ids=[d.__name__ for d in DAMAGE])
def test_a_damaged_log_is_set_aside_and_a_fresh_one_started(damage, tmp_path):
    path = tmp_path / "edge.db"
    damage(path)
    before = digest(path)
    with pytest.raises(CorruptLog, match="not a readable edge log"):
        EdgeStore(path)
    with EdgeStore.open_or_replace(path) as store:
        ((_, kind, detail),) = store.events()
        assert store.undelivered_count() == 0 and store.load_state("tally") is None
    assert kind == "log set aside"
    (aside,) = tmp_path.glob("edge.db.corrupt-*[0-9]Z")
    assert str(aside) in detail
    assert digest(aside) == before, "moved, not changed"


def test_a_log_goes_aside_with_its_wal_and_shared_memory(tmp_path):
    # They are there only while another process has the log open: closing the last connection,
    # as the damage check does, folds the WAL into the log (or drops it, for a file that is no log).
    path = tmp_path / "edge.db"
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).write_text(suffix)
    aside = set_aside(path)
    assert aside.name.startswith("edge.db.corrupt-") and not list(tmp_path.glob("edge.db-*"))
    assert [aside.with_name(aside.name + s).read_text() for s in ("", "-wal", "-shm")] == ["", "-wal", "-shm"]


def test_a_log_from_a_newer_release_is_refused_where_it_is(tmp_path):
    path = tmp_path / "edge.db"
    a_log(path)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    before = digest(path)
    with pytest.raises(LogError) as refused:
        EdgeStore.open_or_replace(path)
    assert not isinstance(refused.value, CorruptLog)
    assert digest(path) == before and not list(tmp_path.glob("*corrupt*"))
    assert_one_line(edge_run(tmp_path, Start()), str(path), "schema version 99")
    assert digest(path) == before and not list(tmp_path.glob("*corrupt*"))


def test_a_text_file_named_as_the_log_is_refused_where_it_is(tmp_path):
    """`--db deploy/edge.toml` by mistake: a damaged log is set aside, but this is no log at all."""
    path = tmp_path / "edge.db"
    path.write_text("[device]\nid = 'cam-s'  # température\n" * 200)
    before = digest(path)
    with pytest.raises(LogError) as refused:
        EdgeStore.open_or_replace(path)
    assert not isinstance(refused.value, CorruptLog) and "is a text file, not an edge log" in str(refused.value)
    assert_one_line(edge_run(tmp_path, Start()), str(path), "text file")
    assert digest(path) == before and not list(tmp_path.glob("*corrupt*"))


def test_the_daemon_sets_a_damaged_log_aside_and_keeps_counting(tmp_path):
    path = tmp_path / "edge.db"
    random_bytes(path)
    daemon = edge_run(tmp_path, Start(), background=True)
    try:
        # Logged once the (fresh) log is open and the models are loaded.
        lines = []
        for line in daemon.stderr:
            lines.append(line)
            if "device cam-s: source" in line:
                break
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0
    finally:
        daemon.kill()
        daemon.stderr.close()
    (aside,) = tmp_path.glob("edge.db.corrupt-*[0-9]Z")
    assert [line for line in lines if line.startswith("ERROR")] == [
        f"ERROR aicctv.edge: {path} is not a readable edge log (file is not a database): "
        f"moved it to {aside} and started a fresh log\n"
    ]
    with EdgeStore(path) as store:
        kinds = [kind for _, kind, _ in store.events()]
    assert kinds[:2] == ["log set aside", "started"] and kinds[-1] == "stopped"

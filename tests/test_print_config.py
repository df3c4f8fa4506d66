"""`--print-config` and `config check --show` print the effective configuration with every
password hidden: broker, RTSP camera and PostgreSQL URLs keep their user names, not their secrets."""

from __future__ import annotations

import pytest

from edge.cli.main import main

SECRET = "s3cret-Pa55"
BROKER = f"mqtt://shop-1:{SECRET}@broker.example:1883"
CAMERA = f"rtsp://viewer:{SECRET}@192.0.2.7:554/stream1"
DATABASE = f"postgresql://aicctv:{SECRET}@db.example/aicctv"
KEYED = f"postgresql://aicctv@db.example/aicctv?password={SECRET}&sslmode=require"


@pytest.mark.parametrize(
    "argv",
    [
        ["edge", "run", "--print-config", "--set", f"mqtt.broker={BROKER}", "--set", f"source.spec={CAMERA}"],
        ["central", "run", "--print-config", "--set", f"mqtt.broker={BROKER}", "--set", f"storage.db={DATABASE}"],
        ["central", "serve", "--print-config", "--set", f"storage.db={KEYED}"],
    ],
)
def test_print_config_hides_passwords(capsys, argv):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert SECRET not in out
    assert "***" in out and ("shop-1:***@" in out or "password=***" in out)


def test_config_check_show_hides_passwords(capsys, tmp_path):
    path = tmp_path / "central.toml"
    path.write_text(f'[mqtt]\nbroker = "{BROKER}"\n\n[storage]\ndb = "{DATABASE}"\n')
    assert main(["config", "check", str(path), "--show", "--ignore-env"]) == 0
    out = capsys.readouterr().out
    assert SECRET not in out and "aicctv:***@db.example" in out


def test_print_config_prints_toml_that_reads_back(capsys, tmp_path):
    """A control character in a value (a NUL from an environment variable) printed raw made TOML
    that does not parse; a password with quotes or a slash was half shown."""
    import tomllib

    camera = "rtsp://viewer:pa'ss\"w/rd@192.0.2.7:554/stream1"
    assert main(["edge", "run", "--print-config", "--set", f"source.spec={camera}", "--set", "device.id=cam-1"]) == 0
    assert main(["edge", "run", "--print-config", "--set", "storage.db=a\x01b\nc.db"]) == 0
    first, second = capsys.readouterr().out.split("[device]", 2)[1:]
    assert tomllib.loads("[device]" + first)["source"]["spec"] == "rtsp://viewer:***@192.0.2.7:554/stream1"
    assert tomllib.loads("[device]" + second)["storage"]["db"] == "a\x01b\nc.db"

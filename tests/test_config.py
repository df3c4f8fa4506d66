import pytest

from edge.daemon.config import EdgeConfig
from edge.wire.config import ConfigError, load, render


def test_defaults_are_valid():
    config = load(EdgeConfig, environ={})
    assert config.mqtt.broker == "mqtt://localhost:1883" and config.vision.threads == 1 and config.device.id


def test_precedence_file_then_environment_then_flags(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_text('[device]\nid = "file"\n[vision]\nthreads = 2\ntiles = false\n[mqtt]\nprefix = "site"\n')
    env = {"AICCTV_VISION_THREADS": "3", "AICCTV_DEVICE_ID": "env"}
    config = load(EdgeConfig, path, {"device.id": "flag", "vision.score": None}, environ=env)
    assert (config.device.id, config.vision.threads, config.vision.tiles, config.mqtt.prefix) == (
        "flag",
        3,
        False,
        "site",
    )
    assert config.vision.score is None


def test_rendered_config_loads_back(tmp_path):
    config = load(EdgeConfig, overrides={"vision.score": "0.6", "hourly.grace_s": 5}, environ={})
    path = tmp_path / "out.toml"
    path.write_text(render(config))
    assert load(EdgeConfig, path, environ={}) == config


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ("[vison]\nthreads = 2\n", {}, "unknown section 'vison'"),
        ("[vision]\nthread = 2\n", {}, "did you mean 'threads'?"),
        ("[vision]\nthreads = 'two'\n", {}, "vision.threads = 'two'"),
        ("[vision]\nthreads = 0\n", {}, "vision.threads = 0: must be between 1 and 64"),
        ("[vision]\ntiles = 1\n", {}, "expected bool"),
        ("[device]\nid = 'a/b'\n", {}, "device.id"),
        ("[mqtt]\nbroker = 'localhost'\n", {}, "mqtt.broker"),
        ("[mqtt\n", {}, "not valid TOML"),
        ("", {"AICCTV_VISION_TILES": "maybe"}, "environment AICCTV_VISION_TILES"),
        ("", {"AICCTV_MQTT_VERSION": "3"}, "mqtt.version = 3: must be one of 4, 5"),
        ("[source]\nspec = ' '\n", {}, "source.spec is empty"),
        ("[source]\nspec = '/'\n", {}, "source.spec '/' is a folder"),
    ],
)
def test_bad_settings_fail_with_one_precise_line(tmp_path, toml, env, message):
    path = tmp_path / "edge.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=None) as error:
        load(EdgeConfig, path, environ=env)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_missing_file_says_how_to_fix(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load(EdgeConfig, tmp_path / "nope.toml", environ={})


def test_environment_booleans_and_unset_optionals():
    config = load(EdgeConfig, environ={"AICCTV_VISION_TILES": "off", "AICCTV_VISION_SCORE": "none"})
    assert config.vision.tiles is False and config.vision.score is None


def test_a_misspelt_environment_variable_is_warned_of(caplog, tmp_path):
    """A typo in a systemd unit's Environment= left the setting at its default without a word."""
    env = {"AICCTV_VISION_THRADS": "2", "AICCTV_STORAGE_DBB": "x.db", "AICCTV_MODELS_DIR": str(tmp_path)}
    env["AICCTV_WEB_LISTEN"] = "127.0.0.1:9"  # central's: not this daemon's, nor near any of its settings
    with caplog.at_level("WARNING", logger="aicctv.config"):
        config = load(EdgeConfig, environ=env)
    assert config.vision.threads == load(EdgeConfig, environ={}).vision.threads
    assert sorted(r.getMessage() for r in caplog.records) == [
        "environment AICCTV_STORAGE_DBB is not a setting: did you mean AICCTV_STORAGE_DB?",
        "environment AICCTV_VISION_THRADS is not a setting: did you mean AICCTV_VISION_THREADS?",
    ]


def test_the_shipped_example_file_documents_the_defaults():
    from pathlib import Path

    example = Path(__file__).parent.parent / "deploy" / "edge.toml"
    assert load(EdgeConfig, example, environ={}) == load(EdgeConfig, environ={})


def test_credentials_from_a_password_file(tmp_path):
    secret = tmp_path / "mqtt-password"
    secret.write_text("s3cret\n")
    overrides = {"mqtt.broker": "mqtts://broker.example", "mqtt.username": "shop-1", "mqtt.password_file": str(secret)}
    url = load(EdgeConfig, overrides=overrides, environ={}).mqtt.broker_url()
    assert (url.username, url.password, url.tls, url.port) == ("shop-1", "s3cret", True, 8883)
    with pytest.raises(ConfigError, match=r"without mqtt\.username"):
        load(EdgeConfig, overrides={"mqtt.password_file": str(secret)}, environ={})
    with pytest.raises(ConfigError, match="no such file"):
        load(EdgeConfig, overrides={"mqtt.username": "a", "mqtt.password_file": str(tmp_path / "nope")}, environ={})


def test_config_check_lists_every_problem(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "edge.toml"
    bad.write_text('[device]\nid = "bad id"\n[vision]\nthreads = 0\nthread = 1\n[mqtt]\nbroker = "localhost"\n')
    run = [sys.executable, "-m", "edge.cli.main", "config", "check", "--ignore-env"]
    done = subprocess.run([*run, str(bad)], capture_output=True, text=True)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[0].endswith("4 problem(s) in this edge configuration:")
    keys = {line.split()[1].rstrip(":") for line in lines[1:]}
    assert keys == {"unknown", "device.id", "mqtt.broker", "vision.threads"}
    central = tmp_path / "central.toml"
    central.write_text('[storage]\ndb = "x.db"\n[resync]\ncheck_interval_s = 30\n')
    done = subprocess.run([*run, str(central), "--show"], capture_output=True, text=True)
    assert done.returncode == 0 and "a valid central configuration" in done.stdout and 'db = "x.db"' in done.stdout


def config_check(path, *flags: str):
    import subprocess
    import sys

    run = [sys.executable, "-m", "edge.cli.main", "config", "check", "--ignore-env", *flags, str(path)]
    return subprocess.run(run, capture_output=True, text=True)


def test_central_device_and_site_tables_are_skipped_by_load_and_read_by_load_central(tmp_path):
    from central.config import CentralConfig, load_central

    path = tmp_path / "central.toml"
    path.write_text('[storage]\ndb = "x.db"\n[devices.shop-1]\nsite = "berlin"\n[sites.berlin]\ntimezone = "UTC"\n')
    assert load(CentralConfig, path, environ={}).storage.db == "x.db"  # no "unknown section 'devices'"
    with pytest.raises(ConfigError, match="unknown section 'devices'"):
        load(EdgeConfig, path, environ={})  # only the classes that declare them skip them
    config, places = load_central(path, environ={})
    assert config.storage.db == "x.db" and places.members("berlin") == ["shop-1"]
    # No temporary copy any more: messages name the real file.
    path.write_text('[web]\nrefresh_s = "fast"\n[devices.a]\nsite = "s"\n')
    with pytest.raises(ConfigError, match=f"web.refresh_s = 'fast' \\({path}\\): expected float"):
        load_central(path, environ={})


@pytest.mark.parametrize(
    ("toml", "kind"),
    [
        ('[devices.shop-1]\ntimezone = "UTC"\n', "central"),
        ('[sites.berlin]\nname = "Berlin"\n', "central"),
        ('[web]\nlisten = "127.0.0.1:8080"\n', "central"),
        ('[display]\ntimezone = "UTC"\n[storage]\ndb = "x.db"\n', "central"),
        ("[resync]\ncheck_interval_s = 30\n", "central"),
        ('[storage]\ndb = "x.db"\n', "edge"),
        ('[device]\nid = "shop-1"\n[display]\ntimezone = "UTC"\n', "edge"),
        ("not toml [", "edge"),
    ],
)
def test_config_check_guesses_the_kind(tmp_path, toml, kind):
    from edge.cli.config import guess_kind

    path = tmp_path / "x.toml"
    path.write_text(toml)
    assert guess_kind(path) == kind


def test_config_check_validates_a_central_file_with_device_tables(tmp_path):
    central = tmp_path / "central.toml"
    central.write_text(
        '[storage]\ndb = "x.db"\n[display]\ntimezone = "Asia/Seoul"\n'
        '[sites.berlin]\ntimezone = "Europe/Berlin"\nopening_hours = "mon-fri 09:00-18:00"\n'
        '[devices.shop-1]\nsite = "berlin"\nname = "Front door"\n[devices.lobby-2]\nopening_hours = ""\n'
    )
    done = config_check(central)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{central}: a valid central configuration")
    central.write_text('[storage]\ndb = "x.db"\n[devices.shop-1]\ntimezone = "Mars/Base"\n')
    done = config_check(central)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[0].endswith("1 problem(s) in this central configuration:"), done.stderr
    assert len(lines) == 2 and "[devices.shop-1] timezone" in lines[1] and str(central) in lines[1], lines
    assert "unknown section" not in done.stderr


@pytest.mark.parametrize(
    ("db", "why"),
    [
        ("postgresql://u:100%Secret@db/aicctv", "percent-encode its password"),
        ("postgresql://u:Se cret@db/aicctv", "percent-encode its password"),
        ("PostgreSQL://u:TopSecret@db/aicctv", "only postgresql://"),
        ("postgressql://u:TopSecret@db/aicctv", "only postgresql://"),
        ("host=db password=TopSecret dbname=aicctv", "not libpq keywords"),
    ],
)
def test_a_database_that_is_neither_a_file_nor_a_postgresql_url_is_refused_without_its_password(db, why):
    """Each became a SQLite file named after it, or a driver error quoting the password."""
    from central.config import CentralConfig

    with pytest.raises(ConfigError, match=why) as refused:
        load(CentralConfig, overrides={"storage.db": db}, environ={})
    assert "Secret" not in str(refused.value)
    for fine in ("postgresql://u:p%40ss@db/aicctv?sslmode=require", "logs/central=2026.db", "central.db"):
        assert load(CentralConfig, overrides={"storage.db": fine}, environ={}).storage.db == fine


def test_an_environment_variable_overriding_the_file_is_said(caplog, tmp_path):
    """The central units set AICCTV_STORAGE_DB: an operator who put a PostgreSQL URL in the file
    kept writing SQLite without a word."""
    from central.config import CentralConfig

    path = tmp_path / "central.toml"
    path.write_text('[storage]\ndb = "postgresql://aicctv:s3cret@db/aicctv"\n\n[mqtt]\nkeepalive_s = 30\n')
    env = {"AICCTV_STORAGE_DB": "/var/lib/aicctv-central/central.db", "AICCTV_MQTT_KEEPALIVE_S": "30"}
    with caplog.at_level("WARNING", logger="aicctv.config"):
        config = load(CentralConfig, path, environ=env)
    assert config.storage.db == "/var/lib/aicctv-central/central.db"
    assert [r.getMessage() for r in caplog.records] == [
        f"environment AICCTV_STORAGE_DB overrides storage.db = 'postgresql://aicctv:***@db/aicctv' in {path}"
    ]  # the same value twice is no override

"""The deployment kit: systemd units, deploy/install.sh, deploy/provision, first-boot files.

Everything runs against a temporary root (`--root`): no user is added to this machine, nothing
is started. The wheel and its dependencies are fetched once into .cache/deploy-wheelhouse, so
a re-run installs offline (`--wheelhouse`).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from edge.vision.model_files import DETECTOR_FILES, OWN_MODEL_FILES

REPO = Path(__file__).resolve().parent.parent
INSTALL = REPO / "deploy" / "install.sh"
PROVISION = REPO / "deploy" / "provision"
FIRSTBOOT = REPO / "deploy" / "firstboot"
UNITS = ("aicctv-edge.service", "aicctv-edge@.service", "aicctv-central.service", "aicctv-central-web.service")
WHEELHOUSE = REPO / ".cache" / "deploy-wheelhouse"
ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"


def run(*command: str | Path, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"{command} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root: mode, owner, group and sha256 (files) or target (links)."""
    state = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            what = os.readlink(path)
        elif stat.S_ISREG(info.st_mode):
            what = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            what = "dir"
        state[str(path.relative_to(root))] = (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid, what)
    return state


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    env = dict(os.environ, SOURCE_DATE_EPOCH="315532800")
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", out, REPO, env=env)
    (built,) = out.glob("aicctv-*.whl")
    # The dependencies' wheels, downloaded once and kept: later runs install offline.
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    run(sys.executable, "-m", "pip", "download", "--quiet", "--dest", WHEELHOUSE, f"{built}[edge,central]")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> dict:
    """One edge install into a fresh root, then the same command again."""
    root = tmp_path_factory.mktemp("root")
    command = [
        INSTALL, "--root", root, "--no-start", "--wheel", wheel, "--wheelhouse", WHEELHOUSE,
        "--models-from", REPO / "models" / "tflite",
        "--device-id", "shop-7", "--broker", "mqtt://central.example:1883", "--source", "/dev/video0",
    ]  # fmt: skip
    first = run(*command)
    before = snapshot(root)
    second = run(*command)
    return {"root": root, "first": first.stdout, "second": second.stdout, "before": before, "after": snapshot(root)}


def test_install_prints_one_line_per_step(installed):
    steps = [line.split(":")[0] for line in installed["first"].splitlines()]
    assert steps == ["user", "venv", "package", "models", "config", "commands", "unit"], installed["first"]
    assert "created" in installed["first"] and "already installed" in installed["second"]


def test_install_lays_out_a_device(installed):
    root = installed["root"]
    assert "aicctv:x:" in (root / "etc/passwd").read_text()
    group = (root / "etc/group").read_text()
    assert re.search(r"^video:x:\d+:.*\baicctv\b", group, re.M), group
    unit = root / "etc/systemd/system/aicctv-edge.service"
    assert unit.read_bytes() == (REPO / "systemd/aicctv-edge.service").read_bytes()
    wants = root / "etc/systemd/system/multi-user.target.wants/aicctv-edge.service"
    assert os.readlink(wants) == "/etc/systemd/system/aicctv-edge.service"

    config = root / "etc/aicctv/edge.toml"
    settings = tomllib.loads(config.read_text())
    assert settings["device"]["id"] == "shop-7"
    assert settings["source"]["spec"] == "/dev/video0"
    assert settings["mqtt"]["broker"] == "mqtt://central.example:1883"
    assert settings["vision"] == tomllib.loads((REPO / "deploy/edge.toml").read_text())["vision"]
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert stat.S_IMODE((root / "etc/aicctv/credentials").stat().st_mode) == 0o700

    models = root / "opt/aicctv/models"
    for name, digest in DETECTOR_FILES.items():
        assert hashlib.sha256((models / name).read_bytes()).hexdigest() == digest
        assert stat.S_IMODE((models / name).stat().st_mode) == 0o644  # the service user reads them
    for name in OWN_MODEL_FILES:  # the age/gender model, the face-or-not classifier, their cards
        assert (models / name).read_bytes() == (REPO / "models/tflite" / name).read_bytes()

    # The installed entry point runs from the venv, and validates the installed configuration.
    env = dict(os.environ, AICCTV_MODELS_DIR=str(models))
    aicctv = root / "opt/aicctv/venv/bin/aicctv"
    assert "edge" in run(aicctv, "--help", env=env, cwd="/").stdout
    assert "valid edge configuration" in run(aicctv, "config", "check", config, env=env, cwd="/").stdout
    assert (root / "usr/local/sbin/aicctv-provision").read_bytes() == PROVISION.read_bytes()
    assert "exec /opt/aicctv/venv/bin/aicctv" in (root / "usr/local/bin/aicctv").read_text()


@pytest.fixture(scope="module")
def instance(installed, wheel) -> dict:
    """A second camera on the same board: `--instance door`, twice, into the root of `installed`."""
    root = installed["root"]
    before = snapshot(root)
    command = [
        INSTALL, "--root", root, "--no-start", "--wheel", wheel, "--wheelhouse", WHEELHOUSE,
        "--models-from", REPO / "models" / "tflite",
        "--instance", "door", "--device-id", "shop-7-door", "--source", "/dev/video2",
    ]  # fmt: skip
    first = run(*command)
    after_first = snapshot(root)
    run(*command)
    return {"root": root, "first": first.stdout, "before": before, "after_first": after_first, "after": snapshot(root)}


def test_an_instance_runs_beside_the_plain_daemon(instance):
    root = instance["root"]
    template = root / "etc/systemd/system/aicctv-edge@.service"
    assert template.read_bytes() == (REPO / "systemd/aicctv-edge@.service").read_bytes()
    wants = root / "etc/systemd/system/multi-user.target.wants/aicctv-edge@door.service"
    assert os.readlink(wants) == "/etc/systemd/system/aicctv-edge@.service"
    settings = tomllib.loads((root / "etc/aicctv/edge-door.toml").read_text())
    assert (settings["device"]["id"], settings["source"]["spec"]) == ("shop-7-door", "/dev/video2")
    assert stat.S_IMODE((root / "etc/aicctv/edge-door.toml").stat().st_mode) == 0o640
    assert "unit:" in instance["first"] and "instance aicctv-edge@door.service" in instance["first"]
    # Only the instance's own files are new; the first daemon's configuration and unit are untouched.
    before, after = instance["before"], instance["after_first"]
    added = sorted(set(after) - set(before))
    assert added == [
        "etc/aicctv/edge-door.toml",
        "etc/systemd/system/aicctv-edge@.service",
        "etc/systemd/system/multi-user.target.wants/aicctv-edge@door.service",
    ], added
    assert [path for path in before if before[path] != after[path]] == []
    assert instance["after"] == after  # and a second run changes nothing


def test_a_new_instance_needs_its_own_device_id(installed):
    result = run(INSTALL, "--root", installed["root"], "--instance", "hall", check=False)
    assert result.returncode == 2 and "needs its own --device-id" in result.stderr, result.stderr
    assert not (installed["root"] / "etc/aicctv/edge-hall.toml").exists()


def test_install_twice_changes_nothing(installed):
    before, after = installed["before"], installed["after"]
    assert before.keys() == after.keys()
    changed = [path for path in before if before[path] != after[path]]
    assert not changed, changed[:20]
    assert any(path.startswith("opt/aicctv/venv/") for path in before)  # the venv is compared too


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_analyze_verify(installed, unit, tmp_path):
    # verify needs ExecStart's binary: point it at the venv the install made in its root.
    venv = installed["root"] / "opt/aicctv/venv"
    text = (REPO / "systemd" / unit).read_text().replace("/opt/aicctv/venv", str(venv))
    # A template is checked as an instance of it, so that its %i specifiers are expanded too.
    name = unit.replace("@.", "@door.")
    (tmp_path / name).write_text(text)
    result = run(ANALYZE, "verify", "--man=no", tmp_path / name, check=False)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_the_template_is_the_edge_unit_but_for_the_instance_lines():
    """Two files, one unit: from [Unit] on, the template is the plain unit with these lines named
    after the instance. A change to one that is not made to the other fails here."""
    instance_lines = {
        "Description=aicctv edge daemon (": "Description=aicctv edge daemon %i (",
        "--config /etc/aicctv/edge.toml": "--config /etc/aicctv/edge-%i.toml",
        "AICCTV_STORAGE_DB=/var/lib/aicctv/edge.db": "AICCTV_STORAGE_DB=/var/lib/aicctv/edge-%i.db",
        "/etc/aicctv/credentials/mqtt-password\n": "/etc/aicctv/credentials/mqtt-password-%i\n",
    }
    plain = (REPO / "systemd/aicctv-edge.service").read_text()
    template = (REPO / "systemd/aicctv-edge@.service").read_text()
    body = plain[plain.index("[Unit]") :]
    for line, named in instance_lines.items():
        assert body.count(line) == 1, line
        body = body.replace(line, named)
    assert template[template.index("[Unit]") :] == body


def unit_setting(unit: str, key: str) -> list[str]:
    """Every value of `key` in the shipped unit, space-separated lists split."""
    text = (REPO / "systemd" / unit).read_text()
    return [value for line in re.findall(rf"^{key}=(.*)$", text, re.M) for value in line.split()]


def test_edge_unit_starts_once_the_clock_is_set():
    """Hourly records are stamped by the clock: after timesyncd set it (time-set.target) and after
    an NTP sync where the system waits for one (time-sync.target). Pulling time-sync.target in
    is for the services that reach it (systemd.special(7)), not for its users."""
    after = unit_setting("aicctv-edge.service", "After")
    assert {"time-set.target", "time-sync.target"} <= set(after), after
    assert "time-sync.target" not in unit_setting("aicctv-edge.service", "Wants")


def test_the_dashboard_unit_reads_the_central_log_as_the_web_broker_user():
    """The one network-facing process runs sandboxed like the subscriber, over the subscriber's
    log, and talks to the broker as the `web` user (settings only), never with central's rights."""
    web, central = "aicctv-central-web.service", "aicctv-central.service"
    assert unit_setting(web, "ExecStart") == [
        "/opt/aicctv/venv/bin/aicctv", "central", "serve", "--config", "/etc/aicctv/central.toml"
    ]  # fmt: skip
    for key in ("User", "StateDirectory", "ReadWritePaths", "SystemCallFilter", "RestrictAddressFamilies"):
        assert unit_setting(web, key) == unit_setting(central, key), key
    env = unit_setting(web, "Environment")
    assert "AICCTV_MQTT_USERNAME=web" in env

    def log(unit: str) -> list[str]:
        return [e for e in unit_setting(unit, "Environment") if e.startswith("AICCTV_STORAGE_DB=")]

    assert log(web) == log(central) != []
    assert unit_setting(web, "LoadCredential") == ["mqtt-password:/etc/aicctv/credentials/central-web-mqtt-password"]
    assert unit_setting(web, "LoadCredential") != unit_setting(central, "LoadCredential")


def test_docs_name_only_units_that_ship():
    named = set()
    for doc in [REPO / "README.md", *(REPO / "docs").glob("*.md"), *(REPO / "deploy").rglob("README.md")]:
        named |= set(re.findall(r"\baicctv-[a-z-]*@?\.service\b", doc.read_text()))
    assert "aicctv-central-web.service" in named
    assert named <= set(UNITS), named - set(UNITS)


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_security_exposure(unit, tmp_path, ceiling=3.0):
    # A template is scored as an instance of it, as systemd runs it.
    path = tmp_path / unit.replace("@.", "@door.")
    shutil.copy(REPO / "systemd" / unit, path)
    result = run(ANALYZE, "security", "--offline=true", "--no-pager", path, check=False)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    print(f"{unit}: exposure {match.group(1)}")
    assert float(match.group(1)) <= ceiling


def test_provision_writes_identity_and_credentials(tmp_path):
    root = tmp_path / "root"
    (root / "etc/aicctv").mkdir(parents=True)
    shutil.copy(REPO / "deploy/edge.toml", root / "etc/aicctv/edge.toml")
    (tmp_path / "pw").write_text("s3cret pass\n")
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n")
    command = [
        PROVISION, "--root", root, "--device-id", "shop-1", "--broker", "mqtts://central.example:8883",
        "--username", "shop-1", "--password-file", tmp_path / "pw", "--ca-file", ca,
    ]  # fmt: skip
    first = run(*command).stdout
    assert "installed" in first and "updated" in first
    before = snapshot(root)
    second = run(*command).stdout
    assert "installed" not in second and "updated" not in second, second
    assert snapshot(root) == before

    settings = tomllib.loads((root / "etc/aicctv/edge.toml").read_text())
    assert settings["device"]["id"] == "shop-1"
    assert settings["mqtt"]["broker"] == "mqtts://central.example:8883"
    assert settings["mqtt"]["username"] == "shop-1"
    assert settings["mqtt"]["ca_file"] == "/etc/aicctv/ca.crt"
    assert settings["mqtt"]["keepalive_s"] == 30  # the rest is kept
    password = root / "etc/aicctv/credentials/mqtt-password"
    assert password.read_text() == "s3cret pass\n"
    assert stat.S_IMODE(password.stat().st_mode) == 0o600 and password.stat().st_uid == 0
    assert stat.S_IMODE(password.parent.stat().st_mode) == 0o700
    assert (root / "etc/aicctv/ca.crt").read_bytes() == ca.read_bytes()
    # Comments and the documented layout survive.
    assert (root / "etc/aicctv/edge.toml").read_text().count("\n#") == (REPO / "deploy/edge.toml").read_text().count(
        "\n#"
    )

    # A new broker later: only that line changes.
    run(PROVISION, "--root", root, "--broker", "mqtts://other.example:8883")
    assert tomllib.loads((root / "etc/aicctv/edge.toml").read_text())["mqtt"]["broker"] == "mqtts://other.example:8883"


def test_provision_an_instance(tmp_path):
    root = tmp_path / "root"
    (root / "etc/aicctv").mkdir(parents=True)
    for name in ("edge.toml", "edge-door.toml"):
        shutil.copy(REPO / "deploy/edge.toml", root / "etc/aicctv" / name)
    (tmp_path / "pw").write_text("door pass\n")
    done = run(
        PROVISION, "--root", root, "--instance", "door", "--device-id", "shop-1-door", "--source", "/dev/video2",
        "--username", "shop-1-door", "--password-file", tmp_path / "pw",
    ).stdout  # fmt: skip
    assert "aicctv-edge@door.service left alone" in done, done
    settings = tomllib.loads((root / "etc/aicctv/edge-door.toml").read_text())
    assert (settings["device"]["id"], settings["source"]["spec"]) == ("shop-1-door", "/dev/video2")
    password = root / "etc/aicctv/credentials/mqtt-password-door"
    assert password.read_text() == "door pass\n" and stat.S_IMODE(password.stat().st_mode) == 0o600
    # The other daemon's configuration and credential are not touched.
    assert (root / "etc/aicctv/edge.toml").read_bytes() == (REPO / "deploy/edge.toml").read_bytes()
    assert not (root / "etc/aicctv/credentials/mqtt-password").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--device-id", "x", "--instance", "a/b"],
        ["--device-id", "x", "--instance", "door", "--role", "central"],
        ["--device-id", "bad id"],
        ["--username", "u"],  # no password
        ["--broker", "http://x"],
        [],
    ],
)
def test_provision_usage_errors(tmp_path, args):
    result = run(PROVISION, "--root", tmp_path, *args, check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr


def test_scripts_have_help_and_parse():
    for script in (INSTALL, FIRSTBOOT / "setup.sh", FIRSTBOOT / "firstrun.sh", FIRSTBOOT / "forget-password"):
        run("bash", "-n", script)
    for script in (
        INSTALL,
        PROVISION,
        FIRSTBOOT / "render",
        FIRSTBOOT / "setup.sh",
        FIRSTBOOT / "firstrun.sh",
        FIRSTBOOT / "forget-password",
    ):
        assert run(script, "--help").stdout.strip(), script
    for bad_args in (["--role", "toaster"], ["--instance", "../x"], ["--role", "central", "--instance", "x"]):
        bad = run(INSTALL, *bad_args, check=False)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1, (bad_args, bad.stderr)
    assert run(INSTALL, "--frobnicate", check=False).returncode == 2


def test_render_user_data_is_valid_cloud_config(tmp_path):
    (tmp_path / "pw").write_text("pa:ss word\n")
    (tmp_path / "key.pub").write_text("ssh-ed25519 AAAAC3Nza admin@laptop\n")
    ca = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----"
    (tmp_path / "ca.crt").write_text(ca + "\n")
    out = tmp_path / "user-data"
    run(
        FIRSTBOOT / "render", "--device-id", "shop-3", "--broker", "mqtts://central.example:8883",
        "--username", "shop-3", "--password-file", tmp_path / "pw", "--ca-file", tmp_path / "ca.crt",
        "--ssh-key-file", tmp_path / "key.pub", "--repo-url", "https://git.example/aicctv.git", "--out", out,
    )  # fmt: skip
    text = out.read_text()
    assert text.startswith("#cloud-config\n")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    data = yaml.safe_load(text)
    assert data["hostname"] == "shop-3"
    files = {f["path"]: f["content"] for f in data["write_files"]}
    assert files["/etc/aicctv/firstboot/mqtt-password"] == "pa:ss word\n"
    assert files["/etc/aicctv/firstboot/ca.crt"] == ca + "\n"
    assert "DEVICE_ID=shop-3\n" in files["/etc/aicctv/firstboot/settings"]
    assert data["users"][0]["ssh_authorized_keys"] == ["ssh-ed25519 AAAAC3Nza admin@laptop"]

    script = tmp_path / "firstrun.sh"
    run(FIRSTBOOT / "render", "--template", "firstrun.sh", "--device-id", "shop-3", "--broker", "mqtt://c:1883",
        "--out", script)  # fmt: skip
    run("bash", "-n", script)
    assert not re.search(r"^[^#]*@[A-Z_]+@", script.read_text(), re.M)


def test_first_boot_overwrites_every_copy_of_the_password(tmp_path):
    """What setup.sh runs once provision has the password: the boot partition's user-data and
    cloud-init's copies keep their shape, without the password."""
    secret = "0123456789abcdef0123456789abcdef0123456789abcdef"
    (tmp_path / "pw").write_text(secret + "\n")
    (tmp_path / "key.pub").write_text("ssh-ed25519 AAAAC3Nza admin@laptop\n")
    root = tmp_path / "root"
    boot = root / "boot" / "firmware" / "user-data"
    boot.parent.mkdir(parents=True)
    run(
        FIRSTBOOT / "render", "--device-id", "shop-3", "--broker", "mqtts://central.example:8883",
        "--username", "shop-3", "--password-file", tmp_path / "pw", "--ssh-key-file", tmp_path / "key.pub",
        "--repo-url", "https://git.example/aicctv.git", "--out", boot,
    )  # fmt: skip
    instance = root / "var" / "lib" / "cloud" / "instances" / "iid-datasource-none"
    instance.mkdir(parents=True)
    (instance / "user-data.txt").write_bytes(boot.read_bytes())
    (instance / "obj.pkl").write_bytes(pickle.dumps({"userdata_raw": boot.read_text()}))
    untouched = instance / "vendor-data.txt"
    untouched.write_text("#cloud-config\n{}\n")
    mtime = untouched.stat().st_mtime_ns

    done = run(FIRSTBOOT / "forget-password", tmp_path / "pw", "--root", root)
    assert done.stdout.count("overwrote") == 3, done.stdout
    for copy in (boot, instance / "user-data.txt", instance / "obj.pkl"):
        assert secret.encode() not in copy.read_bytes(), copy
    files = {f["path"]: f["content"] for f in yaml.safe_load(boot.read_text())["write_files"]}
    assert files["/etc/aicctv/firstboot/mqtt-password"] == "x" * len(secret) + "\n"
    assert pickle.loads((instance / "obj.pkl").read_bytes())["userdata_raw"] == boot.read_text()
    assert untouched.stat().st_mtime_ns == mtime
    # setup.sh runs it after provision, before deleting its own copy.
    setup = (FIRSTBOOT / "setup.sh").read_text()
    assert setup.index('"$SRC/deploy/provision"') < setup.index('forget-password" ') < setup.index('rm -f "$DIR/mqtt')


@pytest.mark.parametrize("device", ["shop-1", "a", "Shop.1_b", "9" * 64, ".shop", "-shop", "_shop", "shop\n", "x" * 65])
def test_provision_checks_device_ids_as_the_contract_does(tmp_path, device):
    from edge.wire.contract import ContractError, check_device_id

    try:
        valid = check_device_id(device) == device
    except ContractError:
        valid = False
    root = tmp_path / "root"
    (root / "etc/aicctv").mkdir(parents=True)
    shutil.copy(REPO / "deploy/edge.toml", root / "etc/aicctv/edge.toml")
    result = run(PROVISION, "--root", root, f"--device-id={device}", check=False)
    if valid:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert (root / "etc/aicctv/edge.toml").read_bytes() == (REPO / "deploy/edge.toml").read_bytes()


def test_provision_instance_takes_no_trailing_newline(tmp_path):
    result = run(PROVISION, "--root", tmp_path, "--device-id", "x", "--instance", "door\n", check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr

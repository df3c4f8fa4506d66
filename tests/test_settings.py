"""Settings from the dashboard (docs/mqtt.md, "Settings"): central's retained `cmd/settings`, the
device checking and applying it without a restart (pause, min_face), its retained answer, and the
Devices page's POST with and without the credential, on a real broker, a real daemon and a real
server."""

from __future__ import annotations

import base64
import json
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import numpy as np
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bench.services import Listener, wait_until
from central.config import CentralConfig, Places, hash_secret
from central.store import Batch, open_store
from edge.daemon.commands import DeviceSettings
from edge.daemon.config import EdgeConfig
from edge.vision.config import VisionConfig
from edge.vision.sources import Frame
from edge.wire.config import load
from edge.wire.contract import ContractError, Settings, SettingsState, decode, encode, topic

DEVICE = "cam-s"
START = 1_800_000_000.0  # an hour start (2027-01-15T08:00:00Z)


def publish(url: str, name: str, payload: bytes, retain: bool = True) -> None:
    """What central does: one retained QoS 1 message."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"central-{uuid.uuid4().hex[:6]}")
    client.connect("127.0.0.1", int(url.rsplit(":", 1)[1]))
    client.loop_start()
    client.publish(name, payload, qos=1, retain=retain).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def answers(listener: Listener) -> list[SettingsState]:
    return [decode(SettingsState, p, device=DEVICE) for p in listener.payloads("/settings") if p]  # type: ignore[misc]


@pytest.fixture
def daemon(broker, tmp_path):
    from edge.daemon.daemon import EdgeDaemon

    overrides = {
        "device.id": DEVICE,
        "source.spec": "rtsp://127.0.0.1:9/none",
        "mqtt.broker": broker.url,
        "storage.db": str(tmp_path / "edge.db"),
    }
    running = EdgeDaemon(load(EdgeConfig, overrides=overrides, environ={}))
    running.uplink.start()
    yield running
    running.uplink.stop()
    running.store.close()


def serve(daemon, until) -> None:
    """The daemon's housekeeping (where commands are applied) until `until()`."""
    wait_until(lambda: daemon._housekeeping(time.time()) or until(), 15, "the daemon to apply the settings")


def frames(start: float, seconds: float, fps: int = 10) -> list[Frame]:
    image = np.zeros((48, 64, 3), np.uint8)
    return [Frame(image, start + i / fps, i) for i in range(int(seconds * fps))]


def test_a_retained_pause_and_min_face_apply_without_restart(broker, daemon):
    listener = Listener(broker.url, topic("aicctv", DEVICE, "settings")).connect()
    assert daemon.analyzer.detector.min_face_px == 40
    # Retained before the device is even subscribed: an offline device gets it when it comes back.
    command = Settings(True, 80, "mon-fri 09:00-18:00", round(time.time(), 3))
    publish(broker.url, topic("aicctv", DEVICE, "cmd/settings"), encode(command))
    serve(daemon, lambda: daemon.settings.paused)
    assert daemon.analyzer.detector.min_face_px == 80 and daemon.analyzer.config.min_face == 80
    assert daemon.settings.opening_hours == "mon-fri 09:00-18:00"
    wait_until(lambda: answers(listener), 10, "the device's answer")
    (state,) = answers(listener)
    assert (state.applied, state.error, state.paused, state.min_face, state.issued) == (
        True,
        "",
        True,
        80,
        command.issued,
    )

    # Paused: 20 s of frames are skipped (nothing analysed, nothing covered); resumed: 20 s counted.
    seen = [f.timestamp for f in daemon._frames(iter(frames(START, 20)))]
    assert seen == []
    resume = Settings(False, None, "", round(time.time(), 3))
    publish(broker.url, topic("aicctv", DEVICE, "cmd/settings"), encode(resume))
    serve(daemon, lambda: not daemon.settings.paused)
    assert daemon.analyzer.detector.min_face_px == 40, "None: back to the device's own vision.min_face"
    for frame in daemon._frames(iter(frames(START + 20, 20))):
        daemon.tally.frame(frame.timestamp)
    (record,) = daemon.tally.close(START + 7200, final=True)[:1]
    assert 0.004 < record.coverage < 0.006, "20 s of the hour counted, the paused 20 s not"
    listener.disconnect()


def test_a_bad_value_is_rejected_reported_and_not_applied(broker, daemon):
    listener = Listener(broker.url, topic("aicctv", DEVICE, "settings")).connect()
    name = topic("aicctv", DEVICE, "cmd/settings")
    publish(broker.url, name, encode(Settings(True, 3, "", round(time.time(), 3))))
    wait_until(lambda: daemon._housekeeping(time.time()) or answers(listener), 15, "the rejection")
    (state,) = answers(listener)
    assert not state.applied and "vision.min_face = 3" in state.error and "between 8 and 4096" in state.error
    assert (state.paused, state.min_face) == (False, 40), "nothing of a rejected command is applied"
    assert not daemon.settings.paused and daemon.analyzer.detector.min_face_px == 40
    # Not even a Settings payload: rejected by the contract, answered all the same.
    publish(broker.url, name, b'{"schema": 2, "paused": "yes"}')
    wait_until(lambda: daemon._housekeeping(time.time()) or len(answers(listener)) == 2, 15, "the second rejection")
    assert answers(listener)[1].error.startswith("rejected: ")
    assert not daemon.settings.paused
    events = [kind for _, kind, _ in daemon.store.events()]
    assert events.count("settings") == 2
    listener.disconnect()


def test_device_settings_checks_like_the_config_file():
    settings = DeviceSettings(DEVICE, VisionConfig(min_face=48))
    assert settings.apply(Settings(False, 4097, "", START)).error.startswith("settings: vision.min_face = 4097")
    state = settings.apply(Settings(False, 8, "sat 10:00-14:00", START))
    assert state.applied and settings.vision.min_face == 8
    assert settings.apply(Settings(False, None, "", START)).min_face == 48


def device_loop(link, device, stop: threading.Event) -> None:
    """What the daemon's housekeeping does with settings."""
    while not stop.is_set():
        for command in link.commands():
            link.answer(device.apply(command))
        time.sleep(0.02)


# ---- the Devices page's form ----------------------------------------------------------------------


class Server:
    """The dashboard (uvicorn in a thread) with central's broker settings."""

    def __init__(self, db: str, broker_url: str, **web: object) -> None:
        import uvicorn

        from central.web.app import create_app

        overrides = {"storage.db": db, "mqtt.broker": broker_url} | {f"web.{k}": v for k, v in web.items()}
        config = load(CentralConfig, overrides=overrides, environ={})
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.url = f"http://{self.host}"
        self.server = uvicorn.Server(uvicorn.Config(create_app(config, Places()), log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        wait_until(lambda: self.server.started, 20, "the server")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()

    def request(self, path: str, form: dict | None = None, headers: dict | None = None) -> tuple[int, str]:
        data = urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(self.url + path, data=data, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def device(broker):
    """A device on `broker` that applies settings commands and answers them, as the daemon does."""
    from edge.daemon.commands import SettingsLink
    from edge.daemon.uplink import Uplink

    edge = load(EdgeConfig, overrides={"device.id": DEVICE, "mqtt.broker": broker.url}, environ={})
    uplink = Uplink(edge.mqtt, DEVICE)
    link = SettingsLink(uplink.connection, "aicctv", DEVICE)
    settings = DeviceSettings(DEVICE, VisionConfig())
    stop = threading.Event()
    uplink.start()
    threading.Thread(target=device_loop, args=(link, settings, stop), daemon=True).start()
    yield settings
    stop.set()
    uplink.stop()


def test_the_page_form_posts_settings_with_the_credential_only(broker, device, tmp_path, caplog):
    commands = Listener(broker.url, topic("aicctv", DEVICE, "cmd/settings")).connect()
    db = str(tmp_path / "central.db")
    store = open_store(db)
    store.write(Batch(statuses={DEVICE: "online"}))
    store.close()
    form = {"device": DEVICE, "paused": "on", "min_face": "64", "opening_hours": "mon-sat 10:00-20:00"}
    try:
        with Server(db, broker.url, password_hash=hash_secret("s3cret")) as server:
            good = {"Authorization": basic("owner", "s3cret"), "Origin": server.url}
            status, page = server.request("/devices", headers=good)
            assert status == 200 and 'action="settings"' in page and 'name="min_face"' in page
            assert server.request("/settings", form, {"Origin": server.url})[0] == 401
            wrong = {"Authorization": basic("owner", "guess"), "Origin": server.url}
            assert server.request("/settings", form, wrong)[0] == 401
            # A page elsewhere making the owner's browser post (with the browser's credentials).
            evil = {**good, "Origin": "http://evil.example"}
            assert server.request("/settings", form, evil)[0] == 403
            assert server.request("/settings", form, {"Authorization": good["Authorization"]})[0] == 403
            for text in ("four", "1_000", "\u0663\u0662"):  # int() reads the last two as 1000 and 32
                status, page = server.request("/settings", {**form, "min_face": text}, good)
                assert status == 400 and "expected pixels" in page, text
            assert commands.messages == [], "nothing refused reaches the broker"
            # Out of the device's bounds: refused here, never retained for the device to refuse.
            for value in ("4", "7", "4097", "100000"):
                status, page = server.request("/settings", {**form, "min_face": value}, good)
                assert status == 400 and f"vision.min_face = {value}: must be between 8 and 4096" in page, page
            assert commands.messages == [] and not device.paused
            with caplog.at_level("INFO", logger="aicctv.web"):
                status, page = server.request("/settings", form, good)
            assert status == 200 and "applied by the device" in page, page
            assert device.paused and device.vision.min_face == 64
            mixed_case = {**good, "Content-Type": "Application/X-WWW-Form-Urlencoded; charset=UTF-8"}
            assert server.request("/settings", form, mixed_case)[0] == 200  # media types ignore case
            (_, payload, _) = commands.messages[-1]
            sent = decode(Settings, payload)
            assert (sent.paused, sent.min_face, sent.opening_hours) == (True, 64, "mon-sat 10:00-20:00")
            logged = " ".join(r.getMessage() for r in caplog.records)
            assert f"settings for {DEVICE} by user 'owner'" in logged and "s3cret" not in logged
            # Retained: a device connecting later gets it.
            late = Listener(broker.url, topic("aicctv", DEVICE, "cmd/settings")).connect()
            wait_until(lambda: late.messages, 10, "the retained command")
            assert late.messages[0][2] is True
            late.disconnect()
        # Without a credential configured (a local-only dashboard) nothing can be changed.
        with Server(db, broker.url) as server:
            status, page = server.request("/settings", form, {"Origin": server.url})
            assert status == 403 and "password_hash" in page
            assert 'name="min_face"' not in server.request("/devices")[1]
    finally:
        commands.disconnect()


def test_a_command_the_broker_has_not_confirmed_is_said_to_be_pending_not_lost(broker, device, tmp_path, monkeypatch):
    """A broker that stops answering (here: stopped) after the command left: paho keeps it and sends
    it when the broker answers again, so the page must not say "not sent" for what the device then
    applies."""
    monkeypatch.setattr("central.web.settings.PUBLISH_WAIT_S", 1.0)
    db = str(tmp_path / "central.db")
    open_store(db).close()
    form = {"device": DEVICE, "min_face": "64", "opening_hours": ""}
    with Server(db, broker.url, password_hash=hash_secret("s3cret")) as server:
        good = {"Authorization": basic("owner", "s3cret"), "Origin": server.url}
        assert server.request("/settings", form, good)[0] == 200  # connected, and the device answers
        broker.process.send_signal(signal.SIGSTOP)
        try:
            status, page = server.request("/settings", {**form, "min_face": "96"}, good)
        finally:
            broker.process.send_signal(signal.SIGCONT)
        assert status == 202 and "not confirmed" in page and "may still apply it" in page, page
        assert "Settings not sent" not in page
        wait_until(lambda: device.vision.min_face == 96, 30, "the pending command applied")


# ---- the device's state at central; pauses that end by themselves ------------------------------


def test_optional_fields_keep_older_payloads_readable_both_ways():
    """A Settings or SettingsState without the fields added later is the payload older devices and
    centrals send and expect: decoded with the fields absent, and encoded byte for byte as before."""
    now = round(time.time(), 3)
    old_command = Settings(True, 64, "", now)
    assert b"paused_until" not in encode(old_command)
    assert decode(Settings, encode(old_command)) == old_command
    old_state = SettingsState(DEVICE, now, True, "", True, 64, "")
    assert b"paused_since" not in encode(old_state) and decode(SettingsState, encode(old_state)) == old_state
    timed = Settings(True, None, "", now, paused_until=now + 3600)
    assert decode(Settings, encode(timed)) == timed
    state = SettingsState(DEVICE, now, True, "", True, 40, "", paused_since=now, paused_until=now + 3600)
    assert decode(SettingsState, encode(state)) == state
    for bad in (Settings(False, None, "", now, paused_until=now + 60), Settings(True, None, "", now, paused_until=now)):
        with pytest.raises(ContractError, match="paused_until"):
            encode(bad)
    with pytest.raises(ContractError, match="before 2100") as caught:  # 2100-01-01T00:00Z is 2100
        encode(Settings(True, None, "", now, paused_until=4102444800.0))
    assert caught.value.reason == "time"
    # A device's answer with a pause ending past 9999 broke the Devices page for every device.
    far = json.loads(encode(SettingsState(DEVICE, now, True, "", True, 40, ""))) | {"paused_until": 1e18}
    with pytest.raises(ContractError, match="paused_until") as caught:
        decode(SettingsState, json.dumps(far).encode(), DEVICE)
    assert caught.value.reason == "time"


def test_frames_before_2020_are_not_counted_until_the_clock_is_set(daemon, caplog):
    """A board without a real-time clock films in 1970 until NTP sets it: those hours would be
    refused by central for good, and the jump would leave decades between two hours."""
    now = time.time()
    with caplog.at_level("WARNING", logger="aicctv.edge"):
        kept = list(daemon._frames(iter(frames(3600.0, 1) + frames(now, 1))))
    assert [f.timestamp for f in kept] == [f.timestamp for f in frames(now, 1)]
    assert [r.getMessage() for r in caplog.records] == [
        "the clock says 1970-01-01 01:00 UTC: not counting until it is set (NTP)"
    ]
    assert [kind for _, kind, _ in daemon.store.events()] == ["clock not set"]
    assert not daemon.tally.hours


def test_a_pause_with_an_end_ends_by_itself_and_says_so(broker, daemon):
    listener = Listener(broker.url, topic("aicctv", DEVICE, "settings")).connect()
    name = topic("aicctv", DEVICE, "cmd/settings")
    issued = round(time.time(), 3)
    publish(broker.url, name, encode(Settings(True, 80, "", issued, paused_until=issued + 3)))
    serve(daemon, lambda: daemon.settings.paused)
    wait_until(lambda: answers(listener), 10, "the device's answer")
    paused = answers(listener)[0]
    assert paused.paused and paused.paused_until == issued + 3 and issued <= paused.paused_since <= time.time()
    # Nothing from central: the device resumes at the end it was given, answers, keeps min_face.
    wait_until(lambda: daemon._housekeeping(time.time()) or not daemon.settings.paused, 15, "the pause's end")
    assert time.time() >= issued + 3
    wait_until(lambda: len(answers(listener)) == 2, 10, "the answer after the pause")
    resumed = answers(listener)[1]
    assert (resumed.paused, resumed.paused_since, resumed.paused_until, resumed.min_face) == (False, None, None, 80)
    assert resumed.issued == issued and resumed.applied
    assert [f.timestamp for f in daemon._frames(iter(frames(START, 1)))], "counting again"

    # A pause replaced by one without an end is not ended by the first one's end.
    issued = round(time.time(), 3)
    publish(broker.url, name, encode(Settings(True, None, "", issued, paused_until=issued + 1)))
    publish(broker.url, name, encode(Settings(True, None, "", issued + 0.001)))
    wait_until(lambda: daemon._housekeeping(time.time()) or len(answers(listener)) >= 4, 10, "both answers")
    wait_until(lambda: daemon._housekeeping(time.time()) or time.time() > issued + 1.5, 10, "the first end")
    daemon._housekeeping(time.time())
    assert daemon.settings.paused and answers(listener)[-1].paused_until is None
    # A command that arrives after its pause's end counts at once.
    late = round(time.time(), 3)
    publish(broker.url, name, encode(Settings(True, None, "", late, paused_until=late + 0.001)))
    wait_until(lambda: daemon._housekeeping(time.time()) or answers(listener)[-1].issued == late, 10, "the late one")
    assert not daemon.settings.paused and not answers(listener)[-1].paused
    listener.disconnect()


class FormFields(HTMLParser):
    """The Devices page's settings form of one device, as a browser would submit it: its inputs
    (inside the form, or naming it with form=), a checkbox only when checked."""

    def __init__(self, page: str, device: str) -> None:
        super().__init__()
        self.forms: dict[str, dict[str, str]] = {}
        self.inside: str | None = None
        self.feed(page)
        (self.fields,) = [f for f in self.forms.values() if f.get("device") == device]

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "form":
            self.inside = a["id"]
        elif (
            tag == "input"
            and (owner := a.get("form", self.inside)) is not None
            and (a.get("type") != "checkbox" or "checked" in a)
        ):
            self.forms.setdefault(owner, {})[a["name"]] = a.get("value") or ("on" if "checked" in a else "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = None


def test_central_shows_the_reported_state_and_the_form_starts_from_it(broker, device, tmp_path):
    from tests.test_central import central_config, running

    db = str(tmp_path / "central.db")
    with (
        running(central_config(broker.url, db)),
        Server(db, broker.url, password_hash=hash_secret("s3cret")) as server,
    ):
        good = {"Authorization": basic("owner", "s3cret"), "Origin": server.url}
        publish(broker.url, topic("aicctv", DEVICE, "status"), b"online")
        wait_until(lambda: DEVICE in server.request("/devices", headers=good)[1], 10, "the device on the page")
        page = server.request("/devices", headers=good)[1]
        assert "not reported yet" in page
        form = FormFields(page, DEVICE).fields
        assert "paused" not in form and form["min_face"] == "" and form["paused_until"] == ""
        end = datetime.now(ZoneInfo(form["tz"])).replace(second=0, microsecond=0) + timedelta(hours=2)
        form |= {"paused": "on", "min_face": "64", "paused_until": end.strftime("%Y-%m-%dT%H:%M")}
        status, result = server.request("/settings", form, good)
        assert status == 200 and "applied by the device" in result, result
        assert device.paused and device.paused_until == end.timestamp()

        def reported() -> dict | None:
            api = json.loads(server.request("/api/v1/devices", headers=good)[1])
            return next(d["settings"] for d in api["devices"] if d["device"] == DEVICE)

        wait_until(lambda: (reported() or {}).get("paused"), 10, "central to store the device's state")
        shown = reported()
        assert shown["min_face"] == 64 and shown["applied"] and shown["paused_since"]
        assert shown["paused_until"] == end.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        page = server.request("/devices", headers=good)[1]
        assert "paused since " in page and f"until {end.strftime('%Y-%m-%d %H:%M')}" in page
        # The form starts from the device's state: sending it with one change keeps the rest.
        form = FormFields(page, DEVICE).fields
        assert (form.get("paused"), form["min_face"]) == ("on", "64")
        assert form["paused_until"] == end.strftime("%Y-%m-%dT%H:%M")
        form["opening_hours"] = "mon-fri 09:00-18:00"
        status, result = server.request("/settings", form, good)
        assert status == 200 and "applied by the device" in result, result
        assert device.paused and device.vision.min_face == 64 and device.paused_until == end.timestamp()
        assert device.opening_hours == "mon-fri 09:00-18:00"
        # A pause's end in the past, or nonsense, is refused here.
        for bad in ("2020-01-01T10:00", "tomorrow"):
            status, result = server.request("/settings", form | {"paused_until": bad}, good)
            assert status == 400 and "paused_until" in result, result

"""The central broker's configuration (deploy/mosquitto) on a real Mosquitto.

`aicctv-broker` runs as shipped, with `--dir` in a temporary folder, to make the CA, the server
certificate and the users (the dynamic-security plugin's file); only aicctv.conf is rewritten
(free ports, the temporary folder, a log, persistence there, the user to run as). Clients are real
MQTT 5 clients over TLS, checked against the generated CA, so what passes here is what a device
and the central subscriber meet in production.
"""

from __future__ import annotations

import getpass
import hashlib
import shutil
import socket
import ssl
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from bench.services import MOSQUITTO, free_port, missing, wait_for_port, wait_until
from edge.wire.config import MqttLinkSection
from edge.wire.contract import DEFAULT_PREFIX, topic
from edge.wire.mqtt import Connection

SHIPPED = Path(__file__).resolve().parent.parent / "deploy" / "mosquitto"
SCRIPT = SHIPPED / "aicctv-broker"
# A dash and a dot: the ACL's %u must work with all of the device-id punctuation.
A, B = "shop-1", "shop.2"
CENTRAL_2 = "central-2"  # a second central instance: the client id is the user name, so it has its own user
NOT_AUTHORIZED = 135  # MQTT 5 reason code, in CONNACK, PUBACK and SUBACK
ACCEPTED = (0, 16)  # PUBACK: success, or success with "no matching subscribers"


def script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def plugin_path(named: str) -> str:
    """The dynamic-security plugin that aicctv.conf names (Debian's path on amd64), or where this
    machine's architecture has it."""
    if Path(named).exists():
        return named
    found = sorted(Path("/usr/lib").glob("*/mosquitto_dynamic_security.so"))
    if not found:
        missing("the dynamic-security plugin", "install the Debian package (apt install mosquitto)")
    return str(found[0])


def broker_config(shipped: str, folder: Path, tls_port: int, local_port: int) -> str:
    """aicctv.conf with our ports and folder: each rewrite must match exactly once, so a change to
    the shipped file that this test no longer understands fails here, not silently."""
    rewrites = {
        "\nlistener 8883\n": f"\nlistener {tls_port} 127.0.0.1\n",
        "\nlistener 1883 127.0.0.1\n": f"\nlistener {local_port} 127.0.0.1\n",
    }
    for old, new in rewrites.items():
        assert shipped.count(old) == 1, f"aicctv.conf: expected one {old.strip()!r}"
        shipped = shipped.replace(old, new)
    settings = [line for line in shipped.splitlines() if "/etc/mosquitto/aicctv/" in line and not line.startswith("#")]
    assert len(settings) == 4, f"aicctv.conf: expected the users, ca.crt, server.crt and server.key: {settings}"
    shipped = shipped.replace("/etc/mosquitto/aicctv/", f"{folder}/")
    (named,) = [line for line in shipped.splitlines() if line.startswith("plugin ")]
    shipped = shipped.replace(named, f"plugin {plugin_path(named.split(' ', 1)[1])}")
    # What Debian's main mosquitto.conf provides around the drop-in.
    return shipped + (
        f"\npersistence_location {folder}/\n"
        f"log_dest file {folder}/mosquitto.log\n"
        "log_type all\n"
        # Started as root, mosquitto would switch to user `mosquitto` (see tests/services.py).
        f"user {getpass.getuser()}\n"
    )


class Broker:
    """`folder`: the broker host's /etc/mosquitto/aicctv; `handover`: where the new passwords went
    (`aicctv-broker --out`), i.e. what the devices and central were given."""

    def __init__(self, folder: Path, handover: Path) -> None:
        self.folder = folder
        self.handover = handover
        self.ca = str(folder / "ca.crt")
        self.tls_port, self.local_port = free_port(), free_port()
        (folder / "mosquitto.conf").write_text(
            broker_config((SHIPPED / "aicctv.conf").read_text(), folder, self.tls_port, self.local_port)
        )
        self.log = folder / "mosquitto.log"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.folder / "mosquitto.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            wait_for_port(self.tls_port)
            wait_for_port(self.local_port)
        except TimeoutError:
            self.process.kill()
            raise AssertionError(f"mosquitto did not start: {self.process.communicate()[1].decode()[-800:]}") from None

    def password(self, user: str) -> str:
        return (self.handover / f"{user}.password").read_text().strip()

    def add(self, command: str, user: str) -> None:
        """`aicctv-broker add-device/add-user`, its password handed over to us."""
        done = script(command, user, "--dir", str(self.folder), "--out", str(self.handover / f"{user}.password"))
        assert done.returncode == 0, f"aicctv-broker {command} {user}: {done.stderr}"

    def restart(self) -> None:
        """What `systemctl restart mosquitto` does: the plugin reads its users again."""
        self.stop()
        self.start()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """Replaces conftest's open `broker` in this module: one broker for all tests here, set up as
    on the central server (making a CA and starting TLS once, not per test, keeps this file fast)."""
    if MOSQUITTO is None:
        missing("mosquitto", "install the Debian package (apt install mosquitto)")
    for tool in ("openssl", "mosquitto_passwd"):
        if shutil.which(tool) is None:
            missing(tool, "apt install openssl mosquitto")
    folder = tmp_path_factory.mktemp("central-broker")
    done = script("init-ca", "--hostname", "127.0.0.1", "--hostname", "localhost", "--dir", str(folder))
    assert done.returncode == 0, f"aicctv-broker init-ca: {done.stderr}"
    running = Broker(folder, tmp_path_factory.mktemp("handover"))
    for user in (A, B):
        running.add("add-device", user)
    for user in ("central", CENTRAL_2, "watch", "web", "central-web"):
        running.add("add-user", user)
    running.start()
    yield running
    running.stop()


class Client:
    """A paho MQTT 5 client that records what the broker answers: CONNACK, PUBACK and SUBACK
    reason codes, and every message received."""

    def __init__(
        self,
        broker: Broker,
        user: str | None,
        password: str | None = None,
        *,
        will=None,
        tls=True,
        client_id: str | None = None,
        session_s: int | None = None,
    ):
        """`client_id`: what the client asks for (the broker may use another); `session_s`: a
        persistent session (MQTT 5 clean start off, this session expiry), as central has."""
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id or f"{user}-{uuid.uuid4().hex[:6]}", protocol=paho.MQTTv5
        )
        self.session_s = session_s
        self.session_present = False
        if user:
            self.client.username_pw_set(user, broker.password(user) if password is None else password)
        if tls:
            self.client.tls_set(ca_certs=broker.ca)
        if will:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        self.port = broker.tls_port if tls else broker.local_port
        self.connack = None
        self.answered = threading.Event()
        self.pubacks: dict[int, int] = {}
        self.subacks: dict[int, list[int]] = {}
        self.messages: list[tuple[str, bytes, bool]] = []
        self.client.on_connect = self._on_connect
        self.client.on_publish = lambda _c, _u, mid, reason, _p: self.pubacks.__setitem__(mid, reason.value)
        self.client.on_subscribe = lambda _c, _u, mid, reasons, _p: self.subacks.__setitem__(
            mid, [r.value for r in reasons]
        )
        self.client.on_message = lambda _c, _u, m: self.messages.append((m.topic, m.payload, m.retain))

    def _on_connect(self, client, _userdata, flags, reason, _props) -> None:
        self.connack = reason.value
        self.session_present = flags.session_present
        self.answered.set()
        if reason.is_failure:
            client.disconnect()  # no automatic retries with a password the broker refused

    def connect(self) -> Client:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        if self.session_s is None:
            self.client.connect("127.0.0.1", self.port, keepalive=30)
        else:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = self.session_s
            self.client.connect("127.0.0.1", self.port, keepalive=30, clean_start=False, properties=properties)
        self.client.loop_start()
        assert self.answered.wait(10), "no CONNACK"
        return self

    def login(self) -> int:
        """The CONNACK reason code, then disconnect."""
        self.connect()
        self.close()
        return self.connack

    def connected(self) -> Client:
        self.connect()
        assert self.connack == 0, f"connection refused: reason {self.connack}"
        return self

    def subscribe(self, *filters: str) -> list[int]:
        _, mid = self.client.subscribe([(name, 1) for name in filters])
        wait_until(lambda: mid in self.subacks, 10, "SUBACK")
        return self.subacks[mid]

    def publish(self, name: str, payload: bytes, qos: int = 1, retain: bool = False) -> int | None:
        """The PUBACK reason code (QoS 1), or None (QoS 0: the broker says nothing)."""
        info = self.client.publish(name, payload, qos=qos, retain=retain)
        if qos == 0:
            info.wait_for_publish(10)
            return None
        wait_until(lambda: info.mid in self.pubacks, 10, f"PUBACK for {name}")
        return self.pubacks[info.mid]

    def received(self, name: str, payload: bytes | None = None) -> list[bytes]:
        return [p for t, p, _ in self.messages if t == name and (payload is None or p == payload)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def die(self) -> None:
        """The connection drops without a DISCONNECT (power cut, network gone): the broker must
        publish the last will."""
        self.client.loop_stop()
        self.client.socket().close()


def t(device: str, channel: str) -> str:
    return topic(DEFAULT_PREFIX, device, channel)


def marker() -> bytes:
    return uuid.uuid4().hex.encode()


def test_anonymous_clients_and_wrong_passwords_are_refused(broker):
    assert Client(broker, None).login() == NOT_AUTHORIZED
    # Global, not per listener: the plain loopback listener is no way around it.
    assert Client(broker, None, tls=False).login() == NOT_AUTHORIZED
    assert Client(broker, A, "not-the-password").login() == NOT_AUTHORIZED
    # A password is not transferable: B's password does not log in as A.
    assert Client(broker, A, broker.password(B)).login() == NOT_AUTHORIZED
    assert Client(broker, A).login() == 0
    # And a client that does not trust our CA never gets as far as sending a password.
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    stranger = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    stranger.tls_set()  # the system's CAs, which did not sign our server certificate
    with pytest.raises(ssl.SSLCertVerificationError):
        stranger.connect("127.0.0.1", broker.tls_port)


def test_device_publishes_its_own_topics_and_central_receives_them(broker):
    central = Client(broker, "central").connected()
    granted = central.subscribe(
        f"$share/aicctv-central/{DEFAULT_PREFIX}/+/hourly", f"{DEFAULT_PREFIX}/+/hourly", f"{DEFAULT_PREFIX}/+/live"
    )
    assert granted == [1, 1, 1]
    device = Client(broker, A).connected()
    record, live = marker(), marker()
    assert device.publish(t(A, "hourly"), record) in ACCEPTED
    device.publish(t(A, "live"), live, qos=0)
    # Once through the shared subscription and once through the plain one.
    wait_until(lambda: len(central.received(t(A, "hourly"), record)) == 2, 10, "the hourly record, twice")
    wait_until(lambda: central.received(t(A, "live"), live), 10, "the live counts")
    device.close()
    central.close()


def retain_status_of_b(broker) -> None:
    """B's own retained `online` status: what A will try to overwrite."""
    other = Client(broker, B).connected()
    assert other.publish(t(B, "status"), b"online", retain=True) in ACCEPTED
    other.close()


def test_device_cannot_publish_as_another_device(broker):
    retain_status_of_b(broker)

    central = Client(broker, "central").connected()
    central.subscribe(f"$share/aicctv-central/{DEFAULT_PREFIX}/+/hourly", f"{DEFAULT_PREFIX}/#")
    device = Client(broker, A).connected()
    forged = marker()
    for name in (t(B, "hourly"), t(B, "status"), t(B, "cmd/resync"), t(A, "cmd/resync"), f"{DEFAULT_PREFIX}/x"):
        # Dropped by the broker, which says so in the MQTT 5 PUBACK; A stays connected.
        assert device.publish(name, forged, retain=name.endswith("status")) == NOT_AUTHORIZED, name
    device.publish(t(B, "live"), forged, qos=0)  # QoS 0: no answer at all, so only delivery can tell
    # A's later, allowed message arriving means the earlier ones would have arrived by now: one
    # client's messages are delivered in order.
    later = marker()
    assert device.publish(t(A, "hourly"), later) in ACCEPTED
    wait_until(lambda: central.received(t(A, "hourly"), later), 10, "A's own hourly record")
    assert [m for m in central.messages if m[1] == forged] == []
    device.close()
    central.close()

    # The retained status a new subscriber gets is still B's.
    fresh = Client(broker, "central").connected()
    fresh.subscribe(t(B, "status"))
    wait_until(lambda: fresh.messages, 10, "B's retained status")
    assert fresh.messages == [(t(B, "status"), b"online", True)]
    fresh.close()


def test_device_receives_only_its_own_resync_requests(broker):
    device = Client(broker, A).connected()
    # Its own commands, today's and any later ones under cmd/; nothing else, not even to look.
    assert device.subscribe(
        f"{DEFAULT_PREFIX}/#", t(B, "cmd/resync"), t(A, "cmd/resync"), f"{DEFAULT_PREFIX}/{A}/cmd/#"
    ) == [
        NOT_AUTHORIZED,
        NOT_AUTHORIZED,
        1,
        1,
    ]
    other = Client(broker, B).connected()
    other.subscribe(t(B, "cmd/resync"))
    central = Client(broker, "central").connected()
    for_b, for_a = marker(), marker()
    assert central.publish(t(B, "cmd/resync"), for_b) in ACCEPTED
    assert other.publish(t(B, "hourly"), marker()) in ACCEPTED
    assert central.publish(t(A, "cmd/resync"), for_a) in ACCEPTED
    wait_until(lambda: device.received(t(A, "cmd/resync"), for_a), 10, "A's resync request")
    wait_until(lambda: other.received(t(B, "cmd/resync"), for_b), 10, "B's resync request")
    # (A set: Mosquitto may deliver one copy per matching subscription.)
    assert {(name, payload) for name, payload, _ in device.messages} == {(t(A, "cmd/resync"), for_a)}
    for client in (device, other, central):
        client.close()


def test_watch_user_reads_live_counts_and_statuses_only(broker):
    watcher = Client(broker, "watch").connected()
    codes = watcher.subscribe(f"{DEFAULT_PREFIX}/+/live", f"{DEFAULT_PREFIX}/+/status", f"{DEFAULT_PREFIX}/#")
    assert codes == [1, 1, NOT_AUTHORIZED]
    device = Client(broker, A).connected()
    hidden, seen = marker(), marker()
    assert device.publish(t(A, "hourly"), hidden) in ACCEPTED
    device.publish(t(A, "live"), seen, qos=0)
    wait_until(lambda: watcher.received(t(A, "live"), seen), 10, "live counts at watch")
    assert watcher.received(t(A, "hourly")) == []
    for name in (t(A, "status"), t(A, "cmd/resync"), t(A, "live")):
        assert watcher.publish(name, b"offline") == NOT_AUTHORIZED, name
    device.close()
    watcher.close()


def test_edge_connection_last_will_reaches_central_when_it_dies(broker):
    """The edge's own client, configured as `aicctv-broker add-device` tells the device to be:
    mqtts://, the generated CA, user name = device id, password from a file."""
    central = Client(broker, "central").connected()
    central.subscribe(f"{DEFAULT_PREFIX}/+/status")
    link = MqttLinkSection(
        broker=f"mqtts://127.0.0.1:{broker.tls_port}",
        ca_file=broker.ca,
        username=A,
        password_file=str(broker.handover / f"{A}.password"),
    )
    for check in link.checks():
        check()
    online = threading.Event()

    def announce(client, _session_present):
        client.publish(t(A, "status"), b"online", qos=1, retain=True)
        online.set()

    edge = Connection(
        link.broker_url(),
        f"aicctv-edge-{A}",
        will=(t(A, "status"), b"offline"),
        ca_file=link.ca_file,
        max_backoff_s=0.5,
        on_connect=announce,
    )
    edge.start()
    try:
        assert online.wait(10), "the edge did not connect"
        wait_until(lambda: central.received(t(A, "status"), b"online"), 10, "online")
        seen = len(central.messages)
        online.clear()
        # The connection dies under the client (no DISCONNECT): the broker sends the will,
        # and the edge reconnects and says it is online again.
        edge.client.socket().shutdown(socket.SHUT_RDWR)
        wait_until(lambda: (t(A, "status"), b"offline", False) in central.messages[seen:], 10, "the last will")
        assert online.wait(10), "the edge did not reconnect"
        again = (t(A, "status"), b"online", False)
        wait_until(lambda: again in central.messages[seen:], 10, "online again")
    finally:
        edge.stop()
        central.close()


def test_last_will_on_another_device_topic_is_dropped(broker):
    retain_status_of_b(broker)
    central = Client(broker, "central").connected()
    central.subscribe(f"{DEFAULT_PREFIX}/+/status")
    wait_until(lambda: central.received(t(B, "status"), b"online"), 10, "B's retained status")
    seen = len(central.messages)

    spoofer = Client(broker, A, will=(t(B, "status"), b"offline")).connected()
    spoofer.die()
    # The client id is the user name, so the genuine connection takes the spoofer's over if the
    # broker has not yet noticed it died: either way the spoofed will is dealt with before the
    # genuine CONNACK, and when the genuine will arrives the spoofed one would have too.
    genuine = Client(broker, A, will=(t(A, "status"), b"offline")).connected()
    genuine.die()
    wait_until(lambda: (t(A, "status"), b"offline", False) in central.messages[seen:], 10, "A's last will")
    assert central.received(t(B, "status"))[1:] == []  # only the retained "online" from before
    central.close()


def test_restart_adds_and_removes_a_device(broker):
    device = "shop-3"
    broker.add("add-device", device)
    broker.restart()
    assert Client(broker, device).login() == 0
    assert script("remove-device", device, "--dir", str(broker.folder)).returncode == 0
    broker.restart()
    assert Client(broker, device).login() == NOT_AUTHORIZED


# --- identities: each attack below worked with the password_file/acl_file configuration ---------


def test_device_cannot_join_central_shared_subscription(broker):
    """In central's $share group, a device would be sent its turn of every device's records, which
    the per-message read check then dropped: lost to central (5 of 10 in the reproduction)."""
    group = f"$share/aicctv-central/{DEFAULT_PREFIX}/+/hourly"
    central = Client(broker, "central").connected()
    central.subscribe(group)
    thief = Client(broker, A).connected()
    codes = thief.subscribe(group, f"$share/{A}/{DEFAULT_PREFIX}/{A}/cmd/#")
    other = Client(broker, B).connected()
    records = [marker() for _ in range(10)]
    for record in records:
        assert other.publish(t(B, "hourly"), record) in ACCEPTED
    wait_until(lambda: len(central.received(t(B, "hourly"))) == len(records), 10, "every record at central")
    assert codes == [NOT_AUTHORIZED, NOT_AUTHORIZED]  # not even its own topics through $share
    for client in (central, thief, other):
        client.close()


def test_two_central_instances_share_the_records(broker):
    """Instances side by side, each as its own user (the client id is the user name)."""
    group = f"$share/aicctv-central/{DEFAULT_PREFIX}/+/hourly"
    instances = [Client(broker, user, client_id="aicctv-central").connected() for user in ("central", CENTRAL_2)]
    for instance in instances:
        assert instance.subscribe(group) == [1]
    device = Client(broker, A).connected()
    records = [marker() for _ in range(10)]
    for record in records:
        assert device.publish(t(A, "hourly"), record) in ACCEPTED

    def delivered() -> list[bytes]:
        return sorted(payload for instance in instances for _, payload, _ in instance.messages)

    wait_until(lambda: delivered() == sorted(records), 10, "every record, once, at one instance or the other")
    assert all(instance.client.is_connected() for instance in instances)
    for client in (*instances, device):
        client.close()


def test_device_cannot_take_over_central_session(broker):
    """A device connecting with central's client id (clean start) would wipe central's
    persistent session and the records queued in it."""
    central = Client(broker, "central", client_id="aicctv-central", session_s=3600).connected()
    central.subscribe(f"{DEFAULT_PREFIX}/+/hourly")
    central.close()
    device = Client(broker, A).connected()
    queued = marker()
    assert device.publish(t(A, "hourly"), queued) in ACCEPTED
    Client(broker, B, client_id="aicctv-central").connected().close()
    back = Client(broker, "central", client_id="aicctv-central", session_s=3600).connected()
    wait_until(lambda: back.received(t(A, "hourly"), queued), 10, "the record queued for central")
    assert back.session_present
    back.close()
    device.close()
    # Leave no persistent session queueing behind for the other tests.
    Client(broker, "central", client_id="aicctv-central").connected().close()


def test_device_cannot_kick_another_device_off(broker):
    """A device connecting with another's client id would disconnect it, and the broker would
    send the victim's last will: a false `offline`."""
    central = Client(broker, "central").connected()
    central.subscribe(t(B, "status"))
    victim = Client(broker, B, client_id=f"aicctv-edge-{B}", will=(t(B, "status"), b"offline")).connected()
    Client(broker, A, client_id=f"aicctv-edge-{B}").connected().close()
    # A takeover would have sent the will before the intruder's CONNACK, so before this.
    assert victim.publish(t(B, "status"), b"online") in ACCEPTED
    wait_until(lambda: (t(B, "status"), b"online", False) in central.messages, 10, "B's status")
    assert [p for name, p, retained in central.messages if not retained] == [b"online"]
    assert victim.client.is_connected()
    victim.close()
    central.close()


# --- aicctv-broker ------------------------------------------------------------------------------


def test_broker_host_keeps_no_plain_text_password(broker):
    """The new password goes to the --out file only (0600), for the device; the broker host's
    folder holds hashes."""
    for user in (A, B, "central", CENTRAL_2, "watch", "web", "central-web"):
        handed_over = broker.handover / f"{user}.password"
        assert handed_over.stat().st_mode & 0o777 == 0o600, user
        secret = handed_over.read_bytes().strip()
        for file in broker.folder.rglob("*"):
            assert not file.is_file() or secret not in file.read_bytes(), (user, file)


def test_script_never_overwrites_a_handover_file(tmp_path):
    out = tmp_path / "shop-9.password"
    out.write_text("not yet handed over\n")
    done = script("add-device", "shop-9", "--dir", str(tmp_path / "broker"), "--out", str(out))
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1, done.stderr
    assert out.read_text() == "not yet handed over\n"


def test_rotate_hands_over_a_new_password(tmp_path):
    folder = tmp_path / "broker"

    def add(*args: str) -> str:
        done = script("add-device", "shop-9", "--dir", str(folder), *args)
        assert done.returncode == 0, done.stderr
        return (folder / "dynamic-security.json").read_text()

    first = add("--out", str(tmp_path / "first"))
    # Without --rotate there is nothing to hand over: the password exists only on the device.
    assert add("--out", str(tmp_path / "again")) == first and not (tmp_path / "again").exists()
    assert add("--rotate", "--out", str(tmp_path / "second")) != first
    assert (tmp_path / "first").read_text() != (tmp_path / "second").read_text()


@pytest.mark.parametrize(
    "bad",
    [
        "a/b",
        "a+b",
        "#",
        "a b",
        "",
        "x" * 65,
        "central",
        "watch",
        "central-2",
        "watch-x",
        "web",
        "web-1",
        ".x",
        "_x",
        "-x",
        "x\n",
    ],
)
def test_script_rejects_a_bad_device_id_with_one_line(broker, bad):
    users = [(broker.folder / name).read_bytes() for name in ("passwd", "dynamic-security.json")]
    done = script("add-device", bad, "--dir", str(broker.folder), "--out", str(broker.handover / "bad"))
    assert done.returncode == 2
    assert done.stdout == "" and len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("aicctv-broker: ")
    assert [(broker.folder / name).read_bytes() for name in ("passwd", "dynamic-security.json")] == users
    assert not (broker.handover / "bad").exists()


def test_script_usage_errors_and_help():
    assert script("--help").returncode == 0 and "add-device" in script("--help").stdout
    for args in (
        [],
        ["frobnicate"],
        ["add-device"],
        ["add-device", "a", "b"],
        ["add-user", "admin"],
        ["add-user", "central/x"],
        ["remove-device", "a", "--out", "f"],
        ["init-ca", "--dir"],
        ["add-device", "a", "--hostname", "h"],
        ["init-ca", "--bogus"],
    ):
        done = script(*args)
        assert done.returncode == 2, args
        assert len(done.stderr.splitlines()) == 1, (args, done.stderr)


def test_rerunning_the_script_changes_no_key_or_password(broker):
    files = ["ca.key", "ca.crt", "server.key", "server.crt", "passwd", "dynamic-security.json"]

    def digests() -> dict[str, str]:
        return {name: hashlib.sha256((broker.folder / name).read_bytes()).hexdigest() for name in files}

    before = digests()
    again = script("init-ca", "--hostname", "127.0.0.1", "--hostname", "localhost", "--dir", str(broker.folder))
    assert again.returncode == 0 and "nothing to do" in again.stdout
    # Another host name does not silently replace the certificate devices already trust.
    other = script("init-ca", "--hostname", "elsewhere.example", "--dir", str(broker.folder))
    assert other.returncode == 0 and "delete" in other.stderr
    unused = broker.handover / "unused"
    assert script("add-device", A, "--dir", str(broker.folder), "--out", str(unused)).returncode == 0
    assert script("add-user", "central", "--dir", str(broker.folder), "--out", str(unused)).returncode == 0
    assert digests() == before and not unused.exists()
    # Secrets (and hashes) are for root, and the broker, only.
    for name in ("ca.key", "passwd", "dynamic-security.json"):
        assert (broker.folder / name).stat().st_mode & 0o077 == 0, name
    # A connected device still works with its (kept) password.
    Client(broker, A).connected().close()


def test_settings_commands_come_from_central_only(broker):
    """cmd/settings (docs/mqtt.md, "Settings"): central publishes it, retained; a device cannot
    publish another device's (nor its own), and answers on its own `settings` topic only."""
    central = Client(broker, "central").connected()
    central.subscribe(t(B, "cmd/settings"), t(A, "settings"))
    device = Client(broker, A).connected()
    forged, answer = marker(), marker()
    for name in (t(B, "cmd/settings"), t(A, "cmd/settings"), t(B, "settings")):
        assert device.publish(name, forged, retain=True) == NOT_AUTHORIZED, name
    assert device.publish(t(A, "settings"), answer, retain=True) in ACCEPTED
    wait_until(lambda: central.received(t(A, "settings"), answer), 10, "A's settings answer")
    command = marker()
    assert central.publish(t(B, "cmd/settings"), command, retain=True) in ACCEPTED
    # B, connecting later, gets the retained command; never A's forgery.
    other = Client(broker, B).connected()
    other.subscribe(f"{DEFAULT_PREFIX}/{B}/cmd/#")
    wait_until(lambda: other.received(t(B, "cmd/settings")), 10, "B's retained settings")
    assert other.received(t(B, "cmd/settings")) == [command]
    assert [m for m in central.messages if m[1] == forged] == []
    # Clear the retained messages for the other tests.
    assert central.publish(t(B, "cmd/settings"), b"", retain=True) in ACCEPTED
    assert device.publish(t(A, "settings"), b"", retain=True) in ACCEPTED
    for client in (device, other, central):
        client.close()


# --- the dashboard's user (aicctv central serve: settings from the Devices page) -----------------


@pytest.mark.parametrize("user", ["web", "central-web"])  # central-web: the name the docs once gave it
def test_web_user_sends_settings_and_reads_answers_only(broker, user):
    """The dashboard may publish settings commands and read the devices' answers; it cannot join
    central's shared subscription, read records or statuses, or forge receipts and resyncs."""
    central = Client(broker, "central").connected()
    central.subscribe(f"$share/aicctv-central/{DEFAULT_PREFIX}/+/hourly", f"{DEFAULT_PREFIX}/+/cmd/#")
    web = Client(broker, user, tls=False).connected()
    codes = web.subscribe(
        f"$share/aicctv-central/{DEFAULT_PREFIX}/+/hourly",
        f"$share/web/{DEFAULT_PREFIX}/+/settings",
        f"{DEFAULT_PREFIX}/#",
        t(A, "hourly"),
        t(A, "status"),
        f"{DEFAULT_PREFIX}/+/settings",
    )
    assert codes == [NOT_AUTHORIZED] * 5 + [1]
    forged = marker()
    for name in (t(A, "cmd/receipt"), t(A, "cmd/resync"), t(A, "hourly"), t(A, "status"), t(A, "settings")):
        assert web.publish(name, forged) == NOT_AUTHORIZED, name
    assert web.publish("homeassistant/sensor/x/config", forged) == NOT_AUTHORIZED
    command = marker()
    assert web.publish(t(A, "cmd/settings"), command) in ACCEPTED
    device = Client(broker, A).connected()
    records, answer = [marker() for _ in range(4)], marker()
    for record in records:
        assert device.publish(t(A, "hourly"), record) in ACCEPTED
    assert device.publish(t(A, "settings"), answer) in ACCEPTED
    wait_until(lambda: web.received(t(A, "settings"), answer), 10, "the device's answer at the dashboard")
    # Every record reached central (none taken by the dashboard), and the dashboard saw none.
    wait_until(lambda: len(central.received(t(A, "hourly"))) == len(records), 10, "every record at central")
    assert central.received(t(A, "cmd/settings")) == [command]
    assert [m for m in central.messages if m[1] == forged] == []
    assert web.received(t(A, "hourly")) == []
    for client in (device, web, central):
        client.close()


def dashboard(broker, tmp_path, user: str, password: str | None = None):
    """A real dashboard (uvicorn) whose settings go to the shipped broker as `user`, over the
    loopback listener as on the central host."""
    from central.config import hash_secret
    from tests.test_settings import Server

    secret = broker.password(user) if password is None else password
    url = f"mqtt://{user}:{secret}@127.0.0.1:{broker.local_port}"
    return Server(str(tmp_path / "central.db"), url, password_hash=hash_secret("owner-pw"))


def post(server, device: str, **form: str) -> tuple[int, str]:
    from tests.test_settings import basic

    headers = {"Authorization": basic("owner", "owner-pw"), "Origin": server.url}
    return server.request("/settings", {"device": device, **form}, headers)


def test_simultaneous_settings_posts_all_reach_the_device(broker, tmp_path):
    """Each POST used to connect as the dashboard's user; the broker makes the user name the
    client id, so simultaneous posts disconnected each other (a 500, a command never sent)."""
    from edge.wire.contract import Settings, SettingsState, decode, encode

    device = Client(broker, A).connected()
    device.subscribe(t(A, "cmd/settings"))

    def answer(_client, _userdata, message) -> None:  # what the device does: apply, then say so
        device.messages.append((message.topic, message.payload, message.retain))
        if message.payload:
            command = decode(Settings, message.payload)
            state = SettingsState(A, command.issued, True, "", False, 40, command.opening_hours)
            device.client.publish(t(A, "settings"), encode(state), qos=1, retain=True)

    device.client.on_message = answer
    posts = 8
    results: list[tuple[int, str]] = []
    with dashboard(broker, tmp_path, "web") as server:
        start = threading.Barrier(posts)

        def one(i: int) -> None:
            start.wait()
            results.append(post(server, A, opening_hours=f"mon-fri 09:00-1{i}:00"))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(posts)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert sorted(status for status, _ in results) == [200] * posts, results
    assert all("applied by the device" in page for _, page in results), results
    sent = sorted(decode(Settings, p).opening_hours for _, p, _ in device.messages if p)
    assert sent == [f"mon-fri 09:00-1{i}:00" for i in range(posts)]
    for name in (t(A, "cmd/settings"), t(A, "settings")):  # no retained messages for the other tests
        Client(broker, "central").connected().publish(name, b"", retain=True)
    device.close()


@pytest.mark.parametrize(
    ("user", "password", "said"),
    [
        ("web", "wrong-password", "no connection to mqtt://web@127.0.0.1"),
        ("watch", None, "the broker refused the command: Not authorized"),
    ],
)
def test_a_settings_post_the_broker_does_not_take_is_a_clear_503(broker, tmp_path, user, password, said):
    with dashboard(broker, tmp_path, user, password) as server:
        status, page = post(server, A, paused="on")
    assert status == 503 and "not sent: " in page and said in page, page

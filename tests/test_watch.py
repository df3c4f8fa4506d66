import io
import re
import threading
from collections.abc import Iterator

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bench.services import free_port
from edge.cli.main import main
from edge.cli.watch import HOME, LiveBoard, watch
from edge.wire.contract import LiveCounts, encode
from edge.wire.mqtt import BrokerURL


def live(device: str, in_view: int = 2, this_hour: int = 17) -> bytes:
    return encode(LiveCounts(device, 1767603600.5, in_view, this_hour))


def board_with(*messages: tuple[str, bytes]) -> LiveBoard:
    board = LiveBoard()
    for topic, payload in messages:
        board.update(topic, payload, now=100.0)
    return board


def test_status_and_live_make_a_row_and_ages_go_stale():
    board = board_with(("aicctv/shop-1/status", b"online"), ("aicctv/shop-1/live", live("shop-1")))
    assert board.cells("shop-1", now=101.5) == ["online", "2", "17", "1.5 s"]
    assert board.cells("shop-1", now=106.0) == ["online", "2", "17", "6.0 s STALE"]
    assert board.line("shop-1", now=101.5) == "shop-1 online in_view=2 this_hour=17 last_live=1.5s"


def test_a_retained_status_alone_shows_the_device_without_counts():
    board = board_with(("aicctv/cam-2/status", b"source-lost"))
    assert board.cells("cam-2", now=100.0) == ["source-lost", "-", "-", "never"]
    # Live counts before any status: shown, status unknown.
    board.update("aicctv/new-3/live", live("new-3"), now=100.0)
    assert board.cells("new-3", now=100.0)[0] == "?"


def test_render_sorts_devices_aligns_columns_and_counts_in_view_only_if_fresh():
    board = board_with(
        ("aicctv/zeta/status", b"offline"),
        ("aicctv/alpha-long-name/status", b"online"),
        ("aicctv/alpha-long-name/live", live("alpha-long-name", in_view=3)),
    )
    board.update("aicctv/zeta/live", live("zeta", in_view=4), now=90.0)  # 10 s old at render time
    lines = board.render(now=100.0).splitlines()
    assert lines[0].split()[:2] == ["device", "status"]
    assert [line.split()[0] for line in lines[1:3]] == ["alpha-long-name", "zeta"]
    assert lines[1].index("online") == lines[2].index("offline") == lines[0].index("status")
    assert "10.0 s STALE" in lines[2]
    assert lines[-1] == "2 devices, 1 online, 3 people in view"


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("aicctv/shop-1/live", b"{not json"),
        ("aicctv/shop-1/live", live("other-device")),  # device id differs from the topic's
        ("aicctv/shop-1/live", live("shop-1").replace(b'"schema":2', b'"schema":9')),
        ("aicctv/shop-1/live", b'{"schema":2,"device":"shop-1"}'),
        ("aicctv/shop-1/status", b"sleeping"),
        ("aicctv/shop-1/status", b""),
        ("aicctv/shop-1/hourly", live("shop-1")),
        ("elsewhere/shop-1/live", live("shop-1")),
        ("aicctv/bad device/live", live("shop-1")),
    ],
)
def test_malformed_payloads_are_counted_never_shown(topic, payload):
    board = LiveBoard()
    assert board.update(topic, payload, now=0.0) is None
    assert board.devices == {} and board.rejections.total == 1
    assert board.rejections.last.startswith(topic) and board.report.startswith(topic)
    assert "malformed payloads rejected: 1 (last: " + topic in board.render(now=0.0)


def publisher(url: str) -> paho.Client:
    broker = BrokerURL.parse(url)
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


@pytest.fixture
def fleet(broker) -> Iterator[str]:
    """Retained statuses of two devices, and live counts from one, repeated with a malformed
    payload until the test ends (live messages are not retained: a watcher sees only those
    published after it subscribed)."""
    client = publisher(broker.url)
    client.publish("aicctv/shop-1/status", b"online", qos=1, retain=True).wait_for_publish(10)
    client.publish("aicctv/cam-2/status", b"source-lost", qos=1, retain=True).wait_for_publish(10)
    stop = threading.Event()

    def publish_live() -> None:
        while not stop.is_set():
            client.publish("aicctv/shop-1/live", live("shop-1"))
            client.publish("aicctv/shop-1/live", b"garbage")
            stop.wait(0.1)

    thread = threading.Thread(target=publish_live)
    thread.start()
    yield broker.url
    stop.set()
    thread.join()
    client.loop_stop()
    client.disconnect()


def test_watch_prints_a_line_per_message_when_piped(capsys, fleet):
    assert main(["watch", "--broker", fleet, "--duration", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    stamp = r"\d\d:\d\d:\d\d "
    assert any(re.fullmatch(stamp + "cam-2 source-lost in_view=- this_hour=- last_live=never", x) for x in lines)
    assert any(re.fullmatch(stamp + r"shop-1 online in_view=2 this_hour=17 last_live=\d+\.\ds", x) for x in lines)
    rejected = [x for x in lines if re.fullmatch(stamp + r"rejected aicctv/shop-1/live \(malformed\): .*", x)]
    assert len(rejected) == 1, "one line a minute per reason, however many arrive"
    assert re.fullmatch(r"2 devices, 1 online, 2 people in view; malformed payloads rejected: \d+ .*", lines[-1])


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_watch_redraws_a_table_in_place_on_a_terminal(fleet):
    screen = Terminal()
    assert watch(BrokerURL.parse(fleet), "aicctv", 1.5, screen) == 0
    frames = screen.getvalue().split(HOME)[1:]
    assert len(frames) >= 2  # redrawn while running, not only once
    last = frames[-1]
    assert "connected" in last and re.search(r"shop-1 +online +2 +17  \d+\.\d s", last)
    assert re.search(r"cam-2 +source-lost +- +-  never", last)


def test_unreachable_broker_fails_with_one_line(capsys):
    assert main(["watch", "--broker", f"mqtt://127.0.0.1:{free_port()}", "--duration", "0.5"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: could not connect to the broker at mqtt://127.0.0.1:")


@pytest.mark.parametrize(
    "args",
    [
        ["--broker", "http://x"],
        ["--broker", "mqtt://x", "--prefix", "a/+"],
        ["--broker", "mqtt://x", "--duration", "nan"],
        ["--broker", "mqtt://x", "--duration", "inf"],
    ],
)
def test_bad_broker_or_prefix_is_a_one_line_usage_error(capsys, args):
    assert main(["watch", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1

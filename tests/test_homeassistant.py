"""Home Assistant MQTT discovery (central/homeassistant.py): the configs' keys as HA documents
them, stable unique ids, availability from the device's status; and on a real broker, the
subscriber publishing them retained, the state, and again after HA's birth message."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bench.services import Listener, wait_until
from central.config import CentralConfig, Place, Places
from central.homeassistant import discovery_configs, node_id, state
from central.localtime import day_hours, today, zone
from central.subscriber import Subscriber
from edge.wire.config import load
from edge.wire.contract import AGE_BANDS, HourlyRecord, LiveCounts, empty_counts, encode, hour_start

REQUIRED = {
    "name",
    "unique_id",
    "state_topic",
    "value_template",
    "unit_of_measurement",
    "availability_topic",
    "payload_available",
    "payload_not_available",
    "device",
}


def record(device: str, hour: str, female_20s: int, male_60s: int, unknown: int = 0) -> HourlyRecord:
    counts = empty_counts()
    counts["female"]["20-29"], counts["male"]["60+"] = female_20s, male_60s
    return HourlyRecord(device, hour, female_20s + male_60s + unknown, counts, 3.0, 100, 1.0, 1, unknown)


def test_node_ids_are_one_per_device():
    """Replacing characters alone maps several ids to one node; so does an id that spells out
    another's replacement and hash: every id keeps a node of its own."""
    ids = ["shop.1", "shop_1", "shop-1", "a.b.c", "a_b.c", "a.b_c", "a_b_c", "Shop.1"]
    ids.append(node_id("shop.1").removeprefix("aicctv_"))  # `shop_1_<hash of shop.1>` as an id
    nodes = [node_id(device) for device in ids]
    assert len(set(nodes)) == len(ids), dict(zip(ids, nodes, strict=True))
    for node in nodes:
        assert re.fullmatch(r"[A-Za-z0-9_-]+", node), node
        assert node_id(ids[nodes.index(node)]) == node, "stable"


def test_discovery_configs_follow_the_documented_conventions():
    configs = discovery_configs("aicctv", "homeassistant", "shop.1", "Shop one")
    # People in view, visitors today, last hour total, by gender (2) and by age band (7).
    assert len(configs) == 3 + 2 + len(AGE_BANDS)
    node = node_id("shop.1")
    assert node.startswith("aicctv_shop_1_")
    for name, config in configs.items():
        _component, node_part, object_id, last = name.split("/")[1:]
        assert name.startswith("homeassistant/sensor/") and last == "config" and node_part == node
        assert set(config) >= REQUIRED, name
        assert config["unique_id"] == f"{node}_{object_id}"
        assert config["availability_topic"] == "aicctv/shop.1/status"
        assert (config["payload_available"], config["payload_not_available"]) == ("online", "offline")
        assert config["device"] == {
            "identifiers": [node],
            "name": "Shop one",
            "manufacturer": "aicctv",
            "model": "aicctv edge camera",
        }
        assert config["value_template"] == f"{{{{ value_json.{object_id} }}}}"
        json.dumps(config)
    in_view = configs[f"homeassistant/sensor/{node}/in_view/config"]
    assert in_view["state_topic"] == "aicctv/shop.1/live"
    # Measurements of now; the last hour's figures describe a past hour and carry no state class.
    classes = {name.split("/")[3]: config.get("state_class") for name, config in configs.items()}
    assert classes.pop("in_view") == classes.pop("visitors_today") == "measurement"
    assert set(classes.values()) == {None}
    assert (
        configs[f"homeassistant/sensor/{node}/last_hour_age_60_plus/config"]["state_topic"] == "aicctv/shop.1/ha/state"
    )
    # One node per device: `.` is replaced, yet `shop.1` and `shop_1` stay two devices in HA.
    assert node_id("shop_1") == "aicctv_shop_1" and node_id("shop-1") == "aicctv_shop-1"
    others = discovery_configs("aicctv", "homeassistant", "shop_1")
    assert not set(others) & set(configs)
    assert not {c["unique_id"] for c in others.values()} & {c["unique_id"] for c in configs.values()}
    # Stable: the same device, prefix and discovery prefix give the same topics and ids.
    again = discovery_configs("aicctv", "homeassistant", "shop.1")
    assert {k: v["unique_id"] for k, v in again.items()} == {k: v["unique_id"] for k, v in configs.items()}
    other = discovery_configs("aicctv", "homeassistant", "shop-2")
    assert not {v["unique_id"] for v in other.values()} & {v["unique_id"] for v in configs.values()}


DAY = [f"2026-01-05T{h:02d}:00:00Z" for h in range(24)]


def test_state_sums_the_day_and_splits_the_last_hour():
    records = [record("a", "2026-01-05T09:00:00Z", 2, 1), record("a", "2026-01-05T10:00:00Z", 1, 3, unknown=1)]
    now = state(records, DAY)
    assert now["visitors_today"] == 8 and now["hour"] == "2026-01-05T10:00:00Z"
    assert (now["last_hour"], now["last_hour_female"], now["last_hour_male"]) == (5, 1, 3)
    assert now["last_hour_age_20_29"] == 1 and now["last_hour_age_60_plus"] == 3 and now["last_hour_age_0_9"] == 0
    # The live count of an hour not stored yet adds to today; of a stored one, not twice.
    live = LiveCounts("a", 1767610800.0 + 60, 2, 4)  # 2026-01-05T11:01Z
    assert hour_start(live.time) == "2026-01-05T11:00:00Z"
    assert state(records, DAY, live)["visitors_today"] == 12
    assert state(records, DAY, LiveCounts("a", 1767607200.0 + 60, 2, 4))["visitors_today"] == 8
    assert state([], DAY)["visitors_today"] == 0
    # Yesterday's live count (a device that stopped mid-hour, a replay of old footage) is not today's.
    assert state(records, DAY, LiveCounts("a", 1767610800.0 - 86400, 2, 17))["visitors_today"] == 8


def test_age_sensors_count_visitors_whose_gender_was_not_sure():
    from dataclasses import replace

    bands = dict.fromkeys(AGE_BANDS, 0) | {"0-9": 2}
    last = replace(record("a", "2026-01-05T10:00:00Z", 1, 1, unknown=3), unknown_bands=bands)
    now = state([last], DAY)
    assert now["last_hour_age_0_9"] == 2 and now["last_hour_age_20_29"] == 1
    assert (now["last_hour_female"], now["last_hour_male"], now["last_hour"]) == (1, 1, 5)


def publish(url: str, name: str, payload: bytes, retain: bool = False) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:6]}")
    client.connect("127.0.0.1", int(url.rsplit(":", 1)[1]))
    client.loop_start()
    client.publish(name, payload, qos=1, retain=retain).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def test_central_publishes_retained_configs_and_again_when_home_assistant_comes_online(broker, tmp_path):
    overrides = {
        "mqtt.broker": broker.url,
        "storage.db": str(tmp_path / "central.db"),
        "homeassistant.enabled": True,
        "mqtt.client_id": "central-ha-test",
    }
    subscriber = Subscriber(load(CentralConfig, overrides=overrides, environ={}))
    thread = threading.Thread(target=subscriber.run, daemon=True)
    thread.start()
    try:
        wait_until(subscriber.subscribed.is_set, 20, "the subscriber")
        now = time.time()
        publish(broker.url, "aicctv/cam-h/status", b"online", retain=True)
        publish(broker.url, "aicctv/cam-h/hourly", encode(record("cam-h", hour_start(now), 2, 1)))
        publish(broker.url, "aicctv/cam-h/live", encode(LiveCounts("cam-h", now, 1, 4)))
        node = node_id("cam-h")
        expected = set(discovery_configs("aicctv", "homeassistant", "cam-h"))
        first = Listener(broker.url, "homeassistant/#").connect()
        wait_until(lambda: expected <= {t for t, _, _ in first.messages}, 20, "the discovery configs")
        first.disconnect()
        # A subscriber arriving later (Home Assistant starting) gets them retained.
        listener = Listener(broker.url, "homeassistant/#").connect()
        wait_until(lambda: expected <= {t for t, _, _ in listener.messages}, 20, "the retained configs")
        assert all(retained for t, _, retained in listener.messages if t in expected)
        config = json.loads(next(p for t, p, _ in listener.messages if t.endswith(f"{node}/in_view/config")))
        assert config["unique_id"] == f"{node}_in_view"
        states = Listener(broker.url, "aicctv/cam-h/ha/state").connect()
        wait_until(lambda: states.messages, 20, "the state")
        wait_until(lambda: json.loads(states.messages[-1][1])["last_hour"] == 3, 20, "today's visitors")
        last = json.loads(states.messages[-1][1])
        assert (last["last_hour"], last["last_hour_female"], last["last_hour_male"]) == (3, 2, 1)
        assert last["visitors_today"] == 3, "the live count of a stored hour is not added again"

        # Home Assistant restarts: its birth message brings every config again.
        listener.messages.clear()
        publish(broker.url, "homeassistant/status", b"online")
        wait_until(lambda: expected <= {t for t, _, _ in listener.messages}, 20, "the configs again")
        assert not any(retained for t, _, retained in listener.messages if t in expected), "live, not the retained"
        listener.disconnect()
        states.disconnect()
    finally:
        subscriber.stop()
        thread.join(20)


def test_visitors_today_is_the_devices_own_local_day(broker, tmp_path):
    """A device with its own time zone ([devices.<id>] timezone) gets "today" in that zone, as on
    the dashboard, not in [display] timezone: 14 hours apart here, so the sums differ."""
    overrides = {
        "mqtt.broker": broker.url,
        "storage.db": str(tmp_path / "central.db"),
        "homeassistant.enabled": True,
        "display.timezone": "UTC",
        "mqtt.client_id": "central-ha-zone-test",
    }
    config = load(CentralConfig, overrides=overrides, environ={})
    tz = "Pacific/Kiritimati"  # UTC+14
    subscriber = Subscriber(config, Places({"cam-k": Place(timezone=tz)}, display=config.display))
    thread = threading.Thread(target=subscriber.run, daemon=True)
    thread.start()

    def expected(now: float) -> int:
        return len(set(hours) & set(day_hours(today(zone(tz), now), zone(tz))))

    try:
        wait_until(subscriber.subscribed.is_set, 20, "the subscriber")
        now = time.time()
        hours = [hour_start(now - k * 3600) for k in range(30)]
        states = Listener(broker.url, "aicctv/cam-k/ha/state").connect()
        for hour in reversed(hours):
            publish(broker.url, "aicctv/cam-k/hourly", encode(record("cam-k", hour, 1, 0)))
        # Both ends of the wait: the local day may turn while the records arrive.
        wait_until(
            lambda: (
                states.messages
                and json.loads(states.messages[-1][1])["visitors_today"] in {expected(now), expected(time.time())}
            ),
            20,
            "visitors today in the device's zone",
        )
        utc_today = len(set(hours) & set(day_hours(today(zone("UTC"), now), zone("UTC"))))
        assert expected(now) != utc_today
        states.disconnect()
    finally:
        subscriber.stop()
        thread.join(20)

import json

import pytest

from edge.wire.contract import (
    MAX_PAYLOAD_BYTES,
    ContractError,
    HourlyRecord,
    LiveCounts,
    ResyncRequest,
    decode,
    empty_counts,
    encode,
    hour_start,
    parse_hour,
    parse_topic,
    topic,
)


def record(**changes) -> HourlyRecord:
    counts = empty_counts()
    counts["female"]["20-29"] = 3
    counts["male"]["60+"] = 1
    base = dict(
        device="shop-1",
        hour="2026-01-05T09:00:00Z",
        visitors=4,
        counts=counts,
        mean_dwell_s=12.5,
        frames=90000,
        coverage=1.0,
        revision=1,
    )
    return HourlyRecord(**{**base, **changes})


def test_topics_round_trip():
    name = topic("aicctv", "shop-1", "hourly")
    assert name == "aicctv/shop-1/hourly"
    assert parse_topic("aicctv", name) == ("shop-1", "hourly")
    assert parse_topic("site/a", "site/a/shop-1/cmd/resync") == ("shop-1", "cmd/resync")


@pytest.mark.parametrize("device", ["", "a/b", "a+b", "#", "with space", "x" * 65])
def test_device_ids_are_single_topic_levels(device):
    with pytest.raises(ContractError, match="device id"):
        topic("aicctv", device, "live")


def test_hours_are_utc_and_aligned():
    assert hour_start(1767603600 + 3599.9) == "2026-01-05T09:00:00Z"
    assert parse_hour("2026-01-05T09:00:00Z") == 1767603600
    with pytest.raises(ContractError, match="does not start an hour"):
        parse_hour("2026-01-05T09:30:00Z")


@pytest.mark.parametrize(
    "payload",
    [
        record(),
        LiveCounts("shop-1", 1767603600.5, 2, 17),
        ResyncRequest("2026-01-05T09:00:00Z", "2026-01-05T12:00:00Z"),
    ],
)
def test_payloads_round_trip(payload):
    assert decode(type(payload), encode(payload), getattr(payload, "device", None)) == payload


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"\xff\xfe", "not JSON"),
        (b" " * (MAX_PAYLOAD_BYTES + 1), "exceeds"),
    ],
)
def test_malformed_payloads_are_rejected(data, reason):
    with pytest.raises(ContractError, match=reason):
        decode(HourlyRecord, data)


def mutated(**changes) -> bytes:
    obj = json.loads(encode(record()))
    obj.update(changes)
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"schema": 2}, "unknown schema version"),
        ({"visitors": -1}, "visitors"),
        ({"visitors": 2}, "more than visitors"),
        ({"coverage": 1.5}, "coverage"),
        ({"frames": "many"}, "frames"),
        ({"hour": "yesterday"}, "hour"),
        ({"extra": 1}, "unexpected"),
        ({"counts": {"female": {}}}, "counts must map"),
    ],
)
def test_invalid_records_are_rejected(changes, reason):
    with pytest.raises(ContractError, match=reason):
        decode(HourlyRecord, mutated(**changes), "shop-1")


def test_device_must_match_the_topic():
    with pytest.raises(ContractError, match="differs from the topic"):
        decode(HourlyRecord, encode(record()), "shop-2")


def test_hours_must_be_zero_padded_so_they_sort_as_text():
    from edge.wire.contract import ContractError, parse_hour

    with pytest.raises(ContractError):
        parse_hour("2026-1-5T9:00:00Z")

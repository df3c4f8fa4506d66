import json
import time

import pytest

from edge.wire.contract import (
    AGE_BANDS,
    MAX_AHEAD_S,
    MAX_DEPTH,
    MAX_NUMBER_CHARS,
    MAX_PAYLOAD_BYTES,
    ContractError,
    HourlyRecord,
    LiveCounts,
    ResyncRequest,
    check_device_id,
    check_prefix,
    decode,
    decode_status,
    empty_counts,
    encode,
    hour_start,
    parse_hour,
    parse_topic,
    topic,
)
from edge.wire.rejections import MAX_DETAIL_CHARS, Rejections


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


def test_the_bands_of_visitors_without_a_gender_travel_only_when_there_are_some():
    bands = dict.fromkeys(AGE_BANDS, 0) | {"0-9": 2}
    with_bands = record(visitors=7, unknown=3, unknown_bands=bands)
    assert decode(HourlyRecord, encode(with_bands), "shop-1") == with_bands
    # Without any, the payload is exactly what a receiver older than the field knows.
    assert "unknown_bands" not in json.loads(encode(record()))
    assert decode(HourlyRecord, encode(record()), "shop-1").unknown_bands is None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"\xff\xfe", "not UTF-8"),
        (b" " * (MAX_PAYLOAD_BYTES + 1), "over"),
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
        ({"schema": 3}, "unknown schema version"),
        ({"visitors": -1}, "visitors"),
        ({"visitors": 2}, "more than visitors"),
        ({"unknown": 1}, "more than visitors"),
        ({"visitors_in": 1}, "go together"),
        ({"visitors_in": 0, "passing": 1}, "visitors_in is the visitors"),
        ({"coverage": 1.5}, "coverage"),
        ({"frames": "many"}, "frames"),
        ({"hour": "yesterday"}, "hour"),
        ({"extra": 1}, "unexpected"),
        ({"counts": {"female": {}}}, "counts must map"),
        ({"unknown_bands": {"0-9": 1}}, "unknown_bands must map"),
        ({"unknown_bands": [1, 2]}, "unknown_bands must map"),
        ({"unknown_bands": dict.fromkeys(AGE_BANDS, 0) | {"0-9": 1}}, "more than unknown"),
        ({"visitors": 5, "unknown": 1, "unknown_bands": dict.fromkeys(AGE_BANDS, 0) | {"0-9": -1}}, "unknown_bands"),
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


def test_ids_and_prefixes_with_a_trailing_newline_are_rejected():
    with pytest.raises(ContractError, match="device id"):
        check_device_id("shop-1\n")
    with pytest.raises(ContractError, match="prefix"):
        check_prefix("aicctv\n")
    with pytest.raises(ContractError, match="device id"):
        parse_topic("aicctv", "aicctv/shop-1\n/live")


@pytest.mark.parametrize(
    ("hour", "message"),
    [
        ("２０２６-01-05T09:00:00Z", "is not"),  # full-width digits: the same hour under another key
        ("2026-01-05T09:00:00Z\n", "is not"),
        ("2026-13-05T09:00:00Z", "is not"),
    ],
)
def test_hours_are_ascii_and_exact(hour, message):
    with pytest.raises(ContractError, match=message):
        parse_hour(hour)


NOW = 1767603600.0  # the receiver's clock in the tests below


@pytest.mark.parametrize(
    ("payload", "ok"),
    [
        (record(hour="2019-12-31T23:00:00Z"), False),
        (record(hour="2020-01-01T00:00:00Z"), True),
        (record(hour="9999-01-05T09:00:00Z"), False),
        (record(hour=hour_start(NOW + MAX_AHEAD_S)), True),
        (record(hour=hour_start(NOW + MAX_AHEAD_S + 3600)), False),
        (LiveCounts("shop-1", NOW + MAX_AHEAD_S, 0, 0), True),
        (LiveCounts("shop-1", NOW + MAX_AHEAD_S + 1, 0, 0), False),  # a device booted with a wrong clock
        (LiveCounts("shop-1", 10.0, 0, 0), False),  # one whose clock was never set
        (ResyncRequest("2026-01-05T09:00:00Z", "2100-01-01T00:00:00Z"), False),
    ],
)
def test_times_must_be_plausible_on_the_receivers_clock(payload, ok):
    data, device = encode(payload), getattr(payload, "device", None)
    if ok:
        assert decode(type(payload), data, device, now=NOW) == payload
    else:
        with pytest.raises(ContractError) as caught:
            decode(type(payload), data, device, now=NOW)
        assert caught.value.reason == "time"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, "malformed"),  # deep enough to parse, still no object
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "nesting"),
        (b'{"a": "' + b"[" * 1000 + b'"}', "schema"),  # brackets in a string are text
        (b'{"a": "\\"' + b"[" * 1000 + b'"}', "schema"),
        (b'{"a": 1' + b"0" * MAX_NUMBER_CHARS + b"}", "number"),
        (b'{"a": 1.' + b"0" * MAX_NUMBER_CHARS + b"}", "number"),
        (b'{"a": NaN}', "number"),
        (b'{"a": -Infinity}', "number"),
        (b'{"a": 1e400}', "number"),
        ('{"a": 1}'.encode("utf-16"), "malformed"),  # json.loads would take UTF-16 too
    ],
)
def test_payloads_are_parsed_within_limits(raw, reason):
    with pytest.raises(ContractError) as caught:
        decode(LiveCounts, raw)
    assert caught.value.reason == reason


@pytest.mark.parametrize("schema", [b"true", b"2.0"])
def test_schema_is_an_integer_not_something_equal_to_it(schema):
    data = encode(LiveCounts("shop-1", NOW, 0, 0)).replace(b'"schema":2', b'"schema":' + schema)
    with pytest.raises(ContractError, match="unknown schema"):
        decode(LiveCounts, data, now=NOW)


def test_non_finite_numbers_are_never_encoded():
    with pytest.raises(ContractError, match="finite"):
        encode(record(mean_dwell_s=float("inf")))


def test_statuses_are_compared_as_bytes():
    assert decode_status(b"online") == "online"
    for data in (b"online\n", "online".encode("utf-16"), b"x" * 100_000):
        with pytest.raises(ContractError, match="status"):
            decode_status(data)


def test_rejections_are_reported_once_per_reason_per_interval():
    clock = [0.0]
    rejections = Rejections(every_s=60, clock=lambda: clock[0])
    assert rejections.add("t/a", "nesting", "too deep") == "t/a (nesting): too deep"
    assert rejections.add("t/b", "nesting", "too deep") is None
    assert rejections.add("t/c", "number", "x" * 1000) == "t/c (number): " + "x" * MAX_DETAIL_CHARS
    clock[0] = 59.9
    assert rejections.add("t/d", "nesting", "too deep") is None
    clock[0] = 60.0
    assert rejections.add("t/e", "nesting", "again") == "t/e (nesting): again (2 more nesting since the last report)"
    assert rejections.by_reason == {"nesting": 4, "number": 1} and rejections.total == 5
    assert rejections.last == "t/e: again"
    long_topic = "aicctv/" + "d" * 20_000 + "/hourly"
    line = rejections.add(long_topic, "topic", "device id too long")
    assert line is not None and len(line) < 3 * MAX_DETAIL_CHARS and "(20014 characters)" in line


@pytest.mark.parametrize(
    "raw",
    [b'"' + b'\\"' * 8000, b'"\\' * 8000, b"[]" * 8000, b'"' * MAX_PAYLOAD_BYTES, b"[" * MAX_PAYLOAD_BYTES],
    ids=["escaped-quotes", "quote-backslash", "bracket-pairs", "quotes", "deep"],
)
def test_a_worst_case_payload_is_rejected_in_linear_time(raw):
    # Each took seconds with a string pattern retried from every quote; now a few milliseconds.
    # The bound leaves a slow, busy machine a hundredfold margin.
    started = time.process_time()
    with pytest.raises(ContractError):
        decode(LiveCounts, raw)
    assert time.process_time() - started < 0.5


def test_a_schema_1_record_from_a_device_not_yet_upgraded_is_read_as_schema_2():
    """Schema 2 added `unknown`, `visitors_in` and `passing`; a v1 record's visitors without an
    estimate become its unknown ones, and it has no entry-line figures."""
    v1 = {k: v for k, v in json.loads(mutated()).items() if k not in ("unknown", "visitors_in", "passing")}
    v1["schema"], v1["visitors"] = 1, v1["visitors"] + 2
    record = decode(HourlyRecord, json.dumps(v1).encode(), "shop-1")
    assert (record.schema, record.unknown, record.visitors_in, record.passing) == (2, 2, None, None)
    assert decode(HourlyRecord, encode(record), "shop-1") == record
    with pytest.raises(ContractError, match="unexpected"):
        decode(HourlyRecord, json.dumps({**v1, "unknown": 0}).encode(), "shop-1")


def test_likeliest_band_needs_one_probability_per_band():
    from edge.wire.contract import AGE_BANDS, likeliest_band

    assert likeliest_band([0.1, 0.0, 0.2, 0.3, 0.15, 0.05, 0.2]) == "30-39"
    with pytest.raises(ValueError, match="expected 7 band probabilities"):
        likeliest_band([1.0] * (len(AGE_BANDS) - 1))

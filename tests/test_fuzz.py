"""Generated garbage against the decoder, a running central subscriber and `aicctv watch`: they
reject it, stay up, and store only what the contract allows.

Budgets are small for CI; `AICCTV_FUZZ_EXAMPLES=1000000` (or any number) raises the decoder's
for a long run, e.g. `AICCTV_FUZZ_EXAMPLES=200000 pytest tests/test_fuzz.py -k decoder`.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, fields

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.services import wait_until
from central.store import open_store
from central.subscriber import Rejected, parse_message
from edge.wire.contract import (
    AGE_BANDS,
    EARLIEST_TIME,
    GENDERS,
    MAX_AHEAD_S,
    SCHEMA_VERSION,
    ContractError,
    HourlyRecord,
    LiveCounts,
    Payload,
    ResyncRequest,
    decode,
    encode,
    hour_start,
    parse_hour,
)
from tests.test_central import Publisher, central_config, counters, running, stored

REASONS = {"oversized", "malformed", "nesting", "number", "schema", "device-mismatch", "time", "invalid"}
DECODER_EXAMPLES = int(os.environ.get("AICCTV_FUZZ_EXAMPLES", "400"))
# No example database: it would be written into the checkout; every run starts afresh.
quick = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
)
# Pieces of JSON and of this contract's fields, joined at random: mostly invalid, sometimes deep.
TOKENS = [*'[]{}",:-0 \n\\', "9" * 40, "1e999", "-1e999", "1.5", "Infinity", "NaN", "true", "null", "\\u0000"]
TOKENS += ['"schema"', '"device"', '"cam-1"', '"hour"', '"2026-01-05T09:00:00Z"', '"\\ud800"', "２", "\xff"]
tokens = st.sampled_from(TOKENS)
soup = st.lists(tokens, max_size=200).map("".join)
nested = st.tuples(st.integers(1, 20_000), st.sampled_from(["[", '{"a":', "[{}", '["\\"', "[1,"])).map(
    lambda n_open: n_open[1] * n_open[0]
)
plausible_time = st.floats(min_value=EARLIEST_TIME, max_value=time.time(), allow_nan=False)
hours = plausible_time.map(hour_start)
counts = st.fixed_dictionaries(
    {g: st.fixed_dictionaries({band: st.integers(0, 3) for band in AGE_BANDS}) for g in GENDERS}
)
hourly_records = st.builds(
    HourlyRecord,
    device=st.just("cam-1"),
    hour=hours,
    visitors=st.integers(50, 2**31 - 1),
    counts=counts,
    mean_dwell_s=st.floats(0, 1e6),
    frames=st.integers(0, 2**31 - 1),
    coverage=st.floats(0, 1),
    revision=st.integers(0, 2**31 - 1),
)
live_counts = st.builds(
    LiveCounts, st.just("cam-1"), plausible_time, st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1)
)
resyncs = st.tuples(hours, hours).map(lambda pair: ResyncRequest(*sorted(pair)))
valid = st.one_of(hourly_records, live_counts, resyncs)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid payload with one field deleted, added, or its value replaced by any JSON value."""
    obj = asdict(draw(valid))
    name = draw(st.sampled_from([*obj, "extra"]))
    if draw(st.booleans()) and name in obj:
        del obj[name]
    else:
        obj[name] = draw(json_values)
    return json.dumps(obj).encode()


garbage = st.one_of(
    st.binary(max_size=300),
    soup.map(str.encode),
    nested.map(str.encode),
    json_values.map(lambda v: json.dumps(v).encode()),
    mutated(),
    valid.map(encode),
)


def check_decode(kind: type[Payload], data: bytes) -> Payload | None:
    """Decode `data`: a payload that survives re-encoding unchanged, or a rejection by one of
    the contract's own rules (not the catch-all, which chains the exception it caught)."""
    try:
        payload = decode(kind, data, "cam-1")
    except ContractError as exc:
        assert exc.reason in REASONS, exc.reason
        assert exc.__cause__ is None, f"not rejected by a rule: {exc}"
        return None
    assert type(payload) is kind and type(payload.schema) is int and payload.schema == SCHEMA_VERSION
    assert decode(kind, encode(payload), "cam-1") == payload
    values = [getattr(payload, f.name) for f in fields(payload)]
    assert all(math.isfinite(v) for v in values if isinstance(v, float))
    for name in ("hour", "since", "until"):
        if hasattr(payload, name):
            assert EARLIEST_TIME <= parse_hour(getattr(payload, name)) <= time.time() + MAX_AHEAD_S
    return payload


@settings(quick, max_examples=DECODER_EXAMPLES)
@given(kind=st.sampled_from([HourlyRecord, LiveCounts, ResyncRequest]), data=garbage)
def test_decoder_returns_a_valid_payload_or_rejects_by_a_rule(kind, data):
    check_decode(kind, data)


@settings(quick, max_examples=50)
@given(payload=valid)
def test_valid_payloads_round_trip(payload):
    assert check_decode(type(payload), encode(payload)) == payload


channels = st.sampled_from(["hourly", "live", "status"])


def accepted(topic: str, data: bytes) -> bool:
    try:
        parse_message("aicctv", topic, data)
    except Rejected:
        return False
    return True


def test_central_stays_up_and_stores_only_valid_payloads(broker, tmp_path):
    db = str(tmp_path / "central.db")
    publisher = Publisher(broker.url)
    sent: list[tuple[str, bytes]] = []
    try:
        with running(central_config(broker.url, db)) as subscriber:

            @settings(quick, max_examples=150)
            @given(channel=channels, data=garbage, qos=st.integers(0, 1))
            def publish(channel: str, data: bytes, qos: int) -> None:
                publisher.send(f"aicctv/cam-1/{channel}", data, qos=qos)
                sent.append((channel, data))

            publish()
            # Every message is accounted for, as stored or rejected, with central still running.
            wait_until(lambda: subscriber.totals.messages == len(sent), what="every message handled")
            assert subscriber.totals.dropped == 0
    finally:
        publisher.close()
    expected = Counter(channel for channel, data in sent if accepted(f"aicctv/cam-1/{channel}", data))
    got = counters(db)
    assert {channel: got.get(f"received.{channel}", 0) for channel in ("hourly", "live", "status")} == {
        channel: expected[channel] for channel in ("hourly", "live", "status")
    }
    for record in stored(db).values():  # each row is exactly what the decoder accepts
        assert check_decode(HourlyRecord, encode(record)) == record
    store = open_store(db)
    try:
        for counts, _ in store.live().values():
            assert check_decode(LiveCounts, encode(counts)) == counts
    finally:
        store.close()


def test_watch_stays_up_and_shows_live_counts_after_garbage(broker):
    command = [sys.executable, "-m", "edge.cli.main", "watch", "--broker", broker.url]
    watcher = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    lines: list[str] = []

    def read() -> None:
        for line in watcher.stdout:
            lines.append(line)

    reader = threading.Thread(target=read)
    reader.start()
    publisher = Publisher(broker.url)
    try:
        # Retained, so it shows once the watcher has subscribed, whenever that is.
        publisher.send("aicctv/probe/status", b"online", retain=True)
        wait_until(lambda: any(" probe online " in line for line in lines), what="the watcher subscribed")

        @settings(quick, max_examples=150)
        @given(channel=channels, data=garbage)
        def publish(channel: str, data: bytes) -> None:
            publisher.send(f"aicctv/cam-1/{channel}", data, qos=0)

        publish()
        good = encode(LiveCounts("probe", round(time.time(), 3), 7, 8))
        publisher.send("aicctv/probe/live", good, qos=0)
        wait_until(lambda: any(" probe online in_view=7 this_hour=8 " in line for line in lines), what="the probe")
        assert watcher.poll() is None
        watcher.send_signal(signal.SIGINT)  # how a watcher ends normally
        assert watcher.wait(30) == 0
    finally:
        watcher.kill()
        reader.join()
        publisher.close()

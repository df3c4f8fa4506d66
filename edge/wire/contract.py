"""The MQTT wire contract between edge devices and the central log: topics and payloads.

This module is the public API described in docs/mqtt.md; the edge daemon and the central
subscriber both import it, so they cannot disagree. Payloads are JSON objects carrying
`"schema": SCHEMA_VERSION`; a receiver rejects (and counts) anything malformed, oversized, of an
unknown schema version, or whose device id differs from the topic's. `decode` is the one way in
for every receiver (central, `aicctv watch`, the edge's resync command): whatever the bytes, it
returns a valid payload or raises ContractError, so no payload can stop a receiving thread.

Topics, under a configurable prefix (default `aicctv`) and one device id per edge:

    <prefix>/<device>/status        retained "online" / "source-lost" / "offline" (the last will)
    <prefix>/<device>/live          LiveCounts, QoS 0, at most ~1 s old
    <prefix>/<device>/hourly        HourlyRecord, QoS 1, one per device-hour (revisions replace)
    <prefix>/<device>/cmd/resync    ResyncRequest from central: republish hours in a range
    <prefix>/<device>/cmd/receipt   Receipt from central: this revision of an hour is stored
    <prefix>/<device>/cmd/settings  Settings from central (the dashboard), retained
    <prefix>/<device>/settings      SettingsState: the device's answer, retained
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

SCHEMA_VERSION = 2
# Version 1 payloads (devices not yet upgraded) are still accepted: a v1 hourly record is read as
# v2 with `unknown` = its visitors without an estimate and no entry-line figures.
ACCEPTED_SCHEMAS = (1, 2)
V1_HOURLY_FIELDS = frozenset(
    ("device", "hour", "visitors", "counts", "mean_dwell_s", "frames", "coverage", "revision", "schema")
)
DEFAULT_PREFIX = "aicctv"
MAX_PAYLOAD_BYTES = 16 * 1024
# Limits a payload must keep before it is parsed at all. The deepest valid payload nests 3 levels
# (HourlyRecord.counts); a deeper one would only make json's recursive parser recurse, up to a
# RecursionError. The longest valid number is a float's repr (24 characters); a long digit string
# costs quadratic time to convert and, past 4300 digits, raises ValueError.
MAX_DEPTH = 8
MAX_NUMBER_CHARS = 32
# Plausible times, checked on receipt against the receiver's own clock: nothing before 2020 (a
# device whose clock was never set) and nothing later than a day ahead (a device booted with a
# wrong clock: its live counts would otherwise win over every correct one that follows).
# Every integer a payload carries fits a 32-bit database column (PostgreSQL INTEGER): a larger
# one, stored, would fail every query of the Grafana view or the whole batch's transaction.
MAX_INT = 2**31 - 1
EARLIEST_TIME = 1577836800.0  # 2020-01-01T00:00:00Z
LATEST_TIME = 4102444800.0  # 2100-01-01T00:00:00Z
MAX_AHEAD_S = 86400.0
GENDERS = ("female", "male")
# Ages are bucketed into decades on the wire; the classifier predicts up to MAX_AGE years.
AGE_BANDS = ("0-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60+")
MAX_AGE = 100


def age_band(age: float) -> str:
    return AGE_BANDS[min(int(age) // 10, len(AGE_BANDS) - 1)]


def likeliest_band(masses: Sequence[float]) -> str:
    """The age band with the most probability among `masses`, one per AGE_BANDS."""
    if len(masses) != len(AGE_BANDS):
        raise ValueError(f"expected {len(AGE_BANDS)} band probabilities, got {len(masses)}")
    return AGE_BANDS[max(range(len(AGE_BANDS)), key=lambda i: masses[i])]


def gender_of(p_female: float) -> str:
    return "female" if p_female >= 0.5 else "male"


def judged_gender(p_female: float, margin: float) -> str | None:
    """The gender, or None ("not sure": counted as unknown) when p(female) is within `margin` of
    0.5."""
    return None if abs(p_female - 0.5) < margin else gender_of(p_female)


# Retained on <prefix>/<device>/status: the daemon is up (online), gone (offline, also the last
# will), or up but without frames from its camera or stream (source-lost).
STATUS_ONLINE, STATUS_OFFLINE, STATUS_SOURCE_LOST = "online", "offline", "source-lost"
STATUSES = (STATUS_ONLINE, STATUS_OFFLINE, STATUS_SOURCE_LOST)
CHANNELS = ("status", "live", "hourly", "cmd/resync", "cmd/receipt")
# Settings from the dashboard (central → device, retained) and the device's answer (retained).
CHANNELS += ("cmd/settings", "settings")
# No MQTT wildcards or separators in ids, so a device id is always exactly one topic level.
# Matched with fullmatch: `$` would also accept a trailing newline.
_DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_PREFIX = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")


class ContractError(ValueError):
    """A topic or payload that breaks the contract; the message says which rule, `reason` says
    which kind of rule, for receivers that count rejections: oversized, malformed, nesting (too
    deep), number (too long or not finite), schema, device-mismatch, time (implausible) or invalid
    (a field's value)."""

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


def check_device_id(device: str) -> str:
    if not isinstance(device, str) or not _DEVICE_ID.fullmatch(device):
        raise ContractError(f"invalid device id {device!r}: use 1-64 of A-Z a-z 0-9 _ . - (no / + # or spaces)")
    return device


def check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise ContractError(f"invalid topic prefix {prefix!r}: use levels of A-Z a-z 0-9 _ . - separated by /")
    return prefix


def topic(prefix: str, device: str, channel: str) -> str:
    if channel not in CHANNELS:
        raise ContractError(f"unknown channel {channel!r}: one of {', '.join(CHANNELS)}")
    return f"{check_prefix(prefix)}/{check_device_id(device)}/{channel}"


def parse_topic(prefix: str, name: str) -> tuple[str, str]:
    """(device id, channel) of a topic under `prefix`."""
    head = check_prefix(prefix) + "/"
    if not name.startswith(head):
        raise ContractError(f"topic {name!r} is not under {prefix!r}")
    device, _, channel = name[len(head) :].partition("/")
    if channel not in CHANNELS:
        raise ContractError(f"topic {name!r}: unknown channel {channel!r}")
    return check_device_id(device), channel


def hour_of(timestamp: float) -> float:
    """Unix time of the start of the UTC hour containing `timestamp` (no leap seconds in Unix time)."""
    return timestamp - timestamp % 3600


def hour_start(timestamp: float) -> str:
    """The UTC hour containing a Unix time, as 'YYYY-MM-DDTHH:00:00Z'."""
    return datetime.fromtimestamp(hour_of(timestamp), UTC).strftime("%Y-%m-%dT%H:00:00Z")


# ASCII digits only: `\d` and strptime also take other scripts' digits, and "２０２６-…" would be
# the same hour as "2026-…" under another key, a second row for one device-hour.
_HOUR = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


def parse_hour(value: str) -> float:
    """Unix time of an hour start written as by `hour_start` (zero-padded, so hours sort as text)."""
    if not isinstance(value, str) or not _HOUR.fullmatch(value):
        raise ContractError(f"hour {value!r} is not 'YYYY-MM-DDTHH:00:00Z'")
    try:
        moment = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except (TypeError, ValueError):
        raise ContractError(f"hour {value!r} is not 'YYYY-MM-DDTHH:00:00Z'") from None
    if moment.minute or moment.second:
        raise ContractError(f"hour {value!r} does not start an hour")
    return moment.timestamp()


def empty_counts() -> dict[str, dict[str, int]]:
    return {gender: dict.fromkeys(AGE_BANDS, 0) for gender in GENDERS}


@dataclass(frozen=True)
class HourlyRecord:
    """One device-hour. A later `revision` of the same (device, hour) replaces an earlier one."""

    device: str
    hour: str
    visitors: int
    counts: dict[str, dict[str, int]]
    mean_dwell_s: float
    frames: int
    coverage: float
    revision: int
    # Visitors seen only too small to judge (`vision.min_classify`): counted, never guessed.
    unknown: int = 0
    # With an entry line: the visitors who crossed it inwards (all of `visitors`), and the people
    # seen who did not (passing by, or leaving). None where the device has no entry line.
    visitors_in: int | None = None
    passing: int | None = None
    # Of `unknown`, the visitors whose age was read but whose gender was not sure, by age band
    # (shared among the bands as `counts` are). None when there are none, as from senders older
    # than the field (optional, see OPTIONAL_FIELDS).
    unknown_bands: dict[str, int] | None = None
    schema: int = SCHEMA_VERSION

    @property
    def without_gender(self) -> dict[str, int]:
        """`unknown_bands` with every band, zeros where the record has none."""
        return self.unknown_bands or dict.fromkeys(AGE_BANDS, 0)

    def in_band(self, band: str) -> int:
        """The visitors in age band `band`, with a gender (`counts`) or without (`unknown_bands`)."""
        return sum(self.counts[g][band] for g in GENDERS) + self.without_gender[band]

    def validate(self) -> HourlyRecord:
        check_device_id(self.device)
        parse_hour(self.hour)
        _check_int(self.visitors, "visitors")
        _check_int(self.frames, "frames")
        _check_int(self.revision, "revision")
        if (
            not isinstance(self.counts, dict)
            or set(self.counts) != set(GENDERS)
            or any(not isinstance(by_band, dict) or set(by_band) != set(AGE_BANDS) for by_band in self.counts.values())
        ):
            raise ContractError(f"counts must map each of {GENDERS} to each age band {AGE_BANDS}")
        for by_band in self.counts.values():
            for n in by_band.values():
                _check_int(n, "counts")
        _check_int(self.unknown, "unknown")
        if sum(sum(by_band.values()) for by_band in self.counts.values()) + self.unknown > self.visitors:
            raise ContractError("counts and unknown add up to more than visitors")
        if self.unknown_bands is not None:
            if not isinstance(self.unknown_bands, dict) or set(self.unknown_bands) != set(AGE_BANDS):
                raise ContractError(f"unknown_bands must map each age band {AGE_BANDS} to a count, or be null")
            for n in self.unknown_bands.values():
                _check_int(n, "unknown_bands")
            if sum(self.unknown_bands.values()) > self.unknown:
                raise ContractError("unknown_bands add up to more than unknown")
        if (self.visitors_in is None) != (self.passing is None):
            raise ContractError("visitors_in and passing go together (both null without an entry line)")
        if self.visitors_in is not None:
            _check_int(self.visitors_in, "visitors_in")
            _check_int(self.passing, "passing")
            if self.visitors_in != self.visitors:
                raise ContractError("with an entry line, visitors_in is the visitors")
        _check_number(self.mean_dwell_s, "mean_dwell_s")
        _check_number(self.coverage, "coverage")
        if self.coverage > 1:
            raise ContractError(f"coverage {self.coverage} is above 1")
        return self


@dataclass(frozen=True)
class LiveCounts:
    device: str
    time: float
    in_view: int
    visitors_this_hour: int
    schema: int = SCHEMA_VERSION

    def validate(self) -> LiveCounts:
        check_device_id(self.device)
        _check_number(self.time, "time")
        _check_int(self.in_view, "in_view")
        _check_int(self.visitors_this_hour, "visitors_this_hour")
        return self


@dataclass(frozen=True)
class ResyncRequest:
    """Central asks a device to republish its hourly records for hours in [since, until]."""

    since: str
    until: str
    schema: int = SCHEMA_VERSION

    def validate(self) -> ResyncRequest:
        if parse_hour(self.since) > parse_hour(self.until):
            raise ContractError(f"resync range {self.since} .. {self.until} is empty")
        return self


@dataclass(frozen=True)
class Receipt:
    """Central has committed this revision of one of the device's hours (or keeps a later one): the
    device's proof of delivery, end to end. It confirms every stored revision up to `revision`."""

    hour: str
    revision: int
    schema: int = SCHEMA_VERSION

    def validate(self) -> Receipt:
        parse_hour(self.hour)
        _check_int(self.revision, "revision")
        return self


Payload = HourlyRecord | LiveCounts | ResyncRequest | Receipt


# Opening hours are free text for the device (central parses them); a bound keeps payloads small.
MAX_TEXT = 200
# The smallest face a device can be set to look for, in pixels: the bounds of its vision.min_face
# setting, declared here so that central checks a dashboard's value by the same numbers.
MIN_FACE_RANGE = (8, 4096)


@dataclass(frozen=True)
class Settings:
    """Central's settings for one device, retained on <prefix>/<device>/cmd/settings: the whole set
    each time, so the latest one alone says what the device should do. `min_face` None: the
    device's own configured vision.min_face. `issued`: when central sent it (the answer names it).
    `paused_until` (optional, see OPTIONAL_FIELDS): the Unix time a pause ends by itself; None: it
    lasts until another command."""

    paused: bool
    min_face: int | None
    opening_hours: str
    issued: float
    schema: int = SCHEMA_VERSION
    paused_until: float | None = None

    def validate(self) -> Settings:
        if not isinstance(self.paused, bool):
            raise ContractError(f"paused must be true or false, got {self.paused!r}")
        if self.min_face is not None:
            _check_int(self.min_face, "min_face")
        _check_text(self.opening_hours, "opening_hours")
        _check_number(self.issued, "issued")
        if self.paused_until is not None:
            _check_number(self.paused_until, "paused_until")
            if not self.paused:
                raise ContractError("paused_until needs paused (a pause's end)")
            if self.paused_until >= LATEST_TIME:
                raise ContractError(f"paused_until {self.paused_until!r} is not before 2100", "time")
            if not self.issued < self.paused_until:
                raise ContractError(f"paused_until {self.paused_until!r} is not after issued")
        return self


@dataclass(frozen=True)
class SettingsState:
    """The device's answer, retained on <prefix>/<device>/settings: the settings it now runs with
    and whether the command `issued` at that time was applied (`error` "") or rejected (why).
    While paused (optional, see OPTIONAL_FIELDS): `paused_since`, when the device stopped counting
    (its clock), and `paused_until`, when it resumes by itself (None: when told to)."""

    device: str
    issued: float
    applied: bool
    error: str
    paused: bool
    min_face: int
    opening_hours: str
    schema: int = SCHEMA_VERSION
    paused_since: float | None = None
    paused_until: float | None = None

    def validate(self) -> SettingsState:
        check_device_id(self.device)
        _check_number(self.issued, "issued")
        if not isinstance(self.applied, bool) or not isinstance(self.paused, bool):
            raise ContractError("applied and paused must be true or false")
        _check_text(self.error, "error", 4 * MAX_TEXT)
        _check_int(self.min_face, "min_face")
        _check_text(self.opening_hours, "opening_hours")
        for name in ("paused_since", "paused_until"):
            if (moment := getattr(self, name)) is not None:
                _check_number(moment, name)
                if not self.paused:
                    raise ContractError(f"{name} needs paused")
                # Past 2100 a time is a device's mistake, and past 9999 no page could show it.
                if moment >= LATEST_TIME:
                    raise ContractError(f"{name} {moment!r} is after 2099", "time")
        return self


# Fields added to a payload after its schema version was released, with the value that means
# "absent". `decode` takes a payload without them (from an older sender) as that value, and
# `encode` leaves them out when they have it, so an older receiver still gets exactly the payload
# it knows; a receiver older than a field rejects a payload that uses it, naming the field.
OPTIONAL_FIELDS: dict[type, dict[str, Any]] = {
    HourlyRecord: {"unknown_bands": None},
    Settings: {"paused_until": None},
    SettingsState: {"paused_since": None, "paused_until": None},
}


def _check_text(value: Any, name: str, limit: int = MAX_TEXT) -> None:
    if not isinstance(value, str) or len(value) > limit:
        raise ContractError(f"{name} must be text of at most {limit} characters")


def _check_int(value: Any, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_INT:
        raise ContractError(f"{name} must be an integer from 0 to {MAX_INT}, got {value!r}")


def _check_number(value: Any, name: str) -> None:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or (isinstance(value, float) and not math.isfinite(value))
        or value < 0
    ):
        raise ContractError(f"{name} must be a finite non-negative number, got {value!r}")


def encode(payload: Payload | Settings | SettingsState) -> bytes:
    obj = asdict(payload.validate())
    for name, absent in OPTIONAL_FIELDS.get(type(payload), {}).items():
        if obj[name] == absent:
            del obj[name]
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def clipped(data: bytes) -> bytes:
    """As much of a received payload as `decode` needs to judge it: one byte past the limit is
    rejected as oversized all the same, so a receiver that queues payloads keeps no more."""
    return data[: MAX_PAYLOAD_BYTES + 1]


_STATUS_BYTES = {status.encode() for status in STATUSES}


def decode_status(data: bytes) -> str:
    """The plain-text payload of a status topic."""
    # Compared as bytes: a payload of any size or encoding is rejected without decoding it.
    if data not in _STATUS_BYTES:
        raise ContractError(f"status {data[:40]!r} is not one of {', '.join(STATUSES)}")
    return data.decode()


# A JSON string (escapes included), and what is left between strings that is not a bracket. An
# unterminated string runs to the end: json fails there anyway, and a pattern that could fail
# would be retried from every quote inside it, quadratic time in the payload's size.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^][{}]+")


def _too_deep(text: str) -> bool:
    """Whether arrays and objects nest deeper than MAX_DEPTH, counted without recursing. Brackets
    inside strings do not count; where this tokenizer and json's disagree, json fails on that
    string before it could nest any further."""
    depth = 0
    for bracket in _NOT_BRACKET.sub("", _JSON_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > MAX_DEPTH:
            return True
    return False


def _number_text(text: str) -> str:
    if len(text) > MAX_NUMBER_CHARS:
        raise ContractError(f"number of {len(text)} characters (at most {MAX_NUMBER_CHARS})", "number")
    return text


def _parse_float(text: str) -> float:
    value = float(_number_text(text))
    if not math.isfinite(value):  # 1e999 overflows to inf
        raise ContractError(f"number {text} is not finite", "number")
    return value


def _reject_constant(text: str) -> float:
    raise ContractError(f"{text} is not a JSON number", "number")


def _plausible(moment: float, name: str, now: float) -> None:
    if not (EARLIEST_TIME <= moment < LATEST_TIME and moment <= now + MAX_AHEAD_S):
        raise ContractError(
            f"{name} {moment!r} is before 2020, after 2099 or more than {MAX_AHEAD_S:.0f} s ahead of this receiver",
            "time",
        )


def _check_times(payload: Payload, now: float) -> None:
    if isinstance(payload, Settings | SettingsState):
        _plausible(payload.issued, "issued", now)
        return
    if isinstance(payload, HourlyRecord | Receipt):
        _plausible(parse_hour(payload.hour), "hour", now)
    elif isinstance(payload, LiveCounts):
        _plausible(payload.time, "time", now)
    else:
        _plausible(parse_hour(payload.since), "since", now)
        _plausible(parse_hour(payload.until), "until", now)


def _from_v1(kind: type[Payload], obj: dict) -> dict:
    """A schema 1 payload as its schema 2 equivalent (the checks that follow see the result)."""
    upgraded = {**obj, "schema": SCHEMA_VERSION}
    if kind is not HourlyRecord:
        return upgraded
    if set(obj) != V1_HOURLY_FIELDS:
        return obj  # left for the field check to reject by name
    counts = obj["counts"]
    classified = sum(n for by_band in counts.values() for n in by_band.values()) if isinstance(counts, dict) else 0
    visitors = obj["visitors"]
    unknown = visitors - classified if isinstance(visitors, int) and isinstance(classified, int) else 0
    return {**upgraded, "unknown": unknown, "visitors_in": None, "passing": None}


def decode(kind: type[Payload], data: bytes, device: str | None = None, now: float | None = None) -> Payload:
    """Parse and validate a payload of `kind`; `device` is the id in the topic it came on, `now`
    the receiver's clock (default: time.time()) that its times must be plausible against. Raises
    ContractError and nothing else, whatever `data` holds."""
    if len(data) > MAX_PAYLOAD_BYTES:
        raise ContractError(f"payload of over {MAX_PAYLOAD_BYTES} bytes", "oversized")
    try:
        return _decode(kind, data, device, time.time() if now is None else now)
    except ContractError:
        raise
    except Exception as exc:
        # The limits above should leave nothing else; should a payload still find a way, it is
        # rejected, never allowed to end the receiving thread. Chained, unlike expected
        # rejections, so the fuzz tests tell the two apart.
        raise ContractError(f"payload broke the decoder: {type(exc).__name__}: {exc}", "invalid") from exc


def _decode(kind: type[Payload], data: bytes, device: str | None, now: float) -> Payload:
    try:
        # UTF-8 only: json.loads(bytes) would also guess UTF-16 and UTF-32.
        text = data.decode()
    except UnicodeDecodeError as exc:
        raise ContractError(f"payload is not UTF-8: {exc}", "malformed") from None
    if _too_deep(text):
        raise ContractError(f"payload nests arrays or objects deeper than {MAX_DEPTH}", "nesting")
    try:
        obj = json.loads(
            text, parse_int=lambda t: int(_number_text(t)), parse_float=_parse_float, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as exc:
        raise ContractError(f"payload is not JSON: {exc}", "malformed") from None
    if not isinstance(obj, dict):
        raise ContractError("payload is not a JSON object", "malformed")
    schema = obj.get("schema")
    # `type(...) is int`: true and 1.0 equal 1 in Python but are other JSON, stored as they came.
    if type(schema) is not int or schema not in ACCEPTED_SCHEMAS:
        raise ContractError(f"unknown schema version {schema!r} (this receiver knows {ACCEPTED_SCHEMAS})", "schema")
    if schema == 1:
        obj = _from_v1(kind, obj)
    obj = {**OPTIONAL_FIELDS.get(kind, {}), **obj}
    names = {f.name for f in fields(kind)}
    if set(obj) != names:
        missing, extra = sorted(names - set(obj)), sorted(set(obj) - names)
        raise ContractError(f"{kind.__name__} fields wrong: missing {missing}, unexpected {extra}")
    payload = kind(**obj).validate()
    if device is not None and getattr(payload, "device", device) != device:
        raise ContractError(f"device id {payload.device!r} differs from the topic's {device!r}", "device-mismatch")
    _check_times(payload, now)
    return payload

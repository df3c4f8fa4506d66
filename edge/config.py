"""Service configuration: one TOML file, validated at start, with documented defaults.

Precedence, lowest first: the defaults in the dataclasses below, the TOML file, environment
variables `AICCTV_<SECTION>_<KEY>` (for systemd units: `AICCTV_MQTT_BROKER=mqtt://…`), then
command-line flags. Every problem is reported as one `ConfigError` line naming the setting,
where it came from, and what is allowed.

    [device]  id = "shop-1"
    [source]  spec = "/dev/video0"
    [mqtt]    broker = "mqtt://broker.local:1883"
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import socket
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.contract import DEFAULT_PREFIX, ContractError, check_device_id, check_prefix
from edge.mqtt import BrokerURL

ENV_PREFIX = "AICCTV_"


class ConfigError(ValueError):
    """A setting that is missing, of the wrong type or out of range; the message says which."""


# One validation rule of a config: raises ConfigError naming the setting and what is allowed.
Check = typing.Callable[[], object]


@dataclass(frozen=True)
class DeviceSection:
    id: str = field(default_factory=lambda: socket.gethostname().split(".")[0] or "edge")


@dataclass(frozen=True)
class SourceSection:
    spec: str = "0"
    reconnect_max_s: float = 60.0


@dataclass(frozen=True)
class VisionSection:
    detector: str = "full"
    score: float | None = None
    min_face: int = 40
    tiles: bool = True
    threads: int = 1
    flip: bool = True


@dataclass(frozen=True)
class MqttLinkSection:
    """What every MQTT client of ours (edge daemon, central subscriber) needs to connect.
    Credentials: in the broker URL, or `username` plus `password_file` (a systemd credential,
    so the password is in no config file and no process listing)."""

    broker: str = "mqtt://localhost:1883"
    prefix: str = DEFAULT_PREFIX
    ca_file: str | None = None
    username: str | None = None
    password_file: str | None = None
    keepalive_s: int = 30
    # 4 (MQTT 3.1.1) for brokers without MQTT 5, e.g. the demo's embedded amqtt broker.
    version: int = 5

    def checks(self) -> list[Check]:
        return [
            self._check_broker,
            lambda: check_contract(check_prefix, self.prefix, "mqtt.prefix"),
            lambda: check_within(self.keepalive_s, 5, 3600, "mqtt.keepalive_s"),
            lambda: check_choice(self.version, (4, 5), "mqtt.version"),
            lambda: check_file(self.ca_file, "mqtt.ca_file"),
            lambda: check_file(self.password_file, "mqtt.password_file"),
            self._check_credentials,
        ]

    def _check_broker(self) -> None:
        try:
            BrokerURL.parse(self.broker)
        except ValueError as exc:
            raise ConfigError(f"mqtt.broker: {exc}") from None

    def _check_credentials(self) -> None:
        if self.password_file and not self.username:
            raise ConfigError("mqtt.password_file is set without mqtt.username: set both, or neither")

    def broker_url(self) -> BrokerURL:
        """The broker, with the credentials from `username` and `password_file` if set."""
        url = BrokerURL.parse(self.broker)
        if self.username:
            password = Path(self.password_file).read_text().strip() if self.password_file else None
            url = dataclasses.replace(url, username=self.username, password=password)
        return url


@dataclass(frozen=True)
class MqttSection(MqttLinkSection):
    live_interval_s: float = 1.0
    flush_timeout_s: float = 30.0


@dataclass(frozen=True)
class StorageSection:
    db: str = "aicctv-edge.db"
    # Visits and events older than this are deleted (hourly records are kept: a few KB a day),
    # so a device left alone for years does not fill its SD card.
    retention_days: int = 365


@dataclass(frozen=True)
class HourlySection:
    grace_s: float = 60.0
    max_gap_s: float = 2.0


@dataclass(frozen=True)
class EdgeConfig:
    device: DeviceSection = field(default_factory=DeviceSection)
    source: SourceSection = field(default_factory=SourceSection)
    vision: VisionSection = field(default_factory=VisionSection)
    mqtt: MqttSection = field(default_factory=MqttSection)
    storage: StorageSection = field(default_factory=StorageSection)
    hourly: HourlySection = field(default_factory=HourlySection)

    def checks(self) -> list[Check]:
        v, m, h = self.vision, self.mqtt, self.hourly
        return [
            lambda: check_contract(check_device_id, self.device.id, "device.id"),
            *m.checks(),
            lambda: check_choice(v.detector, ("full", "short"), "vision.detector"),
            lambda: v.score is None or check_within(v.score, 0.0, 1.0, "vision.score"),
            lambda: check_within(v.min_face, 8, 4096, "vision.min_face"),
            lambda: check_within(v.threads, 1, 64, "vision.threads"),
            lambda: check_within(self.source.reconnect_max_s, 0.1, 3600, "source.reconnect_max_s"),
            lambda: check_within(m.live_interval_s, 0.1, 3600, "mqtt.live_interval_s"),
            lambda: check_within(m.flush_timeout_s, 0.0, 86400, "mqtt.flush_timeout_s"),
            lambda: check_within(h.grace_s, 0.0, 3600, "hourly.grace_s"),
            lambda: check_within(h.max_gap_s, 0.01, 3600, "hourly.max_gap_s"),
            lambda: check_within(self.storage.retention_days, 1, 36500, "storage.retention_days"),
        ]


def check_contract(check: typing.Callable[[str], str], value: str, name: str) -> None:
    try:
        check(value)
    except ContractError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def check_choice(value: object, allowed: tuple, name: str) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} = {value!r}: must be one of {', '.join(map(str, allowed))}")


def check_file(path: str | None, name: str) -> None:
    if path is not None and not Path(path).is_file():
        raise ConfigError(f"{name} = {path!r}: no such file (give an existing, readable file)")


def check_within(value: float, low: float, high: float, name: str) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{name} = {value!r}: must be between {low:g} and {high:g}")


_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, kind: Any, name: str, origin: str) -> Any:
    """`value` as type `kind` (str, int, float, bool, or X | None), from TOML or a string."""
    optional = isinstance(kind, types.UnionType) and type(None) in typing.get_args(kind)
    if optional:
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
            return None
    if isinstance(value, str) and kind is not str:
        text = value.strip().lower()
        if kind is bool:
            if text not in _BOOLEANS:
                _bad(value, kind, name, origin)
            return _BOOLEANS[text]
        try:
            return kind(text)
        except ValueError:
            _bad(value, kind, name, origin)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        _bad(value, kind, name, origin)
    return value


def _bad(value: Any, kind: type, name: str, origin: str) -> typing.NoReturn:
    raise ConfigError(f"{name} = {value!r} ({origin}): expected {kind.__name__}")


def _unknown(name: str, known: typing.Iterable[str], what: str, origin: str) -> typing.NoReturn:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(known))}"
    raise ConfigError(f"unknown {what} {name!r} ({origin}){hint}")


T = typing.TypeVar("T")


def load(
    cls: type[T],
    path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    problems: list[str] | None = None,
) -> T:
    """Build `cls` (a dataclass of section dataclasses) from defaults, file, environment and
    `overrides` ({"section.key": value}, e.g. command-line flags; None values are skipped).
    Raises the first ConfigError, or, given a `problems` list, collects every one there (a bad
    value is then left at its default) and returns what could be built."""
    settings: dict[str, dict[str, Any]] = {}
    sections = _field_types(cls)

    def report(error: ConfigError) -> None:
        if problems is None:
            raise error
        problems.append(str(error))

    def put(section: str, key: str, value: Any, origin: str) -> None:
        try:
            if section not in sections:
                _unknown(section, sections, "section", origin)
            keys = _field_types(sections[section])
            if key not in keys:
                _unknown(key, keys, f"setting in [{section}]", origin)
            settings.setdefault(section, {})[key] = _coerce(value, keys[key], f"{section}.{key}", origin)
        except ConfigError as error:
            report(error)

    if path is not None:
        for section, table in _read_toml(Path(path), report).items():
            if not isinstance(table, dict):
                report(ConfigError(f"{path}: {section!r} must be a [section] table of settings"))
                continue
            for key, value in table.items():
                put(section, key, value, str(path))
    env = os.environ if environ is None else environ
    for section, section_cls in sections.items():
        for key in _field_types(section_cls):
            name = f"{ENV_PREFIX}{section.upper()}_{key.upper()}"
            if name in env:
                put(section, key, env[name], f"environment {name}")
    for dotted, value in (overrides or {}).items():
        if value is not None:
            section, key = dotted.split(".", 1)
            put(section, key, value, "command line")
    built = cls(**{name: kind(**settings.get(name, {})) for name, kind in sections.items()})
    for check in getattr(built, "checks", list)():
        try:
            check()
        except ConfigError as error:
            report(error)
    return built


def _read_toml(path: Path, report: typing.Callable[[ConfigError], None]) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        report(ConfigError(f"config file {path} not found: pass an existing --config, or none for defaults"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        report(ConfigError(f"config file {path} is not valid TOML: {exc}"))
    return {}


def without_password(url: str) -> str:
    """A database or broker URL without its password, for logs and messages (they end up in
    journald and bug reports)."""
    head, at, tail = url.rpartition("@")
    if not at or "://" not in head:
        return url
    scheme, _, credentials = head.partition("://")
    return f"{scheme}://{credentials.split(':', 1)[0]}@{tail}"


def render(config: Any) -> str:
    """The effective configuration as TOML (None values are left out: TOML has no null)."""
    lines: list[str] = []
    for section in dataclasses.fields(config):
        lines.append(f"[{section.name}]")
        for key, value in dataclasses.asdict(getattr(config, section.name)).items():
            if value is None:
                lines.append(f"# {key} = (unset)")
            elif isinstance(value, bool):
                lines.append(f"{key} = {str(value).lower()}")
            elif isinstance(value, str):
                lines.append(f'{key} = "{value}"')
            else:
                lines.append(f"{key} = {value}")
        lines.append("")
    return "\n".join(lines)

"""Configuration of the central subscriber, loaded like the edge's by `edge.wire.config.load`
(defaults, TOML file, AICCTV_<SECTION>_<KEY> environment, flags), documented with every default
in `deploy/central.toml` (regenerate with `aicctv config defaults central`). Example file:

    [mqtt]
    broker = "mqtt://broker.local:1883"
    [storage]
    db = "postgresql://central@db.local/aicctv"
    [display]
    timezone = "Europe/Berlin"
    [devices.shop-1]                    # per device (or [sites.NAME], for a group of devices)
    site = "berlin"
    opening_hours = "mon-fri 09:00-18:00, sat 10:00-14:00"

`[devices.<id>]` and `[sites.<name>]` tables are read by `read_places` (the settings loader knows
only `[section] key = value`, and skips them as CentralConfig's `extra_tables`); `load_central`
reads both.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import tomllib
from base64 import b64decode, b64encode
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from central.localtime import OpeningHours, check_opening_hours, check_timezone, zone
from edge.wire.config import ConfigError, MqttLinkSection, check_contract, load, setting
from edge.wire.contract import ContractError, check_device_id, check_prefix
from edge.wire.listen import split_listen

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
# A shared-subscription group name is one topic level without wildcards.
_GROUP = re.compile(r"[A-Za-z0-9_.-]{0,64}")

HEADER = """
aicctv central subscriber: `aicctv central run --config /etc/aicctv/central.toml`.
Every value below is the default; delete what you do not change. Each setting can also be
given as an environment variable AICCTV_<SECTION>_<KEY> (e.g. AICCTV_STORAGE_DB), or on the
command line (--set section.key=value, or the flag named beside it). The systemd unit passes
the broker password as a credential. Check a file: `aicctv config check FILE`.
Per device or site (a group of devices), add tables: [devices.<id>] with timezone, opening_hours,
site and name, and [sites.<name>] with timezone, opening_hours and name; unset keys fall back to
the site's, then to [display] (see docs/central.md, "The dashboard").
Generated from the settings' declarations by `aicctv config defaults central`: edit those, not this.
"""


def _check_client_id(value: str, name: str) -> None:
    if not 1 <= len(value) <= 128 or any(c in value for c in "/+# "):
        raise ConfigError(f"{name} = {value!r}: use 1-128 characters without / + # or spaces")


def _check_shared_group(value: str, name: str) -> None:
    if not _GROUP.fullmatch(value):
        raise ConfigError(f"{name} = {value!r}: use up to 64 of A-Z a-z 0-9 _ . - (or empty)")


_ANY_URL = re.compile(r"^\s*[A-Za-z][A-Za-z0-9+.-]*://")
_LIBPQ_KEYWORDS = re.compile(r"^\s*(host|hostaddr|port|dbname|user|password|passfile|service|sslmode)\s*=")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def check_db(value: str, name: str) -> None:
    """A SQLite path or a postgresql:// URL. Anything else that names a server would become a
    SQLite file named after it, password and all; a URL the driver cannot parse would be quoted,
    password and all, in its error. No message here quotes the value."""
    if not value:
        raise ConfigError(f"{name} is empty: give a SQLite file or a postgresql:// URL")
    if value.startswith(POSTGRES_SCHEMES):
        if any(c.isspace() for c in value) or _BAD_ESCAPE.search(value):
            raise ConfigError(
                f"{name}: the postgresql:// URL holds white space or a % not followed by two hex digits: "
                "percent-encode its password (a space is %20, % is %25)"
            )
        return
    if _ANY_URL.match(value):
        raise ConfigError(f"{name}: only postgresql:// (or postgres://) URLs are logs, in lower case; else a file path")
    if _LIBPQ_KEYWORDS.match(value):
        raise ConfigError(f"{name}: give PostgreSQL as a postgresql://user@host/db URL, not libpq keywords")


@dataclass(frozen=True)
class CentralMqttSection(MqttLinkSection):
    client_id: str = setting(
        "aicctv-central",
        check=_check_client_id,
        flag="--client-id",
        metavar="ID",
        help="MQTT client id: the broker keeps one session per id, so each instance side by side needs its own",
    )
    shared_group: str = setting(
        "aicctv-central",
        check=_check_shared_group,
        help="instances with the same group share the hourly and live messages ($share/<group>/…); "
        "empty: every instance receives everything",
    )
    session_expiry_s: int = setting(
        7 * 24 * 3600, ge=0, le=2**32 - 1, help="how long the broker keeps this subscriber's queue while it is away"
    )


@dataclass(frozen=True)
class CentralStorageSection:
    db: str = setting(
        "aicctv-central.db",
        check=check_db,
        flag="--db",
        metavar="DB",
        help="the central log: a SQLite file, or postgresql://user@host/database",
    )
    batch_max: int = setting(1000, ge=1, le=100_000, help="messages written in one transaction at most")
    batch_interval_s: float = setting(0.1, ge=0.0, le=10.0, help="a batch is written at least this often, seconds")


@dataclass(frozen=True)
class ResyncSection:
    check_interval_s: float = setting(60.0, ge=0.01, le=86400, help="how often to look for missing hours, seconds")
    min_interval_s: float = setting(
        300.0, ge=0.0, le=7 * 86400, help="the same hours are asked of a device again after this many seconds at most"
    )
    # More than an edge's hourly.grace_s plus its delivery retries.
    overdue_after_s: float = setting(
        600.0,
        ge=0.0,
        le=7 * 86400,
        help="a running device's next hourly record is lost when this late past its due time (an hour after the last)",
    )


@dataclass(frozen=True)
class DisplaySection:
    timezone: str = setting(
        "UTC",
        check=check_timezone,
        help="IANA time zone of days, hours and exports for devices and sites that set none "
        "([devices.<id>] or [sites.<name>] timezone), e.g. Asia/Seoul",
    )
    opening_hours: str = setting(
        "",
        check=check_opening_hours,
        help='when the premises are open, e.g. "mon-fri 09:00-18:00, sat 10:00-14:00" (local time; '
        "the dashboard greys out closed hours); empty: always open",
    )


def _check_listen(value: str, name: str) -> None:
    try:
        split_listen(value)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _check_hash(value: str, name: str) -> None:
    if not _HASH.fullmatch(value):
        raise ConfigError(f"{name}: not a hash made by `aicctv central hash-password` (scrypt$…)")


_HOST = re.compile(r"[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?)*|\[[0-9a-f:.]+\]")


def _host_name(text: str) -> str:
    return text.strip().lower().rstrip(".")


def _check_hosts(value: str, name: str) -> None:
    for host in value.split(","):
        if host.strip() and not _HOST.fullmatch(_host_name(host)):
            raise ConfigError(f"{name}: {host.strip()!r} is not a host name, e.g. dashboard.example.com (no port)")


@dataclass(frozen=True)
class WebSection:
    listen: str = setting(
        "127.0.0.1:8080",
        check=_check_listen,
        flag="--listen",
        metavar="HOST:PORT",
        help="where `aicctv central serve` listens; any address but localhost needs password_hash or token_hash",
    )
    username: str = setting("owner", help="the user name of HTTP basic authentication (with password_hash)")
    password_hash: str | None = setting(
        None,
        check=_check_hash,
        example="scrypt$16384$8$1$…",
        help="the dashboard's password, hashed: `aicctv central hash-password < password.txt`",
    )
    token_hash: str | None = setting(
        None,
        check=_check_hash,
        example="scrypt$16384$8$1$…",
        help="a bearer token for scripts (Authorization: Bearer …), hashed the same way",
    )
    refresh_s: float = setting(5.0, ge=1.0, le=600.0, help="how often the Now page refreshes its live counts, seconds")
    hosts: str = setting(
        "",
        check=_check_hosts,
        example="dashboard.example.com, aicctv.lan",
        help="names the dashboard is reached by, comma-separated, besides localhost and the address it is "
        "reached at; a request naming another Host is refused (421), so a page elsewhere cannot read the "
        "dashboard by rebinding its own name to this machine (DNS rebinding)",
    )

    @property
    def host_names(self) -> frozenset[str]:
        """`hosts` as lower-case names without a trailing dot."""
        return frozenset(_host_name(name) for name in self.hosts.split(",") if name.strip())


def _check_discovery_prefix(value: str, name: str) -> None:
    check_contract(check_prefix, value, name)


@dataclass(frozen=True)
class HomeAssistantSection:
    enabled: bool = setting(
        False,
        help="publish Home Assistant MQTT discovery configs and states for every device (docs/central.md)",
    )
    discovery_prefix: str = setting(
        "homeassistant",
        check=_check_discovery_prefix,
        help="Home Assistant's discovery prefix (its MQTT integration's setting; the broker's central role "
        "may publish under homeassistant/ only)",
    )


@dataclass(frozen=True)
class CentralConfig:
    mqtt: CentralMqttSection = field(default_factory=CentralMqttSection)
    storage: CentralStorageSection = field(default_factory=CentralStorageSection)
    resync: ResyncSection = field(default_factory=ResyncSection)
    display: DisplaySection = field(default_factory=DisplaySection)
    web: WebSection = field(default_factory=WebSection)
    homeassistant: HomeAssistantSection = field(default_factory=HomeAssistantSection)
    # Tables of the file that are not settings sections: `load` skips them, `read_places` reads them.
    extra_tables: ClassVar[tuple[str, ...]] = ("devices", "sites")

    @property
    def shared(self) -> bool:
        """Whether hourly and live messages come through a shared subscription (MQTT 5 only)."""
        return self.mqtt.version == 5 and bool(self.mqtt.shared_group)


# ---- the dashboard's listen address and credentials -----------------------------------------------

_HASH = re.compile(r"scrypt\$[0-9]{1,7}\$[0-9]{1,3}\$[0-9]{1,3}\$[A-Za-z0-9+/=]{8,}\$[A-Za-z0-9+/=]{8,}")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    """'scrypt$N$r$p$salt$key' (base64) of a password or token, for web.password_hash / token_hash."""
    salt = os.urandom(16) if salt is None else salt
    key = hashlib.scrypt(secret.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=2**26, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64encode(salt).decode()}${b64encode(key).decode()}"


def verify_secret(secret: str, hashed: str) -> bool:
    """Whether `secret` matches a hash from `hash_secret` (compared in constant time)."""
    try:
        _, n, r, p, salt, key = hashed.split("$")
        expected = b64decode(key)
        got = hashlib.scrypt(
            secret.encode(), salt=b64decode(salt), n=int(n), r=int(r), p=int(p), maxmem=2**27, dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


# ---- per device and per site: [devices.<id>] and [sites.<name>] -----------------------------------

PLACE_TABLES: tuple[str, ...] = CentralConfig.extra_tables  # ("devices", "sites")
_SITE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Place:
    """What a device's or site's table sets; None: inherited (device → its site → [display])."""

    timezone: str | None = None
    opening_hours: str | None = None
    site: str | None = None  # devices only
    name: str | None = None  # a label for the dashboard


@dataclass(frozen=True)
class Local:
    """The effective local settings of a device or site."""

    timezone: str
    opening_hours: OpeningHours

    @property
    def tz(self) -> Any:
        return zone(self.timezone)


@dataclass(frozen=True)
class Places:
    devices: Mapping[str, Place] = field(default_factory=dict)
    sites: Mapping[str, Place] = field(default_factory=dict)
    display: DisplaySection = field(default_factory=DisplaySection)

    def site_of(self, device: str) -> str | None:
        place = self.devices.get(device)
        return place.site if place else None

    def members(self, site: str) -> list[str]:
        return sorted(d for d, p in self.devices.items() if p.site == site)

    def label(self, device: str) -> str:
        place = self.devices.get(device)
        return place.name if place and place.name else device

    def _chain(self, device: str | None, site: str | None) -> list[Place]:
        chain = []
        if device is not None:
            chain.append(self.devices.get(device, Place()))
            site = site or self.site_of(device)
        if site is not None:
            chain.append(self.sites.get(site, Place()))
        return chain

    def local(self, device: str | None = None, site: str | None = None) -> Local:
        """The time zone and opening hours of a device (its own, else its site's, else [display])
        or of a site (its own, else [display])."""
        chain = self._chain(device, site)
        tz = next((p.timezone for p in chain if p.timezone), self.display.timezone)
        hours = next((p.opening_hours for p in chain if p.opening_hours is not None), self.display.opening_hours)
        return Local(tz, OpeningHours.parse(hours))


_PLACE_KEYS = {"devices": ("timezone", "opening_hours", "site", "name"), "sites": ("timezone", "opening_hours", "name")}


def read_places(tables: Mapping[str, Any], display: DisplaySection, origin: str) -> Places:
    """The [devices.<id>] and [sites.<name>] tables of a central TOML file, validated: a problem
    is a one-line ConfigError naming the table and key."""
    found: dict[str, dict[str, Place]] = {"devices": {}, "sites": {}}
    for kind in PLACE_TABLES:
        entries = tables.get(kind, {})
        if not isinstance(entries, dict):
            raise ConfigError(f"{origin}: {kind!r} must hold tables, e.g. [{kind}.shop-1]")
        for name, table in entries.items():
            where = f"[{kind}.{name}]"
            try:
                if kind == "devices":
                    check_device_id(name)
                elif not _SITE.fullmatch(name):
                    raise ContractError("use 1-64 of A-Z a-z 0-9 _ . -")
            except ContractError as exc:
                raise ConfigError(f"{where} ({origin}): not a valid {kind[:-1]} name: {exc}") from None
            if not isinstance(table, dict):
                raise ConfigError(f'{where} ({origin}): must be a table of settings, e.g. timezone = "UTC"')
            values: dict[str, str] = {}
            for key, value in table.items():
                if key not in _PLACE_KEYS[kind]:
                    raise ConfigError(f"{where} {key} ({origin}): unknown key; known: {', '.join(_PLACE_KEYS[kind])}")
                if not isinstance(value, str):
                    raise ConfigError(f"{where} {key} = {value!r} ({origin}): expected a string")
                values[key] = value
            if "timezone" in values:
                check_timezone(values["timezone"], f"{where} timezone ({origin})")
            if "opening_hours" in values:
                check_opening_hours(values["opening_hours"], f"{where} opening_hours ({origin})")
            if "site" in values and not _SITE.fullmatch(values["site"]):
                raise ConfigError(f"{where} site = {values['site']!r} ({origin}): use 1-64 of A-Z a-z 0-9 _ . -")
            found[kind][name] = Place(**values)
    return Places(found["devices"], found["sites"], display)


def load_central(
    path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    problems: list[str] | None = None,
) -> tuple[CentralConfig, Places]:
    """The central configuration (as `edge.wire.config.load`, which skips the per-device and
    per-site tables) and those tables. Raises the first ConfigError, or, given `problems`,
    collects every one there: the settings' first, then the first of the tables."""
    config = load(CentralConfig, path, overrides, environ, problems)
    if path is None:
        return config, Places(display=config.display)
    try:
        tables = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        # load() has reported what is wrong with the file in its own words.
        return config, Places(display=config.display)
    try:
        return config, read_places(tables, config.display, str(path))
    except ConfigError as exc:
        if problems is None:
            raise
        problems.append(str(exc))
        return config, Places(display=config.display)

"""Configuration of the central subscriber, loaded like the edge's by `edge.wire.config.load`
(defaults, TOML file, AICCTV_<SECTION>_<KEY> environment, flags), documented with every default
in `deploy/central.toml` (regenerate with `aicctv config defaults central`). Example file:

    [mqtt]
    broker = "mqtt://broker.local:1883"
    [storage]
    db = "postgresql://central@db.local/aicctv"
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from edge.wire.config import ConfigError, MqttLinkSection, setting

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
# A shared-subscription group name is one topic level without wildcards.
_GROUP = re.compile(r"[A-Za-z0-9_.-]{0,64}")

HEADER = """
aicctv central subscriber: `aicctv central run --config /etc/aicctv/central.toml`.
Every value below is the default; delete what you do not change. Each setting can also be
given as an environment variable AICCTV_<SECTION>_<KEY> (e.g. AICCTV_STORAGE_DB), or on the
command line (--set section.key=value, or the flag named beside it). The systemd unit passes
the broker password as a credential. Check a file: `aicctv config check FILE`.
Generated from the settings' declarations by `aicctv config defaults central`: edit those, not this.
"""


def _check_client_id(value: str, name: str) -> None:
    if not 1 <= len(value) <= 128 or any(c in value for c in "/+# "):
        raise ConfigError(f"{name} = {value!r}: use 1-128 characters without / + # or spaces")


def _check_shared_group(value: str, name: str) -> None:
    if not _GROUP.fullmatch(value):
        raise ConfigError(f"{name} = {value!r}: use up to 64 of A-Z a-z 0-9 _ . - (or empty)")


def _check_db(value: str, name: str) -> None:
    if not value:
        raise ConfigError(f"{name} is empty: give a SQLite file or a postgresql:// URL")


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
        check=_check_db,
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
class CentralConfig:
    mqtt: CentralMqttSection = field(default_factory=CentralMqttSection)
    storage: CentralStorageSection = field(default_factory=CentralStorageSection)
    resync: ResyncSection = field(default_factory=ResyncSection)

    @property
    def shared(self) -> bool:
        """Whether hourly and live messages come through a shared subscription (MQTT 5 only)."""
        return self.mqtt.version == 5 and bool(self.mqtt.shared_group)

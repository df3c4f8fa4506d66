"""Configuration of the central subscriber, loaded like the edge's by `edge.config.load`
(defaults, TOML file, AICCTV_<SECTION>_<KEY> environment, flags). Example file:

    [mqtt]
    broker = "mqtt://broker.local:1883"
    [storage]
    db = "postgresql://central@db.local/aicctv"
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from edge.config import Check, ConfigError, MqttLinkSection, check_within

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
# A shared-subscription group name is one topic level without wildcards.
_GROUP = re.compile(r"^[A-Za-z0-9_.-]{0,64}$")


@dataclass(frozen=True)
class CentralMqttSection(MqttLinkSection):
    # The broker keeps one session per client id: each instance side by side needs its own.
    client_id: str = "aicctv-central"
    # Instances with the same group share the hourly and live messages ($share/<group>/…);
    # empty: every instance receives everything.
    shared_group: str = "aicctv-central"
    session_expiry_s: int = 7 * 24 * 3600

    def check_client_id(self) -> None:
        if not 1 <= len(self.client_id) <= 128 or any(c in self.client_id for c in "/+# "):
            raise ConfigError(f"mqtt.client_id = {self.client_id!r}: use 1-128 characters without / + # or spaces")

    def check_shared_group(self) -> None:
        if not _GROUP.match(self.shared_group):
            raise ConfigError(
                f"mqtt.shared_group = {self.shared_group!r}: use up to 64 of A-Z a-z 0-9 _ . - (or empty)"
            )


@dataclass(frozen=True)
class CentralStorageSection:
    db: str = "aicctv-central.db"
    batch_max: int = 1000
    batch_interval_s: float = 0.1

    def check_db(self) -> None:
        if not self.db:
            raise ConfigError("storage.db is empty: give a SQLite file or a postgresql:// URL")


@dataclass(frozen=True)
class ResyncSection:
    check_interval_s: float = 60.0
    min_interval_s: float = 300.0
    # How late past the next hour's due time (an hour after the last record) a running device's
    # record is taken as lost: more than an edge's hourly.grace_s plus its delivery retries.
    overdue_after_s: float = 600.0


@dataclass(frozen=True)
class CentralConfig:
    mqtt: CentralMqttSection = field(default_factory=CentralMqttSection)
    storage: CentralStorageSection = field(default_factory=CentralStorageSection)
    resync: ResyncSection = field(default_factory=ResyncSection)

    def checks(self) -> list[Check]:
        m, s, r = self.mqtt, self.storage, self.resync
        return [
            *m.checks(),
            m.check_client_id,
            m.check_shared_group,
            lambda: check_within(m.session_expiry_s, 0, 2**32 - 1, "mqtt.session_expiry_s"),
            s.check_db,
            lambda: check_within(s.batch_max, 1, 100_000, "storage.batch_max"),
            lambda: check_within(s.batch_interval_s, 0.0, 10.0, "storage.batch_interval_s"),
            lambda: check_within(r.check_interval_s, 0.01, 86400, "resync.check_interval_s"),
            lambda: check_within(r.min_interval_s, 0.0, 7 * 86400, "resync.min_interval_s"),
            lambda: check_within(r.overdue_after_s, 0.0, 7 * 86400, "resync.overdue_after_s"),
        ]

    @property
    def shared(self) -> bool:
        """Whether hourly and live messages come through a shared subscription (MQTT 5 only)."""
        return self.mqtt.version == 5 and bool(self.mqtt.shared_group)

"""The edge daemon's configuration (`aicctv edge run --config edge.toml`), documented with every
default in `deploy/edge.toml` (regenerate with `aicctv config defaults edge`).

    [device]  id = "shop-1"
    [source]  spec = "/dev/video0"
    [vision]  min_face = 40
    [mqtt]    broker = "mqtt://broker.local:1883"
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from edge.vision.config import VisionConfig
from edge.wire.config import Check, ConfigError, MqttLinkSection, check_contract, check_writable_file, setting
from edge.wire.contract import check_device_id

HEADER = """
aicctv edge daemon configuration: `aicctv edge run --config deploy/edge.toml`.
Every value below is the default; delete what you do not change. Each setting can also be
given as an environment variable AICCTV_<SECTION>_<KEY> (e.g. AICCTV_MQTT_BROKER), or on the
command line (--set section.key=value, or the flag named beside it); flags beat the
environment, which beats this file. Check a file: `aicctv config check FILE`.
Generated from the settings' declarations by `aicctv config defaults edge`: edit those, not this.
"""


def _host_name() -> str:
    return socket.gethostname().split(".")[0] or "edge"


@dataclass(frozen=True)
class DeviceSection:
    id: str = setting(
        default_factory=_host_name,
        check=lambda v, n: check_contract(check_device_id, v, n),
        flag="--device-id",
        metavar="D",
        example="shop-1",
        help="this device's id in MQTT topics and in the central log: 1-64 of A-Z a-z 0-9 _ . - "
        "(default: the host name)",
    )


@dataclass(frozen=True)
class SourceSection:
    spec: str = setting(
        "0",
        flag="--source",
        metavar="S",
        help='"picamera2" (Raspberry Pi camera), a V4L2 device ("0", "/dev/video0", or the name that stays '
        'put across reboots, "/dev/v4l/by-id/…-video-index0"), an rtsp:// or http(s):// URL, a GStreamer '
        'pipeline (contains "!"), or a video file',
    )
    reconnect_max_s: float = setting(
        60.0, ge=0.1, le=3600, help="a lost camera or stream is reopened after 1 s, 2 s, 4 s … up to this many seconds"
    )
    # Asked of the camera, not enforced: a V4L2 driver picks its nearest mode (the daemon logs
    # what it got), so a wrong guess costs a warning, not a failed start.
    width: int | None = setting(
        None,
        ge=16,
        le=8192,
        example=1280,
        help="frame width in pixels, with height: a camera (V4L2, picamera2) is asked for it; a video "
        "file or stream is scaled to it; a GStreamer pipeline sets it in its caps instead (unset: as "
        "delivered; picamera2: 640x480)",
    )
    height: int | None = setting(None, ge=16, le=8192, example=720, help="frame height in pixels, with width")
    fps: float | None = setting(
        None,
        ge=0.1,
        le=240,
        example=10.0,
        help="frames per second asked of a camera (V4L2, picamera2); a video file is timed by its own rate, "
        "a stream runs at its camera's, a GStreamer pipeline sets it in its caps (unset: the camera's default)",
    )
    rotate: int = setting(
        0,
        choices=(0, 90, 180, 270),
        help="turn the image clockwise by this many degrees (a camera mounted sideways or upside down); "
        "picamera2 turns 180 in the sensor, everything else is turned in software",
    )
    flip: str = setting(
        "none",
        choices=("none", "horizontal", "vertical"),
        help="mirror the image (after rotate): horizontal swaps left and right, e.g. a camera looking "
        "through a mirror; picamera2 mirrors in the sensor",
    )

    def checks(self) -> list[Check]:
        return [self._check_size, self._check_spec]

    def _check_size(self) -> None:
        if (self.width is None) != (self.height is None):
            raise ConfigError("source.width and source.height go together: set both, or neither")

    def _check_spec(self) -> None:
        # Either would be retried as a lost camera for ever.
        if not self.spec.strip():
            raise ConfigError('source.spec is empty: give a camera ("0", "/dev/video0", "picamera2"), a URL or a file')
        if Path(self.spec).is_dir():
            raise ConfigError(f"source.spec {self.spec!r} is a folder: give a video file in it, a camera or a URL")


@dataclass(frozen=True)
class MqttSection(MqttLinkSection):
    live_interval_s: float = setting(1.0, ge=0.1, le=3600, help="live counts every this many seconds (QoS 0)")
    flush_timeout_s: float = setting(
        30.0,
        ge=0.0,
        le=86400,
        help="--until-end waits this long for the last records to be delivered (receipts: stored by central)",
    )
    receipts: bool = setting(
        True,
        help="an hourly record counts as delivered once central confirms it stored it (cmd/receipt), end to end; "
        "false: once the broker takes it (PUBACK), for a device with no central (a broker is a relay, not a ledger)",
    )
    resend_after_s: float = setting(
        30.0,
        ge=0.1,
        le=86400,
        help="with receipts: a record without one this long after publishing is published again, the wait "
        "doubling (with jitter) up to 32 times this",
    )
    window: int = setting(
        64,
        ge=1,
        le=10000,
        help="at most this many hourly records are published and not yet confirmed at a time; the rest wait "
        "their turn, oldest hour first, so a long outage's backlog does not flood the broker or central",
    )


@dataclass(frozen=True)
class StorageSection:
    db: str = setting(
        "aicctv-edge.db",
        check=check_writable_file,
        flag="--db",
        metavar="FILE",
        help="the local SQLite log (visits, hourly records, delivery state); the systemd unit sets "
        "AICCTV_STORAGE_DB=/var/lib/aicctv/edge.db",
    )
    # A device left alone for years must not fill its SD card; hourly records are a few KB a day.
    retention_days: int = setting(
        365, ge=1, le=36500, help="visits and events older than this many days are deleted (hourly records are kept)"
    )


@dataclass(frozen=True)
class HourlySection:
    grace_s: float = setting(60.0, ge=0.0, le=3600, help="an hour is closed and published this long after it ends")
    max_gap_s: float = setting(
        2.0, ge=0.01, le=3600, help="a gap between frames longer than this is not counted as coverage"
    )


@dataclass(frozen=True)
class EdgeConfig:
    device: DeviceSection = field(default_factory=DeviceSection)
    source: SourceSection = field(default_factory=SourceSection)
    vision: VisionConfig = field(default_factory=VisionConfig)
    mqtt: MqttSection = field(default_factory=MqttSection)
    storage: StorageSection = field(default_factory=StorageSection)
    hourly: HourlySection = field(default_factory=HourlySection)

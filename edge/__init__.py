"""AI CCTV edge analytics: privacy-preserving face counting with age and gender on the device.

The package is layered, and imports only run downwards:

    edge.cli      one module per `aicctv` command; each imports what it needs when it runs
    edge.daemon   the device: hourly tally, local SQLite log, MQTT uplink
    edge.aim      `aicctv edge aim`'s live preview: frame loop, drawing, localhost server
    edge.vision   frames in, faces and visitors out: source, detect, align, classify, track
    edge.wire     what the edge and central both speak: contract, MQTT, settings, SQLite, export

`central` imports `edge.wire` only, so a central server never loads OpenCV or TFLite.

The Python API is re-exported here, loaded on first use so that `import edge.wire…` stays light:

    from edge import Analyzer, VisionConfig, open_source
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {
    "Analyzer": "edge.vision.analyzer",
    "Face": "edge.vision.analyzer",
    "FrameResult": "edge.vision.analyzer",
    "Visitor": "edge.vision.analyzer",
    "VisionConfig": "edge.vision.config",
    "Detections": "edge.vision.detections",
    "Frame": "edge.vision.sources",
    "open_source": "edge.vision.sources",
}
__all__ = sorted(_API)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'edge' has no attribute {name!r}")
    return getattr(importlib.import_module(_API[name]), name)

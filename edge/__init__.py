"""AI CCTV edge analytics: privacy-preserving face counting with age and gender on the device."""

from edge.analyzer import Analyzer, AnalyzerConfig, Face, FrameResult, Visitor
from edge.detections import Detections
from edge.sources import Frame, open_source

__all__ = ["Analyzer", "AnalyzerConfig", "Detections", "Face", "Frame", "FrameResult", "Visitor", "open_source"]
__version__ = "0.1.0"

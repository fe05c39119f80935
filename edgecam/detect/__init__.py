"""Object detection: TFLite runtime, model manifest and store, SSD pre- and post-processing."""

from edgecam.detect.detector import Detection, DetectionFilter, Detector, load_detector
from edgecam.detect.runtime import EdgeTpuUnavailableError, RuntimeMissingError

__all__ = [
    "Detection",
    "DetectionFilter",
    "Detector",
    "EdgeTpuUnavailableError",
    "RuntimeMissingError",
    "load_detector",
]

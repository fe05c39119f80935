"""Object detection: TFLite runtime, model manifest and store, SSD pre- and post-processing.

Names are handed on lazily: ``from edgecam.detect import Detector`` loads the detector (and OpenCV) only
when asked, so importing ``edgecam.detect.manifest`` or ``edgecam.detect.labels`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "Detection": "edgecam.detect.detector",
    "DetectionFilter": "edgecam.detect.detector",
    "Detector": "edgecam.detect.detector",
    "load_detector": "edgecam.detect.detector",
    "EdgeTpuUnavailableError": "edgecam.detect.runtime",
    "RuntimeMissingError": "edgecam.detect.runtime",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

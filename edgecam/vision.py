"""OpenCV import with an actionable message: on a Pi it comes from apt, elsewhere from pip."""

from __future__ import annotations

import os

# OpenCV's own warnings (imread on a missing file, FFmpeg chatter) duplicate edgecam's clearer messages.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

try:
    import cv2
except ImportError as exc:  # pragma: no cover - depends on the machine
    raise ImportError(
        "OpenCV (cv2) is missing. On Raspberry Pi OS: `sudo apt install python3-opencv` (and create the venv "
        "with --system-site-packages); elsewhere: `pip install 'edgecam[opencv]'`."
    ) from exc

__all__ = ["cv2"]

"""A network stream (RTSP, HTTP MJPEG, HLS, ...) through OpenCV's FFmpeg backend, with timeouts."""

from __future__ import annotations

import logging
import os
import re

import numpy as np

from edgecam.vision import cv2

from .base import CaptureSource, SourceError, as_frame

__all__ = ["NetworkSource", "redact_url"]

log = logging.getLogger(__name__)

_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@")


def redact_url(url: str) -> str:
    """The URL without ``user:password@`` (for names, logs and the status page)."""
    return _USERINFO.sub(r"\1", url)


class NetworkSource(CaptureSource):
    """Frames from a URL at the stream's native size (or ``size`` if given).

    Open and read are bounded by ``timeout_s`` (CAP_PROP_OPEN_TIMEOUT_MSEC / CAP_PROP_READ_TIMEOUT_MSEC):
    OpenCV's default read timeout is 30 s, and without these a dead camera can hold read() for that long.
    RTSP uses TCP unless OPENCV_FFMPEG_CAPTURE_OPTIONS is already set (UDP smears frames on Wi-Fi).
    """

    paced = True

    def __init__(self, url: str, *, size: tuple[int, int] | None = None, timeout_s: float = 5.0) -> None:
        self.url = url
        self.size = size
        self.timeout_s = timeout_s
        self.name = redact_url(url)
        self.nominal_fps: float | None = None
        self._cap = None

    def open(self) -> None:
        self.close()
        if self.url.lower().startswith(("rtsp://", "rtsps://")):
            os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
        ms = max(1, int(self.timeout_s * 1000))
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        cap = cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"cannot open {self.name} within {self.timeout_s:g} s "
                "(is the camera reachable, the URL and credentials right?)"
            )
        self._cap = cap

    def read(self) -> tuple[np.ndarray, np.ndarray | None]:
        if self._cap is None:
            raise SourceError("network source is not open")
        ok, image = self._cap.read()
        if not ok or image is None:
            raise SourceError(f"stream ended or no frame within {self.timeout_s:g} s")
        return as_frame(image, self.size), None

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()

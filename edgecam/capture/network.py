"""A network stream (RTSP, HTTP MJPEG, HLS, ...) through OpenCV's FFmpeg backend, with timeouts."""

from __future__ import annotations

import logging
import os
import time

import numpy as np

from edgecam.vision import cv2

from .base import CaptureSource, SourceError, as_frame, decode_thread_params
from .redact import redact_url, scrub

__all__ = ["NetworkSource", "redact_url"]

log = logging.getLogger(__name__)


class NetworkSource(CaptureSource):
    """Frames from a URL at the stream's native size (or ``size`` if given).

    Open and read are bounded by ``timeout_s`` (CAP_PROP_OPEN_TIMEOUT_MSEC / CAP_PROP_READ_TIMEOUT_MSEC):
    OpenCV's default read timeout is 30 s, and without these a dead camera can hold read() for that long.
    RTSP uses TCP unless OPENCV_FFMPEG_CAPTURE_OPTIONS is already set (UDP smears frames on Wi-Fi).
    """

    paced = True

    def __init__(
        self,
        url: str,
        *,
        size: tuple[int, int] | None = None,
        timeout_s: float = 5.0,
        decode_threads: int = 0,
    ) -> None:
        self.url = url
        self.decode_threads = decode_threads
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
        params += decode_thread_params(self.decode_threads)
        started = time.monotonic()
        try:
            cap = cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)
        except cv2.error as exc:  # never let the URL (and its password) out in an OpenCV message
            raise SourceError(f"cannot open {self.name}: {scrub(str(exc), self.url)}") from None
        if not cap.isOpened():
            cap.release()
            took = time.monotonic() - started
            if took < 0.8 * self.timeout_s:  # an instant refusal is not a timeout: say which it was
                raise SourceError(
                    f"cannot open {self.name}: refused or failed after {took:.1f} s "
                    "(is the camera on, the URL and credentials right?)"
                )
            raise SourceError(
                f"cannot open {self.name}: no answer within {self.timeout_s:g} s "
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

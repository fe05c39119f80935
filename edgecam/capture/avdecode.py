"""Video files through PyAV: frames as the decoder gives them (``Yuv420``), converted only when needed.

OpenCV's ``VideoCapture.read()`` converts every decoded frame to BGR at full size. PyAV (already edgecam's
clip encoder) hands over the decoder's planes; the pipeline then converts only what it uses (see
:mod:`edgecam.capture.yuv`). Frames in another pixel format (4:2:2, full-range JPEG, RGB...) are converted to
BGR here by FFmpeg, as OpenCV would.

PyAV releases the GIL while the codec decodes, so decoding does not hold up the inference thread's Python.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

from .yuv import Yuv420

__all__ = ["AvFileDecoder", "pyav_available"]

log = logging.getLogger(__name__)

PLANAR_420 = "yuv420p"  # limited range, what H.264/MPEG-4 files carry; cv2's I420 conversion matches it


def _av() -> Any:
    import av

    return av


def pyav_available() -> bool:
    try:
        _av()
    except ImportError:
        return False
    return True


class AvFileDecoder:
    """One open video file. ``read()`` returns the next picture, or None at the end of the file or at a
    packet the decoder cannot read (the caller loops the file, as it does at the end).

    ``threads``: FFmpeg decode threads; 0 lets FFmpeg choose (one per core)."""

    def __init__(self, path: str, threads: int = 0) -> None:
        av = _av()
        self._errors: tuple[type[BaseException], ...] = (av.error.FFmpegError, ValueError)
        try:
            self._container = av.open(path)
        except self._errors as exc:
            raise ValueError(f"cannot open video file '{path}': {exc}") from exc
        if not self._container.streams.video:
            self._container.close()
            raise ValueError(f"'{path}' has no video stream")
        stream = self._container.streams.video[0]
        stream.thread_count = threads
        if threads != 1:
            stream.thread_type = "AUTO"  # frame and slice threads
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else None
        fmt = stream.format
        # Only 4:2:0 planar frames stay YUV; others would be converted by FFmpeg frame by frame, which costs
        # more than OpenCV's conversion: the caller had better use OpenCV for those (MJPEG's full-range 4:2:2).
        self.planar420 = fmt is not None and fmt.name == PLANAR_420
        self._frames: Iterator[Any] = self._container.decode(stream)

    def read(self) -> Yuv420 | np.ndarray | None:
        try:
            frame = next(self._frames)
        except StopIteration:
            return None
        except self._errors as exc:
            log.warning("decoding stopped at a bad packet (%s): starting the file again", exc)
            return None
        if frame.format.name == PLANAR_420 and frame.width % 2 == 0 and frame.height % 2 == 0:
            return Yuv420(*(_plane_view(plane) for plane in frame.planes))
        return frame.to_ndarray(format="bgr24")

    def close(self) -> None:
        self._container.close()


def _plane_view(plane: Any) -> np.ndarray:
    """A decoded plane as a (height, width) uint8 view of FFmpeg's buffer, rows ``line_size`` apart: no copy
    (``to_ndarray()`` copies all three, ~0.13 ms a 720p frame). The view keeps the frame's buffer alive, and
    FFmpeg does not reuse a buffer something still holds."""
    rows = np.frombuffer(plane, np.uint8)[: plane.height * plane.line_size]
    return rows.reshape(plane.height, plane.line_size)[:, : plane.width]

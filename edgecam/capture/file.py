"""A video file, looped at end of file. The capture thread paces it (or hands frames over in lockstep).

Decoded with PyAV where it is installed (frames stay YUV until something needs BGR, see ``capture.yuv``),
else with OpenCV's ``VideoCapture``."""

from __future__ import annotations

import logging
import math
import os
from typing import Literal

import numpy as np

from edgecam.vision import cv2

from .avdecode import AvFileDecoder, pyav_available
from .base import CaptureSource, SourceError, as_frame, decode_thread_params
from .yuv import Yuv420

__all__ = ["FileSource"]

log = logging.getLogger(__name__)

DEFAULT_FPS = 25.0


class _OpenCvDecoder:
    """The same three calls as AvFileDecoder, through ``cv2.VideoCapture`` (always BGR)."""

    def __init__(self, path: str, threads: int) -> None:
        params = decode_thread_params(threads)
        cap = cv2.VideoCapture(path, cv2.CAP_ANY, params) if params else cv2.VideoCapture(path)
        if not cap.isOpened():
            cap.release()
            raise ValueError(f"cannot open video file '{path}' (unsupported format or codec?)")
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if math.isfinite(fps) else None
        self.cap = cap

    def read(self) -> np.ndarray | None:
        ok, image = self.cap.read()
        return image if ok else None

    def close(self) -> None:
        self.cap.release()


Decoder = Literal["auto", "pyav", "opencv"]


class FileSource(CaptureSource):
    """Frames from a video file at its native size (or ``size`` if given), looping forever.

    ``paced`` is False: the capture thread paces reads to ``nominal_fps`` in realtime mode, or hands each
    frame over only after the previous one was taken (realtime=False). End of file is detected by a failed
    read, not by the frame count, which some containers state wrongly (crowd_overhead_720p.avi claims 682
    frames; 341 decode). On a failed read the file is reopened and read from the start.

    ``decoder``: ``auto`` = PyAV if installed and the file is 4:2:0 (its pictures are then ``Yuv420``), else
    OpenCV (BGR, also for a file PyAV cannot open); ``pyav`` = PyAV always (other pixel formats converted
    to BGR by FFmpeg). ``decode_threads``: FFmpeg threads, 0 = FFmpeg's own choice.
    """

    paced = False

    def __init__(
        self,
        path: str,
        *,
        size: tuple[int, int] | None = None,
        decode_threads: int = 0,
        decoder: Decoder = "auto",
    ) -> None:
        self.path = path
        self.decode_threads = decode_threads
        self.decoder = decoder
        self.size = size
        self.name = f"file:{os.path.basename(path)}"
        self.nominal_fps: float | None = None
        self.loops = 0
        self._dec: AvFileDecoder | _OpenCvDecoder | None = None

    def open(self) -> None:
        self.close()
        if not os.path.isfile(self.path):
            raise SourceError(f"camera.source: no such file '{self.path}'")
        try:
            dec = self._open_decoder()
        except ValueError as exc:
            raise SourceError(str(exc)) from None
        if self.nominal_fps is None:
            fps = dec.fps
            if fps is None or not (1.0 <= fps <= 240.0):
                log.warning(
                    "%s: frame rate %r is not usable, pacing at %.0f fps", self.name, fps, DEFAULT_FPS
                )
                fps = DEFAULT_FPS
            self.nominal_fps = float(fps)
        self._dec = dec
        self._frames_since_open = 0

    def _open_decoder(self) -> AvFileDecoder | _OpenCvDecoder:
        if self.decoder == "opencv" or (self.decoder == "auto" and not pyav_available()):
            return _OpenCvDecoder(self.path, self.decode_threads)
        try:
            dec = AvFileDecoder(self.path, self.decode_threads)
        except ValueError:
            if self.decoder == "pyav":
                raise
            return _OpenCvDecoder(self.path, self.decode_threads)  # its own error if it cannot either
        if self.decoder == "auto" and not dec.planar420:  # nothing to gain over OpenCV for this file
            dec.close()
            return _OpenCvDecoder(self.path, self.decode_threads)
        return dec

    def read(self) -> tuple[np.ndarray | Yuv420, np.ndarray | None]:
        if self._dec is None:
            raise SourceError("file source is not open")
        image = self._dec.read()
        if image is None:
            if self._frames_since_open == 0:
                raise SourceError(f"no frame could be decoded from '{self.path}'")
            log.debug("%s: end of file after %d frames, looping", self.name, self._frames_since_open)
            self.loops += 1
            self.open()
            image = self._dec.read()
            if image is None:
                raise SourceError(f"no frame could be decoded from '{self.path}' after rewinding")
        self._frames_since_open += 1
        if isinstance(image, Yuv420):
            if self.size is None or self.size == image.size:
                return image, None
            image = image.bgr()
        return as_frame(image, self.size), None

    def close(self) -> None:
        dec, self._dec = self._dec, None
        if dec is not None:
            dec.close()

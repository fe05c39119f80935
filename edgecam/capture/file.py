"""A video file, looped at end of file. The capture thread paces it (or hands frames over in lockstep)."""

from __future__ import annotations

import logging
import math
import os

import numpy as np

from edgecam.vision import cv2

from .base import CaptureSource, SourceError, as_frame, decode_thread_params

__all__ = ["FileSource"]

log = logging.getLogger(__name__)

DEFAULT_FPS = 25.0


class FileSource(CaptureSource):
    """Frames from a video file at its native size (or ``size`` if given), looping forever.

    ``paced`` is False: the capture thread paces reads to ``nominal_fps`` in realtime mode, or hands each
    frame over only after the previous one was taken (realtime=False). End of file is detected by a failed
    read, not by the frame count, which some containers state wrongly (crowd_overhead_720p.avi claims 682
    frames; 341 decode). On a failed read the file is reopened and read from the start.
    """

    paced = False

    def __init__(self, path: str, *, size: tuple[int, int] | None = None, decode_threads: int = 0) -> None:
        self.path = path
        self.decode_threads = decode_threads
        self.size = size
        self.name = f"file:{os.path.basename(path)}"
        self.nominal_fps: float | None = None
        self.loops = 0
        self._cap = None

    def open(self) -> None:
        self.close()
        if not os.path.isfile(self.path):
            raise SourceError(f"camera.source: no such file '{self.path}'")
        params = decode_thread_params(self.decode_threads)
        cap = cv2.VideoCapture(self.path, cv2.CAP_ANY, params) if params else cv2.VideoCapture(self.path)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open video file '{self.path}' (unsupported format or codec?)")
        fps = cap.get(cv2.CAP_PROP_FPS)
        if self.nominal_fps is None:
            if not (math.isfinite(fps) and 1.0 <= fps <= 240.0):
                log.warning(
                    "%s: frame rate %r is not usable, pacing at %.0f fps", self.name, fps, DEFAULT_FPS
                )
                fps = DEFAULT_FPS
            self.nominal_fps = float(fps)
        self._cap = cap
        self._frames_since_open = 0

    def read(self) -> tuple[np.ndarray, np.ndarray | None]:
        if self._cap is None:
            raise SourceError("file source is not open")
        ok, image = self._cap.read()
        if not ok:
            if self._frames_since_open == 0:
                raise SourceError(f"no frame could be decoded from '{self.path}'")
            log.debug("%s: end of file after %d frames, looping", self.name, self._frames_since_open)
            self.loops += 1
            self.open()
            ok, image = self._cap.read()
            if not ok:
                raise SourceError(f"no frame could be decoded from '{self.path}' after rewinding")
        self._frames_since_open += 1
        return as_frame(image, self.size), None

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()

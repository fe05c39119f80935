"""What every capture source is: open, read a picture, close; errors are SourceError with a reason."""

from __future__ import annotations

from abc import ABC, abstractmethod
from enum import Enum

import numpy as np

from edgecam.vision import cv2

from .yuv import Yuv420

__all__ = ["CaptureSource", "SourceError", "SourceState", "decode_thread_params", "fit_size"]


class SourceError(RuntimeError):
    """A source could not be opened or read; the message says why in words a user can act on."""


class SourceState(str, Enum):
    CONNECTING = "connecting"
    LIVE = "live"
    LOST = "lost"


class CaptureSource(ABC):
    """One kind of source.

    ``open()`` raises SourceError with a clear reason; ``read()`` returns ``(image, lores_or_None)`` — image
    BGR uint8 HxWx3, or a ``Yuv420`` picture that is converted only if used — or raises SourceError (file sources loop at end of file themselves). ``close()`` is
    safe to call at any time, also twice or after a failed open. A source can be opened again after close.
    """

    #: Readable name without credentials: "file:vtest.avi", "v4l2:/dev/video0", "rtsp://host/path", ...
    name: str = "source"
    #: True if read() itself waits for the next frame (cameras, network, the paced test pattern);
    #: False when the capture thread must pace it (files in realtime mode) or hand frames over in lockstep.
    paced: bool = True
    #: The source's own frame rate if known (a file's CAP_PROP_FPS, the camera's configured rate).
    nominal_fps: float | None = None
    #: False when the device cannot be opened a second time in this process (libcamera allows one owner):
    #: the supervisor then leaves a stuck capture to systemd instead of reopening it.
    reopenable: bool = True

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def read(self) -> tuple[np.ndarray | Yuv420, np.ndarray | None]: ...

    @abstractmethod
    def close(self) -> None: ...

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def decode_thread_params(threads: int) -> list[int]:
    """``VideoCapture`` open parameters that ask FFmpeg for ``threads`` decode threads (0 = FFmpeg's own
    choice, one per core). On a small box the detector needs its cores too: a decoder spread over all of
    them makes the two take turns instead of running side by side. OpenCV before 4.6 has no such property:
    then nothing is asked."""
    prop = getattr(cv2, "CAP_PROP_N_THREADS", None)
    return [prop, threads] if prop is not None and threads > 0 else []


def as_frame(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """A decoded OpenCV image as the pipeline wants it: BGR (grey streams exist) at ``size`` if given."""
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return fit_size(image, size)


def fit_size(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Resize ``image`` to ``size`` (width, height) if given and different; otherwise return it as is."""
    if size is None:
        return image
    w, h = size
    if image.shape[1] == w and image.shape[0] == h:
        return image
    interp = cv2.INTER_AREA if image.shape[1] > w else cv2.INTER_LINEAR
    return cv2.resize(image, (w, h), interpolation=interp)

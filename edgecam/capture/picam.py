"""The Raspberry Pi camera through picamera2 (from apt: python3-picamera2), with an ISP-scaled lores stream.

One ``Picamera2`` object lives for the whole process: creating a second one (even after closing the
first) leaks CMA memory on the Pi, so a reconnect stops and restarts the same object. picamera2 is
imported lazily so this module imports anywhere.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from edgecam.vision import cv2

from .base import CaptureSource, SourceError, fit_size

__all__ = ["Picamera2Source", "picamera2_available", "yuv420_to_bgr"]

log = logging.getLogger(__name__)

_camera: Any = None
_camera_lock = threading.Lock()


def _import_picamera2() -> Any:
    try:
        from picamera2 import Picamera2
    except ImportError as exc:
        raise SourceError(
            "picamera2 is not importable: `sudo apt install python3-picamera2` and create the venv with "
            "--system-site-packages"
        ) from exc
    return Picamera2


def picamera2_available() -> bool:
    """True if picamera2 imports and libcamera sees at least one camera."""
    try:
        picamera2_cls = _import_picamera2()
        return bool(picamera2_cls.global_camera_info())
    except Exception:  # an ImportError or a libcamera failure both mean "not this source"
        return False


def _the_camera() -> Any:
    """The process-wide Picamera2 object, created on first use."""
    global _camera
    with _camera_lock:
        if _camera is None:
            picamera2_cls = _import_picamera2()
            if not picamera2_cls.global_camera_info():
                raise SourceError(
                    "no Raspberry Pi camera detected (check the ribbon cable; `rpicam-hello --list-cameras`)"
                )
            try:
                _camera = picamera2_cls()
            except Exception as exc:  # libcamera raises RuntimeError/IndexError when busy or absent
                raise SourceError(f"cannot open the Pi camera ({exc}); is another program using it?") from exc
        return _camera


def yuv420_to_bgr(array: np.ndarray, width: int) -> np.ndarray:
    """picamera2's YUV420 array — shape (height * 3 / 2, stride), planes Y, U, V, each row padded to the
    stride (chroma to stride / 2) — as a BGR image ``width`` pixels wide."""
    bgr = cv2.cvtColor(array, cv2.COLOR_YUV2BGR_I420)  # (height, stride, 3)
    return bgr if bgr.shape[1] == width else np.ascontiguousarray(bgr[:, :width])


class Picamera2Source(CaptureSource):
    """``main`` as RGB888 at width x height — picamera2's "RGB888" is B,G,R in memory, OpenCV's order —
    and, if ``lores_size`` is given, a ``lores`` stream scaled by the ISP for detection. On a Pi 4 (VC4)
    the lores stream must be YUV (picamera2 raises "lores stream must be YUV" otherwise), so it is asked
    as YUV420 on every model and converted with COLOR_YUV2BGR_I420; its rows may be padded to a stride,
    which is cropped after conversion. lores may not be larger than main."""

    paced = True
    reopenable = False

    def __init__(
        self, *, width: int, height: int, fps: float, lores_size: tuple[int, int] | None = None
    ) -> None:
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.lores_size = None
        if lores_size is not None:
            lw, lh = (min(int(lores_size[0]), self.width), min(int(lores_size[1]), self.height))
            self.lores_size = (lw + (lw & 1), lh + (lh & 1))  # YUV420 needs even sizes
        self.name = "picamera2"
        self.nominal_fps = self.fps
        self._cam: Any = None
        self._lores_actual: tuple[int, int] | None = None

    def open(self) -> None:
        self.close()
        cam = _the_camera()
        kwargs: dict[str, Any] = {
            "main": {"size": (self.width, self.height), "format": "RGB888"},
            "controls": {"FrameRate": self.fps},
            "buffer_count": 4,
        }
        if self.lores_size is not None:
            kwargs["lores"] = {"size": self.lores_size, "format": "YUV420"}
        try:
            config = cam.create_video_configuration(**kwargs)
            cam.configure(config)
            cam.start()
        except Exception as exc:
            raise SourceError(f"cannot start the Pi camera at {self.width}x{self.height}: {exc}") from exc
        if self.lores_size is not None:
            self._lores_actual = tuple(cam.stream_configuration("lores")["size"])  # libcamera may adjust it
        self._cam = cam

    def read(self) -> tuple[np.ndarray, np.ndarray | None]:
        cam = self._cam
        if cam is None:
            raise SourceError("Pi camera is not started")
        names = ["main", "lores"] if self._lores_actual else ["main"]
        try:
            arrays, _metadata = cam.capture_arrays(names)
        except Exception as exc:
            raise SourceError(f"Pi camera capture failed: {exc}") from exc
        image = arrays[0]
        if image.ndim == 3 and image.shape[2] == 4:  # XRGB8888 if a platform insists on it
            image = image[:, :, :3]
        image = fit_size(image, (self.width, self.height))
        lores = None
        if self._lores_actual:
            lores = yuv420_to_bgr(arrays[1], self._lores_actual[0])
        return image, lores

    def close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            try:
                cam.stop()  # never cam.close(): the object is reused by the next open()
            except Exception as exc:
                log.debug("picamera2 stop failed: %s", exc)

"""A decoded picture kept as the decoder gave it (planar YUV 4:2:0) until someone needs it as BGR.

A video decoder's output is YUV 4:2:0; converting a whole 720p frame to BGR costs about a fifth of decoding
it (~0.45 ms here), and at an unthrottled file or a fast camera most frames never need BGR: the detector
needs a 200-300 px picture (made here from the freshly decoded planes, shrunk first, converted after:
~0.33 ms against ~0.55-0.8 ms for converting, then shrinking), the motion detector needs grey (the Y plane
is grey), and only the frames that are streamed, snapshotted or recorded (15 a second at most) are drawn on,
so only they are converted, once, on first use.
"""

from __future__ import annotations

import threading

import numpy as np

from edgecam.vision import cv2

__all__ = ["Yuv420", "model_picture"]


class Yuv420:
    """One I420 picture as three uint8 planes: ``y`` (height, width), ``u`` and ``v`` (height / 2, width / 2);
    width and height are even. The planes may be views into the decoder's own buffers, rows padded (a row
    stride larger than the width): nothing is copied until a BGR picture is wanted."""

    __slots__ = ("_bgr", "_lock", "height", "u", "v", "width", "y")

    def __init__(self, y: np.ndarray, u: np.ndarray, v: np.ndarray) -> None:
        height, width = y.shape
        if width % 2 or height % 2 or u.shape != (height // 2, width // 2) or v.shape != u.shape:
            raise ValueError(f"not an I420 picture: planes {y.shape}, {u.shape}, {v.shape}")
        self.y, self.u, self.v = y, u, v
        self.width = width
        self.height = height
        self._bgr: np.ndarray | None = None
        self._lock = threading.Lock()

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    def bgr(self) -> np.ndarray:
        """The whole picture as BGR, converted on the first call (from any thread) and kept: whoever draws
        on it draws on the one copy everybody else sees."""
        if self._bgr is None:
            with self._lock:
                if self._bgr is None:
                    self._bgr = cv2.cvtColor(self.i420(), cv2.COLOR_YUV2BGR_I420)
        return self._bgr

    def i420(self) -> np.ndarray:
        """The planes in one contiguous (height * 3 / 2, width) array, as OpenCV's I420 conversions take it."""
        w, h = self.width, self.height
        out = np.empty((h * 3 // 2, w), np.uint8)
        out[:h] = self.y
        chroma = out[h:].reshape(2, h // 2, w // 2)
        chroma[0] = self.u
        chroma[1] = self.v
        return out

    def grey(self) -> np.ndarray:
        """The Y plane: a grey picture at full size, for free (a view)."""
        return self.y

    def resized_bgr(self, size: tuple[int, int]) -> np.ndarray:
        """A BGR picture of ``size`` (width, height), stretched, as ``cv2.resize(bgr, size, INTER_LINEAR)``
        would give it (within a grey level on average, a few more at colour edges): each plane shrunk first,
        then the small one converted."""
        out_w, out_h = size
        if out_w % 2 or out_h % 2:
            return cv2.resize(self.bgr(), size, interpolation=cv2.INTER_LINEAR)
        small = np.empty((out_h * 3 // 2, out_w), np.uint8)
        cv2.resize(self.y, size, dst=small[:out_h], interpolation=cv2.INTER_LINEAR)
        small_chroma = small[out_h:].reshape(2, out_h // 2, out_w // 2)
        for plane, dst in zip((self.u, self.v), small_chroma, strict=True):
            cv2.resize(plane, (out_w // 2, out_h // 2), dst=dst, interpolation=cv2.INTER_LINEAR)
        return cv2.cvtColor(small, cv2.COLOR_YUV2BGR_I420)


def model_picture(image: np.ndarray | Yuv420, size: tuple[int, int]) -> np.ndarray:
    """``image`` stretched to ``size`` (width, height) as BGR: the detector's input picture."""
    if isinstance(image, Yuv420):
        return image.resized_bgr(size)
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)

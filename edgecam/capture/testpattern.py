"""A synthetic moving picture that needs no camera: shapes, a clock and a frame counter."""

from __future__ import annotations

import math
import threading
import time

import numpy as np

from edgecam.vision import cv2

from .base import CaptureSource

__all__ = ["TestPatternSource"]


class TestPatternSource(CaptureSource):
    """Frames of ``width`` x ``height`` at ``fps``. With ``paced`` (realtime) read() keeps its own
    drift-free schedule; without, it returns at once and the capture thread hands frames over in lockstep."""

    __test__ = False  # not a pytest class

    def __init__(self, *, width: int, height: int, fps: float, paced: bool = True) -> None:
        self.width, self.height = int(width), int(height)
        self.nominal_fps = float(fps) if fps and fps > 0 else 15.0
        self.paced = paced
        self.name = "testpattern"
        self._count = 0
        self._next = 0.0
        self._closed = threading.Event()
        self._background = self._make_background()

    def _make_background(self) -> np.ndarray:
        w, h = self.width, self.height
        ramp = np.linspace(40, 120, w, dtype=np.float32)
        bg = np.empty((h, w, 3), np.uint8)
        bg[:, :, 0] = ramp.astype(np.uint8)
        bg[:, :, 1] = np.linspace(30, 90, h, dtype=np.float32).astype(np.uint8)[:, None]
        bg[:, :, 2] = 60
        step = max(16, min(w, h) // 8)
        bg[::step, :] = 90
        bg[:, ::step] = 90
        return bg

    def open(self) -> None:
        self._closed.clear()
        self._next = time.monotonic()

    def read(self) -> tuple[np.ndarray, np.ndarray | None]:
        if self.paced:
            period = 1.0 / self.nominal_fps
            delay = self._next - time.monotonic()
            if delay > 0:
                self._closed.wait(delay)
            now = time.monotonic()
            self._next = self._next + period if now - self._next < period else now + period
        self._count += 1
        return self._draw(self._count), None

    def _draw(self, n: int) -> np.ndarray:
        w, h = self.width, self.height
        img = self._background.copy()
        t = n / self.nominal_fps
        s = max(2, min(w, h) // 40)
        # a box that bounces left-right, a disc on a circle, a bar that sweeps down
        bw, bh = w // 6, h // 4
        x = int((w - bw) * (0.5 + 0.5 * math.sin(t * 0.9)))
        cv2.rectangle(img, (x, h // 6), (x + bw, h // 6 + bh), (40, 160, 230), -1)
        cx = int(w / 2 + w / 4 * math.cos(t * 1.3))
        cy = int(h / 2 + h / 4 * math.sin(t * 1.3))
        cv2.circle(img, (cx, cy), min(w, h) // 10, (80, 200, 80), -1)
        y = int((h - s) * ((t * 0.25) % 1.0))
        cv2.rectangle(img, (0, y), (w - 1, y + s), (220, 220, 220), -1)
        scale = max(0.4, h / 720)
        clock = time.strftime("%H:%M:%S") + f".{int(time.time() * 10) % 10}"
        for text, row in ((f"edgecam test pattern  {clock}", 1), (f"frame {n}", 2)):
            org = (10, int(row * 34 * scale + 6))
            cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 4, cv2.LINE_AA)
            cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
        return img

    def close(self) -> None:
        self._closed.set()

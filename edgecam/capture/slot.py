"""Frame (pixels + when + which) and the one-frame slot between capture and inference.

The camera never waits for inference: capture ``put``s into a :class:`LatestFrameSlot`, a new frame replaces
an unread one (counted as dropped), and inference ``take``s the newest. Only a file source in
``realtime: false`` mode waits (``wait_room``) so that every decoded frame is used and none is dropped; it
queues a few frames (``put(..., queue=True)``) so that one slow frame on either side does not stall the other.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

from edgecam.capture.motion import Motion
from edgecam.capture.yuv import Yuv420

__all__ = ["Frame", "LatestFrameSlot"]


class Frame:
    """One captured picture.

    ``image`` is BGR uint8 HxWx3 at display size. A source may hand over a :class:`Yuv420` picture
    instead: ``image`` then converts it on first use (and keeps the result), so frames nobody draws, streams
    or records are never converted. ``lores`` is an optional smaller BGR copy for detection (picamera2's lores
    stream, or the model's picture made by the capture thread). ``timestamp`` is ``time.monotonic()`` at
    capture; ``sequence`` counts the frames of one capture source from 1 and never repeats within a run
    (reconnects continue the count). ``motion`` is the capture thread's motion verdict, or None when motion
    detection is off (then every frame is worth a detection).
    """

    __slots__ = ("_pixels", "lores", "motion", "sequence", "timestamp")

    def __init__(
        self,
        image: np.ndarray | Yuv420,
        timestamp: float,
        sequence: int,
        lores: np.ndarray | None = None,
        motion: Motion | None = None,
    ) -> None:
        self._pixels = image
        self.timestamp = timestamp
        self.sequence = sequence
        self.lores = lores
        self.motion = motion

    @property
    def image(self) -> np.ndarray:
        pixels = self._pixels
        return pixels if isinstance(pixels, np.ndarray) else pixels.bgr()

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of ``image``."""
        pixels = self._pixels
        if isinstance(pixels, np.ndarray):
            return int(pixels.shape[1]), int(pixels.shape[0])
        return pixels.size

    def __repr__(self) -> str:
        return f"Frame(#{self.sequence}, t={self.timestamp:.3f}, {self.size[0]}x{self.size[1]})"


class LatestFrameSlot:
    """One slot between capture and inference: a new frame replaces an unread one (a drop, counted).

    A producer that must not drop (a file read in lockstep) queues instead: ``wait_room(depth)``, then
    ``put(frame, queue=True)``; ``take`` hands queued frames out oldest first.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._frames: deque[Frame] = deque()  # unread frames, oldest first (one unless queued)
        self._closed = False
        self._dropped = 0
        self._delivered = 0
        self._latest_timestamp: float | None = None

    def put(self, frame: Frame, queue: bool = False) -> None:
        """Offer ``frame``; it replaces unread frames (counted in ``dropped``), or with ``queue`` goes after
        them (the producer bounds the queue with ``wait_room``). Ignored once closed."""
        with self._cond:
            if self._closed:
                return
            if not queue and self._frames:
                self._dropped += len(self._frames)
                self._frames.clear()
            self._frames.append(frame)
            self._latest_timestamp = frame.timestamp
            self._cond.notify_all()

    def take(self, timeout: float | None = None) -> Frame | None:
        """Return the oldest unread frame (the newest, unless frames were queued), waiting up to ``timeout`` s
        (forever if None).

        Returns None on timeout or once the slot is closed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._frames and not self._closed:
                if deadline is None:
                    self._cond.wait()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    self._cond.wait(remaining)
            if self._closed:
                return None
            frame = self._frames.popleft()
            self._delivered += 1
            self._cond.notify_all()  # wakes a producer in wait_room()
            return frame

    def wait_room(self, depth: int = 1, timeout: float | None = None) -> bool:
        """Block until fewer than ``depth`` frames are unread (``depth`` 1: the last ``put`` was taken).

        True once there is room (immediately so if there is); False on timeout or when closed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while len(self._frames) >= depth and not self._closed:
                if deadline is None:
                    self._cond.wait()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)
            return len(self._frames) < depth and not self._closed

    def close(self) -> None:
        """Refuse further frames and wake every waiter (``take`` returns None, ``wait_room`` False)."""
        with self._cond:
            self._closed = True
            self._frames.clear()
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def dropped(self) -> int:
        """Frames replaced before anyone took them."""
        return self._dropped

    @property
    def delivered(self) -> int:
        """Frames taken."""
        return self._delivered

    @property
    def latest_timestamp(self) -> float | None:
        """Timestamp of the newest frame put (taken or not)."""
        return self._latest_timestamp

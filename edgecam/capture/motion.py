"""A cheap motion detector for the capture thread: is anything moving in this frame?

Each frame is shrunk to a small grey copy (``width`` px wide, 160 by default: ~0.15 ms for a 720p frame),
blurred, and compared with a running-average background. Pixels that differ by more than ``threshold``
grey levels (0-255) and lie outside every mask polygon are "moving"; the frame moves when they cover at
least ``min_area`` of the (unmasked) picture. The background follows the scene (``learn_rate`` per frame),
so a light change or an object that came to rest stops counting as motion after a few seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edgecam.vision import cv2

__all__ = ["Motion", "MotionDetector", "MotionSettings"]

Point = tuple[float, float]


@dataclass(frozen=True)
class MotionSettings:
    """The ``motion`` config section, as the capture thread needs it."""

    enabled: bool = True
    threshold: int = 25  # grey-level difference (0-255) that counts as a change
    min_area: float = 0.002  # fraction of the (unmasked) frame that must change
    masks: tuple[tuple[Point, ...], ...] = ()  # polygons, normalized 0..1, where motion is ignored
    width: int = 160  # width of the grey copy the detector works on
    learn_rate: float = 0.05  # background update per frame (0.05 at 15 fps: a new still scene in ~3 s)
    boxes: bool = True  # also find the moving areas (for motion.draw); the verdict alone costs ~40 % less


@dataclass(frozen=True, slots=True)
class Motion:
    """The motion detector's verdict on one frame. ``boxes`` are the moving areas, normalized (x1, y1,
    x2, y2) 0..1, at most a few, largest first (empty unless the settings ask for them); ``area`` is the
    moving fraction of the frame."""

    moving: bool
    area: float
    boxes: tuple[tuple[float, float, float, float], ...] = field(default=())


class MotionDetector:
    """Not thread-safe: the capture thread owns it. ``settings`` may be replaced between frames."""

    MAX_BOXES = 8

    def __init__(self, settings: MotionSettings | None = None) -> None:
        self._settings = settings or MotionSettings()
        self._background: np.ndarray | None = None  # float32 running average
        self._shape: tuple[int, int] | None = None  # (h, w) of the frames seen
        self._keep: np.ndarray | None = None  # uint8 255 where motion counts (outside the masks)
        self._counted = 1
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))

    @property
    def settings(self) -> MotionSettings:
        return self._settings

    @settings.setter
    def settings(self, settings: MotionSettings) -> None:
        if settings.width != self._settings.width or settings.masks != self._settings.masks:
            self._shape = None  # rebuild the small size and the mask on the next frame
        self._settings = settings

    def reset(self) -> None:
        """Forget the background (after a reconnect or a jump in the scene)."""
        self._background = None

    def _prepare(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        small_w = max(8, min(self._settings.width, w))
        small_h = max(8, round(h * small_w / w))
        self._shape = (h, w)
        self._small = (small_w, small_h)
        keep = np.full((small_h, small_w), 255, np.uint8)
        for polygon in self._settings.masks:
            pts = np.array([(x * small_w, y * small_h) for x, y in polygon], np.float32)
            cv2.fillPoly(keep, [np.round(pts).astype(np.int32)], 0)
        self._keep = None if keep.all() else keep
        self._counted = max(1, int(np.count_nonzero(keep)))
        self._background = None

    def grey(self, image: np.ndarray) -> np.ndarray:
        """The small blurred grey copy the detector compares (one resize of the full frame, then tiny ops)."""
        if self._shape != image.shape[:2]:
            self._prepare(image)
        small = cv2.resize(image, self._small, interpolation=cv2.INTER_LINEAR)
        if small.ndim == 3:
            small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        return cv2.GaussianBlur(small, (5, 5), 0)

    def update(self, image: np.ndarray) -> Motion:
        """Judge ``image`` (BGR or grey, any size) against the background, then learn it."""
        s = self._settings
        grey = self.grey(image)
        if self._background is None:
            self._background = grey.astype(np.float32)
            return Motion(True, 1.0)  # nothing to compare with yet: treat as motion (detect)
        diff = cv2.absdiff(grey, cv2.convertScaleAbs(self._background))
        _, changed = cv2.threshold(diff, s.threshold, 255, cv2.THRESH_BINARY)
        if self._keep is not None:
            cv2.bitwise_and(changed, self._keep, dst=changed)
        cv2.accumulateWeighted(grey, self._background, s.learn_rate)
        count = cv2.countNonZero(changed)
        area = count / self._counted
        if area < s.min_area:
            return Motion(False, area)
        if not s.boxes:
            return Motion(True, area)
        changed = cv2.dilate(changed, self._kernel, iterations=2)
        n, _, stats, _ = cv2.connectedComponentsWithStats(changed, connectivity=8)
        small_w, small_h = self._small
        order = np.argsort(-stats[1:, cv2.CC_STAT_AREA])[: self.MAX_BOXES] + 1 if n > 1 else []
        boxes = tuple(
            (
                float(stats[i, 0]) / small_w,
                float(stats[i, 1]) / small_h,
                float(stats[i, 0] + stats[i, 2]) / small_w,
                float(stats[i, 1] + stats[i, 3]) / small_h,
            )
            for i in order
        )
        return Motion(True, area, boxes)


def normalized_masks(masks: Sequence[Sequence[Sequence[float]]]) -> tuple[tuple[Point, ...], ...]:
    """Config polygons ([[x, y], …]) as the hashable tuples ``MotionSettings`` holds."""
    return tuple(tuple((float(p[0]), float(p[1])) for p in polygon) for polygon in masks)

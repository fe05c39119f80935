"""Drawing motion on an output frame (``motion.draw``): the moving areas the capture thread found, the
masks where motion is ignored, and a small "motion" / "still" tag. Boxes and masks are normalized 0..1."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from edgecam.capture.motion import Motion
from edgecam.infer.result import OutputFrame
from edgecam.vision import cv2

MOTION_COLOUR = (0, 200, 255)  # BGR orange-yellow
MASK_COLOUR = (128, 128, 128)


def draw_motion(
    image: np.ndarray, motion: Motion | None, masks: Sequence[Sequence[tuple[float, float]]] = ()
) -> None:
    """Draw in place: mask outlines (dashed look: thin grey), moving areas (thin boxes), a state tag."""
    h, w = image.shape[:2]
    scale = max(0.4, h / 720)
    thickness = max(1, round(scale))
    for polygon in masks:
        pts = np.array([(x * w, y * h) for x, y in polygon], np.float32).round().astype(np.int32)
        cv2.polylines(image, [pts], True, MASK_COLOUR, thickness, cv2.LINE_AA)
    if motion is None:
        return
    for x1, y1, x2, y2 in motion.boxes:
        cv2.rectangle(
            image, (round(x1 * w), round(y1 * h)), (round(x2 * w), round(y2 * h)), MOTION_COLOUR, thickness
        )
    text = f"motion {100 * motion.area:.1f}%" if motion.moving else "still"
    font_scale = 0.5 * scale
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
    x, y = w - tw - 8, h - 8
    cv2.rectangle(image, (x - 4, y - th - base), (x + tw + 4, y + base), (0, 0, 0), cv2.FILLED)
    colour = MOTION_COLOUR if motion.moving else (200, 200, 200)
    cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, font_scale, colour, thickness, cv2.LINE_AA)


class MotionLayer:
    """Wraps an annotator: draws motion under its drawing when ``enabled()`` says so (checked per frame,
    so ``motion.draw`` applies live)."""

    def __init__(
        self,
        annotate: Callable[[OutputFrame], None],
        enabled: Callable[[], bool],
        masks: Callable[[], Sequence[Sequence[tuple[float, float]]]],
    ) -> None:
        self.annotate = annotate
        self._enabled = enabled
        self._masks = masks

    def __call__(self, output: OutputFrame) -> None:
        if self._enabled():
            draw_motion(output.image, output.frame.motion, self._masks())
        self.annotate(output)

"""Drawing on output frames: boxes with label, score and track id (a colour per class), and a HUD."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np

from edgecam.vision import cv2

FONT = cv2.FONT_HERSHEY_SIMPLEX
# Tableau-like palette in BGR; a class keeps its colour across frames and runs.
_PALETTE = (
    (180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148),
    (75, 86, 140), (194, 119, 227), (34, 189, 188), (207, 190, 23), (127, 127, 127),
)  # fmt: skip


class Boxed(Protocol):
    """Anything with a label, score and a box in frame pixels (detections and labelled tracks)."""

    label: str
    score: float
    box: tuple[float, float, float, float]


def class_colour(class_id: int) -> tuple[int, int, int]:
    return _PALETTE[class_id % len(_PALETTE)]


def _scale(image: np.ndarray) -> float:
    """Text and line size follow the frame height, so 480p and 1080p look alike."""
    return max(0.4, image.shape[0] / 720)


def draw_box(image: np.ndarray, box: Sequence[float], caption: str, colour: tuple[int, int, int]) -> None:
    s = _scale(image)
    thickness = max(1, round(2 * s))
    x1, y1, x2, y2 = (round(v) for v in box)
    cv2.rectangle(image, (x1, y1), (x2, y2), colour, thickness, cv2.LINE_AA)
    font_scale = 0.5 * s
    (tw, th), baseline = cv2.getTextSize(caption, FONT, font_scale, max(1, thickness // 2))
    top = y1 - th - baseline - 2 if y1 - th - baseline - 2 >= 0 else y1
    cv2.rectangle(image, (x1, top), (x1 + tw + 4, top + th + baseline + 2), colour, cv2.FILLED)
    cv2.putText(
        image,
        caption,
        (x1 + 2, top + th + 1),
        FONT,
        font_scale,
        (255, 255, 255),
        max(1, thickness // 2),
        cv2.LINE_AA,
    )


def draw_detections(
    image: np.ndarray, detections: Iterable[Boxed], ids: Iterable[int | None] | None = None
) -> None:
    """Draw each object; with ``ids``, each caption carries its track id (``#12 person 0.81``)."""
    ids_iter = iter(ids) if ids is not None else None
    for obj in detections:
        track_id = next(ids_iter) if ids_iter is not None else None
        prefix = f"#{track_id} " if track_id is not None else ""
        class_id = getattr(obj, "class_id", 0)
        draw_box(image, obj.box, f"{prefix}{obj.label} {obj.score:.2f}", class_colour(class_id))


def draw_hud(image: np.ndarray, lines: Sequence[str]) -> None:
    """Status lines in the top-left corner on a translucent band."""
    s = _scale(image)
    font_scale, thickness = 0.5 * s, max(1, round(s))
    line_h = round(22 * s)
    width = max((cv2.getTextSize(text, FONT, font_scale, thickness)[0][0] for text in lines), default=0) + 12
    height = line_h * len(lines) + 8
    band = image[0:height, 0:width]
    band //= 2  # darken in place: readable on any scene, no extra full-frame copy
    for i, text in enumerate(lines):
        cv2.putText(
            image, text, (6, line_h * (i + 1)), FONT, font_scale, (255, 255, 255), thickness, cv2.LINE_AA
        )

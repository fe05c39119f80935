"""Zones and lines on an output frame: outlines with name and occupancy, lines with their counts and an
arrow towards the ``in`` side. Geometry comes from the config, numbers from ``ZoneCounter.status()``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgecam.config.events import LineConfig, ZoneConfig
from edgecam.vision import cv2

ZONE_COLOUR = (0, 215, 255)  # BGR amber
LINE_COLOUR = (255, 0, 255)  # magenta


def draw_areas(
    image: np.ndarray, zones: Sequence[ZoneConfig], lines: Sequence[LineConfig], state: dict[str, Any]
) -> None:
    """``state`` is ``ZoneCounter.status()`` for the same zones and lines (same order)."""
    if not zones and not lines:
        return
    h, w = image.shape[:2]
    scale = max(0.4, h / 720)
    thickness = max(1, round(2 * scale))
    for zone, zone_state in zip(zones, state.get("zones", []), strict=False):
        pts = np.array([(x * w, y * h) for x, y in zone.points], np.int32)
        cv2.polylines(image, [pts], True, ZONE_COLOUR, thickness, cv2.LINE_AA)
        top = pts[np.argmin(pts[:, 1])]
        text = f"{zone_state['name']}: {zone_state['occupancy']}"
        _label(image, text, (int(top[0]), int(top[1])), ZONE_COLOUR, scale)
    for line, line_state in zip(lines, state.get("lines", []), strict=False):
        (ax, ay), (bx, by) = line.points[0], line.points[1]
        a, b = np.array([ax * w, ay * h]), np.array([bx * w, by * h])
        cv2.line(image, _px(a), _px(b), LINE_COLOUR, thickness, cv2.LINE_AA)
        mid = (a + b) / 2
        normal = np.array([-(b[1] - a[1]), b[0] - a[0]])
        normal /= max(1e-9, float(np.hypot(*normal)))
        tip = mid + normal * 30 * scale
        cv2.arrowedLine(image, _px(mid), _px(tip), LINE_COLOUR, thickness, cv2.LINE_AA, tipLength=0.35)
        text = f"{line_state['name']}: in {line_state['in']} out {line_state['out']}"
        _label(image, text, _px(mid - normal * 8 * scale), LINE_COLOUR, scale)


def _px(p: np.ndarray) -> tuple[int, int]:
    return round(float(p[0])), round(float(p[1]))


def _label(
    image: np.ndarray, text: str, at: tuple[int, int], colour: tuple[int, int, int], scale: float
) -> None:
    font, font_scale, thickness = cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, max(1, round(scale))
    (tw, th), base = cv2.getTextSize(text, font, font_scale, thickness)
    h, w = image.shape[:2]
    x = min(max(0, at[0]), max(0, w - tw - 4))
    y = min(max(th + base + 2, at[1] - 4), h - 2)
    cv2.rectangle(image, (x, y - th - base - 2), (x + tw + 4, y + 2), colour, cv2.FILLED)
    cv2.putText(image, text, (x + 2, y - base), font, font_scale, (0, 0, 0), thickness, cv2.LINE_AA)

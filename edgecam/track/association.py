"""Vectorised box overlap and gated Hungarian assignment."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between boxes a (N, 4) and b (M, 4), both x1, y1, x2, y2; returns (N, M)."""
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros((a.shape[0], b.shape[0]))
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return inter / np.maximum(union, 1e-9)


def assign(
    score: np.ndarray, min_score: float, gate: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-total-score matching; pairs below min_score are never matched.

    With `gate` (same shape, e.g. the IoU when `score` is IoU plus a motion term), pairs are admitted by
    gate >= min_score instead, and every admitted pair must have a positive score.
    Returns (rows, cols) of accepted pairs.
    """
    empty = np.empty(0, dtype=np.intp)
    if score.size == 0:
        return empty, empty
    ok = (score if gate is None else gate) >= min_score
    rows, cols = linear_sum_assignment(np.where(ok, score, 0.0), maximize=True)
    keep = ok[rows, cols]
    return rows[keep], cols[keep]


def direction_cost(
    direction: np.ndarray,
    confidence: np.ndarray,
    origin: np.ndarray,
    centres: np.ndarray,
    noise: np.ndarray | float = 0.0,
) -> np.ndarray:
    """OC-SORT's direction consistency, (N, M) in [-0.5, 0.5].

    For track i moving along the unit vector direction[i] (measured between its observations k frames
    apart) and detection j, the cost is (pi/2 - angle) / pi, where angle is between direction[i] and the
    vector from the track's observation k frames back (origin[i]) to the detection centre (centres[j]):
    +0.5 straight ahead, -0.5 straight back. It is scaled by the track's confidence[i] in its direction
    (0 for tracks without one) and by d / (d + noise[i]), d the distance from origin[i] to centres[j], so a
    detection within the noise of the track's position has no say on direction.
    """
    dx = centres[None, :, 0] - origin[:, None, 0]
    dy = centres[None, :, 1] - origin[:, None, 1]
    dist = np.sqrt(dx * dx + dy * dy)
    cos = (direction[:, None, 0] * dx + direction[:, None, 1] * dy) / (dist + 1e-6)
    np.clip(cos, -1.0, 1.0, out=cos)
    cost = (0.5 * np.pi - np.arccos(cos)) / np.pi
    cost *= confidence[:, None] * (dist / (dist + np.reshape(noise, (-1, 1)) + 1e-6))
    return cost


def buffered_iou(a: np.ndarray, buffer: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between boxes a (N, 4) and b (M, 4), both cx, cy, w, h, after both boxes of pair (i, j) are
    widened by buffer[i] times their own width and height on every side (C-BIoU's buffered IoU)."""
    grow = 1.0 + 2.0 * np.reshape(buffer, (-1, 1))
    aw, ah = a[:, None, 2] * grow, a[:, None, 3] * grow
    bw, bh = b[None, :, 2] * grow, b[None, :, 3] * grow
    ix = np.minimum(a[:, None, 0] + aw / 2, b[None, :, 0] + bw / 2) - np.maximum(
        a[:, None, 0] - aw / 2, b[None, :, 0] - bw / 2
    )
    iy = np.minimum(a[:, None, 1] + ah / 2, b[None, :, 1] + bh / 2) - np.maximum(
        a[:, None, 1] - ah / 2, b[None, :, 1] - bh / 2
    )
    inter = np.clip(ix, 0, None) * np.clip(iy, 0, None)
    union = aw * ah + bw * bh - inter
    return inter / np.maximum(union, 1e-9)

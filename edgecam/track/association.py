"""Vectorised box overlap and gated Hungarian assignment."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between boxes a (N, 4) and b (M, 4), both x1, y1, x2, y2; returns (N, M)."""
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros((a.shape[0], b.shape[0]))
    # At a few dozen boxes each (N, M) operation costs mostly call overhead, so they are kept few and done
    # in place where possible (np.maximum(x, 0) is what np.clip(x, 0, None) runs, without its wrapper).
    iw = np.minimum(a[:, None, 2], b[None, :, 2])
    iw -= np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3])
    ih -= np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(iw, 0.0, out=iw)
    inter *= np.maximum(ih, 0.0, out=ih)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :]
    union -= inter
    inter /= np.maximum(union, 1e-9, out=union)
    return inter


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
    if not ok.any():  # nothing admissible: skip the solver (its answer would be dropped whole)
        return empty, empty
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


def buffered_iou(a: np.ndarray, buffer: np.ndarray | float, b: np.ndarray) -> np.ndarray:
    """IoU between boxes a (N, 4) and b (M, 4), both cx, cy, w, h, after both boxes of pair (i, j) are
    widened by buffer[i] times their own width and height on every side (C-BIoU's buffered IoU)."""
    grow = 1.0 + 2.0 * np.reshape(buffer, (-1, 1, 1))
    # Widened sizes and edges, (x, y) in the last axis: (N, 1, 2) for a; (1, M, 2) for b, or (N, M, 2)
    # with a buffer per track. Then, as in iou_matrix, few (N, M) operations, in place.
    a_size = a[:, None, 2:4] * grow
    b_size = b[None, :, 2:4] * grow
    a_half, b_half = a_size / 2, b_size / 2
    a_lo, a_hi = a[:, None, 0:2] - a_half, a[:, None, 0:2] + a_half
    b_lo, b_hi = b[None, :, 0:2] - b_half, b[None, :, 0:2] + b_half
    iw = np.minimum(a_hi[..., 0], b_hi[..., 0])
    iw -= np.maximum(a_lo[..., 0], b_lo[..., 0])
    ih = np.minimum(a_hi[..., 1], b_hi[..., 1])
    ih -= np.maximum(a_lo[..., 1], b_lo[..., 1])
    inter = np.maximum(iw, 0.0, out=iw)
    inter *= np.maximum(ih, 0.0, out=ih)
    union = a_size[..., 0] * a_size[..., 1] + b_size[..., 0] * b_size[..., 1]
    union -= inter
    inter /= np.maximum(union, 1e-9, out=union)
    return inter

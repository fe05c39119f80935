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


def assign(score: np.ndarray, min_score: float) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-total-score matching; pairs below min_score are never matched.

    Returns (rows, cols) of accepted pairs.
    """
    empty = np.empty(0, dtype=np.intp)
    if score.size == 0:
        return empty, empty
    gated = np.where(score >= min_score, score, 0.0)
    rows, cols = linear_sum_assignment(gated, maximize=True)
    keep = score[rows, cols] >= min_score
    return rows[keep], cols[keep]

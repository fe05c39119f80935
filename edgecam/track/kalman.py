"""Batched constant-velocity Kalman filter on boxes as (cx, cy, w, h).

State per track: (cx, cy, w, h, vcx, vcy, vw, vh), velocities in pixels per nominal frame. Noise scales
with the box size (as in ByteTrack / BoT-SORT), so the same settings work for near and far objects.
All functions work on stacks of tracks at once: means (N, 8) and covariances (N, 8, 8).
"""

from __future__ import annotations

import numpy as np

STD_POS = 1.0 / 20.0
STD_VEL = 1.0 / 160.0
STD_MEAS = 1.0 / 20.0

_EYE4 = np.eye(4)


def xyxy_to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    out = np.empty_like(boxes, dtype=float)
    out[..., 0] = (boxes[..., 0] + boxes[..., 2]) * 0.5
    out[..., 1] = (boxes[..., 1] + boxes[..., 3]) * 0.5
    out[..., 2] = boxes[..., 2] - boxes[..., 0]
    out[..., 3] = boxes[..., 3] - boxes[..., 1]
    return out


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    out = np.empty_like(boxes, dtype=float)
    half_w = boxes[..., 2] * 0.5
    half_h = boxes[..., 3] * 0.5
    out[..., 0] = boxes[..., 0] - half_w
    out[..., 1] = boxes[..., 1] - half_h
    out[..., 2] = boxes[..., 0] + half_w
    out[..., 3] = boxes[..., 1] + half_h
    return out


def _size_std(wh: np.ndarray, weight: float) -> np.ndarray:
    """(N, 4) standard deviations weight * (w, h, w, h)."""
    return weight * np.concatenate([wh, wh], axis=1)


def initiate(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """New tracks from measurements z (M, 4): zero velocity with a wide velocity prior."""
    m = z.shape[0]
    mean = np.zeros((m, 8))
    mean[:, :4] = z
    wh = np.maximum(z[:, 2:4], 1.0)
    std = np.concatenate([_size_std(wh, 2 * STD_POS), _size_std(wh, 10 * STD_VEL)], axis=1)
    cov = np.zeros((m, 8, 8))
    idx = np.arange(8)
    cov[:, idx, idx] = std**2
    return mean, cov


def predict(mean: np.ndarray, cov: np.ndarray, dt: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Advance all tracks by dt nominal frames (process noise grows with dt)."""
    if mean.shape[0] == 0:
        return mean, cov
    mean = mean.copy()
    mean[:, :4] += dt * mean[:, 4:]
    wh = np.maximum(mean[:, 2:4], 1.0)
    q = np.concatenate([_size_std(wh, STD_POS), _size_std(wh, STD_VEL)], axis=1) ** 2 * max(dt, 1e-3)
    # F P F^T for F = [[I, dt I], [0, I]] without a general matmul.
    a = cov[:, :4, :4]
    b = cov[:, :4, 4:]
    c = cov[:, 4:, :4]
    d = cov[:, 4:, 4:]
    new = np.empty_like(cov)
    new[:, :4, :4] = a + dt * (b + c) + dt * dt * d
    new[:, :4, 4:] = b + dt * d
    new[:, 4:, :4] = c + dt * d
    new[:, 4:, 4:] = d
    idx = np.arange(8)
    new[:, idx, idx] += q
    return mean, new


def update(mean: np.ndarray, cov: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Correct tracks (M, 8) with measurements z (M, 4)."""
    if mean.shape[0] == 0:
        return mean, cov
    r = _size_std(np.maximum(z[:, 2:4], 1.0), STD_MEAS) ** 2
    s = cov[:, :4, :4].copy()
    idx = np.arange(4)
    s[:, idx, idx] += r
    ph = cov[:, :4, :]  # H P, (M, 4, 8)
    gain_t = np.linalg.solve(s, ph)  # S^-1 H P = K^T since P and S are symmetric
    innovation = z - mean[:, :4]
    mean = mean + np.einsum("mij,mi->mj", gain_t, innovation)
    cov = cov - np.einsum("mij,mik->mjk", gain_t, ph)
    return mean, cov

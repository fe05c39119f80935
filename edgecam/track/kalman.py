"""Batched constant-velocity Kalman filter on boxes as (cx, cy, w, h).

State per track: (cx, cy, w, h, vcx, vcy, vw, vh), velocities in pixels per nominal frame. Noise scales
with the box size (as in ByteTrack / BoT-SORT), so the same settings work for near and far objects.

With a constant-velocity model, H = [I 0] and diagonal noise, the four coordinates never become
correlated, so the 8x8 covariance is block diagonal with one 2x2 (position, velocity) block per
coordinate. We store just those blocks as `cov` (N, 3, 4): rows var(pos), cov(pos, vel), var(vel), one
column per coordinate. That makes predict and update a handful of element-wise array operations over all
tracks at once, with no matrix inverse (the exact same filter as the full 8x8 form).
"""

from __future__ import annotations

import numpy as np

NOMINAL_FRAME_RATE = 30.0  # the frame rate the noise levels below are tuned for (per frame)
STD_POS = 1.0 / 20.0
STD_VEL = 1.0 / 160.0
STD_MEAS = 1.0 / 20.0


def xyxy_to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    out = np.empty(boxes.shape, dtype=float)
    out[..., :2] = (boxes[..., :2] + boxes[..., 2:4]) * 0.5
    out[..., 2:4] = boxes[..., 2:4] - boxes[..., :2]
    return out


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    out = np.empty(boxes.shape, dtype=float)
    half = boxes[..., 2:4] * 0.5
    out[..., :2] = boxes[..., :2] - half
    out[..., 2:4] = boxes[..., :2] + half
    return out


def _wh4(wh: np.ndarray) -> np.ndarray:
    """(N, 4) box scale per coordinate: (w, h, w, h), at least 1 pixel."""
    wh = np.maximum(wh, 1.0)
    return np.concatenate([wh, wh], axis=1)


def initiate(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """New tracks from measurements z (M, 4): zero velocity with a wide velocity prior."""
    m = z.shape[0]
    mean = np.zeros((m, 8))
    mean[:, :4] = z
    scale2 = _wh4(z[:, 2:4]) ** 2
    cov = np.zeros((m, 3, 4))
    cov[:, 0] = (2 * STD_POS) ** 2 * scale2
    cov[:, 2] = (10 * STD_VEL) ** 2 * scale2
    return mean, cov


def predict(
    mean: np.ndarray, cov: np.ndarray, dt: float = 1.0, std_pos: float = STD_POS, std_vel: float = STD_VEL
) -> None:
    """Advance all tracks by dt nominal frames, in place (process noise grows with dt).

    mean (N, 8) and cov (N, 3, 4) may be views into a larger array.
    """
    mean[:, :4] += dt * mean[:, 4:]
    scale2 = _wh4(mean[:, 2:4]) ** 2 * max(dt, 1e-3)
    pp, pv, vv = cov[:, 0], cov[:, 1], cov[:, 2]
    pp += (2 * dt) * pv + (dt * dt) * vv + std_pos**2 * scale2
    pv += dt * vv
    vv += std_vel**2 * scale2


def update(
    mean: np.ndarray, cov: np.ndarray, z: np.ndarray, std_meas: float = STD_MEAS
) -> tuple[np.ndarray, np.ndarray]:
    """Correct tracks (M, 8) with measurements z (M, 4). Returns new arrays."""
    pp, pv, vv = cov[:, 0], cov[:, 1], cov[:, 2]
    s = pp + std_meas**2 * _wh4(z[:, 2:4]) ** 2
    k_pos = pp / s
    k_vel = pv / s
    innovation = z - mean[:, :4]
    mean = np.concatenate([mean[:, :4] + k_pos * innovation, mean[:, 4:] + k_vel * innovation], axis=1)
    new = np.empty_like(cov)
    new[:, 0] = (1.0 - k_pos) * pp
    new[:, 1] = (1.0 - k_pos) * pv
    new[:, 2] = vv - k_vel * pv
    return mean, new


def reupdate_line(
    mean: np.ndarray,
    cov: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    steps: int,
    std_pos: float = STD_POS,
    std_vel: float = STD_VEL,
    dt: float = 1.0,
    std_meas: float = STD_MEAS,
) -> tuple[np.ndarray, np.ndarray]:
    """Run `steps` predict(dt)+update cycles of one track with observations on the line start -> end.

    OC-SORT's observation-centric re-update. The same arithmetic as `predict` + `update`, written on
    Python floats because it handles one track at a time, where numpy's per-call overhead dominates.
    """
    x = mean.tolist()
    pp, pv, vv = (row.tolist() for row in cov)
    a = start.tolist()
    b = end.tolist()
    qp, qv, rm = std_pos * std_pos * dt, std_vel * std_vel * dt, std_meas * std_meas
    dt2 = dt * dt
    for step in range(1, steps + 1):
        frac = step / steps
        for i in range(4):
            x[i] += dt * x[i + 4]
        sw, sh = max(x[2], 1.0), max(x[3], 1.0)
        zw, zh = max(a[2] + frac * (b[2] - a[2]), 1.0), max(a[3] + frac * (b[3] - a[3]), 1.0)
        for i in range(4):
            s2 = (sw if i % 2 == 0 else sh) ** 2
            p = pp[i] + 2 * dt * pv[i] + dt2 * vv[i] + qp * s2
            c, v = pv[i] + dt * vv[i], vv[i] + qv * s2
            s = p + rm * (zw if i % 2 == 0 else zh) ** 2
            kp, kv = p / s, c / s
            innovation = a[i] + frac * (b[i] - a[i]) - x[i]
            x[i] += kp * innovation
            x[i + 4] += kv * innovation
            pp[i], pv[i], vv[i] = (1.0 - kp) * p, (1.0 - kp) * c, v - kv * c
    return np.array(x), np.array([pp, pv, vv])

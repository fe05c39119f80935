"""Kalman-filtered multi-object tracker with ByteTrack-style two-stage association.

Per frame: optionally move every track by the camera motion the caller measured (BoT-SORT's camera-motion
compensation); predict every track; match confident detections to confirmed and lost tracks by IoU with the
predicted boxes, optionally plus OC-SORT's direction-consistency term (is the detection where the track has
been heading, measured between observations `direction_lag_s` apart?); match low-score detections to the
remaining recently seen confirmed tracks (ByteTrack); match confident detections still left to the last
observed box of unmatched tracks (OC-SORT's observation-centric recovery); match the rest to tentative
tracks; start tentative tracks from what remains. A track matched again after missed frames has its filter
re-run along a straight line between its last and new observation (OC-SORT's observation-centric
re-update), so the velocity it coasted on while unseen does not linger. Two gates keep matches from
jumping between people: box heights must agree within `max_height_ratio`, and the overlap is taken
between boxes widened by `match_buffer` (C-BIoU), which tolerates motion error in proportion to box size.

With `scene_motion` the tracker also follows the motion every track shares, which is what a moving camera
adds when nobody passes `camera_motion`: each frame the median change of the matched tracks' velocities is
taken as the scene's change of velocity, if it stands out from their spread (SCENE_Z standard errors; with
a fixed camera it rarely does, so the estimate barely moves). Unseen tracks are moved by how much the
scene's velocity changed since they were last matched, so a track lost while the camera turns is looked for
where the camera took it, not where its old velocity leads; a scene acceleration seen in two frames in a row
is carried into every track's next prediction (a turning camera keeps turning for a while).

With `scene_shift`, a jolt of the camera (hand-held, or on a vehicle), which no velocity foresees, is
measured before matching: the median offset between steady tracks and their nearest confident detections,
if it stands out from their spread and lines up more of them with a detection. Every track, seen or not, is
moved by it alike before matching; with `scene_motion`, a fifth of it also counts as a change of the scene's
velocity (a shift that comes back frame after frame is the camera turning).

All track data lives in one float array, one row per track (columns below), so each step is a few
vectorised numpy operations whatever the number of tracks, and removing tracks is a single mask.
"""

from __future__ import annotations

import math
from itertools import repeat

import numpy as np

from . import kalman
from .association import assign, buffered_iou, direction_cost, iou_matrix
from .settings import TrackerSettings, validate_frame_rate
from .types import Track, TrackEvent, TrackState

_EPS_T = 1e-6
TENTATIVE, CONFIRMED, LOST = 0.0, 1.0, 2.0
# Scene motion: the median velocity change of at least SCENE_MIN_TRACKS tracks matched in consecutive
# frames counts, per axis, only if it exceeds SCENE_Z standard errors of that median (1.4826 * MAD /
# sqrt(n)). Only tracks with SCENE_MIN_HITS matches or more take part (confirmed ones, at the default
# min_hits), so a velocity has been measured. (Waiting for 6 matches, until it has settled, did no better
# on the dev split: bench/mot.py --loo --pan.)
SCENE_MIN_TRACKS = 3
SCENE_MIN_HITS = 3
SCENE_Z = 3.0
# Shared shift (scene_shift): a steady track's nearest confident detection counts within SHIFT_RADIUS box
# heights; the shift is kept if more steady tracks then overlap a detection by SHIFT_ALIGNED_IOU (about how
# well a right prediction overlaps its detection frame to frame). In bench/mot.py's sweeps, 0.5 let small
# jolts pass unnoticed (shaken copies: 288 switches against 237); 0.8 did about as well as 0.7 (1001 against
# 1016 switches over all the proxies, 229 against 224 with 30 % of the detections missing).
# Every track is moved by the shift alike; with scene_motion, SHIFT_VELOCITY_GAIN of it is also taken as a
# change of the scene's velocity: a shift seen frame after frame is the camera turning, which is then learnt
# within about five frames, and a single jolt costs a small velocity error that the next frames take back.
# (Over the proxies of bench/mot.py, a gain of 0.1 or 0.35 gave 15 and 10 more switches than 0.2; 0 gave 39.)
SHIFT_RADIUS = 1.0
SHIFT_ALIGNED_IOU = 0.7
SHIFT_VELOCITY_GAIN = 0.2

# Columns of the track array.
MEAN = slice(0, 8)  # Kalman state cx cy w h vcx vcy vw vh (velocities per nominal frame)
COV = slice(8, 20)  # per-coordinate (pos, vel) covariance blocks, see kalman.py
FILTER = slice(0, 20)  # MEAN and COV
SAVED = slice(20, 40)  # MEAN and COV right after the last match (start of the re-update)
OBS = slice(40, 44)  # last matched detection, cx cy w h
CLS, STATE, ID, SCORE, HITS, FIRST_FRAME, LAST_FRAME, FIRST_SEEN, LAST_SEEN = range(44, 53)
DIR = slice(53, 55)  # unit direction of motion between observations direction_lag_s apart
DIR_CONF = 55  # confidence in DIR, 0 (unknown, or no motion beyond noise) to 1, see _direction_noise
HIST_LEN = 8  # ring of recent observation centres: slot frame % HIST_LEN holds (frame, cx, cy)
HIST = slice(56, 56 + 3 * HIST_LEN)
SCENE_V = slice(56 + 3 * HIST_LEN, 58 + 3 * HIST_LEN)  # the scene's velocity when the track was last matched
N_COLS = 58 + 3 * HIST_LEN
_CENTRES = np.array([0, 1, 20, 21, 40, 41])  # filter, saved filter and last observation: cx, cy
_XY3 = np.array([0, 1, 0, 1, 0, 1])  # an (x, y) shift repeated for the three centres of _CENTRES
_REPORT_INTS = np.array([ID, CLS, FIRST_FRAME, HITS])  # columns _report hands out as ints
_REPORT_FLOATS = np.array([SCORE, FIRST_SEEN, LAST_SEEN])

# The tracker works on a few dozen rows, where numpy's per-call overhead is most of the cost: the helpers
# below do what np.flatnonzero, np.delete and np.ix_ indexing do, with a fraction of their overhead.


def _where(mask: np.ndarray) -> np.ndarray:
    """Indices of the true entries of a 1-D mask (np.flatnonzero)."""
    return mask.nonzero()[0]


def _without(idx: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """idx without the entries at positions pos, in order (np.delete(idx, pos))."""
    keep = np.ones(idx.size, dtype=bool)
    keep[pos] = False
    return idx[keep]


def _block(sim: np.ndarray, t_idx: np.ndarray, d_idx: np.ndarray) -> np.ndarray:
    """sim[np.ix_(t_idx, d_idx)]: the rows t_idx and columns d_idx."""
    return sim.take(t_idx, axis=0).take(d_idx, axis=1)


def _match(
    sim: np.ndarray, t_idx: np.ndarray, d_idx: np.ndarray, min_iou: float
) -> tuple[np.ndarray, np.ndarray]:
    """Assign the tracks t_idx to the detections d_idx; returns positions within t_idx and d_idx."""
    if t_idx.size == 0 or d_idx.size == 0:
        empty = np.empty(0, dtype=np.intp)
        return empty, empty
    return assign(_block(sim, t_idx, d_idx), min_iou)


def _median_rows(x: np.ndarray) -> np.ndarray:
    """Median of each column of x (n >= 1 rows); a sort is cheaper than np.median on a few dozen rows."""
    x = np.sort(x, axis=0)
    n = x.shape[0]
    return 0.5 * (x[(n - 1) // 2] + x[n // 2])


def _height_mismatch(track_h: np.ndarray, det_h: np.ndarray, max_ratio: float) -> np.ndarray:
    """(N, M) mask of track/detection pairs whose box heights differ by more than a factor max_ratio."""
    ratio = track_h[:, None] / np.maximum(det_h[None, :], 1e-6)
    return (ratio > max_ratio) | (ratio * max_ratio < 1.0)


class Tracker:
    """Create with `make_tracker`; call `update` once per frame."""

    def __init__(self, frame_rate: float = 30.0, settings: TrackerSettings | None = None) -> None:
        self.frame_rate = validate_frame_rate(frame_rate)
        # The filter steps one frame at a time, and its noise levels are tuned per frame at 30 fps. A frame
        # at a lower rate spans k = 30 / frame_rate such frames: position noise scales with the elapsed
        # time (k) and the change of a per-frame velocity with time squared (k^2).
        k = kalman.NOMINAL_FRAME_RATE / self.frame_rate
        self._std_pos = kalman.STD_POS * k
        self._std_vel = kalman.STD_VEL * k * k
        self._next_id = 1
        self.settings = settings or TrackerSettings()
        self.reset()

    @property
    def settings(self) -> TrackerSettings:
        return self._settings

    @settings.setter
    def settings(self, settings: TrackerSettings) -> None:
        """Settings may be swapped between frames (config reload); derived values follow."""
        self._settings = settings
        self._lag = min(max(round(settings.direction_lag_s * self.frame_rate), 1), HIST_LEN)
        # Typical displacement of a box centre between two detections of a still object, in box heights:
        # two independent measurement errors. Directions over shorter distances are mostly noise, so the
        # direction term fades out there (for the track's own direction and towards a detection alike).
        self._direction_noise = math.sqrt(2.0) * settings.measurement_noise

    def reset(self) -> None:
        """Forget all tracks (ids keep counting up, so they are never reused)."""
        self._t = np.zeros((0, N_COLS))
        self._frame = 0
        self._time: float | None = None
        self._events: list[TrackEvent] = []
        self._dt = 1.0  # this frame's step in nominal frames
        # Scene motion (per nominal frame): the shared velocity since the start, this frame's and the last
        # frame's change of it (as rates, per nominal frame), and the acceleration fed into this prediction.
        self._scene_v = np.zeros(2)
        self._scene_a = np.zeros(2)
        self._scene_a_prev = np.zeros(2)
        self._scene_ff = np.zeros(2)
        self._scene_changed = -1  # the last frame the scene's velocity changed (-1: never)

    def __len__(self) -> int:
        """Number of live tracks (tentative, confirmed and lost)."""
        return self._t.shape[0]

    # ------------------------------------------------------------------ public API

    def pop_events(self) -> list[TrackEvent]:
        """`track_started` / `track_ended` events since the last call."""
        events, self._events = self._events, []
        return events

    def update(
        self,
        boxes_xyxy: np.ndarray,
        scores: np.ndarray,
        classes: np.ndarray | None = None,
        timestamp: float | None = None,
        *,
        camera_motion: np.ndarray | None = None,
    ) -> list[Track]:
        """Feed one frame of detections; return confirmed tracks that were matched or are coasting.

        `camera_motion`, optional: the 2x3 affine matrix that maps pixel coordinates of the previous frame
        to this one (what e.g. OpenCV's estimateAffinePartial2D gives on two small grey frames). Tracks are
        moved by it before prediction, so a panning camera does not look like every object moving. Leave it
        out for a fixed camera.
        """
        s = self.settings
        boxes = np.asarray(boxes_xyxy, dtype=float).reshape(-1, 4)
        scores = np.asarray(scores, dtype=float).reshape(-1)
        if scores.shape[0] != boxes.shape[0]:
            raise ValueError(f"update: {boxes.shape[0]} boxes but {scores.shape[0]} scores")
        if classes is None:
            cls = np.zeros(boxes.shape[0])
        else:
            cls = np.asarray(classes).reshape(-1).astype(float)
            if cls.shape[0] != boxes.shape[0]:
                raise ValueError(f"update: {boxes.shape[0]} boxes but {cls.shape[0]} classes")
        keep = scores >= s.low_score
        if not keep.all():
            boxes, scores, cls = boxes[keep], scores[keep], cls[keep]

        self._frame += 1
        now, dt = self._advance_time(timestamp)
        self._dt = dt
        self._scene_ff = np.zeros(2)
        if len(self):
            if camera_motion is not None:
                self._warp(camera_motion)
            if s.scene_motion:
                self._follow_scene(dt)
            self._predict(dt)
        t = self._t

        high = scores >= s.high_score
        hi_idx = _where(high)
        lo_idx = _where(~high)
        det = kalman.xyxy_to_cxcywh(boxes)
        if s.scene_shift and hi_idx.size >= SCENE_MIN_TRACKS:
            shift = self._measure_shift(det[hi_idx], cls[hi_idx])
            if shift is not None:  # a jolt every track shares: move them all alike
                self._move(np.arange(len(self)), shift)
                if s.scene_motion:  # and a part of it may be the camera starting to turn
                    self._learn_shift(SHIFT_VELOCITY_GAIN * shift)
        state = t[:, STATE]
        # One IoU matrix for the predicted boxes (buffered IoU if match_buffer > 0), used by stages 1 to 3;
        # pairs of different classes, or whose heights differ by more than max_height_ratio, never match.
        if s.match_buffer > 0:
            sim = buffered_iou(t[:, 0:4], s.match_buffer, det)
        else:
            sim = iou_matrix(kalman.cxcywh_to_xyxy(t[:, 0:4]), boxes)
        # (np.putmask: a fraction of the cost of sim[mask] = 0.0 at this size.)
        if s.max_height_ratio > 0 and sim.size:
            np.putmask(sim, _height_mismatch(t[:, 3], det[:, 3], s.max_height_ratio), 0.0)
        if s.class_aware and sim.size:
            np.putmask(sim, t[:, CLS, None] != cls[None, :], 0.0)

        match_t: list[np.ndarray] = []
        match_d: list[np.ndarray] = []
        matched = np.zeros(len(self), dtype=bool)
        # Where each track's direction is measured from (only needed for the direction term; without it the
        # last observation will do for keeping DIR current).
        origin = self._origins() if s.direction_weight > 0 else t[:, 40:42]
        # Stage 1: confident detections against confirmed and lost tracks, by IoU plus direction consistency.
        t_idx = _where(state != TENTATIVE)
        if s.direction_weight > 0 and t_idx.size and hi_idx.size:
            iou = _block(sim, t_idx, hi_idx)
            centres = (boxes[hi_idx, 0:2] + boxes[hi_idx, 2:4]) * 0.5
            cost = direction_cost(
                t[t_idx, DIR], t[t_idx, DIR_CONF], origin[t_idx], centres, self._direction_noise * t[t_idx, 3]
            )
            # The term lies in [-w/2, w/2]; shifting it by w/2 keeps every admitted pair's score positive.
            score = iou + s.direction_weight * (cost * scores[None, hi_idx] + 0.5)
            rows, cols = assign(score, s.match_iou, gate=iou)
        else:
            rows, cols = _match(sim, t_idx, hi_idx, s.match_iou)
        match_t.append(t_idx[rows])
        match_d.append(hi_idx[cols])
        hi_left = _without(hi_idx, cols)
        matched[t_idx[rows]] = True
        # Stage 2: low-score detections against confirmed tracks still unmatched (not lost ones).
        t_idx = _where((state == CONFIRMED) & ~matched)
        rows, cols = _match(sim, t_idx, lo_idx, s.low_match_iou)
        match_t.append(t_idx[rows])
        match_d.append(lo_idx[cols])
        matched[t_idx[rows]] = True
        if hi_left.size:
            # Stage 2b (OC-SORT's observation-centric recovery): confident detections left over against
            # the last observed box of unmatched tracks, for objects whose predicted motion went astray. That
            # box may be stale (up to max_age_s), so it takes a stricter overlap than the prediction.
            t_idx = _where((state != TENTATIVE) & ~matched)
            if t_idx.size:
                sim_obs = iou_matrix(kalman.cxcywh_to_xyxy(t[t_idx, OBS]), boxes[hi_left])
                if s.class_aware:
                    np.putmask(sim_obs, t[t_idx, CLS, None] != cls[None, hi_left], 0.0)
                if s.max_height_ratio > 0:
                    np.putmask(
                        sim_obs, _height_mismatch(t[t_idx, 43], det[hi_left, 3], s.max_height_ratio), 0.0
                    )
                rows, cols = assign(sim_obs, s.recovery_iou)
                match_t.append(t_idx[rows])
                match_d.append(hi_left[cols])
                hi_left = _without(hi_left, cols)
        # Stage 3: remaining confident detections against tentative tracks.
        t_idx = _where(state == TENTATIVE)
        rows, cols = _match(sim, t_idx, hi_left, s.match_iou)
        match_t.append(t_idx[rows])
        match_d.append(hi_left[cols])
        new_idx = _without(hi_left, cols)

        ti = np.concatenate(match_t)
        di = np.concatenate(match_d)
        if s.scene_motion:  # this frame's scene acceleration, if _apply_matches measures one
            self._scene_a_prev, self._scene_a = self._scene_a, np.zeros(2)
        if ti.size:
            self._apply_matches(ti, det[di], scores[di], cls[di], now, origin[ti])
        matched = np.zeros(len(self), dtype=bool)
        matched[ti] = True
        if s.scene_motion:
            self._t[ti, SCENE_V] = self._scene_v
        self._age_out(matched, now)
        new_idx = new_idx[scores[new_idx] >= s.new_track_score]
        if new_idx.size:
            self._start_tracks(det[new_idx], scores[new_idx], cls[new_idx], now)
        return self._report()

    # ------------------------------------------------------------------ steps

    def _advance_time(self, timestamp: float | None) -> tuple[float, float]:
        """Current time in seconds and the step in nominal frames for the motion model."""
        now = float(timestamp) if timestamp is not None else self._frame / self.frame_rate
        dt = 1.0
        if timestamp is not None and self._time is not None:
            dt = max(now - self._time, 0.0) * self.frame_rate
        self._time = now
        return now, dt

    def _origins(self) -> np.ndarray:
        """Per track, the observed centre about direction_lag_s back (OC-SORT's k-previous observation).

        The oldest observation within the last `lag` frames, or the last observation if there is none.
        """
        t = self._t
        origin = t[:, 40:42].copy()
        if t.shape[0] == 0:
            return origin
        hist = t[:, HIST].reshape(-1, HIST_LEN, 3)
        frames = hist[:, :, 0]
        recent = frames >= self._frame - self._lag
        if recent.any():
            oldest = np.argmin(np.where(recent, frames, np.inf), axis=1)
            has = recent.any(axis=1)
            origin[has] = hist[has, oldest[has], 1:3]
        return origin

    def _warp(self, affine: np.ndarray) -> None:
        """Map every track from the previous frame's pixel coordinates into this frame's."""
        m = np.asarray(affine, dtype=float)
        if m.shape != (2, 3) or not np.isfinite(m).all():
            raise ValueError(
                f"update: camera_motion must be a finite 2x3 affine matrix (got shape {m.shape})"
            )
        a, b = m[:, :2], m[:, 2]
        scale = float(np.sqrt(abs(np.linalg.det(a))))
        t = self._t
        n = t.shape[0]
        for off in (0, 20):  # the filter and its saved copy: centre, size, velocities
            t[:, off : off + 2] = t[:, off : off + 2] @ a.T + b
            t[:, off + 4 : off + 6] = t[:, off + 4 : off + 6] @ a.T
            t[:, off + 2 : off + 4] *= scale
            t[:, off + 6 : off + 8] *= scale
            cov = t[:, off + 8 : off + 20].reshape(n, 3, 4)
            # Block-diagonal covariance: keep each axis' variance, mixed by the squared matrix entries.
            cov[:, :, 0:2] = cov[:, :, 0:2] @ (a * a).T
            cov[:, :, 2:4] *= scale * scale
        t[:, 40:42] = t[:, 40:42] @ a.T + b
        t[:, 42:44] *= scale
        hist = t[:, HIST].reshape(n, HIST_LEN, 3)
        hist[:, :, 1:3] = hist[:, :, 1:3] @ a.T + b
        t[:, HIST] = hist.reshape(n, 3 * HIST_LEN)
        d = t[:, DIR] @ a.T
        t[:, DIR] = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)

    def _follow_scene(self, dt: float) -> None:
        """Carry the scene's motion into this frame's prediction (before `_predict`).

        Tracks seen last frame get the scene acceleration of the last two frames when both agree in sign
        (the smaller of the two): a camera that keeps turning. Tracks unseen since are moved by the change
        of the scene's velocity since they were last matched, over this step.
        """
        t = self._t
        ax, ay = self._scene_a.tolist()
        bx, by = self._scene_a_prev.tolist()
        if ax * bx > 0 or ay * by > 0:  # Python floats: cheaper than numpy for two numbers
            fx = math.copysign(min(abs(ax), abs(bx)), ax) if ax * bx > 0 else 0.0
            fy = math.copysign(min(abs(ay), abs(by)), ay) if ay * by > 0 else 0.0
            self._scene_ff = np.array([dt * fx, dt * fy])
            seen = t[:, LAST_FRAME] == self._frame - 1
            t[seen, 4:6] += self._scene_ff
        if self._scene_changed < 0:
            return  # the scene has never moved: nothing to catch up with
        # Tracks unseen last frame and last matched before the scene's velocity last changed.
        gone = _where(t[:, LAST_FRAME] < min(self._frame - 1, self._scene_changed))
        if gone.size == 0:
            return
        self._move(gone, dt * (self._scene_v - t[gone, SCENE_V]))

    def _move(self, idx: np.ndarray, shift: np.ndarray) -> None:
        """Move the tracks idx by shift (one (x, y), or one per track): the filter's centre, its saved copy
        and the last observation (the re-update's start), and the observation history if it is used."""
        t = self._t
        shift = np.broadcast_to(shift, (idx.size, 2))
        t[idx[:, None], _CENTRES] += shift[:, _XY3]
        if self.settings.direction_weight > 0:  # the observation history only serves the direction term
            hist = t[idx, HIST].reshape(idx.size, HIST_LEN, 3)
            hist[:, :, 1:3] += shift[:, None, :]
            t[idx, HIST] = hist.reshape(idx.size, 3 * HIST_LEN)

    def _learn_shift(self, dv: np.ndarray) -> None:
        """Take dv (a part of this frame's shared shift) as a change of the scene's velocity (scene_motion):
        tracks seen last frame get it now, those unseen since from `_follow_scene`. If it was a single
        jolt, the filters of the tracks matched next take it back, and scene_motion measures that too."""
        t = self._t
        t[t[:, LAST_FRAME] == self._frame - 1, 4:6] += dv
        self._scene_v += dv
        self._scene_changed = self._frame

    def _measure_shift(self, det: np.ndarray, cls: np.ndarray) -> np.ndarray | None:
        """This frame's shared displacement between the predictions and the confident detections det
        (cx cy w h) of classes cls, or None if there is none worth a move (see `scene_shift`).

        Steady tracks (matched last frame, SCENE_MIN_HITS matches or more) each take their nearest
        detection within SHIFT_RADIUS box heights; the median of those offsets counts, per axis, if it
        exceeds SCENE_Z standard errors (1.4826 * MAD / sqrt(n)). It is kept only if it lines up more steady
        tracks with a detection (IoU >= SHIFT_ALIGNED_IOU) than before: a noisy detector's offsets can agree
        by chance, a camera's jolt moves every box alike.
        """
        t = self._t
        steady = _where(
            (t[:, STATE] == CONFIRMED)
            & (t[:, LAST_FRAME] == self._frame - 1)
            & (t[:, HITS] >= SCENE_MIN_HITS)
        )
        if steady.size < SCENE_MIN_TRACKS:
            return None
        pred = t[steady, 0:4]
        d = det[None, :, 0:2] - pred[:, None, 0:2]
        dist2 = (d * d).sum(axis=2) / np.maximum(pred[:, 3], 1.0)[:, None] ** 2
        if self.settings.class_aware:
            np.putmask(dist2, t[steady, CLS, None] != cls[None, :], np.inf)
        rows = np.arange(steady.size)
        nearest = dist2.argmin(axis=1)
        near = dist2[rows, nearest] < SHIFT_RADIUS * SHIFT_RADIUS
        n = int(near.sum())
        if n < SCENE_MIN_TRACKS:
            return None
        offsets = d[rows[near], nearest[near]]
        med = _median_rows(offsets)
        spread = 1.4826 * _median_rows(np.abs(offsets - med))
        shift = np.where(np.abs(med) > SCENE_Z * spread / math.sqrt(n), med, 0.0)
        if not shift.any():
            return None
        det_xyxy = kalman.cxcywh_to_xyxy(det)
        moved = pred.copy()
        moved[:, 0:2] += shift
        before = (iou_matrix(kalman.cxcywh_to_xyxy(pred), det_xyxy).max(axis=1) >= SHIFT_ALIGNED_IOU).sum()
        after = (iou_matrix(kalman.cxcywh_to_xyxy(moved), det_xyxy).max(axis=1) >= SHIFT_ALIGNED_IOU).sum()
        return shift if after > before else None

    def _measure_scene(self, rows: np.ndarray, mean: np.ndarray) -> None:
        """Update the scene's velocity from the matched rows' velocity before (rows) and after (mean) this
        frame's correction, counting the acceleration fed in by `_follow_scene` as part of the change.
        Sets this frame's scene acceleration (left at zero when there is no clear common change)."""
        steady = _where(
            (rows[:, LAST_FRAME] == self._frame - 1)
            & (rows[:, HITS] >= SCENE_MIN_HITS)
            & (rows[:, STATE] == CONFIRMED)
        )
        n = steady.size
        if n < SCENE_MIN_TRACKS:
            return
        dv = (mean[:, 4:6] - rows[:, 4:6])[steady] + self._scene_ff
        med = _median_rows(dv)
        spread = 1.4826 * _median_rows(np.abs(dv - med))
        # Python floats for the two axes: cheaper than numpy for two numbers (the same arithmetic).
        cx, cy = (
            m if abs(m) > SCENE_Z * sd / math.sqrt(n) else 0.0
            for m, sd in zip(med.tolist(), spread.tolist(), strict=True)
        )
        if cx or cy:
            change = np.array([cx, cy])
            self._scene_v += change
            self._scene_changed = self._frame
            self._scene_a = change / max(self._dt, 1e-6)

    def _predict(self, dt: float) -> None:
        t = self._t
        n = t.shape[0]
        lost = t[:, STATE] == LOST
        if lost.any():
            # An unseen object's size is not expected to keep changing.
            t[lost, 6:8] = 0.0
        cov = t[:, COV].reshape(n, 3, 4)  # a view (t is C-contiguous), so predict works in place
        kalman.predict(t[:, MEAN], cov, dt, self._std_pos, self._std_vel)
        np.maximum(t[:, 2:4], 1.0, out=t[:, 2:4])

    def _apply_matches(
        self,
        ti: np.ndarray,
        z: np.ndarray,
        scores: np.ndarray,
        cls: np.ndarray,
        now: float,
        origin: np.ndarray,
    ) -> None:
        """Correct the matched tracks ti with their detections z (cx cy w h) and update bookkeeping.

        origin: each track's observed centre about direction_lag_s back, to measure its direction from.
        """
        rows = self._t[ti]  # a copy, written back at the end
        m = rows.shape[0]
        std_meas = self.settings.measurement_noise
        mean, cov = kalman.update(rows[:, MEAN], rows[:, COV].reshape(m, 3, 4), z, std_meas)
        if self.settings.scene_motion:
            self._measure_scene(rows, mean)
        rows[:, MEAN] = mean
        rows[:, COV] = cov.reshape(m, 12)
        # Tracks coming back after missed frames: re-run the filter along a virtual straight path.
        gap = self._frame - rows[:, LAST_FRAME]
        for k in _where(gap > 1).tolist():
            r = rows[k]
            mean_k, cov_k = kalman.reupdate_line(
                r[SAVED][:8],
                r[SAVED][8:].reshape(3, 4),
                r[OBS],
                z[k],
                int(gap[k]),
                self._std_pos,
                self._std_vel,
                std_meas=std_meas,
            )
            r[MEAN] = mean_k
            r[COV] = cov_k.reshape(12)
        rows[:, SAVED] = rows[:, FILTER]
        step = z[:, 0:2] - origin
        norm = np.sqrt((step * step).sum(axis=1, keepdims=True))
        rows[:, DIR] = step / np.maximum(norm, 1e-6)
        # Confidence in that direction: how far the object moved against how far noise alone moves a centre.
        rows[:, DIR_CONF] = norm[:, 0] / (norm[:, 0] + self._direction_noise * np.maximum(z[:, 3], 1.0))
        rows[:, OBS] = z
        self._remember(rows, z)
        rows[:, SCORE] = scores
        rows[:, CLS] = cls  # the same unless class_aware is off
        rows[:, HITS] += 1
        rows[:, LAST_FRAME] = self._frame
        rows[:, LAST_SEEN] = now
        state = rows[:, STATE]
        confirm = (state == TENTATIVE) & (rows[:, HITS] >= self.settings.min_hits)
        state[state == LOST] = CONFIRMED
        if confirm.any():
            self._confirm(rows, _where(confirm), now)
        self._t[ti] = rows

    def _remember(self, rows: np.ndarray, z: np.ndarray) -> None:
        """Store this frame's observed centres z[:, :2] in the history ring of rows (in place)."""
        col = HIST.start + 3 * (self._frame % HIST_LEN)
        rows[:, col] = self._frame
        rows[:, col + 1 : col + 3] = z[:, 0:2]

    def _confirm(self, rows: np.ndarray, idx: np.ndarray, now: float) -> None:
        """Confirm rows[idx] (in place): give them ids and emit `track_started`."""
        rows[idx, STATE] = CONFIRMED
        rows[idx, ID] = np.arange(self._next_id, self._next_id + idx.size)
        self._next_id += idx.size
        boxes = kalman.cxcywh_to_xyxy(rows[idx, OBS]).tolist()
        for box, r in zip(boxes, rows[idx].tolist(), strict=True):
            self._events.append(
                TrackEvent("track_started", int(r[ID]), int(r[CLS]), r[SCORE], tuple(box), now)
            )

    def _age_out(self, matched: np.ndarray, now: float) -> None:
        s = self.settings
        t = self._t
        state = t[:, STATE]
        unmatched = ~matched
        # A tentative track must be matched in consecutive frames.
        drop = unmatched & (state == TENTATIVE)
        unseen_s = now - t[:, LAST_SEEN]
        if s.max_age_frames > 0:
            expired = self._frame - t[:, LAST_FRAME] > s.max_age_frames
        else:
            expired = unseen_s > s.max_age_s + _EPS_T
        ended = unmatched & (state != TENTATIVE) & expired
        if ended.any():
            gone = t[ended]
            boxes = kalman.cxcywh_to_xyxy(gone[:, 0:4]).tolist()
            for box, r in zip(boxes, gone.tolist(), strict=True):
                duration = r[LAST_SEEN] - r[FIRST_SEEN]
                self._events.append(
                    TrackEvent("track_ended", int(r[ID]), int(r[CLS]), r[SCORE], tuple(box), now, duration)
                )
        coasting_over = unseen_s > s.coast_s + _EPS_T
        state[unmatched & (state == CONFIRMED) & coasting_over] = LOST
        drop |= ended
        if drop.any():
            self._t = t[~drop]

    def _start_tracks(self, z: np.ndarray, scores: np.ndarray, cls: np.ndarray, now: float) -> None:
        n = z.shape[0]
        mean, cov = kalman.initiate(z)
        rows = np.zeros((n, N_COLS))
        rows[:, MEAN] = mean
        rows[:, COV] = cov.reshape(n, 12)
        rows[:, SAVED] = rows[:, FILTER]
        rows[:, OBS] = z
        self._remember(rows, z)
        rows[:, CLS] = cls
        rows[:, STATE] = TENTATIVE
        rows[:, SCORE] = scores
        rows[:, HITS] = 1
        rows[:, [FIRST_FRAME, LAST_FRAME]] = self._frame
        rows[:, [FIRST_SEEN, LAST_SEEN]] = now
        rows[:, SCENE_V] = self._scene_v
        if self.settings.min_hits <= 1:
            self._confirm(rows, np.arange(n), now)
        self._t = np.concatenate([self._t, rows])

    def _report(self) -> list[Track]:
        t = self._t
        rows = t[t[:, STATE] == CONFIRMED]
        if rows.shape[0] == 0:
            return []
        # Column by column into Python lists (one tolist each), then Track built by map over them: no
        # per-track indexing or int() in Python, which cost more than the Track itself.
        x1, y1, x2, y2 = kalman.cxcywh_to_xyxy(rows[:, 0:4]).T.tolist()
        vx, vy = (rows[:, 4:6] * self.frame_rate).T.tolist()
        ids, classes, first_frame, hits = rows.take(_REPORT_INTS, axis=1).T.astype(np.int64)
        ages = (self._frame + 1 - first_frame).tolist()
        scores, first_seen, last_seen = rows.take(_REPORT_FLOATS, axis=1).T.tolist()
        return list(
            map(
                Track,
                ids.tolist(),
                zip(x1, y1, x2, y2, strict=True),
                classes.tolist(),
                scores,
                repeat(TrackState.CONFIRMED),
                zip(vx, vy, strict=True),
                ages,
                hits.tolist(),
                first_seen,
                last_seen,
            )
        )

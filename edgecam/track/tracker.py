"""Kalman-filtered multi-object tracker with ByteTrack-style two-stage association.

Per frame: predict every track; match confident detections to confirmed and lost tracks by IoU with the
predicted boxes; match low-score detections to the remaining recently seen confirmed tracks (ByteTrack);
match confident detections still left to the last observed box of unmatched tracks (OC-SORT's
observation-centric recovery); match the rest to tentative tracks; start tentative tracks from what
remains. A track matched again after missed frames has its filter re-run along a straight line between
its last and new observation (OC-SORT's observation-centric re-update), so the velocity it coasted on
while unseen does not linger.

All track data lives in one float array, one row per track (columns below), so each step is a few
vectorised numpy operations whatever the number of tracks, and removing tracks is a single mask.
"""

from __future__ import annotations

import numpy as np

from . import kalman
from .association import assign, iou_matrix
from .settings import TrackerSettings, validate_frame_rate
from .types import Track, TrackEvent, TrackState

_EPS_T = 1e-6
TENTATIVE, CONFIRMED, LOST = 0.0, 1.0, 2.0

# Columns of the track array.
MEAN = slice(0, 8)  # Kalman state cx cy w h vcx vcy vw vh (velocities per nominal frame)
COV = slice(8, 20)  # per-coordinate (pos, vel) covariance blocks, see kalman.py
FILTER = slice(0, 20)  # MEAN and COV
SAVED = slice(20, 40)  # MEAN and COV right after the last match (start of the re-update)
OBS = slice(40, 44)  # last matched detection, cx cy w h
CLS, STATE, ID, SCORE, HITS, FIRST_FRAME, LAST_FRAME, FIRST_SEEN, LAST_SEEN = range(44, 53)
N_COLS = 53


def _match(
    sim: np.ndarray, t_idx: np.ndarray, d_idx: np.ndarray, min_iou: float
) -> tuple[np.ndarray, np.ndarray]:
    """Assign the tracks t_idx to the detections d_idx; returns positions within t_idx and d_idx."""
    if t_idx.size == 0 or d_idx.size == 0:
        empty = np.empty(0, dtype=np.intp)
        return empty, empty
    return assign(sim[np.ix_(t_idx, d_idx)], min_iou)


class Tracker:
    """Create with `make_tracker`; call `update` once per frame."""

    def __init__(self, frame_rate: float = 30.0, settings: TrackerSettings | None = None) -> None:
        self.frame_rate = validate_frame_rate(frame_rate)
        self.settings = settings or TrackerSettings()
        # The filter steps one frame at a time, and its noise levels are tuned per frame at 30 fps. A frame
        # at a lower rate spans k = 30 / frame_rate such frames: position noise scales with the elapsed
        # time (k) and the change of a per-frame velocity with time squared (k^2).
        k = kalman.NOMINAL_FRAME_RATE / self.frame_rate
        self._std_pos = kalman.STD_POS * k
        self._std_vel = kalman.STD_VEL * k * k
        self._next_id = 1
        self.reset()

    def reset(self) -> None:
        """Forget all tracks (ids keep counting up, so they are never reused)."""
        self._t = np.zeros((0, N_COLS))
        self._frame = 0
        self._time: float | None = None
        self._events: list[TrackEvent] = []

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
    ) -> list[Track]:
        """Feed one frame of detections; return confirmed tracks that were matched or are coasting."""
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
        if len(self):
            self._predict(dt)
        t = self._t

        high = scores >= s.high_score
        hi_idx = np.flatnonzero(high)
        lo_idx = np.flatnonzero(~high)
        state = t[:, STATE]
        # One IoU matrix for the predicted boxes; pairs of different classes can never match.
        sim = iou_matrix(kalman.cxcywh_to_xyxy(t[:, 0:4]), boxes)
        if s.class_aware and sim.size:
            sim[t[:, CLS, None] != cls[None, :]] = 0.0

        match_t: list[np.ndarray] = []
        match_d: list[np.ndarray] = []
        matched = np.zeros(len(self), dtype=bool)
        # Stage 1: confident detections against confirmed and lost tracks.
        t_idx = np.flatnonzero(state != TENTATIVE)
        rows, cols = _match(sim, t_idx, hi_idx, s.match_iou)
        match_t.append(t_idx[rows])
        match_d.append(hi_idx[cols])
        hi_left = np.delete(hi_idx, cols)
        matched[t_idx[rows]] = True
        # Stage 2: low-score detections against confirmed tracks still unmatched (not lost ones).
        t_idx = np.flatnonzero((state == CONFIRMED) & ~matched)
        rows, cols = _match(sim, t_idx, lo_idx, s.low_match_iou)
        match_t.append(t_idx[rows])
        match_d.append(lo_idx[cols])
        matched[t_idx[rows]] = True
        if hi_left.size:
            # Stage 2b (OC-SORT's observation-centric recovery): confident detections left over against
            # the last observed box of unmatched tracks, for objects whose predicted motion went astray.
            t_idx = np.flatnonzero((state != TENTATIVE) & ~matched)
            if t_idx.size:
                sim_obs = iou_matrix(kalman.cxcywh_to_xyxy(t[t_idx, OBS]), boxes[hi_left])
                if s.class_aware:
                    sim_obs[t[t_idx, CLS, None] != cls[None, hi_left]] = 0.0
                rows, cols = assign(sim_obs, s.match_iou)
                match_t.append(t_idx[rows])
                match_d.append(hi_left[cols])
                hi_left = np.delete(hi_left, cols)
        # Stage 3: remaining confident detections against tentative tracks.
        t_idx = np.flatnonzero(state == TENTATIVE)
        rows, cols = _match(sim, t_idx, hi_left, s.match_iou)
        match_t.append(t_idx[rows])
        match_d.append(hi_left[cols])
        new_idx = np.delete(hi_left, cols)

        ti = np.concatenate(match_t)
        di = np.concatenate(match_d)
        if ti.size:
            self._apply_matches(ti, kalman.xyxy_to_cxcywh(boxes[di]), scores[di], cls[di], now)
        matched = np.zeros(len(self), dtype=bool)
        matched[ti] = True
        self._age_out(matched, now)
        new_idx = new_idx[scores[new_idx] >= s.new_track_score]
        if new_idx.size:
            self._start_tracks(kalman.xyxy_to_cxcywh(boxes[new_idx]), scores[new_idx], cls[new_idx], now)
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
        self, ti: np.ndarray, z: np.ndarray, scores: np.ndarray, cls: np.ndarray, now: float
    ) -> None:
        """Correct the matched tracks ti with their detections z (cx cy w h) and update bookkeeping."""
        rows = self._t[ti]  # a copy, written back at the end
        m = rows.shape[0]
        mean, cov = kalman.update(rows[:, MEAN], rows[:, COV].reshape(m, 3, 4), z)
        rows[:, MEAN] = mean
        rows[:, COV] = cov.reshape(m, 12)
        # Tracks coming back after missed frames: re-run the filter along a virtual straight path.
        gap = self._frame - rows[:, LAST_FRAME]
        for k in np.flatnonzero(gap > 1).tolist():
            r = rows[k]
            mean_k, cov_k = kalman.reupdate_line(
                r[SAVED][:8],
                r[SAVED][8:].reshape(3, 4),
                r[OBS],
                z[k],
                int(gap[k]),
                self._std_pos,
                self._std_vel,
            )
            r[MEAN] = mean_k
            r[COV] = cov_k.reshape(12)
        rows[:, SAVED] = rows[:, FILTER]
        rows[:, OBS] = z
        rows[:, SCORE] = scores
        rows[:, CLS] = cls  # the same unless class_aware is off
        rows[:, HITS] += 1
        rows[:, LAST_FRAME] = self._frame
        rows[:, LAST_SEEN] = now
        state = rows[:, STATE]
        confirm = (state == TENTATIVE) & (rows[:, HITS] >= self.settings.min_hits)
        state[state == LOST] = CONFIRMED
        if confirm.any():
            self._confirm(rows, np.flatnonzero(confirm), now)
        self._t[ti] = rows

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
        if s.max_age_frames > 0:
            expired = self._frame - t[:, LAST_FRAME] > s.max_age_frames
        else:
            expired = now - t[:, LAST_SEEN] > s.max_age_s + _EPS_T
        ended = unmatched & (state != TENTATIVE) & expired
        if ended.any():
            gone = t[ended]
            boxes = kalman.cxcywh_to_xyxy(gone[:, 0:4]).tolist()
            for box, r in zip(boxes, gone.tolist(), strict=True):
                duration = r[LAST_SEEN] - r[FIRST_SEEN]
                self._events.append(
                    TrackEvent("track_ended", int(r[ID]), int(r[CLS]), r[SCORE], tuple(box), now, duration)
                )
        coasting_over = now - t[:, LAST_SEEN] > s.coast_s + _EPS_T
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
        rows[:, CLS] = cls
        rows[:, STATE] = TENTATIVE
        rows[:, SCORE] = scores
        rows[:, HITS] = 1
        rows[:, [FIRST_FRAME, LAST_FRAME]] = self._frame
        rows[:, [FIRST_SEEN, LAST_SEEN]] = now
        if self.settings.min_hits <= 1:
            self._confirm(rows, np.arange(n), now)
        self._t = np.concatenate([self._t, rows])

    def _report(self) -> list[Track]:
        t = self._t
        rows = t[t[:, STATE] == CONFIRMED]
        n = rows.shape[0]
        if n == 0:
            return []
        # Everything a Track needs in one array, converted to Python floats in one call.
        out = np.empty((n, 13))
        out[:, 0:4] = kalman.cxcywh_to_xyxy(rows[:, 0:4])
        out[:, 4:6] = rows[:, 4:6] * self.frame_rate
        out[:, 6:13] = rows[:, [ID, CLS, SCORE, FIRST_FRAME, HITS, FIRST_SEEN, LAST_SEEN]]
        frame = self._frame + 1
        state = TrackState.CONFIRMED
        return [
            Track(
                int(r[6]),
                (r[0], r[1], r[2], r[3]),
                int(r[7]),
                r[8],
                state,
                (r[4], r[5]),
                frame - int(r[9]),
                int(r[10]),
                r[11],
                r[12],
            )
            for r in out.tolist()
        ]

"""Kalman-filtered multi-object tracker with ByteTrack-style two-stage association.

Per frame: predict every track; match confident detections to confirmed and lost tracks by IoU; match
low-score detections to the remaining recently seen confirmed tracks; match what is left of the confident
detections to tentative tracks; start tentative tracks from the rest. A lost track that is matched again
has its filter re-run along a straight line between its last and new observation (OC-SORT's
observation-centric re-update), so the velocity guessed while it was unseen does not linger.

Track data is kept as a struct of numpy arrays (one row per track) so each step is vectorised.
"""

from __future__ import annotations

import numpy as np

from . import kalman
from .association import assign, iou_matrix
from .settings import TrackerSettings, validate_frame_rate
from .types import Track, TrackEvent, TrackState

_EPS_T = 1e-6
TENTATIVE, CONFIRMED, LOST = 0, 1, 2
_STATES = (TrackState.TENTATIVE, TrackState.CONFIRMED, TrackState.LOST)

# name -> (trailing shape, dtype) of the per-track arrays
_FIELDS: dict[str, tuple[tuple[int, ...], type]] = {
    "mean": ((8,), float),  # Kalman state cx cy w h vcx vcy vw vh
    "cov": ((3, 4), float),  # per-coordinate (pos, vel) covariance blocks
    "saved_mean": ((8,), float),  # filter state right after the last match (for the re-update)
    "saved_cov": ((3, 4), float),
    "obs": ((4,), float),  # last matched detection, cx cy w h
    "cls": ((), np.int64),
    "state": ((), np.int8),
    "id": ((), np.int64),  # public id, 0 until confirmed
    "score": ((), float),
    "hits": ((), np.int64),
    "first_frame": ((), np.int64),
    "last_frame": ((), np.int64),
    "first_seen": ((), float),
    "last_seen": ((), float),
}


def _empty_tracks() -> dict[str, np.ndarray]:
    return {k: np.zeros((0, *shape), dtype=dt) for k, (shape, dt) in _FIELDS.items()}


def _boxes_xyxy(cxcywh: np.ndarray) -> np.ndarray:
    return kalman.cxcywh_to_xyxy(cxcywh)


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
        self.reset()

    def reset(self) -> None:
        """Forget all tracks (ids keep counting up so they are never reused)."""
        self._t = _empty_tracks()
        self._frame = 0
        self._time: float | None = None
        self._next_id = getattr(self, "_next_id", 1)
        self._events: list[TrackEvent] = []

    def __len__(self) -> int:
        return self._t["state"].shape[0]

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
        if classes is None or not s.class_aware:
            cls = np.zeros(boxes.shape[0], dtype=np.int64)
        else:
            cls = np.asarray(classes).reshape(-1).astype(np.int64)
            if cls.shape[0] != boxes.shape[0]:
                raise ValueError(f"update: {boxes.shape[0]} boxes but {cls.shape[0]} classes")
        keep = scores >= s.low_score
        if not keep.all():
            boxes, scores, cls = boxes[keep], scores[keep], cls[keep]

        self._frame += 1
        now, dt = self._advance_time(timestamp)
        t = self._t
        if len(self):
            self._predict(dt)

        high = scores >= s.high_score
        hi_idx = np.flatnonzero(high)
        lo_idx = np.flatnonzero(~high)
        z = kalman.xyxy_to_cxcywh(boxes)
        state = t["state"]
        # One IoU matrix for all stages; pairs of different classes can never match.
        sim = iou_matrix(_boxes_xyxy(t["mean"][:, :4]), boxes)
        if s.class_aware and sim.size:
            sim[t["cls"][:, None] != cls[None, :]] = 0.0

        match_t: list[np.ndarray] = []
        match_d: list[np.ndarray] = []
        # Stage 1: confident detections against confirmed and lost tracks.
        t_idx = np.flatnonzero(state != TENTATIVE)
        rows, cols = _match(sim, t_idx, hi_idx, s.match_iou)
        match_t.append(t_idx[rows])
        match_d.append(hi_idx[cols])
        hi_left = np.delete(hi_idx, cols)
        matched = np.zeros(len(self), dtype=bool)
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
                sim_obs = iou_matrix(_boxes_xyxy(t["obs"][t_idx]), boxes[hi_left])
                if s.class_aware:
                    sim_obs[t["cls"][t_idx][:, None] != cls[hi_left][None, :]] = 0.0
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
        self._apply_matches(ti, di, z, scores, now)
        matched = np.zeros(len(self), dtype=bool)
        matched[ti] = True
        self._age_out(matched, now)
        new_idx = new_idx[scores[new_idx] >= s.new_track_score]
        if new_idx.size:
            self._start_tracks(z[new_idx], scores[new_idx], cls[new_idx], now)
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
        mean = t["mean"]
        lost = t["state"] == LOST
        if lost.any():
            # An unseen object's size is not expected to keep changing.
            mean[lost, 6:8] = 0.0
        t["mean"], t["cov"] = kalman.predict(mean, t["cov"], dt, self._std_pos, self._std_vel)
        np.maximum(t["mean"][:, 2:4], 1.0, out=t["mean"][:, 2:4])

    def _apply_matches(
        self, ti: np.ndarray, di: np.ndarray, z: np.ndarray, scores: np.ndarray, now: float
    ) -> None:
        if ti.size == 0:
            return
        t = self._t
        gap = self._frame - t["last_frame"][ti]
        back = gap > 1
        if back.any():
            self._reupdate(ti[back], z[di[back]], gap[back])
        tp, dp = ti[~back], di[~back]
        if tp.size:
            t["mean"][tp], t["cov"][tp] = kalman.update(t["mean"][tp], t["cov"][tp], z[dp])
        t["saved_mean"][ti] = t["mean"][ti]
        t["saved_cov"][ti] = t["cov"][ti]
        t["obs"][ti] = z[di]
        t["score"][ti] = scores[di]
        t["hits"][ti] += 1
        t["last_frame"][ti] = self._frame
        t["last_seen"][ti] = now
        was = t["state"][ti]
        t["state"][ti[was == LOST]] = CONFIRMED
        new = ti[(was == TENTATIVE) & (t["hits"][ti] >= self.settings.min_hits)]
        if new.size:
            self._confirm(new, now)

    def _reupdate(self, ti: np.ndarray, z: np.ndarray, gap: np.ndarray) -> None:
        """Re-run the filter from the last match along virtual observations on a straight line."""
        t = self._t
        for k, i in enumerate(ti.tolist()):
            t["mean"][i], t["cov"][i] = kalman.reupdate_line(
                t["saved_mean"][i],
                t["saved_cov"][i],
                t["obs"][i],
                z[k],
                int(gap[k]),
                self._std_pos,
                self._std_vel,
            )

    def _confirm(self, idx: np.ndarray, now: float) -> None:
        t = self._t
        t["state"][idx] = CONFIRMED
        ids = np.arange(self._next_id, self._next_id + idx.size)
        t["id"][idx] = ids
        self._next_id += idx.size
        boxes = _boxes_xyxy(t["obs"][idx]).tolist()
        for k, i in enumerate(idx.tolist()):
            self._events.append(
                TrackEvent(
                    "track_started", int(ids[k]), int(t["cls"][i]), float(t["score"][i]), tuple(boxes[k]), now
                )
            )

    def _age_out(self, matched: np.ndarray, now: float) -> None:
        s = self.settings
        t = self._t
        state = t["state"]
        unmatched = ~matched
        # A tentative track must be matched in consecutive frames.
        drop = unmatched & (state == TENTATIVE)
        if s.max_age_frames > 0:
            expired = self._frame - t["last_frame"] > s.max_age_frames
        else:
            expired = now - t["last_seen"] > s.max_age_s + _EPS_T
        ended = unmatched & (state != TENTATIVE) & expired
        if ended.any():
            boxes = _boxes_xyxy(t["mean"][ended, :4]).tolist()
            for k, i in enumerate(np.flatnonzero(ended).tolist()):
                self._events.append(
                    TrackEvent(
                        "track_ended",
                        int(t["id"][i]),
                        int(t["cls"][i]),
                        float(t["score"][i]),
                        tuple(boxes[k]),
                        now,
                        float(t["last_seen"][i] - t["first_seen"][i]),
                    )
                )
        coasting_over = now - t["last_seen"] > s.coast_s + _EPS_T
        state[unmatched & (state == CONFIRMED) & coasting_over] = LOST
        drop |= ended
        if drop.any():
            keep = ~drop
            for k in t:
                t[k] = t[k][keep]

    def _start_tracks(self, z: np.ndarray, scores: np.ndarray, cls: np.ndarray, now: float) -> None:
        t = self._t
        n = z.shape[0]
        mean, cov = kalman.initiate(z)
        new = {
            "mean": mean,
            "cov": cov,
            "saved_mean": mean.copy(),
            "saved_cov": cov.copy(),
            "obs": z,
            "cls": cls,
            "state": np.full(n, TENTATIVE, dtype=np.int8),
            "id": np.zeros(n, dtype=np.int64),
            "score": scores,
            "hits": np.ones(n, dtype=np.int64),
            "first_frame": np.full(n, self._frame, dtype=np.int64),
            "last_frame": np.full(n, self._frame, dtype=np.int64),
            "first_seen": np.full(n, now),
            "last_seen": np.full(n, now),
        }
        start = len(self)
        for k in t:
            t[k] = np.concatenate([t[k], new[k]])
        if self.settings.min_hits <= 1:
            self._confirm(np.arange(start, start + n), now)

    def _report(self) -> list[Track]:
        t = self._t
        idx = np.flatnonzero(t["state"] == CONFIRMED)
        if idx.size == 0:
            return []
        mean = t["mean"][idx]
        boxes = _boxes_xyxy(mean[:, :4]).tolist()
        vel = (mean[:, 4:6] * self.frame_rate).tolist()
        ages = (self._frame - t["first_frame"][idx] + 1).tolist()
        state = TrackState.CONFIRMED
        return [
            Track(id_, tuple(box), cls_, score, state, tuple(v), age, hits, first, last)
            for id_, box, cls_, score, v, age, hits, first, last in zip(
                t["id"][idx].tolist(),
                boxes,
                t["cls"][idx].tolist(),
                t["score"][idx].tolist(),
                vel,
                ages,
                t["hits"][idx].tolist(),
                t["first_seen"][idx].tolist(),
                t["last_seen"][idx].tolist(),
                strict=True,
            )
        ]

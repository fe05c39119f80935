"""Kalman-filtered multi-object tracker with ByteTrack-style two-stage association.

Per frame: predict every track; match confident detections to confirmed and lost tracks by IoU; match
low-score detections to the remaining recently seen confirmed tracks; match what is left of the confident
detections to tentative tracks; start tentative tracks from the rest. A lost track that is matched again
has its filter re-run along a straight line between its last and new observation (OC-SORT's
observation-centric re-update), so the velocity guessed while it was unseen does not linger.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import kalman
from .association import assign, iou_matrix
from .settings import TrackerSettings, validate_frame_rate
from .types import Track, TrackEvent, TrackState

_EPS_T = 1e-6


@dataclass(slots=True)
class _Rec:
    """Mutable bookkeeping of one track; the filter state lives in the tracker's stacked arrays."""

    class_id: int
    score: float
    first_seen: float
    last_seen: float
    last_frame: int
    obs: np.ndarray  # last matched detection, cx cy w h
    saved_mean: np.ndarray  # filter state right after the last match (for the re-update)
    saved_cov: np.ndarray
    id: int = 0  # public id, given on confirmation
    state: TrackState = TrackState.TENTATIVE
    hits: int = 1
    age: int = 1
    matched: bool = True  # matched in the current frame


class Tracker:
    """Create with `make_tracker`; call `update` once per frame."""

    def __init__(self, frame_rate: float = 30.0, settings: TrackerSettings | None = None) -> None:
        self.frame_rate = validate_frame_rate(frame_rate)
        self.settings = settings or TrackerSettings()
        self.reset()

    def reset(self) -> None:
        self._recs: list[_Rec] = []
        self._mean = np.zeros((0, 8))
        self._cov = np.zeros((0, 8, 8))
        self._frame = 0
        self._time: float | None = None
        self._next_id = 1
        self._events: list[TrackEvent] = []

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
        if self._recs:
            self._predict(dt)
        for r in self._recs:
            r.matched = False
            r.age += 1

        high = scores >= s.high_score
        hi_idx = np.flatnonzero(high)
        lo_idx = np.flatnonzero(~high)
        z = kalman.xyxy_to_cxcywh(boxes)
        pred_xyxy = kalman.cxcywh_to_xyxy(self._mean[:, :4])
        track_cls = np.fromiter((r.class_id for r in self._recs), dtype=np.int64, count=len(self._recs))
        states = [r.state for r in self._recs]
        active = np.array([st is not TrackState.TENTATIVE for st in states], dtype=bool)
        recent = np.array([st is TrackState.CONFIRMED for st in states], dtype=bool)

        matches: list[tuple[int, int]] = []
        # Stage 1: confident detections against confirmed and lost tracks.
        t_idx = np.flatnonzero(active)
        rows, cols = self._match(pred_xyxy, track_cls, t_idx, boxes, cls, hi_idx, s.match_iou)
        matches += zip(t_idx[rows].tolist(), hi_idx[cols].tolist(), strict=True)
        hi_left = np.delete(hi_idx, cols)
        matched_t = np.zeros(len(self._recs), dtype=bool)
        matched_t[t_idx[rows]] = True
        # Stage 2: low-score detections against confirmed tracks still unmatched (not lost ones).
        t_idx = np.flatnonzero(recent & ~matched_t)
        rows, cols = self._match(pred_xyxy, track_cls, t_idx, boxes, cls, lo_idx, s.low_match_iou)
        matches += zip(t_idx[rows].tolist(), lo_idx[cols].tolist(), strict=True)
        matched_t[t_idx[rows]] = True
        # Stage 3: remaining confident detections against tentative tracks.
        t_idx = np.flatnonzero(~active)
        rows, cols = self._match(pred_xyxy, track_cls, t_idx, boxes, cls, hi_left, s.match_iou)
        matches += zip(t_idx[rows].tolist(), hi_left[cols].tolist(), strict=True)
        new_idx = np.delete(hi_left, cols)

        self._apply_matches(matches, z, scores, now)
        self._age_out(now)
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
        mean = self._mean
        lost = np.array([r.state is TrackState.LOST for r in self._recs], dtype=bool)
        if lost.any():
            # An unseen object's size is not expected to keep changing.
            mean = mean.copy()
            mean[lost, 6:8] = 0.0
        self._mean, self._cov = kalman.predict(mean, self._cov, dt)
        np.maximum(self._mean[:, 2:4], 1.0, out=self._mean[:, 2:4])

    def _match(
        self,
        pred_xyxy: np.ndarray,
        track_cls: np.ndarray,
        t_idx: np.ndarray,
        boxes: np.ndarray,
        cls: np.ndarray,
        d_idx: np.ndarray,
        min_iou: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        if t_idx.size == 0 or d_idx.size == 0:
            empty = np.empty(0, dtype=np.intp)
            return empty, empty
        sim = iou_matrix(pred_xyxy[t_idx], boxes[d_idx])
        sim[track_cls[t_idx][:, None] != cls[d_idx][None, :]] = 0.0
        return assign(sim, min_iou)

    def _apply_matches(
        self, matches: list[tuple[int, int]], z: np.ndarray, scores: np.ndarray, now: float
    ) -> None:
        if not matches:
            return
        t = np.array([m[0] for m in matches], dtype=np.intp)
        d = np.array([m[1] for m in matches], dtype=np.intp)
        # Tracks coming back after missed frames: re-run the filter along a virtual straight path.
        for k, (ti, di) in enumerate(matches):
            gap = self._frame - self._recs[ti].last_frame
            if gap > 1:
                self._reupdate(ti, z[di], gap)
                t[k] = -1
        plain = t >= 0
        if plain.any():
            tp, dp = t[plain], d[plain]
            self._mean[tp], self._cov[tp] = kalman.update(self._mean[tp], self._cov[tp], z[dp])
        s = self.settings
        for ti, di in matches:
            r = self._recs[ti]
            r.matched = True
            r.hits += 1
            r.score = float(scores[di])
            r.last_seen = now
            r.last_frame = self._frame
            r.obs = z[di]
            r.saved_mean = self._mean[ti].copy()
            r.saved_cov = self._cov[ti].copy()
            if r.state is TrackState.TENTATIVE:
                if r.hits >= s.min_hits:
                    self._confirm(r, now)
            else:
                r.state = TrackState.CONFIRMED

    def _reupdate(self, ti: int, z: np.ndarray, gap: int) -> None:
        r = self._recs[ti]
        mean, cov = r.saved_mean[None], r.saved_cov[None]
        mean = mean.copy()
        for step in range(1, gap + 1):
            mean, cov = kalman.predict(mean, cov, 1.0)
            frac = step / gap
            virtual = r.obs + frac * (z - r.obs)
            mean, cov = kalman.update(mean, cov, virtual[None])
        self._mean[ti], self._cov[ti] = mean[0], cov[0]

    def _confirm(self, r: _Rec, now: float) -> None:
        r.state = TrackState.CONFIRMED
        r.id = self._next_id
        self._next_id += 1
        self._events.append(TrackEvent("track_started", r.id, r.class_id, r.score, self._box_of(r.obs), now))

    def _age_out(self, now: float) -> None:
        s = self.settings
        keep = np.ones(len(self._recs), dtype=bool)
        for i, r in enumerate(self._recs):
            if r.matched:
                continue
            if r.state is TrackState.TENTATIVE:
                keep[i] = False  # a tentative track must be matched in consecutive frames
                continue
            unseen_s = now - r.last_seen
            if s.max_age_frames > 0:
                expired = self._frame - r.last_frame > s.max_age_frames
            else:
                expired = unseen_s > s.max_age_s + _EPS_T
            if expired:
                keep[i] = False
                r.state = TrackState.REMOVED
                self._events.append(
                    TrackEvent(
                        "track_ended",
                        r.id,
                        r.class_id,
                        r.score,
                        self._box_of(self._mean[i, :4]),
                        now,
                        r.last_seen - r.first_seen,
                    )
                )
            elif unseen_s > s.coast_s + _EPS_T:
                r.state = TrackState.LOST
        if not keep.all():
            self._recs = [r for r, k in zip(self._recs, keep, strict=True) if k]
            self._mean = self._mean[keep]
            self._cov = self._cov[keep]

    def _start_tracks(self, z: np.ndarray, scores: np.ndarray, cls: np.ndarray, now: float) -> None:
        mean, cov = kalman.initiate(z)
        for i in range(z.shape[0]):
            r = _Rec(
                class_id=int(cls[i]),
                score=float(scores[i]),
                first_seen=now,
                last_seen=now,
                last_frame=self._frame,
                obs=z[i],
                saved_mean=mean[i].copy(),
                saved_cov=cov[i].copy(),
            )
            self._recs.append(r)
            if self.settings.min_hits <= 1:
                self._confirm(r, now)
        self._mean = np.concatenate([self._mean, mean])
        self._cov = np.concatenate([self._cov, cov])

    def _report(self) -> list[Track]:
        out = []
        fr = self.frame_rate
        for i, r in enumerate(self._recs):
            if r.state is not TrackState.CONFIRMED:
                continue
            m = self._mean[i]
            out.append(
                Track(
                    id=r.id,
                    box=self._box_of(m[:4]),
                    class_id=r.class_id,
                    score=r.score,
                    state=r.state,
                    velocity=(float(m[4] * fr), float(m[5] * fr)),
                    age=r.age,
                    hits=r.hits,
                    first_seen=r.first_seen,
                    last_seen=r.last_seen,
                )
            )
        return out

    @staticmethod
    def _box_of(cxcywh: np.ndarray) -> tuple[float, float, float, float]:
        cx, cy, w, h = (float(v) for v in cxcywh)
        return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)

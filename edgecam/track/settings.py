"""Tracker settings: the `tracker` section of config.yaml maps 1:1 onto these fields."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class TrackerSettings:
    """Keyword arguments of `make_tracker` (besides `frame_rate`). Times are in seconds, counts in frames."""

    high_score: float = 0.6
    """Detections scoring at least this are associated first and may start new tracks (ByteTrack stage 1)."""
    low_score: float = 0.1
    """Detections in [low_score, high_score) only continue already confirmed tracks (ByteTrack stage 2)."""
    new_track_score: float = 0.8
    """An unmatched detection needs at least this score to start a new (tentative) track."""
    match_iou: float = 0.2
    """Minimum IoU between a predicted track box and a confident detection to associate them."""
    low_match_iou: float = 0.5
    """Minimum IoU for the low-score second stage (stricter: low scores are often false positives)."""
    recovery_iou: float = 0.5
    """Minimum IoU between a confident detection left over and the last observed box of an unmatched track
    to recover it (OC-SORT's observation-centric recovery; stricter: that box may be seconds old)."""
    min_hits: int = 3
    """Frames with a matched detection needed before a tentative track is confirmed (and reported)."""
    max_age_s: float = 2.0
    """Seconds a confirmed track may go unmatched (coasting, then lost) before it is removed."""
    max_age_frames: int = 0
    """If > 0, the age limit in frames instead of `max_age_s` (then it depends on the frame rate)."""
    coast_s: float = 0.2
    """Seconds an unmatched confirmed track is still reported at its predicted box before it turns lost."""
    class_aware: bool = True
    """If true, a detection only continues a track of the same class."""
    direction_weight: float = 0.0
    """Weight of OC-SORT's direction-consistency term added to the IoU when matching confident detections
    (0 = off; OC-SORT uses 0.2): a detection ahead of a track's motion is preferred over one behind it. Off
    by default: on MOT17 it changed little either way (bench/mot.py --loo)."""
    direction_lag_s: float = 0.1
    """Seconds between the two observations a track's direction of motion is measured from (1 to 8 frames)."""
    max_height_ratio: float = 1.3
    """A detection may only continue a track whose box height is within this factor of its own (0 = off):
    a walking person's height barely changes between frames, while a match that jumps to a nearer or
    farther person usually changes it a lot."""
    match_buffer: float = 0.1
    """Before the IoU of a track's predicted box and a detection is taken, both boxes are widened by this
    fraction of their own width and height on every side (C-BIoU's buffered IoU; 0 = plain IoU): a gate
    that tolerates a little more motion error, relative to the object's size."""
    scene_shift: bool = True
    """Before matching, measure the displacement the tracks share with their nearest confident detections
    this frame (the median, when it stands out from their spread and lines more of them up) and move every
    track by it, seen or not. A hand-held or vehicle camera's jolts, which no velocity foresees; with a fixed
    camera it rarely finds one."""
    measurement_noise: float = 0.05
    """Standard deviation of a detected box's centre, width and height, as a fraction of the box's width or
    height: the Kalman filter's measurement noise (ByteTrack's 1/20). Higher, the filter trusts its motion
    model more and each detection less: steadier velocities from a jittery detector, slower to follow a
    sudden change of motion."""
    scene_motion: bool = True
    """Estimate the motion all tracks share (a moving camera) from the tracks themselves, no image needed:
    each frame, the median change of the matched tracks' velocities, when it stands out from their spread.
    Tracks that go unseen then keep following the scene (their own velocity plus how much the shared
    velocity changed since they were last seen), and a shared acceleration seen in two frames in a row is
    carried into the next prediction. With a fixed camera the estimate barely moves (tracks change their
    velocities each their own way); `camera_motion` passed to update() still comes first (this only follows
    what is left)."""

    def __post_init__(self) -> None:
        def check(name: str, ok: bool, rule: str) -> None:
            if not ok:
                raise ValueError(f"tracker.{name}: must be {rule} (got {getattr(self, name)!r})")

        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("bool", bool):
                if not isinstance(value, bool):
                    raise TypeError(f"tracker.{f.name}: must be a bool (got {value!r})")
            elif f.type in ("int", int):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise TypeError(f"tracker.{f.name}: must be an integer (got {value!r})")
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise TypeError(f"tracker.{f.name}: must be a finite number (got {value!r})")
        for name in ("high_score", "low_score", "new_track_score"):
            check(name, 0.0 <= getattr(self, name) <= 1.0, "in [0, 1]")
        check("low_score", self.low_score <= self.high_score, f"<= high_score ({self.high_score})")
        for name in ("match_iou", "low_match_iou", "recovery_iou"):
            check(name, 0.0 < getattr(self, name) <= 1.0, "in (0, 1]")
        check("min_hits", self.min_hits >= 1, ">= 1")
        check("max_age_s", self.max_age_s > 0, "> 0")
        check("max_age_frames", self.max_age_frames >= 0, ">= 0")
        check("coast_s", self.coast_s >= 0, ">= 0")
        check("direction_weight", 0 <= self.direction_weight <= 1, "in [0, 1]")
        check("direction_lag_s", self.direction_lag_s > 0, "> 0")
        check("max_height_ratio", self.max_height_ratio == 0 or self.max_height_ratio > 1, "0 (off) or > 1")
        check("match_buffer", 0 <= self.match_buffer <= 1, "in [0, 1]")
        check("measurement_noise", 0 < self.measurement_noise <= 1, "in (0, 1]")


def validate_frame_rate(frame_rate: float) -> float:
    if isinstance(frame_rate, bool) or not isinstance(frame_rate, (int, float)):
        raise TypeError(f"tracker.frame_rate: must be a number (got {frame_rate!r})")
    if not (math.isfinite(frame_rate) and frame_rate > 0):
        raise ValueError(f"tracker.frame_rate: must be > 0 (got {frame_rate!r})")
    return float(frame_rate)


def make_settings(**settings: object) -> TrackerSettings:
    """Build settings from keyword arguments, naming any unknown key."""
    known = {f.name for f in fields(TrackerSettings)}
    for key in settings:
        if key not in known:
            raise TypeError(f"unknown tracker setting {key!r} (known: {', '.join(sorted(known))})")
    return TrackerSettings(**settings)  # type: ignore[arg-type]

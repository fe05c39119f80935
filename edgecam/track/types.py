"""Public value types returned by the tracker."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal

Box = tuple[float, float, float, float]


class TrackState(str, Enum):
    """Lifecycle: tentative -> confirmed -> lost -> removed (lost tracks may become confirmed again)."""

    TENTATIVE = "tentative"
    CONFIRMED = "confirmed"
    LOST = "lost"
    REMOVED = "removed"


@dataclass(slots=True)
class Track:
    """Snapshot of one track after an `update`, owned by the caller (e.g. the pipeline sets `label`).

    Not frozen: a frozen dataclass costs ~10x more to build, and update() builds one per track per frame.
    Times are tracker timestamps in seconds.
    """

    id: int
    box: Box
    """x1, y1, x2, y2 in pixels (filtered estimate)."""
    class_id: int
    score: float
    """Score of the last matched detection."""
    state: TrackState
    velocity: tuple[float, float]
    """Box centre velocity in pixels per second."""
    age: int
    """Frames since the track was first seen."""
    hits: int
    """Frames in which a detection was matched to the track."""
    first_seen: float
    last_seen: float
    """Timestamp of the last matched detection."""
    label: str | None = None
    """Filled in by the pipeline (the tracker only knows class ids)."""


TrackEventKind = Literal["track_started", "track_ended"]


@dataclass(frozen=True, slots=True)
class TrackEvent:
    """Emitted once when a track is confirmed (`track_started`) and once when removed (`track_ended`)."""

    kind: TrackEventKind
    track_id: int
    class_id: int
    score: float
    box: Box
    timestamp: float
    duration_s: float | None = None
    """For `track_ended`: last_seen - first_seen."""

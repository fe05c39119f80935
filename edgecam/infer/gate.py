"""Motion gating for the inference stage: when to run the detector, and the tracker's clock meanwhile.

While nothing moves the detector runs only every ``idle_detect_s``; the frames in between carry the
tracks as held. The tracker's interface stays as it is (``update(boxes, scores, classes, timestamp)``),
so the gate converts at its door: the tracker is not called on a skipped frame, and it is given a clock
in which a stretch of skipped frames took no time (:class:`TrackerClock`). A still person seen again at
the next idle detection is then one frame older to the tracker, not ``idle_detect_s`` older: the track
is neither aged out nor predicted far off, and keeps its id; the times the tracker reports (track first
and last seen, event times and durations) are mapped back to frame time.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, replace

from edgecam.capture.slot import Frame
from edgecam.track import Track, TrackEvent

__all__ = ["GateSettings", "MotionGate", "TrackerClock"]


@dataclass(frozen=True)
class GateSettings:
    enabled: bool = False
    idle_detect_s: float = 3.0  # while nothing moves, run the detector this often


class MotionGate:
    """Per frame: does the detector run? Always when gating is off, when the frame carries no motion verdict
    or moves, and when the last detection is ``idle_detect_s`` old; otherwise the frame is skipped."""

    def __init__(self, settings: GateSettings | None = None) -> None:
        self.settings = settings or GateSettings()
        self.last_detect: float | None = None  # frame timestamp of the last detector run

    def should_detect(self, frame: Frame) -> bool:
        s = self.settings
        if not s.enabled or frame.motion is None or frame.motion.moving or self.last_detect is None:
            return True
        return frame.timestamp - self.last_detect >= s.idle_detect_s

    def detected(self, frame: Frame) -> None:
        self.last_detect = frame.timestamp


class TrackerClock:
    """Frame time ↔ tracker time. ``held_s`` is the total time spent in skipped frames; the tracker's time for
    a frame is its timestamp minus what was held before it. Breakpoints (tracker time, held) remember where
    the offset changed, so any tracker time maps back to frame time."""

    MAX_BREAKS = 100_000  # one per idle detection at most: days of idle gating

    def __init__(self) -> None:
        self.held_s = 0.0
        self._previous: float | None = None  # timestamp of the last frame seen (skipped or not)
        self._at: list[float] = []  # tracker times where the offset changed…
        self._held: list[float] = []  # …and the offset from there on
        self._spans: dict[int, tuple[float, float]] = {}  # track id → (first_seen, last_seen), tracker time

    def skip(self, frame: Frame) -> None:
        """A frame the detector skipped: the time since the previous frame does not exist for the tracker."""
        if self._previous is not None:
            self.held_s += max(0.0, frame.timestamp - self._previous)
        self._previous = frame.timestamp

    def tracker_time(self, frame: Frame) -> float:
        """The timestamp to give the tracker for a frame the detector ran on."""
        self._previous = frame.timestamp
        now = frame.timestamp - self.held_s
        if self.held_s and (not self._held or self._held[-1] != self.held_s):
            self._at.append(now)
            self._held.append(self.held_s)
            if len(self._at) > self.MAX_BREAKS:
                del self._at[: self.MAX_BREAKS // 2], self._held[: self.MAX_BREAKS // 2]
        return now

    def frame_time(self, tracker_t: float) -> float:
        """Map a tracker time back to frame time."""
        if not self._at:
            return tracker_t
        i = bisect.bisect_right(self._at, tracker_t) - 1
        return tracker_t + (self._held[i] if i >= 0 else 0.0)

    def tracks(self, tracks: list[Track]) -> list[Track]:
        """Convert the tracker's Track times to frame time, in place (the list is the caller's)."""
        spans = self._spans
        for track in tracks:
            spans[track.id] = (track.first_seen, track.last_seen)
        if self._at:
            for track in tracks:
                track.first_seen = self.frame_time(track.first_seen)
                track.last_seen = self.frame_time(track.last_seen)
        return tracks

    def events(self, events: list[TrackEvent]) -> list[TrackEvent]:
        """Convert event times (and an ended track's duration) to frame time."""
        if not events:
            return events
        out = []
        for event in events:
            span = self._spans.pop(event.track_id, None) if event.kind == "track_ended" else None
            if not self._at:
                out.append(event)
                continue
            duration = event.duration_s
            if span is not None:
                duration = self.frame_time(span[1]) - self.frame_time(span[0])
            out.append(replace(event, timestamp=self.frame_time(event.timestamp), duration_s=duration))
        return out

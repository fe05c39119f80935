"""The event every sink receives (log, MQTT, snapshots), and its JSON form.

Timestamps are wall-clock epoch seconds inside the program and ISO 8601 in UTC with milliseconds in JSON
(``2024-05-01T12:00:00.123+00:00``): Home Assistant templates and people read ISO, and UTC avoids the
box's time zone setting leaking into the data.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

EventKind = Literal["track_started", "track_ended", "zone_enter", "zone_leave", "line_crossed"]
Direction = Literal["in", "out"]


def iso_time(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, timezone.utc).isoformat(timespec="milliseconds")


def wall_clock(monotonic_s: float) -> float:
    """A ``time.monotonic()`` instant (the frame's and the tracker's clock) as epoch seconds."""
    return time.time() - (time.monotonic() - monotonic_s)


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    track_id: int
    label: str
    score: float
    box: tuple[float, float, float, float]
    """x1, y1, x2, y2 in display pixels."""
    timestamp: float
    """Wall clock, epoch seconds."""
    zone: str | None = None
    line: str | None = None
    direction: Direction | None = None
    duration_s: float | None = None
    """For ``track_ended``: how long the track was seen."""
    event_id: int | None = None
    """The row of the event store this event belongs to (one per track), when there is a store."""
    clip: str | None = None
    """URL of the track's clip (complete some seconds after ``track_ended``), when clips are recorded."""

    def to_dict(self, camera: str) -> dict[str, Any]:
        """Every key is always present (null when it does not apply), so consumers need no guessing."""
        return {
            "camera": camera,
            "event": self.kind,
            "track_id": self.track_id,
            "label": self.label,
            "score": round(self.score, 3),
            "box": [round(v, 1) for v in self.box],
            "zone": self.zone,
            "line": self.line,
            "direction": self.direction,
            "duration_s": None if self.duration_s is None else round(self.duration_s, 2),
            "timestamp": iso_time(self.timestamp),
            "event_id": self.event_id,
            "clip": self.clip,
        }

    def to_json(self, camera: str) -> str:
        return json.dumps(self.to_dict(camera), separators=(",", ":"))

    def describe(self) -> str:
        """One log line."""
        what = f"#{self.track_id} {self.label}"
        if self.kind == "zone_enter":
            return f"{what} entered zone {self.zone}"
        if self.kind == "zone_leave":
            return f"{what} left zone {self.zone}"
        if self.kind == "line_crossed":
            return f"{what} crossed line {self.line} ({self.direction})"
        if self.kind == "track_started":
            return f"{what} started ({self.score:.2f})"
        return f"{what} ended after {self.duration_s or 0:.1f} s"

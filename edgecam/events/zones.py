"""Zones and lines: occupancy, enter/leave and line crossings from tracks (never raw detections).

A track's reference point is the bottom centre of its box: where a person's feet or a car's wheels touch
the ground. Zones and lines are drawn on the ground in the picture, and the box centre would sit a body's
height above it (for a tall or near object, far outside a zone it is standing in).

A track stays a zone's member while it is lost but not yet ended (occluded for a moment): occupancy does
not flicker, and a track that ends leaves every zone with a ``zone_leave``.

A line is crossed when the reference point moves from one side of the line to the other through the
segment between its two points (moving past an end of the line changes sides but is not a crossing).
Walking from the line's first point to its second, as seen on screen, crossing from the left side to the
right side is ``in`` and right to left is ``out``; the overlay draws an arrow towards the ``in`` side.
Swap the points to swap the directions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgecam.config.events import LineConfig, ZoneConfig
from edgecam.events.model import Direction, Event
from edgecam.track import Track

Point = tuple[float, float]
DIRECTIONS: tuple[Direction, Direction] = ("in", "out")


def reference_point(box: Sequence[float], frame_size: tuple[int, int]) -> Point:
    """Bottom centre of a display-pixel box, normalized to the frame."""
    w, h = frame_size
    return ((box[0] + box[2]) / 2 / w, box[3] / h)


def inside(point: Point, polygon: Sequence[Point]) -> bool:
    """Even-odd ray casting (a point on an edge may fall either way)."""
    x, y = point
    result = False
    n = len(polygon)
    for i in range(n):
        x1, y1 = polygon[i]
        x2, y2 = polygon[(i + 1) % n]
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            result = not result
    return result


def side(a: Point, b: Point, p: Point) -> float:
    """> 0: p is right of a→b as seen on screen (y points down); < 0: left; 0: on the line."""
    return (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])


def _counted(classes: Sequence[str], label: str | None) -> bool:
    return label is not None and (not classes or label in classes)


@dataclass
class _Zone:
    config: ZoneConfig
    polygon: list[Point]
    members: dict[int, str] = field(default_factory=dict)  # track id → label it entered with


@dataclass
class _Line:
    config: LineConfig
    a: Point
    b: Point
    # track id → (side, point): the last point off the line and which side it was on
    anchors: dict[int, tuple[float, Point]] = field(default_factory=dict)
    counts: dict[str, Counter[str]] = field(default_factory=lambda: {d: Counter() for d in DIRECTIONS})

    def crossed(self, start: Point, end: Point) -> bool:
        """Does the move start→end (already known to change sides) pass through the segment a-b?"""
        e1 = side(start, end, self.a)
        e2 = side(start, end, self.b)
        return e1 * e2 <= 0


class ZoneCounter:
    """Pure logic, no threads, no drawing (``edgecam.render.areas`` draws zones and lines from ``status``):
    ``update`` once per frame from the inference thread; ``status`` may be called from other threads (it
    reads an immutable snapshot)."""

    def __init__(self, zones: Iterable[ZoneConfig] = (), lines: Iterable[LineConfig] = ()) -> None:
        self._zones = [_Zone(z, [tuple(p) for p in z.points]) for z in zones]  # type: ignore[misc]
        self._lines = [_Line(c, tuple(c.points[0]), tuple(c.points[1])) for c in lines]  # type: ignore[arg-type]
        self._last: dict[int, Track] = {}  # last seen snapshot of every live track in a zone or near a line
        self._snapshot: dict[str, Any] = self._make_snapshot()

    @property
    def empty(self) -> bool:
        return not self._zones and not self._lines

    def update(
        self,
        tracks: Sequence[Track],
        frame_size: tuple[int, int],
        now: float,
        ended: Iterable[int] = (),
    ) -> list[Event]:
        """Events for this frame. ``tracks`` are the reported (labelled) tracks, ``ended`` the ids of
        tracks that ended in this frame, ``now`` the frame's wall-clock time (epoch seconds)."""
        if self.empty:
            return []
        events: list[Event] = []
        for track in tracks:
            self._last[track.id] = track
            point = reference_point(track.box, frame_size)
            for zone in self._zones:
                counted = _counted(zone.config.classes, track.label) and inside(point, zone.polygon)
                member = zone.members.get(track.id)
                if counted and member is None:
                    zone.members[track.id] = track.label or ""
                    events.append(self._event("zone_enter", track, now, zone=zone.config.name))
                elif member is not None and not counted:
                    del zone.members[track.id]
                    events.append(self._event("zone_leave", track, now, zone=zone.config.name, label=member))
            for line in self._lines:
                if not _counted(line.config.classes, track.label):
                    continue
                s = side(line.a, line.b, point)
                if s == 0.0:
                    continue
                anchor = line.anchors.get(track.id)
                line.anchors[track.id] = (s, point)
                if anchor is None or (anchor[0] > 0) == (s > 0) or not line.crossed(anchor[1], point):
                    continue
                direction: Direction = "in" if s > 0 else "out"
                line.counts[direction][track.label or ""] += 1
                events.append(
                    self._event("line_crossed", track, now, line=line.config.name, direction=direction)
                )
        for track_id in ended:
            last = self._last.pop(track_id, None)
            for zone in self._zones:
                label = zone.members.pop(track_id, None)
                if label is not None and last is not None:
                    events.append(self._event("zone_leave", last, now, zone=zone.config.name, label=label))
            for line in self._lines:
                line.anchors.pop(track_id, None)
        if events:
            self._snapshot = self._make_snapshot()
        return events

    @staticmethod
    def _event(kind: Any, track: Track, now: float, label: str | None = None, **where: Any) -> Event:
        return Event(kind, track.id, label or track.label or "", track.score, track.box, now, **where)

    # ---- reading --------------------------------------------------------------------------------------------

    def _make_snapshot(self) -> dict[str, Any]:
        zones = []
        for zone in self._zones:
            by_class = Counter(zone.members.values())
            for label in zone.config.classes:
                by_class.setdefault(label, 0)
            zones.append(
                {"name": zone.config.name, "occupancy": sum(by_class.values()), "classes": dict(by_class)}
            )
        lines = []
        for line in self._lines:
            labels = sorted(set(line.counts["in"]) | set(line.counts["out"]) | set(line.config.classes))
            lines.append(
                {
                    "name": line.config.name,
                    "in": sum(line.counts["in"].values()),
                    "out": sum(line.counts["out"].values()),
                    "total": sum(line.counts["in"].values()) + sum(line.counts["out"].values()),
                    "classes": {
                        label: {"in": line.counts["in"][label], "out": line.counts["out"][label]}
                        for label in labels
                    },
                }
            )
        return {"zones": zones, "lines": lines}

    def status(self) -> dict[str, Any]:
        """``{"zones": [{name, occupancy, classes: {label: n}}], "lines": [{name, in, out, total,
        classes: {label: {in, out}}}]}``; line counts are since the start."""
        return self._snapshot

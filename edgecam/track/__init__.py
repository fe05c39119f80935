"""Multi-object tracking: `make_tracker(frame_rate, **settings)` then `update(...)` once per frame."""

from __future__ import annotations

from .settings import TrackerSettings, make_settings
from .tracker import Tracker
from .types import Track, TrackEvent, TrackState

__all__ = ["Track", "TrackEvent", "TrackState", "Tracker", "TrackerSettings", "make_tracker"]


def make_tracker(frame_rate: float = 30.0, **settings: object) -> Tracker:
    """Build a tracker; `settings` are `TrackerSettings` fields (the `tracker` section of config.yaml).

    Raises TypeError for an unknown setting or a wrongly typed value, ValueError for an out-of-range one.
    """
    return Tracker(frame_rate, make_settings(**settings))

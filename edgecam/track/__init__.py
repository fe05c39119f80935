"""Multi-object tracking: `make_tracker(frame_rate, **settings)` then `update(...)` once per frame.

Importable with numpy and scipy alone. The settings and value types load without either (the config reads
them); the tracker itself (numpy, scipy) loads on first use, so read-only commands stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import TrackerSettings, make_settings
from .types import Track, TrackEvent, TrackState

if TYPE_CHECKING:
    from .tracker import Tracker

__all__ = ["Track", "TrackEvent", "TrackState", "Tracker", "TrackerSettings", "make_tracker"]


def make_tracker(frame_rate: float = 30.0, **settings: object) -> Tracker:
    """Build a tracker; `settings` are `TrackerSettings` fields (the `tracker` section of config.yaml).

    Raises TypeError for an unknown setting or a wrongly typed value, ValueError for an out-of-range one.
    """
    from .tracker import Tracker

    return Tracker(frame_rate, make_settings(**settings))


def __getattr__(name: str) -> Any:
    if name == "Tracker":
        from .tracker import Tracker

        return Tracker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

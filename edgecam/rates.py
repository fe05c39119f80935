"""Small thread-safe meters: event rates and latency percentiles over a sliding time window."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np


class RateMeter:
    """Events per second over the last ``window_s`` seconds.

    ``tick`` is all a stage pays per frame (an append to a bounded deque); the window is trimmed and the
    rate computed only when someone reads ``rate`` (a status request, the HUD). ``max_events`` bounds the
    memory: at rates above ``max_events / window_s`` the rate is measured over the newest events only.
    """

    def __init__(
        self, window_s: float = 2.0, clock: Callable[[], float] = time.monotonic, max_events: int = 4096
    ) -> None:
        self._window_s = window_s
        self._clock = clock
        self._times: deque[float] = deque(maxlen=max_events)
        self._lock = threading.Lock()
        self.count = 0

    def tick(self, when: float | None = None) -> None:
        now = self._clock() if when is None else when
        with self._lock:
            self._times.append(now)
            self.count += 1

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - self._window_s:
            self._times.popleft()

    @property
    def rate(self) -> float:
        with self._lock:
            self._trim(self._clock())
            if len(self._times) < 2:
                return 0.0
            span = self._times[-1] - self._times[0]
            return (len(self._times) - 1) / span if span > 0 else 0.0


class LatencyWindow:
    """The last ``size`` durations (ms), for medians and tails."""

    def __init__(self, size: int = 200) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, ms: float) -> None:
        with self._lock:
            self._values.append(ms)

    def values(self) -> list[float]:
        """The kept durations, oldest first (a copy)."""
        with self._lock:
            return list(self._values)

    def percentile(self, q: float) -> float:
        with self._lock:
            if not self._values:
                return 0.0
            return float(np.percentile(np.fromiter(self._values, float), q))

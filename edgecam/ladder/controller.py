"""The model-ladder controller: pure decisions, no threads, an injectable clock.

It watches the inference-limited rate — how many frames per second the inference stage could process,
from its busy time per frame (a time-based EWMA) — never the camera's rate, so a slow camera is no reason
to degrade. It steps down one rung when that rate stays under ``min_fps`` for ``down_after_s``, and up
when the bigger model's predicted rate stays at or above ``min_fps × up_margin`` for ``up_after_s``.

The prediction is the bigger model's own time per frame without contention (the fastest seen when it ran,
or a probe at startup) times the CPU contention now. Contention is measured directly: during an invoke,
the time the inference thread was runnable over the time it actually had a CPU (1.0 when it has a core
to itself, about 2.2 with four busy processes on two cores; see ``edgecam.detect.cpuclock``). Comparing the
current model's latency with its own reference instead misreads both ways: a model that runs at the
camera's rate gets slower than its probe without any outside load (cold caches after each idle gap, its
own decode and encode work), which reads as load that never goes away.

At most one switch per ``cooldown_s``; a fault (an Edge TPU failing) steps away at once. A step up that
has to come back down soon after was a misjudged prediction: each one doubles the wait before the next
try, as adaptive-bitrate ladders do, so any oscillation dies out.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edgecam.detect.cpuclock import contention


@dataclass(frozen=True)
class AdaptSettings:
    min_fps: float = 5.0
    down_after_s: float = 3.0
    up_after_s: float = 15.0
    up_margin: float = 1.25
    cooldown_s: float = 10.0
    window_s: float = 1.0  # EWMA time constant of the busy-time estimate (≈7 frames of the big CPU model)


@dataclass(frozen=True)
class Decision:
    target: int  # rung index to switch to
    reason: str
    immediate: bool = False  # a fault: ignore the cooldown


@dataclass
class Rung:
    model_id: str
    cost: float  # relative cost from the manifest: predicts latency before a model has run
    # Busy time per frame without CPU contention: the lowest settled value seen when it ran, or from a
    # startup probe. Scaled by the contention of the moment, it predicts this model's rate.
    idle_ms: float | None = None
    cpu_bound: bool = True  # False for an Edge TPU: its time does not grow with CPU load
    available_from: float = 0.0  # a failed rung is not chosen again before this time
    failures: int = 0


def _blend(average: float | None, value: float | None, weight: float) -> float | None:
    """One EWMA step; starts over from ``value`` when either side is missing."""
    if average is None or value is None:
        return value
    return average + (value - average) * weight


class LadderController:
    """Decides which rung of the ladder to run. The caller applies a Decision (loads and swaps the
    model) and then reports back with ``switched`` or ``failed``."""

    def __init__(
        self,
        rungs: Sequence[Rung],
        settings: AdaptSettings,
        position: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rungs:
            raise ValueError("the ladder needs at least one model")
        self.rungs = list(rungs)
        self.settings = settings
        self.position = position
        self._clock = clock
        self._ewma_ms: float | None = None
        self._ewma_cpu_ms: float | None = None  # None: the caller does not measure CPU time
        self._ewma_runnable_ms: float | None = None
        self._last_obs: float | None = None
        self._running_since = clock()
        self._last_switch = -math.inf
        self._below_since: float | None = None
        self._above_since: float | None = None
        self._last_up: float | None = None  # when the last step up happened
        self.failed_ups = 0  # step ups that had to come back down soon: each doubles the next wait
        self.pending: Decision | None = None

    # ---- measurements -------------------------------------------------------------------------------------

    @property
    def current(self) -> Rung:
        return self.rungs[self.position]

    @property
    def rate(self) -> float | None:
        """Inference-limited frames per second of the current model, or None before the first frame."""
        return 1000.0 / self._ewma_ms if self._ewma_ms else None

    @property
    def load(self) -> float:
        """CPU contention now (1.0 = none). Without a CPU-time measurement (or on an Edge TPU, whose invoke
        waits on USB), judged on the busy time against the current model's reference instead."""
        current = self.current
        if current.cpu_bound and self._ewma_cpu_ms and self._ewma_runnable_ms:
            return contention(self._ewma_runnable_ms, self._ewma_cpu_ms)
        if self._ewma_ms and current.idle_ms:
            return max(1.0, self._ewma_ms / current.idle_ms)
        return 1.0

    def predicted_rate(self, index: int) -> float | None:
        """What rung ``index`` would do under the current load."""
        if self._ewma_ms is None:
            return None
        current, other = self.current, self.rungs[index]
        if other.idle_ms is not None:
            other_ms = other.idle_ms * (self.load if other.cpu_bound else 1.0)
        else:  # never measured: scale the current latency by the manifest's relative cost
            other_ms = self._ewma_ms * other.cost / current.cost
        return 1000.0 / other_ms

    def observe(
        self, busy_ms: float, cpu_ms: float | None = None, runnable_ms: float | None = None
    ) -> Decision | None:
        """One processed frame took ``busy_ms`` of inference-stage time; inside the model's invoke the
        inference thread was on a CPU for ``cpu_ms`` and runnable (on a CPU or waiting for one) for
        ``runnable_ms``. Returns a switch to make, if any."""
        now = self._clock()
        if cpu_ms is None or runnable_ms is None:
            cpu_ms = runnable_ms = None
        if self._last_obs is None:
            weight = 1.0
        else:
            weight = 1.0 - math.exp(-max(now - self._last_obs, 1e-3) / self.settings.window_s)
        ewma_ms = busy_ms if self._ewma_ms is None else self._ewma_ms + (busy_ms - self._ewma_ms) * weight
        self._ewma_ms = ewma_ms
        self._ewma_cpu_ms = _blend(self._ewma_cpu_ms, cpu_ms, weight)
        self._ewma_runnable_ms = _blend(self._ewma_runnable_ms, runnable_ms, weight)
        self._last_obs = now
        if now - self._running_since >= self.settings.window_s:  # settled: update the reference
            rung = self.current
            unloaded = ewma_ms / self.load if rung.cpu_bound else ewma_ms
            # The fastest seen: a slow run the contention does not explain (thermal throttling) must not
            # keep the model down for good; if it is still slow, the failed step up backs off.
            rung.idle_ms = unloaded if rung.idle_ms is None else min(rung.idle_ms, unloaded)
        return None if self.pending else self._decide(now)

    def _decide(self, now: float) -> Decision | None:
        s = self.settings
        rate = self.rate
        assert rate is not None
        self._below_since = (self._below_since or now) if rate < s.min_fps else None
        lower = self._next_available(self.position + 1, +1, now)
        higher = self._next_available(self.position - 1, -1, now)
        up_rate = self.predicted_rate(higher) if higher is not None else None
        up_ok = up_rate is not None and up_rate >= s.min_fps * s.up_margin
        self._above_since = (self._above_since or now) if up_ok else None
        if now - self._last_switch < s.cooldown_s:
            return None
        if lower is not None and self._below_since is not None and now - self._below_since >= s.down_after_s:
            return self._propose(
                lower,
                f"inference {rate:.1f} fps < {s.min_fps:g} fps for {now - self._below_since:.0f} s "
                f"(CPU contention ×{self.load:.1f})",
            )
        if self._last_up is not None and now - self._last_up > 4 * s.up_after_s:
            self.failed_ups, self._last_up = 0, None  # the bigger model held: forget earlier failed probes
        up_wait = s.up_after_s * 2 ** min(self.failed_ups, 4)
        if higher is not None and self._above_since is not None and now - self._above_since >= up_wait:
            return self._propose(
                higher,
                f"{self.rungs[higher].model_id} predicted {up_rate:.1f} fps ≥ {s.min_fps * s.up_margin:.1f} fps "
                f"for {now - self._above_since:.0f} s (CPU contention ×{self.load:.1f})",
            )
        return None

    def _next_available(self, start: int, step: int, now: float) -> int | None:
        index = start
        while 0 <= index < len(self.rungs):
            if self.rungs[index].available_from <= now:
                return index
            index += step
        return None

    def _propose(self, target: int, reason: str, immediate: bool = False) -> Decision:
        self.pending = Decision(target, reason, immediate)
        return self.pending

    # ---- faults and outcomes ------------------------------------------------------------------------------

    def fault(self, reason: str, fallback: int | None = None, retry_after_s: float = 30.0) -> Decision | None:
        """The current rung is failing (e.g. the Edge TPU was unplugged): mark it unavailable for a while
        (doubling on each failure) and step away at once, to ``fallback`` (its CPU twin) if given."""
        now = self._clock()
        rung = self.current
        rung.failures += 1
        rung.available_from = now + min(retry_after_s * 2 ** (rung.failures - 1), 600.0)
        target = fallback if fallback is not None else self._next_available(self.position + 1, +1, now)
        if target is None:
            target = self._next_available(self.position - 1, -1, now)
        if target is None:
            return None
        return self._propose(target, reason, immediate=True)

    def switched(self, target: int) -> None:
        """The caller swapped to ``target``."""
        now = self._clock()
        if target < self.position:
            self._last_up = now
        elif self._last_up is not None and now - self._last_up <= 4 * self.settings.up_after_s:
            self.failed_ups += 1  # the bigger model did not hold
            self._last_up = None
        self.position = target
        self.pending = None
        self._last_switch = now
        self._running_since = now
        self._ewma_ms = self._ewma_cpu_ms = self._ewma_runnable_ms = None
        self._last_obs = None
        self._below_since = self._above_since = None

    def failed(self, target: int, retry_after_s: float = 30.0) -> None:
        """Rung ``target`` could not be loaded: skip it for a while; the current model stays."""
        rung = self.rungs[target]
        rung.failures += 1
        rung.available_from = self._clock() + min(retry_after_s * 2 ** (rung.failures - 1), 600.0)
        self.pending = None

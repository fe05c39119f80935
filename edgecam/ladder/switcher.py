"""Runs the ladder controller against real models: loads and warms a model off the hot path, swaps it in
between two frames, and moves away from a failing Edge TPU at once (retrying it later with backoff)."""

from __future__ import annotations

import logging
import queue
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from edgecam.detect import Detector
from edgecam.detect.cpuclock import contention
from edgecam.detect.manifest import Manifest
from edgecam.ladder.controller import AdaptSettings, Decision, LadderController, Rung

log = logging.getLogger(__name__)

CONSECUTIVE_FAILURES_FOR_FAULT = 3  # a CPU model that keeps raising is treated like a failing TPU


class LadderUnavailableError(RuntimeError):
    """Not one model of the ladder loads; the message says why for each."""


@dataclass(frozen=True)
class SwitchRecord:
    time: float  # wall clock (epoch seconds)
    from_model: str
    to_model: str
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {
            "time": round(self.time, 3),
            "from": self.from_model,
            "to": self.to_model,
            "reason": self.reason,
        }


def probe(detector: Detector, runs: int = 3) -> float:
    """Warm a freshly loaded model (first invokes are slow) and return its median time per frame on a
    blank frame, in ms, without CPU contention (wall time divided by the contention measured in invoke)."""
    width, height = detector.input_size
    blank = np.zeros((height, width, 3), np.uint8)
    unloaded = []
    for _ in range(runs + 1):
        start = time.perf_counter()
        detector.detect(blank)
        total_ms = (time.perf_counter() - start) * 1e3
        timing = detector.last_timing
        load = (
            contention(timing.invoke_runnable_ms, timing.invoke_cpu_ms) if detector.device == "cpu" else 1.0
        )
        unloaded.append(total_ms / load)
    return statistics.median(unloaded[1:])


class ModelSwitcher:
    """The inference thread calls ``current()`` before each frame, then ``observe()`` or ``invoke_failed()``."""

    def __init__(
        self,
        ids: Sequence[str],
        load: Callable[[str], Detector],
        manifest: Manifest,
        settings: AdaptSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._manifest = manifest
        self._detectors: dict[str, Detector] = {}
        rungs = [
            Rung(model_id, manifest.models[model_id].cost, cpu_bound=not manifest.models[model_id].edgetpu)
            for model_id in ids
        ]
        position = None
        self._load_errors: dict[str, str] = {}
        for index, rung in enumerate(rungs):  # load and probe every rung now: swaps later are instant
            detector = self._try_load(rung.model_id)
            if detector is None:
                rung.available_from = clock() + 30.0
                rung.failures = 1
                continue
            rung.idle_ms = probe(detector)
            log.info("ladder rung %d: %s %.1f ms per frame (idle probe)", index, rung.model_id, rung.idle_ms)
            position = index if position is None else position
        if position is None:
            why = "; ".join(f"{m}: {e}" for m, e in self._load_errors.items())
            raise LadderUnavailableError(f"no model of the ladder could be loaded ({why})")
        self.controller = LadderController(rungs, settings, position, clock)
        self._detector = self._detectors[rungs[position].model_id]
        self._ready: tuple[Decision, Detector] | None = None
        self._lock = threading.Lock()
        self._requests: queue.Queue[Decision | None] = queue.Queue()
        self._failures = 0
        self.switches: list[SwitchRecord] = []
        self._worker = threading.Thread(target=self._load_loop, name="model-loader", daemon=True)

    def start(self) -> None:
        """Start the loader thread that prepares the next rung in the background."""
        self._worker.start()

    def _try_load(self, model_id: str) -> Detector | None:
        if model_id in self._detectors:
            return self._detectors[model_id]
        try:
            detector = self._load(model_id)
        except Exception as exc:
            log.warning("model %s not available: %s", model_id, exc)
            self._load_errors[model_id] = str(exc)
            return None
        self._detectors[model_id] = detector
        return detector

    # ---- inference thread -----------------------------------------------------------------------------------

    def current(self) -> Detector:
        """The detector for the next frame; a model made ready in the background is swapped in here."""
        with self._lock:
            ready, self._ready = self._ready, None
        if ready is not None:
            decision, detector = ready
            previous = self._detector.model_id
            self._detector = detector
            self.controller.switched(decision.target)
            self._failures = 0
            self.switches.append(SwitchRecord(time.time(), previous, detector.model_id, decision.reason))
            log.warning("model switched %s → %s: %s", previous, detector.model_id, decision.reason)
        return self._detector

    def observe(self, busy_ms: float, cpu_ms: float | None = None, runnable_ms: float | None = None) -> None:
        self._failures = 0
        decision = self.controller.observe(busy_ms, cpu_ms, runnable_ms)
        if decision is not None:
            self._requests.put(decision)

    def invoke_failed(self, exc: BaseException) -> None:
        """An Edge TPU that fails moves to its CPU twin at once; any model failing repeatedly steps down."""
        self._failures += 1
        detector = self._detector
        if self.controller.pending is not None:
            return
        if detector.device == "edgetpu" or self._failures >= CONSECUTIVE_FAILURES_FOR_FAULT:
            twin = self._manifest.models[detector.model_id].cpu_twin
            ids = [r.model_id for r in self.controller.rungs]
            fallback = ids.index(twin) if twin in ids else None
            self._detectors.pop(detector.model_id, None)  # reload it from scratch when it is retried
            decision = self.controller.fault(
                f"{detector.model_id} failing: {type(exc).__name__}: {exc}", fallback
            )
            if decision is not None:
                self._requests.put(decision)

    def reload_current(self) -> Detector:
        """A fresh interpreter for the current model (the old one is stuck in a thread the watchdog
        abandoned; an interpreter must never be used from two threads)."""
        model_id = self._detector.model_id
        self._detectors.pop(model_id, None)
        detector = self._load(model_id)
        self._detectors[model_id] = detector
        self._detector = detector
        return detector

    # ---- loader thread --------------------------------------------------------------------------------------

    def _load_loop(self) -> None:
        while (decision := self._requests.get()) is not None:
            model_id = self.controller.rungs[decision.target].model_id
            detector = self._try_load(model_id)
            if detector is None:
                self.controller.failed(decision.target)
                continue
            rung = self.controller.rungs[decision.target]
            if rung.idle_ms is None:
                rung.idle_ms = probe(detector)
            with self._lock:
                self._ready = (decision, detector)

    def stop(self) -> None:
        self._requests.put(None)
        if self._worker.is_alive():
            self._worker.join(2.0)

    # ---- status -----------------------------------------------------------------------------------------------

    def status(self, target_fps: float) -> dict[str, object]:
        models = []
        for rung in self.controller.rungs:
            entry = self._manifest.models[rung.model_id]
            models.append(
                {
                    "id": rung.model_id,
                    "alpha": entry.alpha,
                    "input_size": list(entry.input_size),
                    "measured_ms": round(rung.idle_ms, 1) if rung.idle_ms is not None else None,
                    "available": rung.available_from <= time.monotonic(),
                }
            )
        rate = self.controller.rate
        lightest = self.controller.position == len(self.controller.rungs) - 1
        warning = None
        if rate and lightest and target_fps and rate < target_fps:
            warning = (
                f"even the lightest model ({self.controller.rungs[-1].model_id}) runs at {rate:.1f} fps, under "
                f"detector.min_fps {target_fps:g}: lower min_fps, give the box less other work, or add a Coral"
            )
        return {
            "warning": warning,
            "models": models,
            "position": self.controller.position,
            "target_fps": target_fps,
            "rate_fps": round(rate, 2) if rate else None,
            "cpu_contention": round(self.controller.load, 2) if rate else None,
            "switches": [s.to_dict() for s in self.switches[-50:]],
        }

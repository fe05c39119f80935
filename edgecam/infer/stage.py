"""The inference thread: newest frame → (motion gate) → detector → tracker → OutputFrame for the output side."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from edgecam.capture.slot import Frame, LatestFrameSlot
from edgecam.detect.detector import DetectionFilter, Detections, Detector
from edgecam.infer.gate import GateSettings, MotionGate, TrackerClock
from edgecam.infer.result import ModelInfo, OutputFrame
from edgecam.ladder.switcher import ModelSwitcher
from edgecam.rates import LatencyWindow, RateMeter
from edgecam.track import Tracker, TrackEvent

log = logging.getLogger(__name__)


class InferenceThread(threading.Thread):
    """Owns the detector and the tracker; never works on a stale frame when a newer one exists.

    ``busy_ms`` is the time spent per frame the detector ran on (pre-processing, invoke, tracking): it
    measures what the stage could do, whatever the camera delivers; the model ladder decides on it, and only
    on such frames, so motion gating never reads as "fast enough to step up".

    With motion gating (``gate``), a frame on which nothing moves skips the detector and the tracker (unless
    the last detection is ``idle_detect_s`` old) and becomes an output frame carrying the tracks as held.
    ``frames`` counts output frames, ``detected`` the frames the detector ran on, ``skipped`` the others.
    """

    def __init__(
        self,
        slot: LatestFrameSlot,
        switcher: ModelSwitcher,
        tracker: Tracker,
        publish: Callable[[OutputFrame], None],
        detection_filter: DetectionFilter,
        tracker_floor: float,
        tracker_high_score: float,
        gate: GateSettings | None = None,
    ) -> None:
        super().__init__(name="inference", daemon=True)
        self._slot = slot
        self.switcher = switcher
        self.tracker = tracker
        self.set_filter(detection_filter, tracker_floor, tracker_high_score)
        self._publish = publish
        self.on_events: Callable[[list[TrackEvent]], None] = self._log_events
        self.on_output: Callable[[OutputFrame, list[TrackEvent]], None] | None = None
        self._stopping = threading.Event()
        self.gate = MotionGate(gate)
        self.clock = TrackerClock()
        self.rate = RateMeter()
        self.detect_rate = RateMeter()
        self.busy_ms = LatencyWindow(100)
        self.invoke_ms = LatencyWindow(100)
        self.track_ms = LatencyWindow(100)
        self.frames = 0
        self.detected = 0
        self.skipped = 0
        self._held: list = []  # the tracks of the last detection, carried by skipped frames
        self._info: ModelInfo | None = None
        self.errors = 0
        self.last_error: str | None = None
        self.heartbeat = time.monotonic()
        self.latest: OutputFrame | None = None
        self.lores_size: tuple[int, int] | None = None  # the picture the model in use wants, for capture

    def set_filter(
        self, detection_filter: DetectionFilter, tracker_floor: float, tracker_high_score: float
    ) -> None:
        """The user's filter decides which detections are confident; weaker ones down to the tracker's
        ``low_score`` only help continue existing tracks (ByteTrack's second stage)."""
        self.detection_filter = detection_filter
        self._tracker_floor, self._tracker_high_score = tracker_floor, tracker_high_score
        self._wide_filter = replace(
            detection_filter, threshold=min(tracker_floor, detection_filter.threshold), thresholds={}
        )
        self._second_stage_cap = tracker_high_score * 0.999

    def set_gate(self, gate: GateSettings) -> None:
        """Config reload: motion gating on or off, or another idle detection period (from the next frame)."""
        self.gate.settings = gate

    @property
    def detector(self) -> Detector:
        """The model in use now (the ladder may swap it between frames)."""
        return self.switcher.current()

    @staticmethod
    def model_info(d: Detector) -> ModelInfo:
        return ModelInfo(d.model_id, d.alpha, d.device, d.input_size)

    def successor(self) -> InferenceThread:
        """A fresh thread that carries on with the same slot, switcher, tracker, filter and meters, for the
        watchdog to start when this one is stuck inside a call. This one is abandoned: if its call ever
        returns, it exits without touching the tracker or publishing."""
        self._stopping.set()
        new = InferenceThread(
            self._slot, self.switcher, self.tracker, self._publish, self.detection_filter,
            self._tracker_floor, self._tracker_high_score,
        )  # fmt: skip
        new.on_output = self.on_output
        new.on_events, new.rate, new.detect_rate, new.busy_ms, new.invoke_ms, new.track_ms = (
            self.on_events, self.rate, self.detect_rate, self.busy_ms, self.invoke_ms, self.track_ms,
        )  # fmt: skip
        new.frames, new.detected, new.skipped, new.errors, new.last_error, new.latest = (
            self.frames, self.detected, self.skipped, self.errors, self.last_error, self.latest,
        )  # fmt: skip
        new.gate, new.clock, new._held, new.lores_size = self.gate, self.clock, self._held, self.lores_size
        return new

    def _log_events(self, events: list[TrackEvent]) -> None:
        for event in events:
            label = self.detector.label(event.class_id)
            if event.kind == "track_started":
                log.debug("track #%d started: %s (%.2f)", event.track_id, label, event.score)
            else:
                log.debug("track #%d ended: %s after %.1f s", event.track_id, label, event.duration_s or 0.0)

    def stop(self, timeout: float = 2.0) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        while not self._stopping.is_set():
            self.heartbeat = time.monotonic()
            frame = self._slot.take(timeout=0.25)
            if frame is None:
                continue
            detector = self.switcher.current()
            try:
                self._process(frame, detector)
            except Exception as exc:  # a failing frame is skipped; the stream goes on
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "inference failed on frame %d with %s (frame skipped): %s",
                    frame.sequence, detector.model_id, self.last_error, exc_info=self.errors <= 3,
                )  # fmt: skip
                self.switcher.invoke_failed(exc)

    def _process(self, frame: Frame, detector: Detector) -> None:
        if not self.gate.should_detect(frame):
            self._skip(frame, detector)
            return
        start = time.perf_counter()
        lores = frame.lores
        fits = lores is not None and (lores.shape[1], lores.shape[0]) == detector.input_size
        source = lores if fits else frame.image
        candidates = detector.detect(source, output_size=frame.size, detection_filter=self._wide_filter)
        if self._stopping.is_set():  # abandoned by the watchdog while inside detect(): leave no trace
            return
        # The user's thresholds decide which candidates are confident; the rest only feed the tracker's
        # second stage, with scores capped under its high_score. All as columns: no object per row.
        confident = candidates.scores >= detector.min_scores(self.detection_filter, candidates.class_ids)
        detections = candidates[confident] if not confident.all() else candidates
        scores = np.where(confident, candidates.scores, np.minimum(candidates.scores, self._second_stage_cap))
        self.gate.detected(frame)
        clock = self.clock
        track_start = time.perf_counter()
        tracks = self.tracker.update(
            candidates.boxes, scores, candidates.class_ids, timestamp=clock.tracker_time(frame)
        )
        track_ms = (time.perf_counter() - track_start) * 1e3
        events = clock.events(self.tracker.pop_events())
        clock.tracks(tracks)
        if events:
            self.on_events(events)
        for track in tracks:
            track.label = detector.label(track.class_id)
        self._held = tracks
        busy_ms = (time.perf_counter() - start) * 1e3
        self.detected += 1
        self.detect_rate.tick()
        # Out first: the track events the tracker just handed over exist nowhere else (a lost track_ended
        # would leave its object counted and its event open for good).
        self._output(frame, detector, detections, tracks, events, busy_ms)
        self.busy_ms.add(busy_ms)
        timing = detector.last_timing
        self.invoke_ms.add(timing.invoke_ms)
        self.track_ms.add(track_ms)
        self.switcher.observe(busy_ms, timing.invoke_cpu_ms, timing.invoke_runnable_ms)

    def _skip(self, frame: Frame, detector: Detector) -> None:
        """Nothing moves: no detector, no tracker; the frame carries the tracks as held."""
        self.clock.skip(frame)
        self.skipped += 1
        self._output(frame, detector, Detections.empty(detector.label), self._held, [], 0.0, detected=False)

    def _output(
        self,
        frame: Frame,
        detector: Detector,
        detections: Detections,
        tracks: list,
        events: list[TrackEvent],
        busy_ms: float,
        detected: bool = True,
    ) -> None:
        self.frames += 1
        self.rate.tick()
        info = self._info
        if info is None or info.model_id != detector.model_id:
            info = self._info = self.model_info(detector)
            self.lores_size = detector.input_size if detector.resize == "stretch" else None
        output = OutputFrame(frame, detections, tracks, info, busy_ms, time.monotonic(), detected=detected)
        self.latest = output
        self._publish(output)
        if self.on_output is not None:
            self.on_output(output, events)

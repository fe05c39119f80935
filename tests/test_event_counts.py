"""The hub's live counts when ``detector.classes`` changes while frames are in flight."""

from __future__ import annotations

import threading
import time

import numpy as np

from edgecam.capture.slot import Frame
from edgecam.detect import Detection
from edgecam.events.hub import EventHub
from edgecam.infer.result import ModelInfo, OutputFrame
from edgecam.track import Track, TrackEvent, TrackState

LABELS = {0: "person", 1: "car"}


def _track(track_id: int, class_id: int) -> Track:
    box = (10.0 * track_id, 10.0, 10.0 * track_id + 8, 30.0)
    return Track(track_id, box, class_id, 0.9, TrackState.CONFIRMED, (0, 0), 1, 1, 0, 0, LABELS[class_id])


def _output(tracks: list[Track], sequence: int) -> OutputFrame:
    frame = Frame(np.zeros((100, 200, 3), np.uint8), time.monotonic(), sequence)
    detections = [Detection(t.label or "", t.class_id, t.score, t.box) for t in tracks]
    return OutputFrame(
        frame, detections, tracks, ModelInfo("m", 1.0, "cpu", (300, 300)), 10.0, time.monotonic()
    )


def _started(track: Track) -> TrackEvent:
    return TrackEvent("track_started", track.id, track.class_id, 0.9, track.box, time.monotonic())


def test_a_track_started_by_a_frame_in_flight_after_a_class_change_is_not_counted():
    hub = EventHub("cam", LABELS.get, classes=["person", "car"])
    car, person = _track(1, 1), _track(2, 0)
    hub.on_frame(_output([car], 1), [_started(car)])
    assert hub.counts == {"person": 0, "car": 1}
    hub.set_classes(["car"])  # the detector's filter changes; a frame detected before it is still coming
    events = hub.on_frame(_output([car, person], 2), [_started(person)])
    assert [e.label for e in events] == ["person"]  # the event itself is still reported: it happened
    assert hub.counts == {"car": 1}
    hub.set_classes([])  # no class list: every class counts again, from the next track on
    late = _track(3, 0)
    hub.on_frame(_output([car, late], 3), [_started(late)])
    assert hub.counts == {"car": 1, "person": 1}


def test_counts_stay_consistent_while_classes_change_on_another_thread():
    """The config thread's set_classes and the inference thread's frames rebuild the same state."""
    hub = EventHub("cam", LABELS.get, classes=["person", "car"])
    stop = threading.Event()
    errors: list[BaseException] = []

    def flip_classes() -> None:
        try:
            while not stop.is_set():
                hub.set_classes(["car"])
                hub.set_classes(["person", "car"])
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    flipper = threading.Thread(target=flip_classes)
    flipper.start()
    try:
        for n in range(1, 3001):  # tracks start and end; many alive at once so rebuilding takes time
            track = _track(n, n % 2)
            hub.on_frame(_output([track], n), [_started(track)])
            if n > 200:
                gone = _track(n - 200, (n - 200) % 2)
                hub.on_frame(_output([], n), [TrackEvent("track_ended", gone.id, 0, 0.9, gone.box, 0.0, 1.0)])
    finally:
        stop.set()
        flipper.join()
    assert not errors and hub.errors == 0
    hub.set_classes(["car"])
    assert hub.counts == {"car": 100}  # the 200 still alive: half are cars; persons no longer count


class _FailingLadder:
    """A model ladder whose every observation fails (a fault injected after the tracker's step)."""

    def __init__(self, detector, fail: bool) -> None:
        self.detector, self.fail = detector, fail

    def current(self):
        return self.detector

    def observe(self, busy_ms, cpu_ms=None, runnable_ms=None) -> None:
        if self.fail:
            raise RuntimeError("ladder broke")

    def invoke_failed(self, exc) -> None:
        pass


def test_a_failure_after_the_tracker_step_loses_no_track_event(model_dir, media_dir, cv2):
    """The tracker hands its events over once: they reach the output side before anything else can fail."""
    from edgecam.app.pipeline import detection_filter
    from edgecam.config import Config
    from edgecam.detect import load_detector
    from edgecam.infer.stage import InferenceThread
    from edgecam.track import make_tracker

    config = Config()
    detector = load_detector("ssdlite_mobilenet_v2_a050_coco", model_dir, threads=1)
    capture = cv2.VideoCapture(str(media_dir / "vtest.avi"))
    images = [capture.read()[1] for _ in range(120)]
    capture.release()
    seen: dict[bool, list[tuple[str, int]]] = {}
    for fail in (False, True):
        events: list[tuple[str, int]] = []
        stage = InferenceThread(
            None, _FailingLadder(detector, fail), make_tracker(10.0, **config.tracker_settings()),
            lambda output: None, detection_filter(config), config.tracker.low_score, config.tracker.high_score,
        )  # fmt: skip
        stage.on_output = lambda output, track_events, into=events: into.extend(
            (e.kind, e.track_id) for e in track_events
        )
        for i, image in enumerate(images):
            frame = Frame(image, 100.0 + i / 10, i + 1)
            try:
                stage._process(frame, detector)
            except RuntimeError:
                assert fail
        seen[fail] = events
    assert seen[True] == seen[False]
    assert {kind for kind, _ in seen[False]} == {"track_started", "track_ended"}

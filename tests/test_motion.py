"""The motion detector on real video frames: people walking in vtest.avi move, a repeated frame does not,
a mask hides motion; and the gate's tracker clock."""

from __future__ import annotations

import numpy as np
import pytest

from edgecam.capture.motion import Motion, MotionDetector, MotionSettings
from edgecam.capture.slot import Frame
from edgecam.infer.gate import GateSettings, MotionGate, TrackerClock
from edgecam.track import TrackEvent


def frames(media_dir, cv2, n: int, name: str = "vtest.avi") -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(media_dir / name))
    out = []
    while len(out) < n:
        ok, image = cap.read()
        if not ok:
            break
        out.append(image)
    cap.release()
    assert len(out) == n
    return out


@pytest.fixture(scope="module")
def vtest(media_dir, cv2):
    return frames(media_dir, cv2, 60)


def verdicts(detector: MotionDetector, images: list[np.ndarray]) -> list[Motion]:
    return [detector.update(image) for image in images]


def test_people_walking_are_motion(vtest):
    found = verdicts(MotionDetector(), vtest)
    assert found[0].moving  # no background yet: detect
    moving = [m for m in found[1:] if m.moving]
    assert len(moving) >= 0.9 * (len(found) - 1)
    assert all(m.boxes and 0 < m.area < 0.5 for m in moving)
    for x1, y1, x2, y2 in moving[-1].boxes:
        assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1


def test_without_boxes_the_verdict_is_the_same(vtest):
    """motion.draw off: the same moving/still verdicts and areas, no moving areas searched for."""
    with_boxes = verdicts(MotionDetector(), vtest)
    verdict_only = verdicts(MotionDetector(MotionSettings(boxes=False)), vtest)
    assert [(m.moving, m.area) for m in verdict_only] == [(m.moving, m.area) for m in with_boxes]
    assert not any(m.boxes for m in verdict_only)


def test_a_repeated_frame_is_still(vtest):
    detector = MotionDetector()
    found = verdicts(detector, [vtest[10]] * 30)
    assert not any(m.moving for m in found[1:])
    assert all(m.area == 0 for m in found[1:])


def test_a_still_scene_after_motion_settles(vtest):
    """The background follows the scene: after people walk, the same frame repeated stops moving."""
    detector = MotionDetector()
    verdicts(detector, vtest[:30])
    found = verdicts(detector, [vtest[30]] * 120)
    assert not any(m.moving for m in found[-30:])


def test_a_mask_hides_motion(vtest):
    whole = ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0))
    masked = MotionDetector(MotionSettings(masks=(whole,)))
    assert not any(m.moving for m in verdicts(masked, vtest)[1:])
    # Half the frame masked: motion only from the other half.
    left = ((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0))
    half = verdicts(MotionDetector(MotionSettings(masks=(left,))), vtest)[1:]
    boxes = [b for m in half for b in m.boxes]
    assert boxes and all(x2 > 0.5 for _, _, x2, _ in boxes)


def test_settings_change_live(vtest):
    detector = MotionDetector(MotionSettings(min_area=1.0))  # nothing is ever enough
    assert not any(m.moving for m in verdicts(detector, vtest[:20])[1:])
    detector.settings = MotionSettings()
    assert any(m.moving for m in verdicts(detector, vtest[20:40])[1:])


def test_small_grey_copy_is_cheap_and_small(vtest):
    detector = MotionDetector()
    grey = detector.grey(vtest[0])
    assert grey.shape == (120, 160) and grey.dtype == np.uint8  # vtest is 768x576


# ---- the gate and its clock --------------------------------------------------------------------------------


def frame(t: float, moving: bool | None) -> Frame:
    motion = None if moving is None else Motion(moving, 0.0)
    return Frame(np.zeros((4, 4, 3), np.uint8), t, round(t * 15), None, motion)


def test_gate_runs_the_detector_on_motion_and_every_idle_period():
    gate = MotionGate(GateSettings(enabled=True, idle_detect_s=3.0))
    ran = []
    for i in range(15 * 10):
        f = frame(i / 15, moving=i < 15)  # one second of motion, then nine still
        if gate.should_detect(f):
            gate.detected(f)
            ran.append(round(f.timestamp, 2))
    assert ran[:15] == [round(i / 15, 2) for i in range(15)]
    assert ran[15:] == [pytest.approx(t, abs=0.07) for t in (3.93, 6.93, 9.93)][: len(ran) - 15]
    off = MotionGate(GateSettings(enabled=False))
    assert all(off.should_detect(frame(i / 15, moving=False)) for i in range(30))
    assert MotionGate(GateSettings(enabled=True)).should_detect(frame(0, moving=None))


def test_tracker_clock_squeezes_skipped_time_and_maps_back():
    clock = TrackerClock()
    assert clock.tracker_time(frame(0.0, True)) == 0.0
    for i in range(1, 45):  # three seconds skipped
        clock.skip(frame(i / 15, False))
    t = clock.tracker_time(frame(3.0, False))
    assert t == pytest.approx(1 / 15)  # one frame later, for the tracker
    assert clock.frame_time(t) == pytest.approx(3.0)
    assert clock.frame_time(0.0) == 0.0
    ended = clock.events([TrackEvent("track_ended", 7, 0, 0.9, (0, 0, 1, 1), t, t - 0.0)])
    assert ended[0].timestamp == pytest.approx(3.0)


# ---- gating in the real inference stage: real model, real tracker, a still scene -----------------------------


class _Switcher:
    """What the inference stage asks of the model ladder, and which frames fed it."""

    def __init__(self, detector) -> None:
        self.detector = detector
        self.observed = 0

    def current(self):
        return self.detector

    def observe(self, busy_ms, cpu_ms=None, runnable_ms=None) -> None:
        self.observed += 1

    def invoke_failed(self, exc) -> None:
        raise exc


class _Blinking:
    """The real detector, except that the listed calls see nothing (an idle detection that misses)."""

    def __init__(self, detector, blind_calls: set[int]) -> None:
        self._detector = detector
        self._blind = blind_calls
        self.calls = 0

    def detect(self, *args, **kwargs):
        self.calls += 1
        found = self._detector.detect(*args, **kwargs)
        return found[np.zeros(len(found), bool)] if self.calls in self._blind else found

    def __getattr__(self, name):
        return getattr(self._detector, name)


def run_still(model_dir, media_dir, cv2, seconds: float, fps: float, idle_s: float, blind: set[int]):
    from edgecam.app.pipeline import detection_filter
    from edgecam.config import Config
    from edgecam.detect import load_detector
    from edgecam.infer.stage import InferenceThread
    from edgecam.track import make_tracker

    config = Config()
    detector = _Blinking(load_detector("ssdlite_mobilenet_v2_a050_coco", model_dir, threads=1), blind)
    switcher = _Switcher(detector)
    outputs, events = [], []
    stage = InferenceThread(
        None, switcher, make_tracker(fps, **config.tracker_settings()), outputs.append, detection_filter(config),
        config.tracker.low_score, config.tracker.high_score, GateSettings(enabled=True, idle_detect_s=idle_s),
    )  # fmt: skip
    stage.on_events = events.extend
    image = frames(media_dir, cv2, 1)[0]
    motion = MotionDetector()
    for i in range(int(seconds * fps)):
        t = 1000.0 + i / fps
        # the real motion detector on the repeated frame (the first frame counts as motion)
        stage._process(Frame(image.copy(), t, i + 1, None, motion.update(image)), detector)
    return stage, switcher, detector, outputs, events


def test_a_still_scene_is_detected_every_idle_period_and_keeps_its_tracks(model_dir, media_dir, cv2):
    """60 s of a still scene at 15 fps, one idle detection every 3 s, one of which misses everything: every
    frame is an output frame, the detector ran ~21 times, only those frames fed the ladder, and the
    people standing still are the same tracks throughout (no track ended, no new one started)."""
    fps, seconds, idle_s = 15.0, 60.0, 3.0
    stage, switcher, detector, outputs, events = run_still(
        model_dir, media_dir, cv2, seconds, fps, idle_s, {6}
    )
    assert stage.frames == len(outputs) == int(seconds * fps)
    assert detector.calls == stage.detected == pytest.approx(seconds / idle_s + 1, abs=1)
    assert stage.skipped == stage.frames - stage.detected
    assert switcher.observed == stage.detected  # gating never reads as "fast enough to step up"
    people = [t.id for t in outputs[-1].tracks if t.label == "person"]
    assert people, "the still frame shows people"
    started = {e.track_id for e in events if e.kind == "track_started"}
    assert started == {t.id for t in outputs[-1].tracks}
    assert not [e for e in events if e.kind == "track_ended"]
    # From the first confirmation on, every output frame (skipped or not) carries the same tracks.
    first = next(i for i, o in enumerate(outputs) if o.tracks)
    assert all({t.id for t in o.tracks} == set(started) for o in outputs[first:])
    # Track times are frame times: the people were last seen at the last idle detection, not 1 frame after.
    last_detect = max(o.frame.timestamp for o in outputs if o.detected)
    assert max(t.last_seen for t in outputs[-1].tracks) == pytest.approx(last_detect)

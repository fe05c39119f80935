"""The model switcher on real models: Edge TPU faults move to the CPU twin at once, a rung that cannot
load is skipped, and a failing TPU is retried with backoff."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edgecam.detect import Detector, load_detector
from edgecam.detect.manifest import Manifest, load_manifest
from edgecam.ladder.controller import AdaptSettings
from edgecam.ladder.select import ladder_with_twins
from edgecam.ladder.switcher import ModelSwitcher

TPU, TWIN, SMALL = "ssd_mobilenet_v2_coco_edgetpu", "ssd_mobilenet_v2_coco", "ssdlite_mobilenet_v2_a050_coco"
SEGMENT = "ssd_mobilenet_v2_coco_quant_postprocess_segment_0_of_2_edgetpu.tflite"
SEGMENT_SHA1 = "47ecd08970fbb5d352fdef6580cd408f45df7d181c1f2218c96ce7cd24314dff"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class UnpluggedAfter:
    """Fault injection: a real detector that starts raising after ``frames`` calls, as a Coral pulled out
    of its USB port does (the Edge TPU delegate raises from invoke)."""

    def __init__(self, detector: Detector, model_id: str, device: str) -> None:
        self._detector = detector
        self._left: int | None = None
        self.model_id, self.device = model_id, device

    def unplug_after(self, frames: int) -> None:
        self._left = frames

    def detect(self, *args, **kwargs):
        if self._left is not None:
            self._left -= 1
        if self._left is not None and self._left < 0:
            raise RuntimeError("Failed to invoke the Edge TPU: USB transfer error")
        return self._detector.detect(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._detector, name)


def wait_swapped(switcher: ModelSwitcher, to: str, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while switcher.current().model_id != to:
        assert time.monotonic() < deadline, f"no swap to {to}"
        time.sleep(0.02)


def test_twins_follow_edge_tpu_rungs():
    manifest = load_manifest()
    assert ladder_with_twins([TPU, SMALL], manifest) == [TPU, TWIN, SMALL]
    assert ladder_with_twins([TPU, TWIN, SMALL], manifest) == [TPU, TWIN, SMALL]


def test_invoke_failure_on_the_tpu_moves_to_the_cpu_twin_at_once(model_dir, media_dir, cv2):
    frame = cv2.imread(str(media_dir / "grace_hopper.bmp"))
    loads: list[str] = []

    def load(model_id: str) -> Detector:
        loads.append(model_id)
        # The TPU rung: the real SSD MobileNet V1 detector behind the fault injector, labelled as the TPU.
        if model_id == TPU:
            return UnpluggedAfter(load_detector("ssd_mobilenet_v1_coco", model_dir), TPU, "edgetpu")
        # The CPU twin's file is not obtainable here: the α0.5 model stands in for it.
        return UnpluggedAfter(load_detector(SMALL, model_dir), model_id, "cpu")

    clock = Clock()
    switcher = ModelSwitcher([TPU, TWIN], load, load_manifest(), AdaptSettings(cooldown_s=60), clock)
    switcher.start()
    assert switcher.current().model_id == TPU
    switcher.current().unplug_after(3)
    for _ in range(4):  # three good frames, then the stick is pulled
        detector = switcher.current()
        try:
            detector.detect(frame)
            switcher.observe(detector.last_timing.total_ms)
        except RuntimeError as exc:
            switcher.invoke_failed(exc)
    wait_swapped(switcher, TWIN)  # at once: no down_after_s, no cooldown
    record = switcher.switches[-1]
    assert (record.from_model, record.to_model) == (TPU, TWIN) and "USB transfer error" in record.reason
    assert switcher.current().detect(frame)[0].label == "person"
    tpu = switcher.controller.rungs[0]
    assert tpu.available_from == pytest.approx(clock.now + 30.0)  # retried after a backoff


def edgetpu_dir(tmp_path: Path, shared_models: Path, model_dir: Path) -> tuple[Path, Manifest]:
    """A model dir whose Edge TPU rung is a real Edge TPU-compiled file (it cannot run on this CPU)."""
    if not (shared_models / SEGMENT).is_file():
        pytest.skip("Edge TPU segment file not available")
    shutil.copy(shared_models / SEGMENT, tmp_path / SEGMENT)
    for file_id in (SMALL, "coco_labels"):
        shutil.copy(model_dir / load_manifest().entry(file_id).file, tmp_path)
    data = load_manifest().model_dump()
    data["models"][TPU].update(file=SEGMENT, sha256=SEGMENT_SHA1, git_blob=None)
    return tmp_path, Manifest.model_validate(data)


def test_a_tpu_that_fails_to_load_is_skipped_and_retried_with_backoff(tmp_path, shared_models, model_dir):
    directory, manifest = edgetpu_dir(tmp_path, shared_models, model_dir)
    attempts: list[str] = []

    def load(model_id: str) -> Detector:
        attempts.append(model_id)
        return load_detector(model_id, directory, manifest=manifest)

    clock = Clock()
    settings = AdaptSettings(min_fps=1.0, up_after_s=5.0, cooldown_s=1.0)
    switcher = ModelSwitcher([TPU, SMALL], load, manifest, settings, clock)
    switcher.start()
    assert switcher.current().model_id == SMALL  # no Edge TPU here: the first rung that loads runs
    tpu = switcher.controller.rungs[0]
    assert tpu.available_from > clock.now and attempts == [TPU, SMALL]
    blank = np.zeros((300, 300, 3), np.uint8)

    def frames(seconds: float) -> None:
        end = clock.now + seconds
        while clock.now < end:
            clock.now += 0.5
            detector = switcher.current()
            detector.detect(blank)
            switcher.observe(detector.last_timing.total_ms)

    frames(20.0)
    assert attempts.count(TPU) == 1  # not retried before its backoff ran out
    frames(40.0)  # backoff over: the up rule asks for the TPU again, the load fails again
    import time

    deadline = time.monotonic() + 20
    while attempts.count(TPU) < 2 or switcher.controller.pending is not None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert switcher.current().model_id == SMALL
    assert tpu.failures == 2 and tpu.available_from - clock.now > 30.0  # the wait doubled
    switcher.stop()

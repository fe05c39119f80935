"""The JPEG encoder keeps the stream's rate cap without waking for every frame the inference stage
publishes: from a fast source (an unthrottled file, a Coral) that is hundreds of wake-ups a second, each a
context switch and a turn at the GIL taken from the capture and inference threads."""

from __future__ import annotations

import threading
import time

import numpy as np

from edgecam.capture.slot import Frame
from edgecam.detect.detector import Detections
from edgecam.infer.result import ModelInfo, OutputFrame
from edgecam.render.encoder import EncoderSettings, JpegEncoder

FPS = 10.0
PUBLISH_HZ = 1000.0
SECONDS = 2.0


class Viewer:
    wants_frames = True

    def __init__(self) -> None:
        self.jpegs: list[bytes] = []

    def send(self, jpeg: bytes) -> None:
        self.jpegs.append(jpeg)


def voluntary_switches(native_id: int) -> int:
    with open(f"/proc/self/task/{native_id}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches line")


def test_a_fast_source_does_not_wake_the_encoder_per_frame():
    encoder = JpegEncoder(EncoderSettings(fps=FPS), annotate=lambda output: None)
    viewer = Viewer()
    encoder.subscribe(viewer)
    encoder.start()
    image = np.full((120, 160, 3), 90, np.uint8)
    info = ModelInfo("m", None, "cpu", (300, 300))
    try:
        before = voluntary_switches(encoder._thread.native_id)
        published, start = 0, time.monotonic()
        while time.monotonic() - start < SECONDS:
            frame = Frame(image, time.monotonic(), published + 1)
            encoder.publish(OutputFrame(frame, Detections.empty(), [], info, 1.0, time.monotonic()))
            published += 1
            time.sleep(1 / PUBLISH_HZ)
        elapsed = time.monotonic() - start
        wakes = voluntary_switches(encoder._thread.native_id) - before
    finally:
        encoder.stop()
    assert published > 5 * FPS * elapsed  # the source really was much faster than the cap
    # The cap holds (0.9/fps apart at the least) and the stream flows at it.
    assert 0.5 * FPS * elapsed <= len(viewer.jpegs) <= FPS / 0.9 * elapsed + 2
    # A few wake-ups per encoded frame (its sleep, the lock, the GIL), not one per published frame.
    assert wakes < 0.25 * published, (wakes, published, len(viewer.jpegs))


def test_a_stop_while_pacing_is_prompt():
    encoder = JpegEncoder(EncoderSettings(fps=0.5), annotate=lambda output: None)  # 1.8 s between frames
    encoder.subscribe(Viewer())
    encoder.start()
    frame = Frame(np.zeros((120, 160, 3), np.uint8), time.monotonic(), 1)
    encoder.publish(OutputFrame(frame, Detections.empty(), [], ModelInfo("m", None, "cpu", (1, 1)), 1.0, 0.0))
    time.sleep(0.3)  # encoded the first frame, now pacing
    t0 = time.monotonic()
    encoder.stop(timeout=2.0)
    assert time.monotonic() - t0 < 1.0
    assert not any(t.name == "jpeg-encoder" and t.is_alive() for t in threading.enumerate())

"""The JPEG encoder: output frames in, JPEG bytes out to any number of sinks.

Each output frame is annotated and encoded at most once (``encode``), and only when someone needs it: a sink
that wants frames (the stream while someone watches) or a caller that asks (a snapshot, an event). The
encoder thread takes the newest output at up to ``fps`` while any sink wants frames and hands the same
bytes to every sink. With no new output while a sink waits, it sends a "no signal" card once a second, so a
viewer's picture never freezes without saying why. Shaped like picamera2's encoders and outputs: a second
consumer of the JPEG (a recorder, a second stream) is one more ``subscribe``.
"""

from __future__ import annotations

import logging
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edgecam.infer.result import OutputFrame
from edgecam.rates import LatencyWindow, RateMeter
from edgecam.vision import cv2

log = logging.getLogger(__name__)

STILL_IMAGE_INTERVAL_S = 0.5


@dataclass(frozen=True)
class EncoderSettings:
    fps: float = 15.0
    quality: int = 80
    width: int = 0  # 0 = frame width


class JpegSink(Protocol):
    """Something that takes the encoder's JPEGs (the stream fan-out…)."""

    @property
    def wants_frames(self) -> bool: ...

    def send(self, jpeg: bytes) -> None: ...


class ImageSink(Protocol):
    """Something that takes every annotated output frame at the stream's rate cap (the clip recorder)."""

    def push(self, image: np.ndarray, timestamp: float) -> bool: ...


class JpegEncoder:
    def __init__(
        self,
        settings: EncoderSettings,
        annotate: Callable[[OutputFrame], None],
        no_signal_reason: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.annotate = annotate
        self._no_signal_reason = no_signal_reason
        self._sinks: list[JpegSink] = []
        self._image_sinks: list[ImageSink] = []
        self._last_image = 0.0
        self._work = threading.Condition(threading.Lock())  # the encoder waits: new output or new demand
        self._pending: OutputFrame | None = None
        self._latest: OutputFrame | None = None
        self._stop = threading.Event()
        self.encoded_frames = 0  # every JPEG made: for the stream, a snapshot or an event's picture
        self.streamed_frames = 0  # JPEGs handed to the stream (made only while someone watches)
        self.encode_ms = LatencyWindow(100)
        self.latency_ms = LatencyWindow(300)  # capture → JPEG ready
        self.rate = RateMeter()
        self.heartbeat = time.monotonic()
        self._generation = 0
        self._thread = threading.Thread(target=self._run, args=(0,), name="jpeg-encoder", daemon=True)

    # ---- wiring ---------------------------------------------------------------------------------------------

    def subscribe(self, sink: JpegSink) -> None:
        self._sinks.append(sink)

    def subscribe_images(self, sink: ImageSink) -> None:
        """Annotated frames go to ``sink`` always (a recorder needs them whether anyone watches or not)."""
        self._image_sinks.append(sink)

    def demand_changed(self) -> None:
        """A sink's ``wants_frames`` changed (a viewer came or went): wake the encoder."""
        with self._work:
            self._work.notify()

    def update_settings(self, settings: EncoderSettings) -> None:
        self.settings = settings

    # ---- pipeline side ----------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        with self._work:
            self._work.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def publish(self, output: OutputFrame) -> None:
        """From the inference thread: returns at once; the newest output replaces an unencoded one."""
        with self._work:
            self._pending = output
            self._latest = output
            self._work.notify()

    def restart(self) -> None:
        """For the supervisor: a new encoder thread; the stuck one exits if its call ever returns."""
        self._generation += 1
        self._thread = threading.Thread(
            target=self._run, args=(self._generation,), name="jpeg-encoder", daemon=True
        )
        self.heartbeat = time.monotonic()
        self._thread.start()

    # ---- encoding -----------------------------------------------------------------------------------------

    def _wanted(self) -> bool:
        return bool(self._image_sinks) or self._jpeg_wanted()

    def _jpeg_wanted(self) -> bool:
        return any(sink.wants_frames for sink in self._sinks)

    def _run(self, generation: int) -> None:
        last_encode = 0.0
        while not self._stop.is_set() and generation == self._generation:
            now = self.heartbeat = time.monotonic()
            early = last_encode + 0.9 / self.settings.fps - now
            if early > 0:
                # Over the stream cap: sleep until the next frame is due instead of waking for every frame
                # the inference stage publishes (hundreds a second from a fast source), then take the newest.
                self._stop.wait(min(early, 1.0))
                continue
            with self._work:
                self._work.wait_for(
                    lambda: self._stop.is_set() or (self._pending is not None and self._wanted()), timeout=1.0
                )
                wanted = self._wanted()
                output = self._pending if wanted else None
                if output is not None:
                    self._pending = None
            if self._stop.is_set():
                return
            now = time.monotonic()
            if output is None:
                if self._jpeg_wanted() and now - last_encode >= 1.0:
                    reason = self._no_signal_reason()
                    if reason:
                        self._send(self._no_signal_card(reason))
                        last_encode = now
                continue
            last_encode = now
            try:
                if self._image_sinks and self._image_due(output, now):
                    self._last_image = now
                    self.annotated(output)
                    for image_sink in self._image_sinks:
                        image_sink.push(output.image, output.frame.timestamp)
                if self._jpeg_wanted():
                    self._send(self.encode(output))
            except Exception:  # one bad frame must not end the stream
                log.exception("rendering failed for frame %d", output.frame.sequence)

    def _image_due(self, output: OutputFrame, now: float) -> bool:
        """Image sinks (the clip recorder's pre-roll) get every frame at the stream's cap while something
        moves, and STILL_IMAGE_INTERVAL_S apart while the motion detector sees a still scene: a still scene
        looks the same at 2 fps, and a box watching an empty room most of the day should not encode it 15
        times a second."""
        motion = output.frame.motion
        if motion is None or motion.moving:
            return True
        return now - self._last_image >= STILL_IMAGE_INTERVAL_S

    def annotated(self, output: OutputFrame) -> np.ndarray:
        """The output frame drawn on (boxes, zones, HUD), once, whoever asks first."""
        with output.jpeg_lock:
            if not output.annotated:
                self.annotate(output)
                output.annotated = True
        return output.image

    def encode(self, output: OutputFrame) -> bytes:
        """The output frame's JPEG, made once (stream, snapshot or event, whichever asks first)."""
        self.annotated(output)
        with output.jpeg_lock:
            if output.jpeg is None:
                start = time.perf_counter()
                output.jpeg = self._encode_image(output.image)
                output.jpeg_ready_at = time.monotonic()
                self.encode_ms.add((time.perf_counter() - start) * 1e3)
                self.latency_ms.add((output.jpeg_ready_at - output.frame.timestamp) * 1e3)
                self.encoded_frames += 1
            return output.jpeg

    def snapshot(self) -> bytes | None:
        """The latest annotated frame, encoded on demand if no sink made it yet."""
        latest = self._latest
        return self.encode(latest) if latest is not None else None

    def _encode_image(self, image: np.ndarray) -> bytes:
        width = self.settings.width
        if width and width != image.shape[1]:
            height = max(1, round(image.shape[0] * width / image.shape[1]))
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.settings.quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return buffer.tobytes()

    def _send(self, data: bytes) -> None:
        for sink in self._sinks:
            sink.send(data)
        self.streamed_frames += 1
        self.rate.tick()

    def _no_signal_card(self, reason: str) -> bytes:
        latest = self._latest
        # The last picture, dimmed, so the user sees which camera this is.
        card = latest.image // 3 if latest is not None else np.zeros((360, 640, 3), np.uint8)
        h, w = card.shape[:2]
        scale = max(0.5, h / 720)
        x = int(30 * scale)
        cv2.putText(card, "NO SIGNAL", (x, h // 2 - int(20 * scale)), cv2.FONT_HERSHEY_SIMPLEX,
                    1.6 * scale, (80, 80, 255), max(2, int(3 * scale)), cv2.LINE_AA)  # fmt: skip
        # The whole reason, wrapped to the card's width (never cut mid-sentence).
        chars = max(20, int((w - 2 * x) / (13 * scale)))
        for i, line in enumerate(textwrap.wrap(reason, chars)[:6]):
            y = h // 2 + int((30 + 28 * i) * scale)
            cv2.putText(card, line, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.7 * scale, (255, 255, 255),
                        max(1, int(2 * scale)), cv2.LINE_AA)  # fmt: skip
        self.encoded_frames += 1
        return self._encode_image(card)

"""JPEG fan-out: each output frame is encoded once, only while someone watches, and all clients share
the bytes. Every client waits on its own thread for the newest JPEG, so a slow client skips frames and
never holds up the pipeline or the other clients."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from edgecam.rates import LatencyWindow, RateMeter
from edgecam.results import OutputFrame
from edgecam.vision import cv2

log = logging.getLogger(__name__)


class TooManyClientsError(RuntimeError):
    pass


@dataclass(frozen=True)
class StreamSettings:
    fps: float = 15.0
    quality: int = 80
    width: int = 0  # 0 = frame width
    max_clients: int = 10


BOUNDARY = "edgecam-frame"


@dataclass(frozen=True)
class Jpeg:
    part: bytes  # the JPEG framed as one multipart part, built once and written as-is to every client
    sequence: int  # increments per published JPEG; clients use it to skip to the newest

    @staticmethod
    def frame(data: bytes, sequence: int) -> Jpeg:
        head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        return Jpeg(b"".join((head, data, b"\r\n")), sequence)


class JpegBroadcaster:
    """``publish`` takes output frames from the inference thread and returns at once; the encoder thread
    annotates and encodes the newest one at up to ``fps`` while there are clients. With no new output for
    ``no_signal_after_s`` it sends a "no signal" card once a second instead, so the picture never freezes."""

    def __init__(
        self,
        settings: StreamSettings,
        annotate: Callable[[OutputFrame], None],
        no_signal_reason: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.settings = settings
        self._annotate = annotate
        self._no_signal_reason = no_signal_reason
        lock = threading.Lock()
        self._work = threading.Condition(lock)  # the encoder waits here: a new output while someone watches
        self._fresh = threading.Condition(lock)  # clients wait here: a new JPEG
        self._pending: OutputFrame | None = None
        self._latest: OutputFrame | None = None
        self._jpeg: Jpeg | None = None
        self._clients = 0
        self._stop = threading.Event()
        self.encoded_frames = 0
        self.encode_ms = LatencyWindow(100)
        self.latency_ms = LatencyWindow(300)  # capture → JPEG ready
        self.rate = RateMeter()
        self.heartbeat = time.monotonic()
        self._generation = 0
        self._thread = threading.Thread(target=self._run, args=(0,), name="jpeg-encoder", daemon=True)

    # ---- pipeline side ------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        with self._work:
            self._work.notify_all()
            self._fresh.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def publish(self, output: OutputFrame) -> None:
        with self._work:
            self._pending = output
            self._latest = output
            self._work.notify()

    @property
    def clients(self) -> int:
        return self._clients

    def update_settings(self, settings: StreamSettings) -> None:
        self.settings = settings

    # ---- encoding ---------------------------------------------------------------------------------------------

    def restart_encoder(self) -> None:
        """For the watchdog: a new encoder thread; the stuck one exits if its call ever returns."""
        self._generation += 1
        self._thread = threading.Thread(
            target=self._run, args=(self._generation,), name="jpeg-encoder", daemon=True
        )
        self.heartbeat = time.monotonic()
        self._thread.start()

    def _run(self, generation: int) -> None:
        last_encode = 0.0
        while not self._stop.is_set() and generation == self._generation:
            self.heartbeat = time.monotonic()
            with self._work:
                self._work.wait_for(
                    lambda: self._stop.is_set() or (self._pending and self._clients), timeout=1.0
                )
                output = self._pending if self._clients else None
                if output is not None:
                    self._pending = None
            if self._stop.is_set():
                return
            now = time.monotonic()
            if output is None:
                if self._clients and now - last_encode >= 1.0:
                    reason = self._no_signal_reason()
                    if reason:
                        self._send(self._no_signal_card(reason))
                        last_encode = now
                continue
            interval = 1.0 / self.settings.fps
            if now - last_encode < interval * 0.9:  # over the stream cap: skip this one, the next will come
                continue
            last_encode = now
            self._send(self.encode(output))

    def encode(self, output: OutputFrame) -> bytes:
        """The output frame's JPEG, made once (stream or snapshot, whichever asks first)."""
        with output.jpeg_lock:
            if output.jpeg is None:
                start = time.perf_counter()
                self._annotate(output)
                output.jpeg = self._encode_image(output.image)
                output.jpeg_ready_at = time.monotonic()
                self.encode_ms.add((time.perf_counter() - start) * 1e3)
                self.latency_ms.add((output.jpeg_ready_at - output.frame.timestamp) * 1e3)
                self.encoded_frames += 1
            return output.jpeg

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
        sequence = self._jpeg.sequence + 1 if self._jpeg else 1
        jpeg = Jpeg.frame(data, sequence)
        with self._fresh:
            self._jpeg = jpeg
            self._fresh.notify_all()
        self.rate.tick()

    def _no_signal_card(self, reason: str) -> bytes:
        latest = self._latest
        # The last picture, dimmed, so the user sees which camera this is.
        card = latest.image // 3 if latest is not None else np.zeros((360, 640, 3), np.uint8)
        h, _w = card.shape[:2]
        scale = max(0.5, h / 720)
        cv2.putText(card, "NO SIGNAL", (int(30 * scale), h // 2 - int(20 * scale)), cv2.FONT_HERSHEY_SIMPLEX,
                    1.6 * scale, (80, 80, 255), max(2, int(3 * scale)), cv2.LINE_AA)  # fmt: skip
        cv2.putText(card, reason[:80], (int(30 * scale), h // 2 + int(30 * scale)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.7 * scale, (255, 255, 255), max(1, int(2 * scale)), cv2.LINE_AA)  # fmt: skip
        self.encoded_frames += 1
        return self._encode_image(card)

    # ---- client side ------------------------------------------------------------------------------------------

    def snapshot(self) -> bytes | None:
        """The latest annotated frame, encoded on demand if no client made it yet."""
        latest = self._latest
        return self.encode(latest) if latest is not None else None

    def frames(self, stop: threading.Event, timeout_s: float = 30.0) -> Iterator[bytes]:
        """Multipart parts for one client: each time, the newest JPEG newer than the last one it gave.
        Raises TooManyClientsError at once when ``max_clients`` are already watching."""
        with self._work:
            if self._clients >= self.settings.max_clients:
                raise TooManyClientsError(f"{self._clients} clients already watching (stream.max_clients)")
            self._clients += 1
            self._work.notify()
        return self._feed(stop, timeout_s)

    def _newer_or_stopping(self, stop: threading.Event, seen: int) -> bool:
        return bool(self._stop.is_set() or stop.is_set() or (self._jpeg and self._jpeg.sequence > seen))

    def _feed(self, stop: threading.Event, timeout_s: float) -> Iterator[bytes]:
        try:
            seen = self._jpeg.sequence if self._jpeg else 0
            while not (stop.is_set() or self._stop.is_set()):
                with self._fresh:
                    fresh = self._fresh.wait_for(
                        functools.partial(self._newer_or_stopping, stop, seen), timeout_s
                    )
                    jpeg = self._jpeg
                if not fresh or jpeg is None or jpeg.sequence <= seen:
                    continue
                seen = jpeg.sequence
                yield jpeg.part
        finally:
            with self._work:
                self._clients -= 1

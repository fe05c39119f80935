"""The MJPEG fan-out: a sink of the JPEG encoder that hands the newest JPEG to every viewer.

All viewers share one multipart part per JPEG, built once. The encoder thread hands each part to the web
server's event loop (``loop.call_soon_threadsafe``, once per JPEG however many watch); there every viewer is
one coroutine awaiting the next part. A viewer takes the newest part newer than the last one it got, so a
slow viewer (its socket buffer full) skips frames and never holds up the encoder or the other viewers.

A viewer is counted only while its response is open (``viewer()`` is a context manager: the count goes
down however the response ends — a reset, a cancelled task, a write timeout); ``stream.max_clients``
bounds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

BOUNDARY = "edgecam-frame"


class TooManyClientsError(RuntimeError):
    pass


@dataclass(frozen=True)
class Part:
    data: bytes  # the JPEG framed as one multipart part, written as-is to every viewer
    sequence: int  # increments per JPEG; viewers use it to skip to the newest

    @staticmethod
    def frame(jpeg: bytes, sequence: int) -> Part:
        head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
        return Part(b"".join((head, jpeg, b"\r\n")), sequence)


class StreamFanout:
    """The encoder side is thread-safe; the viewer side runs on the event loop given to ``attach``."""

    def __init__(self, max_clients: int, on_demand_change: Callable[[], None] = lambda: None) -> None:
        self.max_clients = max_clients
        self._on_demand_change = on_demand_change
        self._lock = threading.Lock()
        self._sequence = 0
        self._part: Part | None = None
        self._clients = 0
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: list[asyncio.Future[None]] = []  # one per viewer waiting for the next part
        self._idle_s = 30.0

    # ---- wiring -------------------------------------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop, idle_s: float = 30.0) -> None:
        """Called on ``loop`` by the web server when it starts serving. Every ``idle_s`` waiting viewers
        are woken without a part (a chance to check on them), by one timer for all."""
        self._loop = loop
        self._idle_s = idle_s
        loop.call_later(idle_s, self._tick)

    # ---- encoder side (JpegSink) ------------------------------------------------------------------------

    @property
    def wants_frames(self) -> bool:
        return self._clients > 0

    def send(self, jpeg: bytes) -> None:
        with self._lock:
            self._sequence += 1
            part = Part.frame(jpeg, self._sequence)
        loop = self._loop
        if loop is None:
            self._part = part
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing: nobody is watching any more
            loop.call_soon_threadsafe(self._publish, part)

    def close(self) -> None:
        self._closed = True
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake)

    # ---- event loop side ----------------------------------------------------------------------------------

    def _publish(self, part: Part) -> None:  # on the loop
        if self._part is None or part.sequence > self._part.sequence:
            self._part = part
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _tick(self) -> None:
        self._wake()
        if not self._closed and self._loop is not None:
            self._loop.call_later(self._idle_s, self._tick)

    @property
    def clients(self) -> int:
        return self._clients

    @property
    def closed(self) -> bool:
        return self._closed

    @contextlib.contextmanager
    def viewer(self) -> Iterator[None]:
        """Count one viewer for the duration of the block; raises TooManyClientsError at once when
        ``max_clients`` viewers already watch."""
        if self._clients >= self.max_clients:
            raise TooManyClientsError(f"{self._clients} clients already watching (stream.max_clients)")
        self._clients += 1
        self._on_demand_change()
        try:
            yield
        finally:
            self._clients -= 1
            self._on_demand_change()

    async def parts(self) -> AsyncIterator[bytes]:
        """The parts for one viewer: each time, the newest part newer than the last one it got. Yields
        ``b""`` when woken without one (every ``idle_s``: a chance to check on the viewer); ends on
        ``close``. Waiting costs a future per viewer, not a task or a timer."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("the fan-out is not attached to an event loop")
        seen = self._part.sequence if self._part else 0
        while not self._closed:
            part = self._part
            if part is not None and part.sequence > seen:
                seen = part.sequence
                yield part.data
                continue
            waiter = loop.create_future()
            self._waiters.append(waiter)
            await waiter  # cancelling this viewer cancels its own future only
            part = self._part
            if part is None or part.sequence <= seen:
                yield b""

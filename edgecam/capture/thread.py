"""The capture thread: reads a source into the latest-frame slot, paces files, reconnects with backoff."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from edgecam.capture.motion import MotionDetector, MotionSettings
from edgecam.capture.slot import Frame, LatestFrameSlot
from edgecam.capture.yuv import Yuv420, model_picture

from .base import CaptureSource, SourceError, SourceState

__all__ = ["CaptureThread"]

log = logging.getLogger(__name__)

_FPS_WINDOW_S = 2.0
_TICK_S = 0.25  # longest wait between heartbeats while sleeping or waiting for the consumer
# Lockstep: frames decoded ahead of inference. One more than the frame being decoded absorbs a slow frame on
# either side (a keyframe, a crowded frame for the tracker): ~2 % more frames a second than one at a time on
# 2 cores (bench/pipeline.py, crowd_overhead_720p.avi), for two more decoded frames held in memory.
LOCKSTEP_DEPTH = 3


class CaptureThread(threading.Thread):
    """Runs ``source`` into ``slot`` until :meth:`stop` (or until the slot is closed).

    The camera never waits for inference: each frame is ``put`` and the newest wins. The exception is a
    source that is not ``paced`` (a file) with ``realtime=False``: frames are decoded while earlier ones are
    being processed and queued, at most ``LOCKSTEP_DEPTH`` unread — nothing dropped, nothing decoded in
    vain; frames then carry the file's own clock as their timestamp (``period`` apart), so what the tracker
    and the motion gate see does not depend on this machine's speed. With ``realtime=True`` such a source
    is paced to its ``nominal_fps`` on a drift-free monotonic schedule.

    Any failure (open, read, a non-file stream ending) puts the thread in ``lost`` with a ``reason``, closes
    the source and reopens it after a backoff (``backoff_initial_s`` doubling up to ``backoff_max_s``, reset
    by a frame). ``state`` also reads ``lost`` when no frame came for ``stall_s`` while a read is still
    blocked inside the source; network sources bound their reads with a timeout so the thread then
    reconnects by itself.

    ``lores_size`` (asked per frame: the model may change) makes the detector's picture here when the
    source gives none: the frame was just decoded by this thread and is still in its cache, so shrinking it
    to the model's input size costs less than half what it costs the inference thread later (~0.15 ms
    against ~0.36 ms for a 720p BGR frame), and the inference core is left with the model. With a ``motion`` detector, each frame is judged on a small grey copy (of
    the lores frame) before it is put, so the inference stage can skip the detector while nothing moves.
    """

    def __init__(
        self,
        source: CaptureSource,
        slot: LatestFrameSlot,
        *,
        stall_s: float = 5.0,
        realtime: bool = True,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        motion: MotionDetector | None = None,
        lores_size: Callable[[], tuple[int, int] | None] | None = None,
    ) -> None:
        super().__init__(name=f"capture {source.name}", daemon=True)
        self.lores_size = lores_size
        self.source = source
        self.slot = slot
        self.stall_s = float(stall_s)
        self.realtime = realtime
        self.backoff_initial_s = float(backoff_initial_s)
        self.backoff_max_s = max(float(backoff_max_s), self.backoff_initial_s)
        self._lockstep = not realtime and not source.paced
        self._media_time: float | None = None  # lockstep only: the file's clock
        self._pace = realtime and not source.paced
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._state = SourceState.CONNECTING
        self._reason: str | None = "starting"
        self._frames = 0
        self._sequence = 0
        self._reconnects = 0
        self._last_frame_time: float | None = None
        self._progress = time.monotonic()  # last frame, or last moment spent waiting for the consumer
        self._live_since = self._progress
        self._times: deque[float] = deque(maxlen=4096)
        self._heartbeat = self._progress
        self._frames_this_round = 0
        self._down_since: float | None = None  # start of the current outage, for the "live again" log
        self.motion = motion
        self.motion_enabled = motion is not None and motion.settings.enabled
        self.moving = False  # the newest frame's verdict (False while motion detection is off)
        self.motion_frames = 0  # frames judged moving
        self.last_motion_time: float | None = None  # monotonic time of the newest moving frame
        self.motion_area = 0.0

    # -- status (read from any thread) -----------------------------------------------------------

    def _stalled(self, now: float) -> bool:
        # LOST also while a read (or an open) is still blocked inside the source: nothing for stall_s
        return self._state is not SourceState.LOST and now - self._progress > self.stall_s

    @property
    def state(self) -> SourceState:
        with self._lock:
            return SourceState.LOST if self._stalled(time.monotonic()) else self._state

    @property
    def reason(self) -> str | None:
        """Why the source is connecting or lost ("open failed: …", "read failed: …", "no frame for 5.0 s")."""
        with self._lock:
            if self._stalled(time.monotonic()):
                return f"no frame for {self.stall_s:.1f} s"
            return self._reason

    @property
    def fps(self) -> float:
        """Frames captured per second over the last ~2 s (0 when frames stopped)."""
        now = time.monotonic()
        with self._lock:
            n = sum(1 for t in reversed(self._times) if now - t <= _FPS_WINDOW_S)
            span = min(_FPS_WINDOW_S, now - self._live_since)
        return n / span if n and span > 0.1 else 0.0

    @property
    def frames(self) -> int:
        return self._frames

    @property
    def last_frame_time(self) -> float | None:
        return self._last_frame_time

    @property
    def reconnects(self) -> int:
        """How many times the source was opened again after a failure."""
        return self._reconnects

    @property
    def heartbeat(self) -> float:
        """Monotonic time the loop last went round (also ticks while sleeping in backoff)."""
        return self._heartbeat

    def set_motion(self, settings: MotionSettings) -> None:
        """Config reload: new motion settings apply from the next frame (off: frames carry no verdict)."""
        if self.motion is None:
            self.motion = MotionDetector(settings)
        else:
            self.motion.settings = settings
        self.motion_enabled = settings.enabled

    # -- control ---------------------------------------------------------------------------------

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the thread to end and wait up to ``timeout`` s for it to close the source.

        The source is closed by the capture thread itself (OpenCV captures must not be released while
        another thread reads them); if a read is blocked longer than ``timeout``, stop() returns anyway
        and the source is closed as soon as that read returns.
        """
        self._stopping.set()
        if self.ident is None:  # never started
            self.source.close()
            return
        if threading.current_thread() is not self:
            self.join(timeout)
            if self.is_alive():
                log.warning(
                    "%s: capture did not stop within %.1f s (a read is blocked)", self.source.name, timeout
                )

    def _sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` in heartbeat ticks; False if stop was requested."""
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set():
            self._heartbeat = now = time.monotonic()
            if now >= deadline:
                return True
            self._stopping.wait(min(_TICK_S, deadline - now))
        return False

    def _set(self, state: SourceState, reason: str | None) -> None:
        with self._lock:
            self._state, self._reason = state, reason

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> None:
        backoff = self.backoff_initial_s
        first = True
        try:
            while not self._stopping.is_set() and not self.slot.closed:
                self._heartbeat = time.monotonic()
                if not first:
                    self._reconnects += 1
                first = False
                with self._lock:
                    self._state = SourceState.CONNECTING
                    self._progress = time.monotonic()
                failure = self._run_once()
                if failure is None:  # stopped
                    break
                if self._frames_this_round:  # it worked for a while: a new outage, start backoff over
                    backoff = self.backoff_initial_s
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    log.warning(
                        "%s: %s; will retry (backoff %g s, doubling up to %g s)",
                        self.source.name,
                        failure,
                        backoff,
                        self.backoff_max_s,
                    )
                else:
                    log.debug("%s: still down (%s), next try in %.1f s", self.source.name, failure, backoff)
                self._set(SourceState.LOST, failure)
                if not self._sleep(backoff):
                    break
                backoff = min(backoff * 2, self.backoff_max_s)
        finally:
            self.source.close()
            log.debug("%s: capture thread ended", self.source.name)

    def _run_once(self) -> str | None:
        """Open the source and deliver frames until a failure (returned as a reason) or stop (None)."""
        self._frames_this_round = 0
        if self.motion is not None:
            self.motion.reset()  # a reconnected camera may look different: learn its background again
        try:
            self.source.open()
        except SourceError as exc:
            return f"open failed: {exc}"
        except Exception as exc:  # a bug or an unexpected library error must not kill capture
            log.exception("%s: unexpected error while opening", self.source.name)
            return f"open failed: {exc!r}"
        try:
            return self._deliver()
        finally:
            self.source.close()

    def _frame_time(self, now: float, period: float) -> float:
        """A frame's timestamp: when it was captured; in lockstep, the file's own clock (one period per frame
        from the first one), so tracking, gating and clips do not depend on how fast this machine runs."""
        if not self._lockstep:
            return now
        if self._media_time is None:
            self._media_time = now
        else:
            self._media_time += period
        return self._media_time

    def _deliver(self) -> str | None:
        source, slot = self.source, self.slot
        period = 1.0 / (source.nominal_fps or 25.0)
        due = time.monotonic()
        while not self._stopping.is_set():
            self._heartbeat = time.monotonic()
            try:
                image, lores = source.read()
            except SourceError as exc:
                return f"read failed: {exc}"
            except Exception as exc:
                log.exception("%s: unexpected error while reading", source.name)
                return f"read failed: {exc!r}"
            if self._pace:
                if not self._sleep(due - time.monotonic()):
                    return None
                now = time.monotonic()
                due = due + period if now - due < period else now + period  # late by a frame: re-anchor
            elif self._lockstep:
                while not slot.wait_room(LOCKSTEP_DEPTH, _TICK_S):
                    if self._stopping.is_set() or slot.closed:
                        return None
                    self._heartbeat = self._progress = time.monotonic()
            if self._stopping.is_set() or slot.closed:
                return None
            self._sequence += 1
            now = time.monotonic()
            if lores is None and self.lores_size is not None:
                size = self.lores_size()
                if size is not None:
                    lores = model_picture(image, size)
            motion = None
            if self.motion_enabled and self.motion is not None:
                judged = lores if lores is not None else image
                motion = self.motion.update(judged.grey() if isinstance(judged, Yuv420) else judged)
                self.moving, self.motion_area = motion.moving, motion.area
                if motion.moving:
                    self.motion_frames += 1
                    self.last_motion_time = now
            frame = Frame(image, self._frame_time(now, period), self._sequence, lores, motion)
            slot.put(frame, queue=self._lockstep)
            self._frames_this_round += 1
            self._frames += 1
            with self._lock:
                if self._state is not SourceState.LIVE:
                    self._announce_live(frame.size)
                    self._state, self._reason = SourceState.LIVE, None
                    self._live_since = now
                elif now - self._progress > self.stall_s:
                    gap = now - self._progress
                    log.warning("%s: no frame for %.1f s (source hung), frames flow again", source.name, gap)
                self._last_frame_time = self._progress = now
                self._times.append(now)
        return None

    def _announce_live(self, size: tuple[int, int]) -> None:
        w, h = size
        if self._down_since is None:
            log.info("%s: live, %dx%d", self.source.name, w, h)
        else:
            down = time.monotonic() - self._down_since
            log.info("%s: live again, %dx%d, after %.1f s down", self.source.name, w, h, down)
            self._down_since = None

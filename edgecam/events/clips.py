"""Event clips: H.264 MP4 files from ``pre_s`` before an event to ``post_s`` after it, made with PyAV.

How it works
    One H.264 encoder runs all the time on a worker thread (``h264_v4l2m2m``, the Pi 4's hardware encoder,
    when it opens; else ``libx264`` preset ``ultrafast``, tune ``zerolatency``), with a keyframe forced every
    ``keyframe_s`` (1 s). Its packets go into a ring buffer that holds ``pre_s`` + two keyframe intervals:
    the pre-roll is kept *encoded*, about 1/100 of the raw size (≈ 2 MB for 5 s of 720p at 15 fps, capped at
    ``ring_max_bytes``). A clip is a copy of those packets into an MP4 — no second encode, whatever the number
    of events — starting at the newest keyframe at or before ``event start - pre_s`` (so the pre-roll is
    between ``pre_s`` and ``pre_s + keyframe_s``).

    Why not a JPEG pre-roll: JPEG costs less while nothing happens (measured in ``bench/recording.py``), but
    at the start of every event it needs a burst of decode + H.264 encode of the whole pre-roll, exactly
    when the detector is busiest, and the same H.264 encode as here for the rest of the event. A constant
    encoder gives a flat, predictable CPU load (free with the Pi 4's hardware encoder), tiny RAM, and clips
    whose cost does not grow with the number of events.

Overlapping events share one clip
    A clip opens with the first event and stays open while any event in it is open; it ends ``post_s``
    after the last one ended (or after ``max_clip_s``, or when recording pauses). Every event in it gets the
    same file (``on_clip`` is called once per event). Disk use therefore grows with recorded time, not with
    the number of objects in the scene. The file name carries the clip's first-frame time
    (``20240501T120000.123Z_<first event id>.mp4``), so a player can seek to an event's own start.

Crash safety
    A clip is recorded as fragmented MP4 ``<name>.mp4.part`` (playable up to the last fragment even if
    the process dies), with its event ids in ``<name>.events``. When it completes it is remuxed (packet copy)
    into a regular ``+faststart`` MP4 (``<name>.mp4.tmp`` renamed to ``<name>.mp4``): duration and seeking
    work in every browser. At start, leftover ``.part`` files are finalized the same way (and ``on_clip`` is
    called for their events) or removed if nothing in them is readable; ``.tmp`` files are removed.

The pipeline side
    ``push(image, timestamp)`` is O(1): a reference to the BGR frame goes into a small bounded queue (the
    caller must not modify the array afterwards); when the worker falls behind, the oldest waiting frame is
    dropped and counted. ``event_started`` / ``event_ended`` are never dropped. Nothing raises into the
    caller. Timestamps are ``time.monotonic()`` seconds, the frame's clock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from edgecam.events.model import wall_clock
from edgecam.vision import cv2

log = logging.getLogger(__name__)

TIME_BASE = Fraction(1, 1000)  # packet times in milliseconds since the encoder started
FRAGMENTED = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}
FASTSTART = {"movflags": "+faststart"}
OnClip = Callable[[int, Path, int], None]
Paused = Callable[[], "str | None"]


# ---- encoder ------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Packet:
    ts: float
    """Monotonic seconds."""
    pts: int
    """In TIME_BASE, since the encoder started."""
    key: bool
    data: bytes


def _force_key(frame: av.VideoFrame) -> None:
    try:
        frame.pict_type = av.video.frame.PictureType.I
    except (AttributeError, TypeError):  # PyAV < 12 takes a name
        frame.pict_type = "I"


class _Encoder:
    """One H.264 encoder; BGR frames in, :class:`_Packet` out (in order: no B-frames)."""

    def __init__(self, name: str, width: int, height: int, fps: float, crf: int, bitrate: int, threads: int):
        self.name = name
        self.width = width
        self.height = height
        ctx = av.CodecContext.create(name, "w")
        ctx.width = width
        ctx.height = height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = TIME_BASE
        ctx.framerate = Fraction(fps).limit_denominator(1001)
        ctx.gop_size = max(1, round(fps * 10))  # a backstop: keyframes are forced by time
        if name == "libx264":
            ctx.options = {
                "preset": "ultrafast",
                "tune": "zerolatency",
                "crf": str(crf),
                "forced-idr": "1",
                "threads": str(threads),
            }
        else:
            ctx.bit_rate = bitrate
        ctx.open()
        self.ctx = ctx
        self.t0: float | None = None
        self.last_pts = -1

    def encode(self, image: np.ndarray | None, ts: float, key: bool = False) -> list[_Packet]:
        if image is None:
            packets = self.ctx.encode(None)
        else:
            if self.t0 is None:
                self.t0 = ts
            pts = max(round((ts - self.t0) / TIME_BASE), self.last_pts + 1)
            self.last_pts = pts
            frame = av.VideoFrame.from_ndarray(_i420(image, self.width, self.height), format="yuv420p")
            frame.pts = pts
            frame.time_base = TIME_BASE
            if key:
                _force_key(frame)
            packets = self.ctx.encode(frame)
        t0 = self.t0 or 0.0
        return [_Packet(t0 + float(p.pts * TIME_BASE), p.pts, bool(p.is_keyframe), bytes(p)) for p in packets]


def _i420(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """BGR → planar YUV 4:2:0 (OpenCV, GIL released), at the encoder's (even) size."""
    h, w = image.shape[:2]
    if (w, h) != (width, height):
        if w >= width and h >= height and w - width <= 1 and h - height <= 1:
            image = image[:height, :width]  # odd sizes lose their last row/column
        else:
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGR2YUV_I420)


def probe_encoder(width: int = 640, height: int = 480, prefer: str = "auto") -> str:
    """The H.264 encoder to use: ``h264_v4l2m2m`` if it opens and encodes a frame here, else ``libx264``.
    ``prefer`` forces one by name (``libx264``, ``h264_v4l2m2m``)."""
    if prefer not in ("auto", ""):
        return prefer
    for name in ("h264_v4l2m2m", "libx264"):
        try:
            encoder = _Encoder(name, width, height, 10, 23, 1_000_000, 1)
            black = np.zeros((height, width, 3), np.uint8)
            encoder.encode(black, 0.0, key=True)
            encoder.encode(None, 0.0)
            return name
        except Exception as exc:
            log.debug("clips: encoder %s unusable here: %s", name, exc)
    raise RuntimeError("no H.264 encoder: PyAV's FFmpeg has neither h264_v4l2m2m nor libx264")


# ---- muxing -------------------------------------------------------------------------------------------------


def _packet_stream(container: Any, width: int, height: int, fps: float) -> Any:
    """An output stream for packets encoded elsewhere (SPS/PPS travel in-band in every keyframe)."""
    if hasattr(container, "add_mux_stream"):  # PyAV >= 16: no codec context at all
        stream = container.add_mux_stream("h264", width=width, height=height)
    else:  # older PyAV (Raspberry Pi OS Bookworm's python3-av is 10.0): an unused libx264 context
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.codec_context.width = width
        stream.codec_context.height = height
        stream.codec_context.pix_fmt = "yuv420p"
        stream.codec_context.options = {"preset": "ultrafast", "tune": "zerolatency"}
    stream.time_base = TIME_BASE
    return stream


def _template_stream(container: Any, template: Any) -> Any:
    if hasattr(container, "add_stream_from_template"):
        return container.add_stream_from_template(template)
    return container.add_stream(template=template)  # PyAV < 12


def finalize(part: Path, final: Path) -> int:
    """Remux a (possibly truncated) fragmented ``part`` into a ``+faststart`` MP4 at ``final`` (written as
    ``final.tmp``, then renamed). Returns its size. Raises if nothing is readable or the write fails."""
    tmp = final.with_name(final.name + ".tmp")
    packets = 0
    try:
        with av.open(str(part)) as src, av.open(str(tmp), "w", format="mp4", options=FASTSTART) as dst:
            video = src.streams.video[0]
            out = _template_stream(dst, video)
            try:
                for packet in src.demux(video):
                    if packet.dts is None or packet.size == 0:
                        continue
                    packet.stream = out
                    dst.mux(packet)
                    packets += 1
            except (av.error.FFmpegError, EOFError) as exc:  # a crash cut the last fragment short
                log.info("clips: %s ends early (%s); keeping %d frames", part.name, exc, packets)
            if packets == 0:
                raise ValueError(f"{part.name} holds no readable frame")
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final.stat().st_size


@dataclass(eq=False)
class _Clip:
    name: str
    part: Path
    ids_file: Path
    final: Path
    container: Any
    stream: Any
    base_pts: int
    start_ts: float
    events: list[int] = field(default_factory=list)
    open: set[int] = field(default_factory=set)
    close_at: float | None = None
    last_ts: float = 0.0
    last_pts: int = -1
    frames: int = 0


# ---- the recorder -------------------------------------------------------------------------------------------


class ClipRecorder:
    def __init__(
        self,
        directory: Path | str,
        pre_s: float = 5.0,
        post_s: float = 5.0,
        fps: float = 15.0,
        on_clip: OnClip | None = None,
        *,
        paused: Paused | None = None,
        encoder: str = "auto",
        crf: int = 23,
        bitrate: int | None = None,
        threads: int = 1,
        keyframe_s: float = 1.0,
        max_clip_s: float = 300.0,
        queue_size: int = 8,
        ring_max_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        """``directory``: where clips go (``<recording.dir>/clips``); ``fps``: the stream's frame-rate cap
        (a hint for the encoder; real timestamps set the timing). ``on_clip(event_id, path, bytes)`` is called
        on the worker thread for each event of a finished clip (``EventStore.set_clip`` fits).
        ``paused()`` returning a reason stops new clips and ends the one being written
        (``EventStore.paused`` fits). ``encoder``: ``auto`` (probe ``h264_v4l2m2m``, fall back to ``libx264``)
        or a name. ``crf`` is for libx264; ``bitrate`` (bits/s) for the hardware encoder (default: 0.1 bit
        per pixel per frame)."""
        self.directory = Path(directory)
        self.pre_s = float(pre_s)
        self.post_s = float(post_s)
        self.fps = float(fps)
        self.on_clip = on_clip
        self._paused = paused
        self.encoder_pref = encoder
        self.crf = crf
        self.bitrate = bitrate
        self.threads = threads
        self.keyframe_s = keyframe_s
        self.max_clip_s = max_clip_s
        self.queue_size = queue_size
        self.ring_max_bytes = ring_max_bytes
        self._cond = threading.Condition()
        self._frames: deque[tuple[np.ndarray, float]] = deque()
        self._controls: deque[tuple[str, int, float]] = deque()
        self._stopping = False
        self._busy = False
        self._thread: threading.Thread | None = None
        # worker state
        self._encoder: _Encoder | None = None
        self._encoder_name: str | None = None
        self._ring: deque[_Packet] = deque()
        self._ring_bytes = 0
        self._last_key_ts: float | None = None
        self._want_key = False
        self._clip: _Clip | None = None
        self._pending: dict[int, float] = {}  # events waiting for a keyframe to open their clip
        self._last_frame_at = 0.0
        # counters
        self.pushed = 0
        self.dropped = 0
        self.encoded = 0
        self.clips = 0
        self.failed = 0
        self.skipped_events = 0
        self.recovered = 0
        self.bytes_written = 0
        self.last_error: str | None = None
        self.pause_reason: str | None = None

    # ---- pipeline side ----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker (it first finalizes or removes clips a crash left behind)."""
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="clips", daemon=True)
        self._thread.start()

    def push(self, image: np.ndarray, timestamp: float) -> bool:
        """Hand over one output frame (BGR uint8, not modified afterwards). O(1); False if the recorder
        dropped a waiting frame to make room."""
        with self._cond:
            if self._stopping:
                return False
            self.pushed += 1
            dropped = len(self._frames) >= self.queue_size
            if dropped:
                self._frames.popleft()
                self.dropped += 1
            self._frames.append((image, timestamp))
            self._cond.notify()
        return not dropped

    def event_started(self, event_id: int, timestamp: float) -> None:
        self._control("start", event_id, timestamp)

    def event_ended(self, event_id: int, timestamp: float) -> None:
        self._control("end", event_id, timestamp)

    def stop(self, timeout: float = 30.0) -> None:
        """Encode what is queued, finish the open clip now (its post-roll cut short), stop the worker."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until every pushed frame and event has been handled (tests, benchmarks)."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._frames and not self._controls and not self._busy, timeout
            )

    def status(self) -> dict[str, Any]:
        clip = self._clip
        return {
            "dir": str(self.directory),
            "encoder": self._encoder_name,
            "pyav": av.__version__,
            "pre_s": self.pre_s,
            "post_s": self.post_s,
            "frames": self.pushed,
            "encoded": self.encoded,
            "dropped": self.dropped,
            "clips": self.clips,
            "failed": self.failed,
            "recovered": self.recovered,
            "skipped_events": self.skipped_events,
            "bytes_written": self.bytes_written,
            "recording": None if clip is None else {"file": clip.final.name, "events": list(clip.events)},
            "preroll_bytes": self._ring_bytes,
            "preroll_s": self._preroll_s(),
            "paused": self.pause_reason,
            "last_error": self.last_error,
        }

    def _preroll_s(self) -> float:
        try:
            return round(self._ring[-1].ts - self._ring[0].ts, 2)
        except IndexError:  # empty, or changed under us (this runs on another thread)
            return 0.0

    def _control(self, kind: str, event_id: int, timestamp: float) -> None:
        with self._cond:
            self._controls.append((kind, int(event_id), float(timestamp)))
            self._cond.notify()

    # ---- worker -----------------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.recover()
        except Exception as exc:
            self._error(f"recovery in {self.directory} failed: {exc}")
        while True:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
                self._cond.wait_for(lambda: self._stopping or self._frames or self._controls, timeout=0.5)
                controls = list(self._controls)
                self._controls.clear()
                item = self._frames.popleft() if self._frames else None
                stopping = self._stopping and item is None
                self._busy = True
            try:
                for control in controls:
                    self._on_control(*control)
                if item is not None:
                    self._on_frame(*item)
                self._housekeeping()
                if stopping:
                    self._shutdown()
                    return
            except Exception as exc:  # never let one bad frame end the worker
                self._error(f"{type(exc).__name__}: {exc}")
                if stopping:
                    return

    def _shutdown(self) -> None:
        if self._encoder is not None:
            with contextlib.suppress(Exception):
                for packet in self._encoder.encode(None, 0.0):
                    self._on_packet(packet)
        if self._clip is not None:
            self._finish(self._clip)
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    def _on_control(self, kind: str, event_id: int, ts: float) -> None:
        clip = self._clip
        if kind == "start":
            reason = self._check_paused()
            if reason is not None:
                self.skipped_events += 1
                return
            if clip is not None and ts - clip.start_ts < self.max_clip_s:
                self._join(clip, event_id)
            elif not self._open_clip(event_id, ts):
                self._pending[event_id] = ts
                self._want_key = True
        elif kind == "end":
            if self._pending.pop(event_id, None) is not None and not self._pending:
                self._want_key = False
            if clip is not None and event_id in clip.open:
                clip.open.discard(event_id)
                if not clip.open:
                    clip.close_at = ts + self.post_s

    def _on_frame(self, image: np.ndarray, ts: float) -> None:
        self._last_frame_at = time.monotonic()
        h, w = image.shape[:2]
        size = (w - w % 2, h - h % 2)
        encoder = self._encoder
        if encoder is not None and (encoder.width, encoder.height) != size and self._clip is None:
            encoder = self._encoder = None  # the stream's size changed: start over at the new size
            self._ring.clear()
            self._ring_bytes = 0
        if encoder is None:
            if self._encoder_name is None:
                self._encoder_name = probe_encoder(*size, prefer=self.encoder_pref)
                log.info("clips: encoding with %s (PyAV %s)", self._encoder_name, av.__version__)
            bitrate = self.bitrate or int(0.1 * size[0] * size[1] * self.fps)
            encoder = self._encoder = _Encoder(
                self._encoder_name, *size, self.fps, self.crf, bitrate, self.threads
            )
            self._last_key_ts = None
        key = self._want_key or self._last_key_ts is None or ts - self._last_key_ts >= self.keyframe_s
        packets = encoder.encode(image, ts, key)
        self.encoded += 1
        for packet in packets:
            self._on_packet(packet)

    def _on_packet(self, packet: _Packet) -> None:
        if packet.key:
            self._last_key_ts = packet.ts
            self._want_key = False
            if self._pending:  # events that came before any keyframe: their clip starts here
                first = min(self._pending, key=self._pending.__getitem__)
                if self._open_clip(first, self._pending[first], at_key=packet) and self._clip is not None:
                    for event_id in self._pending:
                        self._join(self._clip, event_id)
                self._pending.clear()
        self._ring.append(packet)
        self._ring_bytes += len(packet.data)
        keep_from = packet.ts - (self.pre_s + 2 * self.keyframe_s + 0.5)
        while len(self._ring) > 1 and (
            self._ring[0].ts < keep_from or self._ring_bytes > self.ring_max_bytes
        ):
            self._ring_bytes -= len(self._ring.popleft().data)
        while self._ring and not self._ring[0].key:  # a pre-roll must start on a keyframe
            self._ring_bytes -= len(self._ring.popleft().data)
        clip = self._clip
        if clip is None:
            return
        if packet.pts > clip.last_pts:
            self._write(clip, packet)
        if clip is self._clip and (
            (clip.close_at is not None and packet.ts >= clip.close_at)
            or packet.ts - clip.start_ts >= self.max_clip_s
        ):
            self._finish(clip)

    def _open_clip(self, event_id: int, ts: float, at_key: _Packet | None = None) -> bool:
        """Open a clip for ``event_id`` starting at the newest keyframe at or before ``ts - pre_s`` (or the
        oldest one held). False if there is no keyframe yet (the event waits for the next one)."""
        if self._clip is not None:
            self._finish(self._clip)
        packets = list(self._ring)
        if at_key is not None:
            packets.append(at_key)
        keys = [i for i, p in enumerate(packets) if p.key]
        if not keys:
            return False
        start = keys[0]
        for i in keys:
            if packets[i].ts <= ts - self.pre_s:
                start = i
        first = packets[start]
        stamp = datetime.fromtimestamp(wall_clock(first.ts), timezone.utc).strftime("%Y%m%dT%H%M%S.%f")[:-3]
        name = f"{stamp}Z_{event_id}"
        encoder = self._encoder
        assert encoder is not None
        part = self.directory / f"{name}.mp4.part"
        try:
            container = av.open(str(part), "w", format="mp4", options=FRAGMENTED)
            stream = _packet_stream(container, encoder.width, encoder.height, self.fps)
        except Exception as exc:
            self._fail(None, f"cannot create {part}: {exc}")
            part.unlink(missing_ok=True)
            return True  # the event is not retried
        clip = _Clip(
            name=name,
            part=part,
            ids_file=self.directory / f"{name}.events",
            final=self.directory / f"{name}.mp4",
            container=container,
            stream=stream,
            base_pts=first.pts,
            start_ts=first.ts,
        )
        self._clip = clip
        self._join(clip, event_id)
        for packet in packets[start:]:
            if self._clip is not clip:
                break
            self._write(clip, packet)
        return True

    def _join(self, clip: _Clip, event_id: int) -> None:
        clip.open.add(event_id)
        clip.close_at = None
        if event_id in clip.events:
            return
        clip.events.append(event_id)
        try:
            with open(clip.ids_file, "a", encoding="ascii") as f:
                f.write(f"{event_id}\n")
        except OSError as exc:
            self._fail(clip, f"cannot write {clip.ids_file}: {exc}")

    def _write(self, clip: _Clip, packet: _Packet) -> None:
        out = av.Packet(packet.data)
        out.pts = out.dts = packet.pts - clip.base_pts
        out.time_base = TIME_BASE
        out.duration = max(1, round(1 / self.fps / TIME_BASE))
        out.is_keyframe = packet.key
        out.stream = clip.stream
        try:
            clip.container.mux(out)
        except Exception as exc:  # a full disk, mostly
            self._fail(clip, f"writing {clip.part.name} failed: {exc}")
            return
        clip.frames += 1
        clip.last_ts = packet.ts
        clip.last_pts = packet.pts

    def _finish(self, clip: _Clip) -> None:
        """Close the fragmented file, remux it to the final MP4, tell ``on_clip``, clean up."""
        if self._clip is clip:
            self._clip = None
        try:
            clip.container.close()
            nbytes = finalize(clip.part, clip.final)
        except Exception as exc:
            self._fail(clip, f"finishing {clip.final.name} failed: {exc}")
            return
        self.clips += 1
        self.bytes_written += nbytes
        self._announce(clip.final, nbytes, clip.events)
        clip.part.unlink(missing_ok=True)
        clip.ids_file.unlink(missing_ok=True)

    def _fail(self, clip: _Clip | None, message: str) -> None:
        self.failed += 1
        self._error(message)
        if clip is None:
            return
        if self._clip is clip:
            self._clip = None
        with contextlib.suppress(Exception):
            clip.container.close()
        for path in (clip.part, clip.ids_file, clip.final.with_name(clip.final.name + ".tmp")):
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)

    def _announce(self, path: Path, nbytes: int, events: list[int]) -> None:
        if self.on_clip is None:
            return
        for event_id in events:
            try:
                self.on_clip(event_id, path, nbytes)
            except Exception as exc:
                self._error(f"on_clip({event_id}) failed: {exc}")

    def _housekeeping(self) -> None:
        clip = self._clip
        if clip is not None:
            stalled = time.monotonic() - self._last_frame_at > 2.0
            if clip.close_at is not None and stalled:
                self._finish(clip)  # no frames are coming to carry it to its end
            elif self._check_paused() is not None:
                log.warning("clips: recording paused (%s): %s ends early", self.pause_reason, clip.final.name)
                self._finish(clip)

    def _check_paused(self) -> str | None:
        reason = None
        if self._paused is not None:
            try:
                reason = self._paused()
            except Exception as exc:
                self._error(f"paused() failed: {exc}")
        self.pause_reason = reason
        return reason

    def _error(self, message: str) -> None:
        if message != self.last_error:
            log.warning("clips: %s", message)
        self.last_error = message

    # ---- recovery ---------------------------------------------------------------------------------------------

    def recover(self) -> list[Path]:
        """Finalize ``.part`` clips a crash left (announcing their events), remove what cannot be saved.
        Runs on the worker at start; public for tests and tools."""
        done: list[Path] = []
        for tmp in self.directory.glob("*.mp4.tmp"):
            tmp.unlink(missing_ok=True)
        for part in sorted(self.directory.glob("*.mp4.part")):
            name = part.name[: -len(".mp4.part")]
            final = self.directory / f"{name}.mp4"
            ids_file = self.directory / f"{name}.events"
            events: list[int] = []
            with contextlib.suppress(OSError, ValueError):
                events = [int(x) for x in ids_file.read_text(encoding="ascii").split()]
            try:
                nbytes = final.stat().st_size if final.exists() else finalize(part, final)
            except Exception as exc:
                log.warning("clips: removing %s, which a crash left unreadable (%s)", part.name, exc)
                nbytes = 0
            if nbytes:
                self.recovered += 1
                self._announce(final, nbytes, events)
                done.append(final)
                log.info("clips: recovered %s (%d bytes, events %s)", final.name, nbytes, events)
            part.unlink(missing_ok=True)
            ids_file.unlink(missing_ok=True)
        for ids_file in self.directory.glob("*.events"):
            if not (self.directory / (ids_file.name[: -len(".events")] + ".mp4.part")).exists():
                ids_file.unlink(missing_ok=True)
        return done

"""``open_source``: turn a ``camera.source`` string into a CaptureSource (not yet opened)."""

from __future__ import annotations

import logging
import os

from .base import CaptureSource, SourceError
from .file import FileSource
from .network import NetworkSource
from .picam import Picamera2Source, picamera2_available
from .testpattern import TestPatternSource
from .v4l2 import V4L2Source, find_usb_camera

__all__ = ["open_source", "resolve_auto"]

log = logging.getLogger(__name__)

NETWORK_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")


AUTO_ORDER = (
    "the Pi camera (picamera2), else the first USB camera (/dev/videoN), else the sample video, "
    "else a test pattern"
)


def resolve_auto(sample_video: str | os.PathLike[str] | None = None) -> str:
    """What ``auto`` means on this machine (``AUTO_ORDER`` says it in words for the docs, the installer
    and ``edgecam doctor``): "picamera2" if picamera2 imports and sees a camera, else the first USB
    /dev/videoN, else ``sample_video`` when given, else "testpattern"."""
    if picamera2_available():
        return "picamera2"
    device = find_usb_camera()
    if device is not None:
        return device
    return str(sample_video) if sample_video is not None else "testpattern"


def open_source(
    spec: str,
    *,
    width: int,
    height: int,
    fps: float,
    realtime: bool = True,
    lores_size: tuple[int, int] | None = None,
    timeout_s: float = 5.0,
    decode_threads: int = 0,
) -> CaptureSource:
    """Build the source named by ``spec`` (the ``camera.source`` value). Raises SourceError for a spec
    that names nothing usable; the source itself is opened by the CaptureThread (open errors are retried).

    ``spec`` is one of:
      - ``"testpattern"``: synthetic frames at width x height and fps;
      - ``"picamera2"``: the Pi camera; main at width x height, plus a lores stream if ``lores_size``;
      - ``"0"``, ``"/dev/video0"``: a V4L2 (USB) camera asked for width x height at fps (MJPG);
      - ``rtsp://``, ``http(s)://`` and other URLs: a stream through OpenCV's FFmpeg backend, open and
        read bounded by ``timeout_s`` (pass ``camera.stall_s``);
      - a path to a video file (looped; "camera.source: no such file '<path>'" if it is missing);
      - ``"auto"``: see :func:`resolve_auto`. A caller that prefers a sample video to the test pattern
        resolves "auto" itself before calling.

    Cameras (picamera2, V4L2) and the test pattern deliver width x height. Files and network streams keep
    their native size: the stream scales its output (``stream.width``) and detection resizes to the model
    anyway, so resizing here would only cost CPU. Only picamera2 fills ``Frame.lores``.
    ``realtime=False`` makes files (and the test pattern) unpaced, to be handed over in lockstep.
    ``decode_threads`` caps FFmpeg's decode threads for files and network streams (0 = FFmpeg's choice).
    """
    spec = str(spec).strip()
    if not spec:
        raise SourceError(
            "camera.source is empty; use auto, picamera2, testpattern, /dev/video0, a URL or a file"
        )
    if spec.lower() == "auto":
        resolved = resolve_auto()
        log.info("camera.source auto -> %s", resolved)
        spec = resolved
    lowered = spec.lower()
    if lowered == "testpattern":
        return TestPatternSource(width=width, height=height, fps=fps, paced=realtime)
    if lowered == "picamera2":
        return Picamera2Source(width=width, height=height, fps=fps, lores_size=lores_size)
    if spec.isdigit() or spec.startswith("/dev/video"):
        return V4L2Source(spec, width=width, height=height, fps=fps)
    if lowered.startswith(NETWORK_SCHEMES):
        return NetworkSource(spec, timeout_s=timeout_s, decode_threads=decode_threads)
    path = os.path.expanduser(spec)
    if not os.path.isfile(path):
        raise SourceError(f"camera.source: no such file '{spec}'")
    return FileSource(path, decode_threads=decode_threads)

"""A USB (UVC) or other V4L2 camera through OpenCV's V4L2 backend."""

from __future__ import annotations

import glob
import logging
import os
import re

import numpy as np

from edgecam.vision import cv2

from .base import CaptureSource, SourceError, fit_size

__all__ = ["V4L2Source", "find_usb_camera"]

log = logging.getLogger(__name__)


class V4L2Source(CaptureSource):
    """Frames from ``/dev/videoN`` at the requested size and rate, asking for MJPG (USB cameras deliver
    their higher resolutions at full rate only as MJPG). If the camera picks another size, frames are
    resized to the requested one and a warning says what the camera gave."""

    paced = True

    def __init__(self, device: str | int, *, width: int, height: int, fps: float) -> None:
        if isinstance(device, int) or str(device).isdigit():
            device = f"/dev/video{int(device)}"
        self.device = str(device)
        self.width, self.height, self.fps = width, height, fps
        self.name = f"v4l2:{self.device}"
        self.nominal_fps: float | None = None
        self._cap = None
        self._warned_size = False

    def open(self) -> None:
        self.close()
        if not os.path.exists(self.device):
            raise SourceError(f"no such camera device '{self.device}' (is the USB camera plugged in?)")
        if not os.access(self.device, os.R_OK | os.W_OK):
            raise SourceError(f"no permission to open '{self.device}' (add the user to the 'video' group)")
        m = re.fullmatch(r"/dev/video(\d+)", self.device)
        cap = cv2.VideoCapture(int(m.group(1)) if m else self.device, cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"cannot open '{self.device}' (busy in another program, or not a capture device?)"
            )
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        cap.set(cv2.CAP_PROP_FPS, self.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # fewer stale frames queued in the driver
        got = cap.get(cv2.CAP_PROP_FPS)
        self.nominal_fps = float(got) if got and got > 0 else float(self.fps)
        self._cap = cap

    def read(self) -> tuple[np.ndarray, np.ndarray | None]:
        if self._cap is None:
            raise SourceError("camera is not open")
        ok, image = self._cap.read()
        if not ok or image is None:
            raise SourceError(f"no frame from '{self.device}' (unplugged?)")
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if not self._warned_size and (image.shape[1], image.shape[0]) != (self.width, self.height):
            self._warned_size = True
            log.warning(
                "%s delivers %dx%d, not the requested %dx%d; resizing every frame costs CPU — set "
                "camera.width/height to a size the camera supports (v4l2-ctl --list-formats-ext)",
                self.name,
                image.shape[1],
                image.shape[0],
                self.width,
                self.height,
            )
        return fit_size(image, (self.width, self.height)), None

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()


def find_usb_camera() -> str | None:
    """The first /dev/videoN that is a USB device, else /dev/video0 if sysfs cannot tell, else None.

    On a Pi, /dev/video* also holds the ISP, codec and CSI receiver nodes, which are not cameras OpenCV
    can read, so a bare "does /dev/video0 exist" would pick those.
    """
    nodes = sorted(glob.glob("/dev/video[0-9]*"), key=lambda p: int(p[len("/dev/video") :]))
    if not nodes:
        return None
    sysfs = "/sys/class/video4linux"
    if not os.path.isdir(sysfs):
        return "/dev/video0" if "/dev/video0" in nodes else None
    for node in nodes:
        dev = os.path.realpath(os.path.join(sysfs, os.path.basename(node), "device"))
        if "/usb" in dev:
            return node
    return None

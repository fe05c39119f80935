"""What the inference stage hands to the output side: one inferred frame with its own detections and tracks."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from edgecam.capture.slot import Frame
from edgecam.detect.detector import Detections
from edgecam.track import Track


@dataclass(frozen=True)
class ModelInfo:
    model_id: str
    alpha: float | None
    device: str
    input_size: tuple[int, int]


@dataclass
class OutputFrame:
    """One inference result. It is annotated and JPEG-encoded at most once, and only when someone
    asks (a stream client or a snapshot): ``jpeg_lock`` guards that, ``jpeg`` caches the bytes.

    ``detections`` are the confident detections as columns (iterate for ``Detection`` rows); ``tracks`` the
    confirmed tracks. With motion gating, a frame the detector skipped (``detected`` False) has no
    detections and carries the tracks of the last detection as held; ``inference_ms`` is then 0."""

    frame: Frame
    detections: Detections
    tracks: list[Track]
    model: ModelInfo
    inference_ms: float
    done_at: float  # monotonic time the result was ready
    detected: bool = True
    jpeg: bytes | None = None
    jpeg_ready_at: float | None = None
    annotated: bool = False  # drawn on once (boxes, zones, HUD) by the render stage
    jpeg_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def image(self) -> np.ndarray:
        return self.frame.image

"""The ``/api/status`` schema in one place: each block built from the stage it describes. The page, the
Prometheus collector, the systemd STATUS line and the tests all read this shape."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from edgecam.capture import CaptureThread
from edgecam.capture.slot import LatestFrameSlot
from edgecam.detect.detector import Detector
from edgecam.infer.stage import InferenceThread
from edgecam.render.encoder import JpegEncoder
from edgecam.track import Track
from edgecam.web.stream import StreamFanout


def source_block(name: str, capture: CaptureThread, slot: LatestFrameSlot) -> dict[str, Any]:
    return {
        "name": name,
        "state": capture.state.value,
        "reason": capture.reason,
        "fps": round(capture.fps, 2),
        "frames": capture.frames,
        "dropped": slot.dropped,
        "reconnects": capture.reconnects,
    }


def inference_block(inference: InferenceThread) -> dict[str, Any]:
    """``fps``/``frames``: output frames (every frame taken, with motion gating too); ``detect_fps``/
    ``detected``: frames the detector ran on; ``ms``: stage time per detected frame, of which ``invoke_ms``
    the model and ``track_ms`` the tracker (medians of the last 100)."""
    return {
        "fps": round(inference.rate.rate, 2),
        "ms": round(inference.busy_ms.percentile(50), 1),
        "invoke_ms": round(inference.invoke_ms.percentile(50), 1),
        "track_ms": round(inference.track_ms.percentile(50), 2),
        "frames": inference.frames,
        "errors": inference.errors,
        "detect_fps": round(inference.detect_rate.rate, 2),
        "detected": inference.detected,
    }


def motion_block(capture: CaptureThread, inference: InferenceThread) -> dict[str, Any]:
    """Motion gating: is it on, does the scene move now, since when is it still, what the gate saved.

    ``state`` is ``off`` (gating disabled: the detector runs on every frame), ``moving`` or ``still``;
    ``last_motion`` is the wall-clock time (ISO 8601, UTC) of the newest moving frame and
    ``last_motion_s_ago`` its age; ``skipped_frames`` counts frames that did not run the detector."""
    gate = inference.gate.settings
    enabled = gate.enabled and capture.motion_enabled
    last = capture.last_motion_time
    now = time.monotonic()
    wall = None if last is None else time.time() - (now - last)
    return {
        "enabled": enabled,
        "state": "off" if not enabled else ("moving" if capture.moving else "still"),
        "area": round(capture.motion_area, 4) if enabled else None,
        "last_motion": None
        if wall is None
        else datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="seconds"),
        "last_motion_s_ago": None if last is None else round(now - last, 1),
        "moving_frames": capture.motion_frames,
        "skipped_frames": inference.skipped,
        "detected_frames": inference.detected,
        "idle_detect_s": gate.idle_detect_s,
    }


def detector_block(detector: Detector, threads: int, runtime: dict[str, str] | None) -> dict[str, Any]:
    return {
        "model": detector.model_id,
        "alpha": detector.alpha,
        "device": detector.device,
        "input_size": list(detector.input_size),
        "threads": threads,
        "runtime": runtime,
    }


def stream_block(encoder: JpegEncoder, fanout: StreamFanout) -> dict[str, Any]:
    return {
        "clients": fanout.clients,
        "encoded_frames": encoder.encoded_frames,
        "streamed_frames": encoder.streamed_frames,
        "fps": round(encoder.rate.rate, 2),
        "encode_ms": round(encoder.encode_ms.percentile(50), 1),
        "latency_ms": {
            "p50": round(encoder.latency_ms.percentile(50), 1),
            "p95": round(encoder.latency_ms.percentile(95), 1),
        },
    }


def tracks_block(tracks: Sequence[Track]) -> list[dict[str, Any]]:
    return [
        {"id": t.id, "label": t.label, "score": round(t.score, 3), "box": [round(v, 1) for v in t.box]}
        for t in tracks
    ]

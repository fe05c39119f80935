"""The SSD detector: a loaded interpreter plus pre/post-processing, label map and filters."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecam.cpuclock import ThreadClock
from edgecam.detect.manifest import Manifest, ModelEntry, load_manifest
from edgecam.detect.runtime import EdgeTpuUnavailableError, find_runtime, load_edgetpu_delegate
from edgecam.detect.ssd import InputWriter, Layout, OutputReader, Resize
from edgecam.detect.store import verified_path

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class Detection:
    """One detected object; ``box`` is (x1, y1, x2, y2) in the pixels of the image it is reported for."""

    label: str
    class_id: int
    score: float
    box: Box

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "class_id": self.class_id,
            "score": round(self.score, 4),
            "box": [round(v, 1) for v in self.box],
        }


@dataclass(frozen=True)
class DetectionFilter:
    """Which detections are reported: classes (labels; empty = all), a global score threshold with
    per-label overrides, and a minimum box area as a fraction of the frame."""

    classes: frozenset[str] = frozenset()
    threshold: float = 0.5
    thresholds: Mapping[str, float] = field(default_factory=dict)
    min_area: float = 0.0

    def threshold_for(self, label: str) -> float:
        return self.thresholds.get(label, self.threshold)


@dataclass(frozen=True)
class Timing:
    preprocess_ms: float
    invoke_ms: float
    postprocess_ms: float
    # Inside invoke, the calling thread was on a CPU for invoke_cpu_ms and runnable (on a CPU or waiting
    # for one) for invoke_runnable_ms: their ratio is the CPU contention (see edgecam.cpuclock).
    invoke_cpu_ms: float = 0.0
    invoke_runnable_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return self.preprocess_ms + self.invoke_ms + self.postprocess_ms


THREAD_CLOCK = ThreadClock()


class Detector:
    """Runs one SSD model. Not thread-safe: one inference thread owns it."""

    def __init__(
        self,
        interpreter: Any,
        labels: list[str],
        *,
        model_id: str,
        alpha: float | None = None,
        device: str = "cpu",
        layout: Layout | None,
        resize: Resize = "stretch",
        detection_filter: DetectionFilter | None = None,
    ) -> None:
        self.interpreter = interpreter
        self.labels = labels
        self.model_id = model_id
        self.alpha = alpha
        self.device = device
        self.filter = detection_filter or DetectionFilter()
        self._writer = InputWriter(interpreter, resize)
        self._reader = OutputReader(interpreter, layout)
        self.last_timing = Timing(0.0, 0.0, 0.0)

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) of the input tensor."""
        return self._writer.width, self._writer.height

    def label(self, class_id: int) -> str:
        if 0 <= class_id < len(self.labels):
            return self.labels[class_id]
        return f"class {class_id}"

    def detect(
        self,
        frame_bgr: np.ndarray,
        output_size: tuple[int, int] | None = None,
        detection_filter: DetectionFilter | None = None,
    ) -> list[Detection]:
        """Detect objects in a BGR frame. Boxes are in ``output_size`` pixels (width, height), by default
        the frame's own size (pass the display size when detecting on a smaller lores frame)."""
        t0 = time.perf_counter()
        placement = self._writer.write(frame_bgr)
        t1, before = time.perf_counter(), THREAD_CLOCK.read()
        self.interpreter.invoke()
        t2, after = time.perf_counter(), THREAD_CLOCK.read()
        raw = self._reader.read(self.interpreter)
        out_w, out_h = output_size or (frame_bgr.shape[1], frame_bgr.shape[0])
        # Normalized tensor coordinates -> fractions of the frame -> output pixels.
        extent = (placement.height, placement.width, placement.height, placement.width)
        boxes = np.clip(raw.boxes / extent, 0.0, 1.0)
        chosen = detection_filter or self.filter
        floor = min([chosen.threshold, *chosen.thresholds.values()])
        keep = raw.scores >= floor  # most rows are empty slots: drop them before the per-row checks
        detections = []
        rows = zip(boxes[keep], raw.classes[keep], raw.scores[keep], strict=True)
        for (ymin, xmin, ymax, xmax), class_id, score in rows:
            label = self.label(int(class_id))
            if score < chosen.threshold_for(label) or (chosen.classes and label not in chosen.classes):
                continue
            if (xmax - xmin) * (ymax - ymin) < chosen.min_area:
                continue
            box = (float(xmin * out_w), float(ymin * out_h), float(xmax * out_w), float(ymax * out_h))
            detections.append(Detection(label, int(class_id), float(score), box))
        detections.sort(key=lambda d: d.score, reverse=True)
        cpu_s = after.cpu_s - before.cpu_s
        if after.wait_s is not None and before.wait_s is not None:
            runnable_s = cpu_s + after.wait_s - before.wait_s
        else:  # no scheduler accounting: all of the wall time (right for a single-threaded invoke)
            runnable_s = t2 - t1
        self.last_timing = Timing(
            (t1 - t0) * 1e3, (t2 - t1) * 1e3, (time.perf_counter() - t2) * 1e3, cpu_s * 1e3, runnable_s * 1e3
        )
        return detections


def read_labels(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines()]


def is_edgetpu_file(path: Path) -> bool:
    """Edge TPU-compiled files carry the custom op's name; they cannot run without the delegate."""
    return b"edgetpu-custom-op" in path.read_bytes()


def make_interpreter(path: Path, threads: int, edgetpu: bool, edgetpu_device: str | None = None) -> Any:
    """Build and allocate an interpreter. An Edge TPU model without a working TPU raises
    EdgeTpuUnavailableError before anything is half-loaded."""
    runtime = find_runtime()
    delegates = [load_edgetpu_delegate(edgetpu_device)] if edgetpu else []
    try:
        interpreter = runtime.interpreter_class(
            model_path=str(path), num_threads=threads, experimental_delegates=delegates or None
        )
        interpreter.allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        if "edgetpu-custom-op" in str(exc):
            raise EdgeTpuUnavailableError(
                f"{path.name} needs the Edge TPU delegate ({str(exc).splitlines()[0]})"
            ) from exc
        raise ValueError(f"{path}: not a loadable TFLite model ({str(exc).splitlines()[0]})") from exc
    return interpreter


def load_detector(
    model_id: str,
    model_dir: Path,
    *,
    threads: int = 1,
    edgetpu_device: str | None = None,
    detection_filter: DetectionFilter | None = None,
    manifest: Manifest | None = None,
) -> Detector:
    """Load a manifest model after verifying its checksum (a mismatching file is never loaded)."""
    manifest = manifest or load_manifest()
    entry: ModelEntry = manifest.model(model_id)
    path = verified_path(model_dir, manifest, model_id)
    labels = read_labels(verified_path(model_dir, manifest, entry.labels))
    try:
        interpreter = make_interpreter(path, threads, entry.edgetpu, edgetpu_device)
    except EdgeTpuUnavailableError as exc:
        raise EdgeTpuUnavailableError(exc.reason, entry.cpu_twin) from exc
    device = "edgetpu" if entry.edgetpu else "cpu"
    log.info(
        "loaded %s (%s α%s, %dx%d) on %s",
        model_id,
        entry.architecture,
        entry.alpha,
        *entry.input_size,
        device,
    )
    return Detector(
        interpreter,
        labels,
        model_id=model_id,
        alpha=entry.alpha,
        device=device,
        layout=entry.layout,
        resize=entry.resize,
        detection_filter=detection_filter,
    )


def load_detector_file(
    path: Path,
    labels: Iterable[str],
    *,
    threads: int = 1,
    edgetpu_device: str | None = None,
    layout: Layout | None = None,
    resize: Resize = "stretch",
    detection_filter: DetectionFilter | None = None,
) -> Detector:
    """Load a model file the manifest does not list (no checksum to verify; layout guessed unless given)."""
    edgetpu = is_edgetpu_file(path)
    interpreter = make_interpreter(path, threads, edgetpu, edgetpu_device)
    return Detector(
        interpreter,
        list(labels),
        model_id=path.stem,
        device="edgetpu" if edgetpu else "cpu",
        layout=layout,
        resize=resize,
        detection_filter=detection_filter,
    )

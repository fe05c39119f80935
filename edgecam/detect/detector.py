"""The SSD detector: a loaded interpreter plus pre/post-processing, label map and filters."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecam.detect.cpuclock import ThreadClock, ThreadTimes
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

    def floor(self) -> float:
        """The lowest score any label can pass with."""
        return min([self.threshold, *self.thresholds.values()])


class Detections:
    """Detections as columns (supervision's ``Detections`` shape): ``boxes`` (N, 4) x1 y1 x2 y2 in the
    pixels of the image they are reported for, ``scores`` (N,), ``class_ids`` (N,), best score first.

    Nothing is built per row unless asked: iterating (or indexing with an int) yields :class:`Detection`
    rows for code that wants them (events, the CLI, tests); ``labels`` maps the class ids through the label
    table. Indexing with a boolean mask or an index array gives another ``Detections``.
    """

    __slots__ = ("_label_of", "boxes", "class_ids", "scores")

    def __init__(
        self,
        boxes: np.ndarray,
        scores: np.ndarray,
        class_ids: np.ndarray,
        label_of: Callable[[int], str] = lambda class_id: f"class {class_id}",
    ) -> None:
        self.boxes = boxes
        self.scores = scores
        self.class_ids = class_ids
        self._label_of = label_of

    @classmethod
    def empty(cls, label_of: Callable[[int], str] | None = None) -> Detections:
        return cls(np.empty((0, 4)), np.empty(0), np.empty(0, np.int64), *([label_of] if label_of else []))

    @classmethod
    def from_rows(cls, rows: Iterable[Detection]) -> Detections:
        """Columns from :class:`Detection` rows (tests, adapters); labels are taken from the rows."""
        rows = list(rows)
        labels = {d.class_id: d.label for d in rows}
        return cls(
            np.array([d.box for d in rows], dtype=np.float64).reshape(-1, 4),
            np.array([d.score for d in rows], dtype=np.float64),
            np.array([d.class_id for d in rows], dtype=np.int64),
            lambda class_id: labels.get(class_id, f"class {class_id}"),
        )

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def __bool__(self) -> bool:
        return len(self) > 0

    def _row(self, i: int) -> Detection:
        class_id = int(self.class_ids[i])
        box = self.boxes[i].tolist()
        return Detection(
            self._label_of(class_id), class_id, float(self.scores[i]), (box[0], box[1], box[2], box[3])
        )

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, (int, np.integer)):
            return self._row(range(len(self))[index])
        return Detections(self.boxes[index], self.scores[index], self.class_ids[index], self._label_of)

    def __iter__(self) -> Iterator[Detection]:
        for i in range(len(self)):
            yield self._row(i)

    @property
    def labels(self) -> list[str]:
        return [self._label_of(c) for c in self.class_ids.tolist()]

    def to_dicts(self) -> list[dict[str, Any]]:
        return [d.to_dict() for d in self]

    def __repr__(self) -> str:
        return f"Detections({len(self)}: {', '.join(self.labels[:5])}{', …' if len(self) > 5 else ''})"


class _FilterTable:
    """One filter turned into per-class arrays (allowed, minimum score) for vectorised filtering. Index
    ``len(labels)`` stands for every class id outside the label table."""

    def __init__(self, chosen: DetectionFilter, labels: list[str]) -> None:
        self.source = chosen
        self.size = len(labels)
        names = [*labels, None]
        self.allowed = np.array([not chosen.classes or (n in chosen.classes) for n in names], dtype=bool)
        self.minimum = np.array(
            [chosen.threshold_for(n) if n is not None else chosen.threshold for n in names], dtype=np.float32
        )
        self.floor = chosen.floor()
        self.min_area = chosen.min_area

    def rows(self, class_ids: np.ndarray) -> np.ndarray:
        return np.where((class_ids >= 0) & (class_ids < self.size), class_ids, self.size)


@dataclass(frozen=True)
class Timing:
    preprocess_ms: float
    invoke_ms: float
    postprocess_ms: float
    # Inside invoke, the calling thread was on a CPU for invoke_cpu_ms and runnable (on a CPU or waiting
    # for one) for invoke_runnable_ms: their ratio is the CPU contention (see edgecam.detect.cpuclock).
    # Measured around one invoke every CONTENTION_EVERY_S and held in between.
    invoke_cpu_ms: float = 0.0
    invoke_runnable_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return self.preprocess_ms + self.invoke_ms + self.postprocess_ms


THREAD_CLOCK = ThreadClock()
# Reading the scheduler's clock costs two /proc reads per invoke, each of which lets go of the GIL and then
# waits to get it back: 185 µs of wall time (39 µs CPU) a frame at 200 fps here, part of which only moves to
# the next hand-over. Contention changes over seconds, not frames: one measured invoke in 50 ms is plenty.
CONTENTION_EVERY_S = 0.05


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
        self._tables: dict[int, _FilterTable] = {}
        self._measured_at = -math.inf  # perf_counter time of the last invoke measured with THREAD_CLOCK
        self._contention = (0.0, 0.0)  # its (cpu ms, runnable ms)

    @property
    def resize(self) -> Resize:
        """How a frame is fitted to the input: stretched, or letterboxed (aspect ratio kept)."""
        return self._writer.resize

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) of the input tensor."""
        return self._writer.width, self._writer.height

    def label(self, class_id: int) -> str:
        if 0 <= class_id < len(self.labels):
            return self.labels[class_id]
        return f"class {class_id}"

    def _table(self, chosen: DetectionFilter) -> _FilterTable:
        table = self._tables.get(id(chosen))
        if table is None or table.source is not chosen:
            if len(self._tables) > 8:  # filters change only on a config reload
                self._tables.clear()
            table = self._tables[id(chosen)] = _FilterTable(chosen, self.labels)
        return table

    def min_scores(self, chosen: DetectionFilter, class_ids: np.ndarray) -> np.ndarray:
        """Per detection, the score ``chosen`` asks of its class (vectorised ``threshold_for``)."""
        table = self._table(chosen)
        return table.minimum[table.rows(class_ids)]

    def detect(
        self,
        frame_bgr: np.ndarray,
        output_size: tuple[int, int] | None = None,
        detection_filter: DetectionFilter | None = None,
    ) -> Detections:
        """Detect objects in a BGR frame. Boxes are in ``output_size`` pixels (width, height), by default
        the frame's own size (pass the display size when detecting on a smaller lores frame)."""
        t0 = time.perf_counter()
        placement = self._writer.write(frame_bgr)
        t1 = time.perf_counter()
        measure = t1 - self._measured_at >= CONTENTION_EVERY_S
        before = THREAD_CLOCK.read() if measure else None
        self.interpreter.invoke()
        t2 = time.perf_counter()
        if before is not None:
            self._contention = self._invoke_times(before, THREAD_CLOCK.read(), t2 - t1)
            self._measured_at = t1
        raw = self._reader.read(self.interpreter)
        out_w, out_h = output_size or (frame_bgr.shape[1], frame_bgr.shape[0])
        table = self._table(detection_filter or self.filter)
        # Most of the (up to 100) rows are empty slots: one comparison drops them, then the per-class rules
        # and the area run on what is left, as whole columns.
        keep = np.flatnonzero(raw.scores >= table.floor)
        scores, class_ids = raw.scores[keep], raw.classes[keep].astype(np.int64)
        # Normalized tensor coordinates -> fractions of the frame (ymin, xmin, ymax, xmax).
        extent = np.array((placement.height, placement.width, placement.height, placement.width))
        yx = np.clip(raw.boxes[keep] / extent, 0.0, 1.0)
        rows = table.rows(class_ids)
        ok = table.allowed[rows] & (scores >= table.minimum[rows])
        if table.min_area > 0:
            ok &= (yx[:, 3] - yx[:, 1]) * (yx[:, 2] - yx[:, 0]) >= table.min_area
        yx, scores, class_ids = yx[ok], scores[ok], class_ids[ok]
        boxes = yx[:, [1, 0, 3, 2]] * np.array((out_w, out_h, out_w, out_h), dtype=np.float64)
        order = np.argsort(-scores, kind="stable")
        detections = Detections(boxes[order], scores[order].astype(np.float64), class_ids[order], self.label)
        self.last_timing = Timing(
            (t1 - t0) * 1e3, (t2 - t1) * 1e3, (time.perf_counter() - t2) * 1e3, *self._contention
        )
        return detections

    @staticmethod
    def _invoke_times(before: ThreadTimes, after: ThreadTimes, wall_s: float) -> tuple[float, float]:
        """(ms on a CPU, ms runnable) of the calling thread between two clock readings around an invoke."""
        cpu_s = after.cpu_s - before.cpu_s
        if after.wait_s is not None and before.wait_s is not None:
            runnable_s = cpu_s + after.wait_s - before.wait_s
        else:  # no scheduler accounting: all of the wall time (right for a single-threaded invoke)
            runnable_s = wall_s
        return cpu_s * 1e3, runnable_s * 1e3


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

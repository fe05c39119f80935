"""SSD pre- and post-processing around a TFLite interpreter.

Preprocessing writes the resized RGB frame straight into the input tensor (no intermediate full-frame
copy). Post-processing reads the four outputs of the built-in ``TFLite_Detection_PostProcess`` op, which
come in two orders: TF1 exports give boxes, classes, scores, count (float32); TF2 exports give scores,
boxes, count, classes and may be uint8-quantized.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from edgecam.vision import cv2

log = logging.getLogger(__name__)

Layout = Literal["tf1", "tf2"]
Resize = Literal["stretch", "letterbox"]


@dataclass(frozen=True)
class Placement:
    """Where the frame landed in the input tensor, as fractions of the tensor: used to map boxes back."""

    width: float = 1.0
    height: float = 1.0


class InputWriter:
    """Resizes a BGR uint8 frame into the model's uint8 input tensor as RGB, in place.

    Every model in the manifest takes raw 0..255 RGB as uint8 (quantization ≈ 1/128 around 128), so the
    resized frame is the tensor: no staging copy, no normalisation pass.
    """

    def __init__(self, interpreter: Any, resize: Resize) -> None:
        detail = interpreter.get_input_details()[0]
        _, self.height, self.width, channels = (int(v) for v in detail["shape"])
        if channels != 3 or np.dtype(detail["dtype"]) != np.uint8:
            raise ValueError(
                f"unsupported input tensor {tuple(detail['shape'])} {np.dtype(detail['dtype'])}: "
                "edgecam runs quantized SSD models with a uint8 RGB input"
            )
        self._tensor = interpreter.tensor(detail["index"])
        self.resize = resize

    def write(self, frame_bgr: np.ndarray) -> Placement:
        tensor = self._tensor()[0]  # a view into the interpreter's buffer; released before invoke
        if frame_bgr.shape[0] == self.height and frame_bgr.shape[1] == self.width:
            # A picture at model size (the capture thread's, or picamera2's lores): one pass, swapping the
            # channels on the way in.
            cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB, dst=tensor)
            placement = Placement()
        else:
            placement = self._resize_into(frame_bgr, tensor)
            cv2.cvtColor(tensor, cv2.COLOR_BGR2RGB, dst=tensor)
        del tensor
        return placement

    def _resize_into(self, frame: np.ndarray, target: np.ndarray) -> Placement:
        if self.resize == "stretch":
            cv2.resize(frame, (self.width, self.height), dst=target, interpolation=cv2.INTER_LINEAR)
            return Placement()
        # Letterbox: keep the aspect ratio, top-left corner, zero padding (pycoral's set_resized_input).
        src_h, src_w = frame.shape[:2]
        scale = min(self.width / src_w, self.height / src_h)
        new_w, new_h = max(1, round(src_w * scale)), max(1, round(src_h * scale))
        target[...] = 0
        cv2.resize(frame, (new_w, new_h), dst=target[:new_h, :new_w], interpolation=cv2.INTER_LINEAR)
        return Placement(new_w / self.width, new_h / self.height)


@dataclass(frozen=True)
class RawDetections:
    """Post-processed outputs: boxes (N,4) normalized ymin, xmin, ymax, xmax; classes (N,) int; scores (N,)."""

    boxes: np.ndarray
    classes: np.ndarray
    scores: np.ndarray


class OutputReader:
    """Finds the boxes, classes, scores and count outputs and dequantizes them.

    Boxes and count are told apart by shape; scores and classes (both (1, N)) by the layout. For a model
    the manifest does not list, the layout is guessed on the first frame from the values, and logged.
    """

    def __init__(self, interpreter: Any, layout: Layout | None) -> None:
        details = interpreter.get_output_details()
        if len(details) != 4:
            raise ValueError(f"expected the 4 outputs of TFLite_Detection_PostProcess, got {len(details)}")
        shapes = [tuple(interpreter.get_tensor(d["index"]).shape) for d in details]
        boxes = [i for i, s in enumerate(shapes) if len(s) == 3 and s[-1] == 4]
        counts = [i for i, s in enumerate(shapes) if int(np.prod(s)) == 1]
        if len(boxes) != 1 or len(counts) != 1:
            raise ValueError(f"outputs do not look like SSD post-processing: shapes {shapes}")
        pair = [i for i in range(4) if i not in (boxes[0], counts[0])]
        self._details = details
        self._boxes, self._count, self._pair = boxes[0], counts[0], pair
        self.layout = layout

    def _tensor(self, interpreter: Any, position: int) -> np.ndarray:
        detail = self._details[position]
        values = interpreter.get_tensor(detail["index"])
        scale, zero_point = detail["quantization"]
        if values.dtype != np.float32 and scale:
            return (values.astype(np.float32) - zero_point) * scale
        return values.astype(np.float32, copy=False)

    def read(self, interpreter: Any) -> RawDetections:
        first, second = (self._tensor(interpreter, i)[0] for i in self._pair)
        if self.layout is None:
            self.layout = _guess_layout(first, second)
            log.warning("model not in the manifest: guessed output layout %s from its values", self.layout)
        # In output order, TF1 puts classes before scores and TF2 puts scores before classes.
        classes, scores = (first, second) if self.layout == "tf1" else (second, first)
        count = round(float(self._tensor(interpreter, self._count).reshape(-1)[0]))
        count = max(0, min(count, scores.shape[0]))
        boxes = self._tensor(interpreter, self._boxes)[0][:count]
        return RawDetections(boxes, np.rint(classes[:count]).astype(np.int32), scores[:count])


def _guess_layout(first: np.ndarray, second: np.ndarray) -> Layout:
    """The post-processing op emits scores in [0, 1], sorted best first; class ids are neither bounded
    nor sorted (and, quantized, not even exact integers)."""

    def looks_like_scores(values: np.ndarray) -> bool:
        in_range = bool(values.size == 0 or (values.min() >= 0 and values.max() <= 1.0 + 1e-6))
        return in_range and bool(np.all(np.diff(values) <= 1e-6))

    if looks_like_scores(second) and not looks_like_scores(first):
        return "tf1"
    if looks_like_scores(first) and not looks_like_scores(second):
        return "tf2"
    return "tf1"

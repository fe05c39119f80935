"""`edgecam detect` with the shipped default model against a plain interpreter run of the same file: stretch
resize to 300×300, RGB, every class, the runtime edgecam would pick (LiteRT first)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecam.detect.manifest import load_manifest
from edgecam.detect.runtime import find_runtime
from edgecam.detect.store import embedded_dir

DEFAULT = "ssdlite_mobilenet_v2_coco"
PYCORAL_CAT_V2 = (43, 35, 358, 333)  # pycoral's expected box for cat.bmp with an SSD MobileNetV2


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def plain_run(path: Path, cv2, threshold: float = 0.5) -> list[tuple[str, float, list[float]]]:
    """The file run by hand: no edgecam code but the label list."""
    entry = load_manifest().models[DEFAULT]
    interpreter = find_runtime().interpreter_class(model_path=str(embedded_dir() / entry.file), num_threads=1)
    interpreter.allocate_tensors()
    image = cv2.imread(str(path))
    h, w = image.shape[:2]
    rgb = cv2.cvtColor(cv2.resize(image, (300, 300), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], rgb[np.newaxis])
    interpreter.invoke()
    out = [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]
    boxes, classes, scores, count = out[0][0], out[1][0], out[2][0], int(out[3][0])
    labels = (embedded_dir() / "coco_labels.txt").read_text().splitlines()
    found = []
    for i in range(count):
        if scores[i] >= threshold:
            y1, x1, y2, x2 = boxes[i]
            found.append((labels[int(classes[i])], float(scores[i]), [x1 * w, y1 * h, x2 * w, y2 * h]))
    return sorted(found, key=lambda d: -d[1])


@pytest.mark.parametrize(
    "image", ["cat.bmp", "grace_hopper.bmp", "kite_and_cold.jpg", "traffic_frame_0001.bmp"]
)
def test_detect_gives_what_a_plain_interpreter_run_gives(image, media_dir, cv2, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgecam",
            "detect",
            str(media_dir / image),
            "--json",
            "--model-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )  # fmt: skip  (an empty model dir and no config: the shipped model is found, every class reported)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["model"] == DEFAULT
    ours = sorted(((d["label"], d["score"], d["box"]) for d in report["detections"]), key=lambda d: -d[1])
    plain = plain_run(media_dir / image, cv2)
    assert [d[0] for d in ours] == [d[0] for d in plain]
    for (_, score, box), (_, plain_score, plain_box) in zip(ours, plain, strict=True):
        assert abs(score - plain_score) < 0.02 and iou(box, plain_box) > 0.95


def test_the_default_model_finds_the_cat(media_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "edgecam", "detect", str(media_dir / "cat.bmp"), "--json"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    cats = [d for d in json.loads(result.stdout)["detections"] if d["label"] == "cat"]
    assert cats and iou(cats[0]["box"], PYCORAL_CAT_V2) >= 0.8, cats

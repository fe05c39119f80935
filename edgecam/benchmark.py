"""`edgecam bench detector`: what each model costs on this machine, on real frames from a video."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgecam.detect import load_detector
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


def bench_detector(
    models: list[str],
    threads: list[int],
    model_dir: Path,
    video: Path | None,
    *,
    frames: int = 40,
    warmup: int = 5,
) -> list[dict[str, Any]]:
    """Median and p90 invoke latency (and whole detect() latency) per model and thread count."""
    if video is None:
        video = verified_path(model_dir, load_manifest(), "sample_video")
    images = read_frames(video, 30)
    results = []
    for model_id in models:
        for n in threads:
            detector = load_detector(model_id, model_dir, threads=n)
            for i in range(warmup):
                detector.detect(images[i % len(images)])
            invoke, total = [], []
            for i in range(frames):
                t0 = time.perf_counter()
                detector.detect(images[i % len(images)])
                total.append((time.perf_counter() - t0) * 1e3)
                invoke.append(detector.last_timing.invoke_ms)
            median = statistics.median(invoke)
            results.append(
                {
                    "model": model_id,
                    "threads": n,
                    "frames": frames,
                    "invoke_ms_median": round(median, 2),
                    "invoke_ms_p90": round(percentile(invoke, 90), 2),
                    "detect_ms_median": round(statistics.median(total), 2),
                    "fps": round(1000 / statistics.median(total), 2),
                    "input": f"{detector.input_size[0]}x{detector.input_size[1]}",
                    "video": str(video),
                }
            )
    return results


def format_table(results: list[dict[str, Any]]) -> str:
    head = f"{'model':34} {'thr':>3} {'input':>7} {'invoke p50':>10} {'p90':>8} {'detect p50':>10} {'fps':>7}"
    rows = [
        f"{r['model']:34} {r['threads']:>3} {r['input']:>7} {r['invoke_ms_median']:>8.1f}ms "
        f"{r['invoke_ms_p90']:>6.1f}ms {r['detect_ms_median']:>8.1f}ms {r['fps']:>7.1f}"
        for r in results
    ]
    return "\n".join([head, *rows])

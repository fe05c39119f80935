"""Soak: `edgecam run` for a long time on a looping video with stream clients attached, sampling the
process's RSS, threads and open file descriptors every 10 s. Not for CI (30 minutes by default).

    .venv/bin/python bench/soak.py [--minutes 30] [--clients 3] [--out bench/out/soak.json]

Goal: RSS growth < 5 % after warm-up (the first 5 minutes), no thread or fd growth.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def proc_sample(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
        "threads": int(fields["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def client(url: str, stop: threading.Event, counts: list[int], index: int) -> None:
    """A stream viewer that reconnects if the connection drops (as a browser does)."""
    while not stop.is_set():
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                while not stop.is_set():
                    if not response.read(65536):
                        break
                    counts[index] += 1
        except OSError:
            stop.wait(1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--warmup-minutes", type=float, default=5)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--video", default=str(REPO.parent / "shared" / "media" / "vtest.avi"))
    parser.add_argument("--model-dir", default=str(REPO.parent / "shared" / "models"))
    parser.add_argument("--model", default="ssdlite_mobilenet_v2_a050_coco")
    parser.add_argument("--out", default=str(REPO / "bench" / "out" / "soak.json"))
    args = parser.parse_args()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = Path(tempfile.mkdtemp(prefix="edgecam-soak-"))
    config = {
        "camera": {"source": args.video},
        "detector": {"model_dir": args.model_dir, "threads": 1},
        "stream": {"bind": "127.0.0.1", "port": port},
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    log = (workdir / "app.log").open("wb")
    app = subprocess.Popen(
        [sys.executable, "-m", "edgecam", "run", "--config", str(workdir / "config.yaml"), "--model", args.model],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(base + "/healthz", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    stop = threading.Event()
    counts = [0] * args.clients
    for i in range(args.clients):
        threading.Thread(target=client, args=(base + "/stream.mjpg", stop, counts, i), daemon=True).start()
    samples = []
    t0 = time.monotonic()
    try:
        while (elapsed := time.monotonic() - t0) < args.minutes * 60:
            status = json.loads(urllib.request.urlopen(base + "/api/status", timeout=10).read())
            samples.append(
                {
                    "t_s": round(elapsed, 1),
                    **proc_sample(app.pid),
                    "inference_frames": status["inference"]["frames"],
                    "inference_fps": status["inference"]["fps"],
                    "clients": status["stream"]["clients"],
                    "encoded_frames": status["stream"]["encoded_frames"],
                }
            )
            print(json.dumps(samples[-1]), flush=True)
            time.sleep(10)
    finally:
        stop.set()
        app.send_signal(signal.SIGTERM)
        app.wait(30)
    warm = [s for s in samples if s["t_s"] >= args.warmup_minutes * 60] or samples
    first, last = warm[0], warm[-1]
    peak_rss = max(s["rss_mb"] for s in warm)
    result = {
        "benchmark": "soak",
        "minutes": args.minutes,
        "clients": args.clients,
        "model": args.model,
        "video": args.video,
        "rss_mb_after_warmup": round(first["rss_mb"], 1),
        "rss_mb_end": round(last["rss_mb"], 1),
        "rss_mb_peak_after_warmup": round(peak_rss, 1),
        "rss_growth_pct": round(100 * (last["rss_mb"] / first["rss_mb"] - 1), 2),
        "threads": sorted({s["threads"] for s in warm}),
        "fds": sorted({s["fds"] for s in warm}),
        "frames_processed": last["inference_frames"],
        "samples": samples,
        "exit_code": app.returncode,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(
        f"RSS {result['rss_mb_after_warmup']} → {result['rss_mb_end']} MB ({result['rss_growth_pct']:+.2f} %, goal < 5 %), "
        f"threads {result['threads']}, fds {result['fds']}, {result['frames_processed']} frames; JSON {args.out}"
    )


if __name__ == "__main__":
    main()

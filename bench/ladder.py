"""Load-step timeline for the model ladder: idle, then a CPU hog, then idle again.

Runs the real pipeline in-process on a video with the two-model ladder and one detector thread, a real
MJPEG client attached, and records each second the inference rate, the model in use and the stream rate.
Prints a summary (time to recover the target after the load step, time back up, switches, stream gaps),
writes JSON and a PNG plot.

    .venv/bin/python bench/ladder.py [--idle 20 --load 30 --recover 30] [--min-fps F] [--out bench/out/ladder]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import multiprocessing
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

from edgecam.app.pipeline import Overrides, Pipeline
from edgecam.config import LoadedConfig, parse_config

REPO = Path(__file__).resolve().parent.parent
BIG, SMALL = "ssdlite_mobilenet_v2_coco", "ssdlite_mobilenet_v2_a050_coco"


def burn(stop) -> None:
    while not stop.is_set():
        pass


def read_stream(url: str, arrivals: list[float], stop: threading.Event) -> None:
    """A real MJPEG client: records the arrival time of every part."""
    with urllib.request.urlopen(url, timeout=30) as response:
        boundary = b"--"
        while not stop.is_set():
            line = response.readline()
            if not line:
                return
            if line.startswith(boundary):
                length = 0
                while (header := response.readline()) not in (b"\r\n", b""):
                    if header.lower().startswith(b"content-length:"):
                        length = int(header.split(b":")[1])
                response.read(length)
                arrivals.append(time.monotonic())


def run(args: argparse.Namespace) -> dict:
    model_dir = Path(args.model_dir)
    config = parse_config(
        json.dumps(
            {
                "camera": {"source": str(Path(args.media_dir) / args.video)},
                "detector": {"ladder": [BIG, SMALL], "threads": 1, "min_fps": args.min_fps or 0.0},
                "adapt": {"down_after_s": 3, "up_after_s": 15, "up_margin": 1.2, "cooldown_s": 10},
                "stream": {"fps": 30},
            }
        )
    )
    pipeline = Pipeline(
        LoadedConfig(config, None), Overrides(port=0, bind="127.0.0.1", model_dir=model_dir, threads=1)
    )
    pipeline.start()
    arrivals: list[float] = []
    stop_client = threading.Event()
    client = threading.Thread(
        target=read_stream,
        args=(f"http://127.0.0.1:{pipeline.port}/stream.mjpg", arrivals, stop_client),
        daemon=True,
    )
    client.start()
    idle_fps = min_fps = args.min_fps
    stop_hog = multiprocessing.Event()
    hogs = [multiprocessing.Process(target=burn, args=(stop_hog,), daemon=True) for _ in range(args.hogs)]
    timeline = []
    t0, t0_wall = time.monotonic(), time.time()
    load_on, load_off = args.idle, args.idle + args.load
    total = args.idle + args.load + args.recover
    try:
        for second in range(total + 1):
            while time.monotonic() - t0 < second:
                time.sleep(0.02)
            if second == load_on:
                if not args.min_fps:  # calibrate on the big model's rate measured in the idle phase
                    # the inference-limited rate the ladder judges (busy time), not the camera-bound frame rate
                    idle_fps = statistics.median(p["ladder_rate_fps"] or 0.0 for p in timeline[5:])
                    min_fps = round(args.min_fps_fraction * idle_fps, 2)
                    controller = pipeline.switcher.controller
                    controller.settings = dataclasses.replace(controller.settings, min_fps=min_fps)
                for h in hogs:
                    h.start()
            if second == load_off:
                stop_hog.set()
            s = pipeline.status()
            timeline.append(
                {
                    "t": second,
                    "load": load_on <= second < load_off,
                    "model": s["detector"]["model"],
                    "position": s["ladder"]["position"],
                    "inference_fps": s["inference"]["fps"],
                    "ladder_rate_fps": s["ladder"]["rate_fps"],
                    "cpu_contention": s["ladder"]["cpu_contention"],
                    "stream_fps": s["stream"]["fps"],
                    "camera_fps": s["source"]["fps"],
                }
            )
        switches = [
            {**s, "at_s": round(s["time"] - t0_wall, 2)} for s in pipeline.status()["ladder"]["switches"]
        ]
    finally:
        stop_hog.set()
        for h in hogs:
            if h.pid:
                h.join(5)
        stop_client.set()
        pipeline.stop()
    return summarize(timeline, switches, arrivals, t0, load_on, load_off, min_fps, idle_fps, args)


def summarize(timeline, switches, arrivals, t0, load_on, load_off, min_fps, idle_fps, args) -> dict:
    # Precise times from the switch records and the stream's own frames (the per-second samples lag).
    down = next((s["at_s"] for s in switches if s["at_s"] >= load_on and s["to"] == SMALL), None)
    up = next((s["at_s"] for s in switches if s["at_s"] >= load_off and s["to"] == BIG), None)
    offsets = [a - t0 for a in arrivals]
    # Recovered: the first sample after the step down where the rate the ladder judges (what inference can do,
    # from its busy time) is back at min_fps or above. (The stream runs at the camera's rate once inference is
    # faster than the camera, so the stream's own rate cannot tell.)
    recovered = None
    if down is not None:
        recovered = next(
            (p["t"] for p in timeline if p["t"] >= down and (p["ladder_rate_fps"] or 0.0) >= min_fps), None
        )
    before_switch = [
        p["ladder_rate_fps"]
        for p in timeline
        if load_on + 1 <= p["t"] < (down or load_off) and p["ladder_rate_fps"]
    ]
    under_load = statistics.median(before_switch) / min_fps if before_switch and min_fps else None
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    median_gap = statistics.median(gaps) if gaps else 0.0
    # The stream runs at the inference rate, so "a frame interval" is the interval of the moment: the big
    # model under load sends a frame every ~0.5 s, and the first frame after a step up takes one interval
    # of the big model. Each gap is compared with the median interval of the 10 before or the 10 after,
    # whichever is longer.
    local = [
        (
            gaps[i] / max(statistics.median(gaps[i - 10 : i]), statistics.median(gaps[i + 1 : i + 11])),
            arrivals[i + 1] - t0,
        )
        for i in range(10, len(gaps) - 10)
    ]
    worst_ratio, worst_at = max(local, default=(0.0, 0.0))
    # The swap's own cost: gaps ending within 1.5 s after a switch (the frame that spans it and the next).
    swap_times = [s["at_s"] for s in switches]
    at_swaps = [(r, at) for r, at in local if any(0 <= at - s <= 1.5 for s in swap_times)]
    worst_swap_ratio, worst_swap_at = max(at_swaps, default=(0.0, 0.0))
    near_swaps = [
        g for a, g in zip(offsets[1:], gaps, strict=False) if any(abs(a - s) < 2 for s in swap_times)
    ]
    return {
        "benchmark": "ladder",
        "video": args.video,
        "ladder": [BIG, SMALL],
        "big_model_idle_fps": round(idle_fps, 2),
        "min_fps": min_fps,
        "phases_s": {
            "idle": args.idle,
            "load": args.load,
            "recover": args.recover,
            "hog_processes": args.hogs,
        },
        "rate_under_load_over_min_fps": None if under_load is None else round(under_load, 2),
        "time_to_step_down_s": None if down is None else round(down - load_on, 2),
        "time_to_recover_s": None if recovered is None else round(recovered - load_on, 2),
        "time_back_up_s": None if up is None else round(up - load_off, 2),
        "switches": switches,
        "switch_count": len(switches),
        "stream_parts": len(arrivals),
        "stream_median_interval_s": round(median_gap, 3),
        "stream_max_gap_s": round(max(gaps), 3) if gaps else None,
        "stream_max_gap_near_swaps_s": round(max(near_swaps), 3) if near_swaps else None,
        "stream_max_gap_in_local_intervals": round(worst_ratio, 2),
        "stream_max_gap_in_local_intervals_at_s": round(worst_at, 1),
        "stream_max_gap_at_swaps_in_local_intervals": round(worst_swap_ratio, 2),
        "stream_max_gap_at_swaps_at_s": round(worst_swap_at, 1),
        "timeline": timeline,
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [p["t"] for p in result["timeline"]]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot(t, [p["inference_fps"] for p in result["timeline"]], label="inference fps")
    ax.plot(t, [p["stream_fps"] for p in result["timeline"]], label="stream fps", alpha=0.7)
    ax.axhline(result["min_fps"], color="red", linestyle="--", label=f"min_fps {result['min_fps']}")
    ax.plot(
        t, [p["cpu_contention"] or float("nan") for p in result["timeline"]], ":", label="CPU contention ×"
    )
    load = [p["t"] for p in result["timeline"] if p["load"]]
    if load:
        ax.axvspan(min(load), max(load) + 1, color="grey", alpha=0.2, label="CPU hog")
    ax2 = ax.twinx()
    ax2.step(t, [p["position"] for p in result["timeline"]], where="post", color="black", label="rung")
    ax2.set_yticks([0, 1], [BIG, SMALL])
    ax2.set_ylim(1.5, -0.5)
    ax.set_xlabel("seconds")
    ax.set_ylabel("frames per second")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("edgecam model ladder under a CPU load step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--idle", type=int, default=20)
    parser.add_argument("--load", type=int, default=30)
    parser.add_argument("--recover", type=int, default=30)
    parser.add_argument(
        "--hogs", type=int, default=4, help="busy processes during the load step (2 cores here)"
    )
    parser.add_argument("--min-fps", type=float, help="default: a fraction of the big model's idle rate")
    parser.add_argument(
        "--min-fps-fraction",
        type=float,
        default=0.6,
        help="min_fps = this × the big model's rate in the idle phase (its rate under 4 hogs is ≈ 0.45×)",
    )
    parser.add_argument("--video", default="vtest.avi")
    parser.add_argument("--model-dir", default=str(REPO.parent / "shared" / "models"))
    parser.add_argument("--media-dir", default=str(REPO.parent / "shared" / "media"))
    parser.add_argument("--out", default=str(REPO / "bench" / "out" / "ladder"))
    parser.add_argument("--json", action="store_true", help="print only JSON")
    args = parser.parse_args()
    result = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    try:
        plot(result, out.with_suffix(".png"))
    except ImportError:
        print("(no plot: matplotlib is not installed; pip install 'edgecam[bench]')", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
        return
    print(f"big model idle {result['big_model_idle_fps']} fps; min_fps {result['min_fps']}")
    print(f"{'time to step down after the load step':48} {result['time_to_step_down_s']} s")
    print(
        f"{'time to recover the target after the load step':48} {result['time_to_recover_s']} s   (goal ≤ 5 s)"
    )
    print(f"{'time back up after the load':48} {result['time_back_up_s']} s   (goal ≤ 30 s)")
    print(f"{'switches':48} {result['switch_count']}   (goal ≤ 1 per cooldown of 10 s)")
    gap, median = result["stream_max_gap_s"], result["stream_median_interval_s"]
    print(f"{'stream: longest gap / median interval':48} {gap} s / {median} s")
    print(
        f"{'stream: longest gap in intervals of the moment':48} "
        f"{result['stream_max_gap_in_local_intervals']} at {result['stream_max_gap_in_local_intervals_at_s']} s"
    )
    print(
        f"{'stream: longest gap across a swap, in intervals':48} "
        f"{result['stream_max_gap_at_swaps_in_local_intervals']} at {result['stream_max_gap_at_swaps_at_s']} s"
        "   (goal ≤ 2)"
    )
    print(f"{'stream: longest gap within 2 s of a swap':48} {result['stream_max_gap_near_swaps_s']} s")
    for s in result["switches"]:
        print(f"  switch {s['from']} → {s['to']}: {s['reason']}")
    print(f"JSON {out.with_suffix('.json')}, plot {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()

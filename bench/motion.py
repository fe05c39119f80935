"""Motion gating benchmark (issue #15): what it saves on a still scene, what it costs on a busy one.

    still   a still scene at camera rate: one real frame of vtest.avi written FPS times a second for 60 s
            to an MJPG .avi in a temp dir, played in realtime (15 fps) by the real Pipeline with the shipped
            config.yaml (model ladder auto, detector threads as shipped; no stream client, so no JPEG work),
            motion.enabled on vs off: process CPU seconds over the same window. Goal: on <= 0.3 x off.
    busy    vtest.avi in lockstep (realtime: false: every frame processed, none dropped), the first N frames,
            motion on vs off: person track-frames (sum over output frames of the person tracks they carry).
            Goal: on >= 0.98 x off.

Each run is a fresh child process. Prints a table and the JSON.

    python bench/motion.py
    python bench/motion.py --seconds 20 --frames 600 --out bench/out/motion.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FPS = 15.0
GOAL_STILL_CPU = 0.3
GOAL_BUSY_TRACKS = 0.98


def make_still_video(media_dir: Path, out: Path, seconds: float) -> Path:
    from edgecam.vision import cv2

    cap = cv2.VideoCapture(str(media_dir / "vtest.avi"))
    for _ in range(100):  # a frame with several people in it
        ok, image = cap.read()
    cap.release()
    if not ok:
        raise RuntimeError("vtest.avi: no frame")
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (image.shape[1], image.shape[0]))
    for _ in range(int(FPS * seconds)):
        writer.write(image)
    writer.release()
    return out


def config(args: argparse.Namespace, motion: bool, realtime: bool, workdir: str) -> Any:
    """The shipped config.yaml; the source, motion.enabled, realtime, logging and recording.dir changed."""
    import yaml

    from edgecam.config import LoadedConfig, parse_config

    data = yaml.safe_load((REPO / "config.yaml").read_text())
    data["camera"].update({"source": args.video, "fps": 0, "realtime": realtime})
    data["detector"]["model_dir"] = str(REPO / "models")
    data.setdefault("motion", {})["enabled"] = motion
    data.setdefault("logging", {})["level"] = "WARNING"
    data.setdefault("recording", {})["dir"] = workdir
    return LoadedConfig(parse_config(yaml.safe_dump(data), "bench-motion.yaml"), REPO / "config.yaml")


def pipeline(args: argparse.Namespace, motion: bool, realtime: bool, workdir: str) -> Any:
    from edgecam.app.pipeline import Overrides, Pipeline

    loaded = config(args, motion, realtime, workdir)
    models = [args.model] if args.model else None
    overrides = Overrides(port=0, bind="127.0.0.1", model_dir=Path(args.model_dir), models=models)
    p = Pipeline(loaded, overrides)
    p.watcher = None  # never reload: the config is the bench's
    return p


def phase_still(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="edgecam-motion-") as workdir:
        p = pipeline(args, args.motion == "on", True, workdir)
        p.start()
        try:
            time.sleep(args.warmup)
            inf = p.inference
            f0, d0, c0, t0 = inf.frames, inf.detected, time.process_time(), time.perf_counter()
            time.sleep(args.seconds)
            f1, d1, c1, t1 = inf.frames, inf.detected, time.process_time(), time.perf_counter()
            status = p.status()
        finally:
            p.stop()
    elapsed = t1 - t0
    return {
        "motion": args.motion,
        "model": status["detector"]["model"],
        "threads": status["detector"]["threads"],
        "seconds": round(elapsed, 2),
        "output_fps": round((f1 - f0) / elapsed, 2),
        "detected_fps": round((d1 - d0) / elapsed, 3),
        "cpu_s": round(c1 - c0, 3),
        "cpu_percent": round(100 * (c1 - c0) / elapsed, 2),
        "motion_status": status["motion"],
    }


def phase_busy(args: argparse.Namespace) -> dict[str, Any]:
    done = threading.Event()
    per_frame: dict[int, int] = {}
    ids: set[int] = set()
    with tempfile.TemporaryDirectory(prefix="edgecam-motion-") as workdir:
        p = pipeline(args, args.motion == "on", False, workdir)
        forward = p.chain.inference.on_output

        def count(output: Any, events: Any) -> None:
            seq = output.frame.sequence
            if seq <= args.frames:
                people = [t.id for t in output.tracks if t.label == "person"]
                per_frame[seq] = len(people)
                ids.update(people)
            elif not done.is_set():
                done.set()
            if forward is not None:
                forward(output, events)

        p.chain.inference.on_output = count
        p.start()
        try:
            started = time.perf_counter()
            if not done.wait(args.frames / 5 + 60):
                raise RuntimeError(f"only {len(per_frame)} of {args.frames} frames came out")
            elapsed = time.perf_counter() - started
            status = p.status()
        finally:
            p.stop()
    return {
        "motion": args.motion,
        "model": status["detector"]["model"],
        "frames": len(per_frame),
        "missing_frames": args.frames - len(per_frame),
        "person_track_frames": sum(per_frame.values()),
        "person_track_ids": len(ids),
        "detected_frames": status["inference"]["detected"],
        "skipped_frames": status["motion"]["skipped_frames"],
        "seconds": round(elapsed, 2),
    }


def run(args: argparse.Namespace, phase: str, motion: str, video: Path) -> dict[str, Any]:
    cmd = [
        sys.executable, __file__, "--phase", phase, "--motion", motion, "--video", str(video),
        "--seconds", str(args.seconds), "--warmup", str(args.warmup), "--frames", str(args.frames),
        "--model-dir", args.model_dir, *(["--model", args.model] if args.model else []),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.seconds + args.frames + 300)
    if proc.returncode != 0:
        return {"error": "\n".join(proc.stderr.strip().splitlines()[-6:])}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window of the still runs")
    parser.add_argument(
        "--warmup", type=float, default=8.0, help="before the window (model load, first tracks)"
    )
    parser.add_argument("--frames", type=int, default=700, help="vtest.avi frames counted in the busy runs")
    parser.add_argument("--model", help="one model id instead of the shipped ladder (auto)")
    parser.add_argument("--model-dir", default=str(SHARED / "models"))
    parser.add_argument("--media-dir", default=str(SHARED / "media"))
    parser.add_argument("--out", help="also write the JSON here")
    parser.add_argument("--phase", choices=("still", "busy"), help=argparse.SUPPRESS)
    parser.add_argument("--motion", choices=("on", "off"), default="on", help=argparse.SUPPRESS)
    parser.add_argument("--video", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:
        print(json.dumps((phase_still if args.phase == "still" else phase_busy)(args)), flush=True)
        return 0
    media = Path(args.media_dir)
    results: dict[str, Any] = {
        "benchmark": "bench/motion.py",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "cpus": os.cpu_count(),
        "fps": FPS,
    }
    with tempfile.TemporaryDirectory(prefix="edgecam-still-") as tmp:
        still = make_still_video(media, Path(tmp) / "still_vtest.avi", 60.0)
        results["still_video"] = (
            "frame 100 of vtest.avi repeated at 15 fps for 60 s (MJPG .avi in a temp dir)"
        )
        for motion in ("off", "on"):
            print(f"still scene, motion {motion} ...", file=sys.stderr, flush=True)
            results[f"still_{motion}"] = run(args, "still", motion, still)
    for motion in ("off", "on"):
        print(f"busy scene, motion {motion} ...", file=sys.stderr, flush=True)
        results[f"busy_{motion}"] = run(args, "busy", motion, media / "vtest.avi")
    cpu = ratio(results["still_on"].get("cpu_s"), results["still_off"].get("cpu_s"))
    tracks = ratio(
        results["busy_on"].get("person_track_frames"), results["busy_off"].get("person_track_frames")
    )
    results["still_cpu_ratio"] = cpu
    results["busy_person_track_frame_ratio"] = tracks
    text = json.dumps(results, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    so, sn, bo, bn = (results[k] for k in ("still_off", "still_on", "busy_off", "busy_on"))

    def cell(d: dict[str, Any], key: str) -> str:
        return str(d.get(key, d.get("error", "-")))

    rows = [
        ("", "motion off", "motion on", "on / off", "goal"),
        ("still: process CPU %", cell(so, "cpu_percent"), cell(sn, "cpu_percent"), str(cpu),
         f"<= {GOAL_STILL_CPU} {'PASS' if cpu is not None and cpu <= GOAL_STILL_CPU else 'FAIL'}"),
        ("still: output fps", cell(so, "output_fps"), cell(sn, "output_fps"), "", ""),
        ("still: detector runs/s", cell(so, "detected_fps"), cell(sn, "detected_fps"), "", ""),
        ("busy: person track-frames", cell(bo, "person_track_frames"), cell(bn, "person_track_frames"), str(tracks),
         f">= {GOAL_BUSY_TRACKS} {'PASS' if tracks is not None and tracks >= GOAL_BUSY_TRACKS else 'FAIL'}"),
        ("busy: person track ids", cell(bo, "person_track_ids"), cell(bn, "person_track_ids"), "", ""),
        ("busy: frames skipped", cell(bo, "skipped_frames"), cell(bn, "skipped_frames"), "", ""),
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in rows) + 2 for i in range(5)]
    for r in rows:
        print("".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print(f"model: {so.get('model')} (threads {so.get('threads')}); busy runs: {bo.get('model')}")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

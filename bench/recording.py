"""What event recording costs: CPU per second of clip, bytes per minute, pre-roll RAM, for the clip recorder's
design (a continuous H.264 encoder with an encoded pre-roll) and for the alternative it was weighed against
(a JPEG pre-roll, re-encoded to H.264 when an event starts).

Frames come from real videos scaled to the stream size (default 1280×720), with timestamps at the stream's
frame-rate cap; each frame is handed over and waited for, so nothing is dropped and CPU is what is measured
(process CPU time: the caller and the worker threads). Prints JSON, then a table.

    .venv/bin/python bench/recording.py [--seconds 20] [--fps 15] [--pre 5] [--size 1280x720] [--encoder auto]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from edgecam.events.clips import ClipRecorder
from edgecam.vision import cv2

REPO = Path(__file__).resolve().parent.parent
VIDEOS = ("vtest.avi", "crowd_overhead_720p.avi")


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load(path: Path, size: tuple[int, int], count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < count:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(cv2.resize(image, size, interpolation=cv2.INTER_LINEAR))
    capture.release()
    if not frames:
        raise SystemExit(f"cannot read {path}")
    return frames


def run_recorder(frames, args, seconds: float, event: bool) -> dict:
    """Push ``seconds`` of frames; with ``event``, one event covers all of it (so it is all one clip)."""
    clips: list[tuple[int, Path, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        rec = ClipRecorder(
            Path(tmp), pre_s=args.pre, post_s=0.0, fps=args.fps, encoder=args.encoder, crf=args.crf,
            threads=args.threads, on_clip=lambda *a: clips.append(a),
        )  # fmt: skip
        rec.start()
        t0 = time.monotonic()
        n = round(seconds * args.fps)
        rec.push(frames[0], t0 - 1 / args.fps)  # open the encoder outside the measurement
        rec.wait_idle()
        began_cpu, began_wall = cpu(), time.perf_counter()
        if event:
            rec.event_started(1, t0)
        for i in range(n):
            rec.push(frames[i % len(frames)], t0 + i / args.fps)
            rec.wait_idle()
        preroll = rec.status()["preroll_bytes"]
        if event:
            rec.event_ended(1, t0 + (n - 1) / args.fps)
        rec.stop()
        used_cpu, used_wall = cpu() - began_cpu, time.perf_counter() - began_wall
        status = rec.status()
        clip_bytes = clips[0][2] if clips else 0
    return {
        "frames": n,
        "cpu_s": round(used_cpu, 3),
        "cpu_s_per_s": round(used_cpu / seconds, 4),
        "ms_per_frame": round(used_cpu / n * 1000, 2),
        "wall_s": round(used_wall, 2),
        "clip_bytes": clip_bytes,
        "bytes_per_min": round(clip_bytes / seconds * 60) if clip_bytes else None,
        "preroll_bytes": preroll,
        "encoder": status["encoder"],
        "dropped": status["dropped"],
    }


def run_jpeg_alternative(frames, args) -> dict:
    """The JPEG pre-roll: a JPEG per frame all the time, then at event start decode + H.264-encode the
    whole pre-roll (a burst), then H.264 per frame during the event (as above)."""
    quality = [cv2.IMWRITE_JPEG_QUALITY, 80]
    n = round(args.seconds * args.fps)
    began = cpu()
    jpegs = [cv2.imencode(".jpg", frames[i % len(frames)], quality)[1].tobytes() for i in range(n)]
    idle_cpu = cpu() - began
    preroll = jpegs[-round(args.pre * args.fps) :]
    began = cpu()
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height = frames[0].shape[1], frames[0].shape[0]
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = Fraction(1, 1000)
    encoder.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "crf": str(args.crf),
        "threads": str(args.threads),
    }
    for i, data in enumerate(preroll):
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        frame = av.VideoFrame.from_ndarray(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), format="yuv420p")
        frame.pts = round(i * 1000 / args.fps)
        encoder.encode(frame)
    encoder.encode(None)
    burst_cpu = cpu() - began
    return {
        "idle_cpu_s_per_s": round(idle_cpu / args.seconds, 4),
        "jpeg_ms_per_frame": round(idle_cpu / n * 1000, 2),
        "preroll_bytes": sum(len(j) for j in preroll),
        "event_start_burst_cpu_s": round(burst_cpu, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--media-dir", default=os.environ.get("EDGECAM_MEDIA_DIR") or REPO.parent / "shared" / "media"
    )
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--fps", type=float, default=15.0, help="the stream's frame-rate cap")
    parser.add_argument("--pre", type=float, default=5.0, help="recording.pre_s")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of clip per measurement")
    parser.add_argument("--encoder", default="auto")
    parser.add_argument("--crf", type=int, default=23)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))

    results = []
    for name in VIDEOS:
        path = Path(args.media_dir) / name
        if not path.is_file():
            print(f"skipping {name}: not in {args.media_dir}", file=sys.stderr)
            continue
        frames = load(path, (width, height), 45)
        results.append(
            {
                "video": name,
                "size": f"{width}x{height}",
                "h264_continuous": {
                    "recording": run_recorder(frames, args, args.seconds, event=True),
                    "idle": run_recorder(frames, args, args.seconds, event=False),
                },
                "jpeg_preroll_alternative": run_jpeg_alternative(frames, args),
            }
        )
    report = {
        "fps": args.fps,
        "pre_s": args.pre,
        "seconds": args.seconds,
        "crf": args.crf,
        "threads": args.threads,
        "pyav": av.__version__,
        "ffmpeg": {
            k: ".".join(map(str, v))
            for k, v in av.library_versions.items()
            if k in ("libavcodec", "libavformat")
        },
        "ffprobe": shutil.which("ffprobe") is not None,
        "cpus": os.cpu_count(),
        "results": results,
    }
    print(json.dumps(report, indent=2))
    if args.json_only:
        return 0
    print()
    print(f"{'video':<26}{'encoder':<14}{'rec cpu s/s':>12}{'idle cpu s/s':>13}{'MB/min':>8}{'pre-roll MB':>12}"
          f"{'jpeg idle s/s':>14}{'jpeg pre MB':>12}{'jpeg burst s':>13}")  # fmt: skip
    for r in results:
        rec, idle, alt = (
            r["h264_continuous"]["recording"],
            r["h264_continuous"]["idle"],
            r["jpeg_preroll_alternative"],
        )
        print(
            f"{r['video']:<26}{rec['encoder']:<14}{rec['cpu_s_per_s']:>12.3f}{idle['cpu_s_per_s']:>13.3f}"
            f"{(rec['bytes_per_min'] or 0) / 1e6:>8.1f}{rec['preroll_bytes'] / 1e6:>12.2f}"
            f"{alt['idle_cpu_s_per_s']:>14.3f}{alt['preroll_bytes'] / 1e6:>12.2f}{alt['event_start_burst_cpu_s']:>13.3f}"
        )
    print(
        f"(PyAV {av.__version__}, libavcodec {report['ffmpeg'].get('libavcodec')}, {args.fps:g} fps, pre {args.pre:g} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The `edgecam` command: run, detect, check-config, models, password, doctor, bench."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from edgecam import __version__

log = logging.getLogger("edgecam")

DEFAULT_CONFIG_PATHS = (Path("config.yaml"), Path("/etc/edgecam/config.yaml"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except _user_errors() as exc:  # a message the user can act on, never a traceback
        return _fail(str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc))


def _user_errors() -> tuple[type[BaseException], ...]:
    from edgecam.config import ConfigError
    from edgecam.detect.runtime import EdgeTpuUnavailableError, RuntimeMissingError
    from edgecam.detect.store import ChecksumMismatchError, FetchError, ModelMissingError

    return (ConfigError, EdgeTpuUnavailableError, RuntimeMissingError, ChecksumMismatchError, FetchError,
            ModelMissingError, KeyError, ValueError, ImportError, OSError)  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgecam", description="Detect, track and stream objects from a camera."
    )
    parser.add_argument("--version", action="version", version=f"edgecam {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(title="commands")

    p = sub.add_parser("run", help="run the live pipeline and serve the stream")
    p.add_argument(
        "--config", type=Path, help="config file (default: ./config.yaml, else /etc/edgecam/config.yaml)"
    )
    p.add_argument("--source", help="override camera.source (file, URL, /dev/videoN, picamera2, testpattern)")
    p.add_argument("--port", type=int, help="override stream.port (0 = any free port)")
    p.add_argument("--bind", help="override stream.bind")
    p.add_argument("--model-dir", type=Path)
    p.add_argument("--model", help="one id pins the model; a comma list sets the ladder")
    p.add_argument("--threads", type=int, help="override detector.threads")
    p.add_argument("--no-realtime", action="store_true", help="play a file source as fast as it is used")
    p.set_defaults(handler=_cmd_run)

    p = sub.add_parser("detect", help="run the detector on images")
    p.add_argument("images", nargs="+", type=Path)
    p.add_argument(
        "--model", default="ssd_mobilenet_v1_coco", help="manifest model id (default: %(default)s)"
    )
    p.add_argument("--model-dir", help="model directory (default: $EDGECAM_MODEL_DIR, else the config's)")
    p.add_argument("--config", type=Path, help="config file for the model directory and threads")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--classes", help="comma-separated labels to report (default: all)")
    p.add_argument("--threads", type=int)
    p.add_argument("--json", action="store_true", help="one JSON object per image per line")
    p.add_argument(
        "--out", type=Path, help="write an annotated copy (a folder when several images are given)"
    )
    p.set_defaults(handler=_cmd_detect)

    p = sub.add_parser("check-config", help="validate a config file")
    p.add_argument("file", nargs="?", type=Path)
    p.set_defaults(handler=_cmd_check_config)

    models = sub.add_parser("models", help="list, verify and fetch models")
    msub = models.add_subparsers(title="models commands", required=True)
    for name, handler, text in (
        ("list", _cmd_models_list, "models and assets with their status and licence"),
        ("verify", _cmd_models_verify, "check every present file's checksum (exit 1 on a mismatch)"),
        ("fetch", _cmd_models_fetch, "download (or import with --from) and verify"),
    ):
        p = msub.add_parser(name, help=text)
        p.add_argument("--model-dir", help="model directory (default: $EDGECAM_MODEL_DIR, else the config's)")
        p.add_argument("--config", type=Path)
        if name == "fetch":
            p.add_argument(
                "ids", nargs="*", help="model or asset ids (default: the CPU models, labels and sample video)"
            )
            p.add_argument(
                "--from", dest="local_dirs", type=Path, action="append",
                help="import from a local folder instead of downloading (repeatable)",
            )  # fmt: skip
        p.set_defaults(handler=handler)

    pw = sub.add_parser("password", help="set the stream password (stored as a salted hash)")
    pwsub = pw.add_subparsers(title="password commands", required=True)
    p = pwsub.add_parser("set", help="read a password from stdin (or generate one) and write its hash")
    p.add_argument("--file", type=Path, required=True, help="where to write the hash, e.g. /etc/edgecam/auth")
    p.add_argument("--generate", action="store_true", help="generate a password and print it once")
    p.set_defaults(handler=_cmd_password_set)

    p = sub.add_parser(
        "doctor", help="check this box (OS, runtime, camera, Coral, models, config, service, power)"
    )
    p.add_argument(
        "--config", type=Path, help="config file (default: ./config.yaml, else /etc/edgecam/config.yaml)"
    )
    p.add_argument("--model-dir", type=Path, help="model directory (default: the config's)")
    p.set_defaults(handler=_cmd_doctor)

    bench = sub.add_parser("bench", help="measure what things cost on this machine")
    bsub = bench.add_subparsers(title="benchmarks", required=True)
    p = bsub.add_parser("detector", help="invoke latency and FPS per model and thread count")
    p.add_argument("--model", default="ssd_mobilenet_v1_coco,ssdlite_mobilenet_v2_a050_coco")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--model-dir")
    p.add_argument("--config", type=Path)
    p.add_argument("--video", type=Path, help="frames to use (default: the manifest's sample video)")
    p.add_argument("--frames", type=int, default=40, help="timed invokes per model and thread count")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--json", action="store_true", help="print only JSON")
    p.set_defaults(handler=_cmd_bench_detector)
    return parser


# ---- shared helpers -----------------------------------------------------------------------------------------


def _loaded_config(path: Path | None):  # -> LoadedConfig, imported lazily to keep `--help` fast
    from edgecam.config import load_config

    if path is None:
        path = next((p for p in DEFAULT_CONFIG_PATHS if p.is_file()), None)
    return load_config(path)


def _model_dir(args: argparse.Namespace) -> Path:
    from edgecam.detect.store import resolve_model_dir

    flag = getattr(args, "model_dir", None)
    if flag:
        return resolve_model_dir(flag)
    loaded = _loaded_config(getattr(args, "config", None))
    return resolve_model_dir(None, loaded.resolve(loaded.config.detector.model_dir))


def _fail(message: str) -> int:
    print(f"edgecam: {message}", file=sys.stderr)
    return 1


# ---- commands -----------------------------------------------------------------------------------------------


def _cmd_check_config(args: argparse.Namespace) -> int:
    from edgecam.config import ConfigError, load_config

    path = args.file or next((p for p in DEFAULT_CONFIG_PATHS if p.is_file()), None)
    if path is None:
        return _fail("no config file given and none found at " + ", ".join(map(str, DEFAULT_CONFIG_PATHS)))
    try:
        loaded = load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        print(f"{path}: {len(exc.issues)} error(s); the file was not changed", file=sys.stderr)
        return 1
    c = loaded.config
    ladder = c.detector.ladder if isinstance(c.detector.ladder, str) else " → ".join(c.detector.ladder)
    classes = ", ".join(c.detector.classes) or "all"
    print(f"{path}: ok")
    print(f"  camera   {c.camera.source} {c.camera.width}x{c.camera.height} @ {c.camera.fps:g} fps")
    print(f"  detector ladder {ladder}; threshold {c.detector.threshold:g}; classes {classes}")
    print(f"  models   {loaded.resolve(c.detector.model_dir)}")
    print(
        f"  stream   http://{c.stream.bind}:{c.stream.port}/ at ≤ {c.stream.fps:g} fps, quality {c.stream.quality}"
    )
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    import signal
    import threading

    from edgecam.pipeline import Overrides, Pipeline
    from edgecam.service import run_service

    loaded = _loaded_config(args.config)
    logging.getLogger().setLevel(loaded.config.logging.level if not args.verbose else logging.DEBUG)
    if loaded.path is None:
        log.info("no config file found (%s): using the defaults", ", ".join(map(str, DEFAULT_CONFIG_PATHS)))
    overrides = Overrides(
        source=args.source,
        port=args.port,
        bind=args.bind,
        model_dir=args.model_dir,
        models=[m.strip() for m in args.model.split(",") if m.strip()] if args.model else None,
        threads=args.threads,
        realtime=False if args.no_realtime else None,
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # until run_service takes the signals over
        signal.signal(signum, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # no reload (and no death by SIGHUP) while starting
    pipeline = Pipeline(loaded, overrides)
    pipeline.start()
    for url in pipeline.urls():
        log.info("open %s", url)
    try:
        # systemd: READY=1 now that it serves, WATCHDOG=1 while every stage is alive, SIGHUP → pipeline.reload()
        # The in-app watchdog restarts a stage stuck for watchdog_s; systemd's pings stop when it gives up,
        # or if a stage is still stuck at twice that.
        run_service(pipeline, stop, watchdog_s=2 * loaded.config.service.watchdog_s)
    finally:
        log.info("stopping…")
        pipeline.stop()
    return 0


def _cmd_detect(args: argparse.Namespace) -> int:
    from edgecam.detect import DetectionFilter, load_detector
    from edgecam.overlay import draw_detections
    from edgecam.vision import cv2

    loaded = _loaded_config(args.config)
    classes = frozenset(c.strip() for c in args.classes.split(",")) if args.classes else frozenset()
    detector = load_detector(
        args.model,
        _model_dir(args),
        threads=args.threads or loaded.config.detector.threads,
        detection_filter=DetectionFilter(classes=classes, threshold=args.threshold),
    )
    failed = 0
    for image_path in args.images:
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR) if image_path.is_file() else None
        if image is None:
            print(
                f"edgecam: {image_path}: cannot read this image (missing, or not an image format OpenCV reads)",
                file=sys.stderr,
            )
            failed += 1
            continue
        detections = detector.detect(image)
        if args.json:
            print(
                json.dumps(
                    {
                        "image": str(image_path),
                        "model": args.model,
                        "detections": [d.to_dict() for d in detections],
                    }
                )
            )
        else:
            print(f"{image_path}: {len(detections)} object(s) ({detector.last_timing.invoke_ms:.0f} ms)")
            for d in detections:
                x1, y1, x2, y2 = d.box
                print(f"  {d.label:<14} {d.score:.2f}  [{x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f}]")
        if args.out:
            target = args.out / image_path.name if len(args.images) > 1 or args.out.is_dir() else args.out
            target.parent.mkdir(parents=True, exist_ok=True)
            draw_detections(image, detections)
            if not cv2.imwrite(str(target), image):
                print(f"edgecam: {target}: could not write the annotated image", file=sys.stderr)
                failed += 1
    return 1 if failed else 0


def _cmd_models_list(args: argparse.Namespace) -> int:
    from edgecam.detect.manifest import load_manifest
    from edgecam.detect.store import check

    model_dir, manifest = _model_dir(args), load_manifest()
    print(f"model directory: {model_dir}")
    print(f"{'id':34} {'kind':8} {'status':18} licence")
    for file_id in manifest.ids():
        kind = (
            "edgetpu"
            if file_id in manifest.models and manifest.models[file_id].edgetpu
            else ("model" if file_id in manifest.models else manifest.assets[file_id].kind)
        )
        status = check(model_dir, manifest, file_id).status.value
        print(f"{file_id:34} {kind:8} {status:18} {manifest.entry(file_id).licence}")
    return 0


def _cmd_models_verify(args: argparse.Namespace) -> int:
    from edgecam.detect.manifest import load_manifest
    from edgecam.detect.store import Status, check

    model_dir, manifest = _model_dir(args), load_manifest()
    mismatches = 0
    for file_id in manifest.ids():
        result = check(model_dir, manifest, file_id)
        detail = f" ({result.detail})" if result.detail else ""
        print(f"{result.status.value:18} {file_id:34} {result.path}{detail}")
        mismatches += result.status is Status.MISMATCH
    if mismatches:
        return _fail(
            f"{mismatches} file(s) do not match the manifest; run `edgecam models fetch` to replace them"
        )
    return 0


DEFAULT_FETCH = ("ssd_mobilenet_v1_coco", "ssdlite_mobilenet_v2_a050_coco", "coco_labels", "sample_video")


def _cmd_models_fetch(args: argparse.Namespace) -> int:
    from edgecam.detect.manifest import load_manifest
    from edgecam.detect.store import FetchError, fetch, stderr_progress

    model_dir, manifest = _model_dir(args), load_manifest()
    ids = args.ids or list(DEFAULT_FETCH)
    try:
        for file_id in ids:
            manifest.entry(file_id)
    except KeyError as exc:
        return _fail(str(exc.args[0]))
    for file_id in ids:
        entry = manifest.entry(file_id)
        note = (
            " — the source states no licence: check it suits your use"
            if entry.licence == "none stated"
            else ""
        )
        print(f"{file_id}: licence {entry.licence}{note}")
    try:
        results = fetch(model_dir, manifest, ids, local_dirs=args.local_dirs, progress=stderr_progress())
    except FetchError as exc:
        return _fail(f"fetch failed: {exc}")
    for result in results:
        print(f"{result.status.value:18} {result.file_id:34} {result.path}")
    return 0


def _cmd_password_set(args: argparse.Namespace) -> int:
    import getpass

    from edgecam.auth import generate_password, write_password_file

    if args.generate:
        password = generate_password()
    elif sys.stdin.isatty():
        password = getpass.getpass("new stream password: ")
        if getpass.getpass("again: ") != password:
            return _fail("the passwords differ; nothing written")
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        return _fail("a stream password needs at least 8 characters; nothing written")
    write_password_file(args.file, password)
    if args.generate:
        print(password)
    print(f"password hash written to {args.file}", file=sys.stderr)
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from edgecam.doctor import run_doctor

    path = args.config or next((p for p in DEFAULT_CONFIG_PATHS if p.is_file()), None)
    return run_doctor(path, args.model_dir)


def _cmd_bench_detector(args: argparse.Namespace) -> int:
    from edgecam.benchmark import bench_detector, format_table

    model_dir = _model_dir(args)
    models = [m.strip() for m in args.model.split(",") if m.strip()]
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    results = bench_detector(models, threads, model_dir, args.video, frames=args.frames, warmup=args.warmup)
    if not args.json:
        print(format_table(results))
    print(json.dumps({"benchmark": "detector", "results": results}, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

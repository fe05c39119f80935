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
DEFAULT_MODEL = "ssdlite_mobilenet_v2_coco"  # SSDLite MobileNetV2 α1.0: ships with edgecam (models/)


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
    from edgecam.ladder.switcher import LadderUnavailableError

    return (ConfigError, EdgeTpuUnavailableError, RuntimeMissingError, ChecksumMismatchError, FetchError,
            ModelMissingError, LadderUnavailableError, KeyError, ValueError, ImportError, OSError)  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgecam", description="Detect, track and stream objects from a camera."
    )
    parser.add_argument("--version", action="version", version=f"edgecam {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(title="commands")

    p = sub.add_parser(
        "run", help="run the live pipeline and serve the stream",
        epilog="example: edgecam run --source ../shared/media/vtest.avi --port 8081",
    )  # fmt: skip
    p.add_argument(
        "--config", type=Path, help="config file (default: ./config.yaml, else /etc/edgecam/config.yaml)"
    )
    p.add_argument("--source", help="override camera.source (file, URL, /dev/videoN, picamera2, testpattern)")
    p.add_argument("--port", type=int, help="override stream.port (0 = any free port)")
    p.add_argument("--bind", help="override stream.bind")
    p.add_argument(
        "--model-dir", type=Path, help="override detector.model_dir (the shipped model is always found)"
    )
    p.add_argument(
        "--model", help="one id pins the model; a comma list sets the ladder (see `edgecam models list`)"
    )
    p.add_argument("--threads", type=int, help="override detector.threads (CPU interpreter threads)")
    p.add_argument("--no-realtime", action="store_true", help="play a file source as fast as it is used")
    p.set_defaults(handler=_cmd_run)

    p = sub.add_parser(
        "detect", help="run the detector on images",
        epilog="example: edgecam detect cat.jpg --json; edgecam detect a.jpg b.jpg --classes person --out marked/",
    )  # fmt: skip
    p.add_argument("images", nargs="+", type=Path, help="image files (any format OpenCV reads)")
    p.add_argument(
        "--model", default=DEFAULT_MODEL, help="manifest model id (default: %(default)s, ships with edgecam)"
    )
    p.add_argument("--model-dir", help="model directory (default: $EDGECAM_MODEL_DIR, else the config's)")
    p.add_argument("--config", type=Path, help="config file for the model directory and threads")
    p.add_argument("--threshold", type=float, default=0.5, help="minimum score, 0-1 (default: %(default)s)")
    p.add_argument(
        "--classes", help="comma-separated labels to report (default: every class, whatever the config says)"
    )
    p.add_argument(
        "--threads", type=int, help="CPU interpreter threads (default: the config's detector.threads)"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per image per line")
    p.add_argument(
        "--out", type=Path, help="write an annotated copy (a folder when several images are given)"
    )
    p.set_defaults(handler=_cmd_detect)

    p = sub.add_parser(
        "check-config", help="validate a config file",
        epilog="example: edgecam check-config /etc/edgecam/config.yaml",
    )  # fmt: skip
    p.add_argument(
        "file", nargs="?", type=Path, help="the file (default: ./config.yaml, else /etc/edgecam/config.yaml)"
    )
    p.set_defaults(handler=_cmd_check_config)

    models = sub.add_parser("models", help="list, verify and fetch models")
    msub = models.add_subparsers(title="models commands", required=True)
    for name, handler, text in (
        (
            "list",
            _cmd_models_list,
            "models and assets: status, accuracy, cost, licence, and why auto skips one",
        ),
        (
            "verify",
            _cmd_models_verify,
            "check the checksum of the given ids (all when none; exit 1 on a mismatch)",
        ),
        ("fetch", _cmd_models_fetch, "download (or import with --from) and verify"),
    ):
        p = msub.add_parser(
            name, help=text, epilog=f"example: edgecam models {name} --model-dir /var/lib/edgecam/models"
        )
        p.add_argument("--model-dir", help="model directory (default: $EDGECAM_MODEL_DIR, else the config's)")
        p.add_argument("--config", type=Path, help="config file whose detector.model_dir to use")
        if name == "verify":
            p.add_argument("ids", nargs="*", help="model or asset ids (default: every one)")
        if name == "fetch":
            p.add_argument(
                "ids",
                nargs="*",
                help="model or asset ids (default: the optional CPU model, labels and sample video)",
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
    p = bsub.add_parser(
        "detector", help="invoke latency and FPS per model and thread count",
        epilog="example: edgecam bench detector --threads 1 --json > bench.json",
    )  # fmt: skip
    p.add_argument("--model", help="comma-separated model ids (default: the rungs of `ladder: auto`)")
    p.add_argument(
        "--threads", default="1", help="comma-separated interpreter thread counts (default: %(default)s)"
    )
    p.add_argument("--model-dir", help="model directory (default: $EDGECAM_MODEL_DIR, else the config's)")
    p.add_argument("--config", type=Path, help="config file whose detector.model_dir to use")
    p.add_argument("--video", type=Path, help="frames to use (default: the manifest's sample video)")
    p.add_argument("--frames", type=int, default=40, help="timed invokes per model and thread count")
    p.add_argument("--warmup", type=int, default=5, help="untimed invokes first (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
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
    print(f"  models   {loaded.resolve(c.detector.model_dir)} (and the model that ships with edgecam)")
    print(
        f"  stream   {_stream_url(c.stream.bind, c.stream.port)} at ≤ {c.stream.fps:g} fps, quality {c.stream.quality}"
    )
    mode = c.stream.auth_mode
    if mode == "none":
        print(
            "  access   no password: anyone who can reach the port sees the stream (set stream.password_file)"
        )
    else:
        file = loaded.resolve(c.stream.password_file or "")
        state = (
            "" if file.is_file() else f" — {file} does not exist yet: `edgecam password set --file {file}`"
        )
        print(f"  access   password required ({mode}, user '{c.stream.username}', hash in {file}){state}")
    r = c.recording
    clips = f"clips {r.pre_s:g} s before to {r.post_s:g} s after" if r.enabled else "no clips"
    print(
        f"  events   {loaded.resolve(r.dir)}: event list, {clips}, kept {r.retain_days:g} days / {r.max_gb:g} GB"
    )
    return 0


def _stream_url(bind: str, port: int) -> str:
    """The URL a person can open: a wildcard bind means every address of the box, so show this host's name."""
    import socket

    if bind in ("0.0.0.0", "::", ""):
        return f"http://{socket.gethostname()}:{port}/ (every address of this machine)"
    host = f"[{bind}]" if ":" in bind else bind
    return f"http://{host}:{port}/"


def _cmd_run(args: argparse.Namespace) -> int:
    import signal
    import threading

    # First thing: until run_service takes SIGHUP over (reload), it is ignored; its default would kill us.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # until run_service takes the signals over
        signal.signal(signum, lambda *_: stop.set())

    from edgecam.app.pipeline import Overrides, Pipeline
    from edgecam.app.systemd import run_service

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
    pipeline = Pipeline(loaded, overrides)
    pipeline.start()
    for url in pipeline.urls():
        log.info("open %s", url)
    try:
        # systemd: READY=1 now that it serves; the supervisor feeds systemd's watchdog while every stage is
        # alive (restarting a stuck one first); SIGHUP → pipeline.reload()
        run_service(pipeline, stop)
    finally:
        log.info("stopping…")
        pipeline.stop()
    return 0


def _cmd_detect(args: argparse.Namespace) -> int:
    from edgecam.detect import DetectionFilter, load_detector
    from edgecam.render.overlay import draw_detections
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
    from edgecam.detect.store import Status, check
    from edgecam.ladder.select import installed_models, why_not_auto

    model_dir, manifest = _model_dir(args), load_manifest()
    installed = installed_models(model_dir, manifest)
    print(f"model directory: {model_dir} (and edgecam's own models/)")
    print(f"{'id':32} {'kind':8} {'status':18} {'mAP@.5':>6} {'cost':>5}  licence; ladder: auto")
    for file_id in manifest.ids():
        result = check(model_dir, manifest, file_id)
        model = manifest.models.get(file_id)
        kind = ("edgetpu" if model.edgetpu else "model") if model else manifest.assets[file_id].kind
        accuracy = f"{model.accuracy.map50:.3f}" if model and model.accuracy else "-"
        cost = f"{model.cost:g}" if model else "-"
        status = result.status.value + (" (ships)" if manifest.entry(file_id).embedded else "")
        auto = ""
        if model is not None and result.status is Status.VERIFIED:
            same_kind = [m for m in installed if manifest.models[m].edgetpu == model.edgetpu]
            why = why_not_auto(file_id, same_kind, manifest)
            auto = f"; skipped: {why}" if why else "; used"
        print(
            f"{file_id:32} {kind:8} {status:18} {accuracy:>6} {cost:>5}  {manifest.entry(file_id).licence}{auto}"
        )
    return 0


def _cmd_models_verify(args: argparse.Namespace) -> int:
    from edgecam.detect.manifest import load_manifest
    from edgecam.detect.store import Status, check

    model_dir, manifest = _model_dir(args), load_manifest()
    ids = args.ids or manifest.ids()
    for file_id in ids:
        manifest.entry(file_id)  # an unknown id fails before anything is printed
    mismatches = missing = 0
    for file_id in ids:
        result = check(model_dir, manifest, file_id)
        detail = f" ({result.detail})" if result.detail else ""
        print(f"{result.status.value:18} {file_id:34} {result.path}{detail}")
        mismatches += result.status is Status.MISMATCH
        missing += bool(args.ids) and result.status is Status.MISSING
    if mismatches or missing:
        return _fail(
            f"{mismatches} file(s) do not match the manifest and {missing} asked for are missing; "
            "run `edgecam models fetch` to replace them"
        )
    return 0


DEFAULT_FETCH = ("ssdlite_mobilenet_v2_a050_coco", "coco_labels", "sample_video")


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

    from edgecam.web.password import generate_password, write_password_file

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
    try:
        old = args.file.stat() if args.file.exists() else None
        write_password_file(args.file, password)
    except OSError as exc:  # e.g. /etc/edgecam without sudo
        return _fail(f"cannot write {args.file}: {exc.strerror or exc}; nothing changed (run it with sudo?)")
    if args.generate:
        print(password)
    print(f"password hash written to {args.file} (a running edgecam applies it in seconds)", file=sys.stderr)
    new = args.file.stat()
    if old is not None and (new.st_uid, new.st_gid) != (old.st_uid, old.st_gid):
        print(
            f"edgecam: warning: could not keep the owner of {args.file} ({old.st_uid}:{old.st_gid}, now "
            f"{new.st_uid}:{new.st_gid}), so the service may not be able to read it; run this with sudo",
            file=sys.stderr,
        )
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from edgecam.app.doctor import run_doctor

    path = args.config or next((p for p in DEFAULT_CONFIG_PATHS if p.is_file()), None)
    return run_doctor(path, args.model_dir)


def _cmd_bench_detector(args: argparse.Namespace) -> int:
    from edgecam.detect.bench import bench_detector, format_table
    from edgecam.detect.manifest import load_manifest
    from edgecam.detect.runtime import find_runtime
    from edgecam.ladder.select import resolve_ladder

    model_dir = _model_dir(args)
    if args.model:
        models = [m.strip() for m in args.model.split(",") if m.strip()]
    else:
        models = resolve_ladder("auto", model_dir, load_manifest(), tpu_works=lambda: False)
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    runtime = find_runtime()
    results = bench_detector(models, threads, model_dir, args.video, frames=args.frames, warmup=args.warmup)
    report = {
        "benchmark": "detector",
        "runtime": {"name": runtime.name, "version": runtime.version},
        "results": results,
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(f"runtime: {runtime.describe()}")
        print(format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

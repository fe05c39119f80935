"""Wires the stages together and owns their threads: capture → slot → inference → broadcaster → web."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecam import __version__
from edgecam.adapt import AdaptSettings
from edgecam.capture import CaptureThread, SourceState, open_source, resolve_auto
from edgecam.config import Config, ConfigError, LoadedConfig, load_config
from edgecam.detect import DetectionFilter, Detector, load_detector
from edgecam.detect.ladder import resolve_ladder
from edgecam.detect.manifest import load_manifest
from edgecam.detect.store import Status, check
from edgecam.events.hub import build_event_hub
from edgecam.events.metrics import Metrics
from edgecam.frames import LatestFrameSlot
from edgecam.inference import InferenceThread
from edgecam.overlay import draw_detections, draw_hud
from edgecam.reload import RESTART_KEYS, ConfigWatcher, changed_keys
from edgecam.results import OutputFrame
from edgecam.switcher import ModelSwitcher, ladder_with_twins
from edgecam.track import TrackerSettings, TrackEvent, make_tracker
from edgecam.watchdog import Stage, Watchdog
from edgecam.web.auth import Authenticator
from edgecam.web.broadcast import JpegBroadcaster, StreamSettings
from edgecam.web.server import Server, start_server

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Overrides:
    """Command-line flags that win over the config for a quick experiment."""

    source: str | None = None
    port: int | None = None
    bind: str | None = None
    model_dir: Path | None = None
    models: list[str] | None = None
    threads: int | None = None
    realtime: bool | None = None


def detection_filter(config: Config) -> DetectionFilter:
    d = config.detector
    return DetectionFilter(frozenset(d.classes), d.threshold, dict(d.thresholds), d.min_area)


def adapt_settings(config: Config) -> AdaptSettings:
    a = config.adapt
    return AdaptSettings(config.detector.min_fps, a.down_after_s, a.up_after_s, a.up_margin, a.cooldown_s)


def stream_settings(config: Config) -> StreamSettings:
    s = config.stream
    return StreamSettings(fps=s.fps, quality=s.quality, width=s.width, max_clients=s.max_clients)


class Pipeline:
    """The running box. ``start`` brings up every stage; ``stop`` joins them and releases the camera."""

    def __init__(self, loaded: LoadedConfig, overrides: Overrides | None = None) -> None:
        self.loaded = loaded
        self.overrides = overrides or Overrides()
        config = loaded.config
        o = self.overrides
        self.model_dir = o.model_dir or loaded.resolve(config.detector.model_dir)
        self.manifest = load_manifest()
        self.started_at = time.monotonic()
        self.config_error: str | None = None

        ids = ladder_with_twins(
            resolve_ladder(o.models or config.detector.ladder, self.model_dir, self.manifest), self.manifest
        )
        self.threads = o.threads or config.detector.threads
        self.switcher = ModelSwitcher(ids, self._load_model, self.manifest, adapt_settings(config))
        detector = self.switcher.current()

        camera = config.camera
        self.realtime = camera.realtime if o.realtime is None else o.realtime
        spec = self._source_spec(o.source or camera.source)
        self.source = open_source(
            spec, width=camera.width, height=camera.height, fps=camera.fps, realtime=self.realtime,
            lores_size=detector.input_size, timeout_s=camera.stall_s,
        )  # fmt: skip
        self.slot = LatestFrameSlot()
        self.capture = CaptureThread(self.source, self.slot, stall_s=camera.stall_s, realtime=self.realtime)
        frame_rate = camera.fps or self.source.nominal_fps or 15.0
        tracker = make_tracker(frame_rate, **config.tracker_settings())
        self.broadcaster = JpegBroadcaster(stream_settings(config), self._annotate, self._no_signal_reason)
        self.inference = InferenceThread(
            self.slot, self.switcher, tracker, self.broadcaster.publish, detection_filter(config),
            tracker_floor=config.tracker.low_score, tracker_high_score=config.tracker.high_score,
        )  # fmt: skip
        self.events = build_event_hub(
            config, loaded.resolve, lambda class_id: self.inference.detector.label(class_id),
            self.broadcaster.encode, classes=config.detector.classes,
        )  # fmt: skip
        self.metrics = Metrics(self.status)
        self.inference.on_output = self._on_output
        self.authenticator = self._authenticator(config)
        self.server: Server | None = None
        self.pending_restart: list[str] = []
        self._reload_lock = threading.Lock()
        self.watcher = ConfigWatcher(loaded.path, self.reload) if loaded.path is not None else None
        self._spec = spec
        self.watchdog = Watchdog(
            [
                Stage("capture", lambda: self.capture.heartbeat, self._restart_capture),
                Stage("inference", lambda: self.inference.heartbeat, self._restart_inference),
                Stage("encoder", lambda: self.broadcaster.heartbeat, self.broadcaster.restart_encoder),
            ],
            config.service.watchdog_s,
        )

    # ---- config reload ------------------------------------------------------------------------------------

    def reload(self) -> bool:
        """Re-read the config file. An invalid file keeps the running config, and the error is logged and
        shown in the status until the file is fixed. Returns True when the new config was applied."""
        if self.loaded.path is None:
            log.info("reload: running on defaults, no config file to read")
            return False
        with self._reload_lock:
            try:
                new = load_config(self.loaded.path)
            except ConfigError as exc:
                self.config_error = str(exc)
                for issue in exc.issues:
                    log.error("config not applied: %s", issue)
                log.error("keeping the running config until %s is fixed", self.loaded.path)
                return False
            changed = changed_keys(self.loaded.config, new.config)
            self._apply_live(new.config)
            self.pending_restart = sorted(k for k in changed if k.startswith(RESTART_KEYS))
            self.loaded = new
            self.config_error = None
        live = [k for k in changed if not k.startswith(RESTART_KEYS)]
        log.info("config reloaded: applied %s", ", ".join(live) or "nothing new")
        if self.pending_restart:
            log.warning(
                "config: %s change(s) need a restart (systemctl restart edgecam)",
                ", ".join(self.pending_restart),
            )
        return True

    def _authenticator(self, config: Config) -> Authenticator:
        s = config.stream
        password_file = self.loaded.resolve(s.password_file) if s.password_file else None
        bind = self.overrides.bind or s.bind
        if s.auth_mode == "none" and bind not in ("127.0.0.1", "::1", "localhost"):
            log.warning("the stream has no password and listens on %s: set stream.password_file", bind)
        return Authenticator(s.auth_mode, s.username, password_file)

    def _apply_live(self, config: Config) -> None:
        self.inference.set_filter(
            detection_filter(config), config.tracker.low_score, config.tracker.high_score
        )
        self.inference.tracker.settings = TrackerSettings(**config.tracker_settings())
        self.switcher.controller.settings = adapt_settings(config)
        self.watchdog.limit_s = config.service.watchdog_s
        self.broadcaster.update_settings(stream_settings(config))
        if config.stream != self.loaded.config.stream:
            self.authenticator = self._authenticator(config)
        logging.getLogger().setLevel(config.logging.level)

    # ---- watchdog restarts -----------------------------------------------------------------------------------

    def _restart_inference(self) -> None:
        successor = self.inference.successor()
        self.switcher.reload_current()
        self.inference = successor
        successor.start()

    def _restart_capture(self) -> None:
        if self.source.name.startswith("picamera2"):
            raise RuntimeError("the Pi camera cannot be reopened in-process (libcamera allows one owner)")
        camera = self.loaded.config.camera
        self.capture.stop(timeout=0.5)
        self.source = open_source(
            self._spec, width=camera.width, height=camera.height, fps=camera.fps, realtime=self.realtime,
            lores_size=self.switcher.current().input_size, timeout_s=camera.stall_s,
        )  # fmt: skip
        self.capture = CaptureThread(self.source, self.slot, stall_s=camera.stall_s, realtime=self.realtime)
        self.capture.start()

    def alive(self) -> bool:
        """For systemd's watchdog: false once a stuck stage could not be restarted."""
        return self.watchdog.healthy

    def _load_model(self, model_id: str) -> Detector:
        d = self.loaded.config.detector
        return load_detector(
            model_id,
            self.model_dir,
            threads=self.threads,
            edgetpu_device=d.edgetpu_device,
            manifest=self.manifest,
        )

    def _source_spec(self, spec: str) -> str:
        """`auto`: a camera if there is one, else the sample video (verified), else the test pattern."""
        if spec != "auto":
            return spec
        resolved = resolve_auto()
        if (
            resolved == "testpattern"
            and check(self.model_dir, self.manifest, "sample_video").status is Status.VERIFIED
        ):
            resolved = str(self.model_dir / self.manifest.assets["sample_video"].file)
        log.info("camera.source auto: using %s", resolved)
        return resolved

    # ---- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> None:
        config = self.loaded.config
        bind = self.overrides.bind or config.stream.bind
        port = self.overrides.port if self.overrides.port is not None else config.stream.port
        self.server, _ = start_server(self, bind, port)
        self.events.start()
        self.broadcaster.start()
        self.inference.start()
        self.capture.start()
        if self.watcher is not None:
            self.watcher.start()
        self.watchdog.start()
        log.info(
            "streaming %s with %s on %s", self.source.name, self.inference.detector.model_id, self.urls()[0]
        )

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    def urls(self) -> list[str]:
        bind = self.overrides.bind or self.loaded.config.stream.bind
        host = "localhost" if bind in ("0.0.0.0", "::", "127.0.0.1", "::1") else bind
        return [f"http://{host}:{self.port}/"]

    def stop(self) -> None:
        """Stop every stage, newest-first in the data path, and release the camera."""
        self.watchdog.stop()
        if self.watcher is not None:
            self.watcher.stop()
        if self.server is not None:
            self.server.stopping.set()
            self.server.shutdown()
            self.server.server_close()
        self.capture.stop()
        self.slot.close()
        self.inference.stop()
        self.events.stop()
        self.switcher.stop()
        self.broadcaster.stop()
        log.info("stopped")

    # ---- output side --------------------------------------------------------------------------------------

    def _on_output(self, output: OutputFrame, events: list[TrackEvent]) -> None:
        self.metrics.observe_frame(output.inference_ms, [d.label for d in output.detections])
        self.events.on_frame(output, events)  # never raises, never blocks: its sinks are queue-backed

    def _annotate(self, output: OutputFrame) -> None:
        self.events.draw(output.image)  # zones and lines under the boxes
        draw_detections(output.image, output.tracks, ids=[t.id for t in output.tracks])
        m = output.model
        device = "Edge TPU" if m.device == "edgetpu" else "CPU"
        rungs = len(self.switcher.controller.rungs)
        rung = f"rung {self.switcher.controller.position + 1}/{rungs}"
        draw_hud(
            output.image,
            [
                f"{m.model_id} a{m.alpha:g} {device} {rung}" if m.alpha else f"{m.model_id} {device} {rung}",
                f"camera {self.capture.fps:4.1f} fps  inference {self.inference.rate.rate:4.1f} fps {output.inference_ms:4.0f} ms",
                f"{len(output.tracks)} object(s)",
            ],
        )

    def _no_signal_reason(self) -> str | None:
        ok, reason = self.health()
        return None if ok else reason

    # ---- status -------------------------------------------------------------------------------------------

    def health(self) -> tuple[bool, str]:
        """Healthy while frames flow: the source is live and its newest frame is recent."""
        state = self.capture.state
        stall_s = self.loaded.config.camera.stall_s
        last = self.capture.last_frame_time
        if state is not SourceState.LIVE:
            since = f"; last frame {time.monotonic() - last:.0f} s ago" if last else ""
            return False, f"source {state.value}: {self.capture.reason or 'no frames'}{since}"
        if last is None or time.monotonic() - last > stall_s:
            return False, f"no frame for more than {stall_s:g} s"
        if not self.inference.is_alive():
            return False, "the inference stage has stopped"
        latest = self.inference.latest
        waited = time.monotonic() - (latest.done_at if latest is not None else self.started_at)
        if waited > stall_s + self._slowest_frame_s():
            error = f" (last error: {self.inference.last_error})" if self.inference.last_error else ""
            return False, f"no inference result for {waited:.0f} s{error}"
        return True, "ok"

    def _slowest_frame_s(self) -> float:
        """Allowance for one frame of the slowest model (a big CPU model on a busy Pi takes a while)."""
        known = [r.idle_ms for r in self.switcher.controller.rungs if r.idle_ms]
        return 3 * max(known, default=1000.0) / 1000

    def status(self) -> dict[str, Any]:
        inf, cap, br = self.inference, self.capture, self.broadcaster
        latest = inf.latest
        tracks = latest.tracks if latest is not None else []
        detector = inf.detector
        return {
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started_at, 1),
            "source": {
                "name": self.source.name,
                "state": cap.state.value,
                "reason": cap.reason,
                "fps": round(cap.fps, 2),
                "frames": cap.frames,
                "dropped": self.slot.dropped,
                "reconnects": cap.reconnects,
            },
            "inference": {
                "fps": round(inf.rate.rate, 2),
                "ms": round(inf.busy_ms.percentile(50), 1),
                "invoke_ms": round(inf.invoke_ms.percentile(50), 1),
                "frames": inf.frames,
                "errors": inf.errors,
            },
            "detector": {
                "model": detector.model_id,
                "alpha": detector.alpha,
                "device": detector.device,
                "input_size": list(detector.input_size),
                "threads": self.threads,
            },
            "ladder": self.switcher.status(self.loaded.config.detector.min_fps),
            "stream": {
                "clients": br.clients,
                "encoded_frames": br.encoded_frames,
                "fps": round(br.rate.rate, 2),
                "encode_ms": round(br.encode_ms.percentile(50), 1),
                "latency_ms": {
                    "p50": round(br.latency_ms.percentile(50), 1),
                    "p95": round(br.latency_ms.percentile(95), 1),
                },
            },
            "tracks": [
                {
                    "id": t.id,
                    "label": t.label,
                    "score": round(t.score, 3),
                    "box": [round(v, 1) for v in t.box],
                }
                for t in tracks
            ],
            "events": self.events.status(),
            "config": {
                "path": str(self.loaded.path) if self.loaded.path else None,
                "error": self.config_error,
                "pending_restart": self.pending_restart,
            },
        }

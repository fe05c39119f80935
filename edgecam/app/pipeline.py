"""Wiring and lifecycle of the running box; no stage logic lives here.

One camera is one ``CameraChain``: capture → latest-frame slot → inference (detector + tracker) → annotate
→ JPEG encoder → sinks (the stream fan-out; snapshots and MQTT through the event hub). The ``Pipeline``
owns what the chains share: the model ladder (one detector worker), the web server, the event hub, the
config and its watcher, and the supervisor. A second camera would be a second chain next to the first.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edgecam import __version__
from edgecam.app.supervisor import Stage, Supervisor
from edgecam.capture import CaptureThread, SourceState, open_source, resolve_auto
from edgecam.capture.motion import MotionDetector, MotionSettings, normalized_masks
from edgecam.capture.slot import LatestFrameSlot
from edgecam.config import Config, ConfigError, LoadedConfig, load_config
from edgecam.config.load import FileIssue
from edgecam.config.sections import MotionConfig
from edgecam.config.watch import RESTART_KEYS, ConfigWatcher, changed_keys
from edgecam.detect import DetectionFilter, Detector, load_detector
from edgecam.detect.manifest import Manifest, load_manifest
from edgecam.detect.runtime import RuntimeMissingError, find_runtime
from edgecam.detect.store import Status, check
from edgecam.events.hub import EventHub, build_event_hub
from edgecam.infer.gate import GateSettings
from edgecam.infer.result import OutputFrame
from edgecam.infer.stage import InferenceThread
from edgecam.ladder.controller import AdaptSettings
from edgecam.ladder.select import build_ladder
from edgecam.ladder.switcher import ModelSwitcher
from edgecam.render.encoder import EncoderSettings, JpegEncoder
from edgecam.render.hud import Annotator, HudInfo
from edgecam.render.motion import MotionLayer
from edgecam.track import TrackerSettings, TrackEvent, make_tracker
from edgecam.web import status as status_schema
from edgecam.web.auth import Authenticator, authenticator_for
from edgecam.web.metrics import Metrics
from edgecam.web.server import Server, bind_server
from edgecam.web.stream import StreamFanout

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


def encoder_settings(config: Config) -> EncoderSettings:
    s = config.stream
    return EncoderSettings(fps=s.fps, quality=s.quality, width=s.width)


def source_spec(spec: str, model_dir: Path, manifest: Manifest) -> str:
    """``auto``: a camera if there is one, else the sample video (if verified), else the test pattern."""
    if spec != "auto":
        return spec
    sample = None
    if (
        "sample_video" in manifest.assets
        and check(model_dir, manifest, "sample_video").status is Status.VERIFIED
    ):
        sample = model_dir / manifest.assets["sample_video"].file
    resolved = resolve_auto(sample)
    log.info("camera.source auto: using %s", resolved)
    return resolved


def decode_threads(configured: int, detector_threads: int) -> int:
    """``camera.decode_threads``; 0 means the cores the detector's threads leave free, at least one, so that
    decoding and detection run side by side instead of taking turns on the same cores."""
    return configured or max(1, (os.cpu_count() or 1) - detector_threads)


class CameraChain:
    """One camera's stages: capture → slot → inference → annotate → encoder → stream fan-out."""

    def __init__(
        self, config: Config, spec: str, switcher: ModelSwitcher, realtime: bool, detector_threads: int = 1
    ) -> None:
        camera = config.camera
        self.camera_config = camera
        self.spec = spec
        self.decode_threads = decode_threads(camera.decode_threads, detector_threads)
        self.realtime = realtime
        self.switcher = switcher
        self.slot = LatestFrameSlot()
        self.source = self._open_source()
        self.motion_config = config.motion
        self.motion = MotionDetector(self._motion_settings(config.motion))
        self.capture = self._capture_thread()
        frame_rate = camera.fps or self.source.nominal_fps or 15.0
        tracker = make_tracker(frame_rate, **config.tracker_settings())
        self.annotator = Annotator(self._hud_info, config.zones, config.lines)
        self.encoder = JpegEncoder(
            encoder_settings(config), self._with_motion(self.annotator), self.no_signal_reason
        )
        self.fanout = StreamFanout(config.stream.max_clients, self.encoder.demand_changed)
        self.encoder.subscribe(self.fanout)
        self.inference = InferenceThread(
            self.slot, switcher, tracker, self.encoder.publish, detection_filter(config),
            tracker_floor=config.tracker.low_score, tracker_high_score=config.tracker.high_score,
            gate=self._gate_settings(config.motion),
        )  # fmt: skip
        self.started_at = time.monotonic()

    # ---- motion gating --------------------------------------------------------------------------------------

    @staticmethod
    def _motion_settings(motion: MotionConfig) -> MotionSettings:
        return MotionSettings(
            enabled=motion.enabled, threshold=motion.threshold, min_area=motion.min_area,
            masks=normalized_masks(motion.masks), boxes=motion.draw,
        )  # fmt: skip

    @staticmethod
    def _gate_settings(motion: MotionConfig) -> GateSettings:
        return GateSettings(enabled=motion.enabled, idle_detect_s=motion.idle_detect_s)

    def _with_motion(self, annotator: Annotator) -> MotionLayer:
        """The annotator, with motion areas drawn under it while ``motion.draw`` is on."""
        return MotionLayer(annotator, lambda: self.motion_config.draw, lambda: self.motion.settings.masks)

    def apply_motion(self, motion: MotionConfig) -> None:
        """Config reload: motion settings apply from the next frame (capture judges, inference gates)."""
        self.motion_config = motion
        self.capture.set_motion(self._motion_settings(motion))
        self.inference.set_gate(self._gate_settings(motion))

    def _capture_thread(self) -> CaptureThread:
        return CaptureThread(
            self.source, self.slot, stall_s=self.camera_config.stall_s, realtime=self.realtime,
            motion=self.motion, lores_size=lambda: self.inference.lores_size,
        )  # fmt: skip

    def _open_source(self) -> Any:
        camera = self.camera_config
        return open_source(
            self.spec, width=camera.width, height=camera.height, fps=camera.fps, realtime=self.realtime,
            lores_size=self.switcher.current().input_size, timeout_s=camera.stall_s,
            decode_threads=self.decode_threads,
        )  # fmt: skip

    def attach_events(self, hub: EventHub, config: Config, on_output: Any) -> None:
        """Zones and lines drawn with the hub's counts; every output frame also goes to ``on_output``."""
        self.annotator = Annotator(self._hud_info, config.zones, config.lines, hub.zones.status)
        self.encoder.annotate = self._with_motion(self.annotator)
        self.inference.on_output = on_output

    def stages(self) -> list[Stage]:
        return [
            Stage("capture", lambda: self.capture.heartbeat, self.restart_capture),
            Stage("inference", lambda: self.inference.heartbeat, self.restart_inference),
            Stage("encoder", lambda: self.encoder.heartbeat, self.encoder.restart),
        ]

    def start(self) -> None:
        self.encoder.start()
        self.inference.start()
        self.capture.start()

    def stop(self) -> None:
        """Newest-first in the data path, then release the camera."""
        self.capture.stop()
        self.slot.close()
        self.inference.stop()
        self.fanout.close()
        self.encoder.stop()

    # ---- supervisor restarts --------------------------------------------------------------------------------

    def restart_inference(self) -> None:
        successor = self.inference.successor()
        self.switcher.reload_current()
        self.inference = successor
        successor.start()

    def restart_capture(self) -> None:
        if not self.source.reopenable:
            raise RuntimeError(f"{self.source.name} cannot be reopened in-process")
        self.capture.stop(timeout=0.5)
        self.source = self._open_source()
        self.capture = self._capture_thread()
        self.capture.set_motion(self.motion.settings)
        self.capture.start()

    # ---- health ---------------------------------------------------------------------------------------------

    def health(self) -> tuple[bool, str]:
        """Healthy while frames flow: the source is live, its newest frame is recent, results come out."""
        state = self.capture.state
        stall_s = self.camera_config.stall_s
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

    def no_signal_reason(self) -> str | None:
        ok, reason = self.health()
        return None if ok else reason

    def _hud_info(self) -> HudInfo:
        controller = self.switcher.controller
        # The HUD's "inference" rate is the detector's: with motion gating, frames pass at camera rate anyway.
        inference = self.inference
        rate = inference.detect_rate.rate if inference.skipped else inference.rate.rate
        return HudInfo(controller.position, len(controller.rungs), self.capture.fps, rate)


class Pipeline:
    """The running box. ``start`` brings up every stage; ``stop`` joins them and releases the camera."""

    def __init__(self, loaded: LoadedConfig, overrides: Overrides | None = None) -> None:
        self.loaded = loaded
        self.overrides = o = overrides or Overrides()
        config = loaded.config
        self.model_dir = o.model_dir or loaded.resolve(config.detector.model_dir)
        self.manifest = load_manifest()
        self.started_at = time.monotonic()
        self.config_error: str | None = None
        self.pending_restart: list[str] = []
        self.started_config = config  # what needs a restart is judged against this, not the last reload
        self._reload_lock = threading.Lock()
        self.bind = o.bind or config.stream.bind
        port = o.port if o.port is not None else config.stream.port
        # The port first: a busy port fails at once, naming it, before seconds of model loading.
        self.server: Server = bind_server(self, self.bind, port)

        ids = build_ladder(o.models or config.detector.ladder, self.model_dir, self.manifest)
        self.threads = o.threads or config.detector.threads
        self.switcher = ModelSwitcher(ids, self._load_model, self.manifest, adapt_settings(config))
        realtime = config.camera.realtime if o.realtime is None else o.realtime
        spec = source_spec(o.source or config.camera.source, self.model_dir, self.manifest)
        self.chain = CameraChain(config, spec, self.switcher, realtime, self.threads)
        self.events = build_event_hub(
            config, loaded.resolve, lambda class_id: self.chain.inference.detector.label(class_id),
            self.chain.encoder.encode, classes=config.detector.classes, stream_fps=config.stream.fps,
            public_url=getattr(config.stream, "public_url", None),
        )  # fmt: skip
        if self.events.recorder is not None:
            self.chain.encoder.subscribe_images(self.events.recorder)
        self.chain.attach_events(self.events, config, self._on_output)
        self.metrics = Metrics(self.status)
        self.authenticator: Authenticator = authenticator_for(config.stream, loaded.resolve, self.bind)
        self.watcher = (  # a password file written over (`sudo edgecam password set`) reloads too
            ConfigWatcher(
                loaded.path,
                self.reload,
                password_stale=lambda: self.authenticator.stale(),
                password_error=lambda: self.authenticator.error,
            )
            if loaded.path is not None
            else None
        )
        self.supervisor = Supervisor(self.chain.stages(), config.service.watchdog_s)
        try:
            runtime = find_runtime()
            self.runtime: dict[str, str] | None = {"name": runtime.name, "version": runtime.version}
        except RuntimeMissingError:
            self.runtime = None

    # ---- what the web server and the tests read -------------------------------------------------------------

    @property
    def capture(self) -> CaptureThread:
        return self.chain.capture

    @property
    def inference(self) -> InferenceThread:
        return self.chain.inference

    @property
    def slot(self) -> LatestFrameSlot:
        return self.chain.slot

    @property
    def encoder(self) -> JpegEncoder:
        return self.chain.encoder

    @property
    def fanout(self) -> StreamFanout:
        return self.chain.fanout

    @property
    def source(self) -> Any:
        return self.chain.source

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
                self._refuse_dropping_the_password(new.config)
            except ConfigError as exc:
                self.config_error = str(exc)
                for issue in exc.issues[:-1]:
                    log.error("config not applied: %s", issue)
                log.error("%s; keeping the running config", exc.issues[-1] if exc.issues else exc)
                return False
            changed = changed_keys(self.loaded.config, new.config)
            self._apply_live(new.config)
            # Against the config the process started with: a change that is undone is pending no more.
            since_start = changed_keys(self.started_config, new.config)
            self.pending_restart = sorted(k for k in since_start if k.startswith(RESTART_KEYS))
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

    def _refuse_dropping_the_password(self, config: Config) -> None:
        """A reload never turns the stream password off by leaving it out: a file cut short (an interrupted
        save, a full disk) is still valid YAML, and without its stream section ``auth: auto`` means none. Only
        an explicit ``stream.auth: none`` does; otherwise the whole new file is refused, as the rest of a cut
        file (zones, recording, classes back to their defaults) is no more what was meant than the password."""
        stream = config.stream
        if self.authenticator.mode != "none" and stream.auth_mode == "none" and stream.auth != "none":
            message = (
                "stream: the new file sets no password_file, so the stream would be open to anyone (was the "
                "file cut short?); to turn the password off, set stream.auth: none"
            )
            raise ConfigError([FileIssue(str(self.loaded.path), 0, "stream", message)])

    def _apply_live(self, config: Config) -> None:
        inference = self.chain.inference
        inference.set_filter(detection_filter(config), config.tracker.low_score, config.tracker.high_score)
        inference.tracker.settings = TrackerSettings(**config.tracker_settings())
        self.chain.apply_motion(config.motion)
        self.switcher.controller.settings = adapt_settings(config)
        if config.detector.classes != self.loaded.config.detector.classes:
            self.events.set_classes(config.detector.classes)
        self.supervisor.limit_s = config.service.watchdog_s
        self.chain.encoder.update_settings(encoder_settings(config))
        self.chain.fanout.max_clients = config.stream.max_clients
        # A new password (in the config or written over the same file) ends streams that no longer pass;
        # attempt counts and lockouts carry over.
        if config.stream != self.loaded.config.stream or self.authenticator.stale():
            self.authenticator = authenticator_for(
                config.stream, self.loaded.resolve, self.bind, previous=self.authenticator
            )
        logging.getLogger().setLevel(config.logging.level)

    def _load_model(self, model_id: str) -> Detector:
        d = self.loaded.config.detector
        return load_detector(
            model_id,
            self.model_dir,
            threads=self.threads,
            edgetpu_device=d.edgetpu_device,
            manifest=self.manifest,
        )

    # ---- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> None:
        self.events.start()  # first: the event store's schema is ready before the server answers /api/events
        self.server.start()
        self.switcher.start()
        self.chain.start()
        if self.watcher is not None:
            self.watcher.start()
        self.supervisor.start()
        log.info(
            "streaming %s with %s on %s", self.source.name, self.inference.detector.model_id, self.urls()[0]
        )

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def public_host(self) -> str | None:
        """The host name of ``stream.public_url`` (the web server accepts it as a Host header)."""
        url = self.loaded.config.stream.public_url
        return urlsplit(url).hostname if url else None

    def urls(self) -> list[str]:
        host = "localhost" if self.bind in ("0.0.0.0", "::", "127.0.0.1", "::1") else self.bind
        return [f"http://{host}:{self.port}/"]

    def alive(self) -> bool:
        """False once a stuck stage could not be restarted (systemd's watchdog then restarts the service)."""
        return self.supervisor.healthy

    def stop(self) -> None:
        """Stop every stage, newest-first in the data path, and release the camera."""
        self.supervisor.stop()
        if self.watcher is not None:
            self.watcher.stop()
        self.server.stop()
        self.chain.stop()
        self.events.stop()
        self.switcher.stop()
        log.info("stopped")

    # ---- output side --------------------------------------------------------------------------------------

    def _on_output(self, output: OutputFrame, events: list[TrackEvent]) -> None:
        if output.detected:  # a frame the motion gate skipped has no detections of its own
            self.metrics.observe_frame(output.inference_ms, output.detections.labels)
        self.events.on_frame(output, events)  # never raises, never blocks: its sinks are queue-backed

    # ---- status -------------------------------------------------------------------------------------------

    def health(self) -> tuple[bool, str]:
        return self.chain.health()

    def status(self) -> dict[str, Any]:
        chain = self.chain
        latest = chain.inference.latest
        return {
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started_at, 1),
            "source": status_schema.source_block(chain.source.name, chain.capture, chain.slot),
            "inference": status_schema.inference_block(chain.inference),
            "detector": status_schema.detector_block(chain.inference.detector, self.threads, self.runtime),
            "ladder": self.switcher.status(self.loaded.config.detector.min_fps),
            "stream": status_schema.stream_block(chain.encoder, chain.fanout),
            "tracks": status_schema.tracks_block(latest.tracks if latest is not None else []),
            "motion": status_schema.motion_block(chain.capture, chain.inference),
            "events": self.events.status(),
            "config": {
                "path": str(self.loaded.path) if self.loaded.path else None,
                "error": self.config_error,
                "pending_restart": self.pending_restart,
            },
        }

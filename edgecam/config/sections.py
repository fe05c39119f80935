"""The typed config schema and its defaults: one pydantic model per section, each rejecting unknown keys.

Reading a file and turning problems into ``file:line: key: message`` lines is ``edgecam.config.load``.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, InstanceOf, model_validator

from edgecam.config.events import Lines, MqttConfig, Points, RecordingConfig, SnapshotConfig, Zones
from edgecam.config.rules import Fraction, Label, NonNegativeFloat, Port, PositiveFloat, Section, between
from edgecam.detect.manifest import load_manifest
from edgecam.track.settings import TrackerSettings, make_settings


def _ladder_form(value: Any) -> Any:
    """`auto` or a non-empty list of manifest model ids (checked here so a typo gets a did-you-mean)."""
    if value == "auto":
        return value
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValueError("must be auto or a list of model ids, heaviest first")
    known = list(load_manifest().models)
    for model_id in value:
        if model_id not in known:
            guess = difflib.get_close_matches(str(model_id), known, n=1)
            hint = f"did you mean '{guess[0]}'?" if guess else f"known: {', '.join(known)}"
            raise ValueError(f"unknown model id '{model_id}'; {hint}")
    return value


# ---- sections ------------------------------------------------------------------------------------------------


class CameraConfig(Section):
    source: str = Field(
        "auto",
        description="auto | picamera2 | testpattern | a V4L2 index or /dev/videoN | rtsp://… or http://… | a video file",
    )
    width: Annotated[int, AfterValidator(between(16, 7680))] = Field(
        1280, description="capture width, pixels"
    )
    height: Annotated[int, AfterValidator(between(16, 4320))] = Field(
        720, description="capture height, pixels"
    )
    fps: Annotated[float, AfterValidator(between(0, 240))] = Field(
        15, description="requested camera rate; 0 = the source's own rate"
    )
    realtime: bool = Field(True, description="video files: play at their own rate (false = as fast as taken)")
    stall_s: PositiveFloat = Field(5.0, description="no frame for this long means the source is lost")
    decode_threads: Annotated[int, AfterValidator(between(0, 16))] = Field(
        0,
        description="FFmpeg decode threads for files and network streams; 0 = the cores the detector leaves free",
    )


class DetectorConfig(Section):
    model_dir: str = Field("models", description="model directory; relative paths are relative to this file")
    ladder: Annotated[Literal["auto"] | list[str], BeforeValidator(_ladder_form)] = Field(
        "auto", description="model ids, heaviest first, or auto (the installed ones, Edge TPU first)"
    )
    threads: Annotated[int, AfterValidator(between(1, 16))] = Field(2, description="CPU interpreter threads")
    edgetpu_device: str | None = Field(
        None, description="usb, usb:N, pci, pci:N, or null for the first found"
    )
    classes: list[Label] = Field(
        default_factory=lambda: [
            "person",
            "bicycle",
            "car",
            "motorcycle",
            "bus",
            "truck",
            "cat",
            "dog",
            "bird",
        ],
        description="labels to report; an empty list reports every class",
    )
    threshold: Fraction = Field(0.5, description="minimum score")
    thresholds: dict[Label, Fraction] = Field(default_factory=dict, description="per-class minimum scores")
    min_area: Fraction = Field(0.0, description="minimum box area as a fraction of the frame")
    min_fps: NonNegativeFloat = Field(5.0, description="inference rate the model ladder keeps up")

    @model_validator(mode="after")
    def _edgetpu_device_form(self) -> DetectorConfig:
        device = self.edgetpu_device
        if device is not None:
            kind, _, index = device.partition(":")
            if kind not in ("usb", "pci") or (index and not index.isdigit()):
                raise ValueError(f"edgetpu_device: must be usb, usb:N, pci or pci:N (got '{device}')")
        return self


class AdaptConfig(Section):
    down_after_s: PositiveFloat = Field(
        3.0, description="seconds under detector.min_fps before stepping down"
    )
    up_after_s: PositiveFloat = Field(15.0, description="seconds the bigger model must be predicted to fit")
    up_margin: Annotated[float, AfterValidator(between(1.0, 3.0))] = Field(
        1.25, description="the bigger model must be predicted at min_fps × this"
    )
    cooldown_s: NonNegativeFloat = Field(10.0, description="at most one model switch per this many seconds")


# TrackerSettings' own defaults suit the MOT17 benchmark's Faster R-CNN scores; SSD MobileNet scores a
# clearly visible person at 0.5-0.75, so the box starts tracks from the detector's default threshold.
SSD_TRACKER_DEFAULTS = {"high_score": 0.5, "low_score": 0.3, "new_track_score": 0.5}


def _tracker_form(value: Any) -> TrackerSettings:
    """The tracker section is exactly make_tracker's keyword arguments, validated once, by the tracker's own
    rules (``edgecam.track.settings``); a problem names its key so the error points at its line."""
    if isinstance(value, TrackerSettings):
        return value
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ValueError("must be a mapping of tracker settings")
    known = [f.name for f in dataclasses.fields(TrackerSettings)]
    for key in value:
        if key not in known:
            guess = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean '{guess[0]}'?" if guess else f"known: {', '.join(known)}"
            raise ValueError(f"{key}: unknown key; {hint}")
    try:
        return make_settings(**{**SSD_TRACKER_DEFAULTS, **value})
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc).removeprefix("tracker.")) from None


TrackerConfig = Annotated[InstanceOf[TrackerSettings], BeforeValidator(_tracker_form)]


def _network_form(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError("must be an IP address or a CIDR network, e.g. 127.0.0.1 or 10.0.0.0/8") from None
    return value


def _public_url_form(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise ValueError("must be an absolute http:// or https:// URL without a user or password")
    return value


class StreamConfig(Section):
    bind: str = Field("0.0.0.0", description="address the web server listens on")
    port: Port = Field(8080, description="HTTP port")
    fps: Annotated[float, AfterValidator(between(0.5, 60))] = Field(15, description="stream frame rate cap")
    quality: Annotated[int, AfterValidator(between(10, 100))] = Field(80, description="JPEG quality")
    width: Annotated[int, AfterValidator(between(0, 7680))] = Field(
        0, description="output width in pixels (height follows the aspect); 0 = camera size"
    )
    max_clients: Annotated[int, AfterValidator(between(1, 1000))] = Field(
        10, description="concurrent stream clients"
    )
    auth: Literal["auto", "none", "basic", "token"] = Field(
        "auto", description="auto = basic when a password_file is set, else none"
    )
    username: str = Field("edgecam", description="user name for HTTP Basic")
    password_file: str | None = Field(None, description="the password's salted hash (edgecam password set)")
    trusted_proxies: list[Annotated[str, AfterValidator(_network_form)]] = Field(
        default_factory=list,
        description="reverse proxies (addresses or CIDRs) whose X-Forwarded-For names the real client",
    )
    public_url: Annotated[str, AfterValidator(_public_url_form)] | None = Field(
        None, description="the box's address as users reach it (e.g. https://cam.example.net/), for links"
    )

    @model_validator(mode="after")
    def _auth_needs_a_password(self) -> StreamConfig:
        if self.auth in ("basic", "token") and not self.password_file:
            raise ValueError(
                f"auth: '{self.auth}' needs stream.password_file (write one with `edgecam password set`)"
            )
        return self

    @property
    def auth_mode(self) -> Literal["none", "basic", "token"]:
        if self.auth == "auto":
            return "basic" if self.password_file else "none"
        return self.auth


class MotionConfig(Section):
    """Motion gating: a cheap motion detector in the capture thread; while nothing moves the object detector
    runs only every ``idle_detect_s`` and the tracks are held."""

    enabled: bool = Field(True, description="gate the detector on motion (false = detect on every frame)")
    threshold: Annotated[int, AfterValidator(between(1, 255))] = Field(
        25, description="grey-level difference (0-255) from the background that counts as motion"
    )
    min_area: Fraction = Field(
        0.002, description="fraction of the frame (outside the masks) that must change to count as motion"
    )
    idle_detect_s: Annotated[float, AfterValidator(between(0.1, 3600))] = Field(
        3.0, description="while nothing moves, run the detector once per this many seconds"
    )
    masks: list[Points] = Field(
        default_factory=list,
        description="polygons [[x, y], …], normalized 0-1, where motion is ignored (trees, a clock, a road)",
    )
    draw: bool = Field(False, description="draw the moving areas and the masks on the video")

    @model_validator(mode="after")
    def _masks_are_polygons(self) -> MotionConfig:
        for i, polygon in enumerate(self.masks):
            if len(polygon) < 3:
                raise ValueError(f"masks[{i}]: a mask needs at least 3 points (got {len(polygon)})")
        return self


class ServiceConfig(Section):
    watchdog_s: Annotated[float, AfterValidator(between(2, 3600))] = Field(
        30.0, description="a stage stuck this long is restarted; if that fails, systemd restarts edgecam"
    )


class LoggingConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log level")


class Config(Section):
    camera: CameraConfig = CameraConfig()
    detector: DetectorConfig = DetectorConfig()
    adapt: AdaptConfig = AdaptConfig()
    tracker: TrackerConfig = Field(default_factory=lambda: _tracker_form({}))
    stream: StreamConfig = StreamConfig()
    service: ServiceConfig = ServiceConfig()
    logging: LoggingConfig = LoggingConfig()
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    zones: Zones = Field(default_factory=list)
    lines: Lines = Field(default_factory=list)
    snapshots: SnapshotConfig = Field(default_factory=SnapshotConfig)
    recording: RecordingConfig = Field(default_factory=RecordingConfig)
    motion: MotionConfig = Field(default_factory=MotionConfig)

    def tracker_settings(self) -> dict[str, Any]:
        """make_tracker's keyword arguments."""
        return dataclasses.asdict(self.tracker)

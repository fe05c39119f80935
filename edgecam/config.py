"""The typed config schema, its defaults, and validation errors that name the file, line and key.

Every section is a pydantic model that rejects unknown keys. ``load_config`` turns any problem (YAML
syntax, wrong type, out-of-range value, unknown key, duplicate key) into a ConfigError whose lines read
``config.yaml:14: detector.threshold: must be between 0 and 1 (got 1.5)``.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ValidationError,
    create_model,
    model_validator,
)

from edgecam.detect.manifest import load_manifest
from edgecam.events.settings import Lines, MqttConfig, SnapshotConfig, Zones
from edgecam.schema import Fraction, Label, NonNegativeFloat, Port, PositiveFloat, Section, between
from edgecam.track import TrackerSettings


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


def _tracker_section() -> type[Section]:
    """The tracker section holds exactly make_tracker's keyword arguments: built from TrackerSettings."""
    hints = typing.get_type_hints(TrackerSettings)
    fields: dict[str, Any] = {
        f.name: (hints[f.name], Field(SSD_TRACKER_DEFAULTS.get(f.name, f.default)))
        for f in dataclasses.fields(TrackerSettings)
    }

    def check(self: Section) -> Section:
        try:
            TrackerSettings(**self.model_dump())
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc).removeprefix("tracker.")) from None
        return self

    return create_model(  # type: ignore[call-overload,no-any-return]
        "TrackerConfig",
        __base__=Section,
        __validators__={"_settings_valid": model_validator(mode="after")(check)},
        **fields,
    )


TrackerConfig = _tracker_section()


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
    tracker: TrackerConfig = TrackerConfig()  # type: ignore[valid-type]
    stream: StreamConfig = StreamConfig()
    service: ServiceConfig = ServiceConfig()
    logging: LoggingConfig = LoggingConfig()
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    zones: Zones = Field(default_factory=list)
    lines: Lines = Field(default_factory=list)
    snapshots: SnapshotConfig = Field(default_factory=SnapshotConfig)

    def tracker_settings(self) -> dict[str, Any]:
        """make_tracker's keyword arguments."""
        return self.tracker.model_dump()


# ---- loading and error reporting ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigIssue:
    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        key = f" {self.key}:" if self.key else ""
        return f"{self.file}:{self.line}:{key} {self.message}"


class ConfigError(ValueError):
    """The config cannot be used; ``issues`` lists every problem found."""

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


@dataclass(frozen=True)
class LoadedConfig:
    config: Config
    path: Path | None

    def resolve(self, value: str | Path) -> Path:
        """A path from the config: relative ones are relative to the config file's folder."""
        path = Path(value).expanduser()
        if path.is_absolute() or self.path is None:
            return path
        return self.path.parent / path


def load_config(path: Path | None) -> LoadedConfig:
    """Read and validate a config file; None gives the defaults."""
    if path is None:
        return LoadedConfig(Config(), None)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(str(path), 0, "", f"cannot read the config file ({exc})")]) from exc
    return LoadedConfig(parse_config(text, str(path)), path.resolve())


def parse_config(text: str, filename: str = "config.yaml") -> Config:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else 0
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            [
                ConfigIssue(
                    filename,
                    line,
                    "",
                    f"YAML syntax error: {problem} (check the indentation and colons here or just above)",
                )
            ]
        ) from None
    if data is None:
        return Config()
    if not isinstance(data, dict):
        raise ConfigError(
            [ConfigIssue(filename, 1, "", "the config must be a mapping of sections (camera:, detector:, …)")]
        )
    issues = _duplicate_keys(root, filename)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        issues += [_issue(error, root, filename) for error in exc.errors()]
        config = None
    if issues:
        raise ConfigError(sorted(issues, key=lambda i: i.line))
    assert config is not None
    return config


def _duplicate_keys(node: yaml.Node | None, filename: str, path: str = "") -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            dotted = f"{path}.{key}" if path else key
            if key in seen:
                issues.append(
                    ConfigIssue(
                        filename,
                        key_node.start_mark.line + 1,
                        dotted,
                        "duplicate key (the later one would win silently)",
                    )
                )
            seen.add(key)
            issues += _duplicate_keys(value_node, filename, dotted)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            issues += _duplicate_keys(item, filename, f"{path}[{i}]")
    return issues


def _issue(error: Any, root: yaml.Node | None, filename: str) -> ConfigIssue:
    loc = [
        part
        for part in error["loc"]
        if not (isinstance(part, str) and part.startswith(("function-", "list[", "literal[")))
    ]
    message = _message(error, loc)
    # A model-level rule names its own key ("edgetpu_device: …", "max_age_s: …"): attach it to the path.
    if error["type"] == "value_error" and isinstance(error.get("input"), dict):
        key, sep, rest = message.partition(": ")
        if sep and key in error["input"]:  # show the value as written, not as converted
            loc, message = (
                [*loc, key],
                re.sub(r" \(got .*\)$", "", rest) + f" (got {_show(error['input'][key])})",
            )
    return ConfigIssue(filename, _line_of(root, loc), _dotted(loc), message)


def _message(error: Any, loc: list[Any]) -> str:
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    if kind == "value_error":
        text = str(error["msg"]).removeprefix("Value error, ")
        shown = _show(value)
        return text if "(got" in text or shown in text or isinstance(value, dict) else f"{text} (got {shown})"
    if kind == "missing":
        return "required"
    if kind == "literal_error":
        return f"must be one of {error['ctx']['expected']} (got {_show(value)})"
    readable = {
        "float_parsing": "must be a number", "float_type": "must be a number",
        "int_parsing": "must be a whole number", "int_type": "must be a whole number",
        "int_from_float": "must be a whole number",
        "bool_parsing": "must be true or false", "bool_type": "must be true or false",
        "string_type": "must be text", "list_type": "must be a list",
        "dict_type": "must be a mapping", "model_type": "must be a mapping of keys", "tuple_type": "must be a list",
    }  # fmt: skip
    return f"{readable.get(kind, error['msg'])} (got {_show(value)})"


def _unknown_key(loc: list[Any]) -> str:
    model: Any = Config
    for part in loc[:-1]:
        annotation = (
            model.model_fields.get(part) if isinstance(part, str) and hasattr(model, "model_fields") else None
        )
        model = annotation.annotation if annotation else None
    known = list(model.model_fields) if model is not None and hasattr(model, "model_fields") else []
    guess = difflib.get_close_matches(str(loc[-1]), known, n=1)
    hint = f"; did you mean '{guess[0]}'?" if guess else (f" (known: {', '.join(known)})" if known else "")
    return f"unknown key{hint}"


def _show(value: Any) -> str:
    return (
        repr(value)
        if isinstance(value, str)
        else yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...")
    )


def _dotted(loc: list[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _line_of(root: yaml.Node | None, loc: list[Any]) -> int:
    """The line of the deepest node along ``loc`` that exists in the file (1-based)."""
    node, line = root, (root.start_mark.line + 1) if root else 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                break
            key_node, node = match
            line = (
                key_node.start_mark.line + 1
                if isinstance(node, (yaml.MappingNode, yaml.SequenceNode))
                else node.start_mark.line + 1
            )
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line

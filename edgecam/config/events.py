"""Config sections for events: ``mqtt``, ``zones``, ``lines``, ``snapshots`` and ``recording``.

Built from the same blocks as :mod:`edgecam.config` (:mod:`edgecam.config.rules`): frozen, unknown keys
rejected, value rules with messages a user understands.
"""

from __future__ import annotations

import re
import socket
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from edgecam.config.rules import Label, Port, Section, between

__all__ = [
    "LineConfig",
    "Lines",
    "MqttConfig",
    "RecordingConfig",
    "SnapshotConfig",
    "ZoneConfig",
    "Zones",
    "slug",
]


def slug(text: str) -> str:
    """Lower-case letters, digits and ``_``: safe in MQTT topics, Home Assistant ids and file names."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "camera"


def _hostname_slug() -> str:
    return slug(socket.gethostname())


def _topic_part(value: str) -> str:
    if not value or any(c in value for c in "+#\0") or value.startswith("/") or value.endswith("/"):
        raise ValueError("must be a non-empty MQTT topic without +, # or a leading or trailing /")
    return value


def _slug_form(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", value):
        raise ValueError("must be lower-case letters, digits, _ or - (it becomes part of MQTT topics)")
    return value


def _name_form(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 _-]{0,63}", value):
        raise ValueError("must be 1-64 letters, digits, spaces, _ or -, starting with a letter or digit")
    return value


Name = Annotated[str, AfterValidator(_name_form)]
Point = tuple[
    Annotated[float, AfterValidator(between(0.0, 1.0))], Annotated[float, AfterValidator(between(0.0, 1.0))]
]


class MqttConfig(Section):
    enabled: bool = Field(False, description="publish events and counts to an MQTT broker")
    host: str = Field("localhost", description="broker host name or address")
    port: Port = Field(1883, description="broker port (8883 is the usual TLS port)")
    tls: bool = Field(False, description="connect with TLS")
    ca_file: str | None = Field(None, description="CA certificate for TLS; null = the system's CAs")
    username: str | None = Field(None, description="broker user name; null = anonymous")
    password_file: str | None = Field(
        None, description="file holding the broker password (never the password itself in this file)"
    )
    client_id: str = Field(
        default_factory=lambda: f"edgecam-{_hostname_slug()}", description="MQTT client id (unique per box)"
    )
    base_topic: Annotated[str, AfterValidator(_topic_part)] = Field("edgecam", description="topic prefix")
    camera_name: Annotated[str, AfterValidator(_slug_form)] = Field(
        default_factory=_hostname_slug, description="this camera's name in topics and in Home Assistant"
    )
    snapshots_on_new_track: bool = Field(False, description="publish a JPEG to <base>/<camera>/snapshot")
    queue_size: Annotated[int, AfterValidator(between(1, 100_000))] = Field(
        1000, description="events kept while the broker is away; the oldest are dropped (and counted)"
    )
    keepalive_s: Annotated[int, AfterValidator(between(5, 3600))] = Field(
        30, description="MQTT keepalive; the broker publishes the Last Will after 1.5 × this of silence"
    )
    discovery: bool = Field(True, description="publish Home Assistant MQTT discovery configs")
    discovery_prefix: Annotated[str, AfterValidator(_topic_part)] = Field(
        "homeassistant", description="Home Assistant's discovery prefix"
    )


def _polygon_area(points: list[tuple[float, float]]) -> float:
    n = len(points)
    return abs(
        sum(points[i][0] * points[(i + 1) % n][1] - points[(i + 1) % n][0] * points[i][1] for i in range(n))
        / 2
    )


MAX_ZONE_POINTS = 100  # a hand-drawn polygon has a handful; 10,000 would take a minute to validate


def _few_points(value: Any) -> Any:
    """Checked before each point is: a huge list fails at once instead of after a minute of validation."""
    if isinstance(value, (list, tuple)) and len(value) > MAX_ZONE_POINTS:
        raise ValueError(f"at most {MAX_ZONE_POINTS} points (got {len(value)})")
    return value


Points = Annotated[list[Point], BeforeValidator(_few_points)]


class ZoneConfig(Section):
    name: Name = Field(description="shown on the video, in the status and in MQTT topics")
    points: Points = Field(description="polygon corners [[x, y], …], normalized 0-1 (0,0 = top left)")
    classes: list[Label] = Field(default_factory=list, description="classes counted; empty = every class")

    @model_validator(mode="after")
    def _shape(self) -> ZoneConfig:
        if len(self.points) < 3:
            raise ValueError(f"points: a zone needs at least 3 points (got {len(self.points)})")
        if _polygon_area(list(self.points)) < 1e-6:
            raise ValueError("points: the zone's points enclose no area")
        return self


class LineConfig(Section):
    name: Name = Field(description="shown on the video, in the status and in MQTT topics")
    points: Points = Field(
        description="[[x1, y1], [x2, y2]], normalized 0-1; crossing from its left to its right "
        "(walking from the first point to the second) is 'in'"
    )
    classes: list[Label] = Field(default_factory=list, description="classes counted; empty = every class")

    @model_validator(mode="after")
    def _shape(self) -> LineConfig:
        if len(self.points) != 2:
            raise ValueError(f"points: a line needs exactly 2 points (got {len(self.points)})")
        (x1, y1), (x2, y2) = self.points
        if abs(x1 - x2) < 1e-6 and abs(y1 - y2) < 1e-6:
            raise ValueError("points: the line's two points are the same")
        return self


def _unique_names(items: list[Any]) -> list[Any]:
    seen: dict[str, str] = {}
    for item in items:
        key = slug(item.name)
        if key in seen:
            if seen[key] == item.name:
                raise ValueError(f"names must be unique (got '{item.name}' twice)")
            raise ValueError(f"names must be unique in MQTT topics (got '{seen[key]}' and '{item.name}')")
        seen[key] = item.name
    return items


Zones = Annotated[list[ZoneConfig], AfterValidator(_unique_names)]
Lines = Annotated[list[LineConfig], AfterValidator(_unique_names)]


class SnapshotConfig(Section):
    enabled: bool = Field(False, description="save a JPEG of the annotated frame when a track starts")
    dir: str = Field("snapshots", description="folder; relative paths are relative to the config file")
    max_files: Annotated[int, AfterValidator(between(1, 1_000_000))] = Field(
        500, description="the oldest files are deleted beyond this many"
    )
    max_bytes: Annotated[int, AfterValidator(between(10_000, 1 << 40))] = Field(
        200_000_000, description="the oldest files are deleted so the folder stays under this size"
    )
    classes: list[Label] = Field(default_factory=list, description="classes saved; empty = every class")


class RecordingConfig(Section):
    """Event memory: every confirmed track becomes a row of ``<dir>/events.db`` (always); with ``enabled``
    also an H.264 clip from ``pre_s`` before its start to ``post_s`` after its end."""

    enabled: bool = Field(True, description="record clips of events (the event list is kept either way)")
    dir: str = Field(
        "data",
        description="events.db, clips/ and snapshots/ live here; relative paths are relative to the config file",
    )
    pre_s: Annotated[float, AfterValidator(between(0, 30))] = Field(
        5.0, description="seconds kept before an event"
    )
    post_s: Annotated[float, AfterValidator(between(0, 120))] = Field(
        5.0, description="seconds kept after an event"
    )
    max_clip_s: Annotated[float, AfterValidator(between(2, 3600))] = Field(
        60.0, description="a busy scene (one event after another) is cut into clips of at most this long"
    )
    retain_days: Annotated[float, AfterValidator(between(0.01, 3650))] = Field(
        14.0, description="events (and their clips) older than this are deleted"
    )
    max_gb: Annotated[float, AfterValidator(between(0.01, 100_000))] = Field(
        10.0, description="clips and snapshots together stay under this; the oldest lose their media first"
    )
    min_free_gb: Annotated[float, AfterValidator(between(0, 100_000))] = Field(
        1.0,
        description="below this much free disk, recording pauses (shown in the status) instead of filling it",
    )
    classes: list[Label] = Field(
        default_factory=list, description="classes that get clips; empty = every class"
    )

"""Zones and lines from synthetic track paths: exact events, counts and directions; config validation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgecam.config import ConfigError
from edgecam.config.events import LineConfig, ZoneConfig
from edgecam.events.model import Event
from edgecam.events.zones import ZoneCounter, inside, reference_point, side
from edgecam.render.areas import draw_areas
from edgecam.track import Track, TrackState

W, H = 1000, 500


def track(track_id: int, foot: tuple[float, float], label: str = "person") -> Track:
    """A 40x100 px box whose bottom centre (the reference point) is at ``foot`` (normalized)."""
    x, y = foot[0] * W, foot[1] * H
    return Track(
        track_id, (x - 20, y - 100, x + 20, y), 0, 0.8, TrackState.CONFIRMED, (0, 0), 1, 1, 0, 0, label
    )


def walk(counter: ZoneCounter, path: list[tuple[float, float]], track_id: int = 1, label: str = "person"):
    events: list[Event] = []
    for i, p in enumerate(path):
        events += counter.update([track(track_id, p, label)], (W, H), 1000.0 + i)
    return events


def kinds(events: list[Event]) -> list[tuple]:
    return [(e.kind, e.zone or e.line, e.direction) for e in events]


ZONE = ZoneConfig(name="door", points=[(0.4, 0.4), (0.6, 0.4), (0.6, 0.6), (0.4, 0.6)])
LINE = LineConfig(name="gate", points=[(0.8, 0.2), (0.8, 0.8)])  # drawn downwards: "in" = right to left


def test_geometry_helpers():
    assert reference_point((100, 50, 140, 250), (W, H)) == (0.12, 0.5)
    square = [(0.4, 0.4), (0.6, 0.4), (0.6, 0.6), (0.4, 0.6)]
    assert inside((0.5, 0.5), square) and not inside((0.7, 0.5), square) and not inside((0.5, 0.3), square)
    # y points down: walking right along a horizontal line, "right of the line" is below it
    assert side((0, 0.5), (1, 0.5), (0.5, 0.9)) > 0 > side((0, 0.5), (1, 0.5), (0.5, 0.1))


def test_path_through_a_zone_and_across_a_line_gives_exact_events_and_counts():
    counter = ZoneCounter([ZONE], [LINE])
    path = [(0.1, 0.5), (0.3, 0.5), (0.5, 0.5), (0.55, 0.5), (0.7, 0.5), (0.9, 0.5), (0.95, 0.52)]
    events = walk(counter, path)
    assert kinds(events) == [
        ("zone_enter", "door", None),
        ("zone_leave", "door", None),
        ("line_crossed", "gate", "out"),  # the line points down; moving left→right of the picture is "out"
    ]
    assert all(e.track_id == 1 and e.label == "person" for e in events)
    assert events[0].timestamp == 1002.0 and events[1].timestamp == 1004.0 and events[2].timestamp == 1005.0
    # ...and back: into the zone, staying there
    events = walk(counter, [(0.9, 0.5), (0.7, 0.5), (0.5, 0.5)])
    assert kinds(events) == [("line_crossed", "gate", "in"), ("zone_enter", "door", None)]
    status = counter.status()
    assert status["zones"] == [{"name": "door", "occupancy": 1, "classes": {"person": 1}}]
    assert status["lines"] == [
        {"name": "gate", "in": 1, "out": 1, "total": 2, "classes": {"person": {"in": 1, "out": 1}}}
    ]


def test_occupancy_per_class_and_tracks_that_end_leave_the_zone():
    counter = ZoneCounter([ZONE])
    counter.update(
        [track(1, (0.5, 0.5)), track(2, (0.45, 0.45)), track(3, (0.55, 0.5), "car"), track(4, (0.1, 0.1))],
        (W, H), 1.0,
    )  # fmt: skip
    assert counter.status()["zones"][0] == {
        "name": "door",
        "occupancy": 3,
        "classes": {"person": 2, "car": 1},
    }
    # track 2 is lost for a while (not reported) but not ended: it still counts
    counter.update([track(1, (0.5, 0.5)), track(3, (0.55, 0.5), "car")], (W, H), 2.0)
    assert counter.status()["zones"][0]["occupancy"] == 3
    events = counter.update([track(1, (0.5, 0.5))], (W, H), 3.0, ended=[2, 3])
    assert sorted((e.kind, e.track_id, e.label) for e in events) == [
        ("zone_leave", 2, "person"),
        ("zone_leave", 3, "car"),
    ]
    assert counter.status()["zones"][0] == {"name": "door", "occupancy": 1, "classes": {"person": 1}}


def test_classes_filter():
    counter = ZoneCounter(
        [ZoneConfig(name="z", points=ZONE.points, classes=["car"])],
        [LineConfig(name="l", points=LINE.points, classes=["car"])],
    )
    assert walk(counter, [(0.1, 0.5), (0.5, 0.5), (0.9, 0.5)], label="person") == []
    assert kinds(walk(counter, [(0.1, 0.5), (0.5, 0.5), (0.9, 0.5)], track_id=2, label="car")) == [
        ("zone_enter", "z", None),
        ("zone_leave", "z", None),
        ("line_crossed", "l", "out"),
    ]
    status = counter.status()
    assert status["zones"][0]["classes"] == {"car": 0}  # configured classes are always listed
    assert status["lines"][0]["classes"] == {"car": {"in": 0, "out": 1}}


def test_crossing_the_infinite_line_outside_the_segment_does_not_count():
    counter = ZoneCounter(lines=[LINE])  # x = 0.8 from y = 0.2 to y = 0.8
    assert walk(counter, [(0.7, 0.9), (0.9, 0.95), (0.7, 0.9)]) == []  # below the segment's end
    # it went round the end to the right side; coming back through the segment is a real crossing
    assert kinds(walk(counter, [(0.9, 0.9), (0.9, 0.5), (0.7, 0.5)], track_id=2)) == [
        ("line_crossed", "gate", "in")
    ]
    assert counter.status()["lines"][0]["total"] == 1


def test_stopping_on_the_line_then_crossing_counts_once():
    counter = ZoneCounter(lines=[LINE])
    events = walk(counter, [(0.7, 0.5), (0.8, 0.5), (0.8, 0.5), (0.9, 0.5), (0.95, 0.5)])
    assert kinds(events) == [("line_crossed", "gate", "out")]
    # jitter around the line counts each real change of side
    events = walk(counter, [(0.79, 0.5), (0.81, 0.5), (0.79, 0.5)], track_id=5)
    assert kinds(events) == [("line_crossed", "gate", "out"), ("line_crossed", "gate", "in")]


def test_a_diagonal_line_in_a_wide_frame():
    # normalized coordinates: the side test is affine-invariant, so the frame's aspect does not matter
    counter = ZoneCounter(lines=[LineConfig(name="diag", points=[(0.0, 0.0), (1.0, 1.0)])])
    events = walk(counter, [(0.2, 0.6), (0.6, 0.2)])  # below-left → above-right of a line drawn ↘
    assert kinds(events) == [("line_crossed", "diag", "out")]


def test_event_json():
    e = Event(
        "line_crossed", 7, "person", 0.81234, (1.04, 2, 3, 4), 1714564800.5, line="gate", direction="in"
    )
    data = json.loads(e.to_json("cam1"))
    assert data == {
        "camera": "cam1", "event": "line_crossed", "track_id": 7, "label": "person", "score": 0.812,
        "box": [1.0, 2, 3, 4], "zone": None, "line": "gate", "direction": "in", "duration_s": None,
        "timestamp": "2024-05-01T12:00:00.500+00:00", "event_id": None, "clip": None,
    }  # fmt: skip


def test_draw_puts_zones_and_lines_on_the_frame():
    counter = ZoneCounter([ZONE], [LINE])
    walk(counter, [(0.3, 0.5), (0.5, 0.5)])
    image = np.zeros((H, W, 3), np.uint8)
    draw_areas(image, [ZONE], [LINE], counter.status())
    assert image[int(0.4 * H), int(0.5 * W)].any()  # the zone's top edge
    assert image[int(0.5 * H), int(0.8 * W)].any()  # the line
    assert not image[int(0.5 * H), int(0.2 * W)].any()
    blank = np.zeros((H, W, 3), np.uint8)
    draw_areas(blank, [], [], ZoneCounter().status())  # nothing configured: nothing to do
    assert not blank.any()


def _parse(text: str):
    """The events sections as Config will carry them (the wiring adds these fields to edgecam.config.Config)."""
    from pydantic import create_model

    import edgecam.config as c
    from edgecam.config.events import Lines, MqttConfig, SnapshotConfig, Zones

    config = c.Config
    if "zones" not in config.model_fields:
        config = create_model(
            "Config", __base__=c.Config, mqtt=(MqttConfig, MqttConfig()), zones=(Zones, []),
            lines=(Lines, []), snapshots=(SnapshotConfig, SnapshotConfig()),
        )  # fmt: skip
    original, c.Config = c.Config, config
    try:
        return c.parse_config(text)
    finally:
        c.Config = original


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("zones:\n  - name: a\n    points: [[0, 0], [1, 0]]\n", "config.yaml:3: zones[0].points: a zone needs at least 3 points"),
        ("zones:\n  - name: a\n    points: [[0, 0], [1.5, 0], [1, 1]]\n", "zones[0].points[1][0]: must be between 0 and 1 (got 1.5)"),
        ("zones:\n  - name: a\n    points: [[0, 0], [0.5, 0.5], [1, 1]]\n", "the zone's points enclose no area"),
        ("zones:\n  - name: a\n    points: [[0, 0], [1, 0], [1, 1]]\n    classes: [persn]\n", "zones[0].classes[0]: unknown class 'persn'"),
        ("lines:\n  - name: a\n    points: [[0, 0], [1, 0], [1, 1]]\n", "lines[0].points: a line needs exactly 2 points"),
        ("lines:\n  - {name: a, points: [[0, 0], [1, 1]]}\n  - {name: a, points: [[0, 1], [1, 0]]}\n", "config.yaml:1: lines: names must be unique (got 'a' twice)"),
        ("zones:\n  - {name: Door, points: [[0, 0], [1, 0], [1, 1]]}\n  - {name: door, points: [[0, 0], [1, 0], [1, 1]]}\n", "names must be unique in MQTT topics (got 'Door' and 'door')"),
        ("mqtt:\n  camera_name: Front Door\n", "config.yaml:2: mqtt.camera_name: must be lower-case letters"),
        ("mqtt:\n  base_topic: a/#\n", "mqtt.base_topic: must be a non-empty MQTT topic"),
        ("mqtt:\n  port: 0\n", "mqtt.port: must be between 1 and 65535 (got 0)"),
        ("mqtt:\n  passwd: x\n", "mqtt.passwd: unknown key; did you mean 'password_file'?"),
    ],
)  # fmt: skip
def test_config_errors_name_the_key(text, expected):
    with pytest.raises(ConfigError) as info:
        _parse(text)
    assert expected in str(info.value)


def test_config_defaults_and_a_valid_example():
    config = _parse(
        "mqtt: {enabled: true, host: broker}\n"
        "zones:\n  - {name: Front door, points: [[0.1, 0.1], [0.5, 0.1], [0.5, 0.9]], classes: [person]}\n"
        "lines:\n  - {name: gate, points: [[0.8, 0.2], [0.8, 0.8]]}\n"
    )
    assert config.mqtt.enabled and config.mqtt.port == 1883 and config.mqtt.client_id.startswith("edgecam-")
    assert config.mqtt.camera_name and config.mqtt.base_topic == "edgecam"
    assert config.zones[0].points[0] == (0.1, 0.1) and config.lines[0].classes == []
    assert not config.snapshots.enabled

"""/metrics: the text parses with prometheus-client's own parser and carries the metrics the issue lists."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from edgecam.web.metrics import Metrics


def status() -> dict:
    """The shape of Pipeline.status() with the events block the hub adds."""
    return {
        "uptime_s": 12.5,
        "source": {"fps": 14.9, "frames": 300, "dropped": 17, "reconnects": 1},
        "inference": {"fps": 9.5, "frames": 190, "errors": 0},
        "ladder": {"models": [{"id": "a"}, {"id": "b"}], "position": 1},
        "stream": {"clients": 2, "fps": 9.4},
        "tracks": [{"label": "person"}, {"label": "person"}, {"label": "car"}],
        "events": {
            "mqtt": {"connected": True, "queue": 3, "dropped": 5, "published": 40},
            "snapshots": None,
            "zones": [{"name": "door", "occupancy": 1, "classes": {"person": 1}}],
            "lines": [{"name": "gate", "classes": {"person": {"in": 2, "out": 1}}}],
        },
    }


def parse(body: bytes) -> dict[tuple[str, tuple], float]:
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_metrics_parse_and_carry_everything():
    metrics = Metrics(status)
    for ms, labels in [(12.0, ["person", "person"]), (40.0, ["car"]), (250.0, [])]:
        metrics.observe_frame(ms, labels)
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=")
    s = parse(body)
    expected = {
        ("edgecam_capture_fps", ()): 14.9,
        ("edgecam_inference_fps", ()): 9.5,
        ("edgecam_dropped_frames_total", ()): 17,
        ("edgecam_ladder_position", ()): 1,
        ("edgecam_ladder_rungs", ()): 2,
        ("edgecam_stream_clients", ()): 2,
        ("edgecam_tracks", (("label", "person"),)): 2,
        ("edgecam_tracks", (("label", "car"),)): 1,
        ("edgecam_detections_total", (("label", "person"),)): 2,
        ("edgecam_detections_total", (("label", "car"),)): 1,
        ("edgecam_mqtt_queue_depth", ()): 3,
        ("edgecam_mqtt_dropped_total", ()): 5,
        ("edgecam_mqtt_connected", ()): 1,
        ("edgecam_zone_occupancy", (("label", "person"), ("zone", "door"))): 1,
        ("edgecam_line_crossings_total", (("direction", "in"), ("label", "person"), ("line", "gate"))): 2,
        ("edgecam_inference_latency_seconds_count", ()): 3,
        ("edgecam_inference_latency_seconds_bucket", (("le", "0.02"),)): 1,
        ("edgecam_inference_latency_seconds_bucket", (("le", "0.05"),)): 2,
        ("edgecam_inference_latency_seconds_bucket", (("le", "+Inf"),)): 3,
    }
    for key, value in expected.items():
        assert s.get(key) == value, (key, s.get(key))
    assert abs(s[("edgecam_inference_latency_seconds_sum", ())] - 0.302) < 1e-9
    assert ("edgecam_snapshots_saved_total", ()) not in s  # snapshots off: no such series


def test_a_minimal_or_failing_status_still_answers():
    assert parse(Metrics(dict).render()[0])[("edgecam_inference_latency_seconds_count", ())] == 0

    def broken() -> dict:
        raise RuntimeError("boom")

    assert b"edgecam_inference_latency_seconds" in Metrics(broken).render()[0]


def test_two_instances_do_not_collide_and_observing_is_cheap():
    a, b = Metrics(status), Metrics(status)
    start = time.perf_counter()
    for _ in range(1000):
        a.observe_frame(20.0, ["person", "person", "car"])
    per_frame_us = (time.perf_counter() - start) * 1e3
    assert per_frame_us < 200, f"{per_frame_us:.0f} µs per frame"
    assert parse(b.render()[0])[("edgecam_inference_latency_seconds_count", ())] == 0

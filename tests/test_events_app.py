"""End to end: `edgecam run` on vtest.avi with a real mosquitto. Events for people arrive as JSON, counts
are retained, Home Assistant discovery points at real state topics, /metrics parses, snapshots stay under
their byte limit; the broker goes away mid-run (the pipeline keeps its pace, drops are counted) and comes
back (the client reconnects, availability goes online again, publishing resumes)."""

from __future__ import annotations

import json
import os
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_mqtt import EVENT_KEYS, Broker, Subscriber

from support import V1, App, get, wait_for

pytestmark = pytest.mark.slow
SNAPSHOT_BYTES = 300_000


def inference_fps(app: App, seconds: float) -> float:
    """Inferred frames per second over a window (the status' own rate is smoothed over a longer time)."""
    start, t0 = app.status()["inference"]["frames"], time.monotonic()
    time.sleep(seconds)
    return (app.status()["inference"]["frames"] - start) / (time.monotonic() - t0)


def test_events_mqtt_discovery_metrics_snapshots_and_a_broker_outage(tmp_path, model_dir, media_dir):
    broker = Broker(tmp_path)
    broker.start()
    watcher = Subscriber(broker.port, "edgecam/#", "homeassistant/#")
    snapshots = tmp_path / "snapshots"
    config = {
        "camera": {"source": str(media_dir / "vtest.avi"), "realtime": False},
        "detector": {"threads": 1, "classes": ["person", "car"]},
        "stream": {"width": 320},
        "mqtt": {
            "enabled": True, "host": "127.0.0.1", "port": broker.port, "camera_name": "testcam",
            "client_id": "edgecam-e2e", "queue_size": 5, "snapshots_on_new_track": True, "keepalive_s": 5,
        },
        "zones": [{"name": "Middle", "points": [[0.25, 0.2], [0.75, 0.2], [0.75, 0.95], [0.25, 0.95]], "classes": ["person"]}],
        "lines": [{"name": "centre", "points": [[0.5, 0.0], [0.5, 1.0]]}],
        "snapshots": {"enabled": True, "dir": str(snapshots), "max_files": 1000, "max_bytes": SNAPSHOT_BYTES},
    }  # fmt: skip
    app = App(tmp_path, model_dir, config, "--model", V1)
    base = "edgecam/testcam"
    try:
        # -- events: valid JSON with every field, person tracks start and end
        watcher.wait(f"{base}/availability", b"online", timeout=30)

        def person_events(kind: str) -> list[dict]:
            return [e for e in map(json.loads, watcher.on(f"{base}/events")) if e["event"] == kind]

        wait_for(lambda: person_events("track_ended"), 90, what="a track_ended event")
        started, ended = person_events("track_started"), person_events("track_ended")
        assert all(e["camera"] == "testcam" and e["label"] in ("person", "car") for e in started + ended)
        assert any(e["label"] == "person" for e in started) and any(e["label"] == "person" for e in ended)
        for e in started + ended:
            assert set(e) >= EVENT_KEYS
            assert len(e["box"]) == 4 and 0 < e["score"] <= 1 and e["timestamp"].endswith("+00:00")
        wait_for(
            lambda: person_events("zone_enter") and person_events("line_crossed"),
            90,
            what="zone and line events",
        )
        assert {e["direction"] for e in person_events("line_crossed")} <= {"in", "out"}

        # -- retained state and discovery, as a late subscriber (Home Assistant restarting) sees them
        late = Subscriber(broker.port, f"{base}/#", "homeassistant/#")
        late.wait(f"{base}/availability", b"online")
        wait_for(lambda: late.last(f"{base}/objects/person") is not None, 5, what="retained person count")
        assert int(late.last(f"{base}/objects/person")) >= 0 and late.last(f"{base}/objects/car") is not None
        assert json.loads(late.last(f"{base}/zones/middle"))["occupancy"] >= 0
        assert json.loads(late.last(f"{base}/lines/centre"))["total"] >= 1
        assert late.last(f"{base}/snapshot").startswith(b"\xff\xd8")
        retained = {t for t, _, r in late.messages if r}

        def discovery() -> dict:  # retained configs arrive one by one: wait for all four, never read once
            return {t: json.loads(p) for t, p, _ in list(late.messages) if t.startswith("homeassistant/")}

        configs = wait_for(lambda: len(d := discovery()) >= 4 and d, 15, what="the four discovery configs")
        assert {t.split("/")[1] for t in configs} == {"binary_sensor", "sensor"} and len(configs) == 4
        for c in configs.values():
            assert c["name"] and c["unique_id"] and c["device"]["identifiers"]
            assert c["state_topic"] in retained and c["availability_topic"] == f"{base}/availability"
        late.close()

        # -- status and metrics
        events = app.status()["events"]
        assert events["zones"][0]["name"] == "Middle" and events["lines"][0]["total"] >= 1
        assert events["mqtt"]["connected"] and events["recent"]
        code, headers, body = get(app.base + "/metrics")
        assert code == 200 and headers["Content-Type"].startswith("text/plain")
        names = {f.name for f in text_string_to_metric_families(body.decode())}
        assert names >= {
            "edgecam_capture_fps", "edgecam_inference_fps", "edgecam_inference_latency_seconds",
            "edgecam_dropped_frames", "edgecam_ladder_position", "edgecam_stream_clients", "edgecam_detections",
            "edgecam_tracks", "edgecam_mqtt_queue_depth", "edgecam_mqtt_dropped", "edgecam_zone_occupancy",
        }, names  # fmt: skip

        # -- snapshots: files written, folder under its limit
        assert os.listdir(snapshots)
        assert sum(f.stat().st_size for f in snapshots.iterdir()) <= SNAPSHOT_BYTES

        # -- the broker goes away: the pipeline keeps processing, events beyond the queue are dropped
        up_fps = inference_fps(app, 8)
        broker.stop()
        wait_for(lambda: not app.status()["events"]["mqtt"]["connected"], 15, what="the outage to be noticed")
        down_fps = inference_fps(app, 8)
        wait_for(lambda: app.status()["events"]["mqtt"]["dropped"] > 0, 60, what="queue drops")
        print(
            f"\ninference fps with the broker up {up_fps:.1f}, down {down_fps:.1f} ({down_fps / up_fps - 1:+.0%})"
        )
        # Behaviour, not speed (this machine is shared; the figure is in the note): the pipeline keeps
        # processing through the outage, with 3x headroom over the noise seen here (-35 % under load).
        assert down_fps > up_fps / 3, (up_fps, down_fps)

        # -- the broker comes back: reconnect, availability online again, publishing resumes
        broker.start()
        back = Subscriber(broker.port, f"{base}/#")
        back.wait(f"{base}/availability", b"online", timeout=45)
        back.wait(f"{base}/events", timeout=60)
        mqtt = app.status()["events"]["mqtt"]
        assert mqtt["connected"] and mqtt["connects"] == 2 and mqtt["dropped"] > 0
        back.wait(f"{base}/objects/person", timeout=15)  # retained state republished (waited for, not polled)

        # -- a clean stop says offline
        app.stop()
        back.wait(f"{base}/availability", b"offline", timeout=10)
        back.close()
    finally:
        app.stop()
        watcher.close()
        broker.stop()

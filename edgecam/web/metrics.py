"""Prometheus metrics for ``GET /metrics``, in a registry of our own (not prometheus-client's global one,
so tests and several pipelines in one process never collide).

Two kinds:
- per frame, from the inference thread (``observe_frame``, a few microseconds): the inference latency
  histogram and detections per class;
- at scrape time, from the status callable (the ``/api/status`` dict): rates, counters and gauges that the
  pipeline already keeps, so nothing is counted twice.
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0)


def _get(data: Any, path: str, default: Any = None) -> Any:
    for key in path.split("."):
        if not isinstance(data, dict) or key not in data:
            return default
        data = data[key]
    return default if data is None else data


class _StatusCollector:
    """Reads the status at scrape time (a plain class: prometheus-client only needs ``collect``)."""

    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self._status = status

    def collect(self) -> Iterator[Metric]:
        try:
            st = self._status()
        except Exception:  # a scrape must still answer
            log.warning("metrics: status failed", exc_info=True)
            return

        def gauge(name: str, doc: str, path: str) -> GaugeMetricFamily | None:
            value = _get(st, path)
            return (
                GaugeMetricFamily(name, doc, value=float(value)) if isinstance(value, (int, float)) else None
            )

        def counter(name: str, doc: str, path: str) -> CounterMetricFamily | None:
            value = _get(st, path)
            return (
                CounterMetricFamily(name, doc, value=float(value))
                if isinstance(value, (int, float))
                else None
            )

        metrics = [
            gauge("edgecam_capture_fps", "Camera frames per second", "source.fps"),
            counter("edgecam_capture_frames", "Frames captured", "source.frames"),
            counter("edgecam_dropped_frames", "Frames replaced before inference took them", "source.dropped"),
            counter("edgecam_source_reconnects", "Camera reconnects", "source.reconnects"),
            gauge("edgecam_inference_fps", "Inference results per second", "inference.fps"),
            counter("edgecam_inference_frames", "Frames inferred", "inference.frames"),
            counter("edgecam_inference_errors", "Frames that failed inference", "inference.errors"),
            gauge("edgecam_ladder_position", "Model ladder rung in use (0 = heaviest)", "ladder.position"),
            gauge("edgecam_stream_clients", "MJPEG stream viewers", "stream.clients"),
            gauge("edgecam_stream_fps", "Stream frames per second", "stream.fps"),
            gauge("edgecam_uptime_seconds", "Seconds since the start", "uptime_s"),
            gauge("edgecam_mqtt_connected", "1 while connected to the MQTT broker", "events.mqtt.connected"),
            gauge("edgecam_mqtt_queue_depth", "Events waiting to be published", "events.mqtt.queue"),
            counter("edgecam_mqtt_dropped", "Events dropped from a full MQTT queue", "events.mqtt.dropped"),
            counter("edgecam_mqtt_published", "MQTT messages handed to the broker", "events.mqtt.published"),
            counter("edgecam_snapshots_saved", "Snapshots written", "events.snapshots.saved"),
            counter(
                "edgecam_snapshot_errors", "Snapshots that could not be written", "events.snapshots.errors"
            ),
        ]
        yield from (m for m in metrics if m is not None)

        rungs = _get(st, "ladder.models", [])
        if rungs:
            yield GaugeMetricFamily("edgecam_ladder_rungs", "Models on the ladder", value=len(rungs))
        tracks = GaugeMetricFamily("edgecam_tracks", "Live confirmed tracks per class", labels=["label"])
        for label, n in sorted(Tally(str(t.get("label")) for t in _get(st, "tracks", [])).items()):
            tracks.add_metric([label], n)
        yield tracks
        zones = _get(st, "events.zones", [])
        if zones:
            occupancy = GaugeMetricFamily(
                "edgecam_zone_occupancy", "Tracks in a zone per class", labels=["zone", "label"]
            )
            for zone in zones:
                for label, n in zone["classes"].items():
                    occupancy.add_metric([zone["name"], label], n)
            yield occupancy
        lines = _get(st, "events.lines", [])
        if lines:
            crossings = CounterMetricFamily(
                "edgecam_line_crossings", "Line crossings", labels=["line", "direction", "label"]
            )
            for line in lines:
                for label, counts in line["classes"].items():
                    for direction in ("in", "out"):
                        crossings.add_metric([line["name"], direction, label], counts[direction])
            yield crossings


class Metrics:
    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.latency = Histogram(
            "edgecam_inference_latency_seconds",
            "Time per inferred frame: pre-processing, invoke and tracking",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.detections = Counter(
            "edgecam_detections", "Confident detections per class", ["label"], registry=self.registry
        )
        self._per_label: dict[str, Any] = {}
        self.registry.register(_StatusCollector(status))

    def observe_frame(self, inference_ms: float, labels: list[str]) -> None:
        """Once per inferred frame: its latency and the labels of its confident detections."""
        self.latency.observe(inference_ms / 1000)
        for label in labels:
            child = self._per_label.get(label)
            if child is None:
                child = self._per_label[label] = self.detections.labels(label)
            child.inc()

    def render(self) -> tuple[bytes, str]:
        """The body and Content-Type of a ``/metrics`` response."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

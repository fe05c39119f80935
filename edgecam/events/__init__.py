"""Events from tracks: zones and lines, MQTT (with Home Assistant discovery), snapshots, Prometheus metrics.

The pipeline builds one hub (``edgecam.events.hub.build_event_hub``) and calls ``on_frame`` once per
inferred frame; the hub fans events out to queue-backed sinks so the pipeline never waits for a broker or
a disk. This package's ``__init__`` imports nothing, so ``edgecam.config`` can import
``edgecam.config.events`` without pulling in OpenCV, paho or prometheus-client.

Modules: ``settings`` (config sections), ``model`` (Event), ``zones`` (ZoneCounter), ``topics``,
``discovery`` (Home Assistant), ``mqtt`` (MqttPublisher), ``snapshots`` (SnapshotStore), ``metrics``
(Metrics for /metrics), ``hub`` (EventHub, build_event_hub).
"""

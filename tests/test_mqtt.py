"""MQTT against a real mosquitto on a free loopback port: events, retained counts, Home Assistant
discovery, availability with a Last Will, a broker outage (nothing blocks, drops counted, reconnect)."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho
import pytest

from edgecam.capture.slot import Frame
from edgecam.config.events import LineConfig, MqttConfig, ZoneConfig
from edgecam.detect import Detection
from edgecam.events.discovery import discovery_messages
from edgecam.events.hub import EventHub
from edgecam.events.model import Event
from edgecam.events.mqtt import MqttPublisher, client_id_for
from edgecam.events.topics import Topics
from edgecam.events.zones import ZoneCounter
from edgecam.infer.result import ModelInfo, OutputFrame
from edgecam.track import Track, TrackEvent, TrackState

from support import free_port, wait_for

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)

# The required event fields (the spec, written out so a test can disagree with the code).
EVENT_KEYS = {
    "camera",
    "event",
    "track_id",
    "label",
    "score",
    "box",
    "zone",
    "line",
    "direction",
    "timestamp",
}


class Broker:
    """mosquitto on 127.0.0.1:<free port>, no persistence (a restart forgets retained messages)."""

    def __init__(self, tmp_path: Path) -> None:
        if MOSQUITTO is None:
            pytest.skip("mosquitto is not installed (apt install mosquitto)")
        self.port = free_port()
        self.conf = tmp_path / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.log_path = tmp_path / "mosquitto.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
            )
        wait_for(self._listening, 10, 0.05, what=f"mosquitto on port {self.port}")

    def _listening(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"mosquitto exited: {self.log_path.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


class Subscriber:
    """A plain paho client that records every message (topic, payload, retained)."""

    def __init__(self, port: int, *topics: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"test-{time.monotonic_ns()}")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p=None: [c.subscribe(t, qos=1) for t in topics]
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

    def on(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if t == topic]

    def last(self, topic: str) -> bytes | None:
        found = self.on(topic)
        return found[-1] if found else None

    def wait(
        self, topic: str, payload: bytes | None = None, timeout: float = 10, count: int = 1
    ) -> list[bytes]:
        def got():
            found = [p for p in self.on(topic) if payload is None or p == payload]
            return found if len(found) >= count else None

        return wait_for(got, timeout, 0.02, what=f"{count} message(s) {payload!r} on {topic}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


def settings(port: int, **kw) -> MqttConfig:
    return MqttConfig(
        enabled=True, host="127.0.0.1", port=port, camera_name="cam1", client_id="edgecam-test", **kw
    )


def event(track_id: int, kind="track_started") -> Event:
    return Event(kind, track_id, "person", 0.8, (1, 2, 3, 4), time.time())


@pytest.fixture
def publisher_factory():
    made: list[MqttPublisher] = []

    def make(*args, **kw) -> MqttPublisher:
        p = MqttPublisher(*args, **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop(timeout=1)


ZONES = [ZoneConfig(name="Front door", points=[(0.4, 0.4), (0.6, 0.4), (0.6, 0.6), (0.4, 0.6)])]
LINES = [LineConfig(name="gate", points=[(0.8, 0.2), (0.8, 0.8)])]


def test_events_retained_counts_discovery_and_availability(broker, publisher_factory):
    s = settings(broker.port)
    topics = Topics("edgecam", "cam1")
    discovery = discovery_messages("homeassistant", topics, ["person", "car"], ZONES, LINES)
    pub = publisher_factory(s, discovery=discovery)
    watcher = Subscriber(broker.port, "edgecam/#", "homeassistant/#")
    pub.publish_counts({"person": 0, "car": 0}, ZoneCounter(ZONES, LINES).status())
    pub.start()
    watcher.wait(topics.availability, b"online")
    pub.publish_event(event(1))
    data = json.loads(watcher.wait(topics.events)[0])
    assert data | {"camera": "cam1", "event": "track_started", "track_id": 1, "label": "person"} == data
    assert set(data) >= EVENT_KEYS
    pub.publish_counts({"person": 2, "car": 0})
    watcher.wait(topics.objects("person"), b"2")
    wait_for(lambda: pub.queue_depth == 0 and not pub._dirty, 5, what="the queue to drain")

    # a newcomer (Home Assistant starting later) gets every retained value at once
    late = Subscriber(broker.port, "edgecam/#", "homeassistant/#")
    late.wait(topics.availability, b"online")
    wait_for(
        lambda: len([m for m in late.messages if m[0].startswith("homeassistant/")]) == len(discovery), 5
    )
    assert all(retained for _, _, retained in late.messages)
    assert late.last(topics.objects("person")) == b"2" and late.last(topics.objects("car")) == b"0"
    assert json.loads(late.last(topics.zone("Front door"))) == {"occupancy": 0, "classes": {}}
    assert json.loads(late.last(topics.line("gate")))["total"] == 0
    assert late.on(topics.events) == []  # events are not retained

    # discovery: valid JSON, required fields, state topics that exist (retained) on the broker
    configs = {t: json.loads(p) for t, p, _ in late.messages if t.startswith("homeassistant/")}
    assert set(configs) == {
        "homeassistant/binary_sensor/edgecam_cam1/person_detected/config",
        "homeassistant/binary_sensor/edgecam_cam1/car_detected/config",
        "homeassistant/sensor/edgecam_cam1/zone_front_door_occupancy/config",
        "homeassistant/sensor/edgecam_cam1/line_gate_count/config",
    }
    retained_topics = {t for t, _, r in late.messages if r}
    for config in configs.values():
        for key in ("name", "unique_id", "state_topic", "availability_topic", "device"):
            assert config.get(key), (key, config)
        assert config["state_topic"] in retained_topics
        assert config["availability_topic"] == topics.availability
        assert config["device"]["identifiers"] == ["edgecam_cam1"] and config["device"]["name"]
    assert len({c["unique_id"] for c in configs.values()}) == len(configs)
    person = configs["homeassistant/binary_sensor/edgecam_cam1/person_detected/config"]
    assert person["device_class"] == "occupancy" and "value_template" in person
    late.close()

    pub.stop()
    watcher.wait(topics.availability, b"offline")  # a clean stop says so itself
    watcher.close()


def test_last_will_and_reconnect_after_a_dropped_connection(broker, publisher_factory):
    pub = publisher_factory(settings(broker.port, keepalive_s=5))
    watcher = Subscriber(broker.port, "edgecam/#")
    pub.start()
    topic = pub.topics.availability
    watcher.wait(topic, b"online")
    wait_for(lambda: pub.connected, 5)
    pub._client.socket().shutdown(socket.SHUT_RDWR)  # the connection dies without a DISCONNECT
    watcher.wait(topic, b"offline", timeout=15)  # the broker publishes the Last Will
    watcher.wait(topic, b"online", count=2, timeout=40)  # paho reconnects by itself; we say online again
    assert pub.connects == 2
    watcher.close()


def test_broker_outage_never_blocks_counts_drops_and_recovers(broker, publisher_factory):
    pub = publisher_factory(settings(broker.port, queue_size=10))
    pub.start()
    wait_for(lambda: pub.connected, 10, what="the first connection")
    topics = pub.topics
    pub.publish_counts({"person": 1})

    broker.stop()
    wait_for(lambda: not pub.connected, 10, what="the client to notice the outage")
    start = time.perf_counter()
    for i in range(100, 130):
        pub.publish_event(event(i))
        pub.publish_counts({"person": i})
    per_call_ms = (time.perf_counter() - start) * 1e3 / 30
    assert per_call_ms < 2, f"publishing took {per_call_ms:.2f} ms per event while the broker was down"
    assert pub.queue_depth == 10 and pub.dropped == 20  # the oldest went

    broker.start()  # same port, no persistence: every retained value is gone
    watcher = Subscriber(broker.port, "edgecam/#")
    got = watcher.wait(topics.events, count=10, timeout=40)  # within paho's 1-30 s reconnect backoff
    assert [json.loads(p)["track_id"] for p in got] == list(range(120, 130))  # the newest 10, in order
    watcher.wait(topics.availability, b"online")
    assert watcher.last(topics.objects("person")) == b"129"  # the latest count, republished
    assert pub.status() | {"connected": True, "queue": 0, "dropped": 20, "connects": 2} == pub.status()
    watcher.close()


def test_publishing_never_blocks_without_a_broker(publisher_factory):
    pub = publisher_factory(settings(free_port(), queue_size=50))  # nothing listens there
    pub.start()
    start = time.perf_counter()
    for i in range(2000):
        pub.publish_event(event(i))
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0 and pub.queue_depth == 50 and pub.dropped == 1950 and not pub.connected
    t0 = time.monotonic()
    pub.stop(timeout=1)
    assert time.monotonic() - t0 < 3


def _output(tracks: list[Track], sequence: int = 1) -> OutputFrame:
    frame = Frame(np.zeros((100, 200, 3), np.uint8), time.monotonic(), sequence)
    detections = [Detection(t.label or "", t.class_id, t.score, t.box) for t in tracks]
    return OutputFrame(
        frame, detections, tracks, ModelInfo("m", 1.0, "cpu", (300, 300)), 10.0, time.monotonic()
    )


def test_hub_sends_labelled_events_counts_and_a_snapshot(broker):
    s = settings(broker.port, snapshots_on_new_track=True)
    pub = MqttPublisher(s)
    encoded = []

    def encode(output: OutputFrame) -> bytes:
        encoded.append(threading.current_thread().name)
        return b"\xff\xd8jpeg\xff\xd9"

    hub = EventHub(
        "cam1", {0: "person"}.get, ZoneCounter(ZONES), pub, encode=encode, classes=["person", "car"]
    )
    watcher = Subscriber(broker.port, "edgecam/#")
    hub.start()
    try:
        watcher.wait(pub.topics.availability, b"online")
        t = Track(7, (90, 40, 110, 50), 0, 0.9, TrackState.CONFIRMED, (0, 0), 1, 1, 0, 0, "person")
        now = time.monotonic()
        events = hub.on_frame(_output([t]), [TrackEvent("track_started", 7, 0, 0.9, t.box, now)])
        assert [e.kind for e in events] == ["track_started", "zone_enter"]
        wait_for(lambda: watcher.last(pub.topics.objects("person")) == b"1", 5, what="person count 1")
        hub.on_frame(_output([], 2), [TrackEvent("track_ended", 7, 0, 0.9, t.box, now + 3, 3.0)])
        got = [json.loads(p) for p in watcher.wait(pub.topics.events, count=4)]
        assert [(e["event"], e["label"], e["zone"]) for e in got] == [
            ("track_started", "person", None),
            ("zone_enter", "person", "Front door"),
            ("zone_leave", "person", "Front door"),
            ("track_ended", "person", None),
        ]
        assert got[3]["duration_s"] == 3.0
        assert watcher.wait(pub.topics.snapshot)[0] == b"\xff\xd8jpeg\xff\xd9"
        assert encoded == ["mqtt-publisher"]  # the JPEG was made off the pipeline thread
        wait_for(lambda: watcher.last(pub.topics.objects("person")) == b"0", 5)
        assert watcher.last(pub.topics.objects("car")) == b"0"
        status = hub.status()
        assert status["counts"] == {"person": 0, "car": 0} and status["events"] == 4
        assert status["zones"][0]["occupancy"] == 0 and len(status["recent"]) == 4
        assert status["mqtt"]["connected"] and status["snapshots"] is None
    finally:
        hub.stop()
        watcher.close()


def test_build_event_hub_reads_the_password_file_and_resolves_paths(tmp_path):
    from types import SimpleNamespace

    from edgecam.config.events import RecordingConfig, SnapshotConfig
    from edgecam.events.hub import build_event_hub

    (tmp_path / "mqtt.secret").write_text("s3cret\n")
    config = SimpleNamespace(
        mqtt=settings(1883, username="cam", password_file="mqtt.secret"),
        zones=ZONES, lines=LINES,
        snapshots=SnapshotConfig(enabled=True, dir="snaps"),
        recording=RecordingConfig(dir="."),  # snapshots live under recording.dir
    )  # fmt: skip
    hub = build_event_hub(config, lambda p: tmp_path / p, str, None, classes=["person"])
    assert hub.mqtt is not None and hub.mqtt._client._password == b"s3cret"
    assert hub.snapshots is not None and hub.snapshots.directory == tmp_path / "snaps"
    discovery = [t for t in hub.mqtt._state if t.startswith("homeassistant/")]
    assert len(discovery) == 3  # person, the zone, the line
    missing = SimpleNamespace(**{**vars(config), "mqtt": settings(1883, password_file="nope")})
    with pytest.raises(ValueError, match=r"mqtt\.password_file: cannot read"):
        build_event_hub(missing, lambda p: tmp_path / p, str, None)


def test_discovery_uses_default_entity_id_not_the_deprecated_object_id():
    topics = Topics("edgecam", "cam1")
    for topic, payload in discovery_messages("homeassistant", topics, ["person"], ZONES, LINES):
        config = json.loads(payload)
        component = topic.split("/")[1]
        assert "object_id" not in config  # deprecated in HA 2025.10, ignored from 2026.4
        assert config["default_entity_id"] == f"{component}.{config['unique_id']}"


def test_two_boxes_with_the_same_host_name_get_different_default_client_ids(
    broker, publisher_factory, monkeypatch
):
    """Every Pi is `raspberrypi`: the default client id must still differ per machine, or the broker kicks
    one box off whenever the other connects (seen: every 1-2 s, discovery republished each time)."""
    from edgecam.events import mqtt as mqtt_module

    defaults = MqttConfig(enabled=True, host="127.0.0.1", port=broker.port, camera_name="cam1")
    assert "client_id" not in defaults.model_fields_set
    first = publisher_factory(defaults)
    monkeypatch.setattr(mqtt_module, "machine_suffix", lambda: "0badc0de")  # the other Pi
    second = publisher_factory(defaults.model_copy(update={"camera_name": "cam2"}))
    assert first.client_id != second.client_id and first.client_id.startswith(defaults.client_id)
    first.start()
    second.start()
    wait_for(lambda: first.connected and second.connected, 10, what="both boxes connected")
    time.sleep(4)
    assert (first.connects, second.connects) == (1, 1) and first.connected and second.connected
    explicit = settings(broker.port)
    assert client_id_for(explicit) == "edgecam-test"  # a configured id is used as written


def test_a_client_id_taken_over_again_and_again_is_named_in_the_log(broker, publisher_factory, caplog):
    one = publisher_factory(settings(broker.port))
    two = publisher_factory(
        settings(broker.port).model_copy(update={"camera_name": "cam2"})
    )  # same client id
    with caplog.at_level(logging.WARNING, logger="edgecam.events.mqtt"):
        one.start()
        two.start()
        wait_for(lambda: one.takeovers + two.takeovers >= 1, 30, what="the takeover to be recognised")
    text = caplog.text
    assert "another client probably uses the client id 'edgecam-test'" in text and "mqtt.client_id" in text
    status = (one if one.takeovers else two).status()
    assert "client id" in status["last_error"] and status["client_id"] == "edgecam-test"
    lost = [r for r in caplog.records if "connection to" in r.getMessage() and "lost" in r.getMessage()]
    assert len(lost) <= 4  # not one warning per kick


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def test_a_broker_that_pushes_unasked_messages_is_dropped_not_stored(publisher_factory, caplog):
    # Found by attacking the box: a hostile broker (or a man in the middle of plaintext MQTT) sent QoS 2
    # messages edgecam never subscribed to; paho kept each one for a PUBREL that never came (3 GB of RSS).
    # A hostile broker: accepts the CONNECT, then pushes QoS 2 PUBLISHes until the client hangs up.
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    outcome: dict[str, object] = {}

    def hostile() -> None:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(10)
            conn.recv(65536)  # CONNECT
            conn.sendall(b"\x20\x02\x00\x00")  # CONNACK, accepted
            payload = b"A" * 10_000
            sent = 0
            try:
                for mid in range(1, 2001):
                    head = b"\x00\x01x" + mid.to_bytes(2, "big")
                    conn.sendall(b"\x34" + _remaining_length(len(head) + len(payload)) + head + payload)
                    sent += 1
                    time.sleep(0.002)
                outcome["hung_up"] = False
            except OSError:  # the client closed the connection under the pushes
                outcome["hung_up"] = True
            outcome["sent"] = sent

    thread = threading.Thread(target=hostile, daemon=True)
    thread.start()
    with caplog.at_level(logging.WARNING, logger="edgecam.events.mqtt"):
        publisher_factory(settings(port)).start()
        thread.join(30)
    server.close()
    assert outcome.get("hung_up") is True and int(outcome["sent"]) < 2000, outcome
    assert "subscribes to nothing" in caplog.text

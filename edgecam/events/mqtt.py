"""MQTT publishing off the pipeline thread.

The pipeline only appends to a bounded queue (``publish_event``) or replaces a retained value
(``publish_state``) and returns at once. A worker thread hands messages to paho while connected; paho's
own network thread (``loop_start``) connects, reconnects with a 1-30 s backoff and keeps the session alive.

- Events wait in the queue while the broker is away; when it is full the oldest is dropped and counted.
- Retained state (availability, discovery configs, counts, occupancy, the snapshot) is one latest value
  per topic, never dropped, and published again on every connect: a broker restarted without persistence
  gets all of it back.
- The Last Will (``offline``, retained) marks the box unavailable if it vanishes; a clean stop publishes
  ``offline`` itself.

Works with paho-mqtt 2.x (callback API version 2) and with 1.6 (Debian Bookworm's python3-paho-mqtt): the
callbacks below accept both signatures.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from edgecam.config.events import MqttConfig
from edgecam.events.model import Event
from edgecam.events.topics import Topics

log = logging.getLogger(__name__)

Payload = bytes | Callable[[], bytes]
"""A payload, or a function making it (called on the worker thread: e.g. a JPEG encode)."""

_PAHO_2 = hasattr(mqtt, "CallbackAPIVersion")


class _PublishOnlyClient(mqtt.Client):
    """edgecam subscribes to nothing, so a PUBLISH from the broker is one it never asked for: paho would
    keep each QoS 2 one until a PUBREL that a hostile broker (or whoever sits on a plaintext link) never
    sends, and grow without bound (3 GB seen). The connection is dropped instead, and retried as usual."""

    def _handle_publish(self) -> Any:  # paho's handler of an incoming PUBLISH (1.x and 2.x)
        log.warning(
            "MQTT: the broker sent a message although edgecam subscribes to nothing (a misbehaving or "
            "hostile broker?); dropping the connection"
        )
        return mqtt.MQTT_ERR_PROTOCOL


def _make_client(client_id: str) -> mqtt.Client:
    if _PAHO_2:
        return _PublishOnlyClient(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311
        )
    return _PublishOnlyClient(client_id=client_id, protocol=mqtt.MQTTv311)  # pragma: no cover - paho 1.x


def machine_suffix() -> str:
    """Eight hex digits that differ between machines and stay across restarts (from /etc/machine-id), so
    two boxes with the same host name (every Pi is `raspberrypi`) do not share an MQTT client id."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            ident = Path(path).read_text().strip()
        except OSError:
            continue
        if ident:
            return hashlib.sha256(f"edgecam:{ident}".encode()).hexdigest()[:8]
    return f"{uuid.getnode():012x}"[-8:]  # a MAC address, else random (then new each start)


def client_id_for(settings: MqttConfig) -> str:
    """The configured client id as is; the default one gets a per-machine suffix."""
    if "client_id" in settings.model_fields_set:
        return settings.client_id
    return f"{settings.client_id}-{machine_suffix()}"


KICKED_WITHIN_S = 5.0  # a connection the broker closes this soon, again and again, was taken over


def _failed(reason: Any) -> bool:
    """paho 2 passes a ReasonCode, paho 1 an int."""
    return bool(reason.is_failure) if hasattr(reason, "is_failure") else reason != 0


class MqttPublisher:
    def __init__(
        self,
        settings: MqttConfig,
        password: str | None = None,
        ca_file: str | None = None,
        discovery: Iterable[tuple[str, bytes]] = (),
    ) -> None:
        self.settings = settings
        self.topics = Topics(settings.base_topic, settings.camera_name)
        self.queue_size = settings.queue_size
        self._cond = threading.Condition()
        self._events: deque[bytes] = deque()
        self._state: dict[str, Payload] = {self.topics.availability: b"online"}
        self._state.update(discovery)
        self._dirty: dict[str, None] = {}
        self._connected = False
        self._stopping = False
        self._ever_connected = False
        self._outage_logged = False
        self.dropped = 0
        self.published = 0
        self.connects = 0
        self.last_error: str | None = None

        self.client_id = client_id_for(settings)
        self._connected_at = 0.0
        self._quick_drops = 0
        self.takeovers = 0
        client = _make_client(self.client_id)
        client.will_set(self.topics.availability, b"offline", qos=1, retain=True)
        client.reconnect_delay_set(1, 30)
        client.max_queued_messages_set(settings.queue_size)
        if settings.username:
            client.username_pw_set(settings.username, password)
        if settings.tls:
            client.tls_set(ca_certs=ca_file)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self._client = client
        self._worker = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)

    # ---- pipeline side (never blocks) -------------------------------------------------------------------------

    def start(self) -> None:
        s = self.settings
        self._worker.start()
        self._client.connect_async(s.host, s.port, keepalive=s.keepalive_s)
        self._client.loop_start()
        log.info("MQTT: connecting to %s:%d as %s", s.host, s.port, self.client_id)

    def publish_event(self, event: Event) -> None:
        self.publish_raw(event.to_json(self.topics.camera).encode())

    def publish_raw(self, payload: bytes) -> None:
        """Queue one message for the events topic; the oldest one goes if the queue is full."""
        with self._cond:
            if len(self._events) >= self.queue_size:
                self._events.popleft()
                self.dropped += 1
            self._events.append(payload)
            self._cond.notify()

    def publish_state(self, topic: str, payload: Payload) -> None:
        """Set a retained value; only the latest per topic is kept until it is sent."""
        with self._cond:
            if self._state.get(topic) == payload:
                return
            self._state[topic] = payload
            self._dirty[topic] = None
            self._cond.notify()

    def publish_counts(self, objects: dict[str, int], areas: dict[str, Any] | None = None) -> None:
        """Live tracks per class, and zone occupancy and line counts (ZoneCounter.status())."""
        for label, n in objects.items():
            self.publish_state(self.topics.objects(label), str(n).encode())
        for zone in (areas or {}).get("zones", []):
            payload = {"occupancy": zone["occupancy"], "classes": zone["classes"]}
            self.publish_state(self.topics.zone(zone["name"]), json.dumps(payload).encode())
        for line in (areas or {}).get("lines", []):
            payload = {k: line[k] for k in ("in", "out", "total", "classes")}
            self.publish_state(self.topics.line(line["name"]), json.dumps(payload).encode())

    def publish_snapshot(self, jpeg: Payload) -> None:
        self.publish_state(self.topics.snapshot, jpeg)

    @property
    def queue_depth(self) -> int:
        return len(self._events)

    @property
    def connected(self) -> bool:
        return self._connected

    def status(self) -> dict[str, Any]:
        s = self.settings
        return {
            "broker": f"{s.host}:{s.port}",
            "connected": self._connected,
            "queue": len(self._events),
            "queue_size": self.queue_size,
            "dropped": self.dropped,
            "published": self.published,
            "connects": self.connects,
            "client_id": self.client_id,
            "last_error": self.last_error,
        }

    def stop(self, timeout: float = 2.0) -> None:
        """Send what is queued (briefly, if connected), publish ``offline`` and disconnect."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._worker.is_alive():
            self._worker.join(max(0.1, timeout / 2))
        if self._connected:
            try:
                info = self._client.publish(self.topics.availability, b"offline", qos=1, retain=True)
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            except (RuntimeError, ValueError, OSError):
                pass
        self._client.disconnect()
        self._client.loop_stop()

    # ---- paho's thread ----------------------------------------------------------------------------------------

    def _on_connect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None
    ) -> None:
        if _failed(reason):
            self.last_error = f"connection refused: {reason}"
            if not self._outage_logged:
                log.warning(
                    "MQTT: %s:%d refused the connection: %s", self.settings.host, self.settings.port, reason
                )
                self._outage_logged = True
            return
        with self._cond:
            self._connected = True
            self._connected_at = time.monotonic()
            self.connects += 1
            self._outage_logged = False
            # Everything retained again: the broker may have restarted without its retained messages.
            self._dirty = dict.fromkeys(self._state)
            self._cond.notify_all()
        again = " again" if self._ever_connected else ""
        self._ever_connected = True
        log.info("MQTT: connected%s to %s:%d", again, self.settings.host, self.settings.port)

    def _on_disconnect(self, client: Any, userdata: Any, *args: Any) -> None:
        # paho 2: (flags, reason, properties); paho 1: (rc,)
        reason = args[1] if len(args) >= 2 else args[0] if args else None
        with self._cond:
            was_connected, self._connected = self._connected, False
        if not was_connected or self._stopping:
            return
        self.last_error = f"disconnected: {reason}"
        quick = time.monotonic() - self._connected_at < KICKED_WITHIN_S
        self._quick_drops = self._quick_drops + 1 if quick else 0
        if self._quick_drops >= 2:  # dropped right after connecting, again: another client took the id
            self.takeovers += 1
            self.last_error = (
                f"the broker keeps closing the connection right after it opens: another client probably "
                f"uses the client id '{self.client_id}'; give each box its own mqtt.client_id"
            )
            if self._quick_drops == 2 or self._quick_drops % 100 == 0:
                log.warning("MQTT: %s (%d times so far)", self.last_error, self._quick_drops)
            return
        log.warning(
            "MQTT: connection to %s:%d lost (%s); reconnecting",
            self.settings.host,
            self.settings.port,
            reason,
        )

    # ---- worker thread ----------------------------------------------------------------------------------------

    def _ready(self) -> bool:
        return self._stopping or (self._connected and bool(self._dirty or self._events))

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(self._ready)
                if self._stopping and not (self._connected and (self._dirty or self._events)):
                    return
                if self._dirty:
                    topic = next(iter(self._dirty))
                    del self._dirty[topic]
                    payload, retain = self._state[topic], True
                else:
                    topic, payload, retain = self.topics.events, self._events.popleft(), False
            if callable(payload):
                make = payload
                try:
                    payload = make()
                except Exception as exc:  # a failed snapshot encode skips this one message
                    log.warning("MQTT: could not make the payload for %s: %s", topic, exc)
                    continue
                with self._cond:  # keep the bytes, not the function (it may hold a whole frame)
                    if self._state.get(topic) is make:
                        self._state[topic] = payload
            try:
                rc = self._client.publish(topic, payload, qos=1, retain=retain).rc
            except (ValueError, RuntimeError, OSError) as exc:
                log.warning("MQTT: could not publish to %s: %s", topic, exc)
                continue
            if rc == mqtt.MQTT_ERR_SUCCESS:
                self.published += 1
                continue
            # Not connected after all, or paho's own queue is full: keep the message, wait a moment.
            with self._cond:
                if retain:
                    self._dirty.setdefault(topic)
                elif len(self._events) < self.queue_size:
                    self._events.appendleft(payload)
                else:
                    self.dropped += 1
                self._cond.wait(0.2)

"""The event hub: once per inferred frame, track events and tracks in, events out to every sink.

Called from the inference thread, so it only does small Python work and hands the rest to queue-backed
sinks (MQTT's worker, the snapshot writer); a snapshot's JPEG is made on those threads, not here.
Nothing in here raises into the pipeline: a failure is logged (rate-limited) and the frame goes on.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import sqlite3
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edgecam.config.events import LineConfig, MqttConfig, RecordingConfig, SnapshotConfig, ZoneConfig
from edgecam.events.discovery import discovery_messages
from edgecam.events.model import Event
from edgecam.events.mqtt import MqttPublisher
from edgecam.events.snapshots import SnapshotStore, snapshot_name
from edgecam.events.zones import ZoneCounter
from edgecam.infer.result import OutputFrame
from edgecam.track import TrackEvent

if TYPE_CHECKING:  # PyAV and SQLite load only when recording is configured
    from edgecam.events.clips import ClipRecorder
    from edgecam.events.store import EventStore

log = logging.getLogger(__name__)

THUMBNAIL_EVERY_S = 0.5


class EventsConfig(Protocol):
    """The parts of edgecam.config.Config the hub reads."""

    mqtt: MqttConfig
    zones: Sequence[ZoneConfig]
    lines: Sequence[LineConfig]
    snapshots: SnapshotConfig
    recording: RecordingConfig


class EventHub:
    def __init__(
        self,
        camera: str,
        label_of: Callable[[int], str],
        zones: ZoneCounter | None = None,
        mqtt: MqttPublisher | None = None,
        snapshots: SnapshotStore | None = None,
        encode: Callable[[OutputFrame], bytes] | None = None,
        *,
        store: EventStore | None = None,
        recorder: ClipRecorder | None = None,
        recording_classes: Iterable[str] = (),
        public_url: str | None = None,
        classes: Iterable[str] = (),
        snapshot_classes: Iterable[str] = (),
        log_track_events: bool = False,
    ) -> None:
        """``label_of`` names a class id (TrackEvents carry ids only); ``encode`` makes an output frame's
        annotated JPEG (JpegEncoder.encode: once per frame, shared with the stream); ``classes`` are
        published with a count of 0 from the start, so their MQTT state topics exist before any sighting.
        With ``mqtt.snapshots_on_new_track``, a new track's frame is also published as a JPEG."""
        self.camera = camera
        self._label_of = label_of
        self.zones = zones or ZoneCounter()
        self.mqtt = mqtt
        self.snapshots = snapshots
        self._encode = encode
        self.store = store
        self.recorder = recorder
        self._recording_classes = frozenset(recording_classes)
        self._last_thumbnail: tuple[float, int] | None = None  # (frame time, event id) of the last picture
        self._public_url = (public_url or "").rstrip("/")
        self._snapshot_classes = frozenset(snapshot_classes)
        self._mqtt_snapshots = mqtt is not None and mqtt.settings.snapshots_on_new_track
        self._log_track_events = log_track_events
        self._alive: dict[int, str] = {}  # track id → label, from track_started until track_ended
        # set_classes runs on the config thread, _on_frame on the inference thread: both rebuild counts.
        self._count_lock = threading.Lock()
        self._zero = dict.fromkeys(classes, 0)
        self.counts: dict[str, int] = dict(self._zero)
        self.recent: deque[dict[str, Any]] = deque(maxlen=20)
        self.events = 0
        self.errors = 0

    def set_classes(self, classes: Iterable[str]) -> None:
        """A live change of ``detector.classes``: counts list the new classes (0 until seen), not the old."""
        classes = list(classes)
        with self._count_lock:
            self._zero = dict.fromkeys(classes, 0)
            # Objects of a class no longer reported stop counting now, not when their tracks expire.
            self._alive = {track_id: label for track_id, label in self._alive.items() if self._counted(label)}
            self._recount()
        if self.mqtt is not None:
            self._publish_counts()

    def _counted(self, label: str) -> bool:
        """Whether a track of this class counts. A frame already past the detector when the class list
        changed can still start a track of a dropped class; it is not counted (no classes = all count)."""
        return not self._zero or label in self._zero

    def _recount(self) -> None:
        """``counts`` from the live tracks (under ``_count_lock``): every listed class, 0 until seen."""
        self.counts = {**self._zero, **Counter(self._alive.values())}

    def start(self) -> None:
        if self.store is not None:
            self.store.start()
        if self.recorder is not None:
            self.recorder.start()
        if self.snapshots is not None:
            self.snapshots.start()
        if self.mqtt is not None:
            self._publish_counts()
            self.mqtt.start()

    def stop(self) -> None:
        if self.recorder is not None:
            self.recorder.stop()
        if self.store is not None:
            self.store.stop()
        if self.snapshots is not None:
            self.snapshots.stop()
        if self.mqtt is not None:
            self.mqtt.stop()

    # ---- per frame (inference thread) -------------------------------------------------------------------------

    def on_frame(self, output: OutputFrame, track_events: Sequence[TrackEvent]) -> list[Event]:
        try:
            return self._on_frame(output, track_events)
        except Exception:
            self.errors += 1
            if self.errors <= 3 or self.errors % 1000 == 0:
                log.exception("events: frame %d failed (%d so far)", output.frame.sequence, self.errors)
            return []

    def _on_frame(self, output: OutputFrame, track_events: Sequence[TrackEvent]) -> list[Event]:
        offset = time.time() - time.monotonic()  # monotonic (the frame's clock) → wall clock
        started: list[Event] = []
        ended: list[Event] = []
        for te in track_events:
            event = Event(
                te.kind, te.track_id, self._label_of(te.class_id), te.score, te.box, te.timestamp + offset,
                duration_s=te.duration_s,
            )  # fmt: skip
            (started if te.kind == "track_started" else ended).append(event)
        relabelled = False
        with self._count_lock:
            for event in started:
                if self._counted(event.label):
                    self._alive[event.track_id] = event.label
            for event in ended:
                self._alive.pop(event.track_id, None)
            for track in output.tracks:  # with class_aware off, a track's class follows its detections
                known = self._alive.get(track.id)
                if known is not None and track.label and known != track.label:
                    if self._counted(track.label):
                        self._alive[track.id] = track.label
                    else:
                        del self._alive[track.id]
                    relabelled = True
            if track_events or relabelled:
                self._recount()
        areas = self.zones.update(
            output.tracks, output.frame.size, output.frame.timestamp + offset, [e.track_id for e in ended]
        )
        events = [*started, *areas, *ended]
        if not events and not relabelled:
            return events
        for i, event in enumerate(events):
            events[i] = self._emit(event, event.timestamp - offset)
        for event in events[: len(started)]:  # the started events, now with their event ids
            self._snapshot(output, event)
            if self.store is not None and event.event_id is not None and self._encode is not None:
                self._thumbnail(output, event.event_id)
        if self.mqtt is not None:
            self._publish_counts()
        return events

    def _emit(self, event: Event, monotonic_s: float) -> Event:
        event = self._record(event, monotonic_s)
        self.events += 1
        self.recent.append(event.to_dict(self.camera))
        if self._log_track_events or event.kind not in ("track_started", "track_ended"):
            log.debug("%s", event.describe())
        if self.mqtt is not None:
            self.mqtt.publish_event(event)
        return event

    def _record(self, event: Event, monotonic_s: float) -> Event:
        """The event store's row (always), and the clip recorder's start and end marks."""
        if self.store is None:
            return event
        event_id = self.store.on_event(self.camera, event)
        if event_id is None:
            return event
        clip = None
        if self.recorder is not None and (
            not self._recording_classes or event.label in self._recording_classes
        ):
            clip = f"{self._public_url}/clips/{event_id}.mp4"
            if event.kind == "track_started":
                self.recorder.event_started(event_id, monotonic_s)
            elif event.kind == "track_ended":
                self.recorder.event_ended(event_id, monotonic_s)
        return dataclasses.replace(event, event_id=event_id, clip=clip)

    def _thumbnail(self, output: OutputFrame, event_id: int) -> None:
        """Each event's picture (its start frame). In a busy scene many tracks start each second: events that
        start within THUMBNAIL_EVERY_S of the last picture share it instead of encoding another frame."""
        assert self.store is not None and self._encode is not None
        now = output.frame.timestamp
        last = self._last_thumbnail
        if last is not None and now - last[0] < THUMBNAIL_EVERY_S:
            self.store.set_snapshot(event_id, self.store.thumbnail_path(last[1]), 0)
            return
        self._last_thumbnail = (now, event_id)
        self.store.save_thumbnail(event_id, functools.partial(self._encode, output))

    def _snapshot(self, output: OutputFrame, event: Event) -> None:
        if self._encode is None:
            return
        jpeg = functools.partial(self._encode, output)  # encoded on the sink's thread, once per frame
        if self.snapshots is not None and (
            not self._snapshot_classes or event.label in self._snapshot_classes
        ):
            self.snapshots.save(jpeg, snapshot_name(event.timestamp, event.label, event.track_id))
        if self._mqtt_snapshots and self.mqtt is not None:
            self.mqtt.publish_snapshot(jpeg)

    def _publish_counts(self) -> None:
        assert self.mqtt is not None
        self.mqtt.publish_counts(self.counts, self.zones.status())

    # ---- reading (any thread) ---------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The ``events`` block of /api/status."""
        areas = self.zones.status()
        return {
            "counts": dict(self.counts),
            "zones": areas["zones"],
            "lines": areas["lines"],
            "recent": list(self.recent),
            "events": self.events,
            "errors": self.errors,
            "mqtt": self.mqtt.status() if self.mqtt is not None else None,
            "snapshots": self.snapshots.status() if self.snapshots is not None else None,
            "store": self.store.status() if self.store is not None else None,
            "recording": self.recorder.status() if self.recorder is not None else None,
        }

    def draw(self, image: Any) -> None:
        """Zones and lines on an output frame (call it from the annotate step)."""
        self.zones.draw(image)


def read_secret(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"mqtt.password_file: cannot read {path} ({exc})") from exc


def build_event_hub(
    config: EventsConfig,
    resolve: Callable[[str], Path],
    label_of: Callable[[int], str],
    encode: Callable[[OutputFrame], bytes] | None,
    classes: Iterable[str] = (),
    configuration_url: str | None = None,
    stream_fps: float = 15.0,
    public_url: str | None = None,
) -> EventHub:
    """The hub for a config. ``resolve`` turns config paths into real ones (LoadedConfig.resolve);
    ``classes`` are the detector's classes (Home Assistant gets a binary sensor for each)."""
    classes = list(classes)
    zones = ZoneCounter(config.zones, config.lines)
    m = config.mqtt
    publisher = None
    if m.enabled:
        password = read_secret(resolve(m.password_file)) if m.password_file else None
        ca_file = str(resolve(m.ca_file)) if m.ca_file else None
        publisher = MqttPublisher(m, password=password, ca_file=ca_file)
        if m.discovery:
            for topic, payload in discovery_messages(
                m.discovery_prefix, publisher.topics, classes, config.zones, config.lines, configuration_url
            ):
                publisher.publish_state(topic, payload)
    r = config.recording
    recording_dir = resolve(r.dir)
    s = config.snapshots
    snapshot_dir = Path(s.dir) if Path(s.dir).is_absolute() else recording_dir / s.dir
    snapshots = SnapshotStore(snapshot_dir, s.max_files, s.max_bytes) if s.enabled else None
    event_store, recorder = build_recording(r, recording_dir, stream_fps)
    return EventHub(
        m.camera_name, label_of, zones, publisher, snapshots, encode,
        classes=classes, snapshot_classes=s.classes, store=event_store, recorder=recorder,
        recording_classes=r.classes, public_url=public_url,
    )  # fmt: skip


def build_recording(
    r: RecordingConfig, directory: Path, fps: float
) -> tuple[EventStore | None, ClipRecorder | None]:
    """The event store (always: the event list survives restarts) and, with ``recording.enabled`` and
    PyAV present, the clip recorder. A folder that cannot be used costs the memory, never the stream."""
    from edgecam.events.store import EventStore

    try:
        directory.mkdir(parents=True, exist_ok=True)
        store = EventStore(directory, retain_days=r.retain_days, max_gb=r.max_gb, min_free_gb=r.min_free_gb)
    except (OSError, sqlite3.Error) as exc:
        log.error(
            "recording.dir %s cannot be used (%s): events are not kept and no clips are recorded",
            directory,
            exc,
        )
        return None, None
    if not r.enabled:
        return store, None
    try:
        from edgecam.events.clips import ClipRecorder
    except ImportError:
        log.warning(
            "recording.enabled, but PyAV is missing: no clips (Raspberry Pi OS: sudo apt install python3-av; "
            "elsewhere: pip install 'edgecam[recording]'); the event list is kept"
        )
        return store, None
    recorder = ClipRecorder(
        store.clips_dir,
        r.pre_s,
        r.post_s,
        fps,
        on_clip=store.set_clip,
        paused=store.paused,
        max_clip_s=r.max_clip_s,
    )
    return store, recorder

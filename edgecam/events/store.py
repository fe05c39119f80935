"""The event store: one SQLite row per confirmed track, written off the per-frame path.

File ``<recording.dir>/events.db`` (stdlib ``sqlite3``), WAL journal with ``synchronous=NORMAL``: a commit
survives a crash or ``kill -9`` of the process (a power cut may lose the last second or so, never corrupts).
The schema is versioned with ``PRAGMA user_version``; a future change is one function appended to
``MIGRATIONS``.

Writing (pipeline side, any thread, never blocks)
    ``track_started`` assigns the event id at once (from an in-memory counter seeded from the database, so the
    caller can hand it to the clip recorder) and queues the insert; ``track_updated`` / ``track_ended`` find
    the open event by ``(camera, track_id)``; ``on_event`` does all three from an :class:`~edgecam.events.model.Event`.
    A writer thread applies the queue in batches, one transaction per batch. When the queue is full a write
    is dropped and counted (``status()["dropped"]``); the caller never waits.

Open events are never left open forever
    The writer stamps ``updated`` on every open row every ``check_s`` seconds. At the next start, rows still
    open (the process crashed or was killed) are closed with ``end = updated``, i.e. within ``check_s`` of
    the last moment the process knew the track was alive. An ``end`` write that was dropped is healed the same
    way at the next tick.

Media and retention
    ``clip`` and ``snapshot`` are paths relative to the store's directory (``clips/….mp4``). Several events may
    share one clip (see :mod:`edgecam.events.clips`): a clip file is deleted only when no row refers to it,
    and counts once in the byte total. Retention runs on the writer thread at start and every
    ``retention_s``:

    * ``retain_days``: whole events (row and files) whose end is older are deleted;
    * ``max_gb``: while clips + snapshots exceed it, the oldest events lose their media (files deleted,
      ``clip``/``snapshot`` set to NULL) but keep their row: the timeline still says what happened;
    * ``min_free_gb``: when the disk's free space is under this floor, the oldest media are deleted until it
      is above again; if that is not enough (the disk is full of other things), ``pause_reason`` says why and
      the clip recorder is expected to stop starting clips (``ClipRecorder(paused=store.paused)``). It
      resumes by itself once free space is back above the floor (plus 5 %).

Reading (web handlers, any thread)
    ``query``, ``get``, ``media_path``, ``delete`` and ``status`` open their own connection per call (cheap with
    SQLite; call them from an executor in an asyncio server).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edgecam.events.model import Event, iso_time

log = logging.getLogger(__name__)

GB = 1_000_000_000
MAX_LIMIT = 1000
DB_NAME = "events.db"
CLIPS_DIR = "clips"
BATCH_S = 0.05  # a busy scene starts and ends many tracks a second: commit them together
THUMBS_DIR = "thumbs"  # each event's start frame, served as /snapshots/<id>.jpg
MediaKind = Literal["clip", "snapshot"]


# ---- schema -------------------------------------------------------------------------------------------------


def _v1(db: sqlite3.Connection) -> None:
    _script(
        db,
        """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            camera TEXT NOT NULL,
            track_id INTEGER NOT NULL,
            label TEXT NOT NULL,
            start REAL NOT NULL,
            "end" REAL,
            updated REAL NOT NULL,
            score REAL NOT NULL,
            zones TEXT NOT NULL DEFAULT '[]',
            lines TEXT NOT NULL DEFAULT '[]',
            snapshot TEXT,
            snapshot_bytes INTEGER NOT NULL DEFAULT 0,
            clip TEXT,
            clip_bytes INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX events_start ON events (start);
        CREATE INDEX events_label_start ON events (label, start);
        CREATE INDEX events_open ON events ("end") WHERE "end" IS NULL;
        CREATE INDEX events_clip ON events (clip) WHERE clip IS NOT NULL;
        """,
    )


def _script(db: sqlite3.Connection, sql: str) -> None:
    """Statements one by one (``executescript`` would commit the migration's transaction)."""
    for statement in sql.split(";"):
        if statement.strip():
            db.execute(statement)


def _v2(db: sqlite3.Connection) -> None:
    """Indexes for the writer's per-file questions, which scanned the whole table (~20 ms at 200,000 events
    here, once per thumbnail and per freed event): is this snapshot still used by a row, and which is the
    oldest event that still has media (retention by bytes, past months of media-less rows)."""
    _script(
        db,
        """
        CREATE INDEX events_snapshot ON events (snapshot) WHERE snapshot IS NOT NULL;
        CREATE INDEX events_media ON events (start, id) WHERE clip IS NOT NULL OR snapshot IS NOT NULL;
        """,
    )


def _v3(db: sqlite3.Connection) -> None:
    """An index of the zones each event entered: ``query(zone=…)`` read every row's ``zones`` JSON with
    ``json_each`` (52 ms at 200,000 events, count and page, every 10 s poll of the events page).

    One row per (zone, event), keyed ``(zone, start, event_id)``: a zone's events in the page's order, so the
    count is a range of this index alone and the page reads only the rows it shows, with or without a time
    range. ``start`` is copied from the event (it never changes after the insert). ``zones`` stays the
    record (in order, for the API); the writer keeps this table in step wherever ``zones`` changes, and the
    rows go with their event by the cascade (``connect`` turns foreign keys on for every connection that
    writes; ``event_zones_event`` serves the cascade's look-up: without it each deleted event would scan
    this table). Only text values, as ``json_each(zones).value = ?`` matched; a malformed ``zones`` (the
    store never writes one) is left out instead of failing the upgrade."""
    _script(
        db,
        """
        CREATE TABLE event_zones (
            zone TEXT NOT NULL,
            start REAL NOT NULL,
            event_id INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
            PRIMARY KEY (zone, start, event_id)
        ) WITHOUT ROWID;
        CREATE INDEX event_zones_event ON event_zones (event_id);
        INSERT OR IGNORE INTO event_zones (zone, start, event_id)
            SELECT j.value, events.start, events.id FROM events, json_each(events.zones) AS j
            WHERE json_valid(events.zones) AND j.type = 'text'
        """,
    )


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1, _v2, _v3]
"""``MIGRATIONS[n]`` takes a database from ``user_version`` n to n + 1. Append, never edit."""


def connect(path: Path, timeout: float = 5.0) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    db.row_factory = sqlite3.Row
    return db


def migrate(db: sqlite3.Connection) -> int:
    """Bring the schema up to date (each step in its own transaction); returns the version."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise RuntimeError(
            f"events.db has schema version {version}, newer than this edgecam knows ({len(MIGRATIONS)})"
        )
    for step in range(version, len(MIGRATIONS)):
        db.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[step](db)
            db.execute(f"PRAGMA user_version={step + 1}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        log.info("events.db: schema migrated to version %d", step + 1)
    return len(MIGRATIONS)


# ---- records ------------------------------------------------------------------------------------------------


def default_url_for(kind: MediaKind, event_id: int) -> str:
    return f"/clips/{event_id}.mp4" if kind == "clip" else f"/snapshots/{event_id}.jpg"


@dataclass(frozen=True, slots=True)
class EventRecord:
    id: int
    camera: str
    track_id: int
    label: str
    start: float
    """Wall clock, epoch seconds."""
    end: float | None
    """None while the track is alive."""
    score: float
    """The best score seen."""
    zones: tuple[str, ...]
    """Zones entered, in order, each once."""
    lines: tuple[tuple[str, str], ...]
    """(line, direction) crossings, in order, each pair once."""
    snapshot: str | None
    """Relative to the store's directory."""
    clip: str | None
    """Relative to the store's directory; set only once the file is complete."""
    snapshot_bytes: int = 0
    clip_bytes: int = 0

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> EventRecord:
        return cls(
            id=row["id"],
            camera=row["camera"],
            track_id=row["track_id"],
            label=row["label"],
            start=row["start"],
            end=row["end"],
            score=row["score"],
            zones=tuple(json.loads(row["zones"])),
            lines=tuple((d["line"], d["direction"]) for d in json.loads(row["lines"])),
            snapshot=row["snapshot"],
            clip=row["clip"],
            snapshot_bytes=row["snapshot_bytes"],
            clip_bytes=row["clip_bytes"],
        )

    def to_dict(self, url_for: Callable[[MediaKind, int], str] = default_url_for) -> dict[str, Any]:
        """The JSON form for the web API: ISO UTC times, media as URLs (null when there is none)."""
        return {
            "id": self.id,
            "camera": self.camera,
            "track_id": self.track_id,
            "label": self.label,
            "start": iso_time(self.start),
            "end": None if self.end is None else iso_time(self.end),
            "score": round(self.score, 3),
            "zones": list(self.zones),
            "lines": [{"line": name, "direction": direction} for name, direction in self.lines],
            "snapshot": url_for("snapshot", self.id) if self.snapshot else None,
            "clip": url_for("clip", self.id) if self.clip else None,
        }


@dataclass(slots=True)
class _Open:
    id: int
    score: float
    zones: list[str] = field(default_factory=list)
    lines: list[tuple[str, str]] = field(default_factory=list)


# ---- the store ----------------------------------------------------------------------------------------------


class EventStore:
    def __init__(
        self,
        directory: Path | str,
        *,
        retain_days: float = 30.0,
        max_gb: float = 10.0,
        min_free_gb: float = 1.0,
        queue_size: int = 1024,
        check_s: float = 5.0,
        retention_s: float = 60.0,
    ) -> None:
        """``directory`` is ``recording.dir``: the database is ``events.db`` in it, clips go to ``clips/``.
        ``check_s``: how often open rows are stamped and free space is checked; ``retention_s``: how often
        retention runs (also at start)."""
        self.directory = Path(directory)
        self.path = self.directory / DB_NAME
        self.clips_dir = self.directory / CLIPS_DIR
        self.retain_days = retain_days
        self.max_bytes = int(max_gb * GB)
        self.min_free_bytes = int(min_free_gb * GB)
        self.check_s = check_s
        self.retention_s = retention_s
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue(queue_size)
        self._lock = threading.Lock()
        self._open: dict[tuple[str, int], _Open] = {}
        self._next_id = 1
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.pause_reason: str | None = None
        self.dropped = 0
        self.unknown = 0
        self.write_errors = 0
        self.last_error: str | None = None
        self.recovered = 0
        self.retention: dict[str, Any] = {"runs": 0, "deleted_events": 0, "freed_bytes": 0, "last_run": None}
        self._stats: dict[str, int] = {"events": 0, "clip_bytes": 0, "snapshot_bytes": 0}
        self._free_bytes: int | None = None

    # ---- lifecycle --------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Open (create, migrate) the database, close events left open by a crash, start the writer.
        Raises ``OSError`` / ``sqlite3.Error`` if the database cannot be opened at all."""
        self.directory.mkdir(parents=True, exist_ok=True)
        db = connect(self.path)
        try:
            migrate(db)
            with _transaction(db):
                self.recovered = db.execute(
                    'UPDATE events SET "end" = MAX(start, updated) WHERE "end" IS NULL'
                ).rowcount
                # The zone index's rows whose event is gone or moved: only an edit from outside with foreign
                # keys off makes one (the sqlite3 shell's default); zone counts read the index alone.
                stale = db.execute(
                    "DELETE FROM event_zones WHERE NOT EXISTS (SELECT 1 FROM events "
                    "WHERE events.id = event_zones.event_id AND events.start = event_zones.start)"
                ).rowcount
                row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
            self._next_id = (row[0] if row else 0) + 1
            self._refresh_stats(db)
            orphans = self._orphans(db)
        finally:
            db.close()
        _unlink_all(self.directory, orphans)
        if orphans:
            log.info("events: removed %d clip(s) and thumbnail(s) no event refers to", len(orphans))
        if self.recovered:
            log.warning("events: %d event(s) left open by the last run were closed", self.recovered)
        if stale:
            log.warning("events: %d zone index row(s) without their event were removed", stale)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="event-store", daemon=True)
        self._thread.start()

    def _orphans(self, db: sqlite3.Connection) -> list[str]:
        """Finished clips in ``clips/`` and thumbnails in ``thumbs/`` that no row names (the process died, or
        a batch failed, between the file and the row's update), and thumbnails a crash left half-written
        (``thumbs/.<id>.jpg.tmp``). Retention only sees files a row names: these would stay for good.
        Only ``*.mp4`` in ``clips/``: the clip recorder recovers its own ``.part`` files when it starts,
        after the store."""
        orphans: list[str] = []
        for folder, column, ext in ((CLIPS_DIR, "clip", ".mp4"), (THUMBS_DIR, "snapshot", ".jpg")):
            path = self.directory / folder
            if not path.is_dir():
                continue
            known = {
                r[0] for r in db.execute(f"SELECT DISTINCT {column} FROM events WHERE {column} IS NOT NULL")
            }
            for name in os.listdir(path):
                rel = f"{folder}/{name}"
                if (name.endswith(ext) and rel not in known) or (
                    column == "snapshot" and name.endswith(".tmp")
                ):
                    orphans.append(rel)
        return orphans

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued, close the events still open (end = now), stop the writer."""
        if self._thread is None:
            return
        with self._lock:
            self._stopping = True
            now = time.time()
            ending = [(o.id, now) for o in self._open.values()]
            self._open.clear()
        try:
            for event_id, end in ending:
                self._queue.put(("end", event_id, end), timeout=timeout)
            self._queue.put(("stop",), timeout=timeout)
        except queue.Full:
            log.warning("events: the writer did not drain its queue in %.0f s; stopping anyway", timeout)
        self._thread.join(timeout)
        self._thread = None

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far is committed (for tests and shutdown). True if it was."""
        done = threading.Event()
        try:
            self._queue.put(("flush", done), timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    # ---- writing (pipeline side: O(1), never blocks) ----------------------------------------------------------

    def track_started(self, camera: str, track_id: int, label: str, score: float, start: float) -> int | None:
        """A confirmed track appeared (``start``: epoch seconds). Returns the new event's id, or None if the
        write was dropped (queue full) or the store is stopping. A second call for an open track returns its id."""
        with self._lock:
            if self._stopping:
                return None
            known = self._open.get((camera, track_id))
            if known is not None:
                return known.id
            event_id = self._next_id
            if not self._put(("start", event_id, camera, track_id, label, float(score), float(start))):
                return None
            self._next_id += 1
            self._open[(camera, track_id)] = _Open(event_id, float(score))
            return event_id

    def track_updated(
        self,
        camera: str,
        track_id: int,
        *,
        score: float | None = None,
        zone: str | None = None,
        line: str | None = None,
        direction: str | None = None,
    ) -> int | None:
        """A better score, a zone entered, a line crossed (with ``direction``). Returns the event id, or None
        if the track has no open event. Nothing is written when nothing changed."""
        with self._lock:
            event = self._open.get((camera, track_id))
            if event is None:
                self.unknown += 1
                return None
            changed = False
            if score is not None and score > event.score:
                event.score = float(score)
                changed = True
            if zone is not None and zone not in event.zones:
                event.zones.append(zone)
                changed = True
            if line is not None and (line, direction or "") not in event.lines:
                event.lines.append((line, direction or ""))
                changed = True
            if changed:
                self._put(
                    ("update", event.id, event.score, _zones_json(event.zones), _lines_json(event.lines))
                )
            return event.id

    def track_ended(self, camera: str, track_id: int, end: float) -> int | None:
        """The track is gone (``end``: epoch seconds). Returns the event id, or None if it had no open event."""
        with self._lock:
            event = self._open.pop((camera, track_id), None)
            if event is None:
                self.unknown += 1
                return None
            self._put(("end", event.id, float(end)))
            return event.id

    def on_event(self, camera: str, event: Event) -> int | None:
        """Record an :class:`Event` from the hub (any kind); returns the event id it concerns, or None."""
        if event.kind == "track_started":
            return self.track_started(camera, event.track_id, event.label, event.score, event.timestamp)
        if event.kind == "track_ended":
            self.track_updated(camera, event.track_id, score=event.score)
            return self.track_ended(camera, event.track_id, event.timestamp)
        if event.kind == "zone_enter":
            return self.track_updated(camera, event.track_id, score=event.score, zone=event.zone)
        if event.kind == "line_crossed":
            return self.track_updated(
                camera, event.track_id, score=event.score, line=event.line, direction=event.direction
            )
        return self.track_updated(camera, event.track_id, score=event.score)

    def set_clip(self, event_id: int, path: Path | str, nbytes: int) -> None:
        """The event's clip is complete (fits ``ClipRecorder(on_clip=store.set_clip)``). If the event is
        gone (deleted, or its insert was dropped) the file is deleted unless another event uses it."""
        self._put(("media", "clip", event_id, self._relative(path), int(nbytes)))

    def set_snapshot(self, event_id: int, path: Path | str, nbytes: int) -> None:
        self._put(("media", "snapshot", event_id, self._relative(path), int(nbytes)))

    def thumbnail_path(self, event_id: int) -> Path:
        return self.directory / THUMBS_DIR / f"{int(event_id)}.jpg"

    def save_thumbnail(self, event_id: int, jpeg: bytes | Callable[[], bytes]) -> None:
        """The event's picture (its start frame, annotated), written as ``thumbs/<id>.jpg`` on the writer
        thread; ``jpeg`` may be a function (the output frame's encode-once JPEG, shared with the stream)."""
        self._put(("thumb", int(event_id), jpeg))

    def paused(self) -> str | None:
        """Why recording should pause (free disk under the floor), or None. O(1); any thread."""
        return self.pause_reason

    @property
    def recording_paused(self) -> bool:
        return self.pause_reason is not None

    def _put(self, message: tuple[Any, ...]) -> bool:
        try:
            self._queue.put_nowait(message)
            return True
        except queue.Full:
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                log.warning("events: writer behind, %d write(s) dropped so far", self.dropped)
            return False

    def _relative(self, path: Path | str) -> str:
        path = Path(path)
        if path.is_absolute():
            with contextlib.suppress(ValueError):
                return path.relative_to(self.directory).as_posix()
            with contextlib.suppress(ValueError, OSError):
                return path.resolve().relative_to(self.directory.resolve()).as_posix()
        return path.as_posix()

    # ---- reading (any thread, own connection) -----------------------------------------------------------------

    def query(
        self,
        label: str | None = None,
        zone: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        offset: int = 0,
        camera: str | None = None,
    ) -> tuple[list[EventRecord], int]:
        """Events whose start is in ``[since, until)`` (epoch seconds), with ``label`` / that entered
        ``zone`` if given, newest first. ``limit`` is clamped to 1..1000. Returns (page, total matching)."""
        # With a zone, the events come from event_zones' (zone, start, event_id) range, already in the page's
        # order: the count reads that index alone (joining events only for label / camera), the page looks
        # up the rows it shows. CROSS JOIN keeps event_zones outside: a zone query costs the zone's events.
        where, args = [], []
        if zone is not None:
            where.append("z.zone = ?")
            args.append(zone)
        if label is not None:
            where.append("events.label = ?")
            args.append(label)
        if camera is not None:
            where.append("events.camera = ?")
            args.append(camera)
        start, id_ = ("z.start", "z.event_id") if zone is not None else ("events.start", "events.id")
        if since is not None:
            where.append(f"{start} >= ?")
            args.append(float(since))
        if until is not None:
            where.append(f"{start} < ?")
            args.append(float(until))
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        if zone is None:
            rows_from = count_from = "events"
        else:
            rows_from = "event_zones AS z CROSS JOIN events ON events.id = z.event_id"
            count_from = rows_from if label is not None or camera is not None else "event_zones AS z"
        limit = max(1, min(int(limit), MAX_LIMIT))
        offset = max(0, int(offset))
        with self._reader() as db:
            total = db.execute(f"SELECT COUNT(*) FROM {count_from} {clause}", args).fetchone()[0]
            rows = db.execute(
                f"SELECT events.* FROM {rows_from} {clause} ORDER BY {start} DESC, {id_} DESC LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
        return [EventRecord.from_row(r) for r in rows], total

    def get(self, event_id: int) -> EventRecord | None:
        with self._reader() as db:
            row = db.execute("SELECT * FROM events WHERE id = ?", (int(event_id),)).fetchone()
        return EventRecord.from_row(row) if row else None

    def media_path(self, event_id: int, kind: MediaKind) -> Path | None:
        """The file behind ``/clips/<id>.mp4`` or ``/snapshots/<id>.jpg``, if the event has one and it exists."""
        record = self.get(event_id)
        rel = None if record is None else (record.clip if kind == "clip" else record.snapshot)
        if rel is None:
            return None
        path = self.directory / rel
        return path if path.is_file() else None

    def delete(self, event_id: int) -> bool:
        """Delete an event: its row, its snapshot, and its clip unless another event shares it."""
        event_id = int(event_id)
        with self._lock:
            for key, event in list(self._open.items()):
                if event.id == event_id:
                    del self._open[key]
        with self._writer() as db, _transaction(db):
            row = db.execute("SELECT * FROM events WHERE id = ?", (event_id,)).fetchone()
            if row is None:
                return False
            files = self._delete_rows(db, [row])
        _unlink_all(self.directory, files)
        return True

    def status(self) -> dict[str, Any]:
        """The ``recording`` / ``store`` block of /api/status (no database access: numbers from the writer)."""
        db_bytes = 0
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                db_bytes += os.stat(f"{self.path}{suffix}").st_size
        return {
            "db": str(self.path),
            "events": self._stats["events"],
            "open": len(self._open),
            "db_bytes": db_bytes,
            "clip_bytes": self._stats["clip_bytes"],
            "snapshot_bytes": self._stats["snapshot_bytes"],
            "free_bytes": self._free_bytes,
            "paused": self.pause_reason is not None,
            "pause_reason": self.pause_reason,
            "queued": self._queue.qsize(),
            "dropped": self.dropped,
            "write_errors": self.write_errors,
            "last_error": self.last_error,
            "recovered_at_start": self.recovered,
            "retention": {
                "retain_days": self.retain_days,
                "max_gb": self.max_bytes / GB,
                "min_free_gb": self.min_free_bytes / GB,
                **self.retention,
            },
        }

    @contextlib.contextmanager
    def _reader(self):
        db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA query_only=1")
            yield db
        finally:
            db.close()

    @contextlib.contextmanager
    def _writer(self):
        db = connect(self.path)
        try:
            yield db
        finally:
            db.close()

    # ---- writer thread ----------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            db = connect(self.path)
        except Exception as exc:  # the file was there a moment ago; report and give up
            self._error(f"cannot open {self.path}: {exc}")
            return
        next_check = 0.0
        next_retention = 0.0
        try:
            while True:
                try:
                    first = self._queue.get(timeout=max(0.01, next_check - time.monotonic()))
                except queue.Empty:
                    first = None
                batch = [first] if first is not None else []
                if first is not None and first[0] not in ("stop", "flush"):
                    time.sleep(BATCH_S)  # gather what comes next: one transaction, not one per event
                while len(batch) < 500:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                stop = self._apply(db, batch)
                now = time.monotonic()
                if now >= next_check or stop:
                    self._guarded(self._heartbeat, db)
                    self._guarded(self._check_disk, db)
                    next_check = now + self.check_s
                if now >= next_retention:
                    self._guarded(self._retain, db)
                    next_retention = now + self.retention_s
                if stop:
                    return
        finally:
            db.close()

    def _guarded(self, step: Callable[[sqlite3.Connection], None], db: sqlite3.Connection) -> None:
        try:
            step(db)
        except Exception as exc:
            with contextlib.suppress(sqlite3.Error):
                if db.in_transaction:
                    db.execute("ROLLBACK")
            self._error(f"{step.__name__.strip('_')}: {exc}")

    def _apply(self, db: sqlite3.Connection, batch: list[tuple[Any, ...]]) -> bool:
        stop = False
        flushed: list[threading.Event] = []
        orphans: list[str] = []
        batch = [self._thumbnail(m) if m[0] == "thumb" else m for m in batch]
        writes = [m for m in batch if m[0] not in ("stop", "flush", "none")]
        for m in batch:
            if m[0] == "stop":
                stop = True
            elif m[0] == "flush":
                flushed.append(m[1])
        if writes:
            try:
                with _transaction(db):
                    for m in writes:
                        orphan = self._write(db, m)
                        if orphan:
                            orphans.append(orphan)
            except sqlite3.Error as exc:
                self.write_errors += len(writes)
                self._error(f"{len(writes)} write(s) lost: {exc}")
            else:
                _unlink_all(self.directory, orphans)
        for done in flushed:
            done.set()
        return stop

    def _thumbnail(self, m: tuple[Any, ...]) -> tuple[Any, ...]:
        """Write a queued thumbnail file; it becomes the event's ``snapshot``."""
        _, event_id, payload = m
        if self.pause_reason is not None:
            return ("none",)
        try:
            data = payload() if callable(payload) else payload
            path = self.thumbnail_path(event_id)
            path.parent.mkdir(exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except Exception as exc:  # a picture is never worth the event
            self._error(f"thumbnail of event {event_id}: {exc}")
            return ("none",)
        return ("media", "snapshot", event_id, f"{THUMBS_DIR}/{path.name}", len(data))

    def _write(self, db: sqlite3.Connection, m: tuple[Any, ...]) -> str | None:
        kind = m[0]
        now = time.time()
        if kind == "start":
            _, event_id, camera, track_id, label, score, start = m
            db.execute(
                "INSERT INTO events (id, camera, track_id, label, start, updated, score) VALUES (?,?,?,?,?,?,?)",
                (event_id, camera, track_id, label, start, max(start, now), score),
            )
            self._stats["events"] += 1
        elif kind == "update":
            _, event_id, score, zones, lines = m
            old = db.execute("SELECT zones FROM events WHERE id = ?", (event_id,)).fetchone()
            if old is None:  # deleted, or its insert was dropped
                return None
            db.execute(
                "UPDATE events SET score = ?, zones = ?, lines = ?, updated = ? WHERE id = ?",
                (score, zones, lines, now, event_id),
            )
            if old[0] != zones:  # most updates are a better score: the index is left alone
                _index_zones(db, event_id, zones)
        elif kind == "end":
            _, event_id, end = m
            db.execute(
                'UPDATE events SET "end" = MAX(start, ?), updated = ? WHERE id = ?', (end, now, event_id)
            )
        elif kind == "media":
            _, what, event_id, rel, nbytes = m
            column = "clip" if what == "clip" else "snapshot"
            old = db.execute(f"SELECT {column} FROM events WHERE id = ?", (event_id,)).fetchone()
            if old is None:  # the event is gone: keep the file only if another event uses it
                return None if self._referenced(db, column, rel) else rel
            shared = self._referenced(db, column, rel)
            db.execute(
                f"UPDATE events SET {column} = ?, {column}_bytes = ? WHERE id = ?", (rel, nbytes, event_id)
            )
            if not shared:
                self._stats[f"{column}_bytes"] += nbytes
            if old[0] and old[0] != rel and not self._referenced(db, column, old[0]):
                return old[0]
        return None

    @staticmethod
    def _referenced(db: sqlite3.Connection, column: str, rel: str, other_than: int = -1) -> bool:
        """Does a row (other than ``other_than``) refer to this file?"""
        row = db.execute(f"SELECT 1 FROM events WHERE {column} = ? AND id != ? LIMIT 1", (rel, other_than))
        return row.fetchone() is not None

    def _heartbeat(self, db: sqlite3.Connection) -> None:
        """Stamp the open rows as alive; close the ones nobody holds open any more (a dropped ``end``)."""
        with self._lock:
            alive = [e.id for e in self._open.values()]
        now = time.time()
        with _transaction(db):
            db.execute("CREATE TEMP TABLE IF NOT EXISTS alive (id INTEGER PRIMARY KEY)")
            db.execute("DELETE FROM temp.alive")
            db.executemany("INSERT INTO temp.alive (id) VALUES (?)", [(i,) for i in alive])
            db.execute('UPDATE events SET updated = ? WHERE "end" IS NULL AND id IN temp.alive', (now,))
            healed = db.execute(
                'UPDATE events SET "end" = MAX(start, updated) WHERE "end" IS NULL AND id NOT IN temp.alive'
            ).rowcount
        if healed:
            log.info("events: closed %d event(s) whose end was never written", healed)

    def _check_disk(self, db: sqlite3.Connection) -> None:
        if self.min_free_bytes <= 0:
            self.pause_reason = None
            return
        free = self._free()
        if free < self.min_free_bytes:
            try:
                free = self._free_media(db, lambda: self._free() >= self.min_free_bytes * 1.05)
            except sqlite3.Error as exc:
                self._error(f"freeing disk space: {exc}")
                free = self._free()
        if free < self.min_free_bytes:
            if self.pause_reason is None:
                log.warning("events: recording paused: %s", self._low_disk(free))
            self.pause_reason = self._low_disk(free)
        elif self.pause_reason is not None and free >= self.min_free_bytes * 1.05:
            log.info("events: recording resumes (%.2f GB free)", free / GB)
            self.pause_reason = None

    def _low_disk(self, free: int) -> str:
        return (
            f"low disk: {free / 1e6:.1f} MB free on {self.directory}, under recording.min_free_gb "
            f"({self.min_free_bytes / 1e6:.1f} MB) with no old clips left to delete"
        )

    def _free(self) -> int:
        self._free_bytes = shutil.disk_usage(self.directory).free
        return self._free_bytes

    def _retain(self, db: sqlite3.Connection) -> None:
        """Age, then bytes (see the module docstring). Oldest first."""
        deleted = 0
        if self.retain_days > 0:
            cutoff = time.time() - self.retain_days * 86400
            while True:
                with _transaction(db):
                    # "end" >= start always (every end is MAX(start, …)): bounding start too makes this a
                    # range of events_start, not a walk of the whole index every retention_s (~20 ms at
                    # 200,000 events, when nothing is old enough to go).
                    rows = db.execute(
                        'SELECT * FROM events WHERE start < ? AND "end" IS NOT NULL AND "end" < ? '
                        "ORDER BY start LIMIT 200",
                        (cutoff, cutoff),
                    ).fetchall()
                    files = self._delete_rows(db, rows)
                _unlink_all(self.directory, files, self.retention)
                deleted += len(rows)
                if len(rows) < 200:
                    break
        self.retention["runs"] += 1
        self.retention["deleted_events"] += deleted
        self.retention["last_run"] = iso_time(time.time())
        self._refresh_stats(db)  # exact totals; then kept current by _unreferenced as files go
        if self.max_bytes > 0:  # (_free_media sums them again when it is done)
            self._free_media(
                db, lambda: self._stats["clip_bytes"] + self._stats["snapshot_bytes"] <= self.max_bytes
            )

    def _free_media(self, db: sqlite3.Connection, enough: Callable[[], bool]) -> int:
        """Delete the oldest events' media until ``enough()``; returns the free bytes after."""
        while not enough():  # one event at a time: stop as soon as it is enough
            row = db.execute(
                "SELECT * FROM events WHERE clip IS NOT NULL OR snapshot IS NOT NULL ORDER BY start, id LIMIT 1"
            ).fetchone()
            if row is None:
                break
            # Files first: on a full disk SQLite cannot write until something is freed. If the update then
            # fails, the row points at missing files (served as 404) and the next pass clears it.
            _unlink_all(self.directory, self._unreferenced(db, row), self.retention)
            with _transaction(db):
                db.execute(
                    "UPDATE events SET clip = NULL, clip_bytes = 0, snapshot = NULL, snapshot_bytes = 0 WHERE id = ?",
                    (row["id"],),
                )
        self._refresh_stats(db)
        return self._free() if self.min_free_bytes > 0 else 0

    def _delete_rows(self, db: sqlite3.Connection, rows: Iterable[sqlite3.Row]) -> list[str]:
        files: list[str] = []
        for row in rows:
            db.execute("DELETE FROM events WHERE id = ?", (row["id"],))
            files += self._unreferenced(db, row)
            self._stats["events"] -= 1
        return files

    def _unreferenced(self, db: sqlite3.Connection, row: sqlite3.Row) -> list[str]:
        """The row's files that no other row refers to."""
        files = []
        if row["snapshot"] and not self._referenced(db, "snapshot", row["snapshot"], row["id"]):
            files.append(row["snapshot"])
            self._stats["snapshot_bytes"] -= row["snapshot_bytes"]
        if row["clip"] and not self._referenced(db, "clip", row["clip"], row["id"]):
            files.append(row["clip"])
            self._stats["clip_bytes"] -= row["clip_bytes"]
        return files

    def _refresh_stats(self, db: sqlite3.Connection) -> None:
        self._stats["events"] = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        self._stats["clip_bytes"] = int(
            db.execute(
                "SELECT COALESCE(SUM(b), 0) FROM (SELECT MAX(clip_bytes) AS b FROM events "
                "WHERE clip IS NOT NULL GROUP BY clip)"
            ).fetchone()[0]
        )
        self._stats["snapshot_bytes"] = int(  # rows with a snapshot only (events_snapshot), not the table
            db.execute(
                "SELECT COALESCE(SUM(snapshot_bytes), 0) FROM events WHERE snapshot IS NOT NULL"
            ).fetchone()[0]
        )

    def _error(self, message: str) -> None:
        if message != self.last_error:
            log.warning("events: %s", message)
        self.last_error = message


# ---- helpers ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection):
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _unlink_all(directory: Path, files: Iterable[str], counters: dict[str, Any] | None = None) -> None:
    for rel in files:
        path = directory / rel
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("events: cannot delete %s: %s", path, exc)
            continue
        if counters is not None:
            counters["freed_bytes"] += size


def _index_zones(db: sqlite3.Connection, event_id: int, zones: str) -> None:
    """Bring the event's ``event_zones`` rows in step with its ``zones`` JSON (as the v3 migration fills them)."""
    db.execute(
        "DELETE FROM event_zones WHERE event_id = ? AND zone NOT IN "
        "(SELECT value FROM json_each(?) WHERE type = 'text')",
        (event_id, zones),
    )
    db.execute(
        "INSERT OR IGNORE INTO event_zones (zone, start, event_id) "
        "SELECT j.value, events.start, events.id FROM events, json_each(?) AS j "
        "WHERE events.id = ? AND j.type = 'text'",
        (zones, event_id),
    )


def _zones_json(zones: list[str]) -> str:
    return json.dumps(zones, separators=(",", ":"))


def _lines_json(lines: list[tuple[str, str]]) -> str:
    return json.dumps([{"line": n, "direction": d} for n, d in lines], separators=(",", ":"))

"""EventStore on a real SQLite file: restart, kill -9, queries, retention, deletes, a full queue, a full disk."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edgecam.events.model import Event
from edgecam.events.store import MAX_LIMIT, MIGRATIONS, EventStore, connect, migrate

from support import wait_for

REPO = Path(__file__).resolve().parent.parent
DAY = 86400.0


@pytest.fixture
def store(tmp_path: Path):
    s = EventStore(tmp_path, min_free_gb=0, retain_days=0, check_s=0.2)
    s.start()
    yield s
    s.stop()


def add(
    store: EventStore, camera="cam", track_id=1, label="person", start=1000.0, end=None, score=0.5, **update
):
    event_id = store.track_started(camera, track_id, label, score, start)
    assert event_id is not None
    if update:
        store.track_updated(camera, track_id, **update)
    if end is not None:
        store.track_ended(camera, track_id, end)
    return event_id


def media(store: EventStore, name: str, size: int) -> Path:
    path = store.directory / "clips" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


def test_schema_is_versioned_and_refuses_a_newer_one(tmp_path: Path) -> None:
    s = EventStore(tmp_path, min_free_gb=0, retain_days=0)
    s.start()
    s.stop()
    db = sqlite3.connect(tmp_path / "events.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    db.commit()
    with pytest.raises(RuntimeError, match="newer"):
        migrate(db)


def test_a_v1_database_upgrades_in_place_and_the_per_file_questions_use_indexes(tmp_path: Path) -> None:
    """Months of events: "is this file still used?" and "the oldest event with media" must not scan the
    table (each ran ~20 ms at 200,000 rows, once per thumbnail and per freed event)."""
    db = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    db.execute("BEGIN")
    MIGRATIONS[0](db)
    db.execute("PRAGMA user_version=1")
    db.executemany(
        "INSERT INTO events (camera, track_id, label, start, updated, score, snapshot) VALUES ('c', ?, 'cat', ?, ?, 1, ?)",
        [(i, float(i), float(i), f"thumbs/{i}.jpg" if i % 2 else None) for i in range(2000)],
    )
    db.execute("COMMIT")
    db.close()
    s = EventStore(tmp_path, min_free_gb=0, retain_days=0)
    s.start()
    s.stop()
    db = sqlite3.connect(tmp_path / "events.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 2000
    used = "SELECT 1 FROM events WHERE {column} = ? AND id != ? LIMIT 1"  # as the writer asks them
    oldest = "SELECT * FROM events WHERE clip IS NOT NULL OR snapshot IS NOT NULL ORDER BY start, id LIMIT 1"
    store_source = (REPO / "edgecam" / "events" / "store.py").read_text()
    assert used in store_source and oldest in store_source
    for index, sql, args in (
        ("events_snapshot", used.format(column="snapshot"), ("thumbs/1.jpg", -1)),
        ("events_clip", used.format(column="clip"), ("clips/a.mp4", -1)),
        ("events_media", oldest, ()),
    ):
        plan = " ".join(row[-1] for row in db.execute("EXPLAIN QUERY PLAN " + sql, args))
        assert f"USING INDEX {index}" in plan or f"USING COVERING INDEX {index}" in plan, (sql, plan)


def test_retention_and_the_byte_totals_do_not_walk_the_table(tmp_path: Path) -> None:
    """Every retention_s the writer asks "what is old enough to go?" and sums the media bytes. Months of
    events, most of them long past their media, must not be walked each time (the age question walked the
    whole start index, ~20 ms at 200,000 events when nothing was old enough; the snapshot sum scanned the
    table, ~14 ms, three times a run). Every statement of a retention run is checked with EXPLAIN QUERY
    PLAN; only COUNT(*) (a covering index, ~0.6 ms at 200,000) may read the whole index."""
    now = time.time()
    s = EventStore(tmp_path, min_free_gb=0, retain_days=30, max_gb=1.0)
    s.start()
    s.stop()
    db = connect(tmp_path / "events.db")
    db.executemany(
        'INSERT INTO events (camera, track_id, label, start, "end", updated, score, snapshot, snapshot_bytes) '
        "VALUES ('c', ?, 'cat', ?, ?, ?, 1, ?, ?)",
        [
            (i, t, t + 5, t + 5, f"thumbs/{i}.jpg" if i >= 1900 else None, 100 if i >= 1900 else 0)
            for i in range(2000)
            for t in [now - 20 * DAY + i]
        ],
    )
    statements: list[str] = []
    db.set_trace_callback(statements.append)
    s._retain(db)
    db.set_trace_callback(None)
    assert s._stats["events"] == 2000 and s._stats["snapshot_bytes"] == 100 * 100
    reads = {q for q in statements if q.lstrip().upper().startswith("SELECT") and "events" in q}
    assert any('"end" <' in q for q in reads) and any("SUM(snapshot_bytes)" in q for q in reads)
    for sql in reads:
        plan = [row[-1] for row in db.execute("EXPLAIN QUERY PLAN " + sql)]
        walks = [step for step in plan if step.startswith("SCAN events")]
        if sql.strip() == "SELECT COUNT(*) FROM events":
            walks = [step for step in walks if "COVERING INDEX" not in step]
        assert not walks, (sql, plan)
    db.close()


def test_thumbnails_no_event_names_and_half_written_ones_are_removed_at_start(tmp_path: Path) -> None:
    """A crash (or a failed batch) between writing a thumbnail and recording it in its row leaves a file
    no row names: retention never sees it, so without this each one would stay on the disk for good."""
    s = EventStore(tmp_path, min_free_gb=0, retain_days=0)
    s.start()
    event_id = add(s, start=1000.0, end=1001.0)
    s.save_thumbnail(event_id, b"jpeg")
    assert s.flush()
    named = s.thumbnail_path(event_id)
    assert s.get(event_id).snapshot == f"thumbs/{named.name}"
    s.stop()
    orphan = s.thumbnail_path(event_id + 1)
    orphan.write_bytes(b"jpeg")
    half = named.with_name(f".{event_id + 2}.jpg.tmp")
    half.write_bytes(b"jp")
    s.start()
    s.stop()
    assert named.exists() and not orphan.exists() and not half.exists()


def test_a_track_becomes_one_row_that_survives_a_restart(tmp_path: Path) -> None:
    s = EventStore(tmp_path, min_free_gb=0, retain_days=0)
    s.start()
    first = s.track_started("cam", 7, "person", 0.6, 1000.0)
    assert s.track_started("cam", 7, "person", 0.6, 1000.0) == first  # same open track, same event
    s.track_updated("cam", 7, score=0.9, zone="porch")
    s.track_updated("cam", 7, score=0.7, zone="porch")  # lower score, same zone: nothing changes
    s.track_updated("cam", 7, line="gate", direction="in")
    assert s.track_ended("cam", 7, 1012.5) == first
    s.stop()

    s = EventStore(tmp_path, min_free_gb=0, retain_days=0)
    s.start()
    try:
        record = s.get(first)
        assert record is not None
        assert (record.label, record.start, record.end, record.score) == ("person", 1000.0, 1012.5, 0.9)
        assert record.zones == ("porch",)
        assert record.lines == (("gate", "in"),)
        assert s.recovered == 0
        second = s.track_started("cam", 7, "person", 0.5, 2000.0)
        assert second is not None and second > first  # ids are never reused
        d = record.to_dict()
        assert d["start"] == "1970-01-01T00:16:40.000+00:00" and d["end"] == "1970-01-01T00:16:52.500+00:00"
        assert {"id", "label", "start", "end", "score", "zones", "snapshot", "clip"} <= d.keys()
        assert d["clip"] is None and d["snapshot"] is None
    finally:
        s.stop()


def test_on_event_records_what_the_hub_emits(store: EventStore) -> None:
    box = (0.0, 0.0, 1.0, 1.0)
    event_id = store.on_event("cam", Event("track_started", 3, "car", 0.55, box, 100.0))
    assert store.on_event("cam", Event("zone_enter", 3, "car", 0.8, box, 101.0, zone="drive")) == event_id
    store.on_event("cam", Event("line_crossed", 3, "car", 0.6, box, 102.0, line="gate", direction="out"))
    store.on_event("cam", Event("track_ended", 3, "car", 0.6, box, 105.0, duration_s=5.0))
    assert store.flush()
    record = store.get(event_id)
    assert record.end == 105.0 and record.score == 0.8 and record.zones == ("drive",)
    assert record.lines == (("gate", "out"),)


def test_queries_filter_page_and_count(store: EventStore) -> None:
    for i in range(30):
        label = "person" if i % 3 else "car"
        add(
            store, track_id=i, label=label, start=1000.0 + i, end=1000.5 + i, zone="porch" if i < 10 else None
        )
    assert store.flush()

    page, total = store.query()
    assert total == 30 and [r.start for r in page[:3]] == [1029.0, 1028.0, 1027.0]  # newest first
    page, total = store.query(label="car")
    assert total == 10 and all(r.label == "car" for r in page)
    page, total = store.query(zone="porch")
    assert total == 10 and all("porch" in r.zones for r in page)
    page, total = store.query(label="person", zone="porch")
    assert total == 6
    page, total = store.query(since=1010.0, until=1020.0)
    assert total == 10 and min(r.start for r in page) == 1010.0 and max(r.start for r in page) == 1019.0
    page, total = store.query(limit=5, offset=10)
    assert total == 30 and [r.start for r in page] == [1019.0, 1018.0, 1017.0, 1016.0, 1015.0]
    page, total = store.query(zone="nowhere")
    assert (page, total) == ([], 0)


JSON_EACH = "EXISTS (SELECT 1 FROM json_each(events.zones) WHERE json_each.value = ?)"  # the v2 formulation


def old_query(db: sqlite3.Connection, zone, label=None, since=None, until=None, limit=100, offset=0):
    """query(zone=…) as it was asked before event_zones: (ids of the page, total)."""
    where, args = [JSON_EACH], [zone]
    for clause, value in (("label = ?", label), ("start >= ?", since), ("start < ?", until)):
        if value is not None:
            where.append(clause)
            args.append(value)
    clause = " AND ".join(where)
    total = db.execute(f"SELECT COUNT(*) FROM events WHERE {clause}", args).fetchone()[0]
    ids = db.execute(
        f"SELECT id FROM events WHERE {clause} ORDER BY start DESC, id DESC LIMIT ? OFFSET ?",
        [*args, limit, offset],
    )
    return [r[0] for r in ids], total


def test_a_v2_database_upgrades_and_zone_queries_match_json_each(tmp_path: Path) -> None:
    """The v3 migration fills event_zones from the rows' zones JSON; every filter combination with a zone
    returns what the json_each formulation returned (same rows, same order, same total)."""
    db = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    db.execute("BEGIN")
    MIGRATIONS[0](db)
    MIGRATIONS[1](db)
    db.execute("PRAGMA user_version=2")
    zone_sets = [
        "[]",
        '["porch"]',
        '["drive","porch"]',
        '["gate","drive"]',
        '["drive","drive"]',
        '[1,"porch"]',
    ]
    db.executemany(
        'INSERT INTO events (camera, track_id, label, start, "end", updated, score, zones) '
        "VALUES ('c', ?, ?, ?, ?, ?, 1, ?)",
        [
            # starts repeat (i // 2): the page's order needs its id tie-break
            (i, "cat" if i % 3 else "car", float(i // 2), i // 2 + 1.0, i // 2 + 1.0, zone_sets[i * 7 % 6])
            for i in range(600)
        ],
    )
    db.execute("COMMIT")
    s = EventStore(tmp_path, min_free_gb=0, retain_days=0)
    s.start()
    s.stop()
    db = sqlite3.connect(tmp_path / "events.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) >= 3
    zone_rows = db.execute("SELECT zone, COUNT(*) FROM event_zones GROUP BY zone ORDER BY zone").fetchall()
    assert zone_rows == [
        ("drive", 300),
        ("gate", 100),
        ("porch", 300),
    ]  # "drive" twice counts once, 1 is no zone
    checked = 0
    for zone in ("porch", "drive", "gate", "1", "nowhere"):
        for label in (None, "car", "cat"):
            for since, until in ((None, None), (40.0, None), (None, 250.0), (100.0, 200.5), (300.0, 300.0)):
                for limit, offset in ((100, 0), (7, 3), (1000, 0), (10, 290)):
                    page, total = s.query(
                        zone=zone, label=label, since=since, until=until, limit=limit, offset=offset
                    )
                    expected = old_query(db, zone, label, since, until, limit, offset)
                    assert ([r.id for r in page], total) == expected, (
                        zone,
                        label,
                        since,
                        until,
                        limit,
                        offset,
                    )
                    checked += total > 0
    assert checked > 100  # most combinations do match something
    db.close()


def test_a_malformed_zones_value_does_not_stop_the_upgrade(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    db.execute("BEGIN")
    MIGRATIONS[0](db)
    MIGRATIONS[1](db)
    db.execute("PRAGMA user_version=2")
    db.executemany(
        "INSERT INTO events (camera, track_id, label, start, updated, score, zones) VALUES ('c', ?, 'cat', ?, ?, 1, ?)",
        [(1, 1.0, 1.0, "not json"), (2, 2.0, 2.0, '["porch"]')],
    )
    db.execute("COMMIT")
    db.close()
    s = EventStore(tmp_path, min_free_gb=0, retain_days=0)
    s.start()
    s.stop()
    page, total = s.query(zone="porch")
    assert total == 1 and [r.track_id for r in page] == [2]  # the malformed row is simply in no zone


def traced_query(store: EventStore, **filters) -> list[str]:
    """The statements ``store.query(**filters)`` runs, parameters filled in."""
    statements: list[str] = []
    reader = store._reader

    @contextlib.contextmanager
    def tracing():
        with reader() as db:
            db.set_trace_callback(statements.append)
            yield db

    store._reader = tracing
    try:
        store.query(**filters)
    finally:
        del store._reader
    return [q for q in statements if q.lstrip().upper().startswith("SELECT")]


def test_zone_queries_read_the_zone_index_not_every_row(store: EventStore) -> None:
    """The count and the page of a zone query read event_zones' (zone, start, event_id) range, in the page's
    order (no sort), never the events table from end to end nor any row's JSON (52 ms at 200,000 events)."""
    add(store, track_id=1, start=1000.0, end=1001.0, zone="porch")
    assert store.flush()
    db = sqlite3.connect(store.path)
    for filters in (
        {"zone": "porch"},
        {"zone": "porch", "since": 500.0},
        {"zone": "porch", "since": 500.0, "until": 2000.0},
        {"zone": "porch", "label": "person"},
        {"zone": "porch", "label": "person", "since": 500.0, "offset": 10},
        {"zone": "porch", "camera": "cam", "limit": 5},
    ):
        count, page = traced_query(store, **filters)
        assert count.lstrip().startswith("SELECT COUNT(*)") and "ORDER BY" in page
        for sql in (count, page):
            plan = [row[-1] for row in db.execute("EXPLAIN QUERY PLAN " + sql)]
            text = " | ".join(plan)
            assert plan[0].startswith("SEARCH z USING PRIMARY KEY (zone=?"), (filters, sql, plan)
            if "since" in filters:
                assert "start>?" in plan[0], (filters, plan)
            assert "SCAN" not in text and "json_each" not in text and "TEMP B-TREE" not in text, (
                filters,
                plan,
            )
            assert all(step.startswith("SEARCH z ") or "INTEGER PRIMARY KEY" in step for step in plan), plan
        if "label" not in filters and "camera" not in filters:  # the count is the index alone
            assert "events" not in count.split("FROM", 1)[1], count
    db.close()


def test_the_zone_index_follows_updates_and_deletes(tmp_path: Path) -> None:
    """Zones entered by later updates are found; deleted events (by hand, by retention, by an edit from
    outside with foreign keys off) leave no row in event_zones; an update for a deleted event costs nothing
    else in its batch."""
    now = time.time()
    s = EventStore(tmp_path, min_free_gb=0, retain_days=30, retention_s=0.2)
    s.start()
    try:
        a = add(s, track_id=1, start=now - 10)
        b = add(s, track_id=2, start=now - 9, zone="porch")
        old = add(s, track_id=3, start=now - 40 * DAY, end=now - 40 * DAY + 5, zone="drive")
        assert s.flush()
        assert s.query(zone="porch")[1] == 1 and s.query(zone="drive")[1] <= 1
        s.track_updated("cam", 1, score=0.9)  # a score only: the index is left as it is
        s.track_updated("cam", 1, zone="drive")
        s.track_updated("cam", 1, zone="porch")
        assert s.flush()
        page, total = s.query(zone="porch")
        assert total == 2 and [r.id for r in page] == [b, a] and s.get(a).zones == ("drive", "porch")
        assert [r.id for r in s.query(zone="drive", since=now - DAY)[0]] == [a]
        wait_for(lambda: s.get(old) is None, 5, what="retention to delete the old event")
        assert s.query(zone="drive") == (s.query(zone="drive", since=now - DAY)[0], 1)

        assert s.delete(b)
        s._put(("update", b, 0.9, '["porch","gate"]', "[]"))  # queued for the event just deleted
        s.track_updated("cam", 1, zone="gate")  # in the same batch
        assert s.flush()
        assert s.status()["write_errors"] == 0 and s.last_error is None
        assert [r.id for r in s.query(zone="porch")[0]] == [a] and s.query(zone="gate")[1] == 1
        s.track_ended("cam", 1, now)
    finally:
        s.stop()
    db = sqlite3.connect(tmp_path / "events.db")
    rows = db.execute("SELECT event_id, zone FROM event_zones ORDER BY zone").fetchall()
    assert rows == [(a, "drive"), (a, "gate"), (a, "porch")]
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    db.execute("DELETE FROM events WHERE id = ?", (a,))  # the sqlite3 shell's default: foreign keys off
    db.commit()
    assert db.execute("SELECT COUNT(*) FROM event_zones").fetchone()[0] == 3
    db.close()
    s.start()  # clears the index rows no event backs
    s.stop()
    assert s.query(zone="porch") == ([], 0) and s.query(zone="gate", label="person") == ([], 0)
    db = sqlite3.connect(tmp_path / "events.db")
    assert db.execute("SELECT COUNT(*) FROM event_zones").fetchone()[0] == 0
    db.close()


def test_limit_is_clamped(tmp_path: Path) -> None:
    s = EventStore(tmp_path, min_free_gb=0, retain_days=0, queue_size=5000)
    s.start()
    try:
        for i in range(MAX_LIMIT + 50):
            add(s, track_id=i, start=float(i), end=i + 0.5)
        assert s.flush(30)
        page, total = s.query(limit=10**6)
        assert len(page) == MAX_LIMIT and total == MAX_LIMIT + 50
        assert len(s.query(limit=0)[0]) == 1
    finally:
        s.stop()


def test_delete_removes_the_row_and_its_files_but_not_a_shared_clip(store: EventStore) -> None:
    a = add(store, track_id=1, start=1000.0, end=1001.0)
    b = add(store, track_id=2, start=1000.5, end=1002.0)
    clip = media(store, "shared.mp4", 1000)
    snap = store.directory / "snap_a.jpg"
    snap.write_bytes(b"x" * 100)
    store.set_clip(a, clip, 1000)
    store.set_clip(b, clip, 1000)
    store.set_snapshot(a, snap, 100)
    assert store.flush()
    assert store.get(a).clip == "clips/shared.mp4" and store.get(a).snapshot == "snap_a.jpg"
    assert store.get(a).to_dict()["clip"] == f"/clips/{a}.mp4"
    assert store.media_path(a, "clip") == clip
    assert store.status()["clip_bytes"] == 1000  # counted once

    assert store.delete(a)
    assert store.get(a) is None and not snap.exists() and clip.exists()  # b still uses the clip
    assert store.delete(b)
    assert not clip.exists()
    assert not store.delete(b)


def test_clips_no_event_names_are_removed_at_start(tmp_path: Path) -> None:
    s = EventStore(tmp_path, min_free_gb=0, retain_days=0)
    s.start()
    event_id = add(s, start=1000.0, end=1001.0)
    named = media(s, "named.mp4", 10)
    s.set_clip(event_id, named, 10)
    s.stop()
    orphan = media(s, "orphan.mp4", 10)
    part = media(s, "recording.mp4.part", 10)  # the clip recorder's business
    s.start()
    s.stop()
    assert named.exists() and part.exists() and not orphan.exists()


def test_a_clip_for_a_vanished_event_is_deleted(store: EventStore) -> None:
    clip = media(store, "lost.mp4", 10)
    store.set_clip(424242, clip, 10)
    assert store.flush()
    assert not clip.exists()


def test_retention_by_age_deletes_whole_old_events_oldest_first(tmp_path: Path) -> None:
    now = time.time()
    s = EventStore(tmp_path, min_free_gb=0, retain_days=30, retention_s=0.2)
    s.start()
    try:
        old = add(s, track_id=1, start=now - 40 * DAY, end=now - 40 * DAY + 5)
        kept = add(s, track_id=2, start=now - 20 * DAY, end=now - 20 * DAY + 5)
        still_open = add(s, track_id=3, start=now - 50 * DAY)  # an open event is never aged out
        clip = media(s, "old.mp4", 100)
        s.set_clip(old, clip, 100)
        assert s.flush()
        # The row goes in a transaction, its files right after the commit.
        wait_for(lambda: s.get(old) is None and not clip.exists(), 5, what="the old event and its clip to go")
        assert s.get(kept) is not None and s.get(still_open) is not None
        assert s.status()["retention"]["deleted_events"] == 1
    finally:
        s.stop()


def test_retention_by_bytes_drops_the_oldest_media_and_keeps_the_rows(tmp_path: Path) -> None:
    s = EventStore(tmp_path, min_free_gb=0, retain_days=0, max_gb=2500 / 1e9, retention_s=0.2, check_s=0.2)
    s.start()
    try:
        ids, files = [], []
        for i in range(5):
            event_id = add(s, track_id=i, start=1000.0 + i, end=1000.5 + i)
            path = media(s, f"c{i}.mp4", 1000)
            s.set_clip(event_id, path, 1000)
            ids.append(event_id)
            files.append(path)
        assert s.flush()
        wait_for(
            lambda: s.status()["clip_bytes"] <= 2500 and not files[2].exists(), 5, what="retention by bytes"
        )
        assert [p.exists() for p in files] == [False, False, False, True, True]
        assert all(s.get(i) is not None for i in ids)  # the timeline keeps the rows
        assert s.get(ids[0]).clip is None and s.get(ids[4]).clip == "clips/c4.mp4"
    finally:
        s.stop()


def test_a_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    s = EventStore(
        tmp_path, min_free_gb=0, retain_days=0, queue_size=3
    )  # not started: nothing drains the queue
    began = time.perf_counter()
    ids = [s.track_started("cam", i, "person", 0.5, 1000.0 + i) for i in range(10)]
    assert time.perf_counter() - began < 0.05
    assert ids[:3] == [1, 2, 3] and ids[3:] == [None] * 7
    assert s.status()["dropped"] == 7
    s.set_clip(1, tmp_path / "x.mp4", 1)
    assert s.status()["dropped"] == 8


def test_an_end_that_was_dropped_is_healed(store: EventStore) -> None:
    event_id = add(store, track_id=5, start=time.time())
    assert store.flush()
    with store._lock:  # what a dropped "end" write leaves: the pipeline forgot it, the row is still open
        store._open.clear()
    wait_for(lambda: store.get(event_id).end is not None, 5, what="the heartbeat to close the row")


KILLED = textwrap.dedent(
    """
    import sys, time
    from edgecam.events.store import EventStore
    s = EventStore(sys.argv[1], min_free_gb=0, retain_days=0, check_s=0.2)
    s.start()
    now = time.time()
    for i in range(5):
        s.track_started("cam", i, "person", 0.5, now - 10 + i)
    for i in range(3):
        s.track_ended("cam", i, now - 5 + i)
    s.track_updated("cam", 4, zone="porch")
    assert s.flush()
    time.sleep(0.5)  # a heartbeat or two on the open rows
    print("ready", flush=True)
    for i in range(5, 100000):  # keeps writing until killed
        s.track_started("cam", i, "car", 0.5, time.time())
        time.sleep(0.001)
    """
)


@pytest.mark.slow
def test_kill_9_keeps_committed_events_and_the_next_start_closes_open_ones(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        killed_at = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()

    s = EventStore(tmp_path, min_free_gb=0, retain_days=0)
    s.start()
    try:
        persons, total = s.query(label="person")
        assert total == 5
        by_track = {r.track_id: r for r in persons}
        assert [by_track[i].end is not None for i in range(5)] == [True] * 5  # nothing left open
        assert by_track[4].zones == ("porch",)
        for i in (3, 4):  # closed at their last heartbeat, before the kill
            assert by_track[i].start < by_track[i].end <= killed_at
        cars, _ = s.query(label="car", limit=1000)
        assert s.recovered >= 2 + len(cars) - 0  # every open row was closed
        assert s.query()[1] == s.status()["events"]
        page, _ = s.query(limit=1000)
        assert all(r.end is not None for r in page)
    finally:
        s.stop()


def test_low_disk_frees_old_media_then_pauses_and_says_why(tiny_fs: Path) -> None:
    s = EventStore(
        tiny_fs, retain_days=0, min_free_gb=0.8e6 / 1e9, check_s=0.1, retention_s=0.1
    )  # floor: 0.8 MB of 2 MB
    s.start()
    try:
        clip_ids = []
        for i in range(3):
            event_id = add(s, track_id=i, start=1000.0 + i, end=1001.0 + i)
            s.set_clip(event_id, media(s, f"c{i}.mp4", 250_000), 250_000)
            clip_ids.append(event_id)
        assert s.flush()
        wait_for(lambda: s.status()["free_bytes"] is not None, 5, what="a disk check")
        assert s.pause_reason is None
        ballast = tiny_fs / "ballast"  # someone else fills the disk to the brim
        with contextlib.suppress(OSError), open(ballast, "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        wait_for(lambda: s.recording_paused, 5, what=f"recording to pause {s.status()}")
        status = s.status()
        assert (
            status["paused"]
            and "low disk" in status["pause_reason"]
            and "min_free_gb" in status["pause_reason"]
        )
        assert all(s.get(i).clip is None for i in clip_ids)  # our old media went first
        began = time.perf_counter()
        for i in range(200):  # the caller never blocks, whatever the disk does
            s.track_started("cam", 100 + i, "person", 0.5, 2000.0 + i)
        assert time.perf_counter() - began < 0.5
        ballast.unlink()
        wait_for(lambda: not s.recording_paused, 5, what="recording to resume")
        assert s.status()["pause_reason"] is None
    finally:
        s.stop()

"""Event snapshots on disk: bounded by count and bytes with rotation, never an exception into the pipeline."""

from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path

import pytest

from edgecam.events.snapshots import SnapshotStore, snapshot_name

from support import wait_for


def folder_bytes(path) -> int:
    return sum(entry.stat().st_size for entry in os.scandir(path))


def test_rotation_keeps_the_folder_under_max_bytes(tmp_path):
    store = SnapshotStore(tmp_path / "snaps", max_files=1000, max_bytes=10_000)
    names = [snapshot_name(1714564800 + i, "person", i) for i in range(40)]
    for i, name in enumerate(names):
        assert store.write(bytes([i]) * 1500, name) is not None
        assert folder_bytes(tmp_path / "snaps") <= 10_000
    kept = sorted(os.listdir(tmp_path / "snaps"))
    assert kept == names[-6:]  # 6 x 1500 bytes fit; the oldest rotated out
    assert store.status() | {"files": 6, "bytes": 9000, "saved": 40, "errors": 0} == store.status()


def test_rotation_by_count_and_foreign_files_are_left_alone(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    old = snapshot_name(1714564800, "car", 1)
    (tmp_path / old).write_bytes(b"x" * 100)  # from an earlier run: counted, rotated first
    store = SnapshotStore(tmp_path, max_files=3, max_bytes=1_000_000)
    for i in range(5):
        store.write(b"y" * 10, snapshot_name(1714564900 + i, "person", i))
    files = sorted(os.listdir(tmp_path))
    assert files == sorted(["notes.txt", *[snapshot_name(1714564900 + i, "person", i) for i in (2, 3, 4)]])


def test_name_clash_gets_a_suffix(tmp_path):
    store = SnapshotStore(tmp_path, max_files=10, max_bytes=100_000)
    name = snapshot_name(1714564800.25, "traffic light", 3)
    assert name == "20240501T120000.250Z_traffic_light_3.jpg"
    store.write(b"a", name)
    store.write(b"b", name)
    assert sorted(os.listdir(tmp_path)) == sorted([name, name.replace(".jpg", "-1.jpg")])
    assert SnapshotStore(tmp_path, 10, 100_000)._scan() is not None  # both recognised on the next start


def test_an_unwritable_folder_is_logged_once_and_never_raises(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")  # works even as root, unlike chmod
    store = SnapshotStore(blocker / "snaps", max_files=10, max_bytes=100_000)
    store.start()
    try:
        with caplog.at_level(logging.WARNING, logger="edgecam.events.snapshots"):
            for i in range(20):
                store.save(b"jpeg", snapshot_name(time.time(), "person", i))
            store.save(lambda: 1 / 0, "broken.jpg")  # a failing encode is contained too
            wait_for(lambda: store.errors + store.dropped == 21, 5, what="every save to be tried")
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 2, warnings  # the folder problem once, the failed encode once
        assert "cannot write snapshots" in warnings[0] and "Not a directory" in warnings[0]
        assert store._thread.is_alive()
    finally:
        store.stop()


def test_full_disk_is_logged_once_and_saving_resumes(tmp_path, caplog, monkeypatch):
    store = SnapshotStore(tmp_path, max_files=10, max_bytes=100_000)
    real_replace = os.replace
    full = True

    def replace(src, dst):
        if full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with caplog.at_level(logging.INFO, logger="edgecam.events.snapshots"):
        for i in range(5):
            assert store.write(b"x" * 100, snapshot_name(1714564800 + i, "person", i)) is None
        assert os.listdir(tmp_path) == []  # no temp files left behind
        full = False
        assert store.write(b"x" * 100, snapshot_name(1714564900, "person", 9)) is not None
    messages = [r.getMessage() for r in caplog.records]
    assert sum("No space left" in m for m in messages) == 1 and "works again" in messages[-1]
    assert store.errors == 5 and store.saved == 1


def test_a_snapshot_bigger_than_the_limit_is_skipped(tmp_path):
    store = SnapshotStore(tmp_path, max_files=10, max_bytes=10_000)
    assert store.write(b"x" * 20_000, snapshot_name(0, "person", 1)) is None
    assert os.listdir(tmp_path) == [] and store.errors == 1


@pytest.mark.parametrize("queue_size", [2])
def test_save_returns_at_once_and_drops_the_oldest_when_behind(tmp_path, queue_size):
    store = SnapshotStore(tmp_path, max_files=100, max_bytes=1_000_000, queue_size=queue_size)

    def slow() -> bytes:
        time.sleep(0.2)
        return b"slow"

    store.start()
    try:
        start = time.perf_counter()
        for i in range(10):
            store.save(slow, snapshot_name(1714564800 + i, "person", i))
        assert time.perf_counter() - start < 0.05
        wait_for(lambda: store.saved + store.dropped == 10, 5)
        assert store.dropped >= 7  # the writer is busy with the first while the rest queue up
    finally:
        store.stop()


def test_status_counts_the_files_of_earlier_runs_from_the_start(tmp_path):
    for i in range(3):
        (tmp_path / snapshot_name(1714564800 + i, "person", i)).write_bytes(b"x" * 100)
    store = SnapshotStore(tmp_path, max_files=10, max_bytes=100_000)
    store.start()
    try:
        wait_for(lambda: store.status()["files"] == 3, 5, what="the folder to be counted")
        assert store.status()["bytes"] == 300
    finally:
        store.stop()


def test_a_disk_full_of_our_own_snapshots_rotates_instead_of_stopping(tmp_path, monkeypatch, caplog):
    """The folder limits were never reached, but the disk was full of our own files: the oldest go."""
    capacity = 1000
    store = SnapshotStore(tmp_path, max_files=1000, max_bytes=10_000_000)
    real_replace = os.replace

    def replace(src, dst):
        used = sum(e.stat().st_size for e in os.scandir(tmp_path) if not e.name.startswith("."))
        if used + os.path.getsize(src) > capacity:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with caplog.at_level(logging.INFO, logger="edgecam.events.snapshots"):
        for i in range(30):
            assert store.write(b"x" * 100, snapshot_name(1714564800 + i, "person", i)) is not None, i
    kept = sorted(os.listdir(tmp_path))
    assert kept[-1] == snapshot_name(1714564829, "person", 29) and len(kept) <= 10
    assert store.errors == 0 and store.saved == 30 and "the disk is full" in caplog.text


def test_a_folder_under_etc_moves_to_the_state_directory_and_says_so(tmp_path, monkeypatch, caplog):
    from edgecam.events.snapshots import usable_dir

    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    with caplog.at_level(logging.INFO, logger="edgecam.events.snapshots"):
        assert usable_dir(Path("/etc/edgecam/snapshots")) == tmp_path / "state" / "snapshots"
    assert "cannot write; using" in caplog.text
    assert usable_dir(tmp_path / "snaps") == tmp_path / "snaps"


def test_half_written_snapshots_a_crash_left_are_removed(tmp_path):
    """A process killed inside a write leaves ``.<name>.tmp``: not a snapshot, so never counted or rotated;
    after months of power cuts they would pile up. The first look at the folder removes ours."""
    kept = snapshot_name(1714564800, "person", 1)
    (tmp_path / kept).write_bytes(b"x" * 10)
    half = tmp_path / f".{snapshot_name(1714564801, 'person', 2)}.tmp"
    half.write_bytes(b"y" * 10)
    (tmp_path / ".notes.tmp").write_text("not ours")
    store = SnapshotStore(tmp_path, max_files=10, max_bytes=1_000_000)
    store.write(b"z" * 10, snapshot_name(1714564802, "person", 3))
    assert sorted(os.listdir(tmp_path)) == sorted(
        [".notes.tmp", kept, snapshot_name(1714564802, "person", 3)]
    )
    assert store.status()["files"] == 2

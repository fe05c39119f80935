"""Event snapshots on disk, bounded by file count and bytes, oldest deleted first.

``save`` returns at once: a worker thread makes the JPEG (the payload may be a function, e.g. the output
frame's encode-once) and writes it. Room is made *before* a file is written, so the folder never holds
more than ``max_bytes`` of snapshots. Only files named like ours (``20240501T120000.123Z_person_12.jpg``)
are counted and rotated; anything else in the folder is left alone.

A write problem (unwritable or missing folder, full disk) is logged once per kind of problem and counted,
never raised: the pipeline keeps running, and saving resumes by itself when the problem goes away.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgecam.config.events import slug

log = logging.getLogger(__name__)

Payload = bytes | Callable[[], bytes]
_NAME = re.compile(r"^\d{8}T\d{6}\.\d{3}Z_[a-z0-9_]+(?:-\d+)?\.jpg$")
_TMP = re.compile(r"^\.\d{8}T\d{6}\.\d{3}Z_[a-z0-9_]+(?:-\d+)?\.jpg\.tmp$")  # ours, half-written


def snapshot_name(epoch_s: float, label: str, track_id: int) -> str:
    stamp = datetime.fromtimestamp(epoch_s, timezone.utc).strftime("%Y%m%dT%H%M%S.%f")[:-3]
    return f"{stamp}Z_{slug(label)}_{track_id}.jpg"


STATE_DIR = Path("/var/lib/edgecam")


def usable_dir(directory: Path) -> Path:
    """Where snapshots go: ``directory``, unless it lies under /etc (a relative ``snapshots.dir`` next to
    /etc/edgecam/config.yaml), which the service cannot write: then the service's state directory
    ($STATE_DIRECTORY from systemd, else /var/lib/edgecam) gets a folder of the same name. Logged."""
    directory = Path(directory)
    if not directory.is_absolute() or directory.parts[:2] != ("/", "etc"):
        return directory
    state = Path(os.environ.get("STATE_DIRECTORY", "").split(":")[0] or STATE_DIR)
    moved = state / directory.name
    log.info(
        "snapshots: %s is under /etc, which the service cannot write; using %s (set snapshots.dir to choose)",
        directory, moved,
    )  # fmt: skip
    return moved


class SnapshotStore:
    def __init__(self, directory: Path, max_files: int, max_bytes: int, queue_size: int = 8) -> None:
        self.directory = usable_dir(Path(directory))
        self.max_files = max_files
        self.max_bytes = max_bytes
        self.queue_size = queue_size
        self._cond = threading.Condition()
        self._pending: deque[tuple[Payload, str]] = deque()
        self._stopping = False
        self._files: deque[tuple[str, int]] | None = None  # oldest first; None until the folder is read
        self._bytes = 0
        self._problems: set[Any] = set()
        self.saved = 0
        self.dropped = 0
        self.errors = 0
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="snapshots", daemon=True)

    # ---- pipeline side ----------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def save(self, data: Payload, name: str) -> None:
        """Queue a snapshot; if the writer is behind, the oldest waiting one is dropped (counted)."""
        with self._cond:
            if len(self._pending) >= self.queue_size:
                self._pending.popleft()
                self.dropped += 1
            self._pending.append((data, name))
            self._cond.notify()

    def stop(self, timeout: float = 2.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def status(self) -> dict[str, Any]:
        files = self._files
        return {
            "dir": str(self.directory),
            "files": len(files) if files is not None else 0,
            "bytes": self._bytes,
            "saved": self.saved,
            "dropped": self.dropped,
            "errors": self.errors,
            "last_error": self.last_error,
        }

    # ---- worker -----------------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:  # count what earlier runs left, so the status is right before the first new snapshot
            self._scan()
        except OSError as exc:
            reason = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
            self._problem(
                reason, f"cannot write snapshots to {self.directory}: {exc.strerror or exc}", count=False
            )
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or self._pending)
                if not self._pending:
                    return
                data, name = self._pending.popleft()
            try:
                self.write(data() if callable(data) else data, name)
            except Exception as exc:  # never let one bad snapshot end the worker
                self._problem(type(exc).__name__, f"snapshot {name} failed: {exc}")

    def write(self, jpeg: bytes, name: str) -> Path | None:
        """Write one snapshot now (the worker's job; public for tests). Returns its path, or None."""
        if len(jpeg) > self.max_bytes:
            self._problem("too-big", f"a {len(jpeg)}-byte snapshot is larger than max_bytes; not saved")
            return None
        try:
            files = self._scan()
            while files and (len(files) + 1 > self.max_files or self._bytes + len(jpeg) > self.max_bytes):
                old, size = files.popleft()
                (self.directory / old).unlink(missing_ok=True)
                self._bytes -= size
            path = self._unique(name)
            self._write_making_room(path, jpeg, files)
        except OSError as exc:
            reason = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
            self._problem(reason, f"cannot write snapshots to {self.directory}: {exc.strerror or exc}")
            self._files = None  # read the folder again next time: it may have changed under us
            return None
        files.append((path.name, len(jpeg)))
        self._bytes += len(jpeg)
        self.saved += 1
        if self._problems:
            log.info("snapshots: writing to %s works again", self.directory)
            self._problems.clear()
        return path

    def _write_making_room(self, path: Path, jpeg: bytes, files: deque[tuple[str, int]]) -> None:
        """Write atomically; on a full disk, delete our own oldest snapshots and try again (a folder of
        snapshots that filled the disk must not stop new ones for good)."""
        tmp = path.with_name(f".{path.name}.tmp")
        while True:
            try:
                with open(tmp, "wb") as f:
                    f.write(jpeg)
                os.replace(tmp, path)
                return
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                if exc.errno != errno.ENOSPC or len(files) <= 1:
                    raise
                freed = 0
                while files and (freed < 2 * len(jpeg) or not freed):
                    old, size = files.popleft()
                    (self.directory / old).unlink(missing_ok=True)
                    self._bytes -= size
                    freed += size
                log.info(
                    "snapshots: the disk is full; deleted the oldest snapshots (%d bytes) to go on", freed
                )
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise

    def _scan(self) -> deque[tuple[str, int]]:
        if self._files is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            found = []
            for entry in os.scandir(self.directory):
                if _NAME.match(entry.name) and entry.is_file(follow_symlinks=False):
                    stat = entry.stat()
                    found.append((stat.st_mtime_ns, entry.name, stat.st_size))
                elif _TMP.match(entry.name):  # a write the process died in: nothing else would delete it
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
            found.sort()  # oldest first
            self._files = deque((name, size) for _, name, size in found)
            self._bytes = sum(size for _, _, size in found)
        return self._files

    def _unique(self, name: str) -> Path:
        path = self.directory / name
        n = 1
        while path.exists():
            path = self.directory / name.replace(".jpg", f"-{n}.jpg")
            n += 1
        return path

    def _problem(self, key: Any, message: str, count: bool = True) -> None:
        self.errors += count
        self.last_error = message
        if key not in self._problems:
            self._problems.add(key)
            log.warning("snapshots: %s (logged once; the pipeline goes on)", message)
        else:
            log.debug("snapshots: %s", message)

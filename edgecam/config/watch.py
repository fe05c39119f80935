"""Watching config.yaml: a change (or SIGHUP) triggers a reload; edgecam never writes the file.

Polling the file's size, mtime and content hash every ~2 s needs no dependency and also sees editors
that replace the file (rename over it), which plain inotify watches on the file miss.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

from edgecam.config import Config
from edgecam.config.load import MAX_CONFIG_BYTES

log = logging.getLogger(__name__)

# What can change while the camera keeps running, and what needs a restart.
LIVE_KEYS = (
    "detector.classes", "detector.threshold", "detector.thresholds", "detector.min_area", "detector.min_fps",
    "adapt", "tracker", "stream.fps", "stream.quality", "stream.width", "stream.max_clients", "stream.auth", "stream.username", "stream.password_file",
    "stream.trusted_proxies", "stream.public_url", "service", "logging",
    "motion",
)  # fmt: skip
RESTART_KEYS = (
    "camera", "detector.model_dir", "detector.ladder", "detector.threads", "detector.edgetpu_device",
    "stream.bind", "stream.port", "mqtt", "zones", "lines", "snapshots", "recording",
)  # fmt: skip


def changed_keys(old: Config, new: Config) -> list[str]:
    """Dotted keys (at the granularity of LIVE_KEYS / RESTART_KEYS) whose values differ."""
    before, after = old.model_dump(), new.model_dump()
    changed = []
    for key in (*LIVE_KEYS, *RESTART_KEYS):
        a, b = before, after
        for part in key.split("."):
            a, b = a.get(part), b.get(part)
        if a != b:
            changed.append(key)
    for section in after:  # sections added later (auth, mqtt, zones…) that neither list names
        if (
            section not in {k.split(".")[0] for k in (*LIVE_KEYS, *RESTART_KEYS)}
            and before.get(section) != after[section]
        ):
            changed.append(section)
    return changed


def fingerprint(path: Path) -> tuple[int, int, str] | None:
    """Size, mtime and content hash. Only a small regular file is read: a FIFO would block the watcher, a
    link to /dev/zero would never end; those are told apart by kind and times, and the reload says why."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_CONFIG_BYTES:
            return info.st_size, info.st_mtime_ns, f"mode {info.st_mode:o}, {info.st_size} bytes"
        with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK)) as fh:
            return info.st_size, info.st_mtime_ns, hashlib.sha256(fh.read(MAX_CONFIG_BYTES + 1)).hexdigest()
    except OSError:
        return None


class ConfigWatcher(threading.Thread):
    """Calls ``on_change()`` when the file's content changes (not for a touch that keeps the content), and
    when ``password_stale()`` turns true: the stream password file was written over (`sudo edgecam password
    set`), which the reload picks up. ``on_change()`` returns False when it could not apply the config;
    ``password_error()`` says why a new password file cannot be used."""

    def __init__(
        self,
        path: Path,
        on_change: Callable[[], bool | None],
        interval_s: float = 2.0,
        *,
        password_stale: Callable[[], bool] | None = None,
        password_error: Callable[[], str | None] | None = None,
    ) -> None:
        super().__init__(name="config-watcher", daemon=True)
        self.path = path
        self._on_change = on_change
        self._interval_s = interval_s
        self._password_stale = password_stale
        self._password_error = password_error
        self._stopping = threading.Event()
        self._last = fingerprint(path)
        self._gone = self._last is None  # the file could not be read at the last poll
        self._was_stale = False

    def run(self) -> None:
        while not self._stopping.wait(self._interval_s):
            try:
                self.poll()
            except Exception:  # the watcher must outlive any reload bug
                log.exception("config reload failed")

    def poll(self) -> None:
        """One look at the config file and the password file; reloads when either changed."""
        current = fingerprint(self.path)
        if current is None:  # deleted or unreadable: said once (the reload names why), the config kept
            changed, self._gone = not self._gone, True
        else:  # back again, even unchanged, clears that error
            changed = self._gone or self._last is None or current[2] != self._last[2]
            self._gone = False
        self._last = current or self._last
        stale = self._stale()
        # Once per change of the password file: a reload that cannot apply it (config.yaml has an error)
        # is not retried every poll; fixing the config reloads it anyway.
        password_changed, self._was_stale = stale and not self._was_stale, stale
        if not (changed or password_changed):
            return
        applied = self._on_change()
        if not stale:
            return
        still_stale = self._stale()
        # Written over again during the reload: the next poll reloads once more.
        self._was_stale = still_stale and applied is False
        if self._was_stale:
            log.warning(
                "stream password file changed, but the config could not be reloaded (see above): the old "
                "password stays in use until %s is fixed",
                self.path,
            )
        elif not still_stale and not (self._password_error and self._password_error()):  # else it said why
            log.info("stream password file changed: new password applied")

    def _stale(self) -> bool:
        return self._password_stale is not None and bool(self._password_stale())

    def stop(self) -> None:
        self._stopping.set()

"""The supervisor: the one watchdog of the box.

Every stage loop stamps a monotonic heartbeat each time round, also while it waits or reconnects. Once a
second the supervisor looks at them: a stage whose heartbeat is older than ``service.watchdog_s`` is stuck
inside a call (a hung invoke, a wedged camera read) and is restarted. While every stage is alive it feeds
systemd's watchdog (``WATCHDOG=1``) and refreshes the ``STATUS=`` line; once a stage cannot be brought back
(it failed to restart, or was restarted too often), the pings stop and systemd restarts the service. A
camera that is merely reconnecting still beats: it is alive.

systemd's limit follows ``service.watchdog_s``, also after a live reload (``WATCHDOG_USEC=``), so the
unit's ``WatchdogSec`` is only the value until the config is read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from edgecam.app.systemd import ServiceNotifier

log = logging.getLogger(__name__)

STATUS_EVERY_S = 5.0


@dataclass
class Stage:
    name: str
    heartbeat: Callable[[], float]  # monotonic time the stage's loop last went round
    restart: Callable[[], None]  # replaces the stuck stage; raises if it cannot


class Supervisor(threading.Thread):
    def __init__(
        self,
        stages: list[Stage],
        limit_s: float,
        max_restarts: int = 3,
        restart_window_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        interval_s: float = 1.0,
    ) -> None:
        super().__init__(name="supervisor", daemon=True)
        self.stages = stages
        self.max_restarts = max_restarts
        self.restart_window_s = restart_window_s
        self.interval_s = interval_s
        self._clock = clock
        self._limit_s = limit_s
        self._restarts: dict[str, deque[float]] = {s.name: deque() for s in stages}
        self._given_up: set[str] = set()
        self._stopping = threading.Event()
        self._notifier: ServiceNotifier | None = None
        self._status: Callable[[], str] | None = None
        self._last_status = -STATUS_EVERY_S
        self.restarts = 0
        self.pings = 0

    # ---- settings and systemd -------------------------------------------------------------------------------

    @property
    def limit_s(self) -> float:
        return self._limit_s

    @limit_s.setter
    def limit_s(self, value: float) -> None:
        if value != self._limit_s:
            self._limit_s = value
            self._tell_systemd_the_limit()

    def attach(self, notifier: ServiceNotifier, status: Callable[[], str] | None = None) -> None:
        """Feed systemd's watchdog through ``notifier`` (when systemd asked for one) and its STATUS= line."""
        self._notifier = notifier
        self._status = status
        self._tell_systemd_the_limit()

    def _tell_systemd_the_limit(self) -> None:
        notifier = self._notifier
        if notifier is not None and notifier.watchdog_usec:
            notifier.watchdog_usec = int(self._limit_s * 1e6)
            notifier.notify(f"WATCHDOG_USEC={notifier.watchdog_usec}")

    # ---- one round ------------------------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """False once a stage is stuck and could not be restarted: time for systemd to restart us."""
        return not self._given_up

    def check(self) -> list[str]:
        """Restart what is stuck; returns the names of the stages restarted."""
        now = self._clock()
        restarted = []
        for stage in self.stages:
            if stage.name in self._given_up or now - stage.heartbeat() <= self._limit_s:
                continue
            history = self._restarts[stage.name]
            while history and history[0] < now - self.restart_window_s:
                history.popleft()
            stuck_for = now - stage.heartbeat()
            if len(history) >= self.max_restarts:
                self._give_up(stage.name, f"stuck for {stuck_for:.0f} s after {len(history)} restarts "
                              f"in {self.restart_window_s / 60:.0f} min")  # fmt: skip
                continue
            log.error(
                "%s stage stuck for %.0f s (limit %.0f s): restarting it",
                stage.name,
                stuck_for,
                self._limit_s,
            )
            try:
                stage.restart()
            except Exception as exc:
                log.debug("restart of %s failed", stage.name, exc_info=True)
                self._give_up(stage.name, f"stuck for {stuck_for:.0f} s and could not be restarted ({exc})")
                continue
            history.append(now)
            self.restarts += 1
            restarted.append(stage.name)
        return restarted

    def _give_up(self, name: str, why: str) -> None:
        log.error("%s stage %s: giving up, so systemd's watchdog restarts edgecam", name, why)
        self._given_up.add(name)
        if self._notifier is not None:
            self._notifier.status(f"stuck: {name} ({why})")

    def tick(self) -> None:
        """One round: restart stuck stages, then feed systemd while healthy and refresh its STATUS line."""
        self.check()
        notifier = self._notifier
        if notifier is None or not self.healthy:
            return
        if notifier.watchdog_usec:
            notifier.watchdog()
            self.pings += 1
        now = self._clock()
        if self._status is not None and now - self._last_status >= STATUS_EVERY_S:
            self._last_status = now
            try:
                notifier.status(self._status())
            except Exception:  # the status line must never take the supervisor down
                log.debug("status line failed", exc_info=True)

    def run(self) -> None:
        while not self._stopping.wait(self.interval_s):
            self.tick()

    def stop(self) -> None:
        self._stopping.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=2)

"""The in-app watchdog: every stage loop ticks a heartbeat; a stage whose heartbeat is older than
``service.watchdog_s`` is stuck inside a call (a hung invoke, a wedged camera read). It is logged and
restarted; a stage that cannot be brought back makes ``healthy`` false, which stops systemd's watchdog
pings so systemd restarts the service. A camera that is merely reconnecting still ticks: it is alive."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class Stage:
    name: str
    heartbeat: Callable[[], float]  # monotonic time the stage's loop last went round
    restart: Callable[[], None]  # replaces the stuck stage; raises if it cannot


def stuck_stages(stages: list[Stage], now: float, limit_s: float) -> list[str]:
    return [s.name for s in stages if now - s.heartbeat() > limit_s]


class Watchdog(threading.Thread):
    def __init__(
        self,
        stages: list[Stage],
        limit_s: float,
        max_restarts: int = 3,
        restart_window_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name="watchdog", daemon=True)
        self.stages = stages
        self.limit_s = limit_s
        self.max_restarts = max_restarts
        self.restart_window_s = restart_window_s
        self._clock = clock
        self._restarts: dict[str, deque[float]] = {s.name: deque() for s in stages}
        self._given_up: set[str] = set()
        self._stopping = threading.Event()
        self.restarts = 0

    @property
    def healthy(self) -> bool:
        """False once a stage is stuck and could not be restarted: time for systemd to restart us."""
        return not self._given_up

    def check(self) -> list[str]:
        """One round: restart what is stuck; returns the names of the stages restarted."""
        now = self._clock()
        restarted = []
        for stage in self.stages:
            if stage.name in self._given_up or now - stage.heartbeat() <= self.limit_s:
                continue
            history = self._restarts[stage.name]
            while history and history[0] < now - self.restart_window_s:
                history.popleft()
            stuck_for = now - stage.heartbeat()
            if len(history) >= self.max_restarts:
                log.error(
                    "%s stage stuck for %.0f s after %d restarts in %.0f min: giving up, so the service "
                    "watchdog lets systemd restart edgecam", stage.name, stuck_for, len(history), self.restart_window_s / 60,
                )  # fmt: skip
                self._given_up.add(stage.name)
                continue
            log.error(
                "%s stage stuck for %.0f s (limit %.0f s): restarting it", stage.name, stuck_for, self.limit_s
            )
            try:
                stage.restart()
            except Exception:
                log.exception("%s stage could not be restarted", stage.name)
                self._given_up.add(stage.name)
                continue
            history.append(now)
            self.restarts += 1
            restarted.append(stage.name)
        return restarted

    def run(self) -> None:
        while not self._stopping.wait(1.0):
            self.check()

    def stop(self) -> None:
        self._stopping.set()

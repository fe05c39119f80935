"""Running under systemd: readiness, status and watchdog notifications, SIGHUP reload and SIGTERM stop.

``sd_notify`` is implemented here (a datagram to ``$NOTIFY_SOCKET``), so nothing extra is needed. Outside
systemd (no ``$NOTIFY_SOCKET``) every notification is a no-op and ``run_service`` still routes the signals.

The watchdog: every stage thread stamps a monotonic ``heartbeat`` each time round its loop, including while
it waits or reconnects. ``WATCHDOG=1`` is sent only while every heartbeat is fresher than the limit; a stage
stuck inside one call (a hung ``invoke``, a wedged encoder) stops the pings and systemd restarts edgecam. A
lost camera does not: its capture loop keeps beating while it reconnects.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_WATCHDOG_S = 30.0
STATUS_EVERY_S = 5.0


class ServiceNotifier:
    """sd_notify over ``$NOTIFY_SOCKET`` (AF_UNIX datagram; a leading '@' is the abstract namespace)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]
        elif address and not address.startswith("/"):
            log.warning("NOTIFY_SOCKET=%r is neither a path nor an abstract socket: ignored", address)
            address = ""
        self.address = address
        self.watchdog_usec = 0
        usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        if usec.isdigit() and (not pid or pid == str(os.getpid())):  # WATCHDOG_PID: meant for this process?
            self.watchdog_usec = int(usec)
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to ping: half of systemd's WatchdogSec, or None when the watchdog is off."""
        return self.watchdog_usec / 2e6 if self.watchdog_usec else None

    def notify(self, *lines: str) -> bool:
        """Send ``KEY=VALUE`` lines in one datagram; False (logged at debug) if it could not be sent."""
        if not self.address:
            return False
        payload = "\n".join(lines).encode()
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(payload, self.address)
            except OSError as exc:
                log.debug("sd_notify to %r failed: %s", self.address, exc)
                return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def reloading(self) -> bool:
        return self.notify(
            "RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
        )

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def stage_stuck(heartbeats: Mapping[str, float | None], now: float, limit_s: float) -> list[str]:
    """The stages whose loop has not come round for more than ``limit_s`` seconds (None = never beat)."""
    return [name for name, beat in heartbeats.items() if beat is None or now - beat > limit_s]


def pipeline_heartbeats(pipeline: Any) -> dict[str, float | None]:
    """Each stage thread's last heartbeat (monotonic seconds), plus the in-app watchdog's verdict when the
    pipeline has one: once it gave up on a stuck stage, the pings stop at once."""
    beats = {
        name: getattr(getattr(pipeline, name, None), "heartbeat", None)
        for name in ("capture", "inference", "broadcaster")
    }
    alive = getattr(pipeline, "alive", None)
    if alive is not None:
        beats["restarts"] = time.monotonic() if alive() else None
    return beats


def status_line(status: Mapping[str, Any]) -> str:
    """One line for ``systemctl status``: source state, rates and model."""
    source = status.get("source", {})
    inference = status.get("inference", {})
    detector = status.get("detector", {})
    stream = status.get("stream", {})
    state = source.get("state", "?")
    reason = f" ({source['reason']})" if source.get("reason") and state != "live" else ""
    return (
        f"source {state}{reason} {source.get('fps', 0):.1f} fps; "
        f"model {detector.get('model', '?')} on {detector.get('device', '?')} {inference.get('fps', 0):.1f} fps; "
        f"{stream.get('clients', 0)} viewer(s)"
    )


class WatchdogThread(threading.Thread):
    """Pings systemd while every stage is alive and refreshes the STATUS= line."""

    def __init__(
        self,
        notifier: ServiceNotifier,
        heartbeats: Callable[[], Mapping[str, float | None]],
        limit_s: float = DEFAULT_WATCHDOG_S,
        status: Callable[[], str] | None = None,
        interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name="watchdog", daemon=True)
        self.notifier = notifier
        self.heartbeats = heartbeats
        self.limit_s = limit_s
        self.status = status
        self.interval_s = interval_s or notifier.watchdog_interval_s or STATUS_EVERY_S
        self.clock = clock
        self.stuck: list[str] = []
        self.pings = 0
        self._stop_event = threading.Event()

    def check(self) -> bool:
        """One round: ping if all stages are alive. Returns whether it pinged."""
        now = self.clock()
        stuck = stage_stuck(self.heartbeats(), now, self.limit_s)
        if stuck != self.stuck:
            if stuck:
                log.error(
                    "stage(s) %s stuck for more than %g s: no more watchdog pings, systemd will restart edgecam",
                    ", ".join(stuck), self.limit_s,
                )  # fmt: skip
                self.notifier.status(f"stuck: {', '.join(stuck)} (no progress for > {self.limit_s:g} s)")
            else:
                log.warning("all stages are alive again")
            self.stuck = stuck
        if stuck:
            return False
        if self.notifier.watchdog_interval_s is not None:
            self.notifier.watchdog()
            self.pings += 1
        return True

    def run(self) -> None:
        last_status = -STATUS_EVERY_S
        while not self._stop_event.is_set():
            alive = self.check()
            now = self.clock()
            if alive and self.status is not None and now - last_status >= STATUS_EVERY_S:
                try:
                    self.notifier.status(self.status())
                except Exception:  # the status line must never take the watchdog down
                    log.debug("status line failed", exc_info=True)
                last_status = now
            self._stop_event.wait(min(self.interval_s, STATUS_EVERY_S))

    def stop(self) -> None:
        self._stop_event.set()


def run_service(
    pipeline: Any,
    stop_event: threading.Event,
    *,
    watchdog_s: float = DEFAULT_WATCHDOG_S,
    reload: Callable[[], Any] | None = None,
    notifier: ServiceNotifier | None = None,
) -> None:
    """Serve a started pipeline until SIGTERM/SIGINT (or ``stop_event``): tell systemd it is ready, ping the
    watchdog while every stage is alive, and reload on SIGHUP. Call from the main thread after
    ``pipeline.start()``; the caller stops the pipeline afterwards."""
    notifier = notifier or ServiceNotifier()
    reload = reload or getattr(pipeline, "reload", None)
    wake = threading.Event()
    reload_requested = threading.Event()

    def on_stop(signum: int, _frame: Any) -> None:
        log.info("%s: stopping", signal.Signals(signum).name)
        stop_event.set()
        wake.set()

    def on_hup(_signum: int, _frame: Any) -> None:
        reload_requested.set()
        wake.set()

    previous = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, on_stop),
        signal.SIGINT: signal.signal(signal.SIGINT, on_stop),
        signal.SIGHUP: signal.signal(signal.SIGHUP, on_hup),
    }

    def status() -> str:
        return status_line(pipeline.status())

    watchdog = WatchdogThread(notifier, lambda: pipeline_heartbeats(pipeline), watchdog_s, status)
    watchdog.start()
    try:
        text = _safe(status) or "running"
        notifier.ready(text)
        if notifier.enabled:
            interval = notifier.watchdog_interval_s
            log.info(
                "systemd: ready; watchdog %s",
                f"ping every {interval:g} s, stage limit {watchdog_s:g} s" if interval else "off",
            )
        while not stop_event.is_set():
            wake.wait(1.0)  # signals are handled on this (main) thread between waits
            wake.clear()
            if reload_requested.is_set() and not stop_event.is_set():
                reload_requested.clear()
                _reload(reload, notifier, status)
    finally:
        notifier.stopping()
        watchdog.stop()
        watchdog.join(timeout=2)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        notifier.close()


def _reload(reload: Callable[[], Any] | None, notifier: ServiceNotifier, status: Callable[[], str]) -> None:
    if reload is None:
        log.warning(
            "SIGHUP: this version cannot reload its config in place; restart it (systemctl restart edgecam)"
        )
        return
    notifier.reloading()
    log.info("SIGHUP: reloading the config")
    try:
        result = reload()
    except Exception as exc:  # a bad config keeps the running one
        log.error("config reload failed, keeping the running config: %s", exc)
        notifier.notify("READY=1", f"STATUS=reload failed, running config kept: {exc}")
        return
    if result is False:  # pipeline.reload() said no (it logs why): the running config stays
        notifier.notify("READY=1", "STATUS=reload failed, running config kept (see the log)")
        return
    notifier.ready(_safe(status) or "running")


def _safe(fn: Callable[[], str]) -> str:
    try:
        return fn()
    except Exception:
        log.debug("status line failed", exc_info=True)
        return ""

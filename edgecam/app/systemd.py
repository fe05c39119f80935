"""Running under systemd: readiness, status and watchdog notifications, SIGHUP reload and SIGTERM stop.

``sd_notify`` is implemented here (a datagram to ``$NOTIFY_SOCKET``), so nothing extra is needed. Outside
systemd (no ``$NOTIFY_SOCKET``) every notification is a no-op and ``run_service`` still routes the signals.

The watchdog pings themselves come from the app's supervisor (``edgecam.app.supervisor``): the one place
that knows whether every stage is alive.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

log = logging.getLogger(__name__)


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


class ServiceApp(Protocol):
    """What run_service needs from the running box."""

    supervisor: Any

    def status(self) -> dict[str, Any]: ...

    def reload(self) -> bool: ...


def run_service(
    app: ServiceApp, stop_event: threading.Event, *, notifier: ServiceNotifier | None = None
) -> None:
    """Serve a started app until SIGTERM/SIGINT (or ``stop_event``): tell systemd it is ready, let the app's
    supervisor feed systemd's watchdog, and reload on SIGHUP. Call from the main thread after
    ``app.start()``; the caller stops the app afterwards."""
    notifier = notifier or ServiceNotifier()
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
        return status_line(app.status())

    app.supervisor.attach(notifier, status)
    try:
        notifier.ready(_safe(status) or "running")
        if notifier.enabled:
            limit = notifier.watchdog_usec / 1e6
            log.info("systemd: ready; watchdog %s", f"limit {limit:g} s" if limit else "off")
        while not stop_event.is_set():
            wake.wait(1.0)  # signals are handled on this (main) thread between waits
            wake.clear()
            if reload_requested.is_set() and not stop_event.is_set():
                reload_requested.clear()
                _reload(app.reload, notifier, status)
    finally:
        notifier.stopping()
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

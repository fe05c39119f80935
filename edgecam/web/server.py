"""The HTTP server: the page, the MJPEG stream, a snapshot, the status API and a health check.

Python's threading HTTP server: one thread per connection suits the broadcaster's blocking fan-out, needs
no dependency a Pi lacks, and ``stream.max_clients`` bounds the stream threads.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from edgecam.events.metrics import Metrics
from edgecam.web.auth import Authenticator
from edgecam.web.broadcast import BOUNDARY, JpegBroadcaster, TooManyClientsError

log = logging.getLogger(__name__)

STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'self'",
    "Referrer-Policy": "no-referrer",
}


class App(Protocol):
    """What the server needs from the running pipeline."""

    broadcaster: JpegBroadcaster
    authenticator: Authenticator
    metrics: Metrics

    def status(self) -> dict[str, Any]: ...

    def health(self) -> tuple[bool, str]: ...


MAX_CONNECTIONS = 256  # open connections (streams, page loads, idle ones); beyond it new ones are closed


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.app = app
        self.stopping = threading.Event()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """One thread per connection, at most MAX_CONNECTIONS: a flood of idle sockets cannot pile up threads."""
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:  # no tracebacks to stderr or clients
        log.warning(
            "HTTP connection from %s failed", client_address[0], exc_info=log.isEnabledFor(logging.DEBUG)
        )


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"
    server_version = "edgecam"
    sys_version = ""
    timeout = 10  # seconds to send a request: idle or half-open connections do not hold a thread forever
    stream_write_timeout_s = 20.0

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._route(head=False)

    def do_HEAD(self) -> None:
        self._route(head=True)

    def _route(self, head: bool) -> None:
        url = urlsplit(self.path)
        path = url.path
        if path != "/healthz" and not self._authorized(path, url.query, head):
            return
        if path in STATIC:
            name, content_type = STATIC[path]
            body = resources.files("edgecam.web").joinpath("static", name).read_bytes()
            self._send(HTTPStatus.OK, body, content_type, head)
        elif path == "/api/status":
            body = json.dumps(self.server.app.status()).encode()
            self._send(HTTPStatus.OK, body, "application/json", head, no_store=True)
        elif path == "/metrics":
            body, content_type = self.server.app.metrics.render()
            self._send(HTTPStatus.OK, body, content_type, head, no_store=True)
        elif path == "/healthz":
            ok, reason = self.server.app.health()
            status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
            self._send(status, (reason + "\n").encode(), "text/plain; charset=utf-8", head, no_store=True)
        elif path == "/snapshot.jpg":
            jpeg = self.server.app.broadcaster.snapshot()
            if jpeg is None:
                self._send(
                    HTTPStatus.SERVICE_UNAVAILABLE, b"no frame yet\n", "text/plain; charset=utf-8", head
                )
            else:
                self._send(HTTPStatus.OK, jpeg, "image/jpeg", head, no_store=True)
        elif path == "/stream.mjpg":
            self._stream(head)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8", head)

    def _authorized(self, path: str, query: str, head: bool) -> bool:
        tokens = parse_qs(query).get("token")
        verdict = self.server.app.authenticator.check(
            path, self.headers.get("Authorization"), tokens[0] if tokens else None, self.client_address[0]
        )
        if verdict.ok:
            return True
        extra = (
            {"WWW-Authenticate": 'Basic realm="edgecam", charset="UTF-8"'} if verdict.status == 401 else {}
        )
        if verdict.status == 429:
            extra["Retry-After"] = str(verdict.retry_after_s)
        body = b"authentication required\n" if verdict.status == 401 else b"too many failed attempts; wait\n"
        self._send(HTTPStatus(verdict.status), body, "text/plain; charset=utf-8", head, extra=extra)
        return False

    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        content_type: str,
        head: bool,
        no_store: bool = False,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if no_store:
            self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def end_headers(self) -> None:
        """Every response, the standard library's error pages included, carries the security headers."""
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        super().end_headers()

    def _stream(self, head: bool) -> None:
        broadcaster = self.server.app.broadcaster
        try:
            feed = broadcaster.frames(self.server.stopping)
        except TooManyClientsError as exc:
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, f"{exc}\n".encode(), "text/plain; charset=utf-8", head)
            return
        self.close_connection = True
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        if head:
            feed.close()
            return
        self.connection.settimeout(self.stream_write_timeout_s)  # a client that stops reading is dropped
        try:
            for part in feed:
                self.wfile.write(part)
                self.wfile.flush()
        except (ConnectionError, TimeoutError, OSError):
            pass  # the viewer went away
        finally:
            feed.close()


def start_server(app: App, bind: str, port: int) -> tuple[Server, threading.Thread]:
    server = Server((bind, port), app)
    thread = threading.Thread(
        target=server.serve_forever, name="http", kwargs={"poll_interval": 0.2}, daemon=True
    )
    thread.start()
    return server, thread

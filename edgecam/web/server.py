"""The HTTP server: the page, the MJPEG stream, a snapshot, the status API and a health check.

aiohttp's low-level server on one asyncio event loop in one thread: every connection is a coroutine, not
a thread, and aiohttp's parser reads request bodies and answers HEAD. What aiohttp lacks, this module adds
on each connection (``_Connection``):

- a header deadline: a connection that has not sent a whole request head within ``HEADER_TIMEOUT_S``
  (from its first byte, or from opening) is closed; an idle keep-alive connection after ``IDLE_TIMEOUT_S``;
- a send deadline: a response the client takes nothing of for ``SEND_TIMEOUT_S`` (a clip it never reads;
  progress is the kernel's count of bytes the client acknowledged) is cancelled. Cancelled, not closed under
  it: closing a socket while asyncio's sendfile waits on it leaves that wait, and the open file, pending;
- a per-address cap: one address holds at most ``MAX_PER_ADDRESS`` connections (trusted proxies excepted),
  the rest get ``429`` with Retry-After (a response, not a reset), so one host can never hold the global
  cap of ``MAX_CONNECTIONS``; at that cap a new connection closes the one idle the longest (between
  requests, or not yet through its head), so a few hosts holding keep-alive connections lock nobody out;
- security headers on every response, the parser's own errors included, and never a traceback;
- one log line a minute about failed connections, however many there are.

Heavy calls (the status, a snapshot encode, the metrics) run in a small pool (``WORKERS`` threads), scrypt
in the authenticator's own bounded pool; the stream costs no thread per viewer.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import socket
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Any, Protocol
from urllib.parse import urlsplit

from aiohttp import web, web_protocol

from edgecam.render.encoder import JpegEncoder
from edgecam.web import events_api
from edgecam.web.auth import Authenticator
from edgecam.web.metrics import Metrics
from edgecam.web.stream import BOUNDARY, StreamFanout, TooManyClientsError

log = logging.getLogger(__name__)

STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
    "/favicon.ico": ("favicon.svg", "image/svg+xml"),
}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'self'",
    "Referrer-Policy": "no-referrer",
}
TEXT = "text/plain; charset=utf-8"

MAX_CONNECTIONS = 256  # open connections in all; at the cap the longest idle one makes room, else 503
MAX_PER_ADDRESS = 32  # open connections from one address (a trusted proxy is not limited); beyond: 429
HEADER_TIMEOUT_S = 5.0  # to send a whole request head, from the first byte (or from connecting)
IDLE_TIMEOUT_S = 15.0  # a keep-alive connection with nothing to do is closed after this
RETRY_AFTER_S = 5
STREAM_WRITE_TIMEOUT_S = 20.0  # a viewer that takes no data for this long is dropped
SEND_TIMEOUT_S = 20.0  # a response (a clip) the client takes nothing of for this long is cancelled
SEND_MIN_RATE = 32 * 1024  # bytes/s a download must average where TCP_INFO is missing (after the above)
WORKERS = 2
FAILURE_LOG_INTERVAL_S = 60.0


class App(Protocol):
    """What the server needs from the running pipeline."""

    encoder: JpegEncoder
    fanout: StreamFanout
    authenticator: Authenticator
    metrics: Metrics

    def status(self) -> dict[str, Any]: ...

    def health(self) -> tuple[bool, str]: ...


class PortInUseError(OSError):
    pass


def _raw_response(status: int, reason: str, body: str, extra: dict[str, str]) -> bytes:
    data = body.encode()
    headers = {
        "Content-Type": TEXT, "Content-Length": str(len(data)), "Connection": "close",
        **extra, **SECURITY_HEADERS,
    }  # fmt: skip
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"HTTP/1.1 {status} {reason}\r\n{head}\r\n".encode() + data


_TCPI_BYTES_ACKED = 120  # offset of tcpi_bytes_acked (u64) in Linux's struct tcp_info (since Linux 4.1)


def _bytes_acked(sock: Any) -> int | None:
    """How many bytes the peer has acknowledged on this TCP socket, or None where the kernel does not say
    (not Linux): a send's progress even when asyncio's sendfile bypasses the transport's buffer."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCPI_BYTES_ACKED + 8)
    except (AttributeError, OSError):
        return None
    if len(info) < _TCPI_BYTES_ACKED + 8:
        return None
    return int.from_bytes(info[_TCPI_BYTES_ACKED : _TCPI_BYTES_ACKED + 8], sys.byteorder)


class _Gate:
    """Connection counts, shared by every connection of one server."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.per_address: Counter[str] = Counter()
        self.total = 0
        self.refused = 0
        self.failures: Counter[str] = Counter()  # malformed or failed connections since the last log line
        self.idle: dict[_Connection, None] = {}  # connections neither handling nor sending; oldest first
        self.evicted = 0
        self.last_failure = ""
        self._logged_at = 0.0

    def admit(self, peer: str) -> tuple[int, str, str] | None:
        if self.per_address[peer] >= MAX_PER_ADDRESS and not self.server.app.authenticator.proxies.trusted(
            peer
        ):
            return 429, "Too Many Requests", f"too many connections from {peer} (at most {MAX_PER_ADDRESS})\n"
        if self.total >= MAX_CONNECTIONS and not self._evict_idle():
            return 503, "Service Unavailable", f"too many connections ({MAX_CONNECTIONS}); try again\n"
        self.per_address[peer] += 1
        self.total += 1
        return None

    def _evict_idle(self) -> bool:
        """Close the connection idle the longest, to make room; False when every one is busy."""
        while self.idle:
            oldest = next(iter(self.idle))
            del self.idle[oldest]
            if oldest.evict():
                self.evicted += 1
                return True
        return False

    def release(self, peer: str) -> None:
        self.total -= 1
        self.per_address[peer] -= 1
        if self.per_address[peer] <= 0:
            del self.per_address[peer]

    def failed(self, peer: str, what: str) -> None:
        """One line a minute, however many connections fail (a scan must not flood the log)."""
        self.failures[peer] += 1
        self.last_failure = f"{peer}: {what}"
        now = time.monotonic()
        if now - self._logged_at >= FAILURE_LOG_INTERVAL_S:
            total, hosts = sum(self.failures.values()), len(self.failures)
            log.warning(
                "HTTP: %d failed or malformed connection(s) from %d address(es) in the last minute (latest "
                "%s); more are counted, not logged, for a minute", total, hosts, self.last_failure,
            )  # fmt: skip
            self.failures.clear()
            self._logged_at = now
        else:
            log.debug("HTTP connection from %s failed: %s", peer, what)


class _Connection(web_protocol.RequestHandler):
    """aiohttp's per-connection protocol with a per-address cap and a deadline for the request head."""

    def __init__(self, manager: Any, *, gate: _Gate, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._gate = gate
        self._peer = ""
        self._refused = False
        self._busy = 0
        self._waiting_for_head = True
        self._timer: asyncio.TimerHandle | None = None
        self._raw: asyncio.Transport | None = None
        self._sending: web.StreamResponse | None = None  # the response aiohttp is sending, if any
        self._send_task: asyncio.Task[Any] | None = None
        self._send_started = 0.0
        self._acked: int | None = None  # bytes the client had acknowledged at the last send check
        self._unsent = 0  # bytes left in the write buffer at the last idle check

    # ---- asyncio.Protocol ----------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self._peer = str(peer[0]) if peer else "?"
        self._raw = transport  # type: ignore[assignment]
        refusal = self._gate.admit(self._peer)
        if refusal is not None:
            self._refused = True
            self._gate.refused += 1
            status, reason, body = refusal
            raw = self._raw
            assert raw is not None
            raw.write(_raw_response(status, reason, body, {"Retry-After": str(RETRY_AFTER_S)}))
            if raw.can_write_eof():
                raw.write_eof()  # the client reads the answer and EOF; its close ends ours
            self._timer = self._loop.call_later(2.0, raw.close)
            return
        super().connection_made(transport)
        self._gate.idle[self] = None
        self._arm(HEADER_TIMEOUT_S)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if not self._busy and not self._waiting_for_head:  # the first byte of the next request
            self._waiting_for_head = True
            self._arm(HEADER_TIMEOUT_S)
        super().data_received(data)

    def eof_received(self) -> None:
        if self._refused and self._raw is not None:
            self._raw.close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._refused:
            return
        self._gate.idle.pop(self, None)
        self._gate.release(self._peer)
        super().connection_lost(exc)

    # ---- the head deadline ----------------------------------------------------------------------------------

    def _arm(self, seconds: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(seconds, self._expired)

    def _expired(self) -> None:
        self._timer = None
        raw = self._raw
        if self._busy or raw is None or raw.is_closing():
            return
        if self._sending is not None:
            self._check_send()
            return
        unsent = raw.get_write_buffer_size()
        if unsent and unsent != self._unsent:  # the last response is still being taken
            self._unsent = unsent
            self._arm(IDLE_TIMEOUT_S)
            return
        if unsent:
            self._gate.failed(self._peer, f"took none of {unsent} bytes in {IDLE_TIMEOUT_S:g} s")
        elif self._waiting_for_head:
            self._gate.failed(self._peer, f"no complete request head within {HEADER_TIMEOUT_S:g} s")
        self.force_close()
        raw.abort()  # nothing more can be sent: drop what is buffered (close() would wait for the client)

    def _check_send(self) -> None:
        """Cancel a response the client stopped taking (see SEND_TIMEOUT_S); aiohttp then closes the
        connection."""
        response, task, raw = self._sending, self._send_task, self._raw
        assert response is not None and raw is not None
        acked = _bytes_acked(raw.get_extra_info("socket"))
        if acked is not None:
            if acked != self._acked:  # the client took some since the last check
                self._acked = acked
                self._arm(SEND_TIMEOUT_S)
                return
        else:
            elapsed = self._loop.time() - self._send_started
            allowed = SEND_TIMEOUT_S + (response.content_length or 0) / SEND_MIN_RATE
            if elapsed < allowed:
                self._arm(min(allowed - elapsed, SEND_TIMEOUT_S))
                return
        self._gate.failed(self._peer, f"took nothing of a response for {SEND_TIMEOUT_S:g} s")
        if task is not None:
            task.cancel()

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> Any:  # (response, reset) since aiohttp 3.9, reset alone before
        """aiohttp sends a response here, after the handler returned it (a clip with sendfile): the
        connection is busy until it is sent, under the send deadline instead of the idle one."""
        self._gate.idle.pop(self, None)
        self._sending, self._send_task = resp, asyncio.current_task()
        self._send_started = self._loop.time()
        raw = self._raw
        self._acked = _bytes_acked(raw.get_extra_info("socket")) if raw is not None else None
        self._arm(SEND_TIMEOUT_S)
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self._sending = self._send_task = None
            self._unsent = 0
            if not self._busy and self.transport is not None:
                self._gate.idle[self] = None
                self._arm(IDLE_TIMEOUT_S)

    def evict(self) -> bool:
        """Close this connection if it is idle (to make room for a new one); False if it is in use."""
        raw = self._raw
        if self._busy or self._sending is not None or raw is None or raw.is_closing():
            return False
        self.force_close()
        raw.abort()
        return True

    def request_started(self) -> None:
        self._gate.idle.pop(self, None)
        self._busy += 1
        self._waiting_for_head = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def request_finished(self) -> None:
        self._busy -= 1
        if not self._busy:
            self._arm(IDLE_TIMEOUT_S)

    # ---- aiohttp's own errors (malformed requests): plain text, security headers, one log line a minute ---

    def handle_error(
        self, request: Any, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        self._gate.failed(self._peer, f"{status} {message or type(exc).__name__ if exc else status}")
        if request.writer.output_size > 0:
            raise ConnectionError("response already started")
        text = "bad request\n" if 400 <= status < 500 else "internal error\n"
        response = web.Response(status=status, text=text, headers=SECURITY_HEADERS)
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        log.debug(*args, **kwargs)


class _LowLevelServer(web.Server):
    def __init__(self, handler: Any, gate: _Gate, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._gate = gate

    def __call__(self) -> _Connection:
        return _Connection(self, loop=self._loop, gate=self._gate, **self._kwargs)


class Server:
    """The web server of one pipeline: listens at once (``bind_server``), serves after ``start()``."""

    def __init__(self, sock: socket.socket, app: App) -> None:
        self.app = app
        self._sock = sock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._workers = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="http-work")
        self._static = {
            path: (resources.files("edgecam.web").joinpath("static", name).read_bytes(), kind)
            for path, (name, kind) in STATIC.items()
        }
        self.gate = _Gate(self)
        self._viewers: set[asyncio.Task[Any]] = set()
        self._allowed_hosts = _allowed_hosts()
        self._events_api: events_api.EventsApi | None = None

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    # ---- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the web server did not start within 10 s")

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.close()

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self.app.fanout.attach(loop)
        low = _LowLevelServer(
            self._handle, self.gate, access_log=None, keepalive_timeout=IDLE_TIMEOUT_S + 5,
            max_line_size=8190, max_field_size=8190, lingering_time=2.0,
        )  # fmt: skip
        server = await loop.create_server(low, sock=self._sock, backlog=128)
        self._ready.set()
        try:
            await self._stopped.wait()
        finally:
            server.close()
            for task in list(self._viewers):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(low.shutdown(1.0), 3.0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive() and self._stopped is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._stopped.set)
            thread.join(5)
        else:
            self._sock.close()
        self._workers.shutdown(wait=False, cancel_futures=True)

    # ---- requests -----------------------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        connection = request.protocol
        tracked = isinstance(connection, _Connection)
        if tracked:
            connection.request_started()
        try:
            response = await self._respond(request)
        except web.HTTPException as exc:
            response = _plain(exc.status, (exc.text or exc.reason) + "\n")
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception:  # logged here, never shown to the client
            log.exception("HTTP %s %s failed", request.method, request.path)
            response = _plain(500, "internal error\n")
        finally:
            if tracked:
                connection.request_finished()
        if not response.prepared:
            response.headers.update(SECURITY_HEADERS)
        return response

    async def _respond(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        allowed = events_api.methods(path) if events_api.handles(path) else ("GET", "HEAD")
        if request.method not in allowed:
            return _plain(405, "method not allowed\n", {"Allow": ", ".join(allowed)})
        app = self.app
        auth = app.authenticator
        peer = request.remote or "?"
        client = auth.client(peer, request.headers.get("X-Forwarded-For"))
        if auth.mode == "none" and not self._host_allowed(request, peer):
            return _plain(
                421,
                "unknown Host; open the box by its address or host name, or set stream.public_url\n",
            )
        if path != "/healthz":
            verdict = await auth.authorize(
                path, request.headers.get("Authorization"), request.query.get("token"), client
            )
            if not verdict.ok:
                if verdict.status == 429:
                    return _plain(
                        429, "too many failed attempts; wait\n", {"Retry-After": str(verdict.retry_after_s)}
                    )
                return _plain(
                    401,
                    "authentication required\n",
                    {"WWW-Authenticate": 'Basic realm="edgecam", charset="UTF-8"'},
                )
        if path in self._static:
            body, kind = self._static[path]
            return web.Response(body=body, headers={"Content-Type": kind})
        loop = asyncio.get_running_loop()
        if path == "/healthz":
            ok, reason = app.health()
            return _plain(200 if ok else 503, reason + "\n", {"Cache-Control": "no-store"})
        if path == "/api/status":
            body = await loop.run_in_executor(self._workers, lambda: json.dumps(app.status()).encode())
            return web.Response(
                body=body, headers={"Content-Type": "application/json", "Cache-Control": "no-store"}
            )
        if path == "/metrics":
            body, kind = await loop.run_in_executor(self._workers, app.metrics.render)
            return web.Response(body=body, headers={"Content-Type": kind, "Cache-Control": "no-store"})
        if path == "/snapshot.jpg":
            jpeg = await loop.run_in_executor(self._workers, app.encoder.snapshot)
            if jpeg is None:
                return _plain(503, "no frame yet\n", {"Retry-After": "1"})
            return web.Response(
                body=jpeg, headers={"Content-Type": "image/jpeg", "Cache-Control": "no-store"}
            )
        if path == "/stream.mjpg":
            return await self._stream(request, client)
        if events_api.handles(path):
            if self._events_api is None:  # the app's event store (None: the API says it is unavailable)
                store = getattr(getattr(app, "events", None), "store", None)
                self._events_api = events_api.EventsApi(store, self._workers)
            return await self._events_api.handle(request)
        return _plain(404, "not found\n")

    def _host_allowed(self, request: web.BaseRequest, peer: str) -> bool:
        """DNS rebinding guard for a box without a password: a page on another site must not be able to
        reach it by a name that resolves to its address."""
        host = request.headers.get("Host")
        if not host or self.app.authenticator.proxies.trusted(peer):
            return True
        try:
            name = urlsplit(f"//{host}").hostname or ""
        except ValueError:  # e.g. "[x": not a host name at all
            return False
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(name)
            return True
        public = getattr(self.app, "public_host", None)
        return name.lower().rstrip(".") in self._allowed_hosts or (
            public is not None and name.lower() == public
        )

    async def _stream(self, request: web.BaseRequest, client: str) -> web.StreamResponse:
        fanout = self.app.fanout
        headers = {
            "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # nginx: pass each part on at once
            "Connection": "close",
            **SECURITY_HEADERS,
        }
        if request.method == "HEAD":  # headers only: not a viewer
            return web.Response(headers=headers)
        if fanout.clients >= fanout.max_clients:
            return _plain(503, f"{fanout.clients} clients already watching (stream.max_clients)\n")
        task = asyncio.current_task()
        assert task is not None
        try:
            with fanout.viewer():
                self._viewers.add(task)
                response = _CloseDelimited(headers=headers)
                response.force_close()
                await response.prepare(request)
                await self._feed(request, response, client)
                return response
        except TooManyClientsError as exc:
            return _plain(503, f"{exc}\n")
        finally:
            self._viewers.discard(task)

    async def _feed(self, request: web.BaseRequest, response: web.StreamResponse, client: str) -> None:
        """Write parts until the viewer goes, the server stops or the viewer's credential stops passing.

        After the first part (through aiohttp, which sends the head), parts go straight to the transport:
        no await per part. A viewer whose socket still holds the previous part skips this one (a slow
        viewer gets fewer frames, never older ones); one that takes nothing for STREAM_WRITE_TIMEOUT_S is
        dropped."""
        auth = self.app.authenticator
        authorization, token = request.headers.get("Authorization"), request.query.get("token")
        transport = request.transport
        first = True
        stuck_since: float | None = None
        async for data in self.app.fanout.parts():
            if self.app.authenticator is not auth:  # the stream settings were reloaded: check again
                auth = self.app.authenticator
                verdict = await auth.authorize("/stream.mjpg", authorization, token, client, count=False)
                if not verdict.ok:
                    log.info("stream: a viewer at %s no longer passes the stream auth; ended", client)
                    return
            if transport is None or transport.is_closing():
                return
            if first:
                if not data:
                    continue
                try:
                    await asyncio.wait_for(response.write(data), STREAM_WRITE_TIMEOUT_S)
                except (asyncio.TimeoutError, ConnectionError, RuntimeError):
                    return
                first = False
                continue
            backlog = transport.get_write_buffer_size()
            if backlog > len(data):  # still sending an earlier part: skip this one
                now = time.monotonic()
                stuck_since = stuck_since or now
                if now - stuck_since > STREAM_WRITE_TIMEOUT_S:
                    return  # the viewer stopped reading
                continue
            stuck_since = None
            if data:
                transport.write(data)


class _CloseDelimited(web.StreamResponse):
    """The stream's body ends when the connection does (as MJPEG cameras send it), not chunked: simple
    MJPEG readers parse the parts straight off the socket."""

    _length_check = False


def _plain(status: int, text: str, extra: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=text.encode(), headers={"Content-Type": TEXT, **(extra or {})})


def _allowed_hosts() -> set[str]:
    names = {"localhost", "localhost.localdomain"}
    with contextlib.suppress(OSError):
        host = socket.gethostname().lower()
        names |= {host, f"{host}.local", host.split(".")[0], f"{host.split('.')[0]}.local"}
    with contextlib.suppress(OSError):
        names.add(socket.getfqdn().lower())
    return names


def bind_server(app: App, bind: str, port: int) -> Server:
    """Listen on bind:port now (so a busy port fails at once, naming it); serve after ``start()``."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((bind, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise PortInUseError(
            exc.errno,
            f"cannot listen on {bind}:{port} ({exc.strerror}); another program (or another edgecam) uses "
            f"the port: change stream.port in the config or pass --port",
        ) from exc
    return Server(sock, app)

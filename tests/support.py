"""Test helpers that run real things: the edgecam app as a subprocess, an MJPEG reader, an MJPEG camera."""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from edgecam.web.password import write_password_file

V1 = "ssd_mobilenet_v1_coco"
A050 = "ssdlite_mobilenet_v2_a050_coco"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(
    url: str, timeout: float = 5.0, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def wait_for(predicate, timeout: float, interval: float = 0.2, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class App:
    """`edgecam run` in a subprocess with a config written for the test."""

    def __init__(
        self,
        tmp_path: Path,
        model_dir: Path,
        config: dict[str, Any],
        *args: str,
        auth: dict[str, str] | None = None,
    ) -> None:
        self.auth = auth or {}
        self.port = free_port()
        config = {**config, "stream": {"bind": "127.0.0.1", "port": self.port, **config.get("stream", {})}}
        config.setdefault("detector", {})["model_dir"] = str(model_dir)
        self.config_path = tmp_path / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = tmp_path / "app.log"
        self._log = self.log_path.open("wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgecam", "run", "--config", str(self.config_path), *args],
            stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        self.base = f"http://127.0.0.1:{self.port}"
        try:
            wait_for(self._serving, 60, what=f"the app to serve on {self.base} (log: {self.log_path})")
        except BaseException:
            self.proc.kill()  # never leave an app running behind a failed test
            self.proc.wait()
            self._log.close()
            raise

    def _serving(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"edgecam exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return get(self.base + "/healthz", timeout=1)[0] in (200, 503)  # listening, frames or not
        except OSError:
            return False

    def status(self) -> dict[str, Any]:
        return json.loads(get(self.base + "/api/status", headers=self.auth)[2])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> float:
        """SIGTERM; returns how long the app took to exit."""
        start = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"edgecam did not stop within {timeout} s:\n{self.log()}") from None
        self._log.close()
        return time.monotonic() - start


def basic(user: str, password: str) -> dict[str, str]:
    """An HTTP Basic Authorization header."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def password_app(
    tmp: Path, model_dir: Path, media_dir: Path, password: str, stream: dict[str, Any], login: bool = True
) -> App:
    """The app on vtest.avi (SSDLite α0.5, one detector thread) behind stream.auth token with a password
    file; `stream` adds stream settings. Its own requests log in as edgecam unless login is False."""
    write_password_file(tmp / "auth", password)
    config = {
        "camera": {"source": str(media_dir / "vtest.avi")},
        "detector": {"threads": 1},
        "stream": {"auth": "token", "password_file": str(tmp / "auth"), **stream},
    }
    return App(tmp, model_dir, config, "--model", A050, auth=basic("edgecam", password) if login else None)


class MjpegReader:
    """Reads parts of a multipart/x-mixed-replace stream, optionally slowly, optionally from another source
    address in 127.0.0.0/8 (standing in for another host). A stream that ends raises EOFError."""

    def __init__(
        self,
        url: str,
        timeout: float = 10.0,
        source: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        host_port, _, path = url.removeprefix("http://").partition("/")
        host, _, port = host_port.partition(":")
        self.conn = http.client.HTTPConnection(
            host, int(port), timeout=timeout, source_address=(source, 0) if source else None
        )
        self.conn.request("GET", "/" + path, headers=headers or {})
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.headers = dict(self.response.headers)

    def part(self) -> bytes:
        fp = self.response.fp
        line = fp.readline()
        while line in (b"\r\n", b"\n"):
            line = fp.readline()
        if not line.startswith(b"--"):
            raise EOFError(f"expected a boundary, got {line[:60]!r}")
        length = None
        while (header := fp.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = header.decode().partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if length is None:
            raise EOFError("part without Content-Length")
        data = fp.read(length)
        fp.readline()
        return data

    def close(self) -> None:
        self.response.close()  # the response's file object holds the socket open on its own
        self.conn.close()


class _ReusableServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class MjpegCamera:
    """A network camera for tests: serves multipart/x-mixed-replace MJPEG of a video's frames over real HTTP
    on 127.0.0.1, like an IP camera or a Pi MJPEG streamer. ``stop()`` closes every connection; ``start()``
    listens again on the same port; ``freeze()`` keeps connections open but sends nothing (a camera that
    hangs)."""

    def __init__(self, video: Path, fps: float = 10.0, frames: int = 50) -> None:
        from edgecam.vision import cv2

        capture = cv2.VideoCapture(str(video))
        self.frames = []
        while len(self.frames) < frames:
            ok, image = capture.read()
            if not ok:
                break
            self.frames.append(cv2.imencode(".jpg", image)[1].tobytes())
        capture.release()
        self.fps = fps
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/video.mjpg"
        self.frozen = threading.Event()
        self._server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> None:
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=cam")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                i = 0
                try:
                    while camera._server is self.server:
                        if camera.frozen.is_set():
                            time.sleep(0.02)
                            continue
                        jpeg = camera.frames[i % len(camera.frames)]
                        self.wfile.write(
                            b"--cam\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                        )
                        self.wfile.write(jpeg + b"\r\n")
                        i += 1
                        time.sleep(1 / camera.fps)
                except OSError:
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        server = _ReusableServer(("127.0.0.1", self.port), Handler)
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def freeze(self, on: bool = True) -> None:
        (self.frozen.set if on else self.frozen.clear)()


def burn(stop) -> None:
    while not stop.is_set():
        pass


class CpuHog:
    """Busy processes, more than there are cores; bounded in time even if a test forgets to stop them."""

    def __init__(self, processes: int = 4, max_s: float = 120.0) -> None:
        self.stop_event = multiprocessing.Event()
        self.procs = [
            multiprocessing.Process(target=burn, args=(self.stop_event,), daemon=True)
            for _ in range(processes)
        ]
        self._timer = threading.Timer(max_s, self.stop)

    def start(self) -> None:
        for p in self.procs:
            p.start()
        self._timer.start()

    def stop(self) -> None:
        self.stop_event.set()
        for p in self.procs:
            p.join(5)
        self._timer.cancel()

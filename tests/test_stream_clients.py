"""Clients nobody here wrote, pointed at the box the way users point them: ffmpeg (what Frigate, go2rtc and
most NVR software run underneath) and OpenCV's VideoCapture (a script on another machine) reading the MJPEG
stream, with the token in the URL and with Basic auth; the box behind Debian's nginx as a reverse proxy; and
Debian's Prometheus scraping /metrics, after promtool has linted them."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import textwrap

import numpy as np
import pytest
from test_web_attacks import request

from support import basic, free_port, get, password_app, wait_for

PASSWORD = "correct horse battery"
WIDTH, HEIGHT = 320, 240  # stream.width 320 on vtest.avi's 768x576


@pytest.fixture(scope="module")
def box(tmp_path_factory, model_dir, media_dir):
    tmp_path = tmp_path_factory.mktemp("stream-clients")
    stream = {"trusted_proxies": ["127.0.0.1"], "width": WIDTH}
    app = password_app(tmp_path, model_dir, media_dir, PASSWORD, stream)
    yield app
    app.stop()


def _ffmpeg_frames(url: str, frames: int = 10) -> np.ndarray:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg not installed (./dev test installs it as root)")
    out = subprocess.run(
        [ffmpeg, "-v", "error", "-nostdin", "-f", "mjpeg", "-i", url, "-frames:v", str(frames),
         "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr.decode(errors="replace")[-500:]
    return np.frombuffer(out.stdout, np.uint8).reshape(-1, HEIGHT, WIDTH)


def _moving(frames: np.ndarray) -> bool:
    return any((a != b).any() for a, b in itertools.pairwise(frames))


def test_ffmpeg_reads_the_stream_with_the_token_and_with_basic_auth(box):
    host = box.base.removeprefix("http://")
    for url in (
        f"{box.base}/stream.mjpg?token={PASSWORD.replace(' ', '%20')}",
        f"http://edgecam:{PASSWORD.replace(' ', '%20')}@{host}/stream.mjpg",
    ):
        frames = _ffmpeg_frames(url)
        assert frames.shape == (10, HEIGHT, WIDTH) and _moving(frames), url
    ffmpeg = shutil.which("ffmpeg")
    refused = subprocess.run(
        [ffmpeg, "-v", "error", "-nostdin", "-i", f"{box.base}/stream.mjpg?token=wrong", "-frames:v", "1",
         "-f", "null", "-"],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode != 0 and b"401" in refused.stderr


def test_opencv_videocapture_reads_the_stream(box, cv2):
    capture = cv2.VideoCapture(f"{box.base}/stream.mjpg?token={PASSWORD.replace(' ', '%20')}", cv2.CAP_FFMPEG)
    try:
        assert capture.isOpened()
        images = [capture.read()[1] for _ in range(10)]
    finally:
        capture.release()
    assert all(image is not None and image.shape == (HEIGHT, WIDTH, 3) for image in images)
    assert any((a != b).any() for a, b in itertools.pairwise(images))


NGINX_CONF = textwrap.dedent(
    """
    daemon off;
    pid {tmp}/nginx.pid;
    error_log {tmp}/error.log warn;
    events {{ worker_connections 64; }}
    http {{
        access_log {tmp}/access.log;
        client_body_temp_path {tmp}/body;
        proxy_temp_path {tmp}/proxy;
        fastcgi_temp_path {tmp}/fastcgi;
        uwsgi_temp_path {tmp}/uwsgi;
        scgi_temp_path {tmp}/scgi;
        server {{
            listen 127.0.0.1:{port};
            location / {{
                proxy_pass http://127.0.0.1:{upstream};
                proxy_http_version 1.1;
                proxy_buffering off;
                proxy_set_header Host $host;
                proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            }}
        }}
    }}
    """
)


@pytest.fixture
def nginx(box, tmp_path):
    binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")  # root's PATH or not
    if binary is None:
        pytest.skip("nginx not installed (./dev test installs it as root)")
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp_path, port=port, upstream=box.port))
    proc = subprocess.Popen([binary, "-c", str(conf), "-p", str(tmp_path)], stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(base + "/healthz"), 20, what="nginx to proxy /healthz")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return get(url, timeout=1)[0] == 200
    except OSError:  # not listening yet
        return False


def test_behind_nginx_the_stream_flows_and_each_client_is_known_by_its_own_address(box, nginx):
    """Through the proxy the stream is not buffered; nginx appends the address of whoever connected to it, and
    the box (trusting nginx) takes that one: a header the client made up is not believed, and one client's
    wrong passwords lock out that client, not everyone behind the proxy."""
    port = nginx
    base = f"http://127.0.0.1:{port}"
    frames = _ffmpeg_frames(f"{base}/stream.mjpg?token={PASSWORD.replace(' ', '%20')}", frames=15)
    assert frames.shape == (15, HEIGHT, WIDTH) and _moving(frames)
    right, wrong = basic("edgecam", PASSWORD), basic("edgecam", "wrong")
    assert request(port, "/api/status", source="127.0.0.2")[0] == 401
    assert request(port, "/api/status", right, source="127.0.0.2")[0] == 200
    for _ in range(6):  # a guesser at 127.0.0.3 claiming to be someone else
        request(port, "/api/status", {**wrong, "X-Forwarded-For": "203.0.113.9"}, source="127.0.0.3")
    assert request(port, "/api/status", right, source="127.0.0.3")[0] == 429  # locked out: it was known
    assert request(port, "/api/status", right, source="127.0.0.2")[0] == 200  # its neighbour is not
    wait_for(lambda: "from 127.0.0.3;" in box.log(), 10, what="the lockout naming the real client")
    assert "203.0.113.9" not in box.log()


def test_promtool_accepts_the_metrics_and_prometheus_scrapes_them_with_basic_auth(box, tmp_path):
    """Debian's promtool lints the exposition (names, types, help); a real Prometheus server scrapes the box
    with Basic auth from a password file, as a user's would, and has the series."""
    promtool, prometheus = shutil.which("promtool"), shutil.which("prometheus")
    if promtool is None or prometheus is None:
        pytest.skip("prometheus not installed (./dev test installs it as root)")
    code, headers, body = get(box.base + "/metrics", headers=basic("edgecam", PASSWORD))
    assert code == 200 and headers["Content-Type"].startswith("text/plain")
    lint = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=30, check=False
    )
    assert lint.returncode == 0, (lint.stdout + lint.stderr).decode()
    (tmp_path / "password").write_text(PASSWORD)
    (tmp_path / "prometheus.yml").write_text(
        textwrap.dedent(
            f"""
            global: {{scrape_interval: 1s, scrape_timeout: 1s}}
            scrape_configs:
              - job_name: edgecam
                basic_auth: {{username: edgecam, password_file: {tmp_path / "password"}}}
                static_configs: [{{targets: ["127.0.0.1:{box.port}"]}}]
            """
        )
    )
    check = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert check.returncode == 0, (check.stdout + check.stderr).decode()
    port = free_port()
    server = subprocess.Popen(
        [prometheus, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:

        def value(query: str) -> float | None:
            try:
                code, _, reply = get(f"http://127.0.0.1:{port}/api/v1/query?query={query}", timeout=2)
            except OSError:  # not listening yet
                return None
            result = json.loads(reply)["data"]["result"] if code == 200 else []
            return float(result[0]["value"][1]) if result else None

        wait_for(lambda: value('up{job="edgecam"}') == 1.0, 60, what="Prometheus to scrape the box")
        wait_for(lambda: (value("edgecam_inference_frames_total") or 0) > 0, 30, what="the frame counter")
    finally:
        server.terminate()
        server.wait(timeout=20)

"""Event memory in the running box: real video in, events in SQLite, H.264 clips out; read back over the API
(filters, range requests, delete), played by ffprobe and Chromium, kept across a restart and a kill -9."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest

from edgecam.web.server import SEND_TIMEOUT_S

from support import App, get, wait_for

PRE_S, POST_S = 1.0, 1.0
SMALL = "ssdlite_mobilenet_v2_a050_coco"


def recording_app(tmp_path: Path, model_dir: Path, media_dir: Path, data: Path) -> App:
    return App(
        tmp_path, model_dir,
        {
            "camera": {"source": str(media_dir / "vtest.avi")},
            "detector": {"threads": 1, "ladder": [SMALL]},
            "stream": {"width": 320},
            "tracker": {"max_age_s": 0.5},  # tracks end soon after a person leaves: clips complete quickly
            "recording": {"enabled": True, "dir": str(data), "pre_s": PRE_S, "post_s": POST_S, "min_free_gb": 0,
                          "max_clip_s": 6},
        },
    )  # fmt: skip


def events(app: App, query: str = "") -> dict:
    status, _, body = get(app.base + "/api/events" + query)
    assert status == 200, body
    return json.loads(body)


def with_clip(app: App) -> dict | None:
    return next(
        (e for e in events(app, "?label=person&limit=1000")["events"] if e["clip"] and e["end"]), None
    )


def ffprobe(path: Path) -> dict:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return json.loads(result.stdout)


@pytest.fixture
def needs_ffprobe():
    if shutil.which("ffprobe") is None:
        pytest.skip("ffprobe is not installed (./dev test installs ffmpeg as root)")
    pytest.importorskip("av", reason="PyAV records the clips")


@pytest.mark.slow
def test_events_and_clips_over_the_api(tmp_path, model_dir, media_dir, needs_ffprobe):
    data = tmp_path / "data"
    app = recording_app(tmp_path, model_dir, media_dir, data)
    try:
        event = wait_for(lambda: with_clip(app), 120, interval=0.5, what="an event with a complete clip")
        assert event["label"] == "person" and event["end"] and event["start"].endswith("+00:00")
        assert event["clip"] == f"/clips/{event['id']}.mp4"
        assert event["snapshot"] == f"/snapshots/{event['id']}.jpg"  # the start frame, for the page's list
        status, headers, jpeg = get(app.base + event["snapshot"])
        assert status == 200 and headers["Content-Type"] == "image/jpeg" and jpeg[:2] == b"\xff\xd8"

        # the clip: H.264 that plays in a browser, pre-roll and post-roll included
        status, headers, body = get(app.base + event["clip"])
        assert status == 200 and headers["Content-Type"] == "video/mp4"
        clip = tmp_path / "clip.mp4"
        clip.write_bytes(body)
        probe = ffprobe(clip)
        video = next(s for s in probe["streams"] if s["codec_type"] == "video")
        assert video["codec_name"] == "h264" and video["pix_fmt"] == "yuv420p"
        assert float(probe["format"]["duration"]) >= PRE_S + POST_S

        # cached by the browser only while it stands: asked again each time, 304 while unchanged
        etag = {k.lower(): v for k, v in headers.items()}["etag"]
        assert headers["Cache-Control"] == "private, no-cache" and etag
        conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=10)
        conn.request("GET", event["clip"], headers={"If-None-Match": etag})
        revalidated = conn.getresponse()
        assert revalidated.status == 304 and revalidated.read() == b""
        conn.close()

        # range requests, so the browser can seek
        conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=10)
        conn.request("GET", event["clip"], headers={"Range": "bytes=100-199"})
        partial = conn.getresponse()
        assert partial.status == 206 and partial.read() == body[100:200]
        assert partial.headers["Content-Range"] == f"bytes 100-199/{len(body)}"
        conn.close()

        # filters, paging, limits
        everything = events(app, "?limit=5000")
        assert everything["total"] >= 1 and len(everything["events"]) == min(everything["total"], 1000)
        assert events(app, "?label=giraffe")["total"] == 0
        assert events(app, "?until=2000-01-01")["total"] == 0
        assert events(app, "?limit=1&offset=0")["events"][0]["id"] >= event["id"]  # newest first
        assert get(app.base + "/api/events?since=yesterday")[0] == 400
        assert get(app.base + "/api/events?limit=-1")[0] == 400
        # Numbers past SQLite's integers were a 500 and a traceback in the log: a 400 saying what is wrong.
        status, _, body = get(app.base + "/api/events?offset=" + "9" * 30)
        assert status == 400 and b"offset: must be at most" in body
        assert events(app, "?limit=" + "9" * 30)["total"] >= 1  # a huge limit is clamped, as 5000 is
        assert events(app, "?since=nan")["total"] == 0 and events(app, "?until=1e999")["total"] >= 1
        assert get(app.base + "/clips/999999.mp4")[0] == 404
        # Only ASCII digits and nothing after: "\d" took Arabic digits and "$" a trailing newline.
        arabic = "".join(chr(0x660 + int(c)) for c in str(event["id"]))
        for odd in (f"/clips/{arabic}.mp4", f"/clips/{event['id']}.mp4%0A", f"/api/events/{event['id']}%0A"):
            assert get(app.base + urllib.parse.quote(odd, safe="/%"))[0] == 404, odd

        # status names the store and the recorder
        store = app.status()["events"]["store"]
        assert store["events"] >= 1 and not store["paused"]

        # delete: the row and its files
        conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=10)
        conn.request("DELETE", f"/api/events/{event['id']}")
        assert conn.getresponse().status == 200
        conn.close()
        assert get(app.base + f"/api/events/{event['id']}")[0] == 404
        assert get(app.base + event["clip"])[0] == 404
    finally:
        app.stop()


@pytest.mark.slow
def test_events_survive_a_restart_and_a_kill(tmp_path, model_dir, media_dir, needs_ffprobe):
    data = tmp_path / "data"
    app = recording_app(tmp_path, model_dir, media_dir, data)
    try:
        wait_for(lambda: with_clip(app), 120, interval=0.5, what="an event with a complete clip")
        before = events(app, "?limit=1000")
    finally:
        app.stop()
    ids_before = {e["id"] for e in before["events"]}

    (tmp_path / "second").mkdir()
    app = recording_app(tmp_path / "second", model_dir, media_dir, data)
    try:
        after = events(app, "?limit=1000")
        assert ids_before <= {e["id"] for e in after["events"]}  # nothing lost at a restart
        wait_for(lambda: events(app)["total"] > before["total"], 60, what="new events after the restart")
        app.proc.send_signal(signal.SIGKILL)  # a power cut, as far as the process can tell
        app.proc.wait(10)
    finally:
        app.stop()
    killed_total = after["total"]
    leftovers = list((data / "clips").glob("*.part"))  # the clip being written when the process died

    (tmp_path / "third").mkdir()
    app = recording_app(tmp_path / "third", model_dir, media_dir, data)
    try:
        again = events(app, "?limit=1000")
        assert again["total"] >= killed_total and ids_before <= {e["id"] for e in again["events"]}
        assert all(e["end"] is not None for e in again["events"] if e["id"] in ids_before)
        # a clip cut by the kill is finalized (playable) or removed at start, never left half-written
        wait_for(lambda: not any(p.exists() for p in leftovers), 20, what="leftover clips finalized")
        for e in again["events"]:
            if e["clip"]:
                assert get(app.base + e["clip"])[0] == 200  # every listed clip is complete and served
    finally:
        app.stop()


@pytest.mark.slow
def test_the_page_lists_events_and_plays_a_clip_in_chromium(tmp_path, model_dir, media_dir, needs_ffprobe):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian chromium is not installed (./dev test installs it as root)")
    from playwright.sync_api import sync_playwright

    app = recording_app(tmp_path, model_dir, media_dir, tmp_path / "data")
    try:
        event = wait_for(lambda: with_clip(app), 120, interval=0.5, what="an event with a complete clip")
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=chromium,
                args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--autoplay-policy=no-user-gesture-required",
                      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
            )  # fmt: skip
            try:
                page = browser.new_page(viewport={"width": 412, "height": 915})  # a phone
                page.goto(app.base + "/", wait_until="domcontentloaded")
                item = page.locator(f'#events li[data-id="{event["id"]}"]')
                wait_for(lambda: item.count() == 1, 30, what="the event in the page's list")
                assert "person" in item.inner_text().lower()
                wait_for(
                    lambda: item.locator("img").evaluate("i => i.naturalWidth") > 0, 20, what="its picture"
                )
                page.select_option("#ev-label", "person")  # a filter narrows the list, the event stays
                wait_for(lambda: page.locator("#events li").count() >= 1, 20, what="the filtered list")
                page.locator(f'#events li[data-id="{event["id"]}"]').click()
                ready = lambda: page.evaluate("() => document.getElementById('clip').readyState")  # noqa: E731
                wait_for(lambda: ready() >= 2, 30, what="the clip to play (readyState >= 2)")
                length = page.evaluate("() => document.getElementById('clip').duration")
                assert length >= PRE_S + POST_S, length
                page.screenshot(path=str(tmp_path / "events.png"))
            finally:
                browser.close()
    finally:
        app.stop()


def open_clip_files(pid: int) -> int:
    fds = Path(f"/proc/{pid}/fd")
    count = 0
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            count += os.readlink(fd).endswith(".mp4")
    return count


@pytest.mark.slow
def test_clip_downloads_nobody_reads_are_cancelled_and_free_their_files(
    tmp_path, model_dir, media_dir, needs_ffprobe
):
    # Found by attacking the box: the idle timer closed a connection while asyncio's sendfile still waited on
    # it, so the request never ended and its clip file stayed open (1,201 of them, a flood of "Task was
    # destroyed" errors, and once a web server deadlocked for good). Now a download the client takes nothing
    # of for SEND_TIMEOUT_S is cancelled, and a slow but steady reader still gets it all.
    data = tmp_path / "data"
    app = recording_app(tmp_path, model_dir, media_dir, data)
    stalled: list[socket.socket] = []
    try:
        event = wait_for(lambda: with_clip(app), 120, interval=0.5, what="an event with a complete clip")
        status, _, clip = get(app.base + event["clip"])
        assert status == 200
        # Padded past what the kernel buffers for a client that reads nothing (loopback's send buffer grows
        # to 4 MB), so each of these sends really stalls.
        (path,) = [p for p in (data / "clips").glob("*.mp4") if p.read_bytes() == clip]
        with path.open("ab") as fh:
            fh.write(bytes(6 << 20))
        clip = path.read_bytes()
        ask = f"GET {event['clip']} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        for n in range(12):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
            s.bind((f"127.0.3.{n + 1}", 0))
            s.connect(("127.0.0.1", app.port))
            s.sendall(ask)
            stalled.append(s)
        slow = socket.create_connection(("127.0.0.1", app.port), timeout=30)
        slow.sendall(ask.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        held = wait_for(
            lambda: open_clip_files(app.proc.pid) >= len(stalled) or None, 10, what="stalled sends"
        )
        assert held, f"the {len(clip)}-byte clip fits the socket buffers: nothing stalls, nothing is tested"

        got = bytearray()
        started = time.monotonic()
        while chunk := slow.recv(65536):  # slowly, with pauses: taking some all along
            got += chunk
            time.sleep(0.05)
        slow.close()
        assert got.endswith(clip) and time.monotonic() - started > 1.0

        wait_for(
            lambda: open_clip_files(app.proc.pid) == 0, 3 * SEND_TIMEOUT_S + 10, what="clip files closed"
        )
        for s in stalled:  # the server ended each one: what the kernel buffered, then EOF or a reset
            s.settimeout(10)
            with contextlib.suppress(ConnectionResetError):
                while s.recv(65536):
                    pass
        assert get(app.base + "/healthz")[0] == 200
        log = app.log()
        assert "Task was destroyed" not in log and "InvalidStateError" not in log and "Traceback" not in log
    finally:
        for s in stalled:
            s.close()
        app.stop()

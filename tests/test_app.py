"""The main job, for real: `edgecam run` on a real video with a real model, read over real HTTP,
and the page loaded in headless Chromium."""

from __future__ import annotations

import itertools
import shutil
import threading
import time

import numpy as np
import pytest

from support import A050, V1, App, MjpegCamera, MjpegReader, get, wait_for

pytestmark = pytest.mark.slow


def decode(cv2, data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a valid JPEG"
    return image


@pytest.fixture
def vtest_app(tmp_path, model_dir, media_dir):
    app = App(
        tmp_path, model_dir,
        {"camera": {"source": str(media_dir / "vtest.avi")}, "detector": {"threads": 1}, "stream": {"width": 320}},
        "--model", V1,
    )  # fmt: skip
    yield app
    app.stop()


def test_stream_status_and_snapshot(vtest_app, cv2):
    app = vtest_app
    reader = MjpegReader(app.base + "/stream.mjpg")
    assert reader.status == 200
    assert reader.headers["Content-Type"].startswith("multipart/x-mixed-replace")
    assert reader.headers["Cache-Control"] == "no-store"
    images = [decode(cv2, reader.part()) for _ in range(30)]
    reader.close()
    assert all(img.shape == (240, 320, 3) for img in images)
    assert all((a != b).any() for a, b in itertools.pairwise(images))

    status = wait_for(lambda: (s := app.status())["tracks"] and s, 60, what="person tracks in /api/status")
    assert "person" in {t["label"] for t in status["tracks"]}
    for key in ("version", "uptime_s", "source", "inference", "detector", "stream", "tracks", "config"):
        assert key in status
    assert status["detector"] | {"model": V1, "alpha": 1.0, "device": "cpu"} == status["detector"]
    assert status["source"]["state"] == "live" and status["inference"]["frames"] > 0
    inference = status["inference"]
    assert 0 < inference["track_ms"] < inference["ms"] and 0 < inference["invoke_ms"] < inference["ms"]
    assert status["config"] == {"path": str(app.config_path), "error": None, "pending_restart": []}
    code, headers, body = get(app.base + "/snapshot.jpg")
    assert (
        code == 200 and headers["Content-Type"] == "image/jpeg" and decode(cv2, body).shape == (240, 320, 3)
    )
    code, _, body = get(app.base + "/healthz")
    assert (code, body) == (200, b"ok\n")
    code, _, _ = get(app.base + "/nope")
    assert code == 404


def test_encodes_only_while_someone_watches(vtest_app):
    app = vtest_app
    wait_for(lambda: app.status()["inference"]["frames"] >= 5, 60, what="inference to run")
    before = app.status()
    time.sleep(3)
    idle = app.status()
    # nothing for the stream while nobody watches; only the pictures of new events (one JPEG per track start)
    assert (
        idle["stream"]["streamed_frames"] == before["stream"]["streamed_frames"]
        and idle["inference"]["frames"] > 5
    )
    new_events = idle["events"]["events"] - before["events"]["events"]
    assert idle["stream"]["encoded_frames"] - before["stream"]["encoded_frames"] <= new_events
    reader = MjpegReader(app.base + "/stream.mjpg")
    for _ in range(5):
        reader.part()
    start, t0 = app.status(), time.monotonic()
    for _ in range(10):
        reader.part()
    end, t1 = app.status(), time.monotonic()
    reader.close()
    encoded = end["stream"]["encoded_frames"] - start["stream"]["encoded_frames"]
    processed = end["inference"]["frames"] - start["inference"]["frames"]
    assert encoded >= 8 and encoded <= processed + 2, (encoded, processed, t1 - t0)


def test_slow_clients_do_not_slow_the_fast_one(tmp_path, model_dir, media_dir):
    app = App(
        tmp_path, model_dir,
        {"camera": {"source": str(media_dir / "vtest.avi"), "realtime": False}, "detector": {"threads": 1},
         "stream": {"fps": 10}},
        "--model", A050,
    )  # fmt: skip
    try:
        slow = [MjpegReader(app.base + "/stream.mjpg") for _ in range(2)]
        stop = threading.Event()

        def crawl(reader: MjpegReader) -> None:  # reads one part every 2 s: far slower than the stream
            while not stop.is_set():
                try:
                    reader.part()
                except OSError:
                    return
                stop.wait(2.0)

        threads = [threading.Thread(target=crawl, args=(r,), daemon=True) for r in slow]
        for t in threads:
            t.start()
        fast = MjpegReader(app.base + "/stream.mjpg")
        for _ in range(5):
            fast.part()
        t0, n = time.monotonic(), 0
        while time.monotonic() - t0 < 6:
            fast.part()
            n += 1
        fast_fps = n / (time.monotonic() - t0)
        stream_fps = app.status()["stream"]["fps"]
        stop.set()
        print(f"\nfast client {fast_fps:.1f} fps, stream {stream_fps:.1f} fps, 2 slow clients attached")
        assert app.status()["stream"]["clients"] == 3
        assert fast_fps >= 0.5 * stream_fps and stream_fps > 2
        fast.close()
        for r in slow:
            r.close()
    finally:
        app.stop()


def test_network_source_lost_and_back_without_restart(tmp_path, model_dir, media_dir):
    camera = MjpegCamera(media_dir / "vtest.avi", fps=10)
    camera.start()
    app = App(
        tmp_path, model_dir,
        {"camera": {"source": camera.url, "stall_s": 2.0}, "detector": {"threads": 1}},
        "--model", A050,
    )  # fmt: skip
    try:
        wait_for(lambda: get(app.base + "/healthz")[0] == 200, 30, what="the camera to go live")
        camera.stop()
        wait_for(lambda: app.status()["source"]["state"] == "lost", 20, what="state lost")
        code, _, body = get(app.base + "/healthz")
        assert code == 503 and b"source lost" in body
        camera.start()
        wait_for(lambda: app.status()["source"]["state"] == "live", 60, what="state live again")
        wait_for(lambda: get(app.base + "/healthz")[0] == 200, 20, what="healthz 200 again")
        assert app.status()["source"]["reconnects"] >= 1
    finally:
        took = app.stop()
        camera.stop()
    assert took < 5, f"SIGTERM took {took:.1f} s"


def test_sigterm_stops_promptly(tmp_path, model_dir, media_dir):
    app = App(tmp_path, model_dir, {"camera": {"source": str(media_dir / "vtest.avi")}}, "--model", A050)
    reader = MjpegReader(app.base + "/stream.mjpg")
    reader.part()
    took = app.stop()
    reader.close()
    assert app.proc.returncode == 0, app.log()
    assert took < 5, f"SIGTERM took {took:.1f} s"
    assert "stopped" in app.log()


def test_page_in_headless_chromium(vtest_app, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian chromium is not installed (./dev test installs it as root)")
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )  # fmt: skip
        try:
            page = browser.new_page(viewport={"width": 412, "height": 915})  # a phone
            page.goto(vtest_app.base + "/", wait_until="domcontentloaded")  # an MJPEG img never "loads"
            # The page's strict CSP forbids eval, so poll through the DevTools protocol, not wait_for_function.
            wait_for(
                lambda: page.evaluate("() => document.getElementById('stream').naturalWidth") > 0,
                30,
                what="stream image",
            )
            expect(page.locator("#model")).to_contain_text(V1, timeout=30_000)
            expect(page.locator("#state")).to_have_text("live", timeout=30_000)
            first = page.screenshot(path=str(tmp_path / "page1.png"))
            page.wait_for_timeout(1000)
            second = page.screenshot(path=str(tmp_path / "page2.png"))
            assert first != second
            assert page.evaluate("document.getElementById('stream').naturalWidth") == 320
            assert page.locator("#objects li").count() >= 1
        finally:
            browser.close()


def test_page_opened_with_credentials_in_the_url_is_live(tmp_path, model_dir, media_dir):
    """http://user:pw@host/ once showed "offline": browsers refuse fetch() of a URL with credentials in it,
    and a relative URL on such a page carries them."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian chromium is not installed (./dev test installs it as root)")
    from playwright.sync_api import expect, sync_playwright

    from edgecam.web.password import write_password_file

    password = "correct-horse-battery"
    write_password_file(tmp_path / "auth", password)
    app = App(
        tmp_path, model_dir,
        {"camera": {"source": str(media_dir / "vtest.avi")}, "detector": {"threads": 1},
         "stream": {"width": 320, "password_file": str(tmp_path / "auth")}},
        "--model", A050,
    )  # fmt: skip
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
            )
            try:
                page = browser.new_page()
                errors: list[str] = []
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.goto(f"http://edgecam:{password}@127.0.0.1:{app.port}/", wait_until="domcontentloaded")
                expect(page.locator("#state")).to_have_text("live", timeout=30_000)
                wait_for(
                    lambda: page.evaluate("() => document.getElementById('stream').naturalWidth") == 320,
                    30,
                    what="the stream image",
                )
                assert not [e for e in errors if "credentials" in e], errors
            finally:
                browser.close()
    finally:
        app.stop()

"""Camera passwords never leave the box: not on the open /healthz, /api/status, the log or the no-signal
card (whose text is the /healthz reason), whatever characters they hold."""

from __future__ import annotations

import pytest

from edgecam.capture.network import redact_url
from edgecam.capture.redact import scrub

from support import A050, App, free_port, get, wait_for


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://admin:secret@10.0.0.5:554/stream1", "rtsp://***@10.0.0.5:554/stream1"),
        ("http://admin:se/cret@cam.lan/video.mjpg", "http://***@cam.lan/video.mjpg"),
        ("http://admin:p@ss@cam.lan/video.mjpg", "http://***@cam.lan/video.mjpg"),
        ("rtsp://admin:a:b?c#d@10.0.0.5/s", "rtsp://***@10.0.0.5/s"),
        ("rtsp://10.0.0.5/stream", "rtsp://10.0.0.5/stream"),
        # credentials in the query string, as many cheap cameras take them (the rest of the query stays)
        (
            "http://cam/videostream.cgi?user=admin&pwd=Se%21cret&res=1",
            "http://cam/videostream.cgi?user=***&pwd=***&res=1",
        ),
        ("rtsp://a:b@cam/s?Password=x;channel=1", "rtsp://***@cam/s?Password=***;channel=1"),
        ("http://cam/snap.jpg?access_token=abc#top", "http://cam/snap.jpg?access_token=***#top"),
        ("http://cam/live?resolution=640&keyframe=1", "http://cam/live?resolution=640&keyframe=1"),
        ("/home/pi/video.mp4", "/home/pi/video.mp4"),
    ],
)
def test_redact_url_hides_the_whole_user_information(url, shown):
    assert redact_url(url) == shown


def test_scrub_removes_the_credentials_in_any_form():
    url = "http://admin:se/cret@cam.lan/video.mjpg"
    text = f"ffmpeg: {url} failed; tried http://cam.lan with password se/cret and user admin"
    cleaned = scrub(text, url)
    assert "se/cret" not in cleaned and "admin" not in cleaned and "***@cam.lan/video.mjpg" in cleaned


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "shown"),
    [
        ("http://admin:se/cret@127.0.0.1:{port}/video.mjpg", "***@127.0.0.1"),
        # Found by attacking the box: query-string credentials were on the open /healthz.
        ("http://127.0.0.1:{port}/videostream.cgi?user=admin&pwd=se/cret", "?user=***&pwd=***"),
    ],
)
def test_a_camera_password_never_shows_on_the_open_pages_or_the_log(tmp_path, model_dir, path, shown):
    port = free_port()  # nothing listens: the camera refuses at once
    url = path.format(port=port)
    app = App(tmp_path, model_dir, {"camera": {"source": url, "stall_s": 5.0}}, "--model", A050)
    try:
        status = wait_for(
            lambda: "cannot open" in ((s := app.status())["source"]["reason"] or "") and s,
            30,
            what="the failure reason",
        )
        code, _, body = wait_for(
            lambda: "cannot open" in (r := get(app.base + "/healthz"))[2].decode() and r,
            30,
            what="healthz reason",
        )
        texts = {"healthz": body.decode(), "status": str(status), "log": app.log()}
        for where, text in texts.items():
            for secret in ("se/cret", "cret@", "admin:", "=admin"):
                assert secret not in text, (where, secret, text[-500:])
        assert code == 503 and shown in texts["healthz"]
        reason = status["source"]["reason"]
        assert "within" not in reason and "refused" in reason, reason  # an instant refusal is not a timeout
    finally:
        app.stop()

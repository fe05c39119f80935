"""Motion gating in the real app: a still video (one real vtest.avi frame, repeated) runs the detector about
once per idle_detect_s, while output frames, the stream and /healthz keep going at camera rate; a busy
video runs it on every frame; and the status shows it."""

from __future__ import annotations

import time

import pytest

from support import A050, App, MjpegReader, get, wait_for

pytestmark = pytest.mark.slow
FPS = 15.0


@pytest.fixture(scope="module")
def still_video(tmp_path_factory, media_dir, cv2):
    cap = cv2.VideoCapture(str(media_dir / "vtest.avi"))
    ok, image = cap.read()
    cap.release()
    assert ok
    path = tmp_path_factory.mktemp("still") / "still.avi"
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (image.shape[1], image.shape[0])
    )
    for _ in range(int(FPS * 20)):
        writer.write(image)
    writer.release()
    return path


def config(source, idle_s: float, enabled: bool = True) -> dict:
    return {
        "camera": {"source": str(source), "fps": 0, "realtime": True},
        "detector": {"threads": 1},
        "motion": {"enabled": enabled, "idle_detect_s": idle_s, "draw": True},
        "recording": {"enabled": False},
        "stream": {"width": 320},
    }


def test_still_video_detects_every_idle_period_and_the_stream_flows(tmp_path, model_dir, still_video):
    idle_s = 1.0
    app = App(tmp_path, model_dir, config(still_video, idle_s), "--model", A050)
    try:
        wait_for(lambda: app.status()["inference"]["frames"] > 10, 30, what="first output frames")
        before, t0 = app.status(), time.monotonic()
        reader = MjpegReader(app.base + "/stream.mjpg")
        parts = 0
        while time.monotonic() - t0 < 6.0:
            assert reader.part()[:2] == b"\xff\xd8"
            parts += 1
        reader.close()
        after, elapsed = app.status(), time.monotonic() - t0
        frames = after["inference"]["frames"] - before["inference"]["frames"]
        detected = after["inference"]["detected"] - before["inference"]["detected"]
        assert frames >= 0.8 * FPS * elapsed  # output frames at camera rate
        assert parts >= 0.6 * FPS * elapsed  # the stream keeps flowing
        assert abs(detected - elapsed / idle_s) <= 2  # the detector about once per idle period
        motion = after["motion"]
        assert motion["enabled"] and motion["state"] == "still"
        assert motion["skipped_frames"] - before["motion"]["skipped_frames"] == frames - detected
        assert (
            motion["idle_detect_s"] == idle_s and motion["detected_frames"] == after["inference"]["detected"]
        )
        assert get(app.base + "/healthz")[0] == 200
        # The people standing in the frame are tracked, and stay the same tracks.
        ids = {t["id"] for t in after["tracks"]}
        assert ids
        time.sleep(3 * idle_s)
        assert {t["id"] for t in app.status()["tracks"]} == ids
    finally:
        app.stop()


def test_gating_off_detects_every_frame(tmp_path, model_dir, still_video):
    app = App(tmp_path, model_dir, config(still_video, 1.0, enabled=False), "--model", A050)
    try:
        wait_for(lambda: app.status()["inference"]["frames"] > 30, 30, what="output frames")
        status = app.status()
        assert status["motion"]["state"] == "off" and status["motion"]["skipped_frames"] == 0
        assert status["inference"]["detected"] == status["inference"]["frames"]
    finally:
        app.stop()


def test_busy_video_detects_every_frame(tmp_path, model_dir, media_dir):
    app = App(tmp_path, model_dir, config(media_dir / "vtest.avi", 5.0), "--model", A050)
    try:
        wait_for(lambda: app.status()["inference"]["frames"] > 60, 30, what="output frames")
        status = app.status()
        assert status["motion"]["enabled"]
        assert status["motion"]["skipped_frames"] <= 0.05 * status["inference"]["frames"]
        assert status["motion"]["last_motion_s_ago"] is not None and status["motion"]["last_motion_s_ago"] < 2
    finally:
        app.stop()


def test_a_still_scene_feeds_the_clip_recorder_twice_a_second(tmp_path, model_dir, still_video, media_dir):
    """The pre-roll encoder runs all day: on a still scene it gets 2 frames a second, on a busy one every frame
    at the stream's cap."""
    pytest.importorskip("av", reason="PyAV records the clips")
    rates = {}
    for name, source in (("still", still_video), ("busy", media_dir / "vtest.avi")):
        cfg = config(source, 3.0) | {"recording": {"enabled": True, "dir": str(tmp_path / name)}}
        app = App(tmp_path, model_dir, cfg, "--model", A050)
        try:
            wait_for(lambda a=app: a.status()["events"]["recording"]["frames"] > 0, 30, what="recording")
            before, t0 = app.status()["events"]["recording"]["frames"], time.monotonic()
            time.sleep(4)
            rates[name] = (app.status()["events"]["recording"]["frames"] - before) / (time.monotonic() - t0)
        finally:
            app.stop()
    assert rates["still"] <= 3.0, rates  # ≈ 2 per second
    assert rates["busy"] >= 6.0, rates  # vtest.avi plays at 10 fps

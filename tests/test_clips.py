"""ClipRecorder with a real encoder, real frames (vtest.avi) and real files, checked with ffprobe."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from edgecam.events.clips import ClipRecorder, probe_encoder
from edgecam.events.store import EventStore

from support import wait_for

REPO = Path(__file__).resolve().parent.parent
FPS = 10.0


@pytest.fixture(scope="module")
def frames(media_dir: Path) -> list[np.ndarray]:
    from edgecam.vision import cv2

    capture = cv2.VideoCapture(str(media_dir / "vtest.avi"))
    out = []
    while len(out) < 60:
        ok, image = capture.read()
        if not ok:
            break
        out.append(image)
    capture.release()
    assert len(out) == 60
    return out


@pytest.fixture(scope="module")
def ffprobe() -> str:
    path = shutil.which("ffprobe")
    if path is None:
        pytest.skip("ffprobe not installed (apt install ffmpeg)")
    return path


def probe(ffprobe: str, path: Path) -> dict:
    result = subprocess.run(
        [ffprobe, "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    info = json.loads(result.stdout)
    (video,) = [s for s in info["streams"] if s["codec_type"] == "video"]
    return {**video, "duration": float(info["format"]["duration"])}


def feed(rec: ClipRecorder, frames, t0: float, start: int, stop: int, events=None) -> None:
    """Frames ``start..stop-1`` at FPS, with ``events[i] = [("start"|"end", id), ...]`` before frame i."""
    for i in range(start, stop):
        ts = t0 + i / FPS
        for kind, event_id in (events or {}).get(i, ()):
            (rec.event_started if kind == "start" else rec.event_ended)(event_id, ts)
        rec.push(frames[i % len(frames)], ts)
        assert rec.wait_idle(30)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.suffix in (".part", ".tmp", ".events"))


def test_the_encoder_is_probed() -> None:
    assert probe_encoder(64, 48) in ("h264_v4l2m2m", "libx264")
    assert probe_encoder(64, 48, prefer="libx264") == "libx264"


def test_one_event_gives_one_browser_ready_clip_with_pre_and_post_roll(tmp_path, frames, ffprobe) -> None:
    clips = []
    rec = ClipRecorder(tmp_path, pre_s=2.0, post_s=1.5, fps=FPS, on_clip=lambda *a: clips.append(a))
    rec.start()
    t0 = time.monotonic()
    feed(rec, frames, t0, 0, 90, {35: [("start", 7)], 60: [("end", 7)]})
    rec.stop()

    assert len(clips) == 1
    event_id, path, nbytes = clips[0]
    assert event_id == 7 and path.suffix == ".mp4" and path.stat().st_size == nbytes
    info = probe(ffprobe, path)
    assert info["codec_name"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert (info["width"], info["height"]) == (frames[0].shape[1], frames[0].shape[0])
    expected = (6.0 + 1.5) - (3.5 - 2.0)  # from start - pre to end + post
    # the clip starts on the keyframe (one a second) at or before start - pre, and ends one frame late
    assert expected <= info["duration"] <= expected + rec.keyframe_s + 2 / FPS, info["duration"]
    head = path.read_bytes()[:4096]
    assert b"moov" in head and head.index(b"moov") < (
        head.index(b"mdat") if b"mdat" in head else 4096
    )  # faststart
    assert leftovers(tmp_path) == []
    status = rec.status()
    assert status["clips"] == 1 and status["encoder"] and status["dropped"] == 0 and status["failed"] == 0


def test_overlapping_events_share_a_clip_and_separate_ones_do_not(tmp_path, frames, ffprobe) -> None:
    clips = []
    rec = ClipRecorder(tmp_path, pre_s=1.0, post_s=1.0, fps=FPS, on_clip=lambda *a: clips.append(a))
    rec.start()
    t0 = time.monotonic()
    events = {
        20: [("start", 1)],
        30: [("start", 2)],
        35: [("end", 1)],
        45: [("end", 2)],  # the shared clip ends at 4.5 + 1.0
        90: [("start", 3)],
        100: [("end", 3)],
    }
    feed(rec, frames, t0, 0, 130, events)
    rec.stop()

    by_event = {event_id: path for event_id, path, _ in clips}
    assert sorted(by_event) == [1, 2, 3]
    assert by_event[1] == by_event[2] != by_event[3]
    assert by_event[1].name.endswith("_1.mp4")  # named after the first event, with the clip's start time
    shared = probe(ffprobe, by_event[1])["duration"]
    assert 4.5 <= shared <= 4.5 + 1.0 + 2 / FPS, shared  # (4.5 + 1) - (2.0 - 1)
    alone = probe(ffprobe, by_event[3])["duration"]
    assert 3.0 <= alone <= 3.0 + 1.0 + 2 / FPS, alone  # (10 + 1) - (9 - 1)


def test_an_event_at_start_up_waits_for_the_first_keyframe(tmp_path, frames, ffprobe) -> None:
    clips = []
    rec = ClipRecorder(tmp_path, pre_s=3.0, post_s=0.5, fps=FPS, on_clip=lambda *a: clips.append(a))
    rec.start()
    t0 = time.monotonic()
    rec.event_started(1, t0)  # before any frame: no pre-roll exists
    feed(rec, frames, t0, 0, 30, {20: [("end", 1)]})
    rec.stop()
    ((_, path, _),) = clips
    assert 2.5 <= probe(ffprobe, path)["duration"] <= 2.5 + 2 / FPS


def test_push_is_cheap_and_a_slow_worker_drops_frames(tmp_path, frames) -> None:
    rec = ClipRecorder(tmp_path, pre_s=1.0, post_s=1.0, fps=FPS, queue_size=4)
    rec.start()
    t0 = time.monotonic()
    worst = 0.0
    for i in range(300):  # far faster than the encoder can go
        began = time.perf_counter()
        rec.push(frames[i % len(frames)], t0 + i / FPS)
        worst = max(worst, time.perf_counter() - began)
    rec.stop()
    status = rec.status()
    assert status["frames"] == 300 and status["dropped"] > 0
    assert status["encoded"] + status["dropped"] == 300
    assert worst < 0.02, worst
    assert status["preroll_bytes"] < 32 * 1024 * 1024


def test_a_paused_recorder_skips_events_and_ends_its_clip(tmp_path, frames, ffprobe) -> None:
    clips = []
    reason = {"now": None}
    rec = ClipRecorder(
        tmp_path,
        pre_s=1.0,
        post_s=1.0,
        fps=FPS,
        on_clip=lambda *a: clips.append(a),
        paused=lambda: reason["now"],
    )
    rec.start()
    t0 = time.monotonic()
    feed(rec, frames, t0, 0, 30, {15: [("start", 1)]})
    reason["now"] = "low disk"
    feed(rec, frames, t0, 30, 60, {40: [("start", 2)], 45: [("end", 1)], 50: [("end", 2)]})
    rec.stop()
    assert [c[0] for c in clips] == [1]  # event 1's clip ended early but complete; event 2 got none
    assert probe(ffprobe, clips[0][1])["codec_name"] == "h264"
    status = rec.status()
    assert status["skipped_events"] == 1 and status["paused"] == "low disk"
    assert leftovers(tmp_path) == []


def test_a_change_of_frame_size_restarts_the_encoder(tmp_path, frames, ffprobe) -> None:
    clips = []
    rec = ClipRecorder(tmp_path, pre_s=0.5, post_s=0.5, fps=FPS, on_clip=lambda *a: clips.append(a))
    rec.start()
    t0 = time.monotonic()
    small = [f[::2, ::2].copy() for f in frames[:20]]
    feed(rec, frames, t0, 0, 20)
    feed(rec, small, t0, 20, 60, {40: [("start", 1)], 45: [("end", 1)]})
    rec.stop()
    ((_, path, _),) = clips
    info = probe(ffprobe, path)
    assert (info["width"], info["height"]) == (small[0].shape[1], small[0].shape[0])


CRASH = textwrap.dedent(
    """
    import sys, time
    from edgecam.vision import cv2
    from edgecam.events.clips import ClipRecorder
    rec = ClipRecorder(sys.argv[1], pre_s=1.0, post_s=1.0, fps=10)
    rec.start()
    capture = cv2.VideoCapture(sys.argv[2])
    t0 = time.monotonic()
    for i in range(100000):
        ok, image = capture.read()
        if not ok:
            capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        if i == 15:
            rec.event_started(41, t0 + i / 10)
        if i == 20:
            rec.event_started(42, t0 + i / 10)
        rec.push(image, t0 + i / 10)
        rec.wait_idle()
        if i == 50:
            print("recording", flush=True)  # events 41 and 42 still open, several fragments written
    """
)


@pytest.mark.slow
def test_a_clip_cut_by_kill_9_is_recovered_at_start(tmp_path, media_dir, ffprobe) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH, str(tmp_path), str(media_dir / "vtest.avi")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout.readline().strip() == "recording"
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    parts = list(tmp_path.glob("*.mp4.part"))
    assert len(parts) == 1 and not list(tmp_path.glob("*.mp4"))
    (tmp_path / "garbage.mp4.part").write_bytes(b"\0" * 1000)  # a crash right after creating a file
    (tmp_path / "half.mp4.tmp").write_bytes(b"\0" * 1000)  # a crash during the final remux

    clips = []
    rec = ClipRecorder(tmp_path, on_clip=lambda *a: clips.append(a))
    rec.start()
    wait_for(lambda: rec.status()["recovered"] == 1, 10, what="recovery")
    rec.stop()
    assert sorted(c[0] for c in clips) == [41, 42] and clips[0][1] == clips[1][1]
    info = probe(ffprobe, clips[0][1])
    assert info["codec_name"] == "h264" and info["duration"] >= 3.0  # at least the fragments written before
    assert leftovers(tmp_path) == []
    assert [p.name for p in tmp_path.iterdir()] == [clips[0][1].name]


@pytest.mark.slow
def test_a_tiny_disk_fills_recording_pauses_and_the_caller_never_blocks(tiny_fs, frames) -> None:
    store = EventStore(tiny_fs, retain_days=0, min_free_gb=0.5e6 / 1e9, check_s=0.05, retention_s=0.2)
    store.start()
    rec = ClipRecorder(
        store.clips_dir, pre_s=1.0, post_s=0.5, fps=FPS, on_clip=store.set_clip, paused=store.paused
    )
    rec.start()
    t0 = time.monotonic()
    worst = 0.0
    track = 0
    try:
        for i in range(600):
            ts = t0 + i / FPS
            began = time.perf_counter()
            if i % 20 == 5:
                track += 1
                event_id = store.track_started("cam", track, "person", 0.5, time.time())
                if event_id is not None:
                    rec.event_started(event_id, ts)
            if i % 20 == 15:
                event_id = store.track_ended("cam", track, time.time())
                if event_id is not None:
                    rec.event_ended(event_id, ts)
            rec.push(frames[i % len(frames)], ts)
            worst = max(worst, time.perf_counter() - began)
            if i == 300:  # someone else fills the disk to the brim
                with contextlib.suppress(OSError), open(tiny_fs / "ballast", "wb") as f:
                    while True:
                        f.write(b"\0" * 4096)
                        f.flush()
            time.sleep(0.01)
        rec.wait_idle(30)
        wait_for(lambda: store.recording_paused, 10, what="recording to pause")
    finally:
        rec.stop()
        store.stop()
    status = store.status()
    assert status["paused"] and "low disk" in status["pause_reason"]
    assert rec.status()["paused"] and "low disk" in rec.status()["paused"]
    assert rec.status()["clips"] >= 1  # it recorded before the disk filled
    assert rec.status()["skipped_events"] >= 1 or rec.status()["failed"] >= 1
    assert worst < 0.05, worst  # neither the store nor the recorder ever made the caller wait
    assert leftovers(store.clips_dir) == []


@pytest.mark.slow
def test_a_clip_plays_in_chromium(tmp_path, frames) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian chromium is not installed (./dev test installs it as root)")
    from playwright.sync_api import sync_playwright

    clips = []
    rec = ClipRecorder(tmp_path, pre_s=1.0, post_s=1.0, fps=FPS, on_clip=lambda *a: clips.append(a))
    rec.start()
    feed(rec, frames, time.monotonic(), 0, 50, {15: [("start", 1)], 30: [("end", 1)]})
    rec.stop()
    ((_, path, _),) = clips
    page_file = tmp_path / "index.html"
    page_file.write_text(f'<video id="v" src="{path.name}" muted playsinline></video>')
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        try:
            page = browser.new_page()
            page.goto(page_file.as_uri())
            page.evaluate("document.getElementById('v').play()")
            wait_for(
                lambda: page.evaluate("document.getElementById('v').currentTime") > 0.5, 15, what="playback"
            )
            video = page.evaluate(
                "(() => { const v = document.getElementById('v');"
                " return {w: v.videoWidth, d: v.duration, e: v.error && v.error.message}; })()"
            )
        finally:
            browser.close()
    assert video["e"] is None and video["w"] == frames[0].shape[1]
    assert 2.5 <= video["d"] <= 4.5, video

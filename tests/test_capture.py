"""Capture sources and the capture thread against real video files and a real HTTP MJPEG server."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pytest

from edgecam.capture import CaptureThread, SourceError, SourceState, open_source
from edgecam.capture import thread as capture_thread
from edgecam.capture.file import FileSource
from edgecam.capture.picam import yuv420_to_bgr
from edgecam.capture.slot import LatestFrameSlot
from edgecam.capture.yuv import Yuv420
from edgecam.vision import cv2

from support import MjpegCamera, wait_for


def as_bgr(image) -> np.ndarray:
    """A source's picture as BGR (files decoded by PyAV hand over YUV pictures)."""
    return image.bgr() if isinstance(image, Yuv420) else image


def timed_stop(thread: CaptureThread) -> float:
    t0 = time.monotonic()
    thread.stop(timeout=2.0)
    return time.monotonic() - t0


def take_n(slot: LatestFrameSlot, n: int, timeout: float = 5.0) -> list:
    frames = []
    for _ in range(n):
        f = slot.take(timeout=timeout)
        assert f is not None, f"only {len(frames)} of {n} frames arrived"
        frames.append(f)
    return frames


@pytest.fixture
def tiny_video(tmp_path: Path) -> Path:
    """5 frames, 64x48, MJPG in AVI, each a flat grey of a different level (0, 50, ..., 200)."""
    path = tmp_path / "tiny.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    assert writer.isOpened()
    for level in range(0, 250, 50):
        writer.write(np.full((48, 64, 3), level, np.uint8))
    writer.release()
    return path


def level(frame) -> int:
    return round(float(frame.image.mean()) / 50) * 50


# -- sources on their own ------------------------------------------------------------------------


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(SourceError, match=r"camera\.source: no such file '.*nope\.mp4'"):
        open_source(str(missing), width=640, height=480, fps=10)


def test_specs_pick_the_right_source():
    assert open_source("testpattern", width=320, height=240, fps=5).name == "testpattern"
    assert open_source("0", width=320, height=240, fps=5).name == "v4l2:/dev/video0"
    assert open_source("/dev/video2", width=320, height=240, fps=5).name == "v4l2:/dev/video2"
    src = open_source("rtsp://admin:s3cret@10.0.0.5:554/stream1", width=320, height=240, fps=5)
    assert src.name == "rtsp://***@10.0.0.5:554/stream1"  # credentials masked, their place still shown
    assert "s3cret" not in repr(src)
    assert open_source("picamera2", width=320, height=240, fps=5).name == "picamera2"


def test_file_keeps_native_size_and_rate(media_dir):
    src = open_source(str(media_dir / "vtest.avi"), width=1280, height=720, fps=30)
    src.open()
    try:
        image, lores = src.read()
    finally:
        src.close()
    assert as_bgr(image).shape == (360, 480, 3) and as_bgr(image).dtype == np.uint8
    assert lores is None
    assert src.nominal_fps == pytest.approx(10.0)
    assert src.paced is False
    assert src.name == "file:vtest.avi"


def test_testpattern_frames_move_at_requested_size():
    src = open_source("testpattern", width=320, height=240, fps=50)
    src.open()
    a, _ = src.read()
    b, _ = src.read()
    src.close()
    assert a.shape == b.shape == (240, 320, 3)
    assert not np.array_equal(a, b)


def test_yuv420_lores_with_stride_padding_converts_to_bgr():
    # picamera2 hands YUV420 as (h * 3 / 2, stride) with each plane's rows padded to the stride
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 255, (200, 300, 3), dtype=np.uint8), (9, 9), 3)
    padded = cv2.copyMakeBorder(image, 0, 0, 0, 20, cv2.BORDER_CONSTANT)  # stride 320
    yuv = cv2.cvtColor(padded, cv2.COLOR_BGR2YUV_I420)
    assert yuv.shape == (300, 320)
    bgr = yuv420_to_bgr(yuv, 300)
    assert bgr.shape == (200, 300, 3) and bgr.flags["C_CONTIGUOUS"]
    assert np.abs(bgr.astype(int) - image.astype(int)).mean() < 6


def test_picamera2_absent_fails_with_an_actionable_reason():
    try:
        import picamera2  # noqa: F401
    except ImportError:
        pass
    else:  # pragma: no cover - only on a Pi
        pytest.skip("picamera2 is installed here")
    src = open_source("picamera2", width=640, height=480, fps=10, lores_size=(300, 300))
    with pytest.raises(SourceError, match="python3-picamera2"):
        src.open()


@pytest.mark.slow
def test_file_loops_on_a_failed_read_not_on_the_frame_count(media_dir):
    # crowd_overhead_720p.avi claims 682 frames; only 341 decode
    src = FileSource(str(media_dir / "crowd_overhead_720p.avi"))
    src.open()
    try:
        first, _ = src.read()
        for _ in range(345):
            src.read()
    finally:
        src.close()
    assert src.loops == 1
    assert as_bgr(first).shape == (720, 1280, 3)


@pytest.mark.skipif(not hasattr(cv2, "CAP_PROP_N_THREADS"), reason="OpenCV < 4.6 cannot cap decode threads")
@pytest.mark.parametrize("threads", [1, 2])
def test_opencv_decodes_with_the_threads_asked_for(media_dir, threads):
    src = FileSource(str(media_dir / "crowd_overhead_720p.avi"), decode_threads=threads, decoder="opencv")
    src.open()
    try:
        assert src._dec.cap.get(cv2.CAP_PROP_N_THREADS) == threads
        image, _ = src.read()
        assert image.shape == (720, 1280, 3)
    finally:
        src.close()


@pytest.mark.parametrize("threads", [1, 2])
def test_pyav_decodes_with_the_threads_asked_for(media_dir, threads):
    pytest.importorskip("av")
    src = FileSource(str(media_dir / "crowd_overhead_720p.avi"), decode_threads=threads, decoder="pyav")
    src.open()
    try:
        assert src._dec._container.streams.video[0].thread_count == threads
        image, _ = src.read()
        assert image.size == (1280, 720)
    finally:
        src.close()


def test_auto_decodes_mjpeg_with_opencv_and_pyav_keeps_its_levels(tiny_video):
    """MJPEG is full-range 4:2:2: nothing to keep as YUV, and FFmpeg's per-frame BGR conversion costs more
    than OpenCV's, so ``auto`` takes OpenCV for it; ``pyav`` asked for explicitly still decodes it right."""
    pytest.importorskip("av")
    auto = FileSource(str(tiny_video))
    auto.open()
    try:
        assert type(auto._dec).__name__ == "_OpenCvDecoder"
    finally:
        auto.close()
    forced = FileSource(str(tiny_video), decoder="pyav")
    forced.open()
    try:
        levels = [round(float(forced.read()[0].mean()) / 50) * 50 for _ in range(5)]
    finally:
        forced.close()
    assert levels == [0, 50, 100, 150, 200]


@pytest.mark.parametrize("name", ["crowd_overhead_720p.avi", "vtest.avi", "car-detection.mp4"])
def test_pyav_frames_are_opencvs_frames(media_dir, name):
    """The same file through both decoders: the same number of frames, the same rate, and pictures that
    differ by a grey level or two (FFmpeg's own YUV->BGR against cv2's), converted only when asked."""
    pytest.importorskip("av")
    pictures = {}
    for decoder in ("pyav", "opencv"):
        src = FileSource(str(media_dir / name), decoder=decoder)
        src.open()
        try:
            pictures[decoder] = [src.read()[0] for _ in range(40)]
            assert src.loops == 0
        finally:
            src.close()
        pictures[decoder + " fps"] = src.nominal_fps
    assert pictures["pyav fps"] == pytest.approx(pictures["opencv fps"], rel=0.01)
    for yuv, bgr in zip(pictures["pyav"], pictures["opencv"], strict=True):
        assert isinstance(yuv, Yuv420) and yuv._bgr is None  # not converted until used
        assert yuv.size == (bgr.shape[1], bgr.shape[0])
        diff = np.abs(yuv.bgr().astype(np.int16) - bgr)
        assert diff.mean() < 1.5 and np.percentile(diff, 99.9) <= 8, (diff.mean(), diff.max())


def test_decode_threads_auto_leaves_the_detectors_cores_free(monkeypatch):
    from edgecam.app.pipeline import decode_threads

    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert decode_threads(0, 2) == 2  # a Pi 4/5: two cores detect, two decode
    assert decode_threads(0, 4) == 1  # never none
    assert decode_threads(3, 2) == 3  # camera.decode_threads set: as set
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert decode_threads(0, 1) == 1


# -- the capture thread on files -----------------------------------------------------------------


@pytest.mark.slow
def test_realtime_file_is_paced_at_its_own_rate(media_dir):
    slot = LatestFrameSlot()
    src = open_source(str(media_dir / "vtest.avi"), width=640, height=480, fps=30)
    th = CaptureThread(src, slot, realtime=True)
    th.start()
    try:
        first = slot.take(timeout=5.0)
        assert first is not None
        t0, got = time.monotonic(), []
        while time.monotonic() - t0 < 2.0:
            f = slot.take(timeout=1.0)
            if f is not None:
                got.append(f)
        rate = len(got) / (got[-1].timestamp - first.timestamp)
        assert 5.0 <= rate <= 20.0, rate  # the file is 10 fps
        assert 5.0 <= th.fps <= 20.0, th.fps
        assert th.state is SourceState.LIVE and th.reason is None
        seqs = [f.sequence for f in got]
        assert seqs == sorted(seqs)
    finally:
        assert timed_stop(th) < 3.0
    assert not th.is_alive()


def test_not_realtime_file_hands_over_every_frame_in_order(media_dir):
    path = media_dir / "vtest.avi"
    slot = LatestFrameSlot()
    th = CaptureThread(open_source(str(path), width=0, height=0, fps=0, realtime=False), slot, realtime=False)
    n = 60
    th.start()
    t0 = time.monotonic()
    frames = take_n(slot, n)
    elapsed = time.monotonic() - t0
    assert timed_stop(th) < 3.0
    assert [f.sequence for f in frames] == list(range(1, n + 1))
    assert slot.dropped == 0
    assert elapsed < n / 10.0 / 2, elapsed  # well faster than the file's 10 fps
    reference = cv2.VideoCapture(str(path))  # the same pictures (FFmpeg's or cv2's YUV->BGR: a level or two)
    for f in frames[:3]:
        ok, expected = reference.read()
        assert ok and np.abs(f.image.astype(np.int16) - expected).mean() < 1.5
    reference.release()


def test_not_realtime_waits_for_the_consumer_and_stops_promptly(media_dir):
    slot = LatestFrameSlot()
    src = open_source(str(media_dir / "vtest.avi"), width=0, height=0, fps=0, realtime=False)
    th = CaptureThread(src, slot, realtime=False, stall_s=0.5)
    th.start()
    depth = capture_thread.LOCKSTEP_DEPTH
    wait_for(lambda: th.frames == depth, 5.0, 0.05, what=f"th.frames == {depth}")
    time.sleep(1.0)  # nobody takes: the thread waits with its queue full, it is not stalled
    assert th.frames == depth and slot.dropped == 0
    assert th.state is SourceState.LIVE
    assert abs(time.monotonic() - th.heartbeat) < 0.6
    assert timed_stop(th) < 3.0
    assert not th.is_alive()


def test_eof_loops(tiny_video):
    slot = LatestFrameSlot()
    src = open_source(str(tiny_video), width=0, height=0, fps=0, realtime=False)
    th = CaptureThread(src, slot, realtime=False)
    th.start()
    frames = take_n(slot, 13)
    assert timed_stop(th) < 3.0
    assert [level(f) for f in frames] == [0, 50, 100, 150, 200] * 2 + [0, 50, 100]
    assert [f.sequence for f in frames] == list(range(1, 14))  # sequence continues across loops
    assert src.loops >= 2
    assert th.reconnects == 0


@pytest.mark.slow
def test_eof_loops_in_realtime_too(tiny_video):
    slot = LatestFrameSlot()
    th = CaptureThread(open_source(str(tiny_video), width=0, height=0, fps=0), slot)
    th.start()
    frames = take_n(slot, 8)  # at 10 fps, a loop after 0.5 s
    assert timed_stop(th) < 3.0
    assert sorted({level(f) for f in frames}) == [0, 50, 100, 150, 200]
    assert th.state is SourceState.LIVE


def test_testpattern_thread_runs_at_requested_rate():
    slot = LatestFrameSlot()
    th = CaptureThread(open_source("testpattern", width=160, height=120, fps=20), slot)
    th.start()
    frames = take_n(slot, 10)
    assert timed_stop(th) < 3.0
    assert all(f.size == (160, 120) for f in frames)
    span = frames[-1].timestamp - frames[0].timestamp
    assert 0.25 < span < 1.5  # 9 intervals at 20 fps = 0.45 s


# -- failures, backoff and stop ------------------------------------------------------------------


def test_missing_camera_is_lost_with_a_reason_and_stop_is_prompt_in_backoff():
    slot = LatestFrameSlot()
    src = open_source("/dev/video987", width=640, height=480, fps=15)
    th = CaptureThread(src, slot, backoff_initial_s=10.0)
    th.start()
    wait_for(lambda: th.state is SourceState.LOST, 3.0, 0.05, what="th.state is SourceState.LOST")
    assert "open failed" in th.reason and "/dev/video987" in th.reason
    hb = th.heartbeat
    wait_for(
        lambda: th.heartbeat > hb, 1.0, 0.05, what="th.heartbeat > hb"
    )  # sleeping in backoff still beats
    assert timed_stop(th) < 1.0
    assert not th.is_alive()


def test_backoff_grows_then_caps():
    """The gaps between open attempts, read from the attempts themselves (not from a wall-clock count)."""
    source = open_source("/dev/video987", width=64, height=48, fps=5)
    attempts: list[float] = []
    real_open = source.open

    def open_and_record() -> None:
        attempts.append(time.monotonic())
        real_open()

    source.open = open_and_record  # the real V4L2 open, failing for real: only the time is noted
    th = CaptureThread(source, LatestFrameSlot(), backoff_initial_s=0.1, backoff_max_s=0.4)
    th.start()
    wait_for(lambda: len(attempts) >= 6, 10.0, 0.02, what="six open attempts")
    assert timed_stop(th) < 1.0
    gaps = [b - a for a, b in itertools.pairwise(attempts)][:5]
    for gap, expected in zip(gaps, (0.1, 0.2, 0.4, 0.4, 0.4), strict=True):  # doubles, then caps at 0.4 s
        assert expected * 0.9 <= gap <= expected + 0.5, gaps
    assert th.reconnects >= 5


def test_stop_before_start_closes_the_source():
    th = CaptureThread(open_source("testpattern", width=64, height=48, fps=5), LatestFrameSlot())
    assert timed_stop(th) < 0.5


# -- network: a real HTTP MJPEG server -----------------------------------------------------------


@pytest.fixture
def mjpeg_server(media_dir):
    server = MjpegCamera(media_dir / "vtest.avi", fps=20.0, frames=40)
    server.start()
    yield server
    server.stop()


@pytest.mark.slow
def test_network_stream_goes_live_is_lost_and_comes_back(mjpeg_server):
    stall_s = 1.5
    slot = LatestFrameSlot()
    src = open_source(mjpeg_server.url, width=640, height=480, fps=15, timeout_s=stall_s)
    th = CaptureThread(src, slot, stall_s=stall_s, backoff_initial_s=0.2, backoff_max_s=1.0)
    th.start()
    try:
        wait_for(lambda: th.state is SourceState.LIVE, 10.0, 0.05, what="th.state is SourceState.LIVE")
        frames = take_n(slot, 10)
        assert all(f.size == (480, 360) for f in frames)  # native size kept
        assert th.last_frame_time is not None

        mjpeg_server.stop()
        t0 = time.monotonic()
        wait_for(
            lambda: th.state is SourceState.LOST, 3 * stall_s + 3, 0.05, what="th.state is SourceState.LOST"
        )
        lost_after = time.monotonic() - t0
        assert th.reason
        reconnects = th.reconnects
        wait_for(
            lambda: th.reconnects > reconnects, 3.0, 0.05, what="th.reconnects > reconnects"
        )  # it keeps trying
        assert th.state in (SourceState.LOST, SourceState.CONNECTING)

        mjpeg_server.start()  # same port
        frames_before = th.frames
        wait_for(lambda: th.state is SourceState.LIVE, 10.0, 0.05, what="th.state is SourceState.LIVE")
        wait_for(lambda: th.frames > frames_before + 5, 5.0, 0.05, what="th.frames > frames_before + 5")
        assert th.reason is None
        assert th.is_alive()
        assert lost_after < 3 * stall_s + 3
    finally:
        assert timed_stop(th) < 3.0
    assert not th.is_alive()


def timed_stop_probe(th: CaptureThread) -> float:
    """State reads never block, whatever the thread is doing."""
    t0 = time.monotonic()
    _ = (th.state, th.reason, th.fps, th.frames, th.heartbeat, th.reconnects)
    return time.monotonic() - t0


@pytest.mark.slow
def test_hung_stream_reads_lost_while_the_read_is_blocked(mjpeg_server):
    stall_s = 1.0
    slot = LatestFrameSlot()
    # read timeout well above stall_s: the read stays blocked while state already says lost
    src = open_source(mjpeg_server.url, width=640, height=480, fps=15, timeout_s=8.0)
    th = CaptureThread(src, slot, stall_s=stall_s, backoff_initial_s=0.2)
    th.start()
    try:
        wait_for(lambda: th.state is SourceState.LIVE, 10.0, 0.05, what="th.state is SourceState.LIVE")
        mjpeg_server.freeze()
        wait_for(
            lambda: th.state is SourceState.LOST, stall_s + 2.0, 0.05, what="th.state is SourceState.LOST"
        )
        assert th.reason == "no frame for 1.0 s"
        assert th.reconnects == 0  # still inside the blocked read
        assert timed_stop_probe(th) < 0.1
        frames_before = th.frames
        mjpeg_server.freeze(False)
        wait_for(lambda: th.state is SourceState.LIVE, 5.0, 0.05, what="th.state is SourceState.LIVE")
        assert th.frames > frames_before
    finally:
        assert timed_stop(th) < 3.0


@pytest.mark.slow
def test_network_read_timeout_ends_a_hung_read_and_stop_is_prompt(mjpeg_server):
    slot = LatestFrameSlot()
    src = open_source(mjpeg_server.url, width=640, height=480, fps=15, timeout_s=1.0)
    th = CaptureThread(src, slot, stall_s=1.0, backoff_initial_s=0.2, backoff_max_s=0.5)
    th.start()
    try:
        wait_for(lambda: th.state is SourceState.LIVE, 10.0, 0.05, what="th.state is SourceState.LIVE")
        mjpeg_server.freeze()
        wait_for(
            lambda: th.reconnects >= 1, 5.0, 0.05, what="th.reconnects >= 1"
        )  # the read gave up; the thread reopened
        assert th.state in (SourceState.LOST, SourceState.CONNECTING)
    finally:
        assert timed_stop(th) < 3.0  # while opening against a hung server


def test_lockstep_frames_carry_the_files_own_clock(media_dir):
    """realtime: false — timestamps one frame period apart, however fast or slow the consumer takes them."""
    slot = LatestFrameSlot()
    th = CaptureThread(FileSource(str(media_dir / "vtest.avi")), slot, realtime=False)
    th.start()
    try:
        stamps = []
        for i in range(6):
            frame = slot.take(timeout=5)
            assert frame is not None
            stamps.append(frame.timestamp)
            time.sleep(0.15 if i % 2 else 0.0)  # an uneven consumer
        period = 1 / th.source.nominal_fps
        assert [round(b - a, 6) for a, b in itertools.pairwise(stamps)] == [round(period, 6)] * 5
    finally:
        th.stop()


# -- odd files through both decoders -------------------------------------------------------------


@pytest.mark.parametrize("decoder", ["auto", "pyav", "opencv"])
def test_a_file_that_is_not_a_video_is_refused_with_its_name(tmp_path, decoder):
    if decoder == "pyav":
        pytest.importorskip("av")
    fake = tmp_path / "clip.mp4"
    fake.write_text("this is a shopping list, not a video\n" * 50)
    src = FileSource(str(fake), decoder=decoder)
    with pytest.raises(SourceError, match=r"clip\.mp4"):
        src.open()
    src.close()  # safe after a failed open


@pytest.mark.parametrize("damage", ["truncated", "garbled"])
def test_a_damaged_h264_file_plays_what_it_can_and_loops(media_dir, tmp_path, damage):
    """The tail cut off, or a stretch of the middle overwritten: the frames that decode are delivered,
    the bad part ends the pass, and the file starts again: no exception escapes the source."""
    pytest.importorskip("av")
    data = bytearray((media_dir / "crowd_overhead_720p.avi").read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 3]
    else:
        middle = len(data) // 2
        data[middle : middle + 200_000] = bytes(range(256)) * (200_000 // 256) + bytes(200_000 % 256)
    path = tmp_path / f"{damage}.avi"
    path.write_bytes(bytes(data))
    src = FileSource(str(path))
    src.open()
    try:
        sizes = {src.read()[0].size for _ in range(700)}  # more than one pass of a third of 341 frames
    finally:
        src.close()
    assert sizes == {(1280, 720)}
    assert src.loops >= 1

"""The detector's picture is made by the capture thread (while the decoded frame is still in its cache):
the same pixels as the inference thread would make, the same detections, and the full frame again when
the model in use wants another size."""

from __future__ import annotations

import numpy as np
import pytest

from edgecam.capture import CaptureThread, open_source
from edgecam.capture.slot import Frame, LatestFrameSlot

from support import wait_for


def test_capture_makes_the_model_picture_at_the_size_asked_per_frame(media_dir, cv2):
    wanted: list[tuple[int, int] | None] = [(300, 300)]
    slot = LatestFrameSlot()
    source = open_source(str(media_dir / "vtest.avi"), width=0, height=0, fps=0, realtime=False)
    thread = CaptureThread(source, slot, realtime=False, lores_size=lambda: wanted[0])
    thread.start()
    try:
        first = slot.take(timeout=5.0)
        assert first is not None and first.lores is not None
        assert first.lores.shape == (300, 300, 3)
        expected = cv2.resize(first.image, (300, 300), interpolation=cv2.INTER_LINEAR)
        diff = np.abs(first.lores.astype(np.int16) - expected)  # what the inference thread would have made
        assert diff.mean() < 1.5 and np.percentile(diff, 99) <= 12, diff.mean()  # chroma edges
        wanted[0] = (320, 320)  # the ladder moved to a model of another size: from the next frames on
        assert wait_for(
            lambda: (f := slot.take(timeout=1.0)) is not None and f.lores.shape == (320, 320, 3), 5.0
        )
        wanted[0] = None  # a letterboxed model: no picture made here
        assert wait_for(lambda: (f := slot.take(timeout=1.0)) is not None and f.lores is None, 5.0)
    finally:
        thread.stop(timeout=2.0)


class _Switcher:
    def __init__(self, detector) -> None:
        self.detector = detector

    def current(self):
        return self.detector

    def observe(self, busy_ms, cpu_ms=None, runnable_ms=None) -> None:
        pass

    def invoke_failed(self, exc) -> None:
        raise exc


class _Seeing:
    """The real detector; remembers the size of each picture it was given."""

    def __init__(self, detector) -> None:
        self._detector = detector
        self.sizes: list[tuple[int, int]] = []

    def detect(self, image, *args, **kwargs):
        self.sizes.append((image.shape[1], image.shape[0]))
        return self._detector.detect(image, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._detector, name)


def test_inference_detects_the_same_on_the_capture_picture(model_dir, media_dir, cv2):
    from edgecam.app.pipeline import detection_filter
    from edgecam.config import Config
    from edgecam.detect import load_detector
    from edgecam.infer.stage import InferenceThread
    from edgecam.track import make_tracker

    config = Config()
    detector = _Seeing(load_detector("ssdlite_mobilenet_v2_a050_coco", model_dir, threads=1))
    outputs: list = []
    stage = InferenceThread(
        None, _Switcher(detector), make_tracker(10.0, **config.tracker_settings()), outputs.append,
        detection_filter(config), config.tracker.low_score, config.tracker.high_score,
    )  # fmt: skip
    image = cv2.imread(str(media_dir / "grace_hopper.bmp"))
    full = cv2.resize(image, (1280, 720))
    stage._process(Frame(full, 1.0, 1), detector)
    assert stage.lores_size == detector.input_size  # what the capture thread is now asked for
    picture = cv2.resize(full, stage.lores_size, interpolation=cv2.INTER_LINEAR)
    stage._process(Frame(full, 1.1, 2, picture), detector)
    stage._process(Frame(full, 1.2, 3, cv2.resize(full, (160, 160))), detector)  # not the model's size
    assert detector.sizes == [(1280, 720), detector.input_size, (1280, 720)]
    on_full, on_picture, on_other = (o.detections for o in outputs)
    assert len(on_full) > 0
    # The same tensor, so the same detections, mapped back to the full frame's pixels.
    np.testing.assert_array_equal(on_picture.scores, on_full.scores)
    np.testing.assert_allclose(on_picture.boxes, on_full.boxes)
    np.testing.assert_allclose(on_other.boxes, on_full.boxes)


def decoded(media_dir, name: str = "crowd_overhead_720p.avi"):
    from edgecam.capture.file import FileSource

    source = FileSource(str(media_dir / name), decoder="pyav")
    source.open()
    try:
        return [source.read()[0] for _ in range(3)][-1]
    finally:
        source.close()


def test_yuv_picture_converts_once_and_shrinks_like_the_bgr_one(media_dir, cv2):
    pytest.importorskip("av")
    from edgecam.capture.yuv import Yuv420, model_picture

    yuv = decoded(media_dir)
    assert isinstance(yuv, Yuv420)
    bgr = yuv.bgr()
    assert bgr is yuv.bgr() and bgr.shape == (720, 1280, 3)  # converted once, one copy for everyone
    assert yuv.grey() is yuv.y and yuv.y.shape == (720, 1280)
    for size in [(300, 300), (200, 200), (320, 320), (301, 300)]:  # an odd size goes through BGR
        small = model_picture(yuv, size)
        reference = cv2.resize(bgr, size, interpolation=cv2.INTER_LINEAR)
        assert small.shape == reference.shape
        diff = np.abs(small.astype(np.int16) - reference)
        assert diff.mean() < 1.5 and np.percentile(diff, 99) <= 12, (size, diff.mean())


def test_yuv_planes_are_the_decoders_own_and_padded_rows_convert_alike(media_dir, cv2):
    """The planes are views of FFmpeg's buffers (what to_ndarray() would copy, byte for byte), and a plane
    whose rows are padded (line_size > width, as decoders align them) gives the same pictures."""
    av = pytest.importorskip("av")
    from edgecam.capture.avdecode import _plane_view
    from edgecam.capture.yuv import Yuv420

    with av.open(str(media_dir / "crowd_overhead_720p.avi")) as container:
        frame = next(container.decode(video=0))
        yuv = Yuv420(*(_plane_view(plane) for plane in frame.planes))
        assert all(not view.flags.owndata for view in (yuv.y, yuv.u, yuv.v))
        assert np.array_equal(yuv.i420(), frame.to_ndarray())
    padded = []
    for plane in (yuv.y, yuv.u, yuv.v):
        rows = np.full((plane.shape[0], plane.shape[1] + 32), 77, np.uint8)  # 32 bytes of padding a row
        rows[:, : plane.shape[1]] = plane
        padded.append(rows[:, : plane.shape[1]])
    strided = Yuv420(*padded)
    assert strided.y.strides[0] == 1280 + 32
    assert np.array_equal(strided.bgr(), yuv.bgr())
    assert np.array_equal(strided.resized_bgr((300, 300)), yuv.resized_bgr((300, 300)))
    with pytest.raises(ValueError, match="not an I420 picture"):
        Yuv420(yuv.y, yuv.u, yuv.v[:-2])


def test_kept_yuv_frames_stay_intact_while_decoding_goes_on(media_dir):
    """A frame held by the slot, the encoder or the recorder keeps FFmpeg's buffer: decoding on (with frame
    threads too) and closing the file never write over it."""
    pytest.importorskip("av")
    import zlib

    from edgecam.capture.avdecode import AvFileDecoder

    for threads in (1, 3):
        decoder = AvFileDecoder(str(media_dir / "crowd_overhead_720p.avi"), threads=threads)
        kept = []
        for _ in range(12):
            picture = decoder.read()
            kept.append((picture, zlib.crc32(picture.i420().tobytes())))
        for _ in range(150):
            assert decoder.read() is not None
        decoder.close()
        assert [zlib.crc32(p.i420().tobytes()) for p, _ in kept] == [crc for _, crc in kept], threads


def test_yuv_picture_converted_from_two_threads_is_one_picture(media_dir):
    pytest.importorskip("av")
    import threading

    from edgecam.capture.yuv import Yuv420

    for _ in range(20):
        source = decoded(media_dir)
        yuv = Yuv420(source.y.copy(), source.u.copy(), source.v.copy())
        got: list = []

        def convert(picture=yuv, into=got) -> None:
            into.append(picture.bgr())

        threads = [threading.Thread(target=convert) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(g is got[0] for g in got)


def test_frame_from_a_yuv_picture(media_dir):
    pytest.importorskip("av")
    yuv = decoded(media_dir)
    frame = Frame(yuv, 1.0, 1)
    assert frame.size == (1280, 720) and yuv._bgr is None  # its size costs no conversion
    assert frame.image is yuv.bgr()


def test_inference_on_a_yuv_frame_detects_as_on_the_bgr_frame(model_dir, media_dir):
    """The capture thread's picture from the planes and the inference thread's from BGR: the detector finds
    the same people in the crowd (the pictures differ by a grey level here and there)."""
    pytest.importorskip("av")
    from edgecam.capture.yuv import model_picture
    from edgecam.detect import load_detector

    detector = load_detector("ssdlite_mobilenet_v2_a050_coco", model_dir, threads=1)
    yuv = decoded(media_dir)
    from_planes = detector.detect(model_picture(yuv, detector.input_size), output_size=yuv.size)
    from_bgr = detector.detect(yuv.bgr())
    assert len(from_bgr) >= 5
    matched = 0
    for box in from_bgr.boxes:
        ious = [_iou(box, other) for other in from_planes.boxes]
        matched += bool(ious) and max(ious) >= 0.8
    assert matched >= 0.8 * len(from_bgr), (matched, len(from_bgr), len(from_planes))


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

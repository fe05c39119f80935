"""LatestFrameSlot: newest wins, drops counted, waits time out, close wakes waiters, thread-safe."""

from __future__ import annotations

import threading
import time

import numpy as np

from edgecam.capture.slot import Frame, LatestFrameSlot


def make(seq: int, w: int = 8, h: int = 6) -> Frame:
    return Frame(image=np.zeros((h, w, 3), np.uint8), timestamp=time.monotonic(), sequence=seq)


def test_frame_size_is_width_height():
    f = make(1, w=640, h=480)
    assert f.size == (640, 480)
    assert f.lores is None


def test_newest_wins_and_drops_are_counted():
    slot = LatestFrameSlot()
    for i in range(1, 4):
        slot.put(make(i))
    assert slot.latest_timestamp is not None
    f = slot.take(timeout=0)
    assert f is not None and f.sequence == 3
    assert slot.dropped == 2
    assert slot.delivered == 1
    assert slot.take(timeout=0) is None  # nothing unread left
    assert slot.latest_timestamp == f.timestamp  # still the newest put, though taken


def test_take_times_out():
    slot = LatestFrameSlot()
    t0 = time.monotonic()
    assert slot.take(timeout=0.2) is None
    assert 0.15 <= time.monotonic() - t0 < 1.0


def test_take_waits_for_a_put():
    slot = LatestFrameSlot()
    threading.Timer(0.1, slot.put, args=(make(7),)).start()
    f = slot.take(timeout=2.0)
    assert f is not None and f.sequence == 7


def test_close_wakes_a_waiting_taker_and_refuses_frames():
    slot = LatestFrameSlot()
    result = {}

    def taker():
        t0 = time.monotonic()
        result["frame"] = slot.take()  # no timeout: only close() can end this
        result["waited"] = time.monotonic() - t0

    th = threading.Thread(target=taker)
    th.start()
    time.sleep(0.1)
    slot.close()
    th.join(2.0)
    assert not th.is_alive()
    assert result["frame"] is None
    slot.put(make(1))
    assert slot.take(timeout=0) is None
    assert slot.closed


def test_wait_room():
    slot = LatestFrameSlot()
    assert slot.wait_room(timeout=0)  # nothing pending
    slot.put(make(1))
    assert not slot.wait_room(timeout=0.1)  # nobody took it
    threading.Timer(0.1, slot.take).start()
    assert slot.wait_room(timeout=2.0)
    assert slot.dropped == 0 and slot.delivered == 1


def test_queued_frames_come_out_oldest_first_and_none_is_dropped():
    slot = LatestFrameSlot()
    for i in (1, 2, 3):
        assert slot.wait_room(3, timeout=0)
        slot.put(make(i), queue=True)
    assert not slot.wait_room(3, timeout=0.05)  # three unread: the producer waits
    assert slot.wait_room(4, timeout=0)
    assert [slot.take(timeout=0).sequence for _ in range(3)] == [1, 2, 3]
    assert slot.take(timeout=0) is None
    assert slot.dropped == 0 and slot.delivered == 3
    # A plain put still replaces whatever is unread, queued or not.
    slot.put(make(4), queue=True)
    slot.put(make(5), queue=True)
    slot.put(make(6))
    assert slot.take(timeout=0).sequence == 6
    assert slot.dropped == 2


def test_close_wakes_wait_room():
    slot = LatestFrameSlot()
    slot.put(make(1))
    threading.Timer(0.1, slot.close).start()
    t0 = time.monotonic()
    assert slot.wait_room() is False
    assert time.monotonic() - t0 < 2.0


def test_producer_consumer_threads_account_for_every_frame():
    slot = LatestFrameSlot()
    n = 5000
    seen: list[int] = []

    def consumer():
        while True:
            f = slot.take(timeout=2.0)
            if f is None:
                return
            seen.append(f.sequence)

    th = threading.Thread(target=consumer)
    th.start()
    for i in range(1, n + 1):
        slot.put(make(i))
        if i % 500 == 0:
            time.sleep(0.001)
    slot.wait_room(timeout=2.0)
    slot.close()
    th.join(5.0)
    assert not th.is_alive()
    assert seen == sorted(seen) and len(set(seen)) == len(seen)  # in order, never twice
    assert seen[-1] == n  # the newest frame is never lost
    assert slot.delivered == len(seen)
    assert slot.delivered + slot.dropped == n


def test_lockstep_producer_drops_nothing():
    slot = LatestFrameSlot()
    n = 300
    seen: list[int] = []

    def consumer():
        while (f := slot.take(timeout=2.0)) is not None:
            seen.append(f.sequence)

    th = threading.Thread(target=consumer)
    th.start()
    for i in range(1, n + 1):
        assert slot.wait_room(3, timeout=2.0)
        slot.put(make(i), queue=True)
    assert slot.wait_room(timeout=2.0)
    slot.close()
    th.join(5.0)
    assert seen == list(range(1, n + 1))
    assert slot.dropped == 0

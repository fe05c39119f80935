"""The thread clock on the real scheduler: sleeping is not contention, competing busy processes are."""

from __future__ import annotations

import os
import threading
import time

from edgecam.detect import cpuclock
from edgecam.detect.cpuclock import ThreadClock, contention

from support import CpuHog


def spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def measure(work) -> tuple[float, float, float]:
    """(wall, cpu, runnable) seconds of ``work()`` run in a fresh thread, as the inference thread would."""
    result: list[float] = []
    readings = []

    def target() -> None:  # no assert in here: a failure in a worker thread would be swallowed
        clock = ThreadClock()
        start, before = time.perf_counter(), clock.read()
        work()
        wall, after = time.perf_counter() - start, clock.read()
        readings.extend([before, after])
        result.append(wall)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(60)
    assert not thread.is_alive() and len(readings) == 2, "the measuring thread did not finish"
    before, after = readings
    assert before.wait_s is not None and after.wait_s is not None, "schedstat is not exposed here"
    cpu = after.cpu_s - before.cpu_s
    return result[0], cpu, cpu + after.wait_s - before.wait_s


def test_sleeping_is_not_waiting_for_a_cpu():
    """Like the interpreter's calling thread waiting for its workers: wall time grows, contention does not."""
    wall, cpu, runnable = measure(lambda: (spin(0.05), time.sleep(0.3), spin(0.05)))
    assert wall >= 0.35
    assert runnable < 0.25  # the 0.3 s asleep is not counted
    assert wall / max(cpu, 1e-3) > 2.0  # what a wall ÷ CPU ratio would have misread as contention


def test_busy_processes_on_every_core_show_as_contention():
    hog = CpuHog(processes=2 * (os.cpu_count() or 1), max_s=30)
    hog.start()
    seen = []
    try:
        time.sleep(1.0)  # the busy processes are forked and running
        for _ in range(3):  # the best of three: one window can catch the hogs not yet all scheduled
            _, cpu, runnable = measure(lambda: spin(0.4))
            seen.append(contention(runnable * 1e3, cpu * 1e3))
            if seen[-1] >= 1.5:
                break
    finally:
        hog.stop()
    assert max(seen) >= 1.5, seen  # ≈ 3 expected: 2 busy processes per core + us (idle: 1.0)


def test_without_schedstat_the_cpu_time_is_still_read(monkeypatch):
    monkeypatch.setattr(cpuclock, "SCHEDSTAT", "/nonexistent/schedstat")
    clock = ThreadClock()
    before = clock.read()
    spin(0.02)
    after = clock.read()
    assert after.wait_s is None and after.cpu_s - before.cpu_s >= 0.02


def test_contention_is_at_least_one_and_safe_without_cpu_time():
    assert contention(10.0, 10.0) == 1.0
    assert contention(9.0, 10.0) == 1.0  # rounding between two clocks never reads as "less than none"
    assert contention(25.0, 10.0) == 2.5
    assert contention(5.0, 0.0) == 1.0


def test_the_detector_reads_the_clock_around_one_invoke_in_contention_every_s(monkeypatch, model_dir):
    """Each reading lets go of the GIL; at hundreds of frames a second one measured invoke in 50 ms is
    enough, and the frames in between carry that measurement."""
    import numpy as np

    from edgecam.detect import detector as detector_module
    from edgecam.detect import load_detector

    reads: list[float] = []

    class Counting(ThreadClock):
        def read(self):
            reads.append(time.perf_counter())
            return super().read()

    monkeypatch.setattr(detector_module, "THREAD_CLOCK", Counting())
    detector = load_detector("ssdlite_mobilenet_v2_a050_coco", model_dir, threads=1)
    blank = np.zeros((*detector.input_size[::-1], 3), np.uint8)
    detector.detect(blank)
    first = detector.last_timing
    assert len(reads) == 2  # around the first invoke
    start = time.perf_counter()
    while time.perf_counter() - start < detector_module.CONTENTION_EVERY_S * 0.2:
        detector.detect(blank)
        timing = detector.last_timing
        assert (timing.invoke_cpu_ms, timing.invoke_runnable_ms) == (
            first.invoke_cpu_ms,
            first.invoke_runnable_ms,
        )
    assert len(reads) == 2
    time.sleep(detector_module.CONTENTION_EVERY_S)
    detector.detect(blank)
    assert len(reads) == 4  # measured again

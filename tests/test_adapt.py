"""The ladder controller with a fake clock and scripted latencies."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from edgecam.ladder.controller import AdaptSettings, LadderController, Rung

SETTINGS = AdaptSettings(
    min_fps=5.0, down_after_s=3.0, up_after_s=15.0, up_margin=1.25, cooldown_s=10.0, window_s=1.0
)
BIG_MS, SMALL_MS = 140.0, 35.0  # about 7 fps and 28 fps idle, as measured here


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ladder(clock: Clock, position: int = 0) -> LadderController:
    rungs = [Rung("big", 1.0, idle_ms=BIG_MS), Rung("small", 0.25, idle_ms=SMALL_MS)]
    return LadderController(rungs, SETTINGS, position, clock)


def run(
    ctl: LadderController,
    clock: Clock,
    seconds: float,
    load: float = 1.0,
    fps: float = 30.0,
    costs: tuple[float, ...] = (BIG_MS, SMALL_MS),
):
    """Feed frames for ``seconds`` under CPU contention ``load`` (each invoke takes ``load`` times the CPU
    time it gets); at most ``fps`` frames a second, fewer when the model is slower (the inference stage is
    busy). Applies switches at once, as the runtime does. Returns (time, target, reason) triples."""
    switches = []
    end = clock.now + seconds
    while clock.now < end:
        cpu_ms = costs[ctl.position]
        busy = cpu_ms * load
        clock.now += max(busy / 1000, 1 / fps)
        decision = ctl.observe(busy, cpu_ms=cpu_ms, runnable_ms=busy)
        if decision is not None:
            ctl.switched(decision.target)
            switches.append((clock.now, decision.target, decision.reason))
    return switches


def test_sustained_drop_steps_down_exactly_once_after_down_after_s():
    clock = Clock()
    ctl = ladder(clock)
    assert run(ctl, clock, 10) == []
    start = clock.now
    switches = run(ctl, clock, 20, load=2.0)  # a CPU hog: everything twice as slow
    assert len(switches) == 1
    when, target, reason = switches[0]
    assert target == 1 and "< 5 fps" in reason and "contention ×2.0" in reason
    assert SETTINGS.down_after_s <= when - start <= SETTINGS.down_after_s + 2 * SETTINGS.window_s


def test_short_dips_do_not_switch():
    clock = Clock()
    ctl = ladder(clock)
    switches = []
    for _ in range(6):
        switches += run(ctl, clock, 2.0, load=2.0)  # 2 s dips, shorter than down_after_s
        switches += run(ctl, clock, 4.0)
    assert switches == []


def test_recovery_steps_up_once_after_up_after_s():
    clock = Clock()
    ctl = ladder(clock)
    run(ctl, clock, 20, load=2.0)
    assert ctl.position == 1
    start = clock.now
    switches = run(ctl, clock, 40)
    assert [s[1] for s in switches] == [0]
    assert SETTINGS.up_after_s <= switches[0][0] - start <= SETTINGS.up_after_s + 3 * SETTINGS.window_s
    assert "predicted" in switches[0][2]


def test_no_step_up_while_the_big_model_would_not_fit():
    clock = Clock()
    ctl = ladder(clock)
    run(ctl, clock, 20, load=2.0)
    assert run(ctl, clock, 120, load=2.0) == []
    # Load eased but not enough for min_fps × up_margin (6.25 fps): big would run at 1000/(140·1.2) ≈ 6 fps.
    assert run(ctl, clock, 120, load=1.2) == []


def test_oscillating_load_is_bounded_by_the_cooldown():
    clock = Clock()
    settings = AdaptSettings(
        min_fps=5.0, down_after_s=1.0, up_after_s=1.0, up_margin=1.25, cooldown_s=10.0, window_s=0.5
    )
    ctl = LadderController(
        [Rung("big", 1.0, idle_ms=BIG_MS), Rung("small", 0.25, idle_ms=SMALL_MS)], settings, 0, clock
    )
    start = clock.now
    switches = []
    for _ in range(30):  # load flips every 3 s: faster than the cooldown
        switches += run(ctl, clock, 3.0, load=2.0)
        switches += run(ctl, clock, 3.0)
    elapsed = clock.now - start
    assert len(switches) >= 2
    assert len(switches) <= elapsed / settings.cooldown_s + 1
    times = [s[0] for s in switches]
    assert all(b - a >= settings.cooldown_s for a, b in itertools.pairwise(times))


def test_load_is_judged_on_cpu_contention_not_on_the_models_own_latency():
    """A small model running at the camera's rate is slower than its probe with no outside load (cold caches
    after each idle gap, its own decode and encode work: 2.4× here). Its invoke never waits for a CPU, so
    there is no contention and the big model comes back at its own rate."""
    clock = Clock()
    ctl = ladder(clock, position=1)
    switches = []
    end = clock.now + 40
    while clock.now < end:
        clock.now += 0.1
        decision = ctl.observe(busy_ms=SMALL_MS * 2.4, cpu_ms=SMALL_MS * 2.3, runnable_ms=SMALL_MS * 2.3)
        if decision is not None:
            ctl.switched(decision.target)
            switches.append(decision)
    assert [d.target for d in switches] == [0]
    assert ctl.load == 1.0


def test_the_prediction_scales_the_big_models_own_time_by_the_contention_now():
    clock = Clock()
    ctl = ladder(clock, position=1)
    run(ctl, clock, 5, load=2.5)
    assert ctl.load == pytest.approx(2.5)
    assert ctl.predicted_rate(0) == pytest.approx(1000 / (BIG_MS * 2.5))
    run(ctl, clock, 5, load=1.0)
    assert ctl.predicted_rate(0) == pytest.approx(1000 / BIG_MS, rel=0.02)


def test_the_reference_is_the_models_own_time_with_the_contention_taken_out():
    """Real frames cost 10 % more than a probe would say; a run under a 2× load leaves that as the
    reference, contention taken out, and a faster idle run later lowers it (the fastest seen is kept)."""
    clock = Clock()
    rungs = [Rung("big", 1.0), Rung("small", 0.25, idle_ms=SMALL_MS)]  # no probe ran for the big one
    ctl = LadderController(rungs, dataclasses.replace(SETTINGS, min_fps=1.0), 0, clock)
    run(ctl, clock, 5, load=2.0, costs=(BIG_MS * 1.1, SMALL_MS))
    assert ctl.rungs[0].idle_ms == pytest.approx(BIG_MS * 1.1, rel=0.01)
    run(ctl, clock, 5, load=1.0, costs=(BIG_MS, SMALL_MS))
    assert ctl.rungs[0].idle_ms == pytest.approx(BIG_MS, rel=0.01)


def test_without_a_cpu_time_measurement_load_is_judged_on_busy_time():
    clock = Clock()
    ctl = ladder(clock, position=1)
    for _ in range(50):
        clock.now += 0.1
        ctl.observe(SMALL_MS * 2)
    assert ctl.load == pytest.approx(2.0, rel=0.01)


def test_failed_step_ups_back_off_so_oscillation_dies_out():
    """A load the prediction misjudges: the small model sees no contention while the big one cannot keep
    up. Each failed step up doubles the wait before the next: switches thin out."""
    clock = Clock()
    ctl = ladder(clock)
    switches = []
    end = clock.now + 600
    while clock.now < end:
        big = ctl.position == 0
        clock.now += 0.1
        ms = BIG_MS * 2 if big else SMALL_MS  # the big one is slowed by something its invoke does not show
        decision = ctl.observe(ms, ms, ms)
        if decision is not None:
            ctl.switched(decision.target)
            switches.append(clock.now)
    ups = switches[1::2]
    gaps = [b - a for a, b in itertools.pairwise(ups)]
    assert len(switches) <= 12  # without the back-off: one round trip every ~20 s, 60 switches
    # Each wait before a retry doubles (15, 30, 60, 120 s), on top of a constant stay on the big model.
    assert all(b > a + 10 for a, b in itertools.pairwise(gaps)) and gaps[-1] >= 3 * gaps[0], gaps


def test_a_slow_camera_is_no_reason_to_step_down():
    clock = Clock()
    ctl = ladder(clock)
    # A 3 fps camera: the model is idle most of the time, each frame still takes BIG_MS.
    assert run(ctl, clock, 60, fps=3.0) == []
    assert ctl.rate == pytest.approx(1000 / BIG_MS, rel=0.01)


def test_fault_switches_at_once_and_the_rung_is_retried_later():
    clock = Clock()
    rungs = [
        Rung("tpu", 0.1, idle_ms=10.0, cpu_bound=False),
        Rung("cpu_twin", 1.0, idle_ms=BIG_MS),
        Rung("small", 0.25, idle_ms=SMALL_MS),
    ]
    ctl = LadderController(rungs, SETTINGS, 0, clock)
    costs = (10.0, BIG_MS, SMALL_MS)
    run(ctl, clock, 12, costs=costs)
    decision = ctl.fault("tpu failing", fallback=1, retry_after_s=30.0)
    assert decision is not None and decision.target == 1 and decision.immediate
    ctl.switched(1)
    # Not before the retry time, even though the TPU is predicted far faster.
    assert run(ctl, clock, 25, costs=costs) == []
    switches = run(ctl, clock, 30, costs=costs)
    assert [s[1] for s in switches] == [0]
    # A second failure doubles the wait.
    ctl.fault("tpu failing again", fallback=1, retry_after_s=30.0)
    assert rungs[0].available_from - clock.now == pytest.approx(60.0)


def test_a_rung_that_fails_to_load_is_skipped_and_the_current_one_stays():
    clock = Clock()
    ctl = ladder(clock)
    decision = None
    while decision is None:
        clock.now += 0.3
        decision = ctl.observe(BIG_MS * 2, cpu_ms=BIG_MS, runnable_ms=BIG_MS * 2)
    ctl.failed(decision.target, retry_after_s=30.0)
    assert ctl.position == 0 and ctl.pending is None
    assert run(ctl, clock, 20, load=2.0) == []  # the small rung is out for 30 s

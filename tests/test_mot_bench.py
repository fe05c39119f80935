"""The MOT17 benchmark harness on MOT17-05 (needs the dev data: $EDGECAM_MOT_DIR or ../shared/mot17-dev)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SEQ = "MOT17-05-FRCNN"


def _data_dir() -> Path | None:
    candidates = [Path(os.environ["EDGECAM_MOT_DIR"])] if os.environ.get("EDGECAM_MOT_DIR") else []
    candidates.append(REPO.parent / "shared" / "mot17-dev")
    for path in candidates:
        if (path / SEQ).is_dir():
            return path
    return None


def _load_bench():
    spec = importlib.util.spec_from_file_location("edgecam_bench_mot", REPO / "bench" / "mot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_mot17_05(tmp_path: Path) -> None:
    data = _data_dir()
    if data is None:
        pytest.skip(
            f"MOT17 dev data not found: set $EDGECAM_MOT_DIR or provide {REPO.parent / 'shared' / 'mot17-dev'}"
        )
    bench = _load_bench()
    report = bench.run(data, [SEQ], tmp_path, timing=False, repeat=1)
    metrics = report["sequences"][SEQ]
    assert (tmp_path / f"{SEQ}.txt").stat().st_size > 0
    assert metrics["idf1"] >= 50.0, metrics
    assert metrics["id_switches"] <= 60, metrics
    assert metrics["mota"] >= 40.0, metrics


@pytest.mark.slow
def test_counts_pool_like_motmetrics(tmp_path: Path) -> None:
    data = _data_dir()
    if data is None:
        pytest.skip("MOT17 dev data not found")
    bench = _load_bench()
    report = bench.run(data, [SEQ], tmp_path, timing=False, repeat=1)
    pooled = bench.combine([bench.sequence_counts(data / SEQ, 0.1, {})])
    metrics = report["sequences"][SEQ]
    assert pooled["idf1"] == pytest.approx(metrics["idf1"], abs=1e-9)
    assert pooled["mota"] == pytest.approx(metrics["mota"], abs=1e-9)
    assert pooled["id_switches"] == metrics["id_switches"]


@pytest.mark.slow
def test_panned_sequence_with_its_camera_motion_scores_like_the_original(tmp_path: Path) -> None:
    # The synthetic pan moves detections and ground truth alike; told the exact camera motion, the tracker
    # must give the same result as on the fixed camera, and without it, a worse one.
    data = _data_dir()
    if data is None:
        pytest.skip("MOT17 dev data not found")
    bench = _load_bench()
    panned = bench.make_panned(data / SEQ, tmp_path)
    original = bench.combine([bench.sequence_counts(data / SEQ, 0.1, {})])
    compensated = bench.combine([bench.sequence_counts(panned, 0.1, {}, cmc=True)])
    uncompensated = bench.combine([bench.sequence_counts(panned, 0.1, {})])
    assert compensated["idf1"] == pytest.approx(original["idf1"], abs=0.05)
    assert compensated["id_switches"] == original["id_switches"]
    assert uncompensated["id_switches"] > original["id_switches"]


@pytest.mark.slow
def test_scene_motion_follows_a_panning_camera_and_leaves_a_fixed_one_alone(tmp_path: Path) -> None:
    # MOT17-02 (fixed camera) and its panned copy, camera motion not given: following the motion the tracks
    # share must give the same result on the fixed camera and fewer switches and a better IDF1 on the pan.
    data = _data_dir()
    if data is None or not (data / "MOT17-02-FRCNN").is_dir():
        pytest.skip("MOT17 dev data not found")
    bench = _load_bench()
    fixed = data / "MOT17-02-FRCNN"
    panned = bench.make_panned(fixed, tmp_path)
    on, off = {"scene_motion": True}, {"scene_motion": False}
    assert bench.combine([bench.sequence_counts(fixed, 0.1, on)]) == bench.combine(
        [bench.sequence_counts(fixed, 0.1, off)]
    )
    pan_on = bench.combine([bench.sequence_counts(panned, 0.1, on)])
    pan_off = bench.combine([bench.sequence_counts(panned, 0.1, off)])
    assert pan_on["idf1"] >= pan_off["idf1"] + 1.5, (pan_on, pan_off)
    assert pan_on["id_switches"] < pan_off["id_switches"], (pan_on, pan_off)


@pytest.mark.slow
def test_leave_one_out_holds_each_sequence_out(tmp_path: Path) -> None:
    data = _data_dir()
    if data is None or not (data / "MOT17-02-FRCNN").is_dir():
        pytest.skip("MOT17 dev data not found")
    bench = _load_bench()
    seqs = {name: data / name for name in ("MOT17-02-FRCNN", SEQ)}
    report = bench.leave_one_out(seqs, {"coast_s": [0.0, 0.2]}, tolerance=0.0)
    assert [f["held_out"] for f in report["folds"]] == list(seqs)
    for fold in report["folds"]:
        (held,) = fold["held_out_metrics"]
        assert held == fold["held_out"] and held not in fold["tuned"]
        # The chosen point is the best on the tuning sequence.
        (tuned,) = fold["tuned"]
        best = max(p["sequences"][tuned]["idf1"] for p in report["points"])
        assert fold["tuned"][tuned]["idf1"] == best
    assert set(report["held_out_mean"]) == {"dev"}
    assert "mean of folds dev" in bench.format_loo(report)


def test_choose_takes_fewest_switches_within_the_idf1_tolerance() -> None:
    bench = _load_bench()

    def point(idf1: float, switches: int) -> dict:
        return {"a": {"idf1": idf1, "id_switches": switches}}

    points = [point(56.0, 40), point(55.5, 30), point(54.0, 10), point(55.5, 30)]
    assert bench.choose(points, ["a"], 0.0) == 0  # best IDF1
    assert bench.choose(points, ["a"], 0.75) == 1  # fewest switches within 0.75; tie: the earlier point
    assert bench.choose(points, ["a"], 2.0) == 2
    assert bench.IDF1_TOLERANCE == 0.75


def test_tracker_defaults_lie_on_the_loo_grid() -> None:
    # The defaults are the grid point --loo chooses on all sequences (see the tracker issue, rounds 2 and 3).
    from edgecam.track import TrackerSettings

    bench = _load_bench()
    defaults = TrackerSettings()
    chosen = {
        "min_hits": 3,
        "max_height_ratio": 1.3,
        "match_buffer": 0.1,
        "new_track_score": 0.8,
        "scene_motion": True,
    }
    assert set(bench.LOO_GRID) == set(chosen)
    for key, value in chosen.items():
        assert getattr(defaults, key) == value and value in bench.LOO_GRID[key]

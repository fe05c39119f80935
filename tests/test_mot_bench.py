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
@pytest.mark.parametrize("proxy", ["make_panned", "make_shaken"])
def test_moving_camera_copy_with_its_camera_motion_scores_like_the_original(
    tmp_path: Path, proxy: str
) -> None:
    # The synthetic pan (or shake) moves detections and ground truth alike; told the exact camera motion,
    # the tracker must give the same result as on the fixed camera, and without it, a worse one.
    data = _data_dir()
    if data is None:
        pytest.skip("MOT17 dev data not found")
    bench = _load_bench()
    panned = getattr(bench, proxy)(data / SEQ, tmp_path)
    original = bench.combine([bench.sequence_counts(data / SEQ, 0.1, {})])
    compensated = bench.combine([bench.sequence_counts(panned, 0.1, {}, cmc=True)])
    uncompensated = bench.combine([bench.sequence_counts(panned, 0.1, {})])
    assert compensated["idf1"] == pytest.approx(original["idf1"], abs=0.05)
    assert compensated["id_switches"] == original["id_switches"]
    assert uncompensated["id_switches"] > original["id_switches"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("proxy", "setting", "others"),
    [
        # Following the motion the tracks share; scene_shift off in both runs, as it follows a pan too.
        ("make_panned", "scene_motion", {"scene_shift": False}),
        # Matching against predictions moved by the jolt every track shares this frame.
        ("make_shaken", "scene_shift", {}),
    ],
)
def test_scene_following_helps_a_moving_camera_and_leaves_a_fixed_one_alone(
    tmp_path: Path, proxy: str, setting: str, others: dict
) -> None:
    # MOT17-02 (fixed camera) and its panned or shaken copy, camera motion not given: the setting must give
    # the same result on the fixed camera, and a better IDF1 with fewer switches on the moving one.
    data = _data_dir()
    if data is None or not (data / "MOT17-02-FRCNN").is_dir():
        pytest.skip("MOT17 dev data not found")
    bench = _load_bench()
    fixed = data / "MOT17-02-FRCNN"
    moving = getattr(bench, proxy)(fixed, tmp_path)
    on, off = {**others, setting: True}, {**others, setting: False}
    assert bench.combine([bench.sequence_counts(fixed, 0.1, on)]) == bench.combine(
        [bench.sequence_counts(fixed, 0.1, off)]
    )
    moving_on = bench.combine([bench.sequence_counts(moving, 0.1, on)])
    moving_off = bench.combine([bench.sequence_counts(moving, 0.1, off)])
    assert moving_on["idf1"] >= moving_off["idf1"] + 1.5, (moving_on, moving_off)
    assert moving_on["id_switches"] <= 0.85 * moving_off["id_switches"], (moving_on, moving_off)


def test_shake_is_deterministic_and_jolts_about_as_documented() -> None:
    bench = _load_bench()
    a, b = bench.shake_offsets(900, 30.0), bench.shake_offsets(900, 30.0)
    assert (a == b).all() and not (a == bench.shake_offsets(900, 30.0, seed=1)).all()
    step = abs(a[1:, 0] - a[:-1, 0])
    assert 2.0 < step.mean() < 5.0  # about 3 px a frame sideways
    assert abs(a[1:, 1] - a[:-1, 1]).mean() < 0.7 * step.mean()  # less vertically
    # The same motion per second at half the frame rate: about twice the step per frame.
    half = bench.shake_offsets(450, 15.0)
    assert 1.5 < abs(half[1:, 0] - half[:-1, 0]).mean() / step.mean() < 2.6


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
    # The defaults are the grid point --loo chooses on all sequences (see the tracker issue, rounds 2, 3, 5).
    from edgecam.track import TrackerSettings

    bench = _load_bench()
    defaults = TrackerSettings()
    chosen = {
        "min_hits": 3,
        "max_height_ratio": 1.3,
        "match_buffer": 0.1,
        "new_track_score": 0.8,
        "scene_motion": True,
        "scene_shift": True,
    }
    assert set(bench.LOO_GRID) == set(chosen)
    for key, value in chosen.items():
        assert getattr(defaults, key) == value and value in bench.LOO_GRID[key]


def test_zoomed_copy_scales_detections_and_ground_truth_alike(tmp_path: Path) -> None:
    # A tiny made-up sequence: the zoomed copy maps gt and detection rows by the same scale about the
    # image centre, frame by frame, and cmc.txt holds that motion between consecutive frames.
    import numpy as np

    bench = _load_bench()
    seq = tmp_path / "SEQ"
    (seq / "gt").mkdir(parents=True)
    (seq / "det").mkdir()
    (seq / "seqinfo.ini").write_text(
        "[Sequence]\nname=SEQ\nframeRate=10\nseqLength=81\nimWidth=200\nimHeight=100\n"
    )
    frames = np.arange(1, 82)
    gt = np.array([[f, 7, 120.0, 30.0, 20.0, 40.0, 1, 1, 1.0] for f in frames])
    det = np.array([[f, -1, 120.0, 30.0, 20.0, 40.0, 0.9] for f in frames])
    np.savetxt(seq / "gt" / "gt.txt", gt, delimiter=",", fmt="%.6g")
    np.savetxt(seq / "det" / "det.txt", det, delimiter=",", fmt="%.6g")

    scale = bench.zoom_factors(81, 10.0)
    assert scale[0] == 1.0 and scale[40] == pytest.approx(1.6) and scale[80] == pytest.approx(1.0)
    assert scale.min() >= 1.0 and scale.max() <= 1.6 + 1e-9
    # Scale 1 is the identity; scale 1.5 about (100, 50) maps (120, 30, 20x40) to (130, 20, 30x60).
    rows = gt[:2].copy()
    assert np.array_equal(bench.zoom_rows(rows, np.ones(82), (100.0, 50.0)), rows)
    assert np.allclose(
        bench.zoom_rows(rows, np.full(82, 1.5), (100.0, 50.0))[:, 2:6], [[130.0, 20.0, 30.0, 60.0]] * 2
    )

    out = bench.make_zoomed(seq, tmp_path / "out")
    assert out.name == "SEQ" + bench.ZOOM_SUFFIX
    zgt = np.loadtxt(out / "gt" / "gt.txt", delimiter=",")
    zdet = np.loadtxt(out / "det" / "det.txt", delimiter=",")
    assert np.allclose(zgt[:, 2:6], zdet[:, 2:6], rtol=1e-5)
    assert np.array_equal(zgt[:, [0, 1, 6, 7, 8]], gt[:, [0, 1, 6, 7, 8]])
    assert np.array_equal(zdet[:, 6], det[:, 6])
    expected = bench.zoom_rows(gt, scale, (100.0, 50.0))
    assert np.allclose(zgt[:, 2:6], expected[:, 2:6], rtol=1e-5)
    # The camera motion into frame f maps frame f-1's box corners onto frame f's.
    cmc = bench.read_camera_motion(out)
    for f in (2, 20, 41, 70):
        a = cmc[f]
        prev = zgt[f - 2, 2:4]
        assert np.allclose(a[:, :2] @ prev + a[:, 2], zgt[f - 1, 2:4], rtol=1e-5)


def _tiny_sequence(root: Path, n: int = 10, rate: int = 30, name: str = "SEQ") -> Path:
    """A made-up sequence of n frames: two gt rows and two detections per frame, frame number in x."""
    import numpy as np

    seq = root / name
    (seq / "gt").mkdir(parents=True)
    (seq / "det").mkdir()
    (seq / "seqinfo.ini").write_text(
        f"[Sequence]\nname={name}\nframeRate={rate}\nseqLength={n}\nimWidth=200\nimHeight=100\n"
    )
    gt = np.array([[f, i, 10.0 * f, 5.0 * i, 20.0, 40.0, 1, 1, 1.0] for f in range(1, n + 1) for i in (1, 2)])
    det = np.array([[f, -1, 10.0 * f, 5.0 * i, 20.0, 40.0, 0.9] for f in range(1, n + 1) for i in (1, 2)])
    np.savetxt(seq / "gt" / "gt.txt", gt[::-1], delimiter=",", fmt="%.6g")  # unsorted, like det.txt
    np.savetxt(seq / "det" / "det.txt", det, delimiter=",", fmt="%.6g")
    return seq


def test_subsampled_copy_keeps_every_kth_frame_renumbered_at_a_kth_of_the_rate(tmp_path: Path) -> None:
    import numpy as np

    bench = _load_bench()
    seq = _tiny_sequence(tmp_path, n=10, rate=30)
    out = bench.make_subsampled(seq, tmp_path / "out", 3)
    assert out.name == "SEQ+sub3"
    # Frames 1, 4, 7, 10 become 1, 2, 3, 4, at 10 fps; the other ini keys are kept.
    assert bench.read_frame_rate(out) == 10.0 and bench.read_length(out) == 4
    assert "imWidth=200" in (out / "seqinfo.ini").read_text()
    for sub, name in (("gt", "gt.txt"), ("det", "det.txt")):
        rows = np.loadtxt(out / sub / name, delimiter=",")
        assert sorted(rows[:, 0].astype(int).tolist()) == [1, 1, 2, 2, 3, 3, 4, 4]
        original_frame = rows[:, 2] / 10.0  # x encodes the original frame
        assert np.array_equal(original_frame, 3 * (rows[:, 0] - 1) + 1)
    # 11 frames with K=2: 1, 3, ..., 11 -> 6 frames; K=1 is an exact copy; the rate may become fractional.
    seq11 = _tiny_sequence(tmp_path / "b", n=11, rate=14)
    out2 = bench.make_subsampled(seq11, tmp_path / "out", 2)
    assert bench.read_length(out2) == 6 and bench.read_frame_rate(out2) == 7.0
    gt = np.loadtxt(seq11 / "gt" / "gt.txt", delimiter=",")
    assert np.array_equal(bench.subsample_rows(gt, 1), gt)
    out3 = bench.make_subsampled(seq11, tmp_path / "c", 3)
    assert bench.read_frame_rate(out3) == pytest.approx(14 / 3, abs=1e-12)
    with pytest.raises(ValueError):
        bench.make_subsampled(seq11, tmp_path / "d", 0)


def test_dropout_is_deterministic_drops_about_p_and_jitters_by_the_height(tmp_path: Path) -> None:
    import numpy as np

    bench = _load_bench()
    rows = np.tile([[1, -1, 100.0, 50.0, 40.0, 100.0, 0.7]], (4000, 1))
    rows[:, 0] = np.arange(4000) // 4 + 1
    a = bench.dropout_rows(rows, 0.2)
    assert np.array_equal(a, bench.dropout_rows(rows, 0.2))  # fixed seed
    assert not np.array_equal(a, bench.dropout_rows(rows, 0.2, seed=1))
    assert len(a) / len(rows) == pytest.approx(0.8, abs=0.03)
    assert np.array_equal(a[:, [1, 6]], rows[: len(a), [1, 6]])  # ids and scores kept
    assert set(a[:, 0]) <= set(rows[:, 0]) and np.all(np.diff(a[:, 0]) >= 0)  # order kept
    # Corners jittered independently by sigma = 3 % of the height (3 px here), unbiased.
    corners = np.concatenate([a[:, 2:4], a[:, 2:4] + a[:, 4:6]], axis=1) - [100.0, 50.0, 140.0, 150.0]
    assert np.allclose(corners.std(axis=0), 3.0, rtol=0.1)
    assert np.allclose(corners.mean(axis=0), 0.0, atol=0.3)
    assert np.allclose(a[:, 4:6].std(axis=0), 3.0 * np.sqrt(2.0), rtol=0.1)  # the corners move apart
    assert len(bench.dropout_rows(rows, 0.0)) == len(rows)
    assert np.array_equal(bench.dropout_rows(rows, 0.0, sigma=0.0), rows)

    seq = _tiny_sequence(tmp_path, n=50)
    out = bench.make_dropped(seq, tmp_path / "out", 0.5)
    assert out.name == "SEQ" + bench.DROP_SUFFIX
    assert (out / "gt" / "gt.txt").read_text() == (seq / "gt" / "gt.txt").read_text()
    assert (out / "seqinfo.ini").read_text() == (seq / "seqinfo.ini").read_text()
    det = np.loadtxt(out / "det" / "det.txt", delimiter=",")
    assert 25 <= len(det) <= 75
    again = bench.make_dropped(seq, tmp_path / "again", 0.5)
    assert (again / "det" / "det.txt").read_text() == (out / "det" / "det.txt").read_text()


@pytest.mark.slow
def test_subsampled_by_one_scores_like_the_original(tmp_path: Path) -> None:
    # The plumbing (renumbering, seqinfo rewrite) is neutral: K=1 gives exactly the original's counts.
    data = _data_dir()
    if data is None:
        pytest.skip("MOT17 dev data not found")
    bench = _load_bench()
    copy = bench.make_subsampled(data / SEQ, tmp_path, 1)
    assert bench.sequence_counts(copy, 0.1, {}) == bench.sequence_counts(data / SEQ, 0.1, {})
    sub2 = bench.combine([bench.sequence_counts(bench.make_subsampled(data / SEQ, tmp_path, 2), 0.1, {})])
    assert sub2["idf1"] > 30.0, sub2  # sane, not broken by the renumbering


def test_proxy_flags_add_copies_in_the_same_fold(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import json

    bench = _load_bench()
    data = tmp_path / "data"
    for name in ("A", "B"):
        _tiny_sequence(data, n=20, name=name)
    common = ["--data", str(data), "--seq", "A", "B", "--out", str(tmp_path / "out")]
    # Parse errors: a factor below 1 or not an integer, a probability outside [0, 1).
    for bad in (["--subsample", "0"], ["--subsample", "2,x"], ["--dropout", "1.0"]):
        with pytest.raises(SystemExit):
            bench.main([*common, *bad])
    capsys.readouterr()
    argv = [*common, "--loo", "--grid", "min_hits=1,2", "--subsample", "2,3", "--dropout", "0.2", "--json"]
    assert bench.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert json.loads((tmp_path / "out" / "loo-sub2-sub3-drop.json").read_text()) == report
    assert [f["held_out"] for f in report["folds"]] == ["A", "B"]
    held = report["folds"][0]["held_out_metrics"]
    assert set(held) == {"A", "A+sub2", "A+sub3", "A+drop"}
    assert set(report["held_out_mean"]) == {"dev", "+sub2", "+sub3", "+drop"}


def test_pan_and_shake_take_their_size_in_pixels(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bench = _load_bench()
    data = tmp_path / "data"
    _tiny_sequence(data, n=20, name="A")
    common = [
        "--data",
        str(data),
        "--seq",
        "A",
        "--out",
        str(tmp_path / "out"),
        "--no-timing",
        "--repeat",
        "1",
    ]
    for bad in (["--pan", "0"], ["--shake", "-1"], ["--pan", "nan"], ["--shake", "x"]):
        with pytest.raises(SystemExit):
            bench.main([*common, *bad])
    capsys.readouterr()
    assert bench.main([*common, "--pan", "400", "--shake", "3"]) == 0
    want = {
        "pan": bench.make_panned(data / "A", tmp_path / "want", 400.0),
        "shake": bench.make_shaken(data / "A", tmp_path / "want", 3.0),
    }
    for kind, expected in want.items():
        got = (tmp_path / "out" / kind / expected.name / "det" / "det.txt").read_text()
        assert got == (expected / "det" / "det.txt").read_text()
    # Without a value, the documented defaults.
    assert bench.main([*common, "--pan", "--shake"]) == 0
    default = bench.make_panned(data / "A", tmp_path / "default")
    assert (tmp_path / "out" / "pan" / default.name / "det" / "det.txt").read_text() == (
        default / "det" / "det.txt"
    ).read_text()

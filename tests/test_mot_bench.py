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

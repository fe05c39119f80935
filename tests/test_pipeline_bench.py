"""bench/pipeline.py, briefly: every phase of issue #15's plan runs (the real pipeline, the bare parts alone
and side by side, the naive loop) and the JSON carries the figures the table and the note quote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_pipeline_bench_measures_every_part(model_dir, media_dir, tmp_path):
    out = tmp_path / "pipeline.json"
    proc = subprocess.run(
        [
            sys.executable, str(REPO / "bench" / "pipeline.py"), "--videos", str(media_dir / "vtest.avi"),
            "--seconds", "1.5", "--warmup", "0.5", "--model-dir", str(model_dir), "--out", str(out),
        ],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "the two-core ceiling" in proc.stdout and "min(decode, detector)" in proc.stdout
    summary = json.loads(out.read_text())["videos"]["vtest.avi"]["summary_slowest"]
    assert summary["decode_threads"] == max(1, (os.cpu_count() or 1) - 1)  # beside a one-thread detector
    for key in ("decode_fps", "decode_all_cores_fps", "detector_fps", "side_by_side_fps", "naive_fps"):
        assert summary[key] > 0, key
    assert summary["side_by_side_fps"] == min(summary["side_by_side"].values())
    for key in ("pipe_off", "pipe_on", "pipe_norec"):
        run = summary[key]
        assert run["processed_fps"] > 0 and run["over_slowest_part"] > 0 and run["over_side_by_side"] > 0
        threads = run["thread_cpu_ms_per_frame"]
        assert threads["capture"] > 0 and threads["inference"] > 0, threads
        assert 0 < run["track_ms_p50"] < run["busy_ms_p50"] and 0 < run["invoke_ms_p50"] < run["busy_ms_p50"]

"""The `edgecam` command as a user runs it: detect, bench detector."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def edgecam(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgecam", *args], capture_output=True, text=True, timeout=timeout
    )


def test_detect_json_prints_the_cat(model_dir, media_dir):
    result = edgecam(
        "detect",
        str(media_dir / "cat.bmp"),
        "--json",
        "--model-dir",
        str(model_dir),
        "--model",
        "ssd_mobilenet_v1_coco",
    )
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    record = json.loads(line)
    assert record["image"] == str(media_dir / "cat.bmp") and record["model"] == "ssd_mobilenet_v1_coco"
    top = record["detections"][0]
    assert top["label"] == "cat" and top["class_id"] == 16 and 0.7 < top["score"] < 0.75
    assert len(top["box"]) == 4


def test_detect_keeps_going_past_an_unreadable_image(model_dir, media_dir, tmp_path, cv2):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "annotated"
    result = edgecam(
        "detect", str(broken), str(media_dir / "grace_hopper.bmp"), str(tmp_path / "missing.png"),
        "--model", "ssdlite_mobilenet_v2_a050_coco", "--classes", "person", "--json", "--out", str(out),
        "--model-dir", str(model_dir),
    )  # fmt: skip
    assert result.returncode == 1
    assert (
        f"{broken}: cannot read this image" in result.stderr and "missing.png: cannot read" in result.stderr
    )
    (line,) = result.stdout.splitlines()
    assert {d["label"] for d in json.loads(line)["detections"]} == {"person"}
    annotated = cv2.imread(str(out / "grace_hopper.bmp"))
    original = cv2.imread(str(media_dir / "grace_hopper.bmp"))
    assert annotated.shape == original.shape and (annotated != original).any()


def test_detect_names_a_missing_model(tmp_path, media_dir):
    result = edgecam(
        "detect", str(media_dir / "cat.bmp"), "--model-dir", str(tmp_path), "--model", "ssd_mobilenet_v1_coco"
    )
    assert result.returncode == 1
    assert "is not installed; run `edgecam models fetch ssd_mobilenet_v1_coco" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_bench_detector_reports_each_model_and_thread_count(model_dir, media_dir):
    result = edgecam(
        "bench", "detector", "--model", "ssdlite_mobilenet_v2_a050_coco,ssd_mobilenet_v1_coco", "--threads", "1",
        "--frames", "4", "--warmup", "1", "--video", str(media_dir / "vtest.avi"), "--model-dir", str(model_dir), "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # one JSON object on stdout, nothing else
    assert report["runtime"]["name"] == "ai_edge_litert" and report["runtime"]["version"]
    assert [(r["model"], r["threads"]) for r in report["results"]] == [
        ("ssdlite_mobilenet_v2_a050_coco", 1), ("ssd_mobilenet_v1_coco", 1)
    ]  # fmt: skip
    for r in report["results"]:
        assert 0 < r["invoke_ms_p50"] <= r["invoke_ms_p90"] and r["fps"] > 0 and r["cpu_contention"] >= 1.0


@pytest.mark.slow
def test_bench_detector_defaults_to_the_auto_ladder_and_prints_a_table(model_dir, media_dir):
    result = edgecam(
        "bench", "detector", "--frames", "3", "--warmup", "1", "--video", str(media_dir / "vtest.avi"),
        "--model-dir", str(model_dir),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("runtime: ai_edge_litert ")
    assert [line.split()[0] for line in lines[2:]] == [
        "ssdlite_mobilenet_v2_coco",
        "ssdlite_mobilenet_v2_a050_coco",
    ]
    assert "{" not in result.stdout  # the table or JSON, not both


def test_password_set_where_it_cannot_write_says_so_without_a_traceback(tmp_path):
    target = tmp_path / "missing-dir" / "auth"
    result = edgecam("password", "set", "--file", str(target), "--generate")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"cannot write {target}" in result.stderr and "nothing changed" in result.stderr
    assert not target.parent.exists()

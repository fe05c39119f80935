"""Shared fixtures: real models and media from $EDGECAM_MODEL_DIR / $EDGECAM_MEDIA_DIR, else ../shared,
else (models only) fetched through the manifest into a cache, so the suite runs on a networked machine too."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
CPU_MODELS = ("ssd_mobilenet_v1_coco", "ssdlite_mobilenet_v2_a050_coco")


def _model_dir() -> Path:
    from edgecam.detect.manifest import load_manifest
    from edgecam.detect.store import Status, check, fetch

    manifest = load_manifest()
    wanted = [*CPU_MODELS, "coco_labels"]
    for candidate in (os.environ.get("EDGECAM_MODEL_DIR"), SHARED / "models"):
        if candidate and all(check(Path(candidate), manifest, i).status is Status.VERIFIED for i in wanted):
            return Path(candidate)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgecam" / "models"
    fetch(cache, manifest, wanted)
    return cache


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return _model_dir()


@pytest.fixture(scope="session")
def media_dir() -> Path:
    path = Path(os.environ.get("EDGECAM_MEDIA_DIR") or SHARED / "media")
    if not (path / "vtest.avi").is_file():
        pytest.skip(f"test media not found in {path}: set EDGECAM_MEDIA_DIR")
    return path


@pytest.fixture(scope="session")
def shared_models() -> Path:
    """The shared folder itself, for tests about files only it has (Edge TPU segments)."""
    path = Path(os.environ.get("EDGECAM_MODEL_DIR") or SHARED / "models")
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="session")
def cv2():
    from edgecam.vision import cv2

    return cv2


@pytest.fixture
def tiny_fs(tmp_path: Path):
    """A real 2 MB tmpfs (needs root) to fill up; skipped where it cannot be mounted."""
    import subprocess

    mnt = tmp_path / "tiny"
    mnt.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)

"""The real install: ./install.sh --offline into a fresh debootstrap Debian root, checked from inside.

The work is done by chroot_install.sh beside this file: LiteRT with Bookworm's apt numpy 1.24, the embedded model
copied without a download, the cat found in cat.bmp, the stream served, a no-op second run, rollback, uninstall.
This test runs amd64 (a few minutes). arm64, the Pi's architecture, runs the same script under qemu-user-static
and takes about 11 minutes, too long for every CI run: run it by hand before a release with
`sudo tests/system/chroot_install.sh --arch arm64` (it needs qemu-user-static and binfmt-support).
Needs root and the network through apt's and pip's own configured sources; skips otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "chroot_install.sh"
SKIP = 77
TIMEOUT_S = 20 * 60


@pytest.mark.slow
def test_offline_install_into_a_fresh_debian_root():
    arch = "amd64"
    if os.geteuid() != 0:
        pytest.skip("needs root (debootstrap, chroot, mounts): run the suite as root, e.g. in CI")
    if not shutil.which("debootstrap"):
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", "debootstrap"],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, capture_output=True, timeout=600,
        )  # fmt: skip
        if not shutil.which("debootstrap"):
            pytest.skip("debootstrap is not installed and apt-get could not install it")
    started = time.monotonic()
    result = subprocess.run(
        [str(SCRIPT), "--arch", arch], capture_output=True, text=True, timeout=TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    out = result.stdout + result.stderr
    if result.returncode == SKIP:
        pytest.skip(result.stderr.strip().splitlines()[-1])
    assert result.returncode == 0, out[-8000:]
    assert f"PASS (bookworm/{arch})" in out
    print(out[out.index("=== [") :][-4000:])
    print(f"chroot install test ({arch}): {time.monotonic() - started:.0f} s")

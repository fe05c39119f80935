"""The real install: ./install.sh --offline into a fresh debootstrap Debian root (amd64), checked from inside.

The work is done by chroot_install.sh beside this file (run it by hand with --arch arm64 for the Pi's
architecture under qemu; too slow for every CI run). Needs root, a Debian mirror and PyPI; skips otherwise.
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


@pytest.mark.slow
def test_offline_install_into_a_fresh_debian_root():
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
        [str(SCRIPT), "--arch", "amd64"], capture_output=True, text=True, timeout=20 * 60,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    out = result.stdout + result.stderr
    if result.returncode == SKIP:
        pytest.skip(result.stderr.strip().splitlines()[-1])
    assert result.returncode == 0, out[-8000:]
    assert "PASS (bookworm/amd64)" in out
    print(out[out.index("=== [") :][-4000:])
    print(f"chroot install test: {time.monotonic() - started:.0f} s")

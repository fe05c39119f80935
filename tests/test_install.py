"""install.sh and the systemd unit, checked for real: shellcheck, --dry-run, option errors, systemd-analyze
verify and its security exposure score. (The real install runs in tests/system/test_chroot_install.py.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
INSTALL = REPO / "install.sh"
UNIT = REPO / "systemd" / "edgecam.service"
SHELL_SCRIPTS = [INSTALL, REPO / "tests" / "system" / "chroot_install.sh"]


def _tool(name: str, package: str) -> str:
    """The tool's path; installs its Debian package when root, else skips with the reason."""
    path = shutil.which(name)
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", package],
                       env=env, capture_output=True, timeout=600)  # fmt: skip
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(f"{name} is not installed and could not be installed (apt-get install {package})")


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(INSTALL), *args], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_clean(script):
    shellcheck = _tool("shellcheck", "shellcheck")
    result = subprocess.run([shellcheck, str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_dry_run_prints_every_step_and_changes_nothing():
    watched = [Path("/opt/edgecam"), Path("/etc/edgecam"), Path("/etc/systemd/system/edgecam.service")]
    before = {p: p.exists() for p in watched}
    result = _run("--dry-run")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    steps = re.findall(r"^\[(\d)/9\] (.+)…$", result.stdout, re.M)
    assert [int(n) for n, _ in steps] == list(range(1, 10)), out
    assert "[4/9] Installing the TFLite runtime" in result.stdout
    for action in ("python3 -m venv --system-site-packages /opt/edgecam/venv", "pip install",
                   "edgecam models fetch --model-dir /var/lib/edgecam/models", "check-config /etc/edgecam/config.yaml",
                   "password set --file /etc/edgecam/auth --generate"):  # fmt: skip
        assert action in result.stdout, action
    assert "would write /etc/systemd/system/edgecam.service" in result.stdout or before[watched[2]]
    assert result.stdout.rstrip().endswith("Dry run: nothing was changed.")
    assert {p: p.exists() for p in watched} == before


def test_dry_run_offline_checks_the_bundle(tmp_path):
    result = _run("--dry-run", "--offline", str(tmp_path))
    assert result.returncode == 1
    assert "offline bundle" in result.stdout and "is incomplete" in result.stdout
    assert "FAILED: 1 check(s) failed; nothing was changed" in result.stderr
    (tmp_path / "wheels").mkdir()
    (tmp_path / "models").mkdir()
    (tmp_path / "wheels" / "edgecam-0.1.0-py3-none-any.whl").write_bytes(b"")
    result = _run("--dry-run", "--offline", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"--no-index --find-links {tmp_path}/wheels" in result.stdout
    assert f"models fetch --model-dir /var/lib/edgecam/models --from {tmp_path}/models" in result.stdout


def test_dry_run_coral_and_uninstall():
    result = _run("--dry-run", "--coral")
    out = result.stdout + result.stderr
    if "Coral with Python" in out:  # a system Python other than 3.11 has no pinned Coral pair
        assert result.returncode == 1
    else:
        assert result.returncode == 0, out
        assert "tflite_runtime 2.17.1 (matched with libedgetpu 16.0tf2.17.1-1)" in out
        assert (
            "would download https://github.com/feranick/libedgetpu/releases/download/16.0TF2.17.1-1/" in out
        )
    result = _run("--dry-run", "--uninstall")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[3/3]" in result.stdout


def test_option_errors_and_help():
    assert _run("--bogus").returncode == 2
    assert "unknown option '--bogus'" in _run("--bogus").stderr
    assert _run("--offline").returncode == 2
    help_ = _run("--help")
    assert help_.returncode == 0 and "--offline DIR" in help_.stdout and "--uninstall" in help_.stdout


def test_install_needs_root_unless_dry_run():
    cmd = [str(INSTALL)]
    if os.geteuid() == 0:  # drop to nobody to see the check fail
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: the root check cannot fail here")
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *cmd]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL not running as root" in result.stdout and "sudo" in result.stdout
    assert "nothing was changed" in result.stderr


# ---- the unit --------------------------------------------------------------------------------------------


def _unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_unit_has_what_the_service_needs():
    s = _unit_settings()
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s["ExecStart"] == ["/opt/edgecam/venv/bin/edgecam run --config /etc/edgecam/config.yaml"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["Restart"] == ["on-failure"] and "StartLimitBurst" in s and "RestartSec" in s
    assert int(s["WatchdogSec"][0]) >= 30  # the stage limit (service.watchdog_s, 30 s) fits inside it
    assert s["User"] == ["edgecam"]
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                       ("PrivateTmp", "yes"), ("DevicePolicy", "closed"), ("CapabilityBoundingSet", "")):  # fmt: skip
        assert s[key] == [value], key
    assert s["ReadWritePaths"] == ["/var/lib/edgecam/state"]
    allowed = " ".join(s["DeviceAllow"])
    for group in ("char-video4linux", "char-media", "char-dma_heap", "char-usb_device", "char-apex"):
        assert group in allowed
    assert "AF_INET" in s["RestrictAddressFamilies"][0]


@pytest.fixture(scope="module")
def unit_root(tmp_path_factory) -> Path:
    """A root with the unit, its executables and systemd's own units, for `systemd-analyze --root`."""
    _tool("systemd-analyze", "systemd")
    root = tmp_path_factory.mktemp("root")
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system/edgecam.service")
    exe = root / "opt/edgecam/venv/bin/edgecam"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    (root / "bin").mkdir()
    shutil.copy("/bin/kill", root / "bin/kill")
    for units in ("/usr/lib/systemd/system", "/lib/systemd/system"):
        if Path(units, "sysinit.target").exists():
            shutil.copytree(units, root / "usr/lib/systemd/system", symlinks=True)
            break
    else:
        pytest.skip("systemd's own units (sysinit.target) are not installed")
    return root


def test_systemd_analyze_verify(unit_root):
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={unit_root}", "/etc/systemd/system/edgecam.service"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == "", result.stderr  # no warnings either (unknown keys, bad values)


def test_systemd_analyze_security_exposure(unit_root):
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", f"--root={unit_root}", "edgecam.service"],
        capture_output=True, text=True,
    )  # fmt: skip
    match = re.search(r"Overall exposure level for edgecam.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 3.0, result.stdout

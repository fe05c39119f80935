"""install.sh and the systemd unit, checked for real: shellcheck, --dry-run, --show-config (the config rewrite),
the manifest reader, option errors, systemd-analyze verify and its security exposure score. (The real install
runs in tests/system/test_chroot_install.py.)"""

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
DOC = REPO / "docs" / "install.md"
CAMERA_ORDER = "the Pi camera (picamera2), else the first USB camera (/dev/videoN), else the sample video, else a test pattern"


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
    assert "[4/9] Installing the TFLite runtime (LiteRT)" in result.stdout
    for action in ("python3 -m venv --system-site-packages /opt/edgecam/venv", "pip install",
                   "edgecam models fetch --model-dir /var/lib/edgecam/models", "check-config /etc/edgecam/config.yaml",
                   "password set --file /etc/edgecam/auth --generate"):  # fmt: skip
        assert action in result.stdout, action
    assert "would write /etc/systemd/system/edgecam.service" in result.stdout or before[watched[2]]
    assert result.stdout.rstrip().endswith("Dry run: nothing was changed.")
    assert {p: p.exists() for p in watched} == before


def _step(stdout: str, n: int) -> str:
    return stdout.split(f"[{n}/9]")[1].split(f"[{n + 1}/9]")[0]


def test_dry_run_says_what_would_happen():
    """Issue #14 (b): the dry run neither claims an open stream nor verified models it has not seen."""
    result = _run("--dry-run")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "not password-protected" not in out
    config = _step(out, 7)
    assert "stream.auth: basic" in config and "stream.password_file: /etc/edgecam/auth" in config
    assert "snapshots.dir: /var/lib/edgecam/state/snapshots" in config
    assert "the stream asks for a password" in config
    models = _step(out, 6)
    assert "verified already" not in models
    models_dir = Path("/var/lib/edgecam/models")
    for model_id, file in _embedded_files():
        if not (models_dir / file).exists():
            assert f"would copy {model_id} ({file}) from {REPO}/models" in models, model_id
    installs = [line for line in _step(out, 4).splitlines() if "would run:" in line and "pip install" in line]
    assert "ai-edge-litert" in installs[0], installs  # LiteRT first; tflite-runtime only as the fallback
    assert all("tflite-runtime" in line for line in installs[1:]), installs


def test_dry_run_offline_checks_the_bundle(tmp_path):
    result = _run("--dry-run", "--offline", str(tmp_path))
    assert result.returncode == 1
    assert "offline bundle" in result.stdout and "is incomplete" in result.stdout
    assert "FAILED: 1 check(s) failed; nothing was changed" in result.stderr
    (tmp_path / "wheels").mkdir()
    (tmp_path / "models").mkdir()
    (tmp_path / "wheels" / "edgecam-0.1.0-py3-none-any.whl").write_bytes(b"")
    shutil.copy(REPO / "models" / "models.yaml", tmp_path / "models" / "models.yaml")
    result = _run("--dry-run", "--offline", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"--no-index --find-links {tmp_path}/wheels" in result.stdout
    # The embedded model comes from the bundle (or the checkout beside this install.sh), never a download; the
    # optional ones this bundle lacks are named, not fetched.
    models = _step(result.stdout, 6)
    for model_id, file in _embedded_files():
        if not (Path("/var/lib/edgecam/models") / file).exists():
            assert f"would copy {model_id} ({file}) from {REPO}/models" in models, model_id
    assert "would download" not in models and "edgecam models fetch" not in models
    assert "not brought (not in" in models and "ssd_mobilenet_v1_coco" in models
    (tmp_path / "models" / "detect.tflite").write_bytes(b"")
    result = _run("--dry-run", "--offline", str(tmp_path))
    assert (
        f"models fetch --model-dir /var/lib/edgecam/models --from {tmp_path}/models --from {REPO}/models ssd_mobilenet_v1_coco"
        in result.stdout
    )


def test_dry_run_bundle_resolves_litert_against_apt_numpy(tmp_path):
    bundle = tmp_path / "bundle"
    result = _run("--dry-run", "--bundle", str(bundle), "--arch", "aarch64", "--python", "3.11")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    download = next(line for line in out.splitlines() if "would run:" in line and "-m pip download" in line)
    assert "ai-edge-litert" in download and "numpy==1.24.2" in download, download
    assert "--python-version 3.11" in download and "manylinux_2_17_aarch64" in download
    assert f"cp {REPO}/models/models.yaml {bundle}/models/models.yaml" in out
    for model_id, file in _embedded_files():
        assert f"would copy {model_id} ({file}) from {REPO}/models" in out, model_id
    result = _run("--dry-run", "--bundle", str(bundle), "--arch", "aarch64", "--python", "3.13")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "numpy==2.2.4" in result.stdout


def test_dry_run_coral_and_uninstall():
    result = _run("--dry-run", "--coral")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "with libedgetpu 16.0tf2.17.1-1 loaded through its load_delegate" in out
    assert "would download https://github.com/feranick/libedgetpu/releases/download/16.0TF2.17.1-1/" in out
    # LiteRT carries the delegate: no separate tflite_runtime wheel, and no fallback to tflite-runtime 2.14
    # (no libedgetpu exists for it).
    assert "tflite_runtime-" not in out and "tflite-runtime" not in out
    assert "ssd_mobilenet_v2_coco_edgetpu" in _step(result.stdout, 6)
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


# ---- the config the installer writes, the manifest it reads, the words it uses ----------------------------


def _show_config(src: Path) -> str:
    result = _run("--show-config", str(src))
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _section(text: str, name: str) -> str:
    match = re.search(rf"(?ms)^{name}:\n(.*?)(?=^\S)", text + "\nend:\n")
    assert match, f"no {name}: section in\n{text}"
    return match.group(1)


def test_config_rewrite_sets_only_the_stream_password_file(tmp_path):
    """Issue #14 (a): mqtt.password_file (the broker's password) must not become the stream's hash file."""
    src = tmp_path / "config.yaml"
    src.write_text(
        "detector:\n  model_dir: models    # where model files live\n\n"
        "mqtt:\n  enabled: true\n  password_file: /etc/edgecam/mqtt-password  # the broker's\n\n"
        "stream:\n  port: 8080\n  auth: auto\n  password_file: null  # e.g. /etc/edgecam/auth\n\n"
        "# a comment between sections\n"
        "snapshots:\n  enabled: false\n  dir: snapshots       # relative to this file\n"
    )  # fmt: skip
    out = _show_config(src)
    assert (
        _section(out, "mqtt")
        == "  enabled: true\n  password_file: /etc/edgecam/mqtt-password  # the broker's\n\n"
    )
    stream = _section(out, "stream")
    assert "  auth: basic\n" in stream
    assert "  password_file: /etc/edgecam/auth  # e.g. /etc/edgecam/auth\n" in stream
    assert "  model_dir: /var/lib/edgecam/models    # where model files live" in out
    assert "  dir: /var/lib/edgecam/state/snapshots       # relative to this file" in out
    assert "# a comment between sections\nsnapshots:" in out


def test_config_rewrite_adds_missing_keys_to_their_section(tmp_path):
    src = tmp_path / "config.yaml"
    src.write_text(
        "stream:\n  port: 8080\n\nmqtt:\n  password_file: null\n\n"
        "recording:\n  enabled: false\n  dir: recordings\n"
    )  # fmt: skip
    out = _show_config(src)
    assert _section(out, "stream") == ("  port: 8080\n  auth: basic\n  password_file: /etc/edgecam/auth\n\n")
    assert "  password_file: null\n" in _section(out, "mqtt")
    assert _section(out, "recording") == "  enabled: false\n  dir: /var/lib/edgecam/state\n\n"
    assert out.endswith("\nsnapshots:\n  dir: /var/lib/edgecam/state/snapshots\n")  # appended
    assert out.count("password_file: /etc/edgecam/auth") == 1


def test_shipped_config_rewrite_validates():
    """The installed default config (the shipped one, rewritten) passes edgecam's own check."""
    out = _show_config(REPO / "config.yaml")
    assert "\n  auth: basic" in _section(out, "stream")
    assert "password_file: /etc/edgecam/auth" not in _section(out, "mqtt")
    from edgecam.config import parse_config

    config = parse_config(out)
    assert config.stream.password_file == "/etc/edgecam/auth"
    assert config.snapshots.dir == "/var/lib/edgecam/state/snapshots"
    recording = getattr(config, "recording", None)
    if recording is not None:  # the recording section exists in this edgecam
        assert recording.dir == "/var/lib/edgecam/state"


def _manifest_table() -> list[list[str]]:
    script = f"source <(sed -n '/^manifest_table() {{/,/^}}/p' {INSTALL}); manifest_table {REPO}/models/models.yaml"
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    return [line.split() for line in out.splitlines()]


def _embedded_files() -> list[tuple[str, str]]:
    return [(row[1], row[2]) for row in _manifest_table() if row[4] == "true"]


def test_install_sh_reads_the_manifest_like_edgecam():
    """install.sh reads models.yaml with awk (no Python/PyYAML on a fresh box): it must agree with PyYAML."""
    import yaml

    manifest = yaml.safe_load((REPO / "models" / "models.yaml").read_text())
    expected = [
        [kind, file_id, entry["file"], entry.get("labels", "-"), str(entry["embedded"]).lower() if "embedded" in entry else "-"]
        for kind in ("models", "assets")
        for file_id, entry in manifest[kind].items()
    ]  # fmt: skip
    rows = _manifest_table()
    assert [row[:5] for row in rows] == expected
    for row in rows:
        entry = manifest[row[0]][row[1]]
        assert row[6:] == [entry.get("sha256") or "-", entry.get("git_blob") or "-"], row
    try:
        from edgecam.detect.manifest import load_manifest

        loaded = load_manifest()
        archives = {i: getattr(loaded.entry(i), "archive_name", None) for i in loaded.ids()}
    except Exception:  # an older manifest module: nothing more to compare
        return
    for row in rows:
        assert (archives[row[1]] or "-") == row[5], row


def test_embedded_model_is_committed():
    embedded = _embedded_files()
    assert embedded, "models.yaml marks no embedded model"
    for model_id, file in embedded:
        assert (REPO / "models" / file).is_file(), f"{model_id}: models/{file} is missing"


def test_no_package_registry_host_is_named():
    """pip, apt and debootstrap use their own configured index or mirror; nothing here names one."""
    hosts = re.compile(
        r"pypi\.org|pythonhosted|deb\.debian\.org|ftp\.debian|archive\.raspberrypi|"
        r"security\.debian|registry\.npmjs|npmjs\.(org|com)|piwheels"
    )  # fmt: skip
    for path in (
        *SHELL_SCRIPTS,
        UNIT,
        DOC,
        Path(__file__),
        REPO / "tests" / "system" / "test_chroot_install.py",
    ):
        text = path.read_text()
        if path == Path(__file__):
            text = text.split("def test_no_package_registry_host_is_named")[0]
        found = [m.group(0) for m in hosts.finditer(text)]
        assert not found, f"{path.name} names {found}"


def test_camera_fallback_is_described_one_way():
    assert CAMERA_ORDER in INSTALL.read_text()
    assert CAMERA_ORDER in DOC.read_text()


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
    assert s["StateDirectory"] == [
        "edgecam/state"
    ]  # where snapshots and recordings go (install.sh sets them)
    allowed = " ".join(s["DeviceAllow"])
    for group in ("char-video4linux", "char-media", "char-dma_heap", "char-usb_device", "char-apex"):
        assert group in allowed
    assert "AF_INET" in s["RestrictAddressFamilies"][0]


def test_unit_limits_memory_and_tasks():
    """Issue #14 (c): a leak or a thread/fork runaway is stopped before it takes a 2 GB Pi down."""
    s = _unit_settings()
    sizes = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    memory_max = s["MemoryMax"][0]
    assert memory_max[-1] in sizes, memory_max
    assert 512 << 20 <= int(memory_max[:-1]) * sizes[memory_max[-1]] <= 1 << 30  # at most half a 2 GB Pi
    memory_high = s["MemoryHigh"][0]
    assert int(memory_high[:-1]) * sizes[memory_high[-1]] < int(memory_max[:-1]) * sizes[memory_max[-1]]
    assert 64 <= int(s["TasksMax"][0]) <= 512


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

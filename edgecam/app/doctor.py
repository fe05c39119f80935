"""``edgecam doctor``: check the box and explain, one line per check with what to do about it.

Each check is a small function returning ``Result(status, message, advice)``; the decoders (throttling bits,
USB speeds from sysfs or ``lsusb -t``, libedgetpu versions) are pure functions with unit tests. Anything
that could crash the process (loading the Edge TPU delegate with a mismatched libedgetpu segfaults) runs
in a subprocess.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

OK, WARN, FAIL = "ok", "warn", "fail"
CORAL_USB_IDS = {("1a6e", "089a"): "Coral USB (before firmware load)", ("18d1", "9302"): "Coral USB"}
SERVICE = "edgecam.service"


@dataclass(frozen=True)
class Result:
    status: str
    message: str
    advice: str = ""


# ---- pure decoders ------------------------------------------------------------------------------------------

THROTTLE_BITS = {
    0: "under-voltage now",
    1: "ARM frequency capped now",
    2: "throttled now",
    3: "soft temperature limit now",
    16: "under-voltage has occurred since boot",
    17: "ARM frequency capping has occurred",
    18: "throttling has occurred",
    19: "soft temperature limit has occurred",
}


def decode_throttled(text: str) -> tuple[int, list[str]]:
    """``vcgencmd get_throttled`` output (``throttled=0x50005``) → (value, the set bits described)."""
    match = re.search(r"throttled=(0x[0-9a-fA-F]+|\d+)", text)
    if not match:
        raise ValueError(f"unexpected vcgencmd output: {text.strip()!r}")
    value = int(match.group(1), 0)
    return value, [desc for bit, desc in sorted(THROTTLE_BITS.items()) if value & (1 << bit)]


def usb_speed_label(mbps: float) -> str:
    if mbps >= 5000:
        return f"USB 3 ({mbps:g} Mb/s)"
    if mbps >= 480:
        return f"USB 2 ({mbps:g} Mb/s)"
    return f"USB 1 ({mbps:g} Mb/s)"


@dataclass(frozen=True)
class UsbDevice:
    vendor: str
    product: str
    speed_mbps: float | None
    path: str


def usb_devices_from_sysfs(root: Path = Path("/sys/bus/usb/devices")) -> list[UsbDevice]:
    devices = []
    for d in sorted(root.glob("*")) if root.is_dir() else []:
        try:
            vendor = (d / "idVendor").read_text().strip().lower()
            product = (d / "idProduct").read_text().strip().lower()
        except OSError:
            continue
        try:
            speed: float | None = float((d / "speed").read_text().strip())
        except (OSError, ValueError):
            speed = None
        devices.append(UsbDevice(vendor, product, speed, d.name))
    return devices


def parse_lsusb(text: str) -> dict[tuple[int, int], tuple[str, str]]:
    """``lsusb`` lines → {(bus, device): (vendor, product)}."""
    out = {}
    for m in re.finditer(r"^Bus (\d+) Device (\d+): ID ([0-9a-fA-F]{4}):([0-9a-fA-F]{4})", text, re.M):
        out[(int(m.group(1)), int(m.group(2)))] = (m.group(3).lower(), m.group(4).lower())
    return out


def parse_lsusb_tree(text: str) -> dict[tuple[int, int], float]:
    """``lsusb -t`` → {(bus, device): speed in Mb/s}; the root hub of bus N is (N, 1)."""
    speeds: dict[tuple[int, int], float] = {}
    bus = 0
    for line in text.splitlines():
        root = re.match(r"^/:\s+Bus (\d+)\.Port \d+: Dev (\d+),.*?(\d+(?:\.\d+)?)M", line)
        if root:
            bus = int(root.group(1))
            speeds[(bus, int(root.group(2)))] = float(root.group(3))
            continue
        dev = re.search(r"Port \d+: Dev (\d+), If \d+,.*?(\d+(?:\.\d+)?)M\s*$", line)
        if dev and bus:
            speeds.setdefault((bus, int(dev.group(1))), float(dev.group(2)))
    return speeds


def coral_usb_from_lsusb(lsusb: str, lsusb_tree: str) -> list[UsbDevice]:
    ids, speeds = parse_lsusb(lsusb), parse_lsusb_tree(lsusb_tree)
    return [
        UsbDevice(v, p, speeds.get(key), f"bus {key[0]} device {key[1]}")
        for key, (v, p) in sorted(ids.items())
        if (v, p) in CORAL_USB_IDS
    ]


def tf_version_of_libedgetpu(deb_version: str) -> str | None:
    """``16.0tf2.17.1-1`` → ``2.17.1``; Google's own builds (``16.0``) say nothing about TF."""
    match = re.search(r"tf(\d+\.\d+(?:\.\d+)?)", deb_version, re.I)
    return match.group(1) if match else None


def same_tf_minor(a: str, b: str) -> bool:
    return a.split(".")[:2] == b.split(".")[:2]


# ---- checks -------------------------------------------------------------------------------------------------


def check_os() -> Result:
    info = platform.freedesktop_os_release() if hasattr(platform, "freedesktop_os_release") else {}
    name = info.get("PRETTY_NAME", platform.platform())
    codename = info.get("VERSION_CODENAME", "")
    machine = platform.machine()
    rpi = Path("/etc/rpi-issue").exists()
    text = f"{'Raspberry Pi OS: ' if rpi else ''}{name}, {machine}"
    if machine not in ("aarch64", "x86_64"):
        return Result(FAIL, text, "use a 64-bit OS (64-bit Raspberry Pi OS): TFLite wheels are 64-bit only")
    if codename not in ("bookworm", "trixie"):
        return Result(WARN, text, "tested on Raspberry Pi OS / Debian bookworm and trixie")
    return Result(OK, text)


def check_python() -> Result:
    v = sys.version_info
    text = f"Python {v.major}.{v.minor}.{v.micro} ({sys.executable})"
    if v < (3, 10):
        return Result(FAIL, text, "edgecam needs Python ≥ 3.10")
    return Result(OK, text)


_RUNTIME_PROBE = """
import sys
from edgecam.detect.runtime import RuntimeMissingError, find_runtime
try:
    r = find_runtime()
except RuntimeMissingError as exc:
    print("missing", exc)
    sys.exit(3)
print("found", r.name, r.version)
"""


def _runtime_probe() -> tuple[str, str] | str:
    """The runtime edgecam itself would pick (``edgecam.detect.runtime``: LiteRT, then tflite_runtime,
    then tensorflow.lite), found in a child process: a broken wheel cannot take the doctor down.
    Returns (module, version), or the reason none loads."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _RUNTIME_PROBE], capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        return "importing the runtime hung for 120 s"
    words = proc.stdout.split()
    if proc.returncode == 0 and len(words) >= 3 and words[0] == "found":
        return words[1], words[2]
    return (
        (proc.stdout + proc.stderr).strip().splitlines()[-1]
        if (proc.stdout + proc.stderr).strip()
        else "no output"
    )


@functools.lru_cache(maxsize=1)
def _runtime() -> tuple[str, str] | None:
    found = _runtime_probe()
    return found if isinstance(found, tuple) else None


def check_runtime() -> Result:
    try:
        import numpy
    except ImportError:
        return Result(FAIL, "numpy is not importable", "sudo apt install python3-numpy")
    found = _runtime_probe()
    if isinstance(found, str):
        if "numpy" in found.lower():
            return Result(
                FAIL, f"the TFLite runtime does not load with numpy {numpy.__version__}: {found}",
                "reinstall with install.sh (it installs LiteRT against apt's numpy)",
            )  # fmt: skip
        return Result(
            FAIL, f"no TFLite runtime: {found}",
            "run install.sh, or pip install ai-edge-litert (Python 3.10-3.13); tflite-runtime only where it cannot",
        )  # fmt: skip
    module, version = found
    text = f"{module} {version} with numpy {numpy.__version__}"
    if module == "tflite_runtime" and int(numpy.__version__.split(".")[0]) >= 2:
        return Result(
            FAIL, text, "tflite_runtime is built for numpy 1.x: use apt's numpy (reinstall with install.sh)"
        )
    if module != "ai_edge_litert":
        return Result(WARN, text, "LiteRT (pip install ai-edge-litert) runs the int8 models far faster here")
    return Result(OK, text)


def check_opencv() -> Result:
    try:
        import cv2
    except ImportError as exc:
        return Result(FAIL, f"OpenCV does not import: {exc}", "sudo apt install python3-opencv")
    return Result(OK, f"OpenCV {cv2.__version__}")


def check_camera() -> Result:
    from edgecam.capture.sources import AUTO_ORDER

    found = []
    for cmd in ("rpicam-hello", "libcamera-hello"):
        if shutil.which(cmd):
            out = _run([cmd, "--list-cameras"], timeout=15)
            cams = re.findall(r"^\s*\d+ : (\S+)", out, re.M)
            if cams:
                found.append(f"libcamera: {', '.join(cams)}")
            break
    videos = sorted(str(p) for p in Path("/dev").glob("video*"))
    if videos:
        found.append(" ".join(videos[:4]) + (" …" if len(videos) > 4 else ""))
    if not found:
        return Result(
            WARN, "no camera found (no libcamera camera, no /dev/video*)",
            f"check the ribbon cable / USB camera; with camera.source: auto edgecam takes {AUTO_ORDER}",
        )  # fmt: skip
    return Result(OK, "camera: " + "; ".join(found))


def check_coral(devices: Iterable[UsbDevice] | None = None, apex: Iterable[Path] | None = None) -> Result:
    devices = list(usb_devices_from_sysfs() if devices is None else devices)
    corals = [d for d in devices if (d.vendor, d.product) in CORAL_USB_IDS]
    apex = list(Path("/dev").glob("apex_*") if apex is None else apex)
    if apex:
        return Result(OK, f"Coral PCIe/M.2: {', '.join(map(str, apex))}")
    if not corals:
        return Result(OK, "no Coral Edge TPU (the CPU models are used)")
    d = corals[0]
    name = f"{CORAL_USB_IDS[(d.vendor, d.product)]} {d.vendor}:{d.product}"
    if d.speed_mbps is None:
        return Result(OK, f"{name} (speed unknown)")
    if d.speed_mbps < 5000:
        return Result(
            WARN, f"{name} at {usb_speed_label(d.speed_mbps)}",
            "plug it into a USB 3 (blue) port with a USB 3 cable: USB 2 makes it several times slower",
        )  # fmt: skip
    return Result(OK, f"{name} at {usb_speed_label(d.speed_mbps)}")


def _libedgetpu_version() -> tuple[str, str] | None:
    if not shutil.which("dpkg-query"):
        return None
    for pkg in ("libedgetpu1-max", "libedgetpu1-std"):
        out = _run(["dpkg-query", "-W", "-f=${Status} ${Version}", pkg])
        if out.startswith("install ok installed"):
            return pkg, out.split()[-1]
    return None


LITERT_LIBEDGETPU_TF = ((2, 17), (2, 19))


def check_libedgetpu() -> Result:
    lib = _libedgetpu_version()
    runtime = _runtime()
    if lib is None:
        return Result(OK, "libedgetpu not installed (only needed with a Coral)")
    pkg, version = lib
    tf = tf_version_of_libedgetpu(version)
    if runtime is None:
        return Result(WARN, f"{pkg} {version} but no TFLite runtime", "run install.sh --coral")
    module, rt_version = runtime
    if tf is None:
        return Result(
            WARN, f"{pkg} {version}: built for an unknown TensorFlow; runtime {module} {rt_version}",
            "libedgetpu must match the runtime's TensorFlow or it crashes: install.sh --coral installs a matched pair",
        )  # fmt: skip
    if module == "ai_edge_litert":
        # feranick's libedgetpu 16.0 builds for TF 2.17-2.19 state that they load under ai-edge-litert
        if LITERT_LIBEDGETPU_TF[0] <= tuple(int(x) for x in tf.split(".")[:2]) <= LITERT_LIBEDGETPU_TF[1]:
            return Result(OK, f"{pkg} {version} (TF {tf} build) with {module} {rt_version}")
        return Result(
            WARN, f"{pkg} {version} is built for TF {tf}; with {module} {rt_version} only the TF 2.17-2.19 builds are known to load",
            "run install.sh --coral (it installs libedgetpu 16.0tf2.17.1)",
        )  # fmt: skip
    if not same_tf_minor(tf, rt_version):
        return Result(
            FAIL, f"{pkg} {version} is built for TF {tf} but the runtime is {module} {rt_version}",
            "a mismatched pair segfaults when the delegate loads: run install.sh --coral",
        )  # fmt: skip
    return Result(OK, f"{pkg} {version} matches {module} {rt_version}")


_DELEGATE_PROBE = """
import sys
from edgecam.detect.runtime import find_runtime
try:
    find_runtime().load_delegate("libedgetpu.so.1")
except (OSError, ValueError) as exc:
    print(type(exc).__name__, exc)
    sys.exit(3)
print("loaded")
"""


def check_delegate(coral_present: bool) -> Result:
    if not coral_present:
        return Result(OK, "Edge TPU delegate: not tried (no Coral)")
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _DELEGATE_PROBE], capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        return Result(FAIL, "loading the Edge TPU delegate hung for 60 s", "replug the Coral; check dmesg")
    out = (proc.stdout + proc.stderr).strip().splitlines()
    last = out[-1] if out else ""
    if proc.returncode == 0:
        return Result(OK, "Edge TPU delegate loads")
    if proc.returncode < 0:
        return Result(
            FAIL, f"loading the Edge TPU delegate crashed (signal {-proc.returncode})",
            "libedgetpu and the runtime are from different TensorFlow versions: run install.sh --coral",
        )  # fmt: skip
    if last.startswith("OSError"):
        return Result(FAIL, f"libedgetpu.so.1 is missing: {last}", "run install.sh --coral")
    return Result(
        FAIL, f"the Edge TPU delegate does not load: {last}",
        "the edgecam user needs the plugdev (USB) / apex (PCIe) group; replug the stick; see dmesg",
    )  # fmt: skip


def check_models(model_dir: Path | None) -> Result:
    from edgecam.detect.manifest import load_manifest
    from edgecam.detect.store import Status, check

    if model_dir is None:
        return Result(FAIL, "no model directory", "pass --model-dir or set detector.model_dir")
    manifest = load_manifest()
    statuses = {i: check(model_dir, manifest, i).status for i in manifest.models}
    verified = [i for i, s in statuses.items() if s is Status.VERIFIED]
    bad = [i for i, s in statuses.items() if s is Status.MISMATCH]
    if bad:
        return Result(
            FAIL, f"{model_dir}: checksum mismatch: {', '.join(bad)}",
            f"edgecam models fetch --model-dir {model_dir} {' '.join(bad)}",
        )  # fmt: skip
    if not verified:
        return Result(
            FAIL, f"{model_dir}: no verified model", f"edgecam models fetch --model-dir {model_dir}"
        )
    return Result(OK, f"{len(verified)} model(s) verified in {model_dir}: {', '.join(verified)}")


def check_config(config_path: Path | None) -> tuple[Result, Path | None]:
    """The config's verdict and the model directory it names."""
    from edgecam.config import ConfigError, load_config

    if config_path is None:
        return Result(
            WARN, "no config file (defaults)", "edgecam doctor --config /etc/edgecam/config.yaml"
        ), None
    try:
        loaded = load_config(config_path)
    except ConfigError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "invalid"
        return Result(
            FAIL, f"{config_path}: {len(exc.issues)} error(s): {first}", f"edgecam check-config {config_path}"
        ), None
    return Result(OK, f"{config_path}: valid"), loaded.resolve(loaded.config.detector.model_dir)


def check_service() -> Result:
    if not Path("/run/systemd/system").is_dir() or not shutil.which("systemctl"):
        return Result(OK, "systemd is not running here: service not checked")
    enabled = _run(["systemctl", "is-enabled", SERVICE]).strip() or "unknown"
    active = _run(["systemctl", "is-active", SERVICE]).strip() or "unknown"
    text = f"{SERVICE}: {active}, {enabled}"
    if active == "active":
        return Result(OK, text)
    if enabled in ("not-found", "unknown"):
        return Result(WARN, f"{SERVICE} is not installed", "sudo ./install.sh")
    if active == "failed":
        return Result(FAIL, text, "journalctl -u edgecam -n 50; then sudo systemctl restart edgecam")
    return Result(WARN, text, "sudo systemctl start edgecam")


def check_throttled() -> Result:
    if not shutil.which("vcgencmd"):
        return Result(OK, "throttling: not a Raspberry Pi (no vcgencmd)")
    out = _run(["vcgencmd", "get_throttled"])
    try:
        value, bits = decode_throttled(out)
    except ValueError as exc:
        return Result(WARN, f"throttling: {exc}", "the edgecam user needs the video group for vcgencmd")
    if value == 0:
        return Result(OK, "no under-voltage or throttling since boot")
    now = value & 0xF
    advice = (
        "use the official power supply (5 V 3 A for a Pi 4, 5 V 5 A for a Pi 5)"
        if value & 0x10001
        else "improve cooling (a heatsink or fan)"
    )
    return Result(FAIL if now else WARN, f"throttled=0x{value:x}: {'; '.join(bits)}", advice)


def check_disk(path: Path) -> Result:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    free_mb = usage.free // 2**20
    text = f"{free_mb} MB free on {probe}"
    if free_mb < 200:
        return Result(FAIL, text, "free some space: logs (journalctl --vacuum-size=100M), old files")
    if free_mb < 1000:
        return Result(WARN, text, "less than 1 GB free")
    return Result(OK, text)


def _run(cmd: list[str], timeout: float = 10) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


# ---- the report ---------------------------------------------------------------------------------------------


def format_result(name: str, result: Result) -> str:
    line = f"{result.status:<4}  {name:<11} {result.message}"
    if result.advice and result.status != OK:
        line += f"\n      {'':<11} → {result.advice}"
    return line


def run_doctor(config_path: Path | None, model_dir: Path | None, out: Callable[[str], None] = print) -> int:
    """Print one line per check; 1 when anything failed, else 0."""
    results: list[tuple[str, Result]] = []

    def add(name: str, fn: Callable[[], Result]) -> Result:
        try:
            result = fn()
        except Exception as exc:  # a broken check is reported, never a traceback
            result = Result(FAIL, f"check crashed: {type(exc).__name__}: {exc}")
        results.append((name, result))
        out(format_result(name, result))
        return result

    add("os", check_os)
    add("python", check_python)
    add("runtime", check_runtime)
    add("opencv", check_opencv)
    add("camera", check_camera)
    coral = add("coral", check_coral)
    add("libedgetpu", check_libedgetpu)
    add("delegate", lambda: check_delegate("no Coral" not in coral.message))
    configured: list[Path | None] = [None]

    def config() -> Result:
        result, configured[0] = check_config(config_path)
        return result

    add("config", config)
    add("models", lambda: check_models(model_dir or configured[0] or _env_model_dir()))
    add("service", check_service)
    add("power", check_throttled)
    add("disk", lambda: check_disk(model_dir or configured[0] or Path("/var/lib/edgecam")))
    failed = sum(r.status == FAIL for _, r in results)
    warned = sum(r.status == WARN for _, r in results)
    out(f"{len(results)} checks: {failed} failed, {warned} warning(s)")
    return 1 if failed else 0


def _env_model_dir() -> Path | None:
    value = os.environ.get("EDGECAM_MODEL_DIR")
    return Path(value) if value else None

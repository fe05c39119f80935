"""doctor.py: the pure decoders (throttling bits, USB speeds from sysfs and lsusb, libedgetpu versions), the
checks' verdicts on given inputs, and the real doctor on this machine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgecam.app.doctor import (
    FAIL,
    OK,
    WARN,
    UsbDevice,
    check_coral,
    check_models,
    coral_usb_from_lsusb,
    decode_throttled,
    parse_lsusb_tree,
    run_doctor,
    same_tf_minor,
    tf_version_of_libedgetpu,
    usb_devices_from_sysfs,
    usb_speed_label,
)

REPO = Path(__file__).resolve().parent.parent


def test_decode_throttled():
    assert decode_throttled("throttled=0x0\n") == (0, [])
    value, bits = decode_throttled("throttled=0x50005")
    assert value == 0x50005
    assert bits == [
        "under-voltage now",
        "throttled now",
        "under-voltage has occurred since boot",
        "throttling has occurred",
    ]
    assert decode_throttled("throttled=0x80000")[1] == ["soft temperature limit has occurred"]
    with pytest.raises(ValueError, match="unexpected vcgencmd output"):
        decode_throttled("VCHI initialization failed")


def test_usb_speed_label():
    assert usb_speed_label(5000) == "USB 3 (5000 Mb/s)"
    assert usb_speed_label(480) == "USB 2 (480 Mb/s)"
    assert usb_speed_label(12) == "USB 1 (12 Mb/s)"


def test_usb_devices_from_sysfs(tmp_path):
    def device(name: str, vendor: str, product: str, speed: str | None) -> None:
        d = tmp_path / name
        d.mkdir()
        (d / "idVendor").write_text(vendor + "\n")
        (d / "idProduct").write_text(product + "\n")
        if speed is not None:
            (d / "speed").write_text(speed + "\n")

    device("usb2", "1d6b", "0003", "5000")
    device("2-1", "18d1", "9302", "5000")
    device("1-1.3", "1A6E", "089A", "480")
    device("1-1.4", "046d", "0825", None)
    (tmp_path / "1-1.3:1.0").mkdir()  # an interface: no ids
    devices = usb_devices_from_sysfs(tmp_path)
    assert UsbDevice("18d1", "9302", 5000.0, "2-1") in devices
    assert UsbDevice("1a6e", "089a", 480.0, "1-1.3") in devices
    assert UsbDevice("046d", "0825", None, "1-1.4") in devices
    assert len(devices) == 4
    assert usb_devices_from_sysfs(tmp_path / "missing") == []


LSUSB = """\
Bus 002 Device 002: ID 18d1:9302 Google Inc.
Bus 002 Device 001: ID 1d6b:0003 Linux Foundation 3.0 root hub
Bus 001 Device 003: ID 1a6e:089a Global Unichip Corp.
Bus 001 Device 002: ID 2109:3431 VIA Labs, Inc. Hub
Bus 001 Device 001: ID 1d6b:0002 Linux Foundation 2.0 root hub
"""
LSUSB_TREE_OLD = """\
/:  Bus 02.Port 1: Dev 1, Class=root_hub, Driver=xhci_hcd/4p, 5000M
    |__ Port 1: Dev 2, If 0, Class=Vendor Specific Class, Driver=, 5000M
/:  Bus 01.Port 1: Dev 1, Class=root_hub, Driver=xhci_hcd/1p, 480M
    |__ Port 1: Dev 2, If 0, Class=Hub, Driver=hub/4p, 480M
        |__ Port 3: Dev 3, If 0, Class=Vendor Specific Class, Driver=, 480M
"""
LSUSB_TREE_NEW = """\
/:  Bus 001.Port 001: Dev 001, Class=root_hub, Driver=xhci_hcd/1p, 480M
    |__ Port 001: Dev 002, If 0, Class=Hub, Driver=hub/4p, 480M
        |__ Port 003: Dev 003, If 0, Class=Vendor Specific Class, Driver=[none], 480M
/:  Bus 002.Port 001: Dev 001, Class=root_hub, Driver=xhci_hcd/4p, 5000M
    |__ Port 001: Dev 002, If 0, Class=Vendor Specific Class, Driver=[none], 5000M
"""


@pytest.mark.parametrize("tree", [LSUSB_TREE_OLD, LSUSB_TREE_NEW])
def test_lsusb_speeds(tree):
    speeds = parse_lsusb_tree(tree)
    assert speeds[(2, 1)] == 5000 and speeds[(2, 2)] == 5000
    assert speeds[(1, 1)] == 480 and speeds[(1, 3)] == 480
    corals = coral_usb_from_lsusb(LSUSB, tree)
    assert corals == [
        UsbDevice("1a6e", "089a", 480.0, "bus 1 device 3"),
        UsbDevice("18d1", "9302", 5000.0, "bus 2 device 2"),
    ]


def test_check_coral_verdicts():
    usb3 = UsbDevice("18d1", "9302", 5000.0, "2-1")
    usb2 = UsbDevice("18d1", "9302", 480.0, "1-1")
    other = UsbDevice("046d", "0825", 480.0, "1-2")
    assert check_coral([other], apex=[]).status == OK
    assert "no Coral" in check_coral([other], apex=[]).message
    assert check_coral([usb3], apex=[]).status == OK
    r = check_coral([usb2], apex=[])
    assert r.status == WARN and "USB 2" in r.message and "USB 3" in r.advice
    assert check_coral([], apex=[Path("/dev/apex_0")]).status == OK


def test_libedgetpu_versions():
    assert tf_version_of_libedgetpu("16.0tf2.17.1-1") == "2.17.1"
    assert tf_version_of_libedgetpu("16.0TF2.18.1-1") == "2.18.1"
    assert tf_version_of_libedgetpu("16.0") is None
    assert same_tf_minor("2.17.1", "2.17.0")
    assert not same_tf_minor("2.17.1", "2.14.0")


def corrupt_model_dir(tmp_path: Path, model_dir: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    data = (model_dir / "detect.tflite").read_bytes()
    (folder / "detect.tflite").write_bytes(data[: len(data) // 2])
    return folder


def test_check_models(tmp_path, model_dir):
    assert check_models(model_dir).status == OK
    empty = check_models(tmp_path)  # the model that ships with edgecam is always there
    assert empty.status == OK and "ssdlite_mobilenet_v2_coco" in empty.message
    r = check_models(corrupt_model_dir(tmp_path, model_dir))
    assert r.status == FAIL and "ssd_mobilenet_v1_coco" in r.message and "edgecam models fetch" in r.advice


def test_run_doctor_on_this_machine(model_dir):
    lines: list[str] = []
    rc = run_doctor(REPO / "config.yaml", model_dir, out=lines.append)
    text = "\n".join(lines)
    assert rc == 0, text
    for name in ("os", "python", "runtime", "camera", "coral", "libedgetpu", "delegate", "config", "models",
                 "service", "power", "disk"):  # fmt: skip
        assert any(line.split()[1:2] == [name] for line in lines if line[:4].strip() in (OK, WARN, FAIL)), (
            name
        )
    assert lines[-1].startswith("13 checks: 0 failed")


def test_run_doctor_fails_on_a_bad_config_and_a_corrupt_model(tmp_path, model_dir):
    bad = tmp_path / "config.yaml"
    bad.write_text("detector:\n  threshold: 1.5\n")
    lines: list[str] = []
    assert run_doctor(bad, corrupt_model_dir(tmp_path, model_dir), out=lines.append) == 1
    text = "\n".join(lines)
    assert "fail  config" in text and "detector.threshold" in text
    assert "fail  models" in text


def test_doctor_as_a_process_exit_code(tmp_path, model_dir):
    code = "import sys; from pathlib import Path; from edgecam.app.doctor import run_doctor; sys.exit(run_doctor(Path(sys.argv[1]), Path(sys.argv[2])))"
    ok = subprocess.run(
        [sys.executable, "-c", code, str(REPO / "config.yaml"), str(model_dir)],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = subprocess.run(
        [sys.executable, "-c", code, str(REPO / "config.yaml"), str(corrupt_model_dir(tmp_path, model_dir))],
        capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 1 and "fail  models" in bad.stdout

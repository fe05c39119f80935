"""Which TFLite interpreter module to use, and the Edge TPU delegate.

Order: ``tflite_runtime`` (PyPI 2.14 on Python <= 3.11, or feranick's 2.17.1 paired with libedgetpu),
then ``ai_edge_litert`` (Python 3.10-3.14, numpy 2), then full TensorFlow's ``tensorflow.lite``.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

EDGETPU_LIBRARY = "libedgetpu.so.1"
_CANDIDATES = (
    ("tflite_runtime", "tflite_runtime.interpreter"),
    ("ai_edge_litert", "ai_edge_litert.interpreter"),
    ("tensorflow", "tensorflow.lite.python.interpreter"),
)
INSTALL_HINT = (
    "no TFLite runtime found: install one into edgecam's Python, e.g. "
    "`pip install 'edgecam[tflite]'` (Python <= 3.11) or `pip install 'edgecam[litert]'` (Python >= 3.12)"
)


class RuntimeMissingError(RuntimeError):
    """No TFLite interpreter module can be imported."""


class EdgeTpuUnavailableError(RuntimeError):
    """An Edge TPU model was asked for but no working Edge TPU is there. ``reason`` says why."""

    def __init__(self, reason: str, cpu_twin: str | None = None) -> None:
        self.reason = reason
        self.cpu_twin = cpu_twin
        twin = f"; use its CPU twin '{cpu_twin}'" if cpu_twin else ""
        super().__init__(f"no Edge TPU: {reason}{twin}")


@dataclass(frozen=True)
class Runtime:
    """The interpreter module in use."""

    name: str
    version: str
    interpreter_class: type
    load_delegate: Callable[..., Any]

    def describe(self) -> str:
        return f"{self.name} {self.version}"


@functools.lru_cache(maxsize=1)
def find_runtime() -> Runtime:
    """Import the first available interpreter module; raise RuntimeMissingError naming what to install."""
    errors = []
    for dist, module_name in _CANDIDATES:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            errors.append(f"{dist}: {exc}")
            continue
        version = _version_of(dist)
        log.debug("TFLite runtime: %s %s", dist, version)
        return Runtime(dist, version, module.Interpreter, module.load_delegate)
    raise RuntimeMissingError(INSTALL_HINT + " (" + "; ".join(errors) + ")")


def _version_of(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist.replace("_", "-"))
    except PackageNotFoundError:
        return "unknown"


def load_edgetpu_delegate(device: str | None = None, retries: int = 1, retry_delay_s: float = 1.0) -> Any:
    """Load the Edge TPU delegate, or raise EdgeTpuUnavailableError with a reason a user can act on.

    ``device`` is None (first found), ``usb``, ``usb:N``, ``pci`` or ``pci:N``. A USB stick re-enumerates
    (1a6e:089a -> 18d1:9302) on its first use, so a failure is retried once after a short pause.
    """
    options = {"device": device} if device else {}
    load_delegate = find_runtime().load_delegate
    try:  # check the library first: tflite_runtime's delegate prints a stray traceback when it is missing
        ctypes.CDLL(EDGETPU_LIBRARY)
    except OSError as exc:
        raise EdgeTpuUnavailableError(
            f"{EDGETPU_LIBRARY} could not be loaded ({exc}); install libedgetpu (sudo ./install.sh --coral)"
        ) from exc
    reason = ""
    for attempt in range(retries + 1):
        try:
            return load_delegate(EDGETPU_LIBRARY, options)
        except OSError as exc:  # the shared library itself is missing or broken: retrying will not help
            raise EdgeTpuUnavailableError(
                f"{EDGETPU_LIBRARY} could not be loaded ({exc}); install libedgetpu (sudo ./install.sh --coral)"
            ) from exc
        except ValueError as exc:  # library present, no device answered
            where = f" at '{device}'" if device else ""
            reason = f"no Edge TPU device found{where} ({exc}); check the USB cable or `lsusb`"
            if attempt < retries:
                log.info("Edge TPU not ready (%s); retrying once in %.1f s", exc, retry_delay_s)
                time.sleep(retry_delay_s)
    raise EdgeTpuUnavailableError(reason)

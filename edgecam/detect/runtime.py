"""Which TFLite interpreter module to use, and the Edge TPU delegate.

Order: ``ai_edge_litert`` (LiteRT, the maintained runtime: wheels for Python 3.10-3.13 on x86-64 and
aarch64, numpy >= 1.23; its XNNPACK kernels ran the int8 detectors 16-25x faster than tflite_runtime here),
then ``tflite_runtime`` (a fallback where LiteRT cannot be installed; PyPI's last release is 2.14, 2023),
then full TensorFlow's ``tensorflow.lite``. The Edge TPU delegate (libedgetpu) loads through whichever
runtime was found, with the same ``load_delegate``.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

EDGETPU_LIBRARY = "libedgetpu.so.1"
RUNTIME_ENV = "EDGECAM_RUNTIME"  # pin one runtime (e.g. to compare them side by side in a benchmark)
RUNTIME_CANDIDATES = (
    ("ai_edge_litert", "ai_edge_litert.interpreter"),
    ("tflite_runtime", "tflite_runtime.interpreter"),
    ("tensorflow", "tensorflow.lite.python.interpreter"),
)
INSTALL_HINT = (
    "no TFLite runtime found: install LiteRT into edgecam's Python (`pip install ai-edge-litert`, or "
    "`pip install 'edgecam[litert]'`); where it has no wheel, `pip install 'edgecam[tflite]'` (Python <= 3.11)"
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
    wanted = os.environ.get(RUNTIME_ENV, "").strip()
    candidates = [c for c in RUNTIME_CANDIDATES if c[0] == wanted] if wanted else RUNTIME_CANDIDATES
    if wanted and not candidates:
        known = ", ".join(name for name, _ in RUNTIME_CANDIDATES)
        raise RuntimeMissingError(f"${RUNTIME_ENV}={wanted!r} is not a runtime edgecam knows ({known})")
    for dist, module_name in candidates:
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

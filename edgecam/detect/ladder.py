"""Which models to run: the configured ladder, or `auto` (Edge TPU first when one works, then the
installed CPU models, heaviest first), and loading the first rung that works."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from edgecam.detect.detector import DetectionFilter, Detector, load_detector
from edgecam.detect.manifest import Manifest
from edgecam.detect.runtime import EdgeTpuUnavailableError, load_edgetpu_delegate
from edgecam.detect.store import ChecksumMismatchError, ModelMissingError, Status, check

log = logging.getLogger(__name__)


def edgetpu_works(device: str | None = None) -> bool:
    try:
        load_edgetpu_delegate(device, retries=1)
    except EdgeTpuUnavailableError as exc:
        log.info("Edge TPU not used: %s", exc.reason)
        return False
    return True


def resolve_ladder(
    spec: str | Sequence[str],
    model_dir: Path,
    manifest: Manifest,
    tpu_works: Callable[[], bool] = edgetpu_works,
) -> list[str]:
    """Model ids to use, heaviest first. `auto` lists what is installed and verified."""
    if spec != "auto":
        return list(spec)
    installed = [m for m in manifest.models if check(model_dir, manifest, m).status is Status.VERIFIED]
    cpu = sorted(
        (m for m in installed if not manifest.models[m].edgetpu), key=lambda m: -manifest.models[m].cost
    )
    tpu = [m for m in installed if manifest.models[m].edgetpu]
    ladder = (tpu[:1] if tpu and tpu_works() else []) + cpu
    if not ladder:
        raise ModelMissingError(
            f"no verified model in {model_dir}; run `edgecam models fetch --model-dir {model_dir}`"
        )
    return ladder


def load_first(
    ladder: Sequence[str],
    model_dir: Path,
    manifest: Manifest,
    *,
    threads: int,
    edgetpu_device: str | None,
    detection_filter: DetectionFilter,
) -> Detector:
    """The first rung that loads. A rung that cannot (missing, corrupt, no Edge TPU) is skipped with a
    log line saying why; an Edge TPU rung falls back to its CPU twin when that is installed."""
    failures = []
    for model_id in ladder:
        candidates = [model_id]
        twin = manifest.models[model_id].cpu_twin
        if twin and twin not in ladder:
            candidates.append(twin)
        for candidate in candidates:
            try:
                return load_detector(
                    candidate, model_dir, threads=threads, edgetpu_device=edgetpu_device,
                    detection_filter=detection_filter, manifest=manifest,
                )  # fmt: skip
            except (EdgeTpuUnavailableError, ChecksumMismatchError, ModelMissingError, ValueError) as exc:
                log.warning("model %s skipped: %s", candidate, exc)
                failures.append(f"{candidate}: {exc}")
    raise ModelMissingError("no model in the ladder could be loaded:\n  " + "\n  ".join(failures))

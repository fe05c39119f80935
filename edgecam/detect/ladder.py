"""Which models to run: the configured ladder, or `auto` (Edge TPU first when one works, then the
installed CPU models, heaviest first)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from edgecam.detect.manifest import Manifest
from edgecam.detect.runtime import EdgeTpuUnavailableError, load_edgetpu_delegate
from edgecam.detect.store import ModelMissingError, Status, check

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

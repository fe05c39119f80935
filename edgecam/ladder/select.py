"""Which models the ladder runs: the configured list as written, or ``auto``.

``auto`` takes only rungs that trade something: among the installed CPU models, those that no other one
beats on both cost and accuracy (the Pareto front; a model slower *and* less accurate than another is
dominated and never chosen, and a model without an accuracy figure is not judged, so not chosen), most
accurate first. With a working Edge TPU, its most accurate model comes first. An explicit list is used as
written; a dominated rung in it gets a warning, not a removal. Each Edge TPU rung is followed by its CPU
twin unless a better CPU rung is already there, so a TPU fault has somewhere to go at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from edgecam.detect.manifest import Manifest, ModelEntry
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


def _accuracy(entry: ModelEntry) -> float | None:
    return entry.accuracy.map50 if entry.accuracy is not None else None


def dominated_by(model_id: str, others: Sequence[str], manifest: Manifest) -> str | None:
    """The model among ``others`` (same kind of device) that is at least as fast and as accurate as
    ``model_id`` and better in one of the two, or None."""
    entry = manifest.models[model_id]
    mine = _accuracy(entry)
    if mine is None:
        return None
    for other_id in others:
        other = manifest.models[other_id]
        theirs = _accuracy(other)
        if other_id == model_id or other.edgetpu != entry.edgetpu or theirs is None:
            continue
        if other.cost <= entry.cost and theirs >= mine and (other.cost < entry.cost or theirs > mine):
            return other_id
    return None


def why_not_auto(model_id: str, installed: Sequence[str], manifest: Manifest) -> str | None:
    """Why ``ladder: auto`` leaves an installed model out (None when it takes it)."""
    entry = manifest.models[model_id]
    if entry.accuracy is None:
        return "no accuracy figure to judge it by"
    better = dominated_by(model_id, installed, manifest)
    if better is not None:
        b = manifest.models[better]
        return (
            f"dominated by {better} (cost {b.cost:g} ≤ {entry.cost:g}, "
            f"mAP@0.5 {_accuracy(b):.3f} ≥ {_accuracy(entry):.3f})"
        )
    return None


def pareto(installed: Sequence[str], manifest: Manifest) -> list[str]:
    """The installed models ``auto`` may use, most accurate (and so heaviest) first."""
    kept = [m for m in installed if why_not_auto(m, installed, manifest) is None]
    return sorted(kept, key=lambda m: (-(_accuracy(manifest.models[m]) or 0.0), manifest.models[m].cost))


def installed_models(model_dir: Path, manifest: Manifest) -> list[str]:
    return [m for m in manifest.models if check(model_dir, manifest, m).status is Status.VERIFIED]


def resolve_ladder(
    spec: str | Sequence[str],
    model_dir: Path,
    manifest: Manifest,
    tpu_works: Callable[[], bool] = edgetpu_works,
) -> list[str]:
    """Model ids to use, heaviest first. ``auto`` judges what is installed and verified."""
    if spec != "auto":
        ids = list(spec)
        for model_id in ids:
            better = dominated_by(model_id, ids, manifest)
            if better is not None:
                log.warning(
                    "detector.ladder: %s is slower and less accurate than %s (kept, as written)",
                    model_id,
                    better,
                )
        return ids
    installed = installed_models(model_dir, manifest)
    cpu = pareto([m for m in installed if not manifest.models[m].edgetpu], manifest)
    tpu = pareto([m for m in installed if manifest.models[m].edgetpu], manifest)
    ladder = (tpu[:1] if tpu and tpu_works() else []) + cpu
    if not ladder:
        raise ModelMissingError(
            f"no verified model in {model_dir} (nor the one that ships with edgecam); "
            f"run `edgecam models fetch --model-dir {model_dir}`"
        )
    return ladder


def ladder_with_twins(ids: Sequence[str], manifest: Manifest) -> list[str]:
    """Each Edge TPU rung is followed by its CPU twin, unless a CPU rung of the ladder beats the twin."""
    result: list[str] = []
    cpu_rungs = [m for m in ids if not manifest.models[m].edgetpu]
    for model_id in ids:
        if model_id not in result:
            result.append(model_id)
        twin = manifest.models[model_id].cpu_twin
        if (
            twin
            and twin not in ids
            and twin not in result
            and dominated_by(twin, cpu_rungs, manifest) is None
        ):
            result.append(twin)
    return result


def build_ladder(
    spec: str | Sequence[str],
    model_dir: Path,
    manifest: Manifest,
    tpu_works: Callable[[], bool] = edgetpu_works,
) -> list[str]:
    """The rungs the switcher runs: the configured or automatic ladder, each Edge TPU rung with its CPU twin."""
    return ladder_with_twins(resolve_ladder(spec, model_dir, manifest, tpu_works), manifest)

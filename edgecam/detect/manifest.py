"""The model manifest (models/models.yaml): typed entries for detectors and their assets."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator


class FileEntry(BaseModel):
    """A file edgecam can download and verify."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str
    url: str
    member: str | None = None
    sha256: str | None = None
    git_blob: str | None = None
    licence: str
    source: str

    @model_validator(mode="after")
    def _has_checksum(self) -> FileEntry:
        if not (self.sha256 or self.git_blob):
            raise ValueError("needs a checksum: sha256 or git_blob")
        return self


class AssetEntry(FileEntry):
    kind: Literal["labels", "video"]


class ModelEntry(FileEntry):
    architecture: str
    alpha: float = Field(gt=0, le=2)
    input_size: tuple[int, int]
    labels: str
    layout: Literal["tf1", "tf2"]
    resize: Literal["stretch", "letterbox"] = "stretch"
    edgetpu: bool = False
    cpu_twin: str | None = None
    cost: float = Field(gt=0)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    models: dict[str, ModelEntry]
    assets: dict[str, AssetEntry]

    @model_validator(mode="after")
    def _references_exist(self) -> Manifest:
        for model_id, entry in self.models.items():
            if entry.labels not in self.assets:
                raise ValueError(f"models.{model_id}.labels: no asset '{entry.labels}'")
            if entry.edgetpu and entry.cpu_twin not in self.models:
                raise ValueError(f"models.{model_id}.cpu_twin: an Edge TPU model needs a CPU twin")
        return self

    def entry(self, file_id: str) -> FileEntry:
        """A model or asset by id; KeyError lists the known ids."""
        found = self.models.get(file_id) or self.assets.get(file_id)
        if found is None:
            known = ", ".join([*self.models, *self.assets])
            raise KeyError(f"unknown model or asset '{file_id}' (known: {known})")
        return found

    def model(self, model_id: str) -> ModelEntry:
        if model_id not in self.models:
            raise KeyError(f"unknown model '{model_id}' (known: {', '.join(self.models)})")
        return self.models[model_id]

    def ids(self) -> list[str]:
        return [*self.models, *self.assets]


def load_manifest(path: Path | None = None) -> Manifest:
    """Read a manifest file; without a path, the one shipped with edgecam."""
    if path is None:
        return _shipped_manifest()
    return Manifest.model_validate(yaml.safe_load(path.read_text()))


@functools.lru_cache(maxsize=1)
def _shipped_manifest() -> Manifest:
    text = resources.files("edgecam").joinpath("data/models.yaml").read_text()
    return Manifest.model_validate(yaml.safe_load(text))

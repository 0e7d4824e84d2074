"""Versioned model artifacts and precomputed predictions on any filesystem fsspec knows (local disk, HDFS).

Layout (the artifact contract, see README)::

    <store>/<model_name>/LATEST                          the newest version, one line
    <store>/<model_name>/<version>/manifest.json         recsys.manifest.Manifest
    <store>/<model_name>/<version>/saved_model/...       TensorFlow SavedModel
    <store>/predictions/<set>/LATEST                     the newest run of a prediction set
    <store>/predictions/<set>/<run>/_manifest.json       recsys.manifest.PredictionManifest
    <store>/predictions/<set>/<run>/part-*.parquet

A version (or run) appears only by renaming a fully written and verified staging directory, and ``LATEST`` is
rewritten (write a temporary file, rename over) only after that: readers never see half a version. Readers verify
every file against the manifest's sha256 and size before anything loads it.

This module knows nothing of serving, training or Kubernetes; serving calls :meth:`ModelStore.fetch` once per
load and gets a verified local directory back.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from recsys import filesystem
from recsys.errors import ArtifactCorrupt, ArtifactNotFound, StoreError, StoreUnavailable
from recsys.manifest import (
    MANIFEST_FILE,
    PREDICTION_MANIFEST_FILE,
    FileEntry,
    Manifest,
    PredictionManifest,
    check_name,
)

log = logging.getLogger(__name__)

LATEST = "latest"
PREDICTIONS_DIR = "predictions"
_LATEST_FILE = "LATEST"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class LocalArtifact:
    """A verified copy of one version on local disk."""

    path: Path
    manifest: Manifest


class _VersionedStore:
    """Named sets of immutable versions under ``uri``, each set with a ``LATEST`` pointer."""

    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")
        self._fs, self._root = filesystem.resolve(uri)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"

    def versions(self, name: str) -> list[str]:
        """Published versions of ``name``, oldest first (versions sort by their timestamp prefix)."""
        model_dir = self._path(check_name("model name", name))
        with self._io(model_dir):
            if not self._fs.exists(model_dir):
                return []
            entries = self._fs.ls(model_dir, detail=True)
        names = [e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e["type"] == "directory"]
        return sorted(n for n in names if not n.startswith((".", "_")))

    def resolve(self, name: str, version: str = LATEST) -> str:
        """The concrete version meant by ``version`` (``latest`` reads the ``LATEST`` file)."""
        check_name("model name", name)
        if version != LATEST:
            return check_name("version", version)
        latest_file = self._path(name, _LATEST_FILE)
        try:
            with self._io(latest_file), self._fs.open(latest_file, "rb") as f:
                return check_name("version", f.read().decode().strip())
        except ArtifactNotFound as err:
            raise ArtifactNotFound(f"{self.uri}/{name}: no published version (no {_LATEST_FILE} file)") from err

    # -- writing -------------------------------------------------------------------------------------------

    def check_writable(self) -> None:
        """Fail early (before hours of training) if the store cannot be written."""
        probe = self._path(f".write-probe-{uuid.uuid4().hex[:8]}")
        with self._io(self._root):
            self._fs.makedirs(self._root, exist_ok=True)
            with self._fs.open(probe, "wb") as f:
                f.write(b"ok")
            self._fs.rm(probe)

    def _write_latest(self, name: str, version: str) -> None:
        latest = self._path(name, _LATEST_FILE)
        temporary = self._path(name, f".{_LATEST_FILE}.tmp-{uuid.uuid4().hex[:8]}")
        with self._io(latest):
            with self._fs.open(temporary, "wb") as f:
                f.write(f"{version}\n".encode())
            self._fs.mv(temporary, latest, overwrite=True)

    # -- helpers -------------------------------------------------------------------------------------------

    def _path(self, *parts: str) -> str:
        return filesystem.join(self._root, *parts)

    def _remote_entry(self, path: str) -> FileEntry:
        digest, size = hashlib.sha256(), 0
        with self._io(path), self._fs.open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
        return FileEntry(sha256=digest.hexdigest(), size=size)

    @contextlib.contextmanager
    def _io(self, path: str) -> Iterator[None]:
        """Turn filesystem errors into the store's own, naming the path."""
        where = self._fs.unstrip_protocol(path)
        try:
            yield
        except FileNotFoundError as err:
            raise ArtifactNotFound(f"{where}: not found") from err
        except PermissionError as err:
            raise StoreError(f"{where}: permission denied: {err}") from err
        except OSError as err:
            if _unreachable(err):
                raise StoreUnavailable(f"{where}: store unreachable: {err}") from err
            raise StoreError(f"{where}: {err}") from err


class ModelStore(_VersionedStore):
    """The model store at ``uri`` (``file://``, a local path, or ``hdfs://namenode:port/path``)."""

    def manifest(self, name: str, version: str = LATEST) -> Manifest:
        version = self.resolve(name, version)
        path = self._path(name, version, MANIFEST_FILE)
        with self._io(path), self._fs.open(path, "rb") as f:
            raw = f.read()
        try:
            return Manifest.model_validate_json(raw)
        except ValueError as err:
            raise ArtifactCorrupt(f"{self.uri}/{name}/{version}/{MANIFEST_FILE}: not a valid manifest: {err}") from err

    def read_file(self, name: str, version: str, relative: str) -> bytes:
        """One small file of a version (the vocabulary, say), checked against the manifest."""
        version = self.resolve(name, version)
        entry = self.manifest(name, version).files.get(relative)
        where = f"{self.uri}/{name}/{version}/{relative}"
        if entry is None:
            raise ArtifactNotFound(f"{where}: not in the manifest")
        path = self._path(name, version, relative)
        with self._io(path), self._fs.open(path, "rb") as f:
            data = f.read()
        actual = FileEntry(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
        if actual != entry:
            raise ArtifactCorrupt(f"{where}: sha256 {actual.sha256} and {actual.size} bytes, manifest says "
                                  f"{entry.sha256} and {entry.size}")
        return data

    def fetch(self, name: str, version: str, cache_dir: Path) -> LocalArtifact:
        """A local, checksum-verified copy of a version, reusing a cached copy whose checksums still match."""
        version = self.resolve(name, version)
        manifest = self.manifest(name, version)
        target = cache_dir / name / version
        if target.exists():
            try:
                verify_local(target, manifest)
                log.info("model %s/%s: reusing verified cache %s", name, version, target)
                return LocalArtifact(target, manifest)
            except ArtifactCorrupt as err:
                log.warning("model %s/%s: cached copy is damaged (%s); fetching again", name, version, err)
                shutil.rmtree(target, ignore_errors=True)
        download = cache_dir / name / f".download-{version}-{uuid.uuid4().hex[:8]}"
        try:
            for relative, entry in manifest.files.items():
                local = download / relative
                local.parent.mkdir(parents=True, exist_ok=True)
                remote = self._path(name, version, relative)
                with self._io(remote):
                    self._fs.get_file(remote, str(local))
                _check(local, entry, f"{self.uri}/{name}/{version}/{relative}")
            (download / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2))
            try:
                download.rename(target)
            except OSError:
                # Another replica on this node finished the same download first: use theirs once verified.
                verify_local(target, manifest)
        finally:
            shutil.rmtree(download, ignore_errors=True)
        return LocalArtifact(target, manifest)

    def publish(self, source_dir: Path, manifest: Manifest) -> Manifest:
        """Publish the files under ``source_dir`` as ``manifest.name``/``manifest.version``; returns the manifest
        with ``files`` filled in. Either the version appears complete and verified, or nothing changes."""
        name, version = manifest.name, manifest.version
        files = {p.relative_to(source_dir).as_posix(): _entry(p)
                 for p in sorted(source_dir.rglob("*")) if p.is_file() and p.name != MANIFEST_FILE}
        manifest = manifest.model_copy(update={"files": files})
        final = self._path(name, version)
        staging = self._path(name, f".staging-{version}-{uuid.uuid4().hex[:8]}")
        with self._io(final):
            if self._fs.exists(final):
                raise StoreError(f"{self.uri}/{name}/{version}: version already exists")
        try:
            with self._io(staging):
                self._fs.makedirs(staging, exist_ok=True)
                for relative in files:
                    self._upload(source_dir / relative, filesystem.join(staging, relative))
                with self._fs.open(filesystem.join(staging, MANIFEST_FILE), "wb") as f:
                    f.write(manifest.model_dump_json(indent=2).encode())
            for relative, entry in files.items():
                actual = self._remote_entry(filesystem.join(staging, relative))
                if actual != entry:
                    raise ArtifactCorrupt(f"{self.uri}/{name}/{version}/{relative}: uploaded copy has "
                                          f"sha256 {actual.sha256} and {actual.size} bytes, expected "
                                          f"{entry.sha256} and {entry.size}")
            with self._io(final):
                self._fs.mv(staging, final)
        except BaseException:
            with contextlib.suppress(Exception):
                self._fs.rm(staging, recursive=True)
            raise
        self._write_latest(name, version)
        log.info("published %s/%s/%s (%d files)", self.uri, name, version, len(files))
        return manifest

    def _upload(self, local: Path, remote: str) -> None:
        self._fs.makedirs(remote.rsplit("/", 1)[0], exist_ok=True)
        self._fs.put_file(str(local), remote)


class PredictionStore(_VersionedStore):
    """Runs of precomputed predictions in the model store at ``store_uri``, under ``predictions/<set>/<run>``.

    A job writes a run's files into :meth:`staging` (a hidden directory removed if the job fails) and
    :meth:`publish` checksums them, writes the manifest, renames the directory into place and moves ``LATEST``.
    """

    def __init__(self, store_uri: str) -> None:
        super().__init__(filesystem.join(store_uri.rstrip("/"), PREDICTIONS_DIR))

    def manifest(self, name: str, run: str = LATEST) -> PredictionManifest:
        run = self.resolve(name, run)
        path = self._path(name, run, PREDICTION_MANIFEST_FILE)
        with self._io(path), self._fs.open(path, "rb") as f:
            raw = f.read()
        try:
            return PredictionManifest.model_validate_json(raw)
        except ValueError as err:
            raise ArtifactCorrupt(f"{self.uri}/{name}/{run}/{PREDICTION_MANIFEST_FILE}: not a valid manifest: "
                                  f"{err}") from err

    def files(self, name: str, run: str = LATEST) -> list[str]:
        """The URIs of a run's data files, checked against its manifest."""
        run = self.resolve(name, run)
        manifest = self.manifest(name, run)
        for relative, entry in manifest.files.items():
            actual = self._remote_entry(self._path(name, run, relative))
            if actual != entry:
                raise ArtifactCorrupt(f"{self.uri}/{name}/{run}/{relative}: sha256 {actual.sha256} and "
                                      f"{actual.size} bytes, manifest says {entry.sha256} and {entry.size}")
        return [self._fs.unstrip_protocol(self._path(name, run, relative)) for relative in sorted(manifest.files)]

    @contextlib.contextmanager
    def staging(self, name: str, run: str) -> Iterator[str]:
        """A hidden directory to write run ``run`` of ``name`` into, as a URI; removed if the block raises."""
        check_name("prediction set", name)
        check_name("run", run)
        final = self._path(name, run)
        staging = self._path(name, f".staging-{run}-{uuid.uuid4().hex[:8]}")
        with self._io(final):
            if self._fs.exists(final):
                raise StoreError(f"{self.uri}/{name}/{run}: run already exists")
            self._fs.makedirs(staging, exist_ok=True)
        try:
            yield self._fs.unstrip_protocol(staging)
        except BaseException:
            with contextlib.suppress(Exception):
                self._fs.rm(staging, recursive=True)
            raise

    def publish(self, staging_uri: str, manifest: PredictionManifest) -> PredictionManifest:
        """Publish the files written under ``staging_uri`` (from :meth:`staging`) as ``manifest.name``/
        ``manifest.run``; returns the manifest with ``files`` filled in."""
        name, run = manifest.name, manifest.run
        _, staging = filesystem.resolve(staging_uri)
        with self._io(staging):
            paths = sorted(p for p in self._fs.find(staging) if p.rsplit("/", 1)[-1] != PREDICTION_MANIFEST_FILE)
        files = {p[len(staging):].lstrip("/"): self._remote_entry(p) for p in paths}
        manifest = manifest.model_copy(update={"files": files})
        final = self._path(name, run)
        with self._io(staging):
            with self._fs.open(filesystem.join(staging, PREDICTION_MANIFEST_FILE), "wb") as f:
                f.write(manifest.model_dump_json(indent=2).encode())
        with self._io(final):
            self._fs.mv(staging, final, recursive=True)
        self._write_latest(name, run)
        log.info("published %s/%s/%s (%d files, %d rows)", self.uri, name, run, len(files), manifest.rows)
        return manifest


# hdfs-native reports network failures as plain OSErrors that carry the OS error only in their text
# ("Connection refused (os error 111)"), after its own retries (dfs.client.failover.max.attempts).
_UNREACHABLE_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ETIMEDOUT, errno.EHOSTUNREACH,
                       errno.ENETUNREACH, errno.EPIPE}
_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def _unreachable(err: OSError) -> bool:
    if isinstance(err, (ConnectionError, TimeoutError)) or err.errno in _UNREACHABLE_ERRNOS:
        return True
    return any(int(code) in _UNREACHABLE_ERRNOS for code in _OS_ERROR.findall(str(err)))


def verify_local(path: Path, manifest: Manifest) -> None:
    """Raise :class:`ArtifactCorrupt` unless every file of ``manifest`` under ``path`` matches it."""
    for relative, entry in manifest.files.items():
        _check(path / relative, entry, str(path / relative))


def _check(path: Path, expected: FileEntry, where: str) -> None:
    if not path.is_file():
        raise ArtifactCorrupt(f"{where}: missing")
    actual = _entry(path)
    if actual.size != expected.size:
        raise ArtifactCorrupt(f"{where}: size {actual.size} bytes, manifest says {expected.size}")
    if actual.sha256 != expected.sha256:
        raise ArtifactCorrupt(f"{where}: sha256 {actual.sha256}, manifest says {expected.sha256}")


def _entry(path: Path) -> FileEntry:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return FileEntry(sha256=digest.hexdigest(), size=os.path.getsize(path))

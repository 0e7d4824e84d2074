"""Store URIs to filesystems, through fsspec's registry.

``file://`` and plain paths are local; ``hdfs://`` and ``viewfs://`` come from hdfs-native, which registers them
with fsspec and reads ``HADOOP_CONF_DIR`` (name services, HA NameNodes), ``HADOOP_USER_NAME`` and the Kerberos
ticket cache the way Hadoop clients do. Nothing here dispatches on the scheme itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import fsspec
import pyarrow.fs
from fsspec.implementations.local import LocalFileSystem

from recsys.errors import StoreError


def resolve(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem behind ``uri`` and the path inside it (relative local paths become absolute).

    Each call gets its own instance, owned by the caller: fsspec's shared instance cache is cleared in every
    forked child, and dropping an hdfs-native client there runs its destructor, which waits for Rust runtime
    threads that did not survive the fork. That hung `ray.init` (which forks with Python's at-fork hooks) in a
    process that had used HDFS before.
    """
    try:
        fs, path = fsspec.core.url_to_fs(uri, skip_instance_cache=True)
    except (ValueError, ImportError, OSError) as err:
        raise StoreError(f"{uri}: cannot open this location: {err}") from err
    return fs, path.rstrip("/") or "/"


def to_pyarrow(fs: fsspec.AbstractFileSystem) -> pyarrow.fs.FileSystem:
    """The same filesystem as pyarrow sees it, for Ray Data readers and Ray Train's checkpoint storage."""
    if isinstance(fs, LocalFileSystem):
        return pyarrow.fs.LocalFileSystem()
    return pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs))


def join(*parts: str) -> str:
    """Join store path segments with '/' whatever the local OS uses."""
    return "/".join(p.strip("/") if i else p.rstrip("/") for i, p in enumerate(parts) if p)


@contextmanager
def new_directory(uri: str, overwrite: bool = False) -> Iterator[tuple[fsspec.AbstractFileSystem, str]]:
    """A data set written whole or not at all: yields the filesystem and a hidden staging sibling of ``uri`` to
    write into, renamed to ``uri`` when the block ends and removed if it raises (a reader never sees half a data
    set, a failed run leaves nothing behind)."""
    fs, path = resolve(uri)
    if fs.exists(path) and not overwrite:
        raise StoreError(f"{uri}: already exists; pass --overwrite to replace it")
    staging = join(path.rsplit("/", 1)[0] or "/", f".{path.rsplit('/', 1)[-1]}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        fs.makedirs(staging, exist_ok=True)
        yield fs, staging
        if fs.exists(path):
            fs.rm(path, recursive=True)
        fs.mv(staging, path, recursive=True)
    except BaseException:
        if fs.exists(staging):
            fs.rm(staging, recursive=True)
        raise

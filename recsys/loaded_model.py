"""A published model in memory, verified and warmed up: the one loader serving replicas and batch jobs share.

:func:`load` resolves a version, copies it from the store into a local cache (every file checked against the
manifest's sha256), opens the SavedModel with the model's own runtime class and runs it once for every batch shape
it will be called with (:func:`batch_shapes`), so the first real call pays no graph or kernel initialisation. An
unreachable store (NameNode down) is retried with exponential back-off up to a bound, one log line per miss; a
missing, corrupt or incompatible version fails at once. A load that is no longer wanted (a newer version was asked
for meanwhile) stops at its next stage instead of finishing in the background.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from recsys.artifact_store import ModelStore
from recsys.errors import RecsysError, StoreUnavailable
from recsys.manifest import Manifest

log = logging.getLogger(__name__)


class LoadCancelled(RecsysError):
    """The load was abandoned between two stages because a different version is wanted now."""


class LoadOptions(BaseModel):
    """Where fetched versions are cached and how long an unreachable store is retried."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cache_dir: Path = Field(Path(tempfile.gettempdir()) / "recsys-model-cache",
                            description="local copies of fetched versions, reused while their checksums match")
    load_attempts: int = Field(30, ge=1, description="tries to reach an unreachable store before giving up")
    load_backoff_s: float = Field(1.0, gt=0, description="first wait between tries; doubles each time")
    load_max_backoff_s: float = Field(30.0, gt=0)


class Runtime(Protocol):
    """A model's SavedModel opened with TensorFlow, answering batches padded to a few fixed heights."""

    def warm_up(self, shapes: Sequence[int]) -> None: ...


R = TypeVar("R", bound=Runtime)
OpenRuntime = Callable[[Path, Manifest], R]


def batch_shapes(max_batch_size: int) -> list[int]:
    """The batch heights a model is called with: 1, 2, 3, 4, 6, 8, 12, 16, 24, ... and ``max_batch_size``.

    A batch is padded up to the next of these (at most a third of its rows are padding), so about
    2·log2(max_batch_size) warm-up calls cover every batch that can be formed, as TF Serving's
    ``allowed_batch_sizes`` do; warming each of 1..1024 separately took ~15 s per replica start.
    """
    sizes = {max_batch_size}
    power = 1
    while power <= max_batch_size:
        sizes.update(size for size in (power, power * 3 // 2) if size <= max_batch_size)
        power *= 2
    return sorted(sizes)


def padded_height(rows: int, shapes: Sequence[int]) -> int:
    """The warmed height a batch of ``rows`` is padded to (the largest shape if it is larger than all)."""
    return shapes[min(bisect.bisect_left(shapes, rows), len(shapes) - 1)]


@dataclasses.dataclass(frozen=True)
class LoadedModel(Generic[R]):
    """One version in memory, ready to answer."""

    model_uri: str
    version: str
    manifest: Manifest
    runtime: R
    loaded_at: dt.datetime
    load_seconds: float


def load(model_uri: str, version: str, open_runtime: OpenRuntime[R], options: LoadOptions,
         shapes: Sequence[int], cancelled: Callable[[], bool] = lambda: False,
         logger: logging.Logger = log) -> LoadedModel[R]:
    """Fetch, verify, open and warm up ``version`` of the model at ``model_uri`` (``<store>/<name>``).

    Blocking: run it off the event loop. ``cancelled`` is asked between stages; when it answers True the load
    raises :class:`LoadCancelled` (the thread cannot be interrupted in the middle of a stage). Progress and retries
    go to ``logger`` (a Serve replica passes Serve's, which ends up in the replica's log).
    """
    started = time.perf_counter()
    store_uri, name = split_model_uri(model_uri)
    store = ModelStore(store_uri)
    backoff = options.load_backoff_s
    for attempt in range(1, options.load_attempts + 1):
        _stop_if(cancelled, model_uri, version)
        try:
            artifact = store.fetch(name, version, options.cache_dir)
            break
        except StoreUnavailable as err:
            if attempt == options.load_attempts:
                raise
            logger.warning("model store unreachable (attempt %d/%d), retrying in %.1f s: %s",
                        attempt, options.load_attempts, backoff, err)
            _sleep_unless(cancelled, backoff)
            backoff = min(backoff * 2, options.load_max_backoff_s)
    _stop_if(cancelled, model_uri, version)
    runtime = open_runtime(artifact.path, artifact.manifest)
    for size in shapes:
        _stop_if(cancelled, model_uri, artifact.manifest.version)
        runtime.warm_up([size])
    elapsed = time.perf_counter() - started
    logger.info("model %s/%s loaded and warmed up for batches of %s rows in %.2f s",
             model_uri, artifact.manifest.version, ",".join(map(str, shapes)), elapsed)
    return LoadedModel(model_uri=model_uri, version=artifact.manifest.version, manifest=artifact.manifest,
                       runtime=runtime, loaded_at=dt.datetime.now(dt.UTC), load_seconds=elapsed)


def split_model_uri(model_uri: str) -> tuple[str, str]:
    """``<store>/<name>`` as (store URI, model name); a bare name lives in the current directory."""
    model_uri = model_uri.rstrip("/")
    store, _, name = model_uri.rpartition("/")
    return store or ".", name


def _stop_if(cancelled: Callable[[], bool], model_uri: str, version: str) -> None:
    if cancelled():
        raise LoadCancelled(f"load of {model_uri}/{version} abandoned: another version is wanted now")


def _sleep_unless(cancelled: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not cancelled() and time.monotonic() < deadline:
        time.sleep(min(0.1, max(deadline - time.monotonic(), 0)))

"""The model a replica serves, and how it gets there: fetch, verify, load, warm up, swap.

:func:`load_model` fetches a version from the store into the local cache (every file checked against the
manifest), loads the SavedModel and runs it once for every batch shape the model is called with
(:func:`batch_shapes`), so the first real request pays no graph or kernel initialisation. An unreachable store
(NameNode down) is retried with exponential back-off up to a bound, logging each miss; a missing, corrupt or
incompatible version fails at once.

:class:`ModelSlot` holds the loaded model. The first load blocks (the replica is not ready before it); later
versions load in the background while the current one keeps serving, and replace it in one assignment, so every
batch runs on exactly one version. A version that fails to load is refused: the old one stays, the error is kept
for ``GET /destinations/model`` and logged.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from recsys.artifact_store import ModelStore
from recsys.errors import RecsysError, StoreUnavailable
from recsys.manifest import SAVED_MODEL_DIR, Manifest
from recsys.predictor import Predictor, pad_trips
from serve_apps.api import LoadError
from serve_apps.settings import ModelSettings, ReplicaOptions

log = logging.getLogger("ray.serve")

MAX_K = 100


def batch_shapes(max_batch_size: int) -> list[int]:
    """The batch sizes the model is called with: 1, 2, 3, 4, 6, 8, 12, 16, 24, ... and ``max_batch_size``.

    A batch is padded up to the next of these (at most a third of its rows are padding), so that about
    2·log2(max_batch_size) warm-up calls cover every batch the batcher can form, as TF Serving's
    ``allowed_batch_sizes`` do; warming each of 1..1024 separately would take ~15 s per replica start.
    """
    sizes = {max_batch_size}
    power = 1
    while power <= max_batch_size:
        sizes.update(size for size in (power, power * 3 // 2) if size <= max_batch_size)
        power *= 2
    return sorted(sizes)


class Query(Protocol):
    cities: list[int]
    booker_country: str
    device_class: str
    affiliate_id: int | None
    k: int


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """One version in memory, ready to answer."""

    model_uri: str
    version: str
    manifest: Manifest
    predictor: Predictor
    loaded_at: dt.datetime
    load_seconds: float

    @property
    def history_length(self) -> int:
        return int(self.manifest.model["history_length"])

    def recommend(self, queries: Sequence[Query], shapes: Sequence[int]) -> list[tuple[list[int], list[float]]]:
        """Top-k for each query in one model call (k may differ per query), the batch padded up to the next of
        ``shapes`` (see :func:`batch_shapes`)."""
        k = max(q.k for q in queries)
        rows = shapes[min(bisect.bisect_left(shapes, len(queries)), len(shapes) - 1)]
        padding = max(rows - len(queries), 0)
        # A fixed width and a few padded heights: the shapes warm-up ran are the only ones the model sees.
        cities = pad_trips([q.cities for q in queries] + [[]] * padding, width=self.history_length)
        ids, scores = self.predictor.predict(
            cities, [q.booker_country for q in queries] + [""] * padding,
            [q.device_class for q in queries] + [""] * padding,
            np.array([q.affiliate_id or 0 for q in queries] + [0] * padding, dtype=np.int64), k)
        ids, scores = ids[: len(queries)].tolist(), scores[: len(queries)].tolist()  # one conversion, not one per row
        return [(ids[i][: q.k], scores[i][: q.k]) for i, q in enumerate(queries)]

    def warm_up(self, shapes: Sequence[int]) -> None:
        cities = np.ones((max(shapes), self.history_length), dtype=np.int64)
        for size in shapes:
            self.predictor.predict(cities[:size], [""] * size, [""] * size, np.zeros(size, np.int64), MAX_K)


def load_model(settings: ModelSettings, options: ReplicaOptions) -> LoadedModel:
    """Fetch, verify, load and warm up ``settings.model_version`` (blocking; run it off the event loop)."""
    started = time.perf_counter()
    store = ModelStore(settings.store_uri)
    backoff = options.load_backoff_s
    for attempt in range(1, options.load_attempts + 1):
        try:
            artifact = store.fetch(settings.model_name, settings.model_version, options.cache_dir)
            break
        except StoreUnavailable as err:
            if attempt == options.load_attempts:
                raise
            log.warning("model store unreachable (attempt %d/%d), retrying in %.1f s: %s",
                        attempt, options.load_attempts, backoff, err)
            time.sleep(backoff)
            backoff = min(backoff * 2, options.load_max_backoff_s)
    predictor = Predictor(artifact.path / SAVED_MODEL_DIR)
    model = LoadedModel(model_uri=settings.model_uri, version=artifact.manifest.version, manifest=artifact.manifest,
                        predictor=predictor, loaded_at=dt.datetime.now(dt.UTC), load_seconds=0.0)
    shapes = batch_shapes(settings.max_batch_size)
    model.warm_up(shapes)
    elapsed = time.perf_counter() - started
    log.info("model %s/%s loaded and warmed up for batches of %s rows in %.2f s",
             settings.model_uri, model.version, ",".join(map(str, shapes)), elapsed)
    return dataclasses.replace(model, loaded_at=dt.datetime.now(dt.UTC), load_seconds=elapsed)


class ModelSlot:
    """The replica's current model, the version it is loading, and the last version that failed to load."""

    def __init__(self, options: ReplicaOptions) -> None:
        self._options = options
        self.current: LoadedModel | None = None
        self.loading_version: str | None = None
        self.last_error: LoadError | None = None
        self._settings: ModelSettings | None = None
        self._task: asyncio.Task | None = None

    async def apply(self, settings: ModelSettings) -> None:
        """Adopt new settings. Loads the model first if there is none (blocking: the replica is not ready until
        it is); otherwise swaps in a new version in the background, and warms the current model for the batch
        shapes a new ``max_batch_size`` brings before they can be formed."""
        previous, self._settings = self._settings, settings
        if self.current is None:
            self.current = await asyncio.to_thread(load_model, settings, self._options)
            return
        if previous:
            new_shapes = sorted(set(batch_shapes(settings.max_batch_size)) -
                                set(batch_shapes(previous.max_batch_size)))
            if new_shapes:
                await asyncio.to_thread(self.current.warm_up, new_shapes)
        if previous is None or (settings.model_uri, settings.model_version) != \
                (previous.model_uri, previous.model_version):
            if self._task is not None:
                self._task.cancel()
            self.loading_version = settings.model_version
            self._task = asyncio.create_task(self._swap(settings))

    async def _swap(self, settings: ModelSettings) -> None:
        try:
            model = await asyncio.to_thread(load_model, settings, self._options)
        except (RecsysError, OSError, ValueError) as err:
            self.last_error = LoadError(version=settings.model_version, error=str(err), at=dt.datetime.now(dt.UTC))
            log.error("refused model %s version %s, still serving %s: %s", settings.model_uri,
                      settings.model_version, self.current.version if self.current else None, err)
        else:
            self.current = model
            self.last_error = None
            log.info("now serving %s version %s", settings.model_uri, model.version)
        finally:
            self.loading_version = None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

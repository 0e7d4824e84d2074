"""The model a replica serves, and how it changes: one loop that keeps it at the version the settings name.

The first load blocks (Serve does not route to a replica before ``reconfigure`` returns). After that one background
task reconciles: whenever the settings change, and every ``latest_poll_s`` seconds, it resolves the version the
settings name (``latest`` reads the store's ``LATEST``), and if that is not the version being served it loads it
while the current one keeps serving, then swaps it in with one assignment, so every batch runs on exactly one
version. Hence every replica of a route converges on the same version within ``latest_poll_s`` plus a load, also
after a publish when the config says ``latest``.

Only one load runs at a time, on a thread of its own at the lowest CPU priority, so that serving keeps the cores
while a new version loads; checks are spread (±20 % of ``latest_poll_s``) so that a route's replicas do not all
load at the same moment. A load that is no longer wanted (the settings named another version meanwhile) stops at
its next stage; then the newer one starts. A loaded version is vetted before it takes over (the replica compares
its answers with the serving version's: :mod:`serve_apps.core.response_shift`). A version that fails to load or
to pass is refused: the old one keeps serving, the error is logged, counted and kept for ``GET /<model>/model``;
it is retried on the next check if the store was merely unreachable, and not again (until the settings name
another version) if it is missing, corrupt, incompatible or answers too differently.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic

from recsys.artifact_store import ModelStore
from recsys.errors import StoreUnavailable
from recsys.loaded_model import LoadCancelled, LoadedModel, LoadOptions, OpenRuntime, R, batch_shapes, load
from serve_apps.core.metrics import ReplicaMetrics
from serve_apps.core.settings import ModelSettings
from serve_apps.core.status import LoadError

log = logging.getLogger("ray.serve")


class ModelSlot(Generic[R]):
    """The replica's current model, the version it is loading, and the last version that failed to load."""

    def __init__(self, options: LoadOptions, open_runtime: OpenRuntime[R], metrics: ReplicaMetrics | None = None,
                 vet: Callable[[LoadedModel[R], LoadedModel[R]], None] | None = None) -> None:
        """``vet(serving, loaded)`` runs on the loader's thread before a loaded version takes over; what it raises
        refuses the version."""
        self._options = options
        self._open_runtime = open_runtime
        self._metrics = metrics or ReplicaMetrics(enabled=False)
        self._vet = vet
        self.current: LoadedModel[R] | None = None
        self.loading_version: str | None = None
        self.target_version: str | None = None
        self.last_error: LoadError | None = None
        self.settings: ModelSettings | None = None
        self.shapes: list[int] = []
        self._generation = 0  # bumped when the settings name another model or version
        self._refused: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-loader", initializer=_lowest_priority)

    async def apply(self, settings: ModelSettings) -> None:
        """Adopt new settings. Loads the model first if there is none (blocking: the replica is not ready until
        it is); otherwise warms the current model for any batch shape a new ``max_batch_size`` brings before it
        can be formed, and wakes the loop if another version is wanted."""
        previous, shapes = self.settings, batch_shapes(settings.max_batch_size)
        if self.current is None:
            version = settings.model_version
            try:
                version = await asyncio.to_thread(_resolve, settings)
                self.current = await asyncio.to_thread(load, settings.model_uri, version, self._open_runtime,
                                                       self._options, shapes, logger=log)
            except Exception as err:
                self._metrics.load_failed(version, type(err).__name__)
                raise
            self.settings, self.shapes, self.target_version = settings, shapes, version
            self._metrics.serving(version, self.current.load_seconds)
            self._metrics.behind_target(False)
            self._task = asyncio.create_task(self._reconcile_forever())
            return
        new_shapes = sorted(set(shapes) - set(self.shapes))
        if new_shapes:
            await asyncio.to_thread(self.current.runtime.warm_up, new_shapes)
        self.settings, self.shapes = settings, shapes
        if previous is None or (settings.model_uri, settings.model_version) != \
                (previous.model_uri, previous.model_version):
            self._generation += 1
            self._refused.clear()
            self._wake.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._loader.shutdown(wait=False, cancel_futures=True)

    async def check(self) -> None:
        """One reconciliation: resolve the wanted version and load it if it is not the one served."""
        settings, generation, shapes = self.settings, self._generation, list(self.shapes)
        try:
            target = await asyncio.to_thread(_resolve, settings)
        except Exception as err:  # the loop must survive anything; the replica keeps serving what it has
            self._record(settings.model_version, err)
            return
        self.target_version = target
        current = self.current
        serving_target = bool(current) and (current.model_uri, current.version) == (settings.model_uri, target)
        self._metrics.behind_target(not serving_target)
        if serving_target or target in self._refused:
            return
        self.loading_version = target
        loop = asyncio.get_running_loop()
        try:
            model = await loop.run_in_executor(self._loader, load, settings.model_uri, target, self._open_runtime,
                                               self._options, shapes, lambda: self._generation != generation, log)
            missing = sorted(set(self.shapes) - set(shapes))  # max_batch_size grew while it loaded
            if missing:
                await loop.run_in_executor(self._loader, model.runtime.warm_up, missing)
            if self._vet is not None and self.current is not None:
                await loop.run_in_executor(self._loader, self._vet, self.current, model)
        except LoadCancelled as err:
            log.info("%s", err)
        except Exception as err:
            if not isinstance(err, StoreUnavailable):
                self._refused.add(target)
            self._record(target, err)
        else:
            if generation == self._generation:
                self.current, self.last_error = model, None
                self._metrics.serving(model.version, model.load_seconds)
                self._metrics.behind_target(False)
                log.info("now serving %s version %s", settings.model_uri, model.version)
        finally:
            self.loading_version = None

    async def _reconcile_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.latest_poll_s * random.uniform(0.8, 1.2))
            self._wake.clear()
            await self.check()

    def _record(self, version: str, err: Exception) -> None:
        self.last_error = LoadError(version=version, error=f"{type(err).__name__}: {err}", at=dt.datetime.now(dt.UTC))
        self._metrics.load_failed(version, type(err).__name__)
        log.error("refused model %s version %s, still serving %s: %s", self.settings.model_uri, version,
                  self.current.version if self.current else None, self.last_error.error)


def _lowest_priority() -> None:
    # Linux schedules threads one by one: this lowers only the loader thread, not the replica.
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


def _resolve(settings: ModelSettings) -> str:
    return ModelStore(settings.store_uri).resolve(settings.model_name, settings.model_version)

"""What every model replica does, whatever the model; a model plugs in its request and answer types and one
function from a batch of requests to answers.

A model deployment is a class that extends :class:`ModelReplica`, is decorated with ``@serve.deployment``,
``@serve.ingress(API.app)`` and ``@API.routes`` (``API`` a :class:`serve_apps.core.model_api.ModelApi`), names its
runtime's ``open`` as ``open_runtime``, names the answer column of items as ``answer_items`` (``scores`` beside it)
and implements :meth:`ModelReplica.predict`, from request columns to answer columns (a request arrives as columns
whatever its body was: :mod:`serve_apps.core.arrow_body`); :meth:`ModelReplica.unknown` and
:meth:`ModelReplica.popular` tell the metrics what the model knows. The base:

* loads the model in ``reconfigure`` from the deployment's ``user_config`` (:class:`ModelSettings`) through a
  :class:`~serve_apps.core.slot.ModelSlot`: fetched, verified, loaded and warmed up before Serve routes any
  traffic, then kept at the version the settings name (hot swap, ``latest`` followed);
* batches: single and batch requests meet in one ``@serve.batch`` queue sized in rows; its batches go to an
  :class:`~serve_apps.core.lane.InferenceLane`, one model call at a time on a dedicated thread, merging what
  queued meanwhile (record batches concatenated, answers sliced back, no per-row objects); each caller's rows are
  their own lane entry, so a failure reaches only the caller whose rows caused it;
* maps failures to statuses (:mod:`serve_apps.core.errors`): data the model cannot take is 422 for its caller,
  a failing model 500, no model yet 503;
* caps TensorFlow's GPU memory to the replica's fraction of the card (:mod:`recsys.gpu`);
* reports its model (``GET /<route>/model``, :class:`~serve_apps.core.status.ModelStatus`), and fails
  ``check_health`` while it has none;
* reports its demand to the autoscaler (:mod:`serve_apps.core.demand`);
* exports metrics (:mod:`serve_apps.core.metrics`): its version, loads, model calls, requests, out-of-vocabulary
  inputs and the distribution of its answers; and before a hot swap compares the new version's answers to recent
  requests with the serving one's (:mod:`serve_apps.core.response_shift`), refusing it beyond the settings' limits.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Sequence
from typing import Generic

import numpy as np
import pyarrow as pa
from fastapi import FastAPI
from ray import serve

from recsys import gpu
from recsys.loaded_model import LoadedModel, OpenRuntime, R
from serve_apps.core.arrow_body import VERSION_METADATA, RequestColumns, joined, split
from serve_apps.core.errors import InvalidRows, ModelCallFailed, ModelNotReady
from serve_apps.core.deadline import QueueBudget, deadline
from serve_apps.core.demand import autoscaling_stats
from serve_apps.core.lane import InferenceLane
from serve_apps.core.metrics import ReplicaMetrics
from serve_apps.core.response_shift import MIN_ROWS, RecentRequests, ResponseShift, ShiftTooLarge, beyond_limits, \
    first_values, measure, sums
from serve_apps.core.settings import ModelSettings, ReplicaOptions
from serve_apps.core.slot import ModelSlot
from serve_apps.core.status import ModelStatus

log = logging.getLogger("ray.serve")

# What a caller's bad data raises while it becomes model inputs or meets the model: their fault, 422.
DATA_ERRORS = (ValueError, TypeError, OverflowError)
MANIFEST_SUMMARY = {"created_at", "git_commit", "metrics", "vocabulary_sizes", "model", "frameworks"}


def _rows(chunks: list[pa.RecordBatch]) -> int:
    return sum(len(chunk) for chunk in chunks)


class ModelReplica(Generic[R]):
    """Base of a model deployment; see the module docstring."""

    api: FastAPI  # the app's HTTP face, set by ModelApi.routes
    columns: RequestColumns  # its request type as columns, set by ModelApi.routes
    open_runtime: OpenRuntime[R]  # how a verified copy of a version is opened: each model's runtime class
    answer_items: str  # the answer column that lists the items, best first; "scores" holds their scores

    def __init__(self, options: ReplicaOptions) -> None:
        self._options = options
        gpu.cap_this_actor(options.gpu_memory_mib, options.gpu_context_mib)
        self.api.state.queue_budget = QueueBudget(options.queue_budget_ms / 1000)
        self.api.state.metrics = self._metrics = ReplicaMetrics(options.metrics)
        self._recent = RecentRequests()
        self._shift: ResponseShift | None = None
        self._slot: ModelSlot[R] = ModelSlot(options, type(self).open_runtime, self._metrics, vet=self._vet)
        # The lane's row limit follows the user_config (reconfigure), before any traffic.
        self._lane: InferenceLane[pa.RecordBatch, pa.RecordBatch] = InferenceLane(self._predict_callers, max_rows=1)

    def predict(self, model: LoadedModel[R], rows: pa.RecordBatch, shapes: Sequence[int]) -> dict[str, pa.Array]:
        """One model call: ``rows`` (in :attr:`columns`' schema) to their answers' columns, one row per row, in
        order (the base adds ``model_version``). Runs on the lane's thread. The batch is padded to the next of
        ``shapes``, the heights the model was warmed up for."""
        raise NotImplementedError

    def unknown(self, model: LoadedModel[R], rows: pa.RecordBatch) -> dict[str, np.ndarray]:
        """Per input feature the model has a vocabulary for, a boolean per row: True where the row's value is
        out of it. For the metrics; none by default."""
        return {}

    def popular(self, model: LoadedModel[R]) -> np.ndarray | None:
        """The ids of the model's most popular items, if it knows them (the metrics count answers led by one)."""
        return None

    async def reconfigure(self, user_config: dict) -> None:
        settings = ModelSettings.model_validate(user_config)
        self._metrics.start_reporting(lambda: self._lane.waiting_rows)
        await self._slot.apply(settings)
        self._lane.max_rows = settings.max_batch_size
        self._batch.set_max_batch_size(settings.max_batch_size)
        self._batch.set_batch_wait_timeout_s(settings.batch_wait_timeout_s)

    def check_health(self) -> None:
        if self._slot.current is None:
            raise ModelNotReady("no model loaded")

    def record_autoscaling_stats(self) -> dict[str, float]:
        return autoscaling_stats(self.api.state.demand)

    async def infer(self, rows: pa.RecordBatch) -> pa.RecordBatch:
        """The answers to ``rows`` (request columns) in order, with a ``model_version`` column and the version(s)
        in the schema's metadata; more than ``max_batch_size`` rows are cut into several model calls."""
        settings, limit = self._slot.settings, deadline()
        size = settings.max_batch_size if settings else rows.num_rows
        # Only the first batch waits against the budget: once work on a request has started, it is finished.
        parts = await asyncio.gather(*(self._batch(rows.slice(i, size), limit if i == 0 else None)
                                       for i in range(0, rows.num_rows, size)))
        for part in parts:
            if isinstance(part, BaseException):
                raise part
        if len(parts) == 1:
            return parts[0]
        # A hot swap may land between the calls of one request: each row names its version, the metadata all.
        versions = dict.fromkeys(v for part in parts for v in part.schema.metadata[VERSION_METADATA].split(b","))
        answers = pa.concat_batches([part.replace_schema_metadata(None) for part in parts])
        return answers.replace_schema_metadata({VERSION_METADATA: b",".join(versions)})

    def status(self) -> ModelStatus:
        current, settings = self._slot.current, self._slot.settings
        manifest = current.manifest if current else None
        return ModelStatus(
            replica=serve.get_replica_context().replica_id.unique_id,
            model_uri=current.model_uri if current else None,
            model_version_setting=settings.model_version if settings else None,
            target_version=self._slot.target_version,
            version=current.version if current else None,
            loaded_at=current.loaded_at if current else None,
            load_seconds=round(current.load_seconds, 3) if current else None,
            manifest=manifest.model_dump(mode="json", include=MANIFEST_SUMMARY) if manifest else None,
            loading_version=self._slot.loading_version,
            last_load_error=self._slot.last_error,
            max_batch_size=settings.max_batch_size if settings else 0,
            batch_wait_timeout_s=settings.batch_wait_timeout_s if settings else 0.0,
            queue_budget_ms=self._options.queue_budget_ms,
            response_shift=self._shift,
        )

    # Sizes are replaced by the user_config's in reconfigure, before any traffic. Batches go to the lane as soon
    # as they form (Ray's default of one batch at a time would leave the lane nothing to merge).
    @serve.batch(max_batch_size=1024, batch_wait_timeout_s=0.001, batch_size_fn=_rows, max_concurrent_batches=128)
    async def _batch(self, chunks: list[pa.RecordBatch], deadlines: list[float | None]) \
            -> list[pa.RecordBatch | BaseException]:
        # One lane entry per caller: merged into one model call, but a failure stays with the caller it belongs to.
        return await asyncio.gather(*(self._lane.run(chunk, limit) for chunk, limit in zip(chunks, deadlines)),
                                    return_exceptions=True)

    def _predict_callers(self, callers: list[pa.RecordBatch]) -> list[pa.RecordBatch]:
        """One model call for the callers' rows, on the lane's thread, on one version even if a swap lands
        meanwhile; each caller gets its slice of the answers."""
        model = self._slot.current
        if model is None:
            raise ModelNotReady("no model loaded")
        rows = joined(callers)
        started = time.perf_counter()
        try:
            answers = self.predict(model, rows, self._slot.shapes)
        except DATA_ERRORS as err:
            raise InvalidRows(f"rows the model cannot take: {type(err).__name__}: {err}") from err
        except Exception as err:
            log.exception("model %s version %s failed on %d rows", model.model_uri, model.version, rows.num_rows)
            raise ModelCallFailed(f"the model failed: {type(err).__name__}") from err
        self._observe(model, rows, answers, time.perf_counter() - started)
        version = pa.DictionaryArray.from_arrays(np.zeros(rows.num_rows, dtype=np.int32), [model.version])
        batch = pa.RecordBatch.from_pydict({**answers, "model_version": version},
                                           metadata={VERSION_METADATA: model.version.encode()})
        return split(batch, callers)

    def _observe(self, model: LoadedModel[R], rows: pa.RecordBatch, answers: dict[str, pa.Array],
                 seconds: float) -> None:
        """A model call's metrics (its inspected rows' inputs and answers: :mod:`serve_apps.core.metrics`), and its
        rows kept as recent requests."""
        self._recent.add(rows)
        if not self._metrics.enabled:
            return
        self._metrics.model_call(rows.num_rows, seconds)
        picked = self._metrics.sample(rows.num_rows)
        if not len(picked):
            return
        picked = pa.array(picked)
        scores, items = answers["scores"].take(picked), answers[self.answer_items].take(picked)
        (top1, answered), popular = first_values(scores), self.popular(model)
        leaders = None if popular is None else np.isin(first_values(items)[0][answered], popular)
        self._metrics.inspected(model.version, self.unknown(model, rows.take(picked)), top1[answered],
                                sums(scores)[answered], leaders)

    def _vet(self, serving: LoadedModel[R], loaded: LoadedModel[R]) -> None:
        """Before ``loaded`` takes over: both versions answer the recent requests; the shift between their answers
        is reported, and refuses ``loaded`` beyond the settings' limits (on the loader's thread)."""
        rows, settings = self._recent.rows(), self._slot.settings
        if rows is None or rows.num_rows < MIN_ROWS:
            log.info("response shift of version %s not measured: %d recent rows, %d needed", loaded.version,
                     0 if rows is None else rows.num_rows, MIN_ROWS)
            return
        psi, overlap = measure(self._answer_all(serving, rows), self._answer_all(loaded, rows), self.answer_items)
        too_far = beyond_limits(psi, overlap, settings.max_response_shift_psi, settings.min_response_overlap)
        self._shift = ResponseShift(version=loaded.version, baseline=serving.version, rows=rows.num_rows,
                                    top1_psi=round(psi, 4), topk_overlap=round(overlap, 4),
                                    measured_at=dt.datetime.now(dt.UTC), refused=bool(too_far))
        self._metrics.shift(loaded.version, serving.version, psi, overlap)
        log.info("response shift of version %s against %s on %d recent rows: top-1 score PSI %.3f, top-k overlap "
                 "%.3f", loaded.version, serving.version, rows.num_rows, psi, overlap)
        if too_far:
            raise ShiftTooLarge(f"answers the last {rows.num_rows} requests too differently from version "
                                f"{serving.version}: {'; '.join(too_far)}")

    def _answer_all(self, model: LoadedModel[R], rows: pa.RecordBatch) -> dict[str, pa.Array]:
        """``predict`` over any number of rows, in calls of the warmed heights."""
        size = max(self._slot.shapes)
        parts = [self.predict(model, rows.slice(start, size), self._slot.shapes)
                 for start in range(0, rows.num_rows, size)]
        return {name: pa.concat_arrays([part[name] for part in parts]) for name in parts[0]}

    async def __del__(self) -> None:
        self._metrics.stop_reporting()
        await self._slot.close()
        self._lane.close()

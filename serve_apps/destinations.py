"""Next-destination recommendations as a Ray Serve application with a FastAPI ingress.

    serve run configs/serve/local.yaml
    curl -s localhost:8000/destinations/recommend -H 'content-type: application/json' \\
         -d '{"cities": [8183, 15626], "booker_country": "Elbonia", "device_class": "mobile"}'

One deployment, :class:`Destinations`, is both the HTTP ingress and the model holder, so a request costs one hop
(HAProxy or the Serve proxy, then the replica). A replica loads its model in ``reconfigure`` from the deployment's
``user_config`` (:class:`~serve_apps.settings.ModelSettings`): fetched from the model store, verified, loaded and
warmed up before Serve routes it any traffic. Requests from single calls and batch calls meet in one dynamic
batcher (``@serve.batch``, sized in rows); its batches run on an :class:`~serve_apps.inference_lane.InferenceLane`,
one model call at a time on a dedicated thread, merging the batches that queued meanwhile, so the event loop keeps
parsing requests while TensorFlow computes and batches grow with the load.
"""

# No `from __future__ import annotations` here: FastAPI reads the route annotations at runtime, and through
# @serve.ingress it cannot resolve them from strings (the body would become a query parameter).
import asyncio

import ray
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve import Application

from serve_apps import gpu
from serve_apps.api import BatchRequest, BatchResponse, ModelStatus, RecommendRequest, RecommendResponse
from serve_apps.errors import ModelNotReady, ServingError, status_code
from serve_apps.inference_lane import InferenceLane
from serve_apps.model_slot import ModelSlot, batch_shapes
from serve_apps.settings import ModelSettings, ReplicaOptions

api = FastAPI(
    title="Destination recommendations",
    version="1",
    description="Next destinations for a trip in progress, from the model published to the model store.",
)


@api.exception_handler(ServingError)
async def _serving_error(_: Request, error: ServingError) -> JSONResponse:
    code = status_code(error)
    headers = {"Retry-After": "1"} if code == 503 else None
    return JSONResponse({"detail": str(error)}, status_code=code, headers=headers)


def _rows(chunks: list[list[RecommendRequest]]) -> int:
    return sum(len(chunk) for chunk in chunks)


def _cap_gpu_memory(options: ReplicaOptions) -> None:
    # Defined above the deployment: @serve.ingress pickles the class while this module is still loading.
    fraction = float(ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0))
    gpu_ids = ray.get_gpu_ids()
    if fraction <= 0 or not gpu_ids:
        return
    card = options.gpu_memory_mib or gpu.card_memory_mib(str(gpu_ids[0]))
    gpu.cap_tensorflow_memory(fraction, card, options.gpu_context_mib)


@serve.deployment(name="Destinations", max_ongoing_requests=128)
@serve.ingress(api)
class Destinations:
    def __init__(self, options: ReplicaOptions) -> None:
        self._options = options
        _cap_gpu_memory(options)
        self._slot = ModelSlot(options)
        self._settings: ModelSettings | None = None
        self._shapes: list[int] = []  # shapes and the lane's row limit follow the user_config (reconfigure)
        self._lane: InferenceLane[RecommendRequest, RecommendResponse] = InferenceLane(self._predict, max_rows=1)

    async def reconfigure(self, user_config: dict) -> None:
        settings = ModelSettings.model_validate(user_config)
        await self._slot.apply(settings)
        self._shapes = batch_shapes(settings.max_batch_size)
        self._lane.max_rows = settings.max_batch_size
        self._infer.set_max_batch_size(settings.max_batch_size)
        self._infer.set_batch_wait_timeout_s(settings.batch_wait_timeout_s)
        self._settings = settings

    def check_health(self) -> None:
        if self._slot.current is None:
            raise ModelNotReady("no model loaded")

    @api.post("/recommend", response_model=RecommendResponse)
    async def recommend(self, request: RecommendRequest) -> RecommendResponse:
        """Next destinations for one trip."""
        [answer] = await self._infer([request])
        return answer

    @api.post("/recommend/batch", response_model=BatchResponse)
    async def recommend_batch(self, batch: BatchRequest) -> BatchResponse:
        """Next destinations for many trips in one call, answered in the same order."""
        size = self._settings.max_batch_size if self._settings else len(batch.requests)
        chunks = [batch.requests[i:i + size] for i in range(0, len(batch.requests), size)]
        parts = await asyncio.gather(*(self._infer(chunk) for chunk in chunks))
        return BatchResponse(results=[answer for part in parts for answer in part])

    @api.get("/model", response_model=ModelStatus)
    async def model(self) -> ModelStatus:
        """The version this replica serves, its manifest summary, load time, and the last load error."""
        current, settings = self._slot.current, self._settings
        manifest = current.manifest if current else None
        return ModelStatus(
            model_uri=current.model_uri if current else None,
            version=current.version if current else None,
            loaded_at=current.loaded_at if current else None,
            load_seconds=round(current.load_seconds, 3) if current else None,
            manifest=manifest.model_dump(mode="json", include={"created_at", "git_commit", "metrics",
                                                               "vocabulary_sizes", "model", "frameworks"})
            if manifest else None,
            loading_version=self._slot.loading_version,
            last_load_error=self._slot.last_error,
            max_batch_size=settings.max_batch_size if settings else 0,
            batch_wait_timeout_s=settings.batch_wait_timeout_s if settings else 0.0,
        )

    # Sizes are replaced by the user_config's in reconfigure, before any traffic. Batches go to the lane as soon
    # as they form (Ray's default of one batch at a time would leave the lane nothing to merge).
    @serve.batch(max_batch_size=1024, batch_wait_timeout_s=0.001, batch_size_fn=_rows, max_concurrent_batches=128)
    async def _infer(self, chunks: list[list[RecommendRequest]]) -> list[list[RecommendResponse]]:
        answers = await self._lane.run([query for chunk in chunks for query in chunk])
        results, start = [], 0
        for chunk in chunks:
            results.append(answers[start:start + len(chunk)])
            start += len(chunk)
        return results

    def _predict(self, queries: list[RecommendRequest]) -> list[RecommendResponse]:
        """One model call, on the lane's thread."""
        model = self._slot.current  # one version for the whole call, even if a swap lands meanwhile
        if model is None:
            raise ModelNotReady("no model loaded")
        return [RecommendResponse(cities=cities, scores=scores, model_version=model.version)
                for cities, scores in model.recommend(queries, self._shapes)]

    async def __del__(self) -> None:
        await self._slot.close()
        self._lane.close()


def app(args: dict) -> Application:
    """Application builder for Serve config files (``import_path: serve_apps.destinations:app``): ``args`` are
    the :class:`ReplicaOptions`; the model comes from the deployment's ``user_config``."""
    return Destinations.bind(ReplicaOptions.model_validate(args or {}))

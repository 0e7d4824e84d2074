"""Next-destination recommendations as a Ray Serve application on the serving core.

    serve run configs/serve/local.yaml
    curl -s localhost:8000/destinations/recommend -H 'content-type: application/json' \\
         -d '{"cities": [8183, 15626], "booker_country": "Elbonia", "device_class": "mobile"}'

What is this model's own: the request and answer bodies, and how a batch of requests (as columns) becomes one call
of the destination runtime (:class:`recsys.destinations.runtime.DestinationRuntime`) and its output answer
columns. Everything else — loading, warm-up, hot swap, batching, isolation of bad rows, statuses, health — is
:class:`serve_apps.core.replica.ModelReplica`.
One deployment is both the HTTP ingress and the model holder, so a request costs one hop (HAProxy or the Serve
proxy, then the replica).
"""

# No `from __future__ import annotations` here: FastAPI reads the route annotations at runtime, and through
# @serve.ingress it cannot resolve them from strings (the body would become a query parameter).
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve import Application

from recsys.columns import list_column, string_values, trip_matrix
from recsys.destinations.runtime import MAX_K, DestinationRuntime
from recsys.loaded_model import LoadedModel
from serve_apps.core.fields import Id, Integer, Text
from serve_apps.core.model_api import ModelApi
from serve_apps.core.replica import ModelReplica
from serve_apps.core.settings import ReplicaOptions

MAX_BATCH_REQUESTS = 1024
MAX_TRIP_CITIES = 200  # the model reads the last few; longer bodies are a client bug or abuse


class RecommendRequest(BaseModel):
    """One visitor's trip so far and booking context."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"cities": [8183, 15626, 60902], "booker_country": "Elbonia", "device_class": "mobile", "k": 4}]})

    cities: list[Id] = Field(min_length=1, max_length=MAX_TRIP_CITIES,
                             description="city ids of the trip so far, oldest first; unknown ids are allowed")
    booker_country: Text
    device_class: Text
    affiliate_id: Id | None = None
    k: Integer = Field(4, ge=1, le=MAX_K, description="how many cities to return")


class RecommendResponse(BaseModel):
    cities: list[int] = Field(description="recommended next cities, best first")
    scores: list[float] = Field(description="their probabilities")
    model_version: str = Field(description="the model version that produced this answer")


POPULAR_CITIES = 10  # answers led by one of the model's 10 most frequent cities are counted (metrics)

API = ModelApi(title="Destination recommendations",
               description="Next destinations for a trip in progress, from the model published to the model store.",
               path="/recommend", request=RecommendRequest, answer=RecommendResponse, batch_name="Batch",
               max_batch_requests=MAX_BATCH_REQUESTS, single_summary="Next destinations for one trip.",
               batch_summary="Next destinations for many trips in one call, answered in the same order.")


# Defined before the deployment: Serve pickles the class when it is decorated, with the globals it names then.
def _inputs(runtime: DestinationRuntime, rows: pa.RecordBatch) -> tuple:
    """Request columns as the runtime's inputs: trips, booker countries, device classes, affiliates (0: none)."""
    return (trip_matrix(rows["cities"], runtime.history_length), string_values(rows["booker_country"]),
            string_values(rows["device_class"]), pc.fill_null(rows["affiliate_id"], 0).to_numpy())


@serve.deployment(name="Destinations", max_ongoing_requests=128)
@serve.ingress(API.app)
@API.routes
class Destinations(ModelReplica[DestinationRuntime]):
    open_runtime = DestinationRuntime.open
    answer_items = "cities"

    def predict(self, model: LoadedModel[DestinationRuntime], rows: pa.RecordBatch,
                shapes: Sequence[int]) -> dict[str, pa.Array]:
        runtime, k = model.runtime, rows["k"].to_numpy()
        ids, scores = runtime.top_k(*_inputs(runtime, rows), int(k.max()), shapes)
        return {"cities": list_column(ids, pa.int64(), k), "scores": list_column(scores, pa.float32(), k)}

    def unknown(self, model: LoadedModel[DestinationRuntime], rows: pa.RecordBatch) -> dict[str, np.ndarray]:
        return model.runtime.unknown(*_inputs(model.runtime, rows))

    def popular(self, model: LoadedModel[DestinationRuntime]) -> np.ndarray:
        return model.runtime.popular_cities(POPULAR_CITIES)


def app(args: dict) -> Application:
    """Application builder for Serve config files (``import_path: serve_apps.destinations:app``): ``args`` are
    the :class:`ReplicaOptions`; the model comes from the deployment's ``user_config``."""
    return Destinations.bind(ReplicaOptions.model_validate(args or {}))

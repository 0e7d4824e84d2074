"""Accommodation ranking as a Ray Serve application on the serving core.

    serve run configs/serve/local.yaml
    curl -s localhost:8000/accommodations/rank -H 'content-type: application/json' \\
         -d '{"city_id": 8183, "booker_country": "Elbonia", "device_class": "mobile", "checkin": "2026-12-18",
              "nights": 2, "adults": 2}'

What is this model's own: the request and answer bodies, and how a batch of searches (as columns) becomes one call
of the ranking runtime (:class:`recsys.accommodations.runtime.AccommodationRuntime`) and its output answer
columns. Everything else is :class:`serve_apps.core.replica.ModelReplica`, as for the destination model.
"""

# No `from __future__ import annotations` here: FastAPI reads the route annotations at runtime (see destinations).
import dataclasses
from collections.abc import Sequence
from typing import Annotated

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from ray import serve
from ray.serve import Application

from recsys.accommodations.runtime import MAX_K, AccommodationRuntime, Searches
from recsys.columns import string_values
from recsys.loaded_model import LoadedModel
from serve_apps.core.fields import MAX_ID, Date, Id, Integer, Text, json_integer
from serve_apps.core.model_api import ModelApi
from serve_apps.core.replica import ModelReplica
from serve_apps.core.settings import ReplicaOptions

MAX_BATCH_REQUESTS = 256
MAX_CANDIDATES = 500

PropertyId = Annotated[int, Field(ge=1, le=MAX_ID), BeforeValidator(json_integer)]  # 0 pads candidate lists


class Candidate(BaseModel):
    """A property the caller wants ranked, and its nightly price today if the caller knows it."""

    model_config = ConfigDict(extra="forbid")

    property_id: PropertyId
    price: float | None = Field(None, gt=0, le=1_000_000, allow_inf_nan=False,
                                description="today's nightly price in USD; default: the property's typical price")


class RankRequest(BaseModel):
    """One search: where, who, when, for whom; and optionally the properties to rank (else the city's catalogue)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"city_id": 8183, "booker_country": "Elbonia", "device_class": "mobile", "checkin": "2026-12-18",
         "nights": 2, "adults": 2, "children": 0, "rooms": 1, "k": 10}]})

    city_id: Id = Field(description="the destination city; unknown ids are answered (empty without candidates)")
    booker_country: Text
    device_class: Text
    checkin: Date
    nights: Integer = Field(ge=1, le=90)
    adults: Integer = Field(2, ge=1, le=30)
    children: Integer = Field(0, ge=0, le=30)
    rooms: Integer = Field(1, ge=1, le=30)
    candidates: list[Candidate] | None = Field(None, min_length=1, max_length=MAX_CANDIDATES,
                                               description="properties to rank, unknown ids allowed (a property "
                                                           "listed again is ranked once, at its first price); "
                                                           "default: every property of the city the model knows")
    k: Integer = Field(10, ge=1, le=MAX_K, description="how many properties to return")


class RankResponse(BaseModel):
    properties: list[int] = Field(description="property ids, best first (fewer than k if fewer were ranked)")
    scores: list[float] = Field(description="each property's expected share of the search's bookings")
    model_version: str = Field(description="the model version that produced this answer")


API = ModelApi(title="Accommodation ranking",
               description="The properties of a city ranked for a visitor's search, from the model published to "
                           "the model store.",
               path="/rank", request=RankRequest, answer=RankResponse, batch_name="RankBatch",
               max_batch_requests=MAX_BATCH_REQUESTS, single_summary="One search's properties, best first.",
               batch_summary="Many searches in one call, answered in the same order.")


def search_columns(searches: Searches, k: int) -> pa.RecordBatch:
    """Searches (each ranking its city's catalogue) as the request columns a model call takes: for callers that
    compose this model through a handle (``infer``) from values they have validated (a trip request's)."""
    return API.columns.assemble({
        **{field.name: np.asarray(getattr(searches, field.name)) for field in dataclasses.fields(searches)},
        "k": np.full(len(searches), k)}, len(searches))


# Defined before the deployment: Serve pickles the class when it is decorated, with the module globals its
# methods name as they are at that moment.
def _candidate_lists(column: pa.ListArray) -> tuple[list[np.ndarray | None], list[np.ndarray | None]]:
    """Each row's candidates and prices (0 for "the catalogue's"), None where the caller sent none; a property
    listed again is ranked once, at its first price."""
    offsets = column.offsets.to_numpy()
    present = column.is_valid().to_numpy(zero_copy_only=False)
    children = dict(zip((field.name for field in column.type.value_type), column.values.flatten()))
    ids = children["property_id"].to_numpy()
    prices = pc.fill_null(children["price"], 0.0).to_numpy().astype(np.float32)
    candidates, candidate_prices = [], []
    for row, (start, end) in enumerate(zip(offsets[:-1], offsets[1:])):
        if not present[row]:
            candidates.append(None)
            candidate_prices.append(None)
            continue
        first = np.sort(np.unique(ids[start:end], return_index=True)[1]) + start
        candidates.append(ids[first])
        candidate_prices.append(prices[first])
    return candidates, candidate_prices


def _ragged(rows: list[np.ndarray], lengths: np.ndarray, value_type: pa.DataType) -> pa.ListArray:
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = np.concatenate([row[:n] for row, n in zip(rows, lengths)]) if len(rows) else np.zeros(0)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=value_type))


@serve.deployment(name="Accommodations", max_ongoing_requests=64)
@serve.ingress(API.app)
@API.routes
class Accommodations(ModelReplica[AccommodationRuntime]):
    open_runtime = AccommodationRuntime.open
    answer_items = "properties"

    def predict(self, model: LoadedModel[AccommodationRuntime], rows: pa.RecordBatch,
                shapes: Sequence[int]) -> dict[str, pa.Array]:
        k = rows["k"].to_numpy()
        searches = Searches(city_id=rows["city_id"].to_numpy(), booker_country=string_values(rows["booker_country"]),
                            device_class=string_values(rows["device_class"]),
                            checkin=rows["checkin"].to_numpy(zero_copy_only=False),
                            **{name: rows[name].to_numpy() for name in ("nights", "adults", "children", "rooms")})
        candidates, prices = _candidate_lists(rows["candidates"])
        ids, scores = model.runtime.rank(searches, candidates, prices, int(k.max()), shapes)
        lengths = np.minimum([len(row) for row in ids], k)
        return {"properties": _ragged(ids, lengths, pa.int64()), "scores": _ragged(scores, lengths, pa.float32())}

    def unknown(self, model: LoadedModel[AccommodationRuntime], rows: pa.RecordBatch) -> dict[str, np.ndarray]:
        candidates = rows["candidates"]
        return model.runtime.unknown(rows["city_id"].to_numpy(), pc.fill_null(candidates.values.field("property_id"), 0).to_numpy(),
                                     candidates.offsets.to_numpy())


def app(args: dict) -> Application:
    """Application builder for Serve config files (``import_path: serve_apps.accommodations:app``): ``args`` are
    the :class:`ReplicaOptions`; the model comes from the deployment's ``user_config``."""
    return Accommodations.bind(ReplicaOptions.model_validate(args or {}))

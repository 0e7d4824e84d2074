"""Accommodation ranking as a Ray Serve application on the serving core.

    serve run configs/serve/local.yaml
    curl -s localhost:8000/accommodations/rank -H 'content-type: application/json' \\
         -d '{"city_id": 8183, "booker_country": "Elbonia", "device_class": "mobile", "checkin": "2026-12-18",
              "nights": 2, "adults": 2}'

What is this model's own: the request and answer bodies, and how a batch of searches becomes one call of the
ranking runtime (:class:`recsys.accommodations.runtime.AccommodationRuntime`) and its output answers. Everything
else is :class:`serve_apps.core.replica.ModelReplica`, as for the destination model.
"""

# No `from __future__ import annotations` here: FastAPI reads the route annotations at runtime (see destinations).
import dataclasses
from collections.abc import Sequence
from typing import Annotated

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from ray import serve
from ray.serve import Application

from recsys.accommodations.runtime import MAX_K, AccommodationRuntime, Searches
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

    @field_validator("candidates")
    @classmethod
    def _distinct(cls, candidates: list[Candidate] | None) -> list[Candidate] | None:
        # JSON Schema cannot say "distinct by property_id", so the schema allows repeats: rank each property once.
        if candidates is None:
            return None
        first = {}
        for candidate in candidates:
            first.setdefault(candidate.property_id, candidate)
        return list(first.values())

    @classmethod
    def for_searches(cls, searches: Searches, k: int) -> list["RankRequest"]:
        """One request per search, each ranking its city's catalogue."""
        columns = {field.name: np.asarray(getattr(searches, field.name)).tolist()
                   for field in dataclasses.fields(searches)}
        return [cls(**{name: values[i] for name, values in columns.items()}, k=k) for i in range(len(searches))]


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
RankBatchRequest, RankBatchResponse = API.batch_request, API.batch_response


@serve.deployment(name="Accommodations", max_ongoing_requests=64)
@serve.ingress(API.app)
@API.routes
class Accommodations(ModelReplica[AccommodationRuntime, RankRequest, RankResponse]):
    open_runtime = AccommodationRuntime.open

    def predict(self, model: LoadedModel[AccommodationRuntime], queries: Sequence[RankRequest],
                shapes: Sequence[int]) -> list[RankResponse]:
        searches = Searches(
            city_id=[q.city_id for q in queries], booker_country=[q.booker_country for q in queries],
            device_class=[q.device_class for q in queries], checkin=[q.checkin for q in queries],
            nights=[q.nights for q in queries], adults=[q.adults for q in queries],
            children=[q.children for q in queries], rooms=[q.rooms for q in queries])
        candidates = [None if q.candidates is None else
                      np.array([c.property_id for c in q.candidates], dtype=np.int64) for q in queries]
        prices = [None if q.candidates is None else
                  np.array([c.price or 0.0 for c in q.candidates], dtype=np.float32) for q in queries]
        ids, scores = model.runtime.rank(searches, candidates, prices, max(q.k for q in queries), shapes)
        return [RankResponse(properties=ids[i][:q.k].tolist(), scores=scores[i][:q.k].tolist(),
                             model_version=model.version) for i, q in enumerate(queries)]

def app(args: dict) -> Application:
    """Application builder for Serve config files (``import_path: serve_apps.accommodations:app``): ``args`` are
    the :class:`ReplicaOptions`; the model comes from the deployment's ``user_config``."""
    return Accommodations.bind(ReplicaOptions.model_validate(args or {}))

"""The destination page's answer in one round trip: the next destinations of a trip, each of the best few with its
best properties. A Ray Serve application that composes the two model applications through deployment handles.

    curl -s localhost:8000/trips/recommend -H 'content-type: application/json' \\
         -d '{"cities": [8183, 15626], "booker_country": "Elbonia", "device_class": "mobile",
              "checkin": "2026-12-18", "nights": 2}'

It holds no model: it calls the ``Destinations`` deployment, then the ``Accommodations`` deployment for all the
cities that get properties (which cities and which searches is :mod:`recsys.trip_answer`, shared with the offline
precompute), both through their handles' ``infer``, as record batches. Trips answered at the same time share those
calls: each model's rows of the trips that arrive within a millisecond go in one handle call (``@serve.batch``),
and each trip takes its slice of the answer back, so a handle call's cost (about as much CPU as the model work,
README) is paid once per batch of trips instead of once per trip. Each call has its own deadline
(:class:`TripsOptions`). Destinations are the answer: if they cannot be had in time the answer is 503 with
``Retry-After``. Properties are a bonus: if the ranking is slow or failing, the destinations are answered without
them and ``properties_omitted`` says why, rather than failing or waiting.
"""

# No `from __future__ import annotations` here: FastAPI reads the route annotations at runtime (see destinations).
import asyncio
import logging

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle, DeploymentResponse

from recsys.trip_answer import NextStays, property_searches
from serve_apps.accommodations import search_columns
from serve_apps.core.arrow_body import joined, split
from serve_apps.core.deadline import QueueBudget
from serve_apps.core.demand import autoscaling_stats
from serve_apps.core.metrics import ReplicaMetrics
from serve_apps.core.errors import DependencyUnavailable, InvalidRows, documented_responses
from serve_apps.core.fields import Date, Id, Integer, Text
from serve_apps.core.http_edge import ingress_api
from serve_apps.core.settings import TripsOptions
from serve_apps.destinations import API as DESTINATIONS
from serve_apps.destinations import MAX_TRIP_CITIES

log = logging.getLogger("ray.serve")


class TripRequest(BaseModel):
    """A trip so far and the stay being planned."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"cities": [8183, 15626, 60902], "booker_country": "Elbonia", "device_class": "mobile",
         "checkin": "2026-12-18", "nights": 2, "adults": 2, "k": 4, "cities_with_properties": 3,
         "properties_per_city": 3}]})

    cities: list[Id] = Field(min_length=1, max_length=MAX_TRIP_CITIES,
                             description="city ids of the trip so far, oldest first; unknown ids are allowed")
    booker_country: Text
    device_class: Text
    affiliate_id: Id | None = None
    checkin: Date = Field(description="check-in of the next stay")
    nights: Integer = Field(ge=1, le=90)
    adults: Integer = Field(2, ge=1, le=30)
    children: Integer = Field(0, ge=0, le=30)
    rooms: Integer = Field(1, ge=1, le=30)
    k: Integer = Field(4, ge=1, le=20, description="how many destinations to return")
    cities_with_properties: Integer = Field(3, ge=0, le=20,
                                            description="how many of the best destinations get properties")
    properties_per_city: Integer = Field(3, ge=1, le=20, description="properties for each of those")


class TripDestination(BaseModel):
    city_id: int
    score: float = Field(description="the destination model's probability")
    properties: list[int] | None = Field(description="the best properties, best first; null when not asked for "
                                                     "or omitted")
    property_scores: list[float] | None


class TripResponse(BaseModel):
    destinations: list[TripDestination] = Field(description="next destinations, best first")
    model_versions: dict[str, str] = Field(description="the version of each model that contributed, by model")
    properties_omitted: bool = Field(description="true when properties were asked for but are left out")
    omitted_reason: str | None = Field(None, description="why they were left out")


# One handle call carries the rows of at most COALESCED_TRIPS trips (destinations) or COALESCED_SEARCHES searches
# (ranking), gathered for at most COALESCE_WAIT_S, as the model replicas batch their own callers.
COALESCED_TRIPS, COALESCED_SEARCHES, COALESCE_WAIT_S = 64, 256, 0.001


# Defined before the deployment: Serve pickles the class when it is decorated, with the module globals its
# methods name as they are at that moment.
def _rows(batches: list[pa.RecordBatch]) -> int:
    return sum(batch.num_rows for batch in batches)


def _retrieve(future: asyncio.Future) -> None:
    # A call cancelled past its deadline ends with RequestCancelledError (Serve turns the cancellation into it); taken
    # here, it is not logged with its traceback as never retrieved, once per late call.
    if not future.cancelled():
        future.exception()


def _reason(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "no answer within its deadline"
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".rstrip(": ")


api = ingress_api(title="Trip recommendations",
                  description="Next destinations for a trip, each with its best properties, from both models.",
                  max_body_bytes=1 << 20)
ERRORS = documented_responses(400, 413, 415, 500, 503)


@serve.deployment(name="Trips", max_ongoing_requests=64)
@serve.ingress(api)
class Trips:
    def __init__(self, options: TripsOptions) -> None:
        api.state.queue_budget = QueueBudget(options.queue_budget_ms / 1000)
        api.state.metrics = ReplicaMetrics(options.metrics)
        self._options = options
        self._handles: dict[tuple[str, str], DeploymentHandle] = {}

    def record_autoscaling_stats(self) -> dict[str, float]:
        return autoscaling_stats(api.state.demand)

    @api.post("/recommend", response_model=TripResponse, responses=ERRORS)
    async def recommend(self, trip: TripRequest) -> TripResponse:
        """Next destinations for one trip, the best of them with their best properties."""
        destinations = await self._destinations(DESTINATIONS.columns.assemble({
            "cities": [trip.cities], "booker_country": [trip.booker_country], "device_class": [trip.device_class],
            "affiliate_id": [trip.affiliate_id], "k": [trip.k]}, 1))
        if isinstance(destinations, BaseException):
            raise DependencyUnavailable(f"destination model unavailable: {_reason(destinations)}") from destinations
        cities, scores = destinations["cities"][0].as_py(), destinations["scores"][0].as_py()
        versions = {"destinations": destinations["model_version"][0].as_py()}
        stay = NextStays(booker_country=[trip.booker_country], device_class=[trip.device_class],
                         checkin=[trip.checkin], nights=[trip.nights], adults=[trip.adults],
                         children=[trip.children], rooms=[trip.rooms])
        searches, _ = property_searches(stay, [cities], trip.cities_with_properties)
        properties: list[tuple[list[int], list[float]] | None] = [None] * len(cities)
        omitted = None
        if len(searches):
            ranked = await self._rankings(search_columns(searches, trip.properties_per_city))
            if isinstance(ranked, BaseException):
                omitted = f"accommodation ranking unavailable: {_reason(ranked)}"
                log.warning("trip answered without properties: %s", omitted)
            else:
                versions["accommodations"] = ranked["model_version"][0].as_py()
                # The searches follow the destinations, best first.
                for i, (ids, ranked_scores) in enumerate(zip(ranked["properties"].to_pylist(),
                                                             ranked["scores"].to_pylist())):
                    properties[i] = (ids, ranked_scores)
        return TripResponse(
            destinations=[TripDestination(city_id=city, score=score,
                                          properties=properties[i][0] if properties[i] else None,
                                          property_scores=properties[i][1] if properties[i] else None)
                          for i, (city, score) in enumerate(zip(cities, scores))],
            model_versions=versions, properties_omitted=omitted is not None, omitted_reason=omitted)

    @serve.batch(max_batch_size=COALESCED_TRIPS, batch_wait_timeout_s=COALESCE_WAIT_S, max_concurrent_batches=64)
    async def _destinations(self, trips: list[pa.RecordBatch]) -> list[pa.RecordBatch | BaseException]:
        """Each trip's destination answer (or the error that stands for it), from one call for all of ``trips``."""
        options = self._options
        return await self._infer(options.destinations_app, options.destinations_deployment, trips,
                                 options.destinations_timeout_ms)

    @serve.batch(max_batch_size=COALESCED_SEARCHES, batch_wait_timeout_s=COALESCE_WAIT_S, batch_size_fn=_rows,
                 max_concurrent_batches=64)
    async def _rankings(self, searches: list[pa.RecordBatch]) -> list[pa.RecordBatch | BaseException]:
        """Each trip's ranked searches (or the error that stands for them), from one call for all of them."""
        options = self._options
        return await self._infer(options.accommodations_app, options.accommodations_deployment, searches,
                                 options.accommodations_timeout_ms)

    async def _infer(self, app_name: str, deployment: str, callers: list[pa.RecordBatch],
                     timeout_ms: int) -> list[pa.RecordBatch | BaseException]:
        """A model deployment's answers to the callers' rows from one ``infer`` call, each caller's slice, cancelled
        when ``timeout_ms`` passes. Rows the model refuses (a data error) fail the call: then each caller's rows
        are asked alone, so that only the trip they belong to goes without."""
        key = (app_name, deployment)
        rows = joined(callers)
        try:
            if key not in self._handles:  # looked up on first use: the model apps may deploy after this one
                self._handles[key] = serve.get_deployment_handle(deployment, app_name=app_name)
            response: DeploymentResponse = self._handles[key].infer.remote(rows)
        except Exception as error:  # each caller answers for itself (503, or no properties), never a 500
            return [error] * len(callers)
        # Not asyncio.wait_for: on timeout it still waits for the cancelled await to end, and the deadline must hold
        # whatever the callee does with the cancellation.
        answer = asyncio.ensure_future(response)
        done, _ = await asyncio.wait({answer}, timeout=timeout_ms / 1000)
        if not done:
            answer.add_done_callback(_retrieve)
            response.cancel()
            answer.cancel()
            return [TimeoutError(f"{app_name}.infer: no answer within {timeout_ms} ms")] * len(callers)
        error = answer.exception()
        if error is not None:
            if len(callers) > 1 and isinstance(error, InvalidRows):
                return [part[0] for part in await asyncio.gather(
                    *(self._infer(app_name, deployment, [caller], timeout_ms) for caller in callers))]
            return [error] * len(callers)
        return split(answer.result(), callers)


def app(args: dict) -> Application:
    """Application builder for Serve config files (``import_path: serve_apps.trips:app``): ``args`` are the
    :class:`TripsOptions`."""
    return Trips.bind(TripsOptions.model_validate(args or {}))

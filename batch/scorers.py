"""The Ray Data actors that score open trips (:data:`batch.open_trips.OPEN_TRIP_SCHEMA` batches in, prediction rows
out). Each actor loads its models once, through the loader the Serve replicas use (:func:`recsys.loaded_model.load`:
fetch, sha256 check, open, warm-up of every batch shape), capped to its GPU share, and then answers batch after
batch with columnar code: Arrow lists to padded numpy matrices, one model call, numpy back to Arrow lists.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from batch.config import PrecomputeConfig, ScoringPool
from batch.output import (
    DESTINATION_SCHEMA,
    TRIP_ANSWER_SCHEMA,
    UNKNOWN_CITY_PROPERTIES,
    UNKNOWN_COLUMNS,
)
from recsys import gpu
from recsys.accommodations.runtime import AccommodationRuntime
from recsys.columns import list_column, string_values, trip_matrix
from recsys.destinations.runtime import DestinationRuntime
from recsys.loaded_model import LoadedModel, batch_shapes, load
from recsys.trip_answer import NextStays, per_trip, property_searches

def scorer_of(config: PrecomputeConfig) -> type:
    return DestinationScorer if config.predictions == "destinations" else TripAnswerScorer


class DestinationScorer:
    """Each open trip's next ``k`` cities."""

    def __init__(self, config: PrecomputeConfig, versions: dict[str, str]) -> None:
        _claim_share(config.scoring)
        self._k = config.k
        self._shapes = batch_shapes(config.scoring.batch_size)
        self._destinations = _load(config, versions, "destinations", DestinationRuntime.open, self._shapes)

    def __call__(self, trips: pa.Table) -> pa.Table:
        ids, scores, unknown = _next_cities(self._destinations, trips, self._k, self._shapes)
        return pa.table({
            "user_id": trips["user_id"], "utrip_id": trips["utrip_id"],
            "next_cities": list_column(ids, pa.int64()), "scores": list_column(scores, pa.float32()),
            "model_version": pa.repeat(self._destinations.version, trips.num_rows).cast(pa.string()),
            **{UNKNOWN_COLUMNS[name]: pa.array(rows) for name, rows in unknown.items()},
        }, schema=DESTINATION_SCHEMA)


class TripAnswerScorer:
    """Each open trip's answer as the live trip endpoint gives it: next cities, and properties for the best few
    (:mod:`recsys.trip_answer`), for a stay from the trip's last check-out."""

    def __init__(self, config: PrecomputeConfig, versions: dict[str, str]) -> None:
        _claim_share(config.scoring)
        self._config = config
        self._shapes = batch_shapes(config.scoring.batch_size)
        self._ranking_shapes = batch_shapes(config.scoring.ranking_batch_size)
        self._destinations = _load(config, versions, "destinations", DestinationRuntime.open, self._shapes)
        self._accommodations = _load(config, versions, "accommodations", AccommodationRuntime.open,
                                     self._ranking_shapes)

    def __call__(self, trips: pa.Table) -> pa.Table:
        answer, stay = self._config.trip_answer, self._config.trip_answer.stay
        ids, scores, unknown = _next_cities(self._destinations, trips, self._config.k, self._shapes)
        rows = trips.num_rows
        stays = NextStays(booker_country=string_values(trips["booker_country"]),
                          device_class=string_values(trips["device_class"]),
                          checkin=trips["last_checkout"].to_numpy(), nights=np.full(rows, stay.nights),
                          adults=np.full(rows, stay.adults), children=np.full(rows, stay.children),
                          rooms=np.full(rows, stay.rooms))
        searches, owner = property_searches(stays, ids, answer.cities_with_properties)
        runtime, step = self._accommodations.runtime, self._config.scoring.ranking_batch_size
        ranked_ids, ranked_scores = [], []
        for start in range(0, len(searches), step):
            part = _slice(searches, slice(start, start + step))
            no_candidates = [None] * len(part)
            part_ids, part_scores = runtime.rank(part, no_candidates, no_candidates, answer.properties_per_city,
                                                 self._ranking_shapes)
            ranked_ids += part_ids
            ranked_scores += part_scores
        no_catalogue = np.zeros(rows, dtype=bool)
        np.logical_or.at(no_catalogue, owner, np.array([len(r) == 0 for r in ranked_ids], dtype=bool))
        # One list of properties per next city, empty for the cities past cities_with_properties.
        properties = [[p.tolist() for p in row] + [[]] * (len(ids[i]) - len(row))
                      for i, row in enumerate(per_trip(ranked_ids, owner, rows))]
        property_scores = [[s.tolist() for s in row] + [[]] * (len(ids[i]) - len(row))
                           for i, row in enumerate(per_trip(ranked_scores, owner, rows))]
        return pa.table({
            "user_id": trips["user_id"], "utrip_id": trips["utrip_id"],
            "next_cities": list_column(ids, pa.int64()), "scores": list_column(scores, pa.float32()),
            "properties": pa.array(properties, type=pa.list_(pa.list_(pa.int64()))),
            "property_scores": pa.array(property_scores, type=pa.list_(pa.list_(pa.float32()))),
            "checkin": trips["last_checkout"], "nights": pa.repeat(stay.nights, rows).cast(pa.int32()),
            "destinations_version": pa.repeat(self._destinations.version, rows).cast(pa.string()),
            "accommodations_version": pa.repeat(self._accommodations.version, rows).cast(pa.string()),
            **{UNKNOWN_COLUMNS[name]: pa.array(flags) for name, flags in unknown.items()},
            UNKNOWN_CITY_PROPERTIES: pa.array(no_catalogue),
        }, schema=TRIP_ANSWER_SCHEMA)


def _next_cities(model: LoadedModel[DestinationRuntime], trips: pa.Table, k: int,
                 shapes: Sequence[int]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    runtime = model.runtime
    history = trip_matrix(trips["trip_cities"], runtime.history_length)
    countries, devices = string_values(trips["booker_country"]), string_values(trips["device_class"])
    affiliates = trips["affiliate_id"].to_numpy()
    ids, scores = runtime.top_k(history, countries, devices, affiliates, k, shapes)
    return ids, scores, runtime.unknown(history, countries, devices, affiliates)


def _slice(searches, part: slice):
    return type(searches)(**{name: value[part] for name, value in vars(searches).items()})


def _claim_share(pool: ScoringPool) -> None:
    """TensorFlow's thread pools sized to the actor's CPUs, and its GPU memory to the actor's share of a card."""
    import tensorflow as tf

    threads = max(1, math.ceil(pool.num_cpus))
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    gpu.cap_this_actor(pool.gpu_memory_mib, pool.gpu_context_mib)


def _load(config: PrecomputeConfig, versions: dict[str, str], name: str, open_runtime, shapes) -> LoadedModel:
    model = load(f"{config.store_uri.rstrip('/')}/{name}", versions[name], open_runtime, config.load, shapes)
    if model.version != versions[name]:  # resolved once by the driver; never mix versions within a run
        raise RuntimeError(f"{name}: loaded {model.version}, the run scores with {versions[name]}")
    return model

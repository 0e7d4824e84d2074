"""The answer a destination page shows for a trip: its next destinations, the best few of them each with its best
properties. The one rule of that composition, for both callers: the live endpoint (``serve_apps.trips``, which
reaches the models through deployment handles) and the offline precompute (``batch``, which holds both models in
its scoring actors).

A trip's answer costs one destination call and then one search per chosen destination: the trip's booker and
the stay being planned, in that city (its catalogue ranked). :func:`property_searches` forms those searches for
many trips at once, and :func:`per_trip` hands the rankings back to the trip each belongs to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recsys.accommodations.runtime import Searches


@dataclass(frozen=True)
class NextStays:
    """Per trip (columns): the booker, and the stay the trip's next destination is wanted for."""

    booker_country: Sequence[str]
    device_class: Sequence[str]
    checkin: Sequence | np.ndarray  # dates, ISO strings or numpy datetime64[D]
    nights: Sequence[int]
    adults: Sequence[int]
    children: Sequence[int]
    rooms: Sequence[int]


def property_searches(stays: NextStays, destinations: Sequence[Sequence[int]],
                      cities_with_properties: int) -> tuple[Searches, np.ndarray]:
    """The searches that complete the answers of many trips: for each trip, its stay in each of its first
    ``cities_with_properties`` destinations (``destinations``: each trip's cities, best first). Returns the
    searches, trip by trip and best destination first, and for each the row of the trip it belongs to."""
    chosen = [list(cities[:cities_with_properties]) for cities in destinations]
    owner = np.repeat(np.arange(len(chosen)), [len(cities) for cities in chosen])

    def spread(column: Sequence) -> np.ndarray:
        return np.asarray(list(column), dtype=object)[owner]  # Searches.context gives each column its type

    searches = Searches(city_id=np.array([city for cities in chosen for city in cities], dtype=np.int64),
                        booker_country=spread(stays.booker_country), device_class=spread(stays.device_class),
                        checkin=np.asarray(stays.checkin, dtype="datetime64[D]")[owner],
                        nights=spread(stays.nights), adults=spread(stays.adults), children=spread(stays.children),
                        rooms=spread(stays.rooms))
    return searches, owner


def per_trip(rankings: Sequence, owner: np.ndarray, trips: int) -> list[list]:
    """Rankings of :func:`property_searches`' searches regrouped by trip: ``trips`` lists, each holding its
    trip's rankings best destination first (empty for a trip none were searched for)."""
    grouped: list[list] = [[] for _ in range(trips)]
    for ranking, row in zip(rankings, owner.tolist()):
        grouped[row].append(ranking)
    return grouped

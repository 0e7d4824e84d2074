"""Synthetic accommodation searches for the synthetic trips: what each traveller was shown, clicked and booked.

Consistent with the trips: the same world (rebuilt from the trips' ``_generator.json``: cities, their type —
beach, city, mountain, countryside — their popularity and country), a catalogue of properties per city sized by
the city's popularity, and for each reservation of the trips (or a deterministic ``fraction`` of them) one search
in the city booked, by that booker, on that device, for those nights.

A search shows 25-40 properties (all, in a small city) in the order a simple default ranker would: stars,
review score and an estimate of popularity, with noise. The traveller examines them with a position bias,
clicks what appeals and books one. What appeals carries structure a model can learn and a fixed sort cannot:

* price sensitivity depends on the booker's country and device, and business travellers hardly care;
* the party (business, solo, couple, family, group — seen as adults, children, rooms, nights and a weekday
  check-in) prefers property types and amenities of its own (families: apartments, resorts, pools, kitchens,
  family rooms; business: central hotels with stars and breakfast; solo: hostels and B&Bs);
* the city's type pulls towards its own (beach: resorts and pools; city: close to the centre; mountain and
  countryside: B&Bs, spas, parking);
* every property has a hidden quality that bookings reveal over many searches, and review scores reflect it
  partly.

    python -m recsys.accommodations.synthetic_searches --trips .data/trips/smoke --out .data/searches/smoke \\
        --fraction 0.25 --seed 7
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from recsys import filesystem
from recsys.accommodations.searches import AMENITIES, PROPERTY_TYPES, SEARCH_SCHEMA, includes_saturday_night
from recsys.errors import DataError, RecsysError
from recsys.synthetic_trips import DEVICES, TripsSpec, World, build_world, sample_rows
from recsys.trips import TRIP_SCHEMA, check_trip_schema

log = logging.getLogger(__name__)

SEGMENTS = ("business", "solo", "couple", "family", "group")
GENERATOR_FILE = "_generator.json"
_EPOCH = dt.date(1970, 1, 1)

# Share of property types by the city's type (rows: CITY_TYPES; columns: PROPERTY_TYPES).
_TYPE_SHARE = np.array([
    [0.35, 0.25, 0.10, 0.05, 0.25],  # beach
    [0.50, 0.25, 0.10, 0.15, 0.00],  # city
    [0.30, 0.30, 0.30, 0.05, 0.05],  # mountain
    [0.20, 0.20, 0.50, 0.05, 0.05],  # countryside
])
# Chance of each amenity by property type (rows: PROPERTY_TYPES; columns: AMENITIES).
_AMENITY_CHANCE = np.array([
    [0.30, 0.60, 0.05, 0.50, 0.30, 0.30],  # hotel
    [0.15, 0.05, 0.90, 0.50, 0.02, 0.40],  # apartment
    [0.10, 0.90, 0.20, 0.60, 0.10, 0.20],  # bnb
    [0.02, 0.30, 0.50, 0.10, 0.00, 0.05],  # hostel
    [0.90, 0.80, 0.10, 0.80, 0.60, 0.70],  # resort
])
_TYPE_PRICE = np.array([1.0, 0.9, 0.8, 0.4, 1.8])
# Appeal of each property type by party (rows: SEGMENTS) and by the city's type (rows: CITY_TYPES).
_SEGMENT_TYPE = np.array([
    [1.0, -0.3, -0.2, -1.2, -0.5],  # business
    [-0.1, -0.2, 0.4, 0.8, -0.6],  # solo
    [0.3, 0.0, 0.5, -0.8, 0.3],  # couple
    [-0.2, 0.8, -0.2, -1.5, 0.8],  # family
    [-0.1, 0.7, -0.3, 0.4, 0.0],  # group
])
_THEME_TYPE = np.array([
    [0.0, 0.2, -0.2, -0.2, 0.7],  # beach
    [0.4, 0.1, -0.2, 0.1, -0.6],  # city
    [-0.1, 0.2, 0.5, -0.2, 0.0],  # mountain
    [-0.3, 0.0, 0.7, -0.3, 0.0],  # countryside
])
_SEGMENT_AMENITY = np.array([
    [0.0, 0.4, -0.2, 0.0, 0.0, -0.3],  # business
    [-0.1, 0.1, 0.3, 0.0, 0.0, -0.3],  # solo
    [0.2, 0.2, 0.0, 0.0, 0.4, -0.2],  # couple
    [0.6, 0.1, 0.6, 0.2, 0.0, 0.9],  # family
    [0.2, 0.0, 0.5, 0.3, 0.0, 0.2],  # group
])
_THEME_AMENITY = np.array([
    [0.8, 0.0, 0.0, 0.0, 0.1, 0.0],  # beach
    [-0.2, 0.1, 0.0, -0.2, 0.0, 0.0],  # city
    [0.0, 0.1, 0.0, 0.3, 0.5, 0.0],  # mountain
    [0.1, 0.2, 0.0, 0.5, 0.2, 0.0],  # countryside
])
_SEGMENT_PRICE = np.array([0.25, 1.3, 0.9, 1.1, 1.2])  # how much each party minds the price
_SEGMENT_STARS = np.array([0.35, 0.0, 0.15, 0.05, 0.0])
_DEVICE_PRICE = np.array([0.85, 1.3, 1.05])  # rows: DEVICES (desktop, mobile, tablet)


class SearchesSpec(BaseModel):
    """What to generate from a trips data set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    fraction: float = Field(1.0, gt=0, le=1, description="share of the reservations that get a search")
    min_shown: int = Field(25, ge=1)
    max_shown: int = Field(40, ge=1)


@dataclass(frozen=True)
class _Catalogue:
    """Every property of the world; ``quality`` is hidden from the data (it only shows in bookings)."""

    prop_id: np.ndarray  # (P,)
    city: np.ndarray  # (P,) index into the world's cities
    type: np.ndarray  # (P,) index into PROPERTY_TYPES
    stars: np.ndarray
    review: np.ndarray
    distance: np.ndarray
    location: np.ndarray
    amenities: np.ndarray  # (P, A) bool
    base_price: np.ndarray
    quality: np.ndarray
    city_median_price: np.ndarray  # (C,)
    by_city: list[np.ndarray]  # property indices of each city


def build_catalogue(world: World, seed: int) -> _Catalogue:
    """Properties for every city: the more popular the city, the more of them."""
    rng = np.random.default_rng([seed, 3])
    cities = len(world.city_ids)
    sizes = 10 + (500 * np.sqrt(world.city_popularity)).astype(int)
    city = np.repeat(np.arange(cities), sizes)
    n = len(city)
    theme = world.city_type[city]
    kind = sample_rows(rng, np.log(_TYPE_SHARE[theme] + 1e-9))
    stars = np.select([kind == 0, kind == 4, kind == 3],
                      [rng.integers(2, 6, n), rng.integers(4, 6, n), rng.integers(1, 3, n)], rng.integers(2, 5, n))
    quality = rng.normal(0, 0.6, n)
    review = np.clip(np.round((3.3 + 0.25 * (stars - 3) + 0.5 * quality + rng.normal(0, 0.4, n)) * 2) / 2, 1, 5)
    spread = np.where(np.isin(theme, [0, 3]), 6.0, 3.0)  # beach and countryside places lie further out
    distance = np.round(rng.exponential(spread), 2)
    location = np.clip(5 * np.exp(-distance / 4) + rng.normal(0, 0.3, n), 0, 5)
    amenities = rng.random((n, len(AMENITIES))) < _AMENITY_CHANCE[kind]
    popularity_rank = np.argsort(np.argsort(-world.city_popularity)) / cities
    city_price = 60 + 120 * (1 - popularity_rank) + rng.normal(0, 10, cities)
    base_price = (city_price[city] * _TYPE_PRICE[kind] * (1 + 0.25 * (stars - 3)) *
                  rng.lognormal(0, 0.25, n))
    prop_id = rng.choice(np.arange(1, 5_000_000), size=n, replace=False).astype(np.int64)
    median = np.array([np.median(base_price[city == c]) for c in range(cities)])
    return _Catalogue(prop_id=prop_id, city=city, type=kind, stars=stars.astype(np.int32),
                      review=review.astype(np.float32), distance=distance.astype(np.float32),
                      location=location.astype(np.float32), amenities=amenities, base_price=base_price,
                      quality=quality, city_median_price=median,
                      by_city=[np.flatnonzero(city == c) for c in range(cities)])


def generate_searches(world: World, catalogue: _Catalogue, trips: pa.Table, spec: SearchesSpec,
                      rng: np.random.Generator, first_srch_id: int) -> pa.Table:
    """One search for each sampled reservation of ``trips``, as impression rows in :data:`SEARCH_SCHEMA`."""
    trips = trips.filter(pa.array(rng.random(trips.num_rows) < spec.fraction))
    n = trips.num_rows
    if n == 0:
        return SEARCH_SCHEMA.empty_table()
    city_index = {int(c): i for i, c in enumerate(world.city_ids)}
    city = np.array([city_index.get(int(c), -1) for c in trips["city_id"].to_numpy()])
    if (city < 0).any():
        raise DataError("trips name cities the world of their _generator.json does not have")
    checkin = trips["checkin"].cast(pa.int32()).to_numpy()
    nights = np.maximum(trips["checkout"].cast(pa.int32()).to_numpy() - checkin, 1)
    weekday = (checkin + _EPOCH.weekday()) % 7
    saturday = includes_saturday_night(checkin, nights)
    device = np.array([DEVICES.index(d) if d in DEVICES else 0 for d in trips["device_class"].to_pylist()])
    bookers = {name: i for i, name in enumerate(world.booker_countries)}
    booker = np.array([bookers.get(b, 0) for b in trips["booker_country"].to_pylist()])
    country_price = np.random.default_rng([spec.seed, 4]).lognormal(0, 0.45, len(world.booker_countries))
    theme = world.city_type[city]
    segment = _segments(rng, nights, weekday, device, theme)
    adults, children, rooms = _party(rng, segment)
    window = np.where(segment == 0, rng.integers(1, 15, n), rng.integers(7, 91, n))
    price_beta = country_price[booker] * _DEVICE_PRICE[device] * _SEGMENT_PRICE[segment]

    columns: dict[str, list[np.ndarray]] = {name: [] for name in ("search", "prop", "position", "price", "click",
                                                                  "booking")}
    for c in np.unique(city):
        searches = np.flatnonzero(city == c)
        props = catalogue.by_city[c]
        shown = min(len(props), spec.max_shown)
        # The default ranker: stars, reviews and a popularity estimate, with noise per search.
        default = (0.4 * catalogue.stars[props] / 5 + 0.6 * catalogue.review[props] / 5 + 0.3 * catalogue.quality[props])
        noisy = default[None, :] + rng.normal(0, 0.35, (len(searches), len(props)))
        order = np.argsort(-noisy, axis=1)[:, :shown]
        count = np.minimum(rng.integers(spec.min_shown, spec.max_shown + 1, len(searches)), shown)
        p = props[order]  # (S, shown) catalogue indices
        price = (catalogue.base_price[p] * np.where(saturday[searches], 1.15, 1.0)[:, None] *
                 rng.lognormal(0, 0.1, p.shape))
        s = segment[searches][:, None]
        t = theme[searches][:, None]
        utility = (catalogue.quality[p] + 0.5 * (catalogue.review[p] - 3)
                   + _SEGMENT_TYPE[s, catalogue.type[p]] + _THEME_TYPE[t, catalogue.type[p]]
                   + (catalogue.amenities[p] * (_SEGMENT_AMENITY[segment[searches]][:, None, :] +
                                                _THEME_AMENITY[theme[searches]][:, None, :])).sum(-1)
                   - price_beta[searches][:, None] * np.log(price / catalogue.city_median_price[c])
                   - (0.05 + 0.25 * (s == 0) + 0.15 * (t == 1)) * catalogue.distance[p]
                   + _SEGMENT_STARS[s] * (catalogue.stars[p] - 3))
        position = np.arange(1, shown + 1)[None, :].repeat(len(searches), 0)
        visible = position <= count[:, None]
        examined = rng.random(p.shape) < (1 + (position - 1) / 3) ** -0.8
        click = visible & examined & (rng.random(p.shape) < _sigmoid(utility - 1.0))
        # Exactly one booking: among what was shown, by examination and appeal.
        weight = np.where(visible, np.exp(2 * (utility - utility.max(1, keepdims=True))) *
                          (1 + (position - 1) / 3) ** -0.8, 0)
        booked = sample_rows(rng, np.log(weight + 1e-12))
        booking = np.zeros_like(click)
        booking[np.arange(len(searches)), booked] = True
        click |= booking
        rows = np.flatnonzero(visible.ravel())
        columns["search"].append(np.repeat(searches, shown)[rows])
        columns["prop"].append(p.ravel()[rows])
        columns["position"].append(position.ravel()[rows])
        columns["price"].append(price.ravel()[rows])
        columns["click"].append(click.ravel()[rows])
        columns["booking"].append(booking.ravel()[rows])
    search = np.concatenate(columns["search"])
    order = np.lexsort((np.concatenate(columns["position"]), search))
    search, prop = search[order], np.concatenate(columns["prop"])[order]
    return _to_table(world, catalogue, trips, search, prop, order, columns, first_srch_id, checkin, nights, window,
                     adults, children, rooms, saturday)


def _to_table(world, catalogue, trips, search, prop, order, columns, first_srch_id, checkin, nights, window,
              adults, children, rooms, saturday) -> pa.Table:
    def per_search(values: np.ndarray) -> np.ndarray:
        return values[search]

    country_names = np.array(world.country_names, dtype=object)
    data = {
        "srch_id": pa.array(first_srch_id + search, pa.int64()),
        "search_date": pa.array((per_search(checkin) - per_search(window)).astype(np.int32)).cast(pa.date32()),
        "user_id": pa.array(per_search(trips["user_id"].to_numpy()), pa.int64()),
        "utrip_id": pa.array(per_search(np.asarray(trips["utrip_id"].to_pylist(), dtype=object)), pa.string()),
        "booker_country": pa.array(per_search(np.asarray(trips["booker_country"].to_pylist(), dtype=object)),
                                   pa.string()),
        "device_class": pa.array(per_search(np.asarray(trips["device_class"].to_pylist(), dtype=object)), pa.string()),
        "srch_destination_id": pa.array(world.city_ids[catalogue.city[prop]], pa.int64()),
        "srch_checkin": pa.array(per_search(checkin).astype(np.int32)).cast(pa.date32()),
        "srch_length_of_stay": pa.array(per_search(nights), pa.int32()),
        "srch_booking_window": pa.array(per_search(window), pa.int32()),
        "srch_adults_count": pa.array(per_search(adults), pa.int32()),
        "srch_children_count": pa.array(per_search(children), pa.int32()),
        "srch_room_count": pa.array(per_search(rooms), pa.int32()),
        "srch_saturday_night_bool": pa.array(per_search(saturday), pa.bool_()),
        "prop_id": pa.array(catalogue.prop_id[prop], pa.int64()),
        "prop_country": pa.array(country_names[world.city_country[catalogue.city[prop]]], pa.string()),
        "prop_type": pa.array(np.array(PROPERTY_TYPES, dtype=object)[catalogue.type[prop]], pa.string()),
        "prop_starrating": pa.array(catalogue.stars[prop], pa.int32()),
        "prop_review_score": pa.array(catalogue.review[prop], pa.float32()),
        "prop_location_score": pa.array(np.round(catalogue.location[prop], 2), pa.float32()),
        "prop_distance_km": pa.array(catalogue.distance[prop], pa.float32()),
        **{f"amenity_{name}": pa.array(catalogue.amenities[prop, i], pa.bool_()) for i, name in enumerate(AMENITIES)},
        "price_usd": pa.array(np.round(np.concatenate(columns["price"])[order], 2), pa.float32()),
        "position": pa.array(np.concatenate(columns["position"])[order], pa.int32()),
        "click_bool": pa.array(np.concatenate(columns["click"])[order], pa.bool_()),
        "booking_bool": pa.array(np.concatenate(columns["booking"])[order], pa.bool_()),
    }
    return pa.table(data, schema=SEARCH_SCHEMA)


def _segments(rng, nights, weekday, device, theme) -> np.ndarray:
    """The party behind each search: business trips are short, start on a weekday, and more often on desktops;
    families go to beaches and the countryside."""
    n = len(nights)
    weights = np.zeros((n, len(SEGMENTS)))
    weights[:, 0] = np.where((nights <= 2) & (weekday <= 3), 0.45, 0.04) * np.where(device == 0, 1.4, 0.8)
    weights[:, 1] = 0.15
    weights[:, 2] = 0.30
    weights[:, 3] = np.where(np.isin(theme, [0, 3]), 0.35, 0.12) * np.where(nights >= 3, 1.4, 0.7)
    weights[:, 4] = 0.08
    return sample_rows(rng, np.log(weights))


def _party(rng, segment) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(segment)
    adults = np.select([segment == 0, segment == 1, segment == 4], [1, 1, rng.integers(3, 7, n)], 2)
    children = np.where(segment == 3, rng.integers(1, 4, n), 0)
    rooms = np.select([segment == 4, (segment == 3) & (children >= 3)], [rng.integers(2, 4, n), 2], 1)
    return adults, children, rooms


def write_searches(trips_uri: str, spec: SearchesSpec, uri: str, overwrite: bool = False) -> dict:
    """Generate searches for the synthetic trips at ``trips_uri`` into ``uri`` as ``part-NNNNN.parquet`` files (one
    per trips file); returns counts. Written through :func:`recsys.filesystem.new_directory`, like the trips."""
    trips_fs, trips_root = filesystem.resolve(trips_uri)
    try:
        with trips_fs.open(filesystem.join(trips_root, GENERATOR_FILE), "r") as f:
            trips_spec = TripsSpec.model_validate(json.load(f)["spec"])
    except FileNotFoundError as err:
        raise DataError(f"{trips_uri}: no {GENERATOR_FILE}; searches are generated for synthetic trips "
                        "(python -m recsys.synthetic_trips)") from err
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"{trips_uri}/{GENERATOR_FILE}: not a trips generator record: {err}") from err
    parts = sorted(p for p in trips_fs.find(trips_root) if p.endswith(".parquet") and "/." not in p[len(trips_root):])
    if not parts:
        raise DataError(f"{trips_uri}: no .parquet files under this path")
    searches = rows = 0
    with filesystem.new_directory(uri, overwrite) as (fs, staging):
        world = build_world(trips_spec.world, trips_spec.seed)
        catalogue = build_catalogue(world, spec.seed)
        for index, part in enumerate(parts):
            with trips_fs.open(part, "rb") as f:
                trips = pq.read_table(f)
            check_trip_schema(trips.schema, trips_fs.unstrip_protocol(part))
            table = generate_searches(world, catalogue, trips.select(TRIP_SCHEMA.names), spec,
                                      np.random.default_rng([spec.seed, 5, index]), searches)
            with fs.open(filesystem.join(staging, f"part-{index:05d}.parquet"), "wb") as out:
                pq.write_table(table, out)
            searches += len(np.unique(table["srch_id"].to_numpy())) if table.num_rows else 0
            rows += table.num_rows
            log.info("searches: trips file %d/%d done, %d searches (%d impressions) so far", index + 1, len(parts),
                     searches, rows)
        summary = {"trips_uri": trips_uri, "spec": spec.model_dump(), "searches": searches, "impressions": rows,
                   "properties": len(catalogue.prop_id)}
        with fs.open(filesystem.join(staging, GENERATOR_FILE), "w") as out:
            json.dump(summary, out, indent=2)
    return summary


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recsys.accommodations.synthetic_searches",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--trips", required=True, help="store URI of synthetic trips (python -m recsys.synthetic_trips)")
    parser.add_argument("--out", required=True, help="store URI of the searches data set directory")
    parser.add_argument("--fraction", type=float, default=1.0, help="share of the reservations that get a search")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        summary = write_searches(args.trips, SearchesSpec(seed=args.seed, fraction=args.fraction), args.out,
                                 overwrite=args.overwrite)
    except (RecsysError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({"uri": args.out, **{k: summary[k] for k in ("searches", "impressions", "properties")}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

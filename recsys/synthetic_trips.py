"""Synthetic multi-destination trips in the schema of the Booking.com data set, with structure worth learning.

The world: cities in countries in regions on a 2-D map, with power-law popularity and a type (beach, city,
mountain, countryside). A trip picks a region (from the booker's country and the affiliate's focus), a theme
(from the booker's country and device) and then walks: each next city is near the current one, popular, of the
trip's theme, ahead in the trip's direction of travel, and never one already visited; now and then the walk
crosses into the neighbouring region.

A first-order Markov chain (last city -> next) learns proximity and popularity, so it beats plain popularity; it
cannot see the heading, the visited set, the theme or the region choice, which a sequence model that reads the
whole trip and the booker's context can. Output is deterministic for a given seed and size.

    python -m recsys.synthetic_trips --out .data/trips/smoke --trips 20000 --seed 7
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
from recsys.errors import RecsysError
from recsys.trips import MIN_TRIP_LENGTH, TRIP_SCHEMA

log = logging.getLogger(__name__)

CITY_TYPES = ("beach", "city", "mountain", "countryside")
DEVICES = ("desktop", "mobile", "tablet")
_DEVICE_SHARE = np.array([0.5, 0.4, 0.1])
# How much each device tilts the trip theme (rows: devices, columns: CITY_TYPES).
_DEVICE_THEME_TILT = np.array([[1.0, 1.0, 1.2, 1.2], [0.8, 1.8, 0.7, 0.7], [1.8, 0.8, 0.8, 1.0]])
_FIRST_CHECKIN = dt.date(2016, 1, 1)
_CHECKIN_SPAN_DAYS = 425


class WorldSpec(BaseModel):
    """Size and shape of the synthetic world. Defaults give a data set in the spirit of the Booking.com one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_cities: int = Field(1000, ge=50, le=100_000)
    num_regions: int = Field(8, ge=2, le=100)
    num_booker_countries: int = Field(6, ge=1, le=50)
    num_affiliates: int = Field(40, ge=1, le=100_000)
    popularity_exponent: float = Field(1.1, gt=0, description="Zipf exponent of city popularity")
    distance_scale: float = Field(3.0, gt=0, description="map distance over which the next city gets e times less likely")
    heading_strength: float = Field(2.5, ge=0, description="pull towards cities ahead in the trip's direction")
    theme_boost: float = Field(4.0, ge=1, description="odds multiplier of a city of the trip's theme")
    region_jump_probability: float = Field(0.08, ge=0, le=1, description="chance a step crosses into the next region")


class TripsSpec(BaseModel):
    """What to generate: how many trips, from which seed, in which world."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trips: int = Field(ge=1)
    seed: int = 0
    world: WorldSpec = WorldSpec()
    trips_per_file: int = Field(50_000, ge=1)


@dataclass(frozen=True)
class World:
    city_ids: np.ndarray  # (C,) int64, Booking-like sparse ids
    city_xy: np.ndarray  # (C, 2) map position
    city_type: np.ndarray  # (C,) index into CITY_TYPES
    city_country: np.ndarray  # (C,) index into country_names
    city_popularity: np.ndarray  # (C,) sums to 1
    country_names: list[str]
    region_cities: np.ndarray  # (R, M) city indices, -1 padded
    region_neighbour: np.ndarray  # (R,) nearest other region
    booker_countries: list[str]
    booker_region_pref: np.ndarray  # (B, R) rows sum to 1
    booker_theme_pref: np.ndarray  # (B, T) rows sum to 1
    booker_share: np.ndarray  # (B,)
    affiliate_ids: np.ndarray  # (A,)
    affiliate_region: np.ndarray  # (A,)
    affiliate_share: np.ndarray  # (A,)


def build_world(spec: WorldSpec, seed: int) -> World:
    """The fixed part of the data: geography, popularity and the preferences of bookers and affiliates."""
    rng = np.random.default_rng([seed, 0])
    n_regions = spec.num_regions
    region_xy = rng.uniform(0, 100, size=(n_regions, 2))
    countries_per_region = rng.integers(3, 7, size=n_regions)
    country_region = np.repeat(np.arange(n_regions), countries_per_region)
    n_countries = len(country_region)
    country_xy = region_xy[country_region] + rng.normal(0, 4.0, size=(n_countries, 2))
    country_names = _country_names(rng, n_countries)

    n_cities = spec.num_cities
    country_share = rng.dirichlet(np.full(n_countries, 2.0))
    city_country = rng.choice(n_countries, size=n_cities, p=country_share)
    city_xy = country_xy[city_country] + rng.normal(0, 1.5, size=(n_cities, 2))
    city_type = rng.choice(len(CITY_TYPES), size=n_cities, p=[0.3, 0.4, 0.15, 0.15])
    rank = rng.permutation(n_cities) + 1
    popularity = rank ** -spec.popularity_exponent
    city_ids = rng.choice(np.arange(1, 70_000), size=n_cities, replace=False).astype(np.int64)

    city_region = country_region[city_country]
    members = [np.flatnonzero(city_region == r) for r in range(n_regions)]
    width = max(len(m) for m in members)
    region_cities = np.full((n_regions, width), -1, dtype=np.int64)
    for r, m in enumerate(members):
        region_cities[r, : len(m)] = m
    distances = np.linalg.norm(region_xy[:, None] - region_xy[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    region_neighbour = distances.argmin(axis=1)

    n_bookers = min(spec.num_booker_countries, n_countries)
    booker_country_idx = rng.choice(n_countries, size=n_bookers, replace=False)
    region_logits = np.zeros((n_bookers, n_regions))
    region_logits[np.arange(n_bookers), country_region[booker_country_idx]] += 2.0
    for b in range(n_bookers):
        region_logits[b, rng.choice(n_regions, size=min(2, n_regions), replace=False)] += 1.0
    booker_region_pref = _softmax(region_logits)
    booker_theme_pref = rng.dirichlet(np.full(len(CITY_TYPES), 1.5), size=n_bookers)
    booker_share = rng.dirichlet(np.full(n_bookers, 3.0))

    n_affiliates = spec.num_affiliates
    affiliate_ids = rng.choice(np.arange(1, 10_000), size=n_affiliates, replace=False).astype(np.int64)
    affiliate_share = (rng.permutation(n_affiliates) + 1.0) ** -1.0
    return World(
        city_ids=city_ids,
        city_xy=city_xy,
        city_type=city_type,
        city_country=city_country,
        city_popularity=popularity / popularity.sum(),
        country_names=country_names,
        region_cities=region_cities,
        region_neighbour=region_neighbour,
        booker_countries=[country_names[i] for i in booker_country_idx],
        booker_region_pref=booker_region_pref,
        booker_theme_pref=booker_theme_pref,
        booker_share=booker_share,
        affiliate_ids=affiliate_ids,
        affiliate_region=rng.integers(0, n_regions, size=n_affiliates),
        affiliate_share=affiliate_share / affiliate_share.sum(),
    )


def generate_batch(world: World, spec: WorldSpec, n_trips: int, rng: np.random.Generator,
                   first_trip: int) -> pa.Table:
    """``n_trips`` trips as reservation rows in :data:`TRIP_SCHEMA`, ordered by trip then check-in."""
    # About one user in four comes back for a second trip, from the same country and device, as in the real data.
    user_local = (np.arange(n_trips) * 4) // 5
    returning = np.r_[False, user_local[1:] == user_local[:-1]]
    booker = rng.choice(len(world.booker_countries), size=n_trips, p=world.booker_share)
    device = rng.choice(len(DEVICES), size=n_trips, p=_DEVICE_SHARE)
    booker[returning] = booker[np.flatnonzero(returning) - 1]
    device[returning] = device[np.flatnonzero(returning) - 1]
    affiliate = rng.choice(len(world.affiliate_ids), size=n_trips, p=world.affiliate_share)
    theme_p = world.booker_theme_pref[booker] * _DEVICE_THEME_TILT[device]
    theme = sample_rows(rng, np.log(theme_p))
    region = sample_rows(rng, np.log(world.booker_region_pref[booker]))
    follows_affiliate = rng.random(n_trips) < 0.4
    region = np.where(follows_affiliate, world.affiliate_region[affiliate], region)
    length = MIN_TRIP_LENGTH + np.minimum(rng.geometric(0.35, size=n_trips) - 1, 11)

    max_len = int(length.max())
    path = np.full((n_trips, max_len), -1, dtype=np.int64)
    visited = np.zeros((n_trips, len(world.city_ids)), dtype=bool)
    log_pop = np.log(world.city_popularity)
    for step in range(max_len):
        active = np.flatnonzero(step < length)
        if step > 0:
            jump = rng.random(len(active)) < spec.region_jump_probability
            region[active[jump]] = world.region_neighbour[region[active[jump]]]
        cand = world.region_cities[region[active]]  # (n, M)
        valid = cand >= 0
        safe = np.where(valid, cand, 0)
        score = 0.8 * log_pop[safe]
        score += np.where(world.city_type[safe] == theme[active, None], np.log(spec.theme_boost), 0.0)
        if step > 0:
            here = world.city_xy[path[active, step - 1]]
            offset = world.city_xy[safe] - here[:, None]
            dist = np.linalg.norm(offset, axis=-1)
            score -= dist / spec.distance_scale
            if step > 1:
                heading = here - world.city_xy[path[active, step - 2]]
                heading /= np.linalg.norm(heading, axis=-1, keepdims=True) + 1e-9
                cosine = (offset * heading[:, None]).sum(-1) / (dist + 1e-9)
                score += spec.heading_strength * cosine
        score = np.where(valid & ~visited[active[:, None], safe], score, -np.inf)
        pick = sample_rows(rng, score)
        dead_end = ~np.isfinite(score[np.arange(len(active)), pick])
        if dead_end.any():  # a small region ran out of unvisited cities: hop to any unvisited city
            for i in np.flatnonzero(dead_end):
                options = np.flatnonzero(~visited[active[i]])
                safe[i, pick[i]] = options[np.argmax(log_pop[options])]
        chosen = safe[np.arange(len(active)), pick]
        path[active, step] = chosen
        visited[active, chosen] = True
    user = 1_000_000 + first_trip + user_local
    utrip = np.array([f"{u}_{1 + r}" for u, r in zip(user, returning)], dtype=object)
    return _to_table(world, rng, path, length, booker, device, affiliate, user, utrip)


def _to_table(world, rng, path, length, booker, device, affiliate, user, utrip) -> pa.Table:
    n_trips = len(length)
    rows = int(length.sum())
    trip_of_row = np.repeat(np.arange(n_trips), length)
    step_of_row = np.arange(rows) - np.repeat(np.cumsum(length) - length, length)
    city = path[trip_of_row, step_of_row]

    nights = rng.integers(1, 5, size=rows)
    trip_start = rng.integers(0, _CHECKIN_SPAN_DAYS, size=n_trips)
    nights_before = np.cumsum(nights) - nights
    trip_offset = nights_before - np.repeat(nights_before[np.cumsum(length) - length], length)
    checkin_days = trip_start[trip_of_row] + trip_offset
    epoch_offset = (_FIRST_CHECKIN - dt.date(1970, 1, 1)).days
    checkin = (checkin_days + epoch_offset).astype(np.int32)

    booker_names = np.array(world.booker_countries, dtype=object)
    country_names = np.array(world.country_names, dtype=object)
    columns = {
        "user_id": pa.array(user[trip_of_row], pa.int64()),
        "checkin": pa.array(checkin, pa.int32()).cast(pa.date32()),
        "checkout": pa.array(checkin + nights.astype(np.int32), pa.int32()).cast(pa.date32()),
        "affiliate_id": pa.array(world.affiliate_ids[affiliate][trip_of_row], pa.int64()),
        "device_class": pa.array(np.array(DEVICES, dtype=object)[device][trip_of_row], pa.string()),
        "booker_country": pa.array(booker_names[booker][trip_of_row], pa.string()),
        "hotel_country": pa.array(country_names[world.city_country[city]], pa.string()),
        "city_id": pa.array(world.city_ids[city], pa.int64()),
        "utrip_id": pa.array(utrip[trip_of_row], pa.string()),
    }
    return pa.table(columns, schema=TRIP_SCHEMA)


def write_trips(spec: TripsSpec, uri: str, overwrite: bool = False) -> int:
    """Generate ``spec`` into ``uri`` as ``part-NNNNN.parquet`` files; returns the number of reservations.

    Written through :func:`recsys.filesystem.new_directory`: a reader never sees half a data set and a failed run
    leaves nothing behind.
    """
    written = 0
    with filesystem.new_directory(uri, overwrite) as (fs, staging):
        world = build_world(spec.world, spec.seed)
        n_files = -(-spec.trips // spec.trips_per_file)
        for index in range(n_files):
            first = index * spec.trips_per_file
            count = min(spec.trips_per_file, spec.trips - first)
            table = generate_batch(world, spec.world, count, np.random.default_rng([spec.seed, 1, index]), first)
            with fs.open(filesystem.join(staging, f"part-{index:05d}.parquet"), "wb") as out:
                pq.write_table(table, out)
            written += table.num_rows
            log.info("trips %d/%d written (%d reservations) to %s", first + count, spec.trips, written, uri)
        with fs.open(filesystem.join(staging, "_generator.json"), "w") as out:
            json.dump({"spec": spec.model_dump(), "reservations": written}, out, indent=2)
    return written


def sample_rows(rng: np.random.Generator, logits: np.ndarray) -> np.ndarray:
    """One categorical draw per row of unnormalised log-weights (Gumbel-max: exact and vectorised)."""
    return np.argmax(logits + rng.gumbel(size=logits.shape), axis=-1)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _country_names(rng: np.random.Generator, n: int) -> list[str]:
    syllables = ["al", "bor", "ca", "dri", "el", "fa", "gon", "hy", "is", "ko", "lu", "mar", "no", "or", "pe",
                 "qua", "ra", "sel", "tor", "u", "va", "wen", "xi", "yo", "zan"]
    names: list[str] = []
    while len(names) < n:
        name = "".join(rng.choice(syllables, size=rng.integers(2, 4))).capitalize() + "ia"
        if name not in names:
            names.append(name)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recsys.synthetic_trips", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="store URI of the data set directory (file:// path or hdfs://)")
    parser.add_argument("--trips", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cities", type=int, default=WorldSpec.model_fields["num_cities"].default)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        spec = TripsSpec(trips=args.trips, seed=args.seed, world=WorldSpec(num_cities=args.cities))
        rows = write_trips(spec, args.out, overwrite=args.overwrite)
    except (RecsysError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({"uri": args.out, "trips": spec.trips, "reservations": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Each user's open trip, and trips as the model's matrix: the columnar code the scoring actors run, without Ray."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from batch.open_trips import COLUMNS, OPEN_TRIP_SCHEMA, latest_trips
from recsys.columns import trip_matrix
from recsys.destinations.runtime import pad_trips


def reservations(*rows: tuple) -> pa.Table:
    """(user, trip, day, city) rows; the other columns filled in."""
    base = dt.date(2026, 1, 1)
    return pa.table({
        "user_id": pa.array([r[0] for r in rows], pa.int64()),
        "utrip_id": [r[1] for r in rows],
        "checkin": pa.array([base + dt.timedelta(days=r[2]) for r in rows], pa.date32()),
        "checkout": pa.array([base + dt.timedelta(days=r[2] + 1) for r in rows], pa.date32()),
        "city_id": pa.array([r[3] for r in rows], pa.int64()),
        "booker_country": [f"country-{r[2]}" for r in rows],
        "device_class": ["mobile"] * len(rows),
        "affiliate_id": pa.array([None if r[2] == 9 else 7 for r in rows], pa.int64()),
    }).select(COLUMNS)


def test_a_user_is_scored_once_on_the_trip_of_their_latest_reservation_in_checkin_order():
    table = reservations((2, "b1", 5, 50), (1, "a1", 3, 13), (1, "a2", 1, 21), (1, "a1", 1, 11), (1, "a2", 2, 22),
                         (2, "b1", 4, 40), (1, "a1", 2, 12), (3, "c1", 9, 90))
    out = latest_trips(table)
    assert out.schema == OPEN_TRIP_SCHEMA
    assert out.to_pylist() == [
        {"user_id": 1, "utrip_id": "a1", "trip_cities": [11, 12, 13], "booker_country": "country-3",
         "device_class": "mobile", "affiliate_id": 7, "last_checkout": dt.date(2026, 1, 5)},
        {"user_id": 2, "utrip_id": "b1", "trip_cities": [40, 50], "booker_country": "country-5",
         "device_class": "mobile", "affiliate_id": 7, "last_checkout": dt.date(2026, 1, 7)},
        {"user_id": 3, "utrip_id": "c1", "trip_cities": [90], "booker_country": "country-9",
         "device_class": "mobile", "affiliate_id": 0, "last_checkout": dt.date(2026, 1, 11)},
    ]


def test_reservations_without_a_user_trip_or_city_are_left_out():
    table = reservations((1, "a1", 1, 11), (1, "a1", 2, 12))
    broken = pa.table({**{c: table[c] for c in COLUMNS},
                       "city_id": pa.array([11, None], pa.int64())}).select(COLUMNS)
    assert latest_trips(broken)["trip_cities"].to_pylist() == [[11]]
    assert latest_trips(broken.slice(1)).num_rows == 0


@pytest.mark.parametrize("width", [1, 3, 8])
def test_the_trip_matrix_is_what_pad_trips_makes(width):
    trips = [[5, 6, 7, 8, 9], [1], [2, 3], [4, 5, 6]]
    column = pa.chunked_array([pa.array(trips[:2], pa.list_(pa.int64())), pa.array(trips[2:], pa.list_(pa.int64()))])
    np.testing.assert_array_equal(trip_matrix(column, width), pad_trips(trips, width=width))
    assert trip_matrix(pa.array([], pa.list_(pa.int64())), width).shape == (0, width)

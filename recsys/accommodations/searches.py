"""The search table: one row per property shown in a search, in the shape of the public hotel-ranking data sets
(Expedia's "Personalize Expedia Hotel Searches", ICDM 2013), with the booker's context of the Booking.com trips.

A search (``srch_id``) lists the properties shown for one stay in one city, in the order they were shown
(``position``, from 1), with what the visitor did: ``click_bool``, ``booking_bool`` (one booking per search). Property
columns (``prop_*``, ``amenity_*``) are the property's static description; ``price_usd`` is the nightly price shown in
that search. Everything that reads search data checks it against :data:`SEARCH_SCHEMA` first.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from recsys.tables import check_schema

PROPERTY_TYPES = ("hotel", "apartment", "bnb", "hostel", "resort")
AMENITIES = ("pool", "breakfast", "kitchen", "parking", "spa", "family_rooms")
SATURDAY = 5  # datetime.date.weekday()
BOOKING_RELEVANCE, CLICK_RELEVANCE = 5, 1  # graded relevance of the Expedia competition's NDCG

SEARCH_SCHEMA = pa.schema([
    pa.field("srch_id", pa.int64()),
    pa.field("search_date", pa.date32()),
    pa.field("user_id", pa.int64()),
    pa.field("utrip_id", pa.string()),
    pa.field("booker_country", pa.string()),
    pa.field("device_class", pa.string()),
    pa.field("srch_destination_id", pa.int64()),  # the city searched (city_id of the trips)
    pa.field("srch_checkin", pa.date32()),
    pa.field("srch_length_of_stay", pa.int32()),
    pa.field("srch_booking_window", pa.int32()),  # days between the search and the check-in
    pa.field("srch_adults_count", pa.int32()),
    pa.field("srch_children_count", pa.int32()),
    pa.field("srch_room_count", pa.int32()),
    pa.field("srch_saturday_night_bool", pa.bool_()),
    pa.field("prop_id", pa.int64()),
    pa.field("prop_country", pa.string()),
    pa.field("prop_type", pa.string()),
    pa.field("prop_starrating", pa.int32()),
    pa.field("prop_review_score", pa.float32()),  # 1 to 5, in halves
    pa.field("prop_location_score", pa.float32()),  # 0 to 5: closeness to the centre
    pa.field("prop_distance_km", pa.float32()),
    *(pa.field(f"amenity_{name}", pa.bool_()) for name in AMENITIES),
    pa.field("price_usd", pa.float32()),
    pa.field("position", pa.int32()),
    pa.field("click_bool", pa.bool_()),
    pa.field("booking_bool", pa.bool_()),
])


def check_search_schema(schema: pa.Schema, source: str) -> None:
    """Raise :class:`~recsys.errors.DataError` naming ``source`` and the first column that does not match
    :data:`SEARCH_SCHEMA`."""
    check_schema(schema, SEARCH_SCHEMA, source)


def includes_saturday_night(checkin: np.ndarray, nights: np.ndarray) -> np.ndarray:
    """``srch_saturday_night_bool`` for stays of ``nights`` from ``checkin`` (days since 1970-01-01)."""
    weekday = (checkin + dt.date(1970, 1, 1).weekday()) % 7
    return (nights >= 7) | (((SATURDAY - weekday) % 7) < nights)

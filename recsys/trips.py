"""The trip table: the public schema of the Booking.com multi-destination trips data set.

One row per reservation; a trip (``utrip_id``) is a run of consecutive reservations of one user, ordered by
``checkin``. Everything that reads trip data checks it against :data:`TRIP_SCHEMA` first, so a wrong file fails
with the column at fault instead of deep inside training.
"""

from __future__ import annotations

import pyarrow as pa

from recsys.tables import check_schema

TRIP_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.int64()),
        pa.field("checkin", pa.date32()),
        pa.field("checkout", pa.date32()),
        pa.field("affiliate_id", pa.int64()),
        pa.field("device_class", pa.string()),
        pa.field("booker_country", pa.string()),
        pa.field("hotel_country", pa.string()),
        pa.field("city_id", pa.int64()),
        pa.field("utrip_id", pa.string()),
    ]
)

MIN_TRIP_LENGTH = 4


def check_trip_schema(schema: pa.Schema, source: str) -> None:
    """Raise :class:`~recsys.errors.DataError` naming ``source`` and the first column that does not match
    :data:`TRIP_SCHEMA`."""
    check_schema(schema, TRIP_SCHEMA, source)

"""The trip table: the public schema of the Booking.com multi-destination trips data set.

One row per reservation; a trip (``utrip_id``) is a run of consecutive reservations of one user, ordered by
``checkin``. Everything that reads trip data checks it against :data:`TRIP_SCHEMA` first, so a wrong file fails
with the column at fault instead of deep inside training.
"""

from __future__ import annotations

import pyarrow as pa

from recsys.errors import DataError

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
    """Raise :class:`DataError` naming ``source`` and the first column that does not match :data:`TRIP_SCHEMA`.

    Extra columns are allowed (real exports carry more); missing columns and wrong types are not.
    """
    for field in TRIP_SCHEMA:
        index = schema.get_field_index(field.name)
        if index < 0:
            raise DataError(f"{source}: column '{field.name}' is missing; expected columns {TRIP_SCHEMA.names}")
        actual = schema.field(index).type
        if not _compatible(actual, field.type):
            raise DataError(f"{source}: column '{field.name}' has type {actual}, expected {field.type}")


def _compatible(actual: pa.DataType, expected: pa.DataType) -> bool:
    if actual == expected:
        return True
    # Parquet writers differ in integer width and string flavour; the values are what matter.
    if pa.types.is_integer(expected):
        return pa.types.is_integer(actual)
    if pa.types.is_string(expected):
        return pa.types.is_string(actual) or pa.types.is_large_string(actual)
    return False

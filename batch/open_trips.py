"""The trips to score: each user's latest trip, as one row, read with Ray Data from any store.

A user's latest trip is the one holding their latest reservation; it is taken as still open, and its cities (in
check-in order) are the history the next destination is predicted from. The reservations are hash-partitioned by
``user_id`` (every reservation of a user in one block), then each block is reduced with vectorised Arrow/numpy
code: no Python per user. Reservations without a user, trip or city cannot be placed and are left out; the job
counts the rows it read and the trips it scored.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray.data

from recsys import filesystem

COLUMNS = ["user_id", "utrip_id", "checkin", "checkout", "city_id", "booker_country", "device_class",
           "affiliate_id"]

OPEN_TRIP_SCHEMA = pa.schema([
    pa.field("user_id", pa.int64()),
    pa.field("utrip_id", pa.string()),
    pa.field("trip_cities", pa.list_(pa.int64())),  # oldest first
    pa.field("booker_country", pa.string()),  # of the trip's last reservation, as the next one is unknown
    pa.field("device_class", pa.string()),
    pa.field("affiliate_id", pa.int64()),  # 0: none
    pa.field("last_checkout", pa.date32()),  # where the next stay starts
])


def read_reservations(paths: list[str], uri: str) -> ray.data.Dataset:
    """The columns this job needs of the reservations in ``paths`` (Parquet files under ``uri``)."""
    fs, _ = filesystem.resolve(uri)
    return ray.data.read_parquet(paths, filesystem=filesystem.to_pyarrow(fs), columns=COLUMNS)


def open_trips(reservations: ray.data.Dataset, partitions: int) -> ray.data.Dataset:
    """One row per user (:data:`OPEN_TRIP_SCHEMA`): the reservations hash-partitioned by user into
    ``partitions`` blocks, each block reduced by :func:`latest_trips`."""
    by_user = reservations.repartition(partitions, keys=["user_id"])
    return by_user.map_batches(latest_trips, batch_size=None, batch_format="pyarrow")


def latest_trips(block: pa.Table) -> pa.Table:
    """Each user's latest trip in ``block`` as one row; every reservation of a user must be in the block."""
    block = block.filter(pc.and_(pc.and_(pc.is_valid(block["user_id"]), pc.is_valid(block["utrip_id"])),
                                 pc.is_valid(block["city_id"])))
    if block.num_rows == 0:
        return OPEN_TRIP_SCHEMA.empty_table()
    block = block.sort_by([("user_id", "ascending"), ("checkin", "ascending"), ("utrip_id", "ascending")])
    user = block["user_id"].to_numpy()
    trip = np.asarray(block["utrip_id"].to_numpy(zero_copy_only=False), dtype=object)
    user_start = np.r_[True, user[1:] != user[:-1]]
    user_last = np.flatnonzero(np.r_[user_start[1:], True])
    group = np.cumsum(user_start) - 1
    # The trip of each user's last reservation, and the reservations of that trip (already in check-in order).
    keep = np.flatnonzero(trip == trip[user_last][group])
    kept_user = user[keep]
    starts = np.flatnonzero(np.r_[True, kept_user[1:] != kept_user[:-1]])
    lasts = np.r_[starts[1:], len(keep)] - 1
    offsets = pa.array(np.r_[starts, len(keep)].astype(np.int32))
    cities = pa.ListArray.from_arrays(offsets, pa.array(block["city_id"].to_numpy()[keep], type=pa.int64()))
    last = keep[lasts]
    return pa.table({
        "user_id": pa.array(user[last], type=pa.int64()),
        "utrip_id": block["utrip_id"].take(last),
        "trip_cities": cities,
        "booker_country": block["booker_country"].take(last),
        "device_class": block["device_class"].take(last),
        "affiliate_id": pc.fill_null(block["affiliate_id"].take(last), 0),
        "last_checkout": pc.coalesce(block["checkout"].take(last), block["checkin"].take(last)),
    }, schema=OPEN_TRIP_SCHEMA)

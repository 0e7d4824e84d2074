"""From reservations to next-destination examples, and the vocabularies that index them.

An example is a trip prefix: the last ``history_length`` cities before a reservation (left-padded with
:data:`PAD_CITY`), the booker's context of that reservation, and the city booked (the label). Trips are assigned
to train / validation / test by a stable hash of ``utrip_id`` (:mod:`recsys.splits`). Evaluation follows the Booking.com challenge: the last city of a held-out trip is
hidden and predicted from all the cities before it.

This module is numpy and pyarrow only: it runs inside Ray Data tasks, which should not pay for importing
TensorFlow.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

from recsys.splits import split_of

PAD_CITY = 0
FEATURES = ("history", "booker_country", "device_class", "affiliate_id")
LABEL = "label"


def examples_from_trips(block: pa.Table, history_length: int) -> dict[str, np.ndarray]:
    """Every next-city example of the trips in ``block``; each trip must lie wholly inside the block.

    Columns: ``history`` (n, history_length) int64, ``label``, ``booker_country``, ``device_class``,
    ``affiliate_id`` (the context of the reservation being predicted, as the challenge gives it), ``step`` (the
    label's 0-based position in its trip), ``is_last`` (the label ends the trip) and ``split``.
    """
    block = block.filter(pc.and_(pc.is_valid(block["city_id"]), pc.is_valid(block["utrip_id"])))
    block = block.sort_by([("utrip_id", "ascending"), ("checkin", "ascending")])
    cities = block["city_id"].to_numpy()
    trip = block["utrip_id"].to_numpy(zero_copy_only=False)
    n = len(cities)
    if n == 0:
        return _empty(history_length)
    starts = np.flatnonzero(np.r_[True, trip[1:] != trip[:-1]])
    lengths = np.diff(np.r_[starts, n])
    trip_start = np.repeat(starts, lengths)
    step = np.arange(n) - trip_start
    is_last = np.r_[starts[1:] - 1, n - 1]
    last = np.zeros(n, dtype=bool)
    last[is_last] = True

    rows = np.flatnonzero(step > 0)
    positions = rows[:, None] - history_length + np.arange(history_length)
    in_trip = positions >= trip_start[rows, None]
    history = np.where(in_trip, cities[np.maximum(positions, 0)], PAD_CITY).astype(np.int64)
    return {
        "history": history,
        LABEL: cities[rows].astype(np.int64),
        "booker_country": _strings(block["booker_country"], rows),
        "device_class": _strings(block["device_class"], rows),
        "affiliate_id": block["affiliate_id"].fill_null(0).to_numpy()[rows].astype(np.int64),
        "step": step[rows].astype(np.int32),
        "is_last": last[rows],
        "split": split_of(trip[rows]),
    }


def _strings(column: pa.ChunkedArray, rows: np.ndarray) -> np.ndarray:
    return np.asarray(column.fill_null("").to_numpy(zero_copy_only=False), dtype=object)[rows]


def _empty(history_length: int) -> dict[str, np.ndarray]:
    return {
        "history": np.zeros((0, history_length), dtype=np.int64),
        LABEL: np.zeros(0, dtype=np.int64),
        "booker_country": np.zeros(0, dtype=object),
        "device_class": np.zeros(0, dtype=object),
        "affiliate_id": np.zeros(0, dtype=np.int64),
        "step": np.zeros(0, dtype=np.int32),
        "is_last": np.zeros(0, dtype=bool),
        "split": np.zeros(0, dtype=object),
    }


class Vocabulary(BaseModel):
    """The known values of each categorical feature, most frequent first.

    Index layout (shared by training and the exported model): cities 0 = padding, 1 = out of vocabulary,
    ``2 + i`` = ``cities[i]``; the other features 0 = out of vocabulary, ``1 + i`` = ``values[i]``.
    Unknown values at serving time fall into the out-of-vocabulary slot instead of failing.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    cities: list[int]
    booker_countries: list[str]
    device_classes: list[str]
    affiliates: list[int]

    @classmethod
    def fit(cls, train: dict[str, np.ndarray], min_city_count: int = 1) -> Vocabulary:
        """Build from training examples (columns as :func:`examples_from_trips` makes them).

        Cities seen fewer than ``min_city_count`` times stay out of vocabulary, so the out-of-vocabulary slot
        is trained on rare cities instead of never being seen before serving.
        """
        first_cities = train["history"][train["step"] == 1, -1] if len(train[LABEL]) else train[LABEL]
        return cls(
            cities=_frequent(np.concatenate([train[LABEL], first_cities]), min_city_count),
            booker_countries=_frequent(train["booker_country"], 1),
            device_classes=_frequent(train["device_class"], 1),
            affiliates=_frequent(train["affiliate_id"], 1),
        )

    def sizes(self) -> dict[str, int]:
        """Embedding table sizes, including the reserved slots."""
        return {
            "cities": len(self.cities) + 2,
            "booker_countries": len(self.booker_countries) + 1,
            "device_classes": len(self.device_classes) + 1,
            "affiliates": len(self.affiliates) + 1,
        }


def _frequent(values: np.ndarray, min_count: int) -> list:
    keys, counts = np.unique(values, return_counts=True)
    # Most frequent first, ties by value, so the same data always gives the same vocabulary. Empty strings and
    # the padding id stand for missing values: those belong in the out-of-vocabulary slot.
    ranked = sorted(zip(keys.tolist(), counts.tolist()), key=lambda kc: (-kc[1], kc[0]))
    return [k for k, c in ranked if c >= min_count and k not in ("", PAD_CITY)]

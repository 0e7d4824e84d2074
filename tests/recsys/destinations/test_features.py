from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from recsys.destinations.features import PAD_CITY, Vocabulary, examples_from_trips
from recsys.splits import split_of
from recsys.trips import TRIP_SCHEMA


def _trips(*trips: tuple[str, list[int]], country: str = "Elbonia", device: str = "mobile") -> pa.Table:
    rows = []
    for utrip, cities in trips:
        for step, city in enumerate(cities):
            day = dt.date(2016, 1, 1) + dt.timedelta(days=step)
            rows.append({"user_id": 1, "checkin": day, "checkout": day + dt.timedelta(days=1), "affiliate_id": 9,
                         "device_class": device, "booker_country": country, "hotel_country": "Gondal",
                         "city_id": city, "utrip_id": utrip})
    return pa.Table.from_pylist(rows, schema=TRIP_SCHEMA)


def test_each_reservation_after_the_first_is_an_example_of_its_left_padded_history():
    examples = examples_from_trips(_trips(("t1", [11, 12, 13, 14])), history_length=3)
    assert examples["history"].tolist() == [[0, 0, 11], [0, 11, 12], [11, 12, 13]]
    assert examples["label"].tolist() == [12, 13, 14]
    assert examples["step"].tolist() == [1, 2, 3]
    assert examples["is_last"].tolist() == [False, False, True]
    assert examples["booker_country"].tolist() == ["Elbonia"] * 3
    assert examples["affiliate_id"].tolist() == [9] * 3


def test_trips_are_ordered_by_checkin_and_never_mixed():
    shuffled = _trips(("b", [21, 22]), ("a", [11, 12, 13])).take([4, 0, 3, 2, 1])
    examples = examples_from_trips(shuffled, history_length=2)
    assert examples["history"].tolist() == [[0, 11], [11, 12], [0, 21]]
    assert examples["label"].tolist() == [12, 13, 22]


def test_single_reservation_trips_and_empty_blocks_give_no_examples():
    assert len(examples_from_trips(_trips(("solo", [5])), history_length=4)["label"]) == 0
    empty = examples_from_trips(_trips(("solo", [5])).slice(0, 0), history_length=4)
    assert empty["history"].shape == (0, 4)


def test_splits_are_stable_and_roughly_85_5_10():
    ids = [f"{u}_1" for u in range(20_000)]
    first, second = split_of(ids), split_of(ids)
    assert (first == second).all()
    share = {name: (first == name).mean() for name in ("train", "validation", "test")}
    assert share["train"] == pytest.approx(0.85, abs=0.02)
    assert share["validation"] == pytest.approx(0.05, abs=0.01)
    assert share["test"] == pytest.approx(0.10, abs=0.01)


def test_vocabulary_orders_by_frequency_and_leaves_rare_cities_out():
    examples = examples_from_trips(_trips(("a", [1, 2, 3]), ("b", [1, 2, 4]), ("c", [5, 2])), history_length=2)
    vocabulary = Vocabulary.fit(examples, min_city_count=2)
    assert vocabulary.cities == [2, 1]  # 2 is booked three times, 1 starts two trips; 3, 4, 5 once each
    assert vocabulary.booker_countries == ["Elbonia"]
    assert vocabulary.sizes() == {"cities": 4, "booker_countries": 2, "device_classes": 2, "affiliates": 2}


def test_missing_values_are_not_vocabulary_entries():
    examples = {"history": np.array([[PAD_CITY, 7]]), "label": np.array([8]), "step": np.array([1]),
                "booker_country": np.array([""], dtype=object), "device_class": np.array(["mobile"], dtype=object),
                "affiliate_id": np.array([0])}
    vocabulary = Vocabulary.fit(examples)
    assert vocabulary.booker_countries == []
    assert vocabulary.affiliates == []
    assert sorted(vocabulary.cities) == [7, 8]

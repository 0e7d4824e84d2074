"""From impression rows to ranking lists, the vocabularies that index them, and the catalogue of properties.

A list is one search: its context (booker, device, city, stay, party) and up to ``list_size`` shown properties,
padded, with their features, the position each was shown at, and its graded relevance (booking 5, click 1, as in
the Expedia competition). Searches are assigned to train / validation / test by a stable hash of ``srch_id``.

This module is numpy and pyarrow only: it runs inside Ray Data tasks, which should not pay for importing
TensorFlow.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

from recsys.accommodations.searches import AMENITIES, BOOKING_RELEVANCE, CLICK_RELEVANCE, PROPERTY_TYPES
from recsys.splits import split_of

CONTEXT = ("booker_country", "device_class", "city_id", "nights", "adults", "children", "rooms", "saturday_night")
ITEMS = ("prop_id", "prop_type", "stars", "review", "location", "distance", "amenities", "price", "position")
RELEVANCE = "relevance"


def lists_from_searches(block: pa.Table, list_size: int) -> dict[str, np.ndarray]:
    """Every search of ``block`` as one padded list; each search must lie wholly inside the block.

    Item columns are (n, list_size) (``amenities`` (n, list_size, A)), padded with prop_id 0 and relevance 0;
    context columns are (n,). ``split`` says where the search belongs."""
    block = block.sort_by([("srch_id", "ascending"), ("position", "ascending")])
    search = block["srch_id"].to_numpy()
    n_rows = len(search)
    if n_rows == 0:
        return _empty(list_size)
    starts = np.flatnonzero(np.r_[True, search[1:] != search[:-1]])
    slot = np.arange(n_rows) - np.repeat(starts, np.diff(np.r_[starts, n_rows]))
    keep = slot < list_size
    row_of = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, n_rows]))[keep]
    slot = slot[keep]
    n = len(starts)

    def items(values: np.ndarray, dtype, fill=0) -> np.ndarray:
        out = np.full((n, list_size) + values.shape[1:], fill, dtype=dtype)
        out[row_of, slot] = values[keep]
        return out

    kind = {name: i + 1 for i, name in enumerate(PROPERTY_TYPES)}  # 0: unknown type
    relevance = np.where(block["booking_bool"].to_numpy(), BOOKING_RELEVANCE,
                         np.where(block["click_bool"].to_numpy(), CLICK_RELEVANCE, 0))
    amenities = np.stack([block[f"amenity_{a}"].to_numpy(zero_copy_only=False) for a in AMENITIES], axis=1)
    first = starts
    return {
        "srch_id": search[first],
        "booker_country": _strings(block["booker_country"])[first],
        "device_class": _strings(block["device_class"])[first],
        "city_id": block["srch_destination_id"].to_numpy()[first].astype(np.int64),
        "nights": block["srch_length_of_stay"].to_numpy()[first].astype(np.float32),
        "adults": block["srch_adults_count"].to_numpy()[first].astype(np.float32),
        "children": block["srch_children_count"].to_numpy()[first].astype(np.float32),
        "rooms": block["srch_room_count"].to_numpy()[first].astype(np.float32),
        "saturday_night": block["srch_saturday_night_bool"].to_numpy(zero_copy_only=False)[first].astype(np.float32),
        "prop_id": items(block["prop_id"].to_numpy().astype(np.int64), np.int64),
        "prop_type": items(np.array([kind.get(t, 0) for t in block["prop_type"].to_pylist()]), np.int64),
        "stars": items(block["prop_starrating"].to_numpy().astype(np.float32), np.float32),
        "review": items(block["prop_review_score"].to_numpy().astype(np.float32), np.float32),
        "location": items(block["prop_location_score"].to_numpy().astype(np.float32), np.float32),
        "distance": items(block["prop_distance_km"].to_numpy().astype(np.float32), np.float32),
        "amenities": items(amenities.astype(np.float32), np.float32),
        "price": items(block["price_usd"].to_numpy().astype(np.float32), np.float32),
        "position": items(block["position"].to_numpy().astype(np.int64), np.int64),
        RELEVANCE: items(relevance.astype(np.float32), np.float32),
        "split": split_of(search[first]),
    }


def _strings(column: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(column, "").to_pylist(), dtype=object)


def _empty(list_size: int) -> dict[str, np.ndarray]:
    item = np.zeros((0, list_size))
    return {"srch_id": np.zeros(0, np.int64), **{c: np.zeros(0, dtype=object) for c in CONTEXT[:2]},
            "city_id": np.zeros(0, np.int64), **{c: np.zeros(0, np.float32) for c in CONTEXT[3:]},
            "prop_id": item.astype(np.int64), "prop_type": item.astype(np.int64),
            **{c: item.astype(np.float32) for c in ("stars", "review", "location", "distance", "price", RELEVANCE)},
            "amenities": np.zeros((0, list_size, len(AMENITIES)), np.float32), "position": item.astype(np.int64),
            "split": np.zeros(0, dtype=object)}


class Vocabulary(BaseModel):
    """The known values of each categorical feature, most frequent first. Index layout (training and the exported
    model share it): 0 is the out-of-vocabulary slot, ``1 + i`` is ``values[i]``; for properties 0 also pads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    properties: list[int]
    cities: list[int]
    booker_countries: list[str]
    device_classes: list[str]

    @classmethod
    def fit(cls, lists: dict[str, np.ndarray], min_property_count: int = 1) -> Vocabulary:
        """From training lists; properties shown fewer than ``min_property_count`` times share the
        out-of-vocabulary slot, which is so trained on rare properties instead of never being seen."""
        shown = lists["prop_id"][lists["prop_id"] != 0]
        return cls(properties=_frequent(shown, min_property_count), cities=_frequent(lists["city_id"], 1),
                   booker_countries=_frequent(lists["booker_country"], 1),
                   device_classes=_frequent(lists["device_class"], 1))

    def sizes(self) -> dict[str, int]:
        return {"properties": len(self.properties) + 1, "cities": len(self.cities) + 1,
                "booker_countries": len(self.booker_countries) + 1, "device_classes": len(self.device_classes) + 1,
                "property_types": len(PROPERTY_TYPES) + 1}


def _frequent(values: np.ndarray, min_count: int) -> list:
    keys, counts = np.unique(values, return_counts=True)
    ranked = sorted(zip(keys.tolist(), counts.tolist()), key=lambda kc: (-kc[1], kc[0]))
    return [k for k, c in ranked if c >= min_count and k not in ("", 0)]

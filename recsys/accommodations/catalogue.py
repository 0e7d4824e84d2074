"""The properties a version of the ranking model knows: their static features, city and typical price.

Built from the training searches (a property's features as shown, its median nightly price), published with the
version as ``catalogue.parquet`` and built into its SavedModel as lookup tables, so that serving needs no other
store: a caller sends property ids (and may send today's prices); without candidates the city's catalogue is
ranked. Prices are compared with the city's median: a property is expensive or cheap *for its city*.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.accommodations.searches import AMENITIES

CATALOGUE_FILE = "catalogue.parquet"
_STATIC = ("prop_type", "stars", "review", "location", "distance")


@dataclass(frozen=True)
class Catalogue:
    """One row per property, sorted by ``prop_id``. ``prop_type`` is 1 + the index in PROPERTY_TYPES."""

    prop_id: np.ndarray
    city_id: np.ndarray
    prop_type: np.ndarray
    stars: np.ndarray
    review: np.ndarray
    location: np.ndarray
    distance: np.ndarray
    amenities: np.ndarray  # (P, len(AMENITIES))
    price: np.ndarray  # median nightly price shown

    @classmethod
    def from_lists(cls, lists: dict[str, np.ndarray]) -> Catalogue:
        """From ranking lists (:func:`recsys.accommodations.features.lists_from_searches`)."""
        shown = lists["prop_id"] != 0
        props = lists["prop_id"][shown]
        city = np.broadcast_to(lists["city_id"][:, None], lists["prop_id"].shape)[shown]
        order = np.argsort(props, kind="stable")
        props, first = np.unique(props[order], return_index=True)
        take = order[first]
        price = lists["price"][shown][order]
        bounds = np.r_[first, len(order)]
        medians = np.array([np.median(price[a:b]) for a, b in zip(bounds[:-1], bounds[1:])], dtype=np.float32)
        return cls(prop_id=props, city_id=city[take], **{c: lists[c][shown][take] for c in _STATIC},
                   amenities=lists["amenities"][shown][take], price=medians)

    def __len__(self) -> int:
        return len(self.prop_id)

    def city_medians(self) -> dict[int, float]:
        """Each city's median of its properties' prices."""
        cities, inverse = np.unique(self.city_id, return_inverse=True)
        return {int(city): float(np.median(self.price[inverse == i])) for i, city in enumerate(cities)}

    def of_city(self, city_id: int) -> np.ndarray:
        """The property ids of a city (empty for an unknown city)."""
        return self.prop_id[self.city_id == city_id]

    def write(self, path: Path) -> None:
        columns = {"prop_id": self.prop_id, "city_id": self.city_id, **{c: getattr(self, c) for c in _STATIC},
                   **{f"amenity_{a}": self.amenities[:, i] for i, a in enumerate(AMENITIES)}, "price": self.price}
        pq.write_table(pa.table(columns), path)

    @classmethod
    def read(cls, path: Path) -> Catalogue:
        table = pq.read_table(path)
        column = {name: table[name].to_numpy() for name in table.column_names}
        return cls(prop_id=column["prop_id"], city_id=column["city_id"], **{c: column[c] for c in _STATIC},
                   amenities=np.stack([column[f"amenity_{a}"] for a in AMENITIES], axis=1), price=column["price"])

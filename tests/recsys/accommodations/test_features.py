"""Search rows to padded lists; vocabularies; the catalogue a version carries."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from recsys.accommodations.catalogue import Catalogue
from recsys.accommodations.features import Vocabulary, lists_from_searches
from recsys.accommodations.searches import PROPERTY_TYPES


@pytest.fixture(scope="module")
def table(smoke_searches):
    return pq.read_table(smoke_searches).slice(0, 20_000)


def test_each_search_becomes_one_padded_list_in_shown_order(table):
    lists = lists_from_searches(table, list_size=40)
    frame = table.to_pandas()
    assert len(lists["srch_id"]) == frame.srch_id.nunique()
    i = 3
    rows = frame[frame.srch_id == lists["srch_id"][i]].sort_values("position")
    n = len(rows)
    assert lists["prop_id"][i, :n].tolist() == rows.prop_id.tolist()
    assert (lists["prop_id"][i, n:] == 0).all() and (lists["relevance"][i, n:] == 0).all()
    assert lists["position"][i, :n].tolist() == list(range(1, n + 1))
    expected = np.where(rows.booking_bool, 5, np.where(rows.click_bool, 1, 0))
    assert lists["relevance"][i, :n].tolist() == expected.tolist()
    assert lists["prop_type"][i, :n].tolist() == [1 + PROPERTY_TYPES.index(t) for t in rows.prop_type]
    assert lists["nights"][i] == rows.srch_length_of_stay.iloc[0]
    assert set(lists["split"]) <= {"train", "validation", "test"}


def test_longer_searches_keep_their_first_positions(table):
    lists = lists_from_searches(table, list_size=10)
    assert lists["prop_id"].shape[1] == 10 and (lists["position"][:, 0] == 1).all()
    assert lists["position"].max() == 10


def test_rare_properties_fall_out_of_the_vocabulary(table):
    lists = lists_from_searches(table, list_size=40)
    everyone, frequent = Vocabulary.fit(lists, 1), Vocabulary.fit(lists, 5)
    assert 0 not in everyone.properties and len(frequent.properties) < len(everyone.properties)
    shows = {p: c for p, c in zip(*np.unique(lists["prop_id"][lists["prop_id"] != 0], return_counts=True))}
    assert all(shows[p] >= 5 for p in frequent.properties)
    assert everyone.sizes()["property_types"] == len(PROPERTY_TYPES) + 1


def test_the_catalogue_has_each_property_once_with_its_median_price_and_survives_a_round_trip(table, tmp_path):
    lists = lists_from_searches(table, list_size=40)
    catalogue = Catalogue.from_lists(lists)
    frame = table.to_pandas()
    assert sorted(catalogue.prop_id.tolist()) == sorted(frame.prop_id.unique().tolist())
    some = catalogue.prop_id[7]
    assert catalogue.price[7] == pytest.approx(frame[frame.prop_id == some].price_usd.median(), rel=1e-5)
    assert catalogue.city_id[7] == frame[frame.prop_id == some].srch_destination_id.iloc[0]
    catalogue.write(tmp_path / "catalogue.parquet")
    back = Catalogue.read(tmp_path / "catalogue.parquet")
    assert np.array_equal(back.prop_id, catalogue.prop_id) and np.array_equal(back.amenities, catalogue.amenities)
    city = int(catalogue.city_id[7])
    assert some in back.of_city(city) and len(back.of_city(-5)) == 0
    assert set(catalogue.city_medians()) == set(np.unique(catalogue.city_id).tolist())

"""Synthetic searches: the shape of the hotel-ranking data sets, consistent with the trips, deterministic, and
carrying the structure a model can learn and a fixed sort cannot — each property checked on the smoke data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from recsys.accommodations import synthetic_searches
from recsys.accommodations.searches import AMENITIES, PROPERTY_TYPES, SEARCH_SCHEMA
from recsys.accommodations.synthetic_searches import SearchesSpec, build_catalogue, write_searches
from recsys.errors import DataError, StoreError
from recsys.synthetic_trips import TripsSpec, build_world, write_trips
from tests.support import SMOKE_TRIPS


@pytest.fixture(scope="module")
def searches(smoke_searches) -> pd.DataFrame:
    frame = pq.read_table(smoke_searches).to_pandas()
    frame["relative_price"] = np.log(frame.price_usd / frame.groupby("srch_destination_id").price_usd.transform("median"))
    return frame


@pytest.fixture(scope="module")
def booked(searches) -> pd.DataFrame:
    return searches[searches.booking_bool]


def test_the_table_has_the_search_schema_and_one_search_per_sampled_reservation(smoke_data, smoke_searches,
                                                                                 searches):
    assert pq.read_schema(next(smoke_searches.glob("part-*.parquet"))) == SEARCH_SCHEMA
    reservations = pq.read_table(smoke_data).num_rows
    record = json.loads((smoke_searches / "_generator.json").read_text())
    assert record["searches"] == searches.srch_id.nunique()
    assert 0.22 * reservations < record["searches"] < 0.28 * reservations  # fraction 0.25


def test_each_search_shows_25_to_40_properties_or_the_whole_small_catalogue_in_order(searches):
    per_search = searches.groupby("srch_id")
    sizes = per_search.size()
    assert sizes.max() <= 40 and sizes.quantile(0.5) >= 14
    assert (per_search.position.min() == 1).all() and (per_search.position.max() == sizes).all()
    world = build_world(SMOKE_TRIPS.world, SMOKE_TRIPS.seed)
    catalogue = build_catalogue(world, SearchesSpec().seed)
    city = pd.Series(world.city_ids[catalogue.city]).value_counts()
    cities = per_search.srch_destination_id.first()
    small = sizes[cities.map(city) < 25]
    assert (small == cities[small.index].map(city)).all()  # a small city shows its whole catalogue
    assert (sizes[cities.map(city) >= 40] >= 25).all()


def test_exactly_one_booking_per_search_and_it_was_clicked(searches):
    per_search = searches.groupby("srch_id")
    assert (per_search.booking_bool.sum() == 1).all()
    assert searches[searches.booking_bool].click_bool.all()


def test_the_catalogue_is_consistent_with_the_trips_and_grows_with_the_city(smoke_data, searches):
    trips = pq.read_table(smoke_data).to_pandas()
    assert set(searches.srch_destination_id) <= set(trips.city_id)
    assert searches.groupby("prop_id").srch_destination_id.nunique().max() == 1  # a property is in one city
    popularity = trips.city_id.value_counts()
    properties = searches.groupby("srch_destination_id").prop_id.nunique()
    big, small = popularity.index[:20], popularity.index[-200:]
    assert properties.reindex(big).mean() > 3 * properties.reindex(small).dropna().mean()
    assert set(searches.prop_type) == set(PROPERTY_TYPES)


def test_clicks_fall_with_position(searches):
    rate = searches.groupby("position").click_bool.mean()
    assert rate[1] > 1.5 * rate[5] > 1.5 * rate[20]


def test_price_sensitivity_depends_on_the_device_and_the_booker_country(booked):
    by_device = booked.groupby("device_class").relative_price.mean()
    assert by_device["mobile"] < by_device["desktop"] - 0.05
    by_country = booked.groupby("booker_country").relative_price.mean()
    assert by_country.max() - by_country.min() > 0.1


def test_the_party_prefers_its_own_property_types(booked):
    family = booked[booked.srch_children_count > 0].prop_type.value_counts(normalize=True)
    business = booked[(booked.srch_adults_count == 1) & (booked.srch_length_of_stay <= 2)
                      & (booked.device_class == "desktop")].prop_type.value_counts(normalize=True)
    assert family["apartment"] + family["resort"] > 2 * (business["apartment"] + business["resort"])
    assert business["hotel"] > 2 * family["hotel"]
    assert family.get("hostel", 0) < 0.5 * business.get("hostel", 0) + 0.02


def test_business_like_stays_are_short_weekday_ones_that_mind_the_centre_more_than_the_price(booked):
    weekday = pd.to_datetime(booked.srch_checkin).dt.day_of_week
    single = booked[(booked.srch_adults_count == 1) & (booked.srch_children_count == 0)]
    short_weekday = single[(single.srch_length_of_stay <= 2) & (weekday[single.index] <= 3)]
    leisure = single[(single.srch_length_of_stay >= 3)]
    assert short_weekday.prop_distance_km.mean() < leisure.prop_distance_km.mean()
    assert short_weekday.relative_price.mean() > leisure.relative_price.mean()


def test_the_city_type_pulls_towards_its_own_properties(searches, booked):
    world = build_world(SMOKE_TRIPS.world, SMOKE_TRIPS.seed)
    kind = dict(zip(world.city_ids.tolist(), world.city_type.tolist()))
    theme = booked.srch_destination_id.map(kind)
    shown_theme = searches.srch_destination_id.map(kind)
    # Among what beach searches showed, resorts and pools are booked more often than shown.
    beach_shown = searches[shown_theme == 0]
    beach_booked = booked[theme == 0]
    assert beach_booked.amenity_pool.mean() > 1.2 * beach_shown.amenity_pool.mean()
    city_booked, city_shown = booked[theme == 1], searches[shown_theme == 1]
    assert city_booked.prop_distance_km.mean() < 0.8 * city_shown.prop_distance_km.mean()


def test_the_same_seed_gives_the_same_searches_and_another_seed_others(tmp_path):
    write_trips(TripsSpec(trips=300, seed=2), str(tmp_path / "trips"))
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        write_searches(str(tmp_path / "trips"), SearchesSpec(seed=seed), str(tmp_path / name))
    a, b, c = (pq.read_table(tmp_path / name) for name in "abc")
    assert a.equals(b) and not a.equals(c)
    assert set(a.column_names) >= {f"amenity_{name}" for name in AMENITIES}


@pytest.mark.parametrize(("case", "message"), [
    ("no-trips", "data path|no _generator.json"),
    ("not-synthetic", "no _generator.json; searches are generated for synthetic trips"),
    ("exists", "already exists; pass --overwrite"),
], ids=["no-trips", "not-synthetic", "output-exists"])
def test_bad_input_is_refused_naming_the_location(tmp_path, case, message):
    write_trips(TripsSpec(trips=50, seed=2), str(tmp_path / "trips"))
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "part-00000.parquet").write_bytes((tmp_path / "trips" / "part-00000.parquet").read_bytes())
    (tmp_path / "exists").mkdir()
    trips = {"no-trips": tmp_path / "nowhere", "not-synthetic": tmp_path / "bare"}.get(case, tmp_path / "trips")
    out = tmp_path / ("exists" if case == "exists" else "out")
    with pytest.raises((DataError, StoreError), match=message):
        write_searches(str(trips), SearchesSpec(), str(out))
    assert not (tmp_path / "out").exists()
    assert not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_the_cli_prints_a_summary_or_one_error_line(tmp_path, capsys):
    write_trips(TripsSpec(trips=100, seed=2), str(tmp_path / "trips"))
    assert synthetic_searches.main(["--trips", str(tmp_path / "trips"), "--out", str(tmp_path / "s")]) == 0
    assert json.loads(capsys.readouterr().out)["searches"] > 0
    assert synthetic_searches.main(["--trips", str(tmp_path / "trips"), "--out", str(tmp_path / "s"),
                                    "--fraction", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: ")

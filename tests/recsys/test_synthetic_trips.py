from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from recsys import synthetic_trips
from recsys.destinations.baselines import Markov, Popularity, accuracy_at_k
from recsys.errors import StoreError
from recsys.destinations.features import examples_from_trips
from recsys.synthetic_trips import CITY_TYPES, TripsSpec, WorldSpec, build_world, write_trips
from recsys.trips import MIN_TRIP_LENGTH, TRIP_SCHEMA

SPEC = TripsSpec(trips=6000, seed=11, trips_per_file=2500)


@pytest.fixture(scope="module")
def trips(tmp_path_factory) -> pa.Table:
    path = tmp_path_factory.mktemp("synthetic") / "trips"
    write_trips(SPEC, str(path))
    return pq.read_table(path).sort_by([("utrip_id", "ascending"), ("checkin", "ascending")])


@pytest.fixture(scope="module")
def world():
    return build_world(SPEC.world, SPEC.seed)


def _region_of_city(world) -> dict[int, int]:
    return {int(world.city_ids[c]): r for r, row in enumerate(world.region_cities) for c in row if c >= 0}


def test_same_seed_same_data_other_seed_other_data(tmp_path):
    spec = TripsSpec(trips=500, seed=3)
    write_trips(spec, str(tmp_path / "a"))
    write_trips(spec, str(tmp_path / "b"))
    write_trips(spec.model_copy(update={"seed": 4}), str(tmp_path / "c"))
    a, b, c = (pq.read_table(tmp_path / name) for name in "abc")
    assert a.equals(b)
    assert not a.equals(c)


def test_files_follow_the_booking_schema_and_partitioning(tmp_path):
    write_trips(TripsSpec(trips=1200, seed=1, trips_per_file=500), str(tmp_path / "trips"))
    files = sorted(p.name for p in (tmp_path / "trips").iterdir())
    assert files == ["_generator.json", "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert pq.read_schema(tmp_path / "trips" / "part-00000.parquet") == TRIP_SCHEMA
    assert json.loads((tmp_path / "trips" / "_generator.json").read_text())["spec"]["trips"] == 1200


def test_trips_are_at_least_four_consecutive_reservations(trips):
    utrip = trips["utrip_id"].to_numpy(zero_copy_only=False)
    lengths = np.unique(utrip, return_counts=True)[1]
    assert len(lengths) == SPEC.trips
    assert lengths.min() >= MIN_TRIP_LENGTH
    same_trip = utrip[1:] == utrip[:-1]
    checkin = trips["checkin"].to_numpy()
    checkout = trips["checkout"].to_numpy()
    assert (checkout > checkin).all()
    assert (checkout[:-1][same_trip] == checkin[1:][same_trip]).all()
    users = trips["user_id"].to_numpy()
    assert (users[1:][same_trip] == users[:-1][same_trip]).all()


def test_no_city_is_visited_twice_in_a_trip(trips):
    pairs = pa.table({"u": trips["utrip_id"], "c": trips["city_id"]})
    assert pairs.group_by(["u", "c"]).aggregate([]).num_rows == trips.num_rows


def test_city_popularity_follows_a_power_law(trips):
    counts = np.sort(pc.value_counts(trips["city_id"]).field("counts").to_numpy())[::-1]
    top_decile = counts[: max(1, len(counts) // 10)].sum() / counts.sum()
    assert top_decile > 0.4
    assert counts[0] > 20 * np.median(counts)


def test_trips_stay_mostly_within_one_region(trips, world):
    region = _region_of_city(world)
    cities = trips["city_id"].to_numpy()
    same_trip = trips["utrip_id"].to_numpy(zero_copy_only=False)
    moves = same_trip[1:] == same_trip[:-1]
    regions = np.array([region[c] for c in cities])
    within = (regions[1:] == regions[:-1])[moves].mean()
    assert 0.8 < within < 1.0


def test_booker_country_shapes_where_trips_go(trips, world):
    region = _region_of_city(world)
    first = trips.group_by("utrip_id", use_threads=False).aggregate([("city_id", "first"), ("booker_country", "first")])
    regions = np.array([region[c] for c in first["city_id_first"].to_numpy()])
    countries = first["booker_country_first"].to_numpy(zero_copy_only=False)
    overall = np.bincount(regions, minlength=SPEC.world.num_regions) / len(regions)
    distances = []
    for country in np.unique(countries):
        mine = np.bincount(regions[countries == country], minlength=SPEC.world.num_regions) / (countries == country).sum()
        distances.append(0.5 * np.abs(mine - overall).sum())
    assert np.mean(distances) > 0.1


def test_device_shapes_the_kind_of_city(trips, world):
    kind = {int(world.city_ids[c]): CITY_TYPES[t] for c, t in enumerate(world.city_type)}
    devices = trips["device_class"].to_numpy(zero_copy_only=False)
    is_city = np.array([kind[c] == "city" for c in trips["city_id"].to_numpy()])
    is_beach = np.array([kind[c] == "beach" for c in trips["city_id"].to_numpy()])
    assert is_city[devices == "mobile"].mean() > is_city[devices == "tablet"].mean() + 0.05
    assert is_beach[devices == "tablet"].mean() > is_beach[devices == "mobile"].mean() + 0.05


def test_markov_beats_popularity_and_more_than_first_order_is_learnable(trips):
    examples = examples_from_trips(trips, history_length=8)
    train = examples["split"] == "train"
    test = (examples["split"] != "train") & examples["is_last"]
    labels = examples["label"]
    previous = examples["history"][:, -1]
    markov = Markov(previous[train], labels[train], k=4)
    popularity = Popularity(labels[train], k=4)
    markov_accuracy = accuracy_at_k(markov.recommend(previous[test]), labels[test])
    popularity_accuracy = accuracy_at_k(popularity.recommend(int(test.sum())), labels[test])
    assert markov_accuracy > popularity_accuracy + 0.1
    # The Markov chain keeps recommending cities the trip already visited, which never happens: there is
    # structure beyond the last city for a sequence model to learn.
    recommended = markov.recommend(previous[test])
    already_visited = (recommended[:, :, None] == examples["history"][test][:, None, :]).any(axis=2)
    assert already_visited.any(axis=1).mean() > 0.2


def test_existing_output_is_not_overwritten_unless_asked(tmp_path):
    write_trips(TripsSpec(trips=10), str(tmp_path / "trips"))
    with pytest.raises(StoreError, match=r"trips: already exists; pass --overwrite to replace it"):
        write_trips(TripsSpec(trips=10), str(tmp_path / "trips"))
    write_trips(TripsSpec(trips=20), str(tmp_path / "trips"), overwrite=True)
    assert len(set(pq.read_table(tmp_path / "trips")["utrip_id"].to_pylist())) == 20


def test_a_failed_generation_leaves_nothing_behind(tmp_path, monkeypatch):
    real = synthetic_trips.generate_batch
    calls = []

    def fail_on_second_file(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic_trips, "generate_batch", fail_on_second_file)
    with pytest.raises(RuntimeError, match="disk full"):
        write_trips(TripsSpec(trips=30, trips_per_file=10), str(tmp_path / "trips"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("args", "message"), [
    (["--trips", "0"], "trips\n  Input should be greater than or equal to 1"),
    (["--trips", "10", "--cities", "3"], "num_cities\n  Input should be greater than or equal to 50"),
], ids=["no-trips", "too-few-cities"])
def test_cli_rejects_bad_sizes_with_one_error_line(tmp_path, args, message):
    result = subprocess.run([sys.executable, "-m", "recsys.synthetic_trips", "--out", str(tmp_path / "t"), *args],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
    assert message in result.stderr
    assert not (tmp_path / "t").exists()


def test_world_spec_rejects_unknown_fields():
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        WorldSpec(num_citys=10)
